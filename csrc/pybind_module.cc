// pybind11 module: the CPU kernels of rethinkgen/randomize_cpu.h on NumPy
// arrays, without TensorFlow.  Python API: rethinkgen_tf.ops.native_numpy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "rethinkgen/randomize_cpu.h"

namespace py = pybind11;
using namespace rethinkgen;

namespace {

// The most threads a call starts (threads=0: one per core, at most this).
constexpr int kMaxThreads = 1024;

// std::thread ParallelFor: contiguous ranges, one per thread.  If the system
// refuses a thread, the ranges not yet handed out run on the calling thread
// (a std::thread that fails to start must not take the process down).
struct ThreadParallelFor {
  int threads;
  void operator()(int64_t total, int64_t cost, const RangeFn& fn) const {
    int64_t t = std::min<int64_t>(threads, total);
    if (total * cost < 100000) t = 1;
    if (t <= 1) {
      if (total > 0) fn(0, total);
      return;
    }
    std::vector<std::thread> pool;
    pool.reserve(t);
    const int64_t step = (total + t - 1) / t;
    int64_t b = 0;
    try {
      for (; b < total; b += step) pool.emplace_back(fn, b, std::min(total, b + step));
    } catch (const std::system_error&) {
      for (; b < total; b += step) fn(b, std::min(total, b + step));
    }
    for (auto& th : pool) th.join();
  }
};

// threads <= 0: one per core; always at most kMaxThreads.
int Threads(int n) {
  if (n <= 0) {
    const unsigned h = std::thread::hardware_concurrency();
    n = h ? static_cast<int>(std::min<unsigned>(h, kMaxThreads)) : 1;
  }
  return std::min(n, kMaxThreads);
}

void Require(bool ok, const std::string& msg) {
  if (!ok) throw py::value_error(msg);
}

std::vector<int64_t> Shape(const py::array& a) {
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

py::array_t<int64_t> AsInt64(const py::array& indices) {
  Require(py::isinstance<py::array_t<int32_t>>(indices) ||
              py::isinstance<py::array_t<int64_t>>(indices) || indices.dtype().kind() == 'i' ||
              indices.dtype().kind() == 'u',
          "indices must be an integer array");
  return py::array_t<int64_t, py::array::c_style | py::array::forcecast>(indices);
}

void RequireNonNegative(const int64_t* idx, int64_t n) {
  const int64_t bad = FirstNegative(idx, n);
  Require(bad < 0, "indices must be >= 0, got indices[" + std::to_string(bad) +
                       "] = " + std::to_string(bad >= 0 ? idx[bad] : 0));
}

// AsInt64, checked >= 0.
py::array_t<int64_t> AsIndices(const py::array& indices) {
  auto idx = AsInt64(indices);
  RequireNonNegative(idx.data(), idx.size());
  return idx;
}

// Names the first negative index or out-of-range label.
template <typename T>
void CheckLabelInputs(const T* labels, const int64_t* idx, int64_t n, int64_t k) {
  RequireNonNegative(idx, n);
  const int64_t bad = FirstOutsideRange(labels, n, k);
  Require(bad < 0, "labels must be in [0, num_classes=" + std::to_string(k) + "), got labels[" +
                       std::to_string(bad) +
                       "] = " + std::to_string(bad >= 0 ? static_cast<int64_t>(labels[bad]) : 0));
}

template <typename T>
py::array CorruptTyped(py::array labels_in, py::array_t<int64_t> idx, double p, int64_t k,
                       int64_t seed, bool permute, int threads) {
  auto labels = py::array_t<T, py::array::c_style | py::array::forcecast>(labels_in);
  const int64_t n = labels.size();
  py::array_t<T> out(Shape(labels));
  ThreadParallelFor pf{Threads(threads)};
  const T* src = labels.data();
  const int64_t* ix = idx.data();
  T* dst = out.mutable_data();
  if (permute) CheckLabelInputs(src, ix, n, k);
  bool ok = true;
  {
    py::gil_scoped_release release;
    if (permute)
      CorruptLabelsPermute(src, ix, n, p, seed, dst, pf);
    else  // validates as it draws
      ok = CorruptLabelsUniform(src, ix, n, p, static_cast<uint64_t>(k), seed, dst, pf);
  }
  if (!ok) {
    CheckLabelInputs(src, ix, n, k);
    Require(false, "corrupt_labels: the draw loop rejected inputs that the checks accept");
  }
  return out;
}

py::array CorruptLabels(py::array labels, py::array indices, double p, int64_t num_classes,
                        int64_t seed, const std::string& mode, int threads) {
  Require(Shape(labels) == Shape(indices), "labels and indices must have the same shape");
  Require(rethinkgen::IsProbability(p), "corrupt_prob must be in [0, 1]");
  Require(num_classes >= 1 && num_classes <= (int64_t{1} << 32),
          "num_classes must be in [1, 2^32]");
  Require(mode == "uniform" || mode == "permute", "mode must be 'uniform' or 'permute'");
  const bool permute = mode == "permute";
  Require(!permute || labels.size() < kMaxPermuteLabels,
          std::string(kPermuteLabelsRule) + ", got " + std::to_string(labels.size()));
  auto idx = AsInt64(indices);
  if (labels.dtype().is(py::dtype::of<int32_t>()))
    return CorruptTyped<int32_t>(labels, idx, p, num_classes, seed, permute, threads);
  Require(labels.dtype().kind() == 'i' || labels.dtype().kind() == 'u',
          "labels must be an integer array");
  return CorruptTyped<int64_t>(labels, idx, p, num_classes, seed, permute, threads);
}

template <typename E>
void PermuteTyped(const py::array& in, py::array& out, const int64_t* idx, int64_t batch,
                  uint32_t units, int64_t c, int64_t seed, bool per_example, int threads) {
  ThreadParallelFor pf{Threads(threads)};
  const E* src = static_cast<const E*>(in.data());
  E* dst = static_cast<E*>(out.mutable_data());
  py::gil_scoped_release release;
  PermutePixels(src, idx, batch, units, c, seed, per_example, dst, pf);
}

py::array Permute(py::array images_in, py::array indices, int64_t seed, const std::string& mode,
                  const std::string& unit, int threads) {
  Require(mode == "shared" || mode == "per_example", "mode must be 'shared' or 'per_example'");
  Require(unit == "position" || unit == "value", "unit must be 'position' or 'value'");
  Require(images_in.ndim() >= 3, "images must have shape [..., H, W, C]");
  // Values are moved as raw bits: never Python objects.
  Require(images_in.dtype().kind() != 'O', "images must not be an object array");
  py::array images = py::array::ensure(images_in, py::array::c_style);
  auto shape = Shape(images);
  const size_t r = shape.size();
  std::vector<int64_t> batch_shape(shape.begin(), shape.end() - 3);
  Require(Shape(indices) == batch_shape, "indices must have shape images.shape[:-3]");
  auto idx = AsIndices(indices);
  int64_t units = shape[r - 3] * shape[r - 2], c = shape[r - 1];
  if (unit == "value") {
    units *= c;
    c = 1;
  }
  Require(units < (int64_t{1} << 32) && c < (int64_t{1} << 32),
          "images have more than 2^32 pixels or channels");
  py::array out(images.dtype(), shape);
  if (images.size() == 0) return out;
  const bool per_ex = mode == "per_example";
  switch (images.itemsize()) {
    case 1:
      PermuteTyped<uint8_t>(images, out, idx.data(), idx.size(), units, c, seed, per_ex, threads);
      break;
    case 2:
      PermuteTyped<uint16_t>(images, out, idx.data(), idx.size(), units, c, seed, per_ex, threads);
      break;
    case 4:
      PermuteTyped<uint32_t>(images, out, idx.data(), idx.size(), units, c, seed, per_ex, threads);
      break;
    case 8:
      PermuteTyped<uint64_t>(images, out, idx.data(), idx.size(), units, c, seed, per_ex, threads);
      break;
    default:
      throw py::value_error("unsupported image dtype");
  }
  return out;
}

py::array Gaussian(py::array indices, int64_t seed, std::vector<int64_t> shape,
                   py::array_t<float, py::array::c_style | py::array::forcecast> mean,
                   py::array_t<float, py::array::c_style | py::array::forcecast> stddev,
                   const std::string& dtype, int threads) {
  Require(!shape.empty(), "shape must be non-empty, like [H, W, C]");
  for (int64_t s : shape) Require(s >= 1, "shape entries must be >= 1");
  const int64_t c = shape.back();
  Require(mean.ndim() == 1 && mean.size() == c && stddev.ndim() == 1 && stddev.size() == c,
          "mean and stddev must be vectors of length C = shape[-1] = " + std::to_string(c));
  for (int64_t i = 0; i < c; ++i) {
    Require(std::isfinite(mean.data()[i]), "mean must be finite");
    Require(std::isfinite(stddev.data()[i]) && stddev.data()[i] >= 0,
            "stddev must be finite and >= 0");
  }
  auto idx = AsIndices(indices);
  std::vector<int64_t> out_shape = Shape(indices);
  out_shape.insert(out_shape.end(), shape.begin(), shape.end());
  int64_t n = 1;  // H*W*C; (n + 3) / 4 Philox blocks must be < 2^32
  for (int64_t s : shape) {
    Require(s <= (int64_t{1} << 34) / n, "images have more than 2^34 values");
    n *= s;
  }
  Require((n + 3) / 4 < (int64_t{1} << 32), "images have more than 2^34 values");
  ThreadParallelFor pf{Threads(threads)};
  const int64_t batch = idx.size();
  if (dtype == "float32") {
    py::array_t<float> out(out_shape);
    float* o = out.mutable_data();
    {
      py::gil_scoped_release release;
      GaussianImages<StoreFloat>(idx.data(), batch, n, c, mean.data(), stddev.data(), seed, o, pf);
    }
    return out;
  }
  Require(dtype == "float16" || dtype == "bfloat16", "dtype must be float32, float16 or bfloat16");
  // Returned as uint16 bit patterns; the Python wrapper views them.
  py::array_t<uint16_t> out(out_shape);
  uint16_t* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    if (dtype == "float16")
      GaussianImages<StoreHalf>(idx.data(), batch, n, c, mean.data(), stddev.data(), seed, o, pf);
    else
      GaussianImages<StoreBfloat16>(idx.data(), batch, n, c, mean.data(), stddev.data(), seed, o,
                                    pf);
  }
  return out;
}

py::array PhiloxBlocks(py::array_t<uint32_t, py::array::c_style | py::array::forcecast> counters,
                       uint32_t k0, uint32_t k1) {
  Require(counters.ndim() == 2 && counters.shape(1) == 4, "counters must have shape [n, 4]");
  py::array_t<uint32_t> out(Shape(counters));
  const uint32_t* c = counters.data();
  uint32_t* o = out.mutable_data();
  for (int64_t i = 0; i < counters.shape(0); ++i) {
    U32x4 w = Philox4x32(c[4 * i], c[4 * i + 1], c[4 * i + 2], c[4 * i + 3], k0, k1);
    for (int j = 0; j < 4; ++j) o[4 * i + j] = w.v[j];
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_rethinkgen_np, m) {
  m.doc() = "rethinkgen_tf's CPU randomization kernels on NumPy arrays.";
  // The CPU path is fixed here, when the module loads (cpu_path.h).
  const CpuPathChoice& path = ActiveCpuPathChoice();
  ActiveCpuKernels();
  if (!path.warning.empty() &&
      PyErr_WarnEx(PyExc_RuntimeWarning,
                   ("rethinkgen_tf.ops._rethinkgen_np: " + path.warning).c_str(), 1) != 0)
    throw py::error_already_set();
  m.def(
      "cpu_path", [] { return std::string(CpuPathName(ActiveCpuKernels().path)); },
      "The CPU code path this module runs: 'avx512', 'avx2' or 'generic' (fixed when "
      "the module loads; RETHINKGEN_CPU_PATH=generic|avx2|avx512|auto).");
  m.def("corrupt_labels", &CorruptLabels, py::arg("labels"), py::arg("indices"),
        py::arg("corrupt_prob"), py::arg("num_classes"), py::arg("seed"),
        py::arg("mode") = "uniform", py::arg("threads") = 0);
  m.def("permute_pixels", &Permute, py::arg("images"), py::arg("indices"), py::arg("seed"),
        py::arg("mode") = "per_example", py::arg("unit") = "position", py::arg("threads") = 0);
  m.def("gaussian_images", &Gaussian, py::arg("indices"), py::arg("seed"), py::arg("shape"),
        py::arg("mean"), py::arg("stddev"), py::arg("dtype") = "float32", py::arg("threads") = 0);
  m.attr("MAX_THREADS") = kMaxThreads;
  m.def("philox4x32", &PhiloxBlocks, py::arg("counters"), py::arg("k0"), py::arg("k1"));
}
