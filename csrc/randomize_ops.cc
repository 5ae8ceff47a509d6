// The TensorFlow ops of rethinkgen_tf (semantics: rethinkgen/randomize.h):
// REGISTER_OP and shape functions only.  The kernels are in
// randomize_kernels.h (one OpKernel template per op), randomize_kernels.cc
// (CPU) and randomize_ops_gpu.cu.cc (GPU).
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

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
      for (int i = 2; i < 5; ++i) TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 0, &s));
      c->set_output(0, c->input(0));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Replaces each label, with probability corrupt_prob, by a uniformly drawn class
in [0, num_classes) (mode "uniform"), or shuffles the labels of the selected
examples among themselves (mode "permute", fewer than 2^31 labels).
Deterministic in (seed, index).
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

REGISTER_OP("RethinkgenCpuPath")
    .Output("path: string")
    .SetShapeFn(shape_inference::ScalarShape)
    .Doc(R"doc(
The CPU code path of this library's CPU kernels, "avx512", "avx2" or "generic": fixed
when the library loads (RETHINKGEN_CPU_PATH=generic|avx2|avx512|auto, default auto).
)doc");

}  // namespace
}  // namespace tensorflow
