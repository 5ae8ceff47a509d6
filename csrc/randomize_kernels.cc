// CPU side of the ops' kernels (randomize_kernels.h): the CPU functor
// specializations, thin glue around the TF-free drivers of
// rethinkgen/randomize_cpu.h, and REGISTER_KERNEL_BUILDER for DEVICE_CPU.
// Also the kernel of RethinkgenCpuPath, and the one evaluation of the CPU
// path (rethinkgen/cpu_path.h) when the library loads.
#include <cstdint>

#include "randomize_kernels.h"
#include "rethinkgen/randomize_cpu.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/platform/logging.h"
#include "tensorflow/core/util/work_sharder.h"

namespace tensorflow {
namespace rethinkgen_kernels {
namespace {

// The CPU path is fixed when the library loads; a request that cannot be
// followed (RETHINKGEN_CPU_PATH) is reported once, here.
[[maybe_unused]] const bool kCpuPathChosen = [] {
  const rethinkgen::CpuPathChoice& choice = rethinkgen::ActiveCpuPathChoice();
  if (!choice.warning.empty()) LOG(WARNING) << "rethinkgen_tf ops: " << choice.warning;
  rethinkgen::ActiveCpuKernels();
  return true;
}();

// Work sharder as the drivers' ParallelFor.
struct TfParallelFor {
  OpKernelContext* ctx;
  void operator()(int64_t total, int64_t cost, const rethinkgen::RangeFn& fn) const {
    auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
    Shard(workers->num_threads, workers->workers, total, cost, fn);
  }
};

template <typename T>
struct StoreFor;
template <>
struct StoreFor<float> {
  using type = rethinkgen::StoreFloat;
};
template <>
struct StoreFor<Eigen::half> {
  using type = rethinkgen::StoreHalf;
};
template <>
struct StoreFor<bfloat16> {
  using type = rethinkgen::StoreBfloat16;
};

}  // namespace

namespace functor {

template <typename T, typename Idx>
struct FindBadEntries<CPUDevice, T, Idx> {
  absl::Status operator()(OpKernelContext*, const CPUDevice&, const T* labels, int64_t num_classes,
                          const Idx* indices, int64_t n, rethinkgen_args::BadEntries* bad) const {
    bad->index_at = rethinkgen::FirstNegative(indices, n);
    if (bad->index_at >= 0) bad->index = static_cast<int64_t>(indices[bad->index_at]);
    if (labels != nullptr) {
      bad->label_at = rethinkgen::FirstOutsideRange(labels, n, num_classes);
      if (bad->label_at >= 0) bad->label = static_cast<int64_t>(labels[bad->label_at]);
    }
    return absl::OkStatus();
  }
};

template <typename T, typename Idx>
struct CorruptLabelsFunctor<CPUDevice, T, Idx> {
  absl::Status operator()(OpKernelContext* ctx, const CPUDevice&, const T* labels,
                          const Idx* indices, int64_t n, const rethinkgen_args::LabelArgs& args,
                          bool permute, T* out, bool* contents_ok) const {
    if (permute) {
      *contents_ok = rethinkgen::FirstNegative(indices, n) < 0 &&
                     rethinkgen::FirstOutsideRange(labels, n, args.num_classes) < 0;
      if (*contents_ok)
        rethinkgen::CorruptLabelsPermute(labels, indices, n, args.p, args.seed, out,
                                         TfParallelFor{ctx});
    } else {  // the draw loop checks as it goes
      *contents_ok = rethinkgen::CorruptLabelsUniform(labels, indices, n, args.p,
                                                      static_cast<uint64_t>(args.num_classes),
                                                      args.seed, out, TfParallelFor{ctx});
    }
    return absl::OkStatus();
  }
};

template <typename E, typename Idx>
struct PermutePixelsFunctor<CPUDevice, E, Idx> {
  absl::Status operator()(OpKernelContext* ctx, const CPUDevice&, const E* in, const Idx* indices,
                          const rethinkgen_args::PixelArgs& args, bool per_example, E* out) const {
    rethinkgen::PermutePixels(in, indices, args.batch, static_cast<uint32_t>(args.units),
                              args.channels, args.seed, per_example, out, TfParallelFor{ctx});
    return absl::OkStatus();
  }
};

template <typename T, typename Idx>
struct GaussianImagesFunctor<CPUDevice, T, Idx> {
  absl::Status operator()(OpKernelContext* ctx, const CPUDevice&, const Idx* indices, int64_t batch,
                          const rethinkgen_args::GaussianArgs& args, T* out) const {
    using Store = typename StoreFor<T>::type;
    rethinkgen::GaussianImages<Store>(
        indices, batch, args.values, args.channels, args.mean, args.stddev, args.seed,
        reinterpret_cast<typename Store::Bits*>(out), TfParallelFor{ctx});
    return absl::OkStatus();
  }
};

}  // namespace functor

namespace {

// RethinkgenCpuPath: "avx512", "avx2" or "generic".
class CpuPathOp : public OpKernel {
 public:
  explicit CpuPathOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}
  void Compute(OpKernelContext* ctx) override {
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({}), &out));
    out->scalar<tstring>()() = rethinkgen::CpuPathName(rethinkgen::ActiveCpuKernels().path);
  }
};

}  // namespace

REGISTER_KERNEL_BUILDER(Name("RethinkgenCpuPath").Device(DEVICE_CPU), CpuPathOp);

// The CPU registrations of one op and value type, for both index types: op
// name, kernel class template, the name of its value type attribute, the type.
#define RG_CPU_KERNEL(OP, CLASS, TATTR, T, Idx)                                         \
  REGISTER_KERNEL_BUILDER(                                                              \
      Name(OP).Device(DEVICE_CPU).TypeConstraint<T>(TATTR).TypeConstraint<Idx>("Tidx"), \
      CLASS<CPUDevice, T, Idx>);
#define RG_CPU_KERNELS(OP, CLASS, TATTR, T)   \
  RG_CPU_KERNEL(OP, CLASS, TATTR, T, int32_t) \
  RG_CPU_KERNEL(OP, CLASS, TATTR, T, int64_t)
#define RG_CPU_LABELS(T) RG_CPU_KERNELS("RethinkgenCorruptLabels", CorruptLabelsOp, "T", T)
#define RG_CPU_PIXELS(T) RG_CPU_KERNELS("RethinkgenPermutePixels", PermutePixelsOp, "T", T)
#define RG_CPU_GAUSS(T) RG_CPU_KERNELS("RethinkgenGaussianImages", GaussianImagesOp, "dtype", T)
RG_CPU_LABELS(int32_t)
RG_CPU_LABELS(int64_t)
RG_CPU_PIXELS(uint8_t)
RG_CPU_PIXELS(Eigen::half)
RG_CPU_PIXELS(bfloat16)
RG_CPU_PIXELS(float)
RG_CPU_PIXELS(double)
RG_CPU_GAUSS(float)
RG_CPU_GAUSS(Eigen::half)
RG_CPU_GAUSS(bfloat16)

}  // namespace rethinkgen_kernels
}  // namespace tensorflow
