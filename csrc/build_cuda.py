"""nvcc command lines for the CUDA kernels (used by setup.py and tests/gpu).

setup.py calls::

    from csrc.build_cuda import build_gpu_objects   # or import by file path
    objs, reason = build_gpu_objects(tf_cflags, out_dir)

``objs`` is a list of object files to link into the op library (compiled with
-DGOOGLE_CUDA=1: the library must then also be compiled with -DGOOGLE_CUDA=1
and linked with -lcudart, see ``link_flags()``), or None, with ``reason`` a
one-line explanation of why the GPU kernels are skipped.

Environment:
  RETHINKGEN_CUDA_ARCHS   compute capabilities, e.g. "80;90" (default), "native",
                          "75;80;86;89;90".  The last one also gets PTX so newer
                          GPUs can JIT-compile it.
  RETHINKGEN_NO_CUDA=1    skip the GPU kernels.
  CUDA_HOME / CUDA_PATH   CUDA toolkit (default: the directory of nvcc on PATH,
                          else /usr/local/cuda).

Never add --use_fast_math, -ftz=true or --fmad=true: the Gaussian kernels
are bit-identical to the CPU only with IEEE-rounded, uncontracted float32
arithmetic (see csrc/rethinkgen/randomize_gpu.cuh).
"""
import os
import shutil
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCHS = "80;90"
GPU_SOURCES = ["randomize_ops_gpu.cu.cc"]

# Flags shared by every nvcc compile of this project's kernels.
NVCC_FLAGS = [
    "-std=c++17", "-O3", "-DNDEBUG",
    "--fmad=false",                  # no FMA contraction (also -ffp-contract=off on host)
    "-ftz=false", "-prec-div=true", "-prec-sqrt=true",
    "--expt-relaxed-constexpr",
    "-Xcompiler", "-fPIC",
    "-Xcompiler", "-ffp-contract=off",
]


def find_nvcc():
    """Path of nvcc, or None."""
    for env in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(env)
        if root and os.path.exists(os.path.join(root, "bin", "nvcc")):
            return os.path.join(root, "bin", "nvcc")
    path = shutil.which("nvcc")
    if path:
        return path
    if os.path.exists("/usr/local/cuda/bin/nvcc"):
        return "/usr/local/cuda/bin/nvcc"
    return None


def _is_cuda_root(d):
    return bool(d) and os.path.exists(os.path.join(d, "include", "cuda_runtime.h"))


def cuda_home(nvcc=None):
    """The CUDA toolkit root (with include/cuda_runtime.h), or None."""
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if _is_cuda_root(os.environ.get(env)):
            return os.environ[env]
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        return None
    root = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    if _is_cuda_root(root):
        return root
    try:  # nvcc may be a wrapper script: ask it where it lives
        out = subprocess.run([nvcc, "--dryrun", "-v", "-x", "cu", "-c", os.devnull,
                              "-o", os.devnull], capture_output=True, text=True,
                             timeout=60)
        for line in (out.stderr + out.stdout).splitlines():
            if "TOP=" in line:
                top = os.path.normpath(line.split("TOP=", 1)[1].strip())
                if _is_cuda_root(top):
                    return top
    except (OSError, subprocess.SubprocessError):
        pass
    return "/usr/local/cuda" if _is_cuda_root("/usr/local/cuda") else None


def arch_flags(archs=None):
    """-gencode flags for "80;90" style lists (or ["-arch=native"])."""
    archs = archs or os.environ.get("RETHINKGEN_CUDA_ARCHS", DEFAULT_ARCHS)
    archs = archs.replace(",", ";").replace(" ", ";")
    items = [a.strip().replace("sm_", "").replace(".", "") for a in archs.split(";")
             if a.strip()]
    if items == ["native"]:
        return ["-arch=native"]
    flags = []
    for a in items:
        if not a.isdigit():
            raise ValueError(f"bad CUDA architecture {a!r} in RETHINKGEN_CUDA_ARCHS")
        flags += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
    if items:
        last = items[-1]
        flags += ["-gencode", f"arch=compute_{last},code=compute_{last}"]
    return flags


def link_flags():
    """Linker flags for the op library when GPU objects are linked in."""
    home = cuda_home()
    flags = ["-lcudart"]
    if home:
        for lib in ("lib64", "lib", os.path.join("targets", "x86_64-linux", "lib")):
            d = os.path.join(home, lib)
            if os.path.isdir(d):
                flags = [f"-L{d}"] + flags
                break
    return flags


