// TensorFlow ops for the randomizations (semantics: rethinkgen/randomize.h).
// Op registration, shape functions, input validation, and the CPU kernels:
// thin glue around the TF-free drivers in rethinkgen/randomize_cpu.h.
#include <cmath>
#include <string>

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

template <typename T>
T ScalarInput(OpKernelContext* ctx, int i, const char* name, Status* st) {
  const Tensor& t = ctx->input(i);
  if (!TensorShapeUtils::IsScalar(t.shape())) {
    *st = errors::InvalidArgument(name, " must be a scalar, got shape ",
                                  t.shape().DebugString());
    return T();
  }
  return t.scalar<T>()();
}

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
    Status st;
    const double p = ScalarInput<double>(ctx, 2, "corrupt_prob", &st);
    OP_REQUIRES_OK(ctx, st);
    const int64_t k = ScalarInput<int64_t>(ctx, 3, "num_classes", &st);
    OP_REQUIRES_OK(ctx, st);
    const int64_t seed = ScalarInput<int64_t>(ctx, 4, "seed", &st);
    OP_REQUIRES_OK(ctx, st);
    OP_REQUIRES(ctx, labels.shape() == indices.shape(),
                errors::InvalidArgument(
                    "labels and indices must have the same shape, got ",
                    labels.shape().DebugString(), " and ",
                    indices.shape().DebugString()));
    OP_REQUIRES(ctx, p >= 0.0 && p <= 1.0,
                errors::InvalidArgument("corrupt_prob must be in [0, 1], got ",
                                        p));
    OP_REQUIRES(ctx, k >= 1 && k <= (int64_t{1} << 32),
                errors::InvalidArgument(
                    "num_classes must be in [1, 2^32], got ", k));
    OP_REQUIRES_OK(ctx, CheckIndices<Idx>(indices));
    auto lab = labels.flat<T>();
    const int64_t n = lab.size();
    const int64_t bad = rethinkgen::FirstOutsideRange(lab.data(), n, k);
    OP_REQUIRES(ctx, bad < 0,
                errors::InvalidArgument(
                    "labels must be in [0, num_classes=", k, "), got labels[",
                    bad, "] = ", static_cast<int64_t>(lab(bad < 0 ? 0 : bad))));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, labels.shape(), &out));
    if (n == 0) return;
    const Idx* idx = indices.flat<Idx>().data();
    T* o = out->flat<T>().data();
    if (permute_) {
      OP_REQUIRES(ctx, n < (int64_t{1} << 32),
                  errors::InvalidArgument("permute mode takes < 2^32 labels"));
      rethinkgen::CorruptLabelsPermute(lab.data(), idx, n, p, seed, o,
                                       TfParallelFor{ctx});
    } else {
      rethinkgen::CorruptLabelsUniform(lab.data(), idx, n, p,
                                       static_cast<uint64_t>(k), seed, o,
                                       TfParallelFor{ctx});
    }
  }

 private:
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
    Status st;
    const int64_t seed = ScalarInput<int64_t>(ctx, 2, "seed", &st);
    OP_REQUIRES_OK(ctx, st);
    const int rank = images.dims();
    OP_REQUIRES(ctx, rank >= 3,
                errors::InvalidArgument(
                    "images must have shape [..., H, W, C], got ",
                    images.shape().DebugString()));
    TensorShape batch_shape;
    for (int d = 0; d < rank - 3; ++d)
      OP_REQUIRES_OK(ctx, batch_shape.AddDimWithStatus(images.dim_size(d)));
    OP_REQUIRES(ctx, indices.shape() == batch_shape,
                errors::InvalidArgument(
                    "indices must have shape images.shape[:-3] = ",
                    batch_shape.DebugString(), ", got ",
                    indices.shape().DebugString()));
    OP_REQUIRES_OK(ctx, CheckIndices<Idx>(indices));
    const int64_t h = images.dim_size(rank - 3), w = images.dim_size(rank - 2);
    int64_t c = images.dim_size(rank - 1);
    int64_t units = h * w;
    if (per_value_) {
      units *= c;
      c = 1;
    }
    OP_REQUIRES(ctx, units < (int64_t{1} << 32),
                errors::InvalidArgument("images have more than 2^32 pixels"));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, images.shape(), &out));
    const int64_t batch = batch_shape.num_elements();
    if (images.NumElements() == 0) return;
    using E = typename Bits<T>::type;
    const E* in = reinterpret_cast<const E*>(images.flat<T>().data());
    E* o = reinterpret_cast<E*>(out->flat<T>().data());
    rethinkgen::PermutePixels(in, indices.flat<Idx>().data(), batch,
                              static_cast<uint32_t>(units), c, seed,
                              per_example_, o, TfParallelFor{ctx});
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

