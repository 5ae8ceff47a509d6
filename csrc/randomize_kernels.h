// The ops' kernels, in TensorFlow's custom-op layout: one OpKernel class
// template per op, parameterized by the device, reads and checks the
// arguments (randomize_op_args.h) and allocates the output once, for every
// device; the arithmetic is done by per-device functors declared here:
//   CPU specializations   randomize_kernels.cc (+ REGISTER_KERNEL_BUILDER
//                         for DEVICE_CPU), on rethinkgen/randomize_cpu.h;
//   GPU specializations   randomize_ops_gpu.cu.cc, only under GOOGLE_CUDA
//                         (+ REGISTER_KERNEL_BUILDER for DEVICE_GPU), on
//                         rethinkgen/randomize_gpu.cuh.
// The ops themselves (REGISTER_OP, shape functions) are in randomize_ops.cc.
//
// Contents checks (indices >= 0, labels in [0, num_classes)) need the data,
// so the functors do them on their device: FindBadEntries finds the first
// bad entries, and the kernels word the error (BadEntriesStatus), the same
// for every device.  CorruptLabelsFunctor checks the contents itself (on the
// CPU, uniform mode checks while it draws) and only reports whether they
// passed; the kernel then names the bad entry through FindBadEntries.
#ifndef RETHINKGEN_RANDOMIZE_KERNELS_H_
#define RETHINKGEN_RANDOMIZE_KERNELS_H_

#include <cstdint>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "randomize_op_args.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.h"

namespace tensorflow {
namespace rethinkgen_kernels {

using CPUDevice = Eigen::ThreadPoolDevice;
using GPUDevice = Eigen::GpuDevice;

// An unsigned type of T's byte width: image values are moved as bits.
template <typename T>
using BitsOf =
    std::conditional_t<sizeof(T) == 1, uint8_t,
                       std::conditional_t<sizeof(T) == 2, uint16_t,
                                          std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>>>;
static_assert(sizeof(BitsOf<double>) == 8 && sizeof(BitsOf<uint8_t>) == 1,
              "BitsOf has T's byte width");

namespace functor {

// First negative index and first label outside [0, num_classes) (labels may
// be null: indices only), with their values, in *bad.  n >= 0.
template <typename Device, typename T, typename Idx>
struct FindBadEntries {
  absl::Status operator()(OpKernelContext* ctx, const Device& d, const T* labels,
                          int64_t num_classes, const Idx* indices, int64_t n,
                          rethinkgen_args::BadEntries* bad) const;
};

// out = the corrupted labels (n >= 1, arguments checked).  Checks the
// contents first or while drawing: *contents_ok = false means a bad entry
// was found and out is unspecified.  A non-OK status is the device's own
// failure (memory, CUDA).
template <typename Device, typename T, typename Idx>
struct CorruptLabelsFunctor {
  absl::Status operator()(OpKernelContext* ctx, const Device& d, const T* labels,
                          const Idx* indices, int64_t n, const rethinkgen_args::LabelArgs& args,
                          bool permute, T* out, bool* contents_ok) const;
};

// out = the permuted images, moved as bits E (a non-empty batch; indices
// already checked).
template <typename Device, typename E, typename Idx>
struct PermutePixelsFunctor {
  absl::Status operator()(OpKernelContext* ctx, const Device& d, const E* in, const Idx* indices,
                          const rethinkgen_args::PixelArgs& args, bool per_example, E* out) const;
};

// out = one Gaussian image per index (batch >= 1; indices already checked).
template <typename Device, typename T, typename Idx>
struct GaussianImagesFunctor {
  absl::Status operator()(OpKernelContext* ctx, const Device& d, const Idx* indices, int64_t batch,
                          const rethinkgen_args::GaussianArgs& args, T* out) const;
};

}  // namespace functor

// InvalidArgument for the first bad entry (FindBadEntries on Device).
template <typename Device, typename T, typename Idx>
absl::Status CheckContents(OpKernelContext* ctx, const T* labels, int64_t num_classes,
                           const Idx* indices, int64_t n) {
  if (n <= 0) return absl::OkStatus();
  rethinkgen_args::BadEntries bad;
  TF_RETURN_IF_ERROR(functor::FindBadEntries<Device, T, Idx>()(
      ctx, ctx->eigen_device<Device>(), labels, num_classes, indices, n, &bad));
  return rethinkgen_args::BadEntriesStatus(bad, num_classes);
}

// Whether the op's string attribute `name` is `value` (the ops' mode switches;
// false, with the failure recorded in ctx, if the attribute cannot be read).
inline bool AttrIs(OpKernelConstruction* ctx, const char* name, const char* value) {
  std::string attr;
  const absl::Status status = ctx->GetAttr(name, &attr);
  if (!status.ok()) ctx->CtxFailure(status);
  return status.ok() && attr == value;
}

// ---------------------------------------------------------------------------
// RethinkgenCorruptLabels
template <typename Device, typename T, typename Idx>
class CorruptLabelsOp : public OpKernel {
 public:
  explicit CorruptLabelsOp(OpKernelConstruction* ctx)
      : OpKernel(ctx), permute_(AttrIs(ctx, "mode", "permute")) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& labels = ctx->input(0);
    rethinkgen_args::LabelArgs args;
    OP_REQUIRES_OK(ctx, rethinkgen_args::ReadLabelArgs(ctx, permute_, &args));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, labels.shape(), &out));
    const int64_t n = labels.NumElements();
    if (n == 0) return;
    const T* lab = labels.flat<T>().data();
    const Idx* idx = ctx->input(1).flat<Idx>().data();
    bool contents_ok = true;
    OP_REQUIRES_OK(ctx, functor::CorruptLabelsFunctor<Device, T, Idx>()(
                            ctx, ctx->eigen_device<Device>(), lab, idx, n, args, permute_,
                            out->flat<T>().data(), &contents_ok));
    if (contents_ok) return;
    const absl::Status named = CheckContents<Device, T, Idx>(ctx, lab, args.num_classes, idx, n);
    OP_REQUIRES_OK(ctx, named);
    ctx->CtxFailure(
        absl::InternalError("corrupt_labels: the kernel rejected inputs that the checks accept"));
  }

 private:
  bool permute_ = false;
};

