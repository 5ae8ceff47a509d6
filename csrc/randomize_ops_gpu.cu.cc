// TensorFlow GPU OpKernels for the ops registered in randomize_ops.cc.
//
// Compiled by nvcc (csrc/build_cuda.py) only where a CUDA-enabled TensorFlow
// and nvcc are present; the kernels themselves are the TF-free launchers of
// rethinkgen/randomize_gpu.cuh (also compiled into the GPU harness, tests/gpu).
// Scalars, the seed, the Gaussian shape and mean/stddev live in host memory
// (HostMemory below) and are validated on the host like the CPU kernels do.
// Labels-in-range and indices >= 0 are checked on the device by a reduction
// kernel whose result is copied back (one stream synchronization per call);
// mode "permute" synchronizes once more to read the number of selected
// examples.
#if GOOGLE_CUDA

#define EIGEN_USE_GPU

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "randomize_op_args.h"
#include "rethinkgen/randomize_gpu.cuh"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace tensorflow {
namespace {

using GPUDevice = Eigen::GpuDevice;

// allocate_temp-backed scratch for the launchers.  The tensors stay alive
// until Compute returns; TF's GPU allocator orders their reuse after the work
// already enqueued on the compute stream, like every other op's temporaries.
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

cudaStream_t StreamOf(OpKernelContext* ctx) {
  return ctx->eigen_device<GPUDevice>().stream();
}

// Device-side validation; returns InvalidArgument like the CPU kernels.
template <typename T, typename Idx>
absl::Status ValidateOnDevice(OpKernelContext* ctx, TempScratch* scratch,
                        const T* labels, int64_t num_classes,
                        const Idx* indices, int64_t n) {
  int64_t bad_label = -1, bad_index = -1;
  cudaError_t e = rethinkgen::gpu::Validate<T, Idx>(
      labels, num_classes, indices, n, StreamOf(ctx), scratch->Fn(),
      &bad_label, &bad_index);
  TF_RETURN_IF_ERROR(CudaStatus(e, "validation kernel", *scratch));
  if (bad_label >= 0)
    return absl::InvalidArgumentError(
        absl::StrCat("labels must be in [0, num_classes=", num_classes,
                     "), got a label outside at position ", bad_label));
  if (bad_index >= 0)
    return absl::InvalidArgumentError(absl::StrCat("indices must be >= 0, got a negative "
                                   "index at position ", bad_index));
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
template <typename T, typename Idx>
class GpuCorruptLabelsOp : public OpKernel {
 public:
  explicit GpuCorruptLabelsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string mode;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("mode", &mode));
    permute_ = mode == "permute";
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& labels = ctx->input(0);
    const Tensor& indices = ctx->input(1);
    rethinkgen_args::LabelArgs args;
    OP_REQUIRES_OK(ctx, rethinkgen_args::ReadLabelArgs(ctx, &args));
    const double p = args.p;
    const int64_t k = args.num_classes, seed = args.seed;
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, labels.shape(), &out));
    const int64_t n = labels.NumElements();
    if (n == 0) return;
    const T* lab = labels.flat<T>().data();
    const Idx* idx = indices.flat<Idx>().data();
    T* o = out->flat<T>().data();
    TempScratch scratch(ctx);
    OP_REQUIRES_OK(ctx, ValidateOnDevice<T, Idx>(ctx, &scratch, lab, k, idx, n));
    cudaError_t e;
    if (permute_) {
      OP_REQUIRES(ctx, n < (int64_t{1} << 31),
                  absl::InvalidArgumentError(absl::StrCat(
                      "permute mode on the GPU takes < 2^31 labels")));
      e = rethinkgen::gpu::CorruptLabelsPermute<T, Idx>(
          lab, idx, n, p, seed, o, StreamOf(ctx), scratch.Fn());
    } else {
      e = rethinkgen::gpu::CorruptLabelsUniform<T, Idx>(
          lab, idx, n, p, static_cast<uint64_t>(k), seed, o, StreamOf(ctx));
    }
    OP_REQUIRES_OK(ctx, CudaStatus(e, "corrupt_labels kernel", scratch));
  }

 private:
  bool permute_ = false;
};

// Element type of the same byte width, for moving image values.
template <int kBytes>
struct BitsOfWidth;
template <>
struct BitsOfWidth<1> { using type = uint8_t; };
template <>
struct BitsOfWidth<2> { using type = uint16_t; };
template <>
struct BitsOfWidth<4> { using type = uint32_t; };
template <>
struct BitsOfWidth<8> { using type = uint64_t; };