// Shared by the CPU and GPU kernels: validates the Gaussian op's inputs and
// returns the image shape.
Status GaussianArgs(OpKernelContext* ctx, TensorShape* image_shape,
                    int64_t* seed) {
  const Tensor& seed_t = ctx->input(1);
  const Tensor& shape_t = ctx->input(2);
  const Tensor& mean_t = ctx->input(3);
  const Tensor& std_t = ctx->input(4);
  if (!TensorShapeUtils::IsScalar(seed_t.shape()))
    return errors::InvalidArgument("seed must be a scalar");
  *seed = seed_t.scalar<int64_t>()();
  if (!TensorShapeUtils::IsVector(shape_t.shape()) || shape_t.NumElements() < 1)
    return errors::InvalidArgument(
        "shape must be a non-empty vector like [H, W, C], got shape ",
        shape_t.shape().DebugString());
  auto s = shape_t.vec<int64_t>();
  for (int i = 0; i < s.size(); ++i) {
    if (s(i) < 1)
      return errors::InvalidArgument("shape entries must be >= 1, got shape[",
                                     i, "] = ", s(i));
    TF_RETURN_IF_ERROR(image_shape->AddDimWithStatus(s(i)));
  }
  const int64_t c = s(s.size() - 1);
  if (!TensorShapeUtils::IsVector(mean_t.shape()) ||
      mean_t.NumElements() != c || !TensorShapeUtils::IsVector(std_t.shape()) ||
      std_t.NumElements() != c)
    return errors::InvalidArgument(
        "mean and stddev must be vectors of length C = shape[-1] = ", c,
        ", got shapes ", mean_t.shape().DebugString(), " and ",
        std_t.shape().DebugString());
  auto m = mean_t.vec<float>();
  auto sd = std_t.vec<float>();
  for (int64_t i = 0; i < c; ++i) {
    if (!std::isfinite(m(i)))
      return errors::InvalidArgument("mean[", i, "] is not finite");
    if (!std::isfinite(sd(i)) || sd(i) < 0)
      return errors::InvalidArgument("stddev[", i,
                                     "] must be finite and >= 0, got ", sd(i));
  }
  return absl::OkStatus();
}

template <typename T, typename Idx>
class GaussianImagesOp : public OpKernel {
 public:
  explicit GaussianImagesOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& indices = ctx->input(0);
    TensorShape image_shape;
    int64_t seed = 0;
    OP_REQUIRES_OK(ctx, GaussianArgs(ctx, &image_shape, &seed));
    OP_REQUIRES_OK(ctx, CheckIndices<Idx>(indices));
    TensorShape out_shape = indices.shape();
    OP_REQUIRES_OK(ctx, out_shape.AppendShapeWithStatus(image_shape));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &out));
    if (out->NumElements() == 0) return;
    using Store = typename StoreFor<T>::type;
    const int64_t c = image_shape.dim_size(image_shape.dims() - 1);
    rethinkgen::GaussianImages<Store>(
        indices.flat<Idx>().data(), indices.NumElements(),
        image_shape.num_elements(), c, ctx->input(3).flat<float>().data(),
        ctx->input(4).flat<float>().data(), seed,
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
