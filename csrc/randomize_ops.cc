// TensorFlow ops for the randomizations (semantics: rethinkgen/randomize.h).
// Op registration, shape functions, input validation, and the CPU kernels:
// thin glue around the TF-free drivers in rethinkgen/randomize_cpu.h.
#include <cmath>
#include <string>

#include "randomize_op_args.h"
#include "rethinkgen/randomize_cpu.h"
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

namespace tensorflow {
namespace {

using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;

REGISTER_OP("RethinkgenCorruptLabels")
    .Input("labels: T")
    .Input("indices: Tidx")
    .Input("corrupt_prob: float64")
    .Input("num_classes: int64")
    .Input("seed: int64")
    .Output("output: T")
    .Attr("T: {int32, int64}")
    .Attr("Tidx: {int32, int64} = DT_INT64")
    .Attr("mode: {'uniform', 'permute'} = 'uniform'")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle s;
      TF_RETURN_IF_ERROR(c->Merge(c->input(0), c->input(1), &s));
      for (int i = 2; i < 5; ++i)
        TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 0, &s));
      c->set_output(0, c->input(0));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Replaces each label, with probability corrupt_prob, by a uniformly drawn class
in [0, num_classes) (mode "uniform"), or shuffles the labels of the selected
examples among themselves (mode "permute"). Deterministic in (seed, index).
)doc");

REGISTER_OP("RethinkgenPermutePixels")
    .Input("images: T")
    .Input("indices: Tidx")
    .Input("seed: int64")
    .Output("output: T")
    .Attr("T: {uint8, half, bfloat16, float, double}")
    .Attr("Tidx: {int32, int64} = DT_INT64")
    .Attr("mode: {'shared', 'per_example'} = 'per_example'")
    .Attr("unit: {'position', 'value'} = 'position'")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle images, batch, s;
      TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 3, &images));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 0, &s));
      if (c->RankKnown(images)) {
        TF_RETURN_IF_ERROR(c->Subshape(images, 0, -3, &batch));
        TF_RETURN_IF_ERROR(c->Merge(batch, c->input(1), &s));
      }
      c->set_output(0, c->input(0));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Permutes the H*W positions (or all H*W*C values) of each image [..., H, W, C]:
one permutation for all images (mode "shared") or one per example index.
)doc");

REGISTER_OP("RethinkgenGaussianImages")
    .Input("indices: Tidx")
    .Input("seed: int64")
    .Input("shape: int64")
    .Input("mean: float")
    .Input("stddev: float")
    .Output("output: dtype")
    .Attr("dtype: {half, bfloat16, float} = DT_FLOAT")
    .Attr("Tidx: {int32, int64} = DT_INT64")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle s, image, out;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 0, &s));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 1, &s));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 1, &s));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(4), 1, &s));
      TF_RETURN_IF_ERROR(c->MakeShapeFromShapeTensor(2, &image));
      TF_RETURN_IF_ERROR(c->Concatenate(c->input(0), image, &out));
      c->set_output(0, out);
      return absl::OkStatus();
    })
    .Doc(R"doc(
One Gaussian image of the given shape [H, W, C] per example index, with
per-channel mean and stddev; float32 Box-Muller, no clipping.
)doc");

// ---------------------------------------------------------------------------
// Work sharder as the drivers' ParallelFor.
struct TfParallelFor {
  OpKernelContext* ctx;
  void operator()(int64_t total, int64_t cost,
                  const rethinkgen::RangeFn& fn) const {
    auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
    Shard(workers->num_threads, workers->workers, total, cost, fn);
  }
};

template <typename Idx>
Status CheckIndices(const Tensor& indices) {
  auto flat = indices.flat<Idx>();
  const int64_t bad = rethinkgen::FirstNegative(flat.data(), flat.size());
  if (bad >= 0)
    return errors::InvalidArgument("indices must be >= 0, got indices[", bad,
                                   "] = ", static_cast<int64_t>(flat(bad)));
  return absl::OkStatus();
}

template <typename T, typename Idx>
class CorruptLabelsOp : public OpKernel {
 public:
  explicit CorruptLabelsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
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
    if (permute_) {
      OP_REQUIRES_OK(ctx, CheckLabelInputs(labels, indices, k));
      OP_REQUIRES(ctx, n < (int64_t{1} << 32),
                  errors::InvalidArgument("permute mode takes < 2^32 labels"));
      rethinkgen::CorruptLabelsPermute(lab, idx, n, p, seed, o,
                                       TfParallelFor{ctx});
    } else if (!rethinkgen::CorruptLabelsUniform(lab, idx, n, p,
                                                 static_cast<uint64_t>(k), seed,
                                                 o, TfParallelFor{ctx})) {
      // The draw loop validates as it goes; name the first bad entry.
      OP_REQUIRES_OK(ctx, CheckLabelInputs(labels, indices, k));
      ctx->CtxFailure(errors::Internal(
          "corrupt_labels: the draw loop rejected inputs that the checks accept"));
    }
  }

 private:
  static Status CheckLabelInputs(const Tensor& labels, const Tensor& indices,
                                 int64_t k) {
    TF_RETURN_IF_ERROR(CheckIndices<Idx>(indices));
    auto lab = labels.flat<T>();
    const int64_t bad = rethinkgen::FirstOutsideRange(lab.data(), lab.size(), k);
    if (bad >= 0)
      return errors::InvalidArgument(
          "labels must be in [0, num_classes=", k, "), got labels[", bad,
          "] = ", static_cast<int64_t>(lab(bad)));
    return absl::OkStatus();
  }

  bool permute_ = false;
};

