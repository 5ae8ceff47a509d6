// pybind11 wrapper of harness.h: module `rg_harness` (built by
// tests/gpu/build_harness.py, for either backend).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "harness.h"

namespace py = pybind11;

namespace {

void Check(const std::string& msg) {
  if (!msg.empty()) throw std::invalid_argument(msg);
}

int IntBytes(const py::array& a, const char* name) {
  if (a.dtype().kind() == 'i' && (a.itemsize() == 4 || a.itemsize() == 8))
    return static_cast<int>(a.itemsize());
  throw std::invalid_argument(std::string(name) + " must be int32 or int64");
}

py::array CorruptLabels(py::array labels, py::array indices, double p,
                        int64_t k, int64_t seed, const std::string& mode) {
  labels = py::array::ensure(labels, py::array::c_style);
  indices = py::array::ensure(indices, py::array::c_style);
  const int lb = IntBytes(labels, "labels"), ib = IntBytes(indices, "indices");
  if (labels.size() != indices.size())
    throw std::invalid_argument("labels and indices must have the same size");
  if (mode != "uniform" && mode != "permute")
    throw std::invalid_argument("mode must be uniform or permute");
  py::array out(labels.dtype(),
                std::vector<py::ssize_t>(labels.shape(),
                                         labels.shape() + labels.ndim()));
  const int64_t n = labels.size();
  std::string m;
  {
    py::gil_scoped_release nogil;
    m = harness::CorruptLabels(lb, labels.data(), ib, indices.data(), n, p, k, seed, mode == "permute",
                               out.mutable_data());
  }
  Check(m);
  return out;
}

// images: [B, P, C] contiguous of 1/2/4/8-byte elements (any dtype).
py::array PermutePixels(py::array images, py::array indices, int64_t seed,
                        bool per_example, int64_t P, int64_t C) {
  images = py::array::ensure(images, py::array::c_style);
  indices = py::array::ensure(indices, py::array::c_style);
  const int ib = IntBytes(indices, "indices");
  const int64_t batch = indices.size();
  if (P < 1 || C < 1 || images.size() != batch * P * C)
    throw std::invalid_argument("images.size must equal batch * P * C");
  py::array out(images.dtype(),
                std::vector<py::ssize_t>(images.shape(),
                                         images.shape() + images.ndim()));
  const int eb = static_cast<int>(images.itemsize());
  std::string m;
  {
    py::gil_scoped_release nogil;
    m = harness::PermutePixels(eb, images.data(), ib, indices.data(), batch,
                               static_cast<uint32_t>(P),
                               static_cast<uint32_t>(C), seed, per_example,
                               out.mutable_data());
  }
  Check(m);
  return out;
}

py::array_t<uint32_t> Permutations(py::array_t<int64_t, py::array::c_style |
                                                            py::array::forcecast>
                                       indices,
                                   int64_t n, int64_t seed, uint32_t purpose) {
  const int64_t batch = indices.size();
  py::array_t<uint32_t> out({batch, n});
  std::string m;
  {
    py::gil_scoped_release nogil;
    m = harness::Permutations(indices.data(), batch,
                              static_cast<uint32_t>(n), seed, purpose,
                              out.mutable_data());
  }
  Check(m);
  return out;
}

// Returns float32 values (dtype 0) or uint16 bit patterns (1 half, 2 bf16).
py::array GaussianImages(py::array indices, int64_t seed, int64_t N,
                         py::array_t<float, py::array::c_style |
                                                py::array::forcecast>
                             mean,
                         py::array_t<float, py::array::c_style |
                                                py::array::forcecast>
                             stddev,
                         int dtype) {
  indices = py::array::ensure(indices, py::array::c_style);
  const int ib = IntBytes(indices, "indices");
  const int64_t C = mean.size();
  if (C < 1 || stddev.size() != C || N % C != 0)
    throw std::invalid_argument("mean/stddev must have length C, N % C == 0");
  const int64_t batch = indices.size();
  py::array out = dtype == 0 ? py::array(py::array_t<float>({batch, N}))
                             : py::array(py::array_t<uint16_t>({batch, N}));
  std::string m;
  {
    py::gil_scoped_release nogil;
    m = harness::GaussianImages(dtype, ib, indices.data(), batch, N, C,
                                mean.data(), stddev.data(), seed,
                                out.mutable_data());
  }
  Check(m);
  return out;
}

// Device-pointer variants (cuda backend): pointers as ints (torch data_ptr()).
void DevCorruptLabels(uintptr_t labels, int lb, uintptr_t indices, int ib,
                      int64_t n, double p, int64_t k, int64_t seed,
                      bool permute, uintptr_t out) {
  Check(harness::CorruptLabels(lb, reinterpret_cast<const void*>(labels), ib,
                               reinterpret_cast<const void*>(indices), n, p, k,
                               seed, permute, reinterpret_cast<void*>(out),
                               true));
}

void DevPermutePixels(uintptr_t in, int eb, uintptr_t indices, int ib,
                      int64_t batch, int64_t P, int64_t C, int64_t seed,
                      bool per_example, uintptr_t out) {
  Check(harness::PermutePixels(eb, reinterpret_cast<const void*>(in), ib,
                               reinterpret_cast<const void*>(indices), batch,
                               static_cast<uint32_t>(P),
                               static_cast<uint32_t>(C), seed, per_example,
                               reinterpret_cast<void*>(out), true));
}

void DevGaussianImages(uintptr_t indices, int ib, int64_t batch, int64_t N,
                       py::array_t<float, py::array::c_style |
                                              py::array::forcecast>
                           mean,
                       py::array_t<float, py::array::c_style |
                                              py::array::forcecast>
                           stddev,
                       int64_t seed, int dtype, uintptr_t out) {
  Check(harness::GaussianImages(dtype, ib, reinterpret_cast<const void*>(indices),
                                batch, N, mean.size(),
                                mean.data(), stddev.data(), seed,
                                reinterpret_cast<void*>(out), true));
}

}  // namespace

PYBIND11_MODULE(rg_harness, m) {
  m.doc() = "TF-free harness of the rethinkgen CUDA kernels (cuda or cpu backend)";
  m.def("backend", [] { return std::string(harness::Backend()); });
  m.def("device_name", &harness::DeviceName);
  m.def("synchronize", [] { Check(harness::Synchronize()); });
  m.def("set_validate", &harness::SetValidate);
  m.def("corrupt_labels", &CorruptLabels);
  m.def("permute_pixels", &PermutePixels);
  m.def("permutations", &Permutations);
  m.def("gaussian_images", &GaussianImages);
  m.def("dev_corrupt_labels", &DevCorruptLabels);
  m.def("dev_permute_pixels", &DevPermutePixels);
  m.def("dev_gaussian_images", &DevGaussianImages);
}
