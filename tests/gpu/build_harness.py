"""Builds the TF-free harness module `rg_harness` (tests/gpu/harness_*.cc).

    python tests/gpu/build_harness.py --backend cuda [--arch native|80|90]
    python tests/gpu/build_harness.py --backend cpu
    python tests/gpu/build_harness.py --backend cuda --compile-only   # CI: no GPU needed

Prints the path of the built module (or of the object, for --compile-only).
Needs: g++, pybind11 (python -m pybind11), NumPy; nvcc for the cuda backend.
No TensorFlow.
"""
import argparse
import importlib.util
import os
import subprocess
import sys
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CSRC = os.path.join(ROOT, "csrc")


def _build_cuda_module():
    spec = importlib.util.spec_from_file_location(
        "rethinkgen_build_cuda", os.path.join(CSRC, "build_cuda.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def pybind_includes():
    out = subprocess.check_output([sys.executable, "-m", "pybind11", "--includes"],
                                  text=True)
    return out.split()


def detect_arch():
    """Compute capability of GPU 0 as "90", else None."""
    try:
        out = subprocess.check_output(
            ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
            text=True, stderr=subprocess.DEVNULL)
        cap = out.strip().splitlines()[0].strip()
        return cap.replace(".", "")
    except Exception:
        return None


def run(cmd, verbose=True):
    if verbose:
        print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.check_call(cmd)


def build(backend, out_dir, arch=None, compile_only=False, verbose=True):
    os.makedirs(out_dir, exist_ok=True)
    ext = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    module = os.path.join(out_dir, "rg_harness" + ext)
    common = ["-std=c++17", "-O2", f"-I{CSRC}", f"-I{HERE}"]
    kernels = os.path.join(HERE, "harness_kernels.cc")
    wrapper = os.path.join(HERE, "harness_module.cc")
    cxx = os.environ.get("CXX", "g++")
    if backend == "cpu":
        if compile_only:
            obj = os.path.join(out_dir, "harness_kernels_cpu.o")
            run([cxx, "-c", kernels, "-o", obj, "-fPIC", "-ffp-contract=off",
                 "-Wall", "-Werror"] + common, verbose)
            return obj
        run([cxx, "-shared", "-fPIC", "-ffp-contract=off", kernels, wrapper,
             "-o", module] + common + pybind_includes(), verbose)
        return module
    bc = _build_cuda_module()
    nvcc = bc.find_nvcc()
    if nvcc is None:
        raise SystemExit("nvcc not found (set CUDA_HOME or PATH)")
    if arch is None:
        arch = detect_arch() or "native"
    obj = os.path.join(out_dir, "harness_kernels_cuda.o")
    run([nvcc, "-x", "cu", "-c", kernels, "-o", obj] + bc.NVCC_FLAGS +
        bc.arch_flags(arch) + [f"-I{CSRC}", f"-I{HERE}", "-Xcompiler", "-Wall"],
        verbose)
    if compile_only:
        return obj
    # Static cudart: no rpath/LD_LIBRARY_PATH needed; shares the primary
    # context with PyTorch's cudart in the same process (device pointers from
    # torch tensors are valid here).
    libdirs = [f for f in bc.link_flags() if f.startswith("-L")]
    run([cxx, "-shared", "-fPIC", wrapper, obj, "-o", module] + common +
        pybind_includes() + libdirs + ["-lcudart_static", "-ldl", "-lrt", "-lpthread"],
        verbose)
    return module


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "gpu_harness"))
    ap.add_argument("--arch", default=None,
                    help='e.g. "90", "80;90", "native" (default: detected GPU)')
    ap.add_argument("--compile-only", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    out = os.path.join(args.out, args.backend)
    print(build(args.backend, out, args.arch, args.compile_only, not args.quiet))


if __name__ == "__main__":
    main()