template <typename T, typename Idx>
class GpuPermutePixelsOp : public OpKernel {
 public:
  explicit GpuPermutePixelsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string mode, unit;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("mode", &mode));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("unit", &unit));
    per_example_ = mode == "per_example";
    per_value_ = unit == "value";
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& images = ctx->input(0);
    const Tensor& indices = ctx->input(1);
    rethinkgen_args::PixelArgs args;
    OP_REQUIRES_OK(ctx, rethinkgen_args::ReadPixelArgs(ctx, per_value_, &args));
    const int64_t batch = args.batch, units = args.units, c = args.channels;
    const int64_t seed = args.seed;
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, images.shape(), &out));
    TempScratch scratch(ctx);
    const Idx* idx = indices.flat<Idx>().data();
    if (batch > 0)
      OP_REQUIRES_OK(ctx, ValidateOnDevice<int32_t, Idx>(ctx, &scratch, nullptr,
                                                         0, idx, batch));
    if (images.NumElements() == 0) return;
    using E = typename BitsOfWidth<sizeof(T)>::type;
    const E* in = reinterpret_cast<const E*>(images.flat<T>().data());
    E* o = reinterpret_cast<E*>(out->flat<T>().data());
    cudaError_t e = rethinkgen::gpu::PermutePixels<E, Idx>(
        in, idx, batch, static_cast<uint32_t>(units), static_cast<uint32_t>(c),
        seed, per_example_, o, StreamOf(ctx), scratch.Fn());
    OP_REQUIRES_OK(ctx, CudaStatus(e, "permute_pixels kernel", scratch));
  }

 private:
  bool per_example_ = true;
  bool per_value_ = false;
};

template <typename T>
struct GaussStoreFor;
template <>
struct GaussStoreFor<float> { using type = rethinkgen::gpu::GaussFloat; };
template <>
struct GaussStoreFor<Eigen::half> { using type = rethinkgen::gpu::GaussHalf; };
template <>
struct GaussStoreFor<bfloat16> { using type = rethinkgen::gpu::GaussBfloat16; };

template <typename T, typename Idx>
class GpuGaussianImagesOp : public OpKernel {
 public:
  explicit GpuGaussianImagesOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& indices = ctx->input(0);
    rethinkgen_args::GaussianArgs args;
    OP_REQUIRES_OK(ctx, rethinkgen_args::ReadGaussianArgs(ctx, &args));
    const TensorShape& image_shape = args.image_shape;
    const int64_t N = args.values, c = args.channels, seed = args.seed;
    const float* mean = args.mean;
    const float* sd = args.stddev;
    TensorShape out_shape = indices.shape();
    OP_REQUIRES_OK(ctx, out_shape.AppendShapeWithStatus(image_shape));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &out));
    const int64_t batch = indices.NumElements();
    if (batch == 0) return;
    TempScratch scratch(ctx);
    const Idx* idx = indices.flat<Idx>().data();
    OP_REQUIRES_OK(ctx, ValidateOnDevice<int32_t, Idx>(ctx, &scratch, nullptr,
                                                       0, idx, batch));
    using Store = typename GaussStoreFor<T>::type;
    cudaError_t e = rethinkgen::gpu::GaussianImages<Store, Idx>(
        idx, batch, N, c, mean, sd, seed,
        reinterpret_cast<typename Store::Bits*>(out->flat<T>().data()),
        StreamOf(ctx), scratch.Fn());
    OP_REQUIRES_OK(ctx, CudaStatus(e, "gaussian_images kernel", scratch));
  }
};

#define RG_GPU_LABELS(T, Idx)                                   \
  REGISTER_KERNEL_BUILDER(Name("RethinkgenCorruptLabels")       \
                              .Device(DEVICE_GPU)               \
                              .TypeConstraint<T>("T")           \
                              .TypeConstraint<Idx>("Tidx")      \
                              .HostMemory("corrupt_prob")       \
                              .HostMemory("num_classes")        \
                              .HostMemory("seed"),              \
                          GpuCorruptLabelsOp<T, Idx>);
RG_GPU_LABELS(int32_t, int32_t)
RG_GPU_LABELS(int32_t, int64_t)
RG_GPU_LABELS(int64_t, int32_t)
RG_GPU_LABELS(int64_t, int64_t)

#define RG_GPU_PIXELS_IDX(T, Idx)                               \
  REGISTER_KERNEL_BUILDER(Name("RethinkgenPermutePixels")       \
                              .Device(DEVICE_GPU)               \
                              .TypeConstraint<T>("T")           \
                              .TypeConstraint<Idx>("Tidx")      \
                              .HostMemory("seed"),              \
                          GpuPermutePixelsOp<T, Idx>);
#define RG_GPU_PIXELS(T) \
  RG_GPU_PIXELS_IDX(T, int32_t) RG_GPU_PIXELS_IDX(T, int64_t)
RG_GPU_PIXELS(uint8_t)
RG_GPU_PIXELS(Eigen::half)
RG_GPU_PIXELS(bfloat16)
RG_GPU_PIXELS(float)
RG_GPU_PIXELS(double)

#define RG_GPU_GAUSS_IDX(T, Idx)                                \
  REGISTER_KERNEL_BUILDER(Name("RethinkgenGaussianImages")      \
                              .Device(DEVICE_GPU)               \
                              .TypeConstraint<T>("dtype")       \
                              .TypeConstraint<Idx>("Tidx")      \
                              .HostMemory("seed")               \
                              .HostMemory("shape")              \
                              .HostMemory("mean")               \
                              .HostMemory("stddev"),            \
                          GpuGaussianImagesOp<T, Idx>);
#define RG_GPU_GAUSS(T) RG_GPU_GAUSS_IDX(T, int32_t) RG_GPU_GAUSS_IDX(T, int64_t)
RG_GPU_GAUSS(float)
RG_GPU_GAUSS(Eigen::half)
RG_GPU_GAUSS(bfloat16)

}  // namespace
}  // namespace tensorflow

#endif  // GOOGLE_CUDA
