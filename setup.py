"""Build and install rethinkgen_tf.

Builds two shared libraries into the ops package, beside the code that loads them:
  rethinkgen_tf/ops/_rethinkgen_ops.so   the TensorFlow custom ops (CPU, and GPU
                                         kernels when nvcc and a CUDA-enabled
                                         TensorFlow are present)
  rethinkgen_tf/ops/_rethinkgen_np*.so   the pybind11 module (NumPy, no TF)
Compile and link flags come from the installed TensorFlow (tf.sysconfig);
the TensorFlow version built against is recorded in
rethinkgen_tf/ops/_build_info.json and checked when the op is loaded.

Install without build isolation, so the build sees the TensorFlow you run:
    pip install --no-build-isolation -e .
See BUILD.md.
"""
import glob
import json
import os
import platform
import shlex
import subprocess
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(HERE, "csrc")
# The op library's host sources: op registration, then the kernels (CPU
# functors + DEVICE_CPU registrations); csrc/build_cuda.py adds the GPU ones.
OP_SOURCES = ["randomize_ops.cc", "randomize_kernels.cc"]
HOST_FLAGS = ["-O3", "-fPIC", "-ffp-contract=off", "-fno-fast-math", "-fno-math-errno",
              "-Wno-deprecated-declarations"]


def _log(msg):
    print(f"[rethinkgen_tf build] {msg}", flush=True)


class BuildExt(build_ext):
    """Builds the pybind11 module as usual, then the TensorFlow op library."""

    def build_extensions(self):
        import pybind11
        for ext in self.extensions:
            ext.include_dirs += [pybind11.get_include(), CSRC]
            # Hidden visibility (pybind11's advice): the module binds its own
            # copies of the header code, even where the op library, loaded
            # into the global symbol scope by TensorFlow, exports the same
            # names; so each library runs, and reports, its own CPU path.
            ext.extra_compile_args += HOST_FLAGS + ["-std=c++17", "-fvisibility=hidden"]
        super().build_extensions()
        self.build_tf_ops()

    def run(self):
        # setuptools clears self.inplace while building and copies extensions
        # afterwards; the op library is no Python extension, so remember.
        self._to_source = bool(self.inplace or getattr(self, "editable_mode", False))
        super().run()

    def _ops_dir(self):
        """Where rethinkgen_tf.ops (tf_ops.py) looks for the op library and its build info."""
        if getattr(self, "_to_source", False):
            return os.path.join(HERE, "rethinkgen_tf", "ops")
        return os.path.join(self.build_lib, "rethinkgen_tf", "ops")

    def build_tf_ops(self):
        import tensorflow as tf
        cflags = tf.sysconfig.get_compile_flags()
        lflags = tf.sysconfig.get_link_flags()
        out_dir = self._ops_dir()
        os.makedirs(out_dir, exist_ok=True)
        os.makedirs(self.build_temp, exist_ok=True)
        cxx = os.environ.get("CXX", "g++")
        sys.path.insert(0, CSRC)
        try:
            import build_cuda  # csrc/build_cuda.py: the nvcc command line
        finally:
            sys.path.pop(0)
        objects, gpu = build_cuda.build_gpu_objects(cflags, self.build_temp)
        objects, gpu = objects or [], gpu or "built"
        target = os.path.join(out_dir, "_rethinkgen_ops.so")
        cmd = ([cxx, "-shared", "-I" + CSRC] + HOST_FLAGS + cflags
               + [os.path.join(CSRC, f) for f in OP_SOURCES] + list(objects)
               + ["-o", target] + lflags)
        if objects:
            cmd += build_cuda.link_flags()
        _log("CPU op: " + " ".join(shlex.quote(c) for c in cmd))
        subprocess.check_call(cmd)
        _log(f"GPU kernels: {gpu}")
        info = {
            "tensorflow_version": tf.__version__,
            "compile_flags": cflags,
            "link_flags": lflags,
            "compiler": subprocess.run([cxx, "--version"], capture_output=True,
                                       text=True).stdout.splitlines()[0],
            "gpu_kernels": bool(objects),
            "gpu_note": gpu,
            "machine": platform.machine(),
        }
        with open(os.path.join(out_dir, "_build_info.json"), "w") as f:
            json.dump(info, f, indent=1)


setup(
    name="rethinkgen_tf",
    version="0.1.0",
    description=("Randomization tests of Zhang et al. (ICLR 2017) in "
                 "TensorFlow/Keras, with a deterministic custom op"),
    # experiments/ and benchmarks/ run from the repository root (python -m
    # experiments.cifar); they are not installed, so no generic top-level
    # names are claimed in site-packages.
    packages=find_packages(include=["rethinkgen_tf", "rethinkgen_tf.*"]),
    package_data={"rethinkgen_tf.ops": ["*.so", "_build_info.json"]},
    ext_modules=[Extension("rethinkgen_tf.ops._rethinkgen_np",
                           [os.path.join("csrc", "pybind_module.cc")],
                           # rebuilt when a header changes, not only the .cc
                           depends=sorted(glob.glob(os.path.join("csrc", "rethinkgen", "*.h"))),
                           language="c++")],
    cmdclass={"build_ext": BuildExt},
    python_requires=">=3.10",
    install_requires=["numpy", "scipy", "absl-py", "keras>=3.15,<3.16", "matplotlib", "pillow",
                      "tensorflow-datasets", "importlib_resources", "pybind11"],
    extras_require={"test": ["pytest", "hypothesis"]},
)
