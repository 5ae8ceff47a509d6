// GPU side of the ops' kernels (randomize_kernels.h): the GPU functor
// specializations and REGISTER_KERNEL_BUILDER for DEVICE_GPU.  Argument
// reading, validation and output allocation are the OpKernel templates of
// randomize_kernels.h, the same code the CPU kernels run.
//
// Compiled by nvcc (csrc/build_cuda.py) only where a CUDA-enabled TensorFlow
// and nvcc are present; the functors call the TF-free launchers of
// rethinkgen/randomize_gpu.cuh (also compiled into the GPU harness,
// tests/gpu).  Scalars, the seed, the Gaussian shape and mean/stddev live in
// host memory (HostMemory below) and are validated on the host.  Labels in
// range and indices >= 0 are checked on the device by a reduction kernel
// whose result is copied back (one stream synchronization per call; on a
// bad entry, one more copy reads its value); mode "permute" synchronizes
// once more to read the number of selected examples.
#if GOOGLE_CUDA

#define EIGEN_USE_GPU

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "randomize_kernels.h"
#include "rethinkgen/randomize_gpu.cuh"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace tensorflow {
namespace rethinkgen_kernels {
namespace {

// allocate_temp-backed scratch for the launchers.  The tensors stay alive
// until the functor returns; TF's GPU allocator orders their reuse after the
// work already enqueued on the compute stream, like every other op's
// temporaries.
class TempScratch {
 public:
  explicit TempScratch(OpKernelContext* ctx) : ctx_(ctx) {}
  rethinkgen::gpu::ScratchFn Fn() {
    return [this](size_t bytes) -> void* {
      Tensor t;
      const int64_t n = static_cast<int64_t>(bytes > 0 ? bytes : 1);
      absl::Status s = ctx_->allocate_temp(DT_UINT8, TensorShape({n}), &t);
      if (!s.ok()) {
        status_ = s;
        return nullptr;
      }
      temps_.push_back(t);
      return t.flat<uint8_t>().data();
    };
  }
  const absl::Status& status() const { return status_; }

 private:
  OpKernelContext* ctx_;
  std::vector<Tensor> temps_;
  absl::Status status_;
};

absl::Status CudaStatus(cudaError_t e, const char* what, const TempScratch& s) {
  if (e == cudaSuccess) return absl::OkStatus();
  if (!s.status().ok()) return s.status();
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(e)));
}

// One element of a device array, read on the host (synchronizes the stream).
template <typename T>
absl::Status ReadElement(const GPUDevice& d, const T* p, int64_t* value) {
  T v{};
  cudaError_t e = cudaMemcpyAsync(&v, p, sizeof(T), cudaMemcpyDeviceToHost, d.stream());
  if (e == cudaSuccess) e = cudaStreamSynchronize(d.stream());
  if (e != cudaSuccess)
    return absl::InternalError(absl::StrCat("reading a bad entry: ", cudaGetErrorString(e)));
  *value = static_cast<int64_t>(v);
  return absl::OkStatus();
}

template <typename T>
struct GaussStoreFor;
template <>
struct GaussStoreFor<float> {
  using type = rethinkgen::gpu::GaussFloat;
};
template <>
struct GaussStoreFor<Eigen::half> {
  using type = rethinkgen::gpu::GaussHalf;
};
template <>
struct GaussStoreFor<bfloat16> {
  using type = rethinkgen::gpu::GaussBfloat16;
};

}  // namespace