// Element type of the same width, for moving image values.
template <typename T>
struct Bits;
template <>
struct Bits<uint8> { using type = uint8_t; };
template <>
struct Bits<Eigen::half> { using type = uint16_t; };
template <>
struct Bits<bfloat16> { using type = uint16_t; };
template <>
struct Bits<float> { using type = uint32_t; };
template <>
struct Bits<double> { using type = uint64_t; };

template <typename T, typename Idx>
class PermutePixelsOp : public OpKernel {
 public:
  explicit PermutePixelsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
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
    OP_REQUIRES_OK(ctx, CheckIndices<Idx>(indices));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, images.shape(), &out));
    if (images.NumElements() == 0) return;
    using E = typename Bits<T>::type;
    const E* in = reinterpret_cast<const E*>(images.flat<T>().data());
    E* o = reinterpret_cast<E*>(out->flat<T>().data());
    rethinkgen::PermutePixels(in, indices.flat<Idx>().data(), args.batch,
                              static_cast<uint32_t>(args.units), args.channels,
                              args.seed, per_example_, o, TfParallelFor{ctx});
  }

 private:
  bool per_example_ = true;
  bool per_value_ = false;
};

template <typename T>
struct StoreFor;
template <>
struct StoreFor<float> { using type = rethinkgen::StoreFloat; };
template <>
struct StoreFor<Eigen::half> { using type = rethinkgen::StoreHalf; };
template <>
struct StoreFor<bfloat16> { using type = rethinkgen::StoreBfloat16; };

template <typename T, typename Idx>
class GaussianImagesOp : public OpKernel {
 public:
  explicit GaussianImagesOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& indices = ctx->input(0);
    rethinkgen_args::GaussianArgs args;
    OP_REQUIRES_OK(ctx, rethinkgen_args::ReadGaussianArgs(ctx, &args));
    OP_REQUIRES_OK(ctx, CheckIndices<Idx>(indices));
    TensorShape out_shape = indices.shape();
    OP_REQUIRES_OK(ctx, out_shape.AppendShapeWithStatus(args.image_shape));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &out));
    if (out->NumElements() == 0) return;
    using Store = typename StoreFor<T>::type;
    rethinkgen::GaussianImages<Store>(
        indices.flat<Idx>().data(), indices.NumElements(), args.values,
        args.channels, args.mean, args.stddev, args.seed,
        reinterpret_cast<typename Store::Bits*>(out->flat<T>().data()),
        TfParallelFor{ctx});
  }
};

#define REGISTER_LABELS(T, Idx)                                 \
  REGISTER_KERNEL_BUILDER(Name("RethinkgenCorruptLabels")       \
                              .Device(DEVICE_CPU)               \
                              .TypeConstraint<T>("T")           \
                              .TypeConstraint<Idx>("Tidx"),     \
                          CorruptLabelsOp<T, Idx>);
REGISTER_LABELS(int32, int32)
REGISTER_LABELS(int32, int64_t)
REGISTER_LABELS(int64_t, int32)
REGISTER_LABELS(int64_t, int64_t)

#define REGISTER_PIXELS(T)                                                   \
  REGISTER_KERNEL_BUILDER(Name("RethinkgenPermutePixels")                    \
                              .Device(DEVICE_CPU)                            \
                              .TypeConstraint<T>("T")                        \
                              .TypeConstraint<int32>("Tidx"),                \
                          PermutePixelsOp<T, int32>);                        \
  REGISTER_KERNEL_BUILDER(Name("RethinkgenPermutePixels")                    \
                              .Device(DEVICE_CPU)                            \
                              .TypeConstraint<T>("T")                        \
                              .TypeConstraint<int64_t>("Tidx"),              \
                          PermutePixelsOp<T, int64_t>);
REGISTER_PIXELS(uint8)
REGISTER_PIXELS(Eigen::half)
REGISTER_PIXELS(bfloat16)
REGISTER_PIXELS(float)
REGISTER_PIXELS(double)

#define REGISTER_GAUSS(T)                                                    \
  REGISTER_KERNEL_BUILDER(Name("RethinkgenGaussianImages")                   \
                              .Device(DEVICE_CPU)                            \
                              .TypeConstraint<T>("dtype")                    \
                              .TypeConstraint<int32>("Tidx"),                \
                          GaussianImagesOp<T, int32>);                       \
  REGISTER_KERNEL_BUILDER(Name("RethinkgenGaussianImages")                   \
                              .Device(DEVICE_CPU)                            \
                              .TypeConstraint<T>("dtype")                    \
                              .TypeConstraint<int64_t>("Tidx"),              \
                          GaussianImagesOp<T, int64_t>);
REGISTER_GAUSS(float)
REGISTER_GAUSS(Eigen::half)
REGISTER_GAUSS(bfloat16)

}  // namespace
}  // namespace tensorflow