// RethinkgenPermutePixels
template <typename Device, typename T, typename Idx>
class PermutePixelsOp : public OpKernel {
 public:
  explicit PermutePixelsOp(OpKernelConstruction* ctx)
      : OpKernel(ctx),
        per_example_(AttrIs(ctx, "mode", "per_example")),
        per_value_(AttrIs(ctx, "unit", "value")) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& images = ctx->input(0);
    const Tensor& indices = ctx->input(1);
    rethinkgen_args::PixelArgs args;
    OP_REQUIRES_OK(ctx, rethinkgen_args::ReadPixelArgs(ctx, per_value_, &args));
    const Idx* idx = indices.flat<Idx>().data();
    OP_REQUIRES_OK(ctx, (CheckContents<Device, int32_t, Idx>(ctx, nullptr, 0, idx, args.batch)));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, images.shape(), &out));
    if (images.NumElements() == 0) return;
    using E = BitsOf<T>;
    OP_REQUIRES_OK(ctx, functor::PermutePixelsFunctor<Device, E, Idx>()(
                            ctx, ctx->eigen_device<Device>(),
                            reinterpret_cast<const E*>(images.flat<T>().data()), idx, args,
                            per_example_, reinterpret_cast<E*>(out->flat<T>().data())));
  }

 private:
  bool per_example_ = true;
  bool per_value_ = false;
};

// RethinkgenGaussianImages
template <typename Device, typename T, typename Idx>
class GaussianImagesOp : public OpKernel {
 public:
  explicit GaussianImagesOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& indices = ctx->input(0);
    rethinkgen_args::GaussianArgs args;
    OP_REQUIRES_OK(ctx, rethinkgen_args::ReadGaussianArgs(ctx, &args));
    const int64_t batch = indices.NumElements();
    const Idx* idx = indices.flat<Idx>().data();
    OP_REQUIRES_OK(ctx, (CheckContents<Device, int32_t, Idx>(ctx, nullptr, 0, idx, batch)));
    TensorShape out_shape = indices.shape();
    OP_REQUIRES_OK(ctx, out_shape.AppendShapeWithStatus(args.image_shape));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &out));
    if (batch == 0) return;  // (shape entries are >= 1: nothing else empties)
    OP_REQUIRES_OK(
        ctx, functor::GaussianImagesFunctor<Device, T, Idx>()(ctx, ctx->eigen_device<Device>(), idx,
                                                              batch, args, out->flat<T>().data()));
  }
};

}  // namespace rethinkgen_kernels
}  // namespace tensorflow

#endif  // RETHINKGEN_RANDOMIZE_KERNELS_H_