namespace functor {

template <typename T, typename Idx>
struct FindBadEntries<GPUDevice, T, Idx> {
  absl::Status operator()(OpKernelContext* ctx, const GPUDevice& d, const T* labels,
                          int64_t num_classes, const Idx* indices, int64_t n,
                          rethinkgen_args::BadEntries* bad) const {
    TempScratch scratch(ctx);
    cudaError_t e = rethinkgen::gpu::Validate<T, Idx>(labels, num_classes, indices, n, d.stream(),
                                                      scratch.Fn(), &bad->label_at, &bad->index_at);
    TF_RETURN_IF_ERROR(CudaStatus(e, "validation kernel", scratch));
    if (bad->index_at >= 0)
      TF_RETURN_IF_ERROR(ReadElement(d, indices + bad->index_at, &bad->index));
    if (bad->label_at >= 0) TF_RETURN_IF_ERROR(ReadElement(d, labels + bad->label_at, &bad->label));
    return absl::OkStatus();
  }
};

template <typename T, typename Idx>
struct CorruptLabelsFunctor<GPUDevice, T, Idx> {
  absl::Status operator()(OpKernelContext* ctx, const GPUDevice& d, const T* labels,
                          const Idx* indices, int64_t n, const rethinkgen_args::LabelArgs& args,
                          bool permute, T* out, bool* contents_ok) const {
    TempScratch scratch(ctx);
    int64_t bad_label = -1, bad_index = -1;
    cudaError_t e = rethinkgen::gpu::Validate<T, Idx>(
        labels, args.num_classes, indices, n, d.stream(), scratch.Fn(), &bad_label, &bad_index);
    TF_RETURN_IF_ERROR(CudaStatus(e, "validation kernel", scratch));
    *contents_ok = bad_label < 0 && bad_index < 0;
    if (!*contents_ok) return absl::OkStatus();
    if (permute)  // n < 2^31, checked by the OpKernel
      e = rethinkgen::gpu::CorruptLabelsPermute<T, Idx>(labels, indices, n, args.p, args.seed, out,
                                                        d.stream(), scratch.Fn());
    else
      e = rethinkgen::gpu::CorruptLabelsUniform<T, Idx>(labels, indices, n, args.p,
                                                        static_cast<uint64_t>(args.num_classes),
                                                        args.seed, out, d.stream());
    return CudaStatus(e, "corrupt_labels kernel", scratch);
  }
};

template <typename E, typename Idx>
struct PermutePixelsFunctor<GPUDevice, E, Idx> {
  absl::Status operator()(OpKernelContext* ctx, const GPUDevice& d, const E* in, const Idx* indices,
                          const rethinkgen_args::PixelArgs& args, bool per_example, E* out) const {
    TempScratch scratch(ctx);
    cudaError_t e = rethinkgen::gpu::PermutePixels<E, Idx>(
        in, indices, args.batch, static_cast<uint32_t>(args.units),
        static_cast<uint32_t>(args.channels), args.seed, per_example, out, d.stream(),
        scratch.Fn());
    return CudaStatus(e, "permute_pixels kernel", scratch);
  }
};

template <typename T, typename Idx>
struct GaussianImagesFunctor<GPUDevice, T, Idx> {
  absl::Status operator()(OpKernelContext* ctx, const GPUDevice& d, const Idx* indices,
                          int64_t batch, const rethinkgen_args::GaussianArgs& args, T* out) const {
    using Store = typename GaussStoreFor<T>::type;
    TempScratch scratch(ctx);
    cudaError_t e = rethinkgen::gpu::GaussianImages<Store, Idx>(
        indices, batch, args.values, args.channels, args.mean, args.stddev, args.seed,
        reinterpret_cast<typename Store::Bits*>(out), d.stream(), scratch.Fn());
    return CudaStatus(e, "gaussian_images kernel", scratch);
  }
};

}  // namespace functor

#define RG_GPU_LABELS(T, Idx)                              \
  REGISTER_KERNEL_BUILDER(Name("RethinkgenCorruptLabels")  \
                              .Device(DEVICE_GPU)          \
                              .TypeConstraint<T>("T")      \
                              .TypeConstraint<Idx>("Tidx") \
                              .HostMemory("corrupt_prob")  \
                              .HostMemory("num_classes")   \
                              .HostMemory("seed"),         \
                          CorruptLabelsOp<GPUDevice, T, Idx>);
RG_GPU_LABELS(int32_t, int32_t)
RG_GPU_LABELS(int32_t, int64_t)
RG_GPU_LABELS(int64_t, int32_t)
RG_GPU_LABELS(int64_t, int64_t)

#define RG_GPU_PIXELS_IDX(T, Idx)                          \
  REGISTER_KERNEL_BUILDER(Name("RethinkgenPermutePixels")  \
                              .Device(DEVICE_GPU)          \
                              .TypeConstraint<T>("T")      \
                              .TypeConstraint<Idx>("Tidx") \
                              .HostMemory("seed"),         \
                          PermutePixelsOp<GPUDevice, T, Idx>);
#define RG_GPU_PIXELS(T) RG_GPU_PIXELS_IDX(T, int32_t) RG_GPU_PIXELS_IDX(T, int64_t)
RG_GPU_PIXELS(uint8_t)
RG_GPU_PIXELS(Eigen::half)
RG_GPU_PIXELS(bfloat16)
RG_GPU_PIXELS(float)
RG_GPU_PIXELS(double)

#define RG_GPU_GAUSS_IDX(T, Idx)                           \
  REGISTER_KERNEL_BUILDER(Name("RethinkgenGaussianImages") \
                              .Device(DEVICE_GPU)          \
                              .TypeConstraint<T>("dtype")  \
                              .TypeConstraint<Idx>("Tidx") \
                              .HostMemory("seed")          \
                              .HostMemory("shape")         \
                              .HostMemory("mean")          \
                              .HostMemory("stddev"),       \
                          GaussianImagesOp<GPUDevice, T, Idx>);
#define RG_GPU_GAUSS(T) RG_GPU_GAUSS_IDX(T, int32_t) RG_GPU_GAUSS_IDX(T, int64_t)
RG_GPU_GAUSS(float)
RG_GPU_GAUSS(Eigen::half)
RG_GPU_GAUSS(bfloat16)

}  // namespace rethinkgen_kernels
}  // namespace tensorflow

#endif  // GOOGLE_CUDA