def _tf_cuda_ok():
    try:
        import tensorflow as tf  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the environment
        return False, f"TensorFlow not importable ({type(e).__name__})"
    if not tf.test.is_built_with_cuda():
        return False, "TensorFlow is not built with CUDA"
    return True, ""


def tf_include_dir(tf_cflags):
    for f in tf_cflags:
        if f.startswith("-I"):
            return f[2:]
    return None


def shim_include(tf_cflags, out_dir):
    """TF's headers include "third_party/gpus/cuda/include/..."; pip wheels do
    not ship that directory.  Returns an include dir whose
    third_party/gpus/cuda/include links to the toolkit's include dir (or None
    if TF already has it)."""
    inc = tf_include_dir(tf_cflags)
    if inc and os.path.isdir(os.path.join(inc, "third_party", "gpus", "cuda", "include")):
        return None
    home = cuda_home()
    if home is None:
        return None
    shim = os.path.join(out_dir, "cuda_shim")
    target = os.path.join(shim, "third_party", "gpus", "cuda")
    os.makedirs(target, exist_ok=True)
    link = os.path.join(target, "include")
    if not os.path.exists(link):
        os.symlink(os.path.join(home, "include"), link)
    # cuda_config.h lives next to include/ in TF's tree.
    if inc:
        cfg = os.path.join(inc, "third_party", "gpus", "cuda", "cuda_config.h")
        dst = os.path.join(target, "cuda_config.h")
        if os.path.exists(cfg) and not os.path.exists(dst):
            shutil.copy(cfg, dst)
    return shim


def nvcc_command(src, obj, tf_cflags, out_dir, archs=None, nvcc=None):
    nvcc = nvcc or find_nvcc()
    cmd = [nvcc, "-x", "cu", "-c", src, "-o", obj, "-DGOOGLE_CUDA=1",
           f"-I{HERE}"] + NVCC_FLAGS + arch_flags(archs)
    shim = shim_include(tf_cflags, out_dir)
    if shim:
        cmd += ["-isystem", shim]
    # TF's flags: -I... (as -isystem: TF/absl headers are noisy under nvcc),
    # -D_GLIBCXX_USE_CXX11_ABI=..., -DEIGEN_MAX_ALIGN_BYTES=64; --std=c++17 is
    # dropped (nvcc takes -std).
    for f in tf_cflags:
        if f.startswith("-I"):
            cmd += ["-isystem", f[2:]]
        elif f.startswith("-D"):
            cmd.append(f)
    return cmd


def build_gpu_objects(tf_cflags, out_dir, check_tf=True, archs=None):
    """Compiles the TF GPU kernels.  Returns (objects, reason):
    ([...o files], "") on success, (None, "one-line reason") when skipped.
    Raises subprocess.CalledProcessError if nvcc fails on a CUDA-capable setup
    (a broken kernel should fail the build, not be skipped silently)."""
    if os.environ.get("RETHINKGEN_NO_CUDA"):
        return None, "GPU kernels skipped: RETHINKGEN_NO_CUDA is set"
    nvcc = find_nvcc()
    if nvcc is None:
        return None, "GPU kernels skipped: nvcc not found (set CUDA_HOME)"
    if check_tf:
        ok, why = _tf_cuda_ok()
        if not ok:
            return None, f"GPU kernels skipped: {why}"
    os.makedirs(out_dir, exist_ok=True)
    objs = []
    for name in GPU_SOURCES:
        src = os.path.join(HERE, name)
        obj = os.path.join(out_dir, name.replace(".cu.cc", ".cu.o"))
        cmd = nvcc_command(src, obj, tf_cflags, out_dir, archs, nvcc)
        print("[rethinkgen] " + " ".join(cmd), flush=True)
        subprocess.check_call(cmd)
        objs.append(obj)
    return objs, ""


if __name__ == "__main__":  # python csrc/build_cuda.py OUT_DIR: compile only
    import sys

    import tensorflow as tf
    objs, reason = build_gpu_objects(tf.sysconfig.get_compile_flags(),
                                     sys.argv[1] if len(sys.argv) > 1 else "build/cuda",
                                     check_tf="--force" not in sys.argv)
    print(objs if objs else reason)
