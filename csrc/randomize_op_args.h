// Host-side reading and validation of the ops' arguments, for every device:
// the OpKernel templates of randomize_kernels.h call these once, whatever
// device the kernel runs on.  Every error is an InvalidArgument naming the
// argument.  What depends on the tensors' contents (labels in range,
// indices >= 0) is found by each device's functor where the data lives (on
// the host for CPU, by a reduction kernel on the GPU) and worded here
// (BadEntriesStatus), so both devices report it alike.
#ifndef RETHINKGEN_RANDOMIZE_OP_ARGS_H_
#define RETHINKGEN_RANDOMIZE_OP_ARGS_H_

#include <cmath>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "rethinkgen/randomize.h"

namespace tensorflow {
namespace rethinkgen_args {

template <typename T>
absl::Status Scalar(OpKernelContext* ctx, int i, const char* name, T* v) {
  const Tensor& t = ctx->input(i);
  if (!TensorShapeUtils::IsScalar(t.shape()))
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be a scalar, got shape ", t.shape().DebugString()));
  *v = t.scalar<T>()();
  return absl::OkStatus();
}

// RethinkgenCorruptLabels: labels (0), indices (1), corrupt_prob (2),
// num_classes (3), seed (4).
struct LabelArgs {
  double p = 0;
  int64_t num_classes = 0;
  int64_t seed = 0;
};

inline absl::Status ReadLabelArgs(OpKernelContext* ctx, bool permute, LabelArgs* a) {
  TF_RETURN_IF_ERROR(Scalar<double>(ctx, 2, "corrupt_prob", &a->p));
  TF_RETURN_IF_ERROR(Scalar<int64_t>(ctx, 3, "num_classes", &a->num_classes));
  TF_RETURN_IF_ERROR(Scalar<int64_t>(ctx, 4, "seed", &a->seed));
  const Tensor& labels = ctx->input(0);
  const Tensor& indices = ctx->input(1);
  if (labels.shape() != indices.shape())
    return absl::InvalidArgumentError(
        absl::StrCat("labels and indices must have the same shape, got ",
                     labels.shape().DebugString(), " and ", indices.shape().DebugString()));
  if (!rethinkgen::IsProbability(a->p))  // also rejects NaN
    return absl::InvalidArgumentError(absl::StrCat("corrupt_prob must be in [0, 1], got ", a->p));
  if (a->num_classes < 1 || a->num_classes > (int64_t{1} << 32))
    return absl::InvalidArgumentError(
        absl::StrCat("num_classes must be in [1, 2^32], got ", a->num_classes));
  if (permute && labels.NumElements() >= rethinkgen::kMaxPermuteLabels)
    return absl::InvalidArgumentError(
        absl::StrCat(rethinkgen::kPermuteLabelsRule, ", got ", labels.NumElements()));
  return absl::OkStatus();
}

// The contents rules.  Each device's FindBadEntries functor fills this in;
// the first negative index is reported before the first bad label.
struct BadEntries {
  int64_t index_at = -1;  // first position with indices[i] < 0, or -1
  int64_t index = 0;      // indices[index_at]
  int64_t label_at = -1;  // first position with labels[i] outside [0, K), or -1
  int64_t label = 0;      // labels[label_at]
  bool any() const { return index_at >= 0 || label_at >= 0; }
};

inline absl::Status BadEntriesStatus(const BadEntries& b, int64_t num_classes) {
  if (b.index_at >= 0)
    return absl::InvalidArgumentError(
        absl::StrCat("indices must be >= 0, got indices[", b.index_at, "] = ", b.index));
  if (b.label_at >= 0)
    return absl::InvalidArgumentError(
        absl::StrCat("labels must be in [0, num_classes=", num_classes, "), got labels[",
                     b.label_at, "] = ", b.label));
  return absl::OkStatus();
}

// RethinkgenPermutePixels: images (0) [..., H, W, C], indices (1), seed (2).
struct PixelArgs {
  TensorShape batch_shape;
  int64_t batch = 0;
  int64_t units = 0;     // positions (H*W) or values (H*W*C) permuted
  int64_t channels = 0;  // elements moved with each unit
  int64_t seed = 0;
};

inline absl::Status ReadPixelArgs(OpKernelContext* ctx, bool per_value, PixelArgs* a) {
  TF_RETURN_IF_ERROR(Scalar<int64_t>(ctx, 2, "seed", &a->seed));
  const Tensor& images = ctx->input(0);
  const int rank = images.dims();
  if (rank < 3)
    return absl::InvalidArgumentError(
        absl::StrCat("images must have shape [..., H, W, C], got ", images.shape().DebugString()));
  for (int d = 0; d < rank - 3; ++d)
    TF_RETURN_IF_ERROR(a->batch_shape.AddDimWithStatus(images.dim_size(d)));
  if (ctx->input(1).shape() != a->batch_shape)
    return absl::InvalidArgumentError(
        absl::StrCat("indices must have shape images.shape[:-3] = ", a->batch_shape.DebugString(),
                     ", got ", ctx->input(1).shape().DebugString()));
  a->batch = a->batch_shape.num_elements();
  a->units = images.dim_size(rank - 3) * images.dim_size(rank - 2);
  a->channels = images.dim_size(rank - 1);
  if (per_value) {
    a->units *= a->channels;
    a->channels = 1;
  }
  if (a->units >= (int64_t{1} << 32) || a->channels >= (int64_t{1} << 32))
    return absl::InvalidArgumentError("images have more than 2^32 pixels or channels");
  return absl::OkStatus();
}

// RethinkgenGaussianImages: indices (0), seed (1), shape (2), mean (3),
// stddev (4).
struct GaussianArgs {
  TensorShape image_shape;
  int64_t values = 0;    // H*W*C
  int64_t channels = 0;  // C
  int64_t seed = 0;
  const float* mean = nullptr;
  const float* stddev = nullptr;
};

inline absl::Status ReadGaussianArgs(OpKernelContext* ctx, GaussianArgs* a) {
  TF_RETURN_IF_ERROR(Scalar<int64_t>(ctx, 1, "seed", &a->seed));
  const Tensor& shape_t = ctx->input(2);
  const Tensor& mean_t = ctx->input(3);
  const Tensor& std_t = ctx->input(4);
  if (!TensorShapeUtils::IsVector(shape_t.shape()) || shape_t.NumElements() < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("shape must be a non-empty vector like [H, W, C], got shape ",
                     shape_t.shape().DebugString()));
  auto s = shape_t.vec<int64_t>();
  for (int i = 0; i < s.size(); ++i) {
    if (s(i) < 1)
      return absl::InvalidArgumentError(
          absl::StrCat("shape entries must be >= 1, got shape[", i, "] = ", s(i)));
    TF_RETURN_IF_ERROR(a->image_shape.AddDimWithStatus(s(i)));
  }
  a->channels = s(s.size() - 1);
  a->values = a->image_shape.num_elements();
  if ((a->values + 3) / 4 >= (int64_t{1} << 32))  // Philox block counter
    return absl::InvalidArgumentError("images have more than 2^34 values");
  if (!TensorShapeUtils::IsVector(mean_t.shape()) || mean_t.NumElements() != a->channels ||
      !TensorShapeUtils::IsVector(std_t.shape()) || std_t.NumElements() != a->channels)
    return absl::InvalidArgumentError(absl::StrCat(
        "mean and stddev must be vectors of length C = shape[-1] = ", a->channels, ", got shapes ",
        mean_t.shape().DebugString(), " and ", std_t.shape().DebugString()));
  a->mean = mean_t.flat<float>().data();
  a->stddev = std_t.flat<float>().data();
  for (int64_t i = 0; i < a->channels; ++i) {
    if (!std::isfinite(a->mean[i]))
      return absl::InvalidArgumentError(absl::StrCat("mean[", i, "] is not finite"));
    if (!std::isfinite(a->stddev[i]) || a->stddev[i] < 0)
      return absl::InvalidArgumentError(
          absl::StrCat("stddev[", i, "] must be finite and >= 0, got ", a->stddev[i]));
  }
  return absl::OkStatus();
}

}  // namespace rethinkgen_args
}  // namespace tensorflow

#endif  // RETHINKGEN_RANDOMIZE_OP_ARGS_H_
