"""CI checks for the CUDA kernels on machines without a GPU.

1. The GPU harness script works: ``tests/gpu/run_harness.sh --cpu --quick``
   builds the harness with g++ (the kernels' per-element code, including the
   parallel Fisher-Yates walk) and checks it against the NumPy reference.
2. nvcc compiles every CUDA kernel (TF-free part: randomize_gpu.cuh through
   the harness source), compile-only, so a broken kernel cannot land.
3. The nvcc flags never allow fast math / FMA contraction; setup's GPU build
   is skipped with one clear line where TensorFlow has no CUDA.
4. Opt-in (RETHINKGEN_TEST_TF_GPU_COMPILE=1, slow: TF headers through nvcc):
   the TF GPU kernels (randomize_ops_gpu.cu.cc: the GPU functors and the
   DEVICE_GPU registrations of the OpKernel templates) compile with nvcc.
5. The GPU kernels run the CPU kernels' argument checks: one OpKernel
   template per op (randomize_kernels.h), no validation of their own.

Env: RETHINKGEN_CI_CUDA_ARCH (default 80) for the compile-only check.
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # subprocesses and real training: make test-fast skips these

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _build_cuda():
    spec = importlib.util.spec_from_file_location(
        "rethinkgen_build_cuda", os.path.join(ROOT, "csrc", "build_cuda.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _have_pybind11():
    return subprocess.run([sys.executable, "-m", "pybind11", "--includes"],
                          capture_output=True).returncode == 0


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_harness_cpu_mode_script(tmp_path):
    if not _have_pybind11():
        pytest.skip("needs pybind11")
    env = dict(os.environ, RG_HARNESS_OUT=str(tmp_path), PYTHON=sys.executable)
    p = subprocess.run(["bash", os.path.join(ROOT, "tests", "gpu", "run_harness.sh"),
                        "--cpu", "--quick"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=1800)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    assert "0 failure(s)" in out and "PASSED" in out
    assert "FAIL" not in out.replace("FAILED", "")


def test_nvcc_flags_are_exact():
    bc = _build_cuda()
    flags = " ".join(bc.NVCC_FLAGS)
    assert "--fmad=false" in flags and "-ffp-contract=off" in flags
    for bad in ("--use_fast_math", "-use_fast_math", "-ftz=true", "--fmad=true"):
        assert bad not in flags
    assert bc.arch_flags("80;90") == [
        "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90",
        "-gencode", "arch=compute_90,code=compute_90"]
    assert bc.arch_flags("native") == ["-arch=native"]
    with pytest.raises(ValueError):
        bc.arch_flags("sm_ninety")


def test_build_gpu_objects_skips_with_one_line(tmp_path, monkeypatch):
    bc = _build_cuda()
    monkeypatch.setenv("RETHINKGEN_NO_CUDA", "1")
    objs, reason = bc.build_gpu_objects([], str(tmp_path))
    assert objs is None and reason.startswith("GPU kernels skipped") and "\n" not in reason
    monkeypatch.delenv("RETHINKGEN_NO_CUDA")
    monkeypatch.setattr(bc, "find_nvcc", lambda: None)
    objs, reason = bc.build_gpu_objects([], str(tmp_path))
    assert objs is None and "nvcc not found" in reason


@pytest.mark.skipif(_build_cuda().find_nvcc() is None, reason="needs nvcc")
def test_nvcc_compiles_every_kernel(tmp_path):
    """Compile-only: randomize_gpu.cuh (all kernels and launchers, every
    template instantiation the TF kernels use) via the harness source."""
    arch = os.environ.get("RETHINKGEN_CI_CUDA_ARCH", "80")
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "gpu", "build_harness.py"),
                        "--backend", "cuda", "--compile-only", "--arch", arch,
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    assert os.path.getsize(os.path.join(tmp_path, "cuda", "harness_kernels_cuda.o")) > 0


@pytest.mark.skipif(os.environ.get("RETHINKGEN_TEST_TF_GPU_COMPILE") != "1",
                    reason="slow; set RETHINKGEN_TEST_TF_GPU_COMPILE=1")
def test_nvcc_compiles_tf_gpu_opkernels(tmp_path):
    tf = pytest.importorskip("tensorflow")
    bc = _build_cuda()
    if bc.find_nvcc() is None:
        pytest.skip("needs nvcc")
    objs, reason = bc.build_gpu_objects(tf.sysconfig.get_compile_flags(), str(tmp_path),
                                        check_tf=False,
                                        archs=os.environ.get("RETHINKGEN_CI_CUDA_ARCH", "80"))
    assert objs and all(os.path.getsize(o) > 0 for o in objs), reason


def _read(*parts):
    with open(os.path.join(ROOT, *parts)) as f:
        return f.read()


def test_gpu_kernels_share_the_opkernel_templates():
    """The GPU file holds GPU functors and DEVICE_GPU registrations only: the
    OpKernel templates of randomize_kernels.h (argument reading, the rules and
    their messages, e.g. permute mode's < 2^31 labels, output allocation) are
    the same code for both devices, so a rule cannot drift between them."""
    gpu = _read("csrc", "randomize_ops_gpu.cu.cc")
    cpu = _read("csrc", "randomize_kernels.cc")
    kernels = _read("csrc", "randomize_kernels.h")
    assert "public OpKernel" not in gpu and "InvalidArgument" not in gpu
    assert "ReadLabelArgs" not in gpu and "allocate_output" not in gpu
    for op in ("CorruptLabelsOp", "PermutePixelsOp", "GaussianImagesOp"):
        assert f"class {op} : public OpKernel" in kernels
        assert f"{op}<GPUDevice, " in gpu
        # CPU registrations go through one macro (per op and type, for both index types)
        # that instantiates CLASS<CPUDevice, T, Idx>
        assert f"{op}<CPUDevice, " in cpu or (
            re.search(rf"RG_CPU_KERNELS?\([^)]*\b{op}\b", cpu)
            and "CLASS<CPUDevice, T, Idx>" in cpu)
    assert "ReadLabelArgs(ctx, permute_, &args)" in kernels
    # Each rule's words are written once (the NumPy module reuses the constant).
    homes = []
    for d, _, files in os.walk(os.path.join(ROOT, "csrc")):
        for name in files:
            if name.endswith((".h", ".cc", ".cuh")) and "permute mode takes" in _read(d, name):
                homes.append(os.path.relpath(os.path.join(d, name), ROOT))
    assert homes == [os.path.join("csrc", "rethinkgen", "randomize.h")], homes
