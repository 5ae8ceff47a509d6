// CUDA kernels and launchers for the randomizations in randomize.h, free of
// TensorFlow.  Used by the TensorFlow GPU functors (randomize_ops_gpu.cu.cc)
// and by the TF-free GPU harness (tests/gpu/).
//
// The file has two layers:
//   1. "Per-element" functions (RG_HD, portable): everything a kernel thread
//      computes.  They compile with g++ too, so the harness's CPU mode runs
//      exactly the same algorithm (atomics become plain read-modify-writes,
//      phases run one after the other).
//   2. Kernels and launchers (only under __CUDACC__).
//
// Exactness.  Labels and permutations are integer computations and equal the
// CPU kernels bit for bit.  Gaussians use the RG_F* macros of randomize.h,
// which map to the IEEE-rounded __fmul_rn/__fadd_rn/__fsub_rn/__fsqrt_rn
// intrinsics on the device: the nvcc compiler can neither contract them into
// FMAs nor approximate them, so the output equals the CPU output bit for bit
// as long as the host side is built with -ffp-contract=off (the documented
// tolerance, max |gpu - cpu| <= 1 ulp of float32 before the final rounding to
// the output dtype, is a safety margin, not an expected difference).  Never
// build with --use_fast_math / -ftz=true; pass --fmad=false as a second belt.
//
// Parallel Fisher-Yates (exactly the permutation of FisherYates()).
//   FisherYates(n) performs, for j = n-1 down to 1, swap(perm[j], perm[r_j])
//   with r_j <= j drawn from the Philox stream.  The draws do not depend on
//   the array, so all r_j are computed in parallel.  Position j is final right
//   after step j.  Track a value v instead of a position: v sits at position
//   x (initially x = v).  Call the steps h > x with r_h = x the "hits" on x.
//     - The next hit on x (in time order: the largest h below the time the
//       value arrived at x) moves v to position h, where it is final: Q = h.
//     - With no such hit, at step x (x >= 1) v moves to r_x (final if
//       r_x == x); it arrives at r_x at time x, and the search repeats there
//       among the hits h on r_x with r_x < h < x.
//     - At x = 0 with no hit, v is final at 0.
//   So with, for each position x, the (unordered) list of its hits, every
//   value's final position Q[v] follows from a short walk (expected length
//   O(1) per value on average; the hit lists have expected length ln(n/x)).
//   The lists are built with one atomicExch per step (head[x], link[h]; 0 is
//   "none" because every hit h is >= 1), the walks run one thread per value,
//   and perm[Q[v]] = v.  The order in which the atomics land does not matter
//   (the walk takes a maximum over the list).  tests/gpu checks the result
//   against FisherYates() / the NumPy reference bit for bit.
//   Small n (<= kSmemMaxUnits): one thread block per image, all four arrays in
//   shared memory, one kernel.  Large n (e.g. 299*299 = 89,401): the same
//   phases as separate grid-wide kernels over a chunk of images with the
//   arrays in global scratch (16 bytes per unit per image in the chunk).
#ifndef RETHINKGEN_RANDOMIZE_GPU_CUH_
#define RETHINKGEN_RANDOMIZE_GPU_CUH_

#include <cstddef>
#include <cstdint>

#include "rethinkgen/randomize.h"

namespace rethinkgen {
namespace gpu {

// ---------------------------------------------------------------------------
// Layer 1: per-element functions (host and device).

RG_HD uint32_t AtomicExchU32(uint32_t* p, uint32_t v) {
#if defined(__CUDA_ARCH__)
  return atomicExch(reinterpret_cast<unsigned int*>(p), v);
#else
  const uint32_t old = *p;
  *p = v;
  return old;
#endif
}

// Number of Philox blocks a Fisher-Yates of n items consumes.
RG_HD uint32_t PermBlocks(uint32_t n) { return n < 2 ? 0u : n / 2; }

// Phase 1 of the parallel Fisher-Yates: the two steps t = 2b, 2b+1 drawn from
// Philox block b.  Records r[j] and links j into the hit list of r[j].
// head must be zero-initialized; r[0], link[0] are never used.
RG_HD void PermDrawBlock(Key key, uint32_t purpose, int64_t index, uint32_t n, uint32_t b,
                         uint32_t* r, uint32_t* head, uint32_t* link) {
  const U32x4 w = Block(key, purpose, index, b);
  for (uint32_t h = 0; h < 2; ++h) {
    const uint32_t t = 2 * b + h;
    if (t + 1 >= n) break;  // steps are t = 0 .. n-2
    const uint32_t j = n - 1 - t;
    const uint32_t rj = ShuffleDraw(w, t, static_cast<uint64_t>(j) + 1);
    r[j] = rj;
    if (rj < j) link[j] = AtomicExchU32(&head[rj], j);
  }
}

// Largest hit h on position x with h < bound (0 if none).
RG_HD uint32_t MaxHitBelow(const uint32_t* head, const uint32_t* link, uint32_t x, uint32_t bound) {
  uint32_t best = 0;
  for (uint32_t h = head[x]; h != 0; h = link[h])
    if (h < bound && h > best) best = h;
  return best;
}

// Phase 2: final position of the value that starts at position v.
RG_HD uint32_t PermWalk(const uint32_t* r, const uint32_t* head, const uint32_t* link, uint32_t v) {
  uint32_t x = v;
  uint32_t h = MaxHitBelow(head, link, x, 0xFFFFFFFFu);
  if (h != 0) return h;
  for (;;) {
    if (x == 0) return 0;
    const uint32_t rx = r[x];
    if (rx == x) return x;
    h = MaxHitBelow(head, link, rx, x);
    if (h != 0) return h;
    x = rx;
  }
}

// Label of one example in mode "uniform".
template <typename T>
RG_HD T UniformLabel(Key key, int64_t index, uint64_t threshold, uint64_t num_classes, T label) {
  const LabelDraw d = DrawLabel(key, index, threshold, num_classes);
  return d.corrupted ? static_cast<T>(d.random_class) : label;
}

// Output conversions for Gaussian images (bit patterns).
struct GaussFloat {
  using Bits = float;
  RG_HD static Bits Convert(float x) { return x; }
};
struct GaussHalf {
  using Bits = uint16_t;
  RG_HD static Bits Convert(float x) { return FloatToHalfBits(x); }
};
struct GaussBfloat16 {
  using Bits = uint16_t;
  RG_HD static Bits Convert(float x) { return FloatToBfloat16Bits(x); }
};

// The four values of Philox block `blk` of one example, after the affine map
// (element e = 4*blk + k has channel (4*blk + k) % C).
RG_HD void GaussianBlock4(Key key, int64_t index, uint32_t blk, uint32_t C, const float* mean,
                          const float* stddev, float z[4]) {
  const U32x4 w = Block(key, kGaussian, index, blk);
  GaussianPair(w.v[0], w.v[1], &z[0], &z[1]);
  GaussianPair(w.v[2], w.v[3], &z[2], &z[3]);
  uint32_t c = blk < 0x40000000u ? (4 * blk) % C
                                 : static_cast<uint32_t>((4 * static_cast<uint64_t>(blk)) % C);
  for (int k = 0; k < 4; ++k) {
    z[k] = Affine(z[k], mean[c], stddev[c]);
    c = (c + 1 == C) ? 0 : c + 1;
  }
}

// Shared memory of the one-kernel permutation path: 4 uint32 arrays of n.
constexpr uint32_t kSmemMaxUnits = 3072;                       // 48 KiB, no opt-in needed
constexpr size_t kDefaultPermScratchBytes = size_t{32} << 20;  // ~L2 size

}  // namespace gpu
}  // namespace rethinkgen

// ---------------------------------------------------------------------------
// Layer 2: kernels and launchers.
#if defined(__CUDACC__)

#include <cuda_runtime.h>

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_select.cuh>
#include <functional>

namespace rethinkgen {
namespace gpu {

// Scratch memory callback: returns device memory of at least `bytes` bytes
// (256-byte aligned), valid until the work enqueued by the launcher on its
// stream has finished, or nullptr on failure.  The TF kernels pass
// allocate_temp, the harness passes cudaMalloc with deferred frees.
using ScratchFn = std::function<void*(size_t)>;

constexpr int kThreads = 256;

inline unsigned GridFor(int64_t work, int64_t per_block = kThreads) {
  int64_t g = (work + per_block - 1) / per_block;
  if (g < 1) g = 1;
  if (g > (int64_t{1} << 20)) g = int64_t{1} << 20;  // grid-stride beyond
  return static_cast<unsigned>(g);
}

#define RG_GRID_LOOP(i, total)                                                               \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (total); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// u = q * d + r with 32-bit arithmetic when u fits (the common case; a
// 64-bit division costs several times more).
__device__ __forceinline__ void SplitIndex(int64_t u, uint32_t d, int64_t* q, uint32_t* r) {
  if (u <= 0xFFFFFFFFll) {
    const uint32_t uu = static_cast<uint32_t>(u);
    const uint32_t qq = uu / d;
    *q = qq;
    *r = uu - qq * d;
  } else {
    *q = u / d;
    *r = static_cast<uint32_t>(u - *q * static_cast<int64_t>(d));
  }
}

// ---- validation -------------------------------------------------------------
// first_bad[0]: first position with a label outside [0, K) (or -1 when
// labels == nullptr); first_bad[1]: first negative index.  Encoded as
// unsigned min, initialized to all ones by the launcher.
template <typename T, typename Idx>
__global__ void ValidateKernel(const T* labels, int64_t num_classes, const Idx* indices, int64_t n,
                               unsigned long long* first_bad) {
  RG_GRID_LOOP(i, n) {
    if (labels != nullptr) {
      const T l = labels[i];
      if (l < 0 || static_cast<int64_t>(l) >= num_classes)
        atomicMin(&first_bad[0], static_cast<unsigned long long>(i));
    }
    if (indices[i] < 0) atomicMin(&first_bad[1], static_cast<unsigned long long>(i));
  }
}

// Finds the first label outside [0, K) (labels may be nullptr) and the first
// negative index.  Synchronizes the stream.  -1 means none.
template <typename T, typename Idx>
cudaError_t Validate(const T* labels, int64_t num_classes, const Idx* indices, int64_t n,
                     cudaStream_t stream, const ScratchFn& scratch, int64_t* bad_label,
                     int64_t* bad_index) {
  *bad_label = -1;
  *bad_index = -1;
  if (n <= 0) return cudaSuccess;
  auto* d = static_cast<unsigned long long*>(scratch(2 * sizeof(uint64_t)));
  if (d == nullptr) return cudaErrorMemoryAllocation;
  cudaError_t e = cudaMemsetAsync(d, 0xFF, 2 * sizeof(uint64_t), stream);
  if (e != cudaSuccess) return e;
  ValidateKernel<T, Idx><<<GridFor(n), kThreads, 0, stream>>>(labels, num_classes, indices, n, d);
  if ((e = cudaGetLastError()) != cudaSuccess) return e;
  unsigned long long h[2];
  e = cudaMemcpyAsync(h, d, sizeof(h), cudaMemcpyDeviceToHost, stream);
  if (e != cudaSuccess) return e;
  if ((e = cudaStreamSynchronize(stream)) != cudaSuccess) return e;
  if (h[0] != ~0ull) *bad_label = static_cast<int64_t>(h[0]);
  if (h[1] != ~0ull) *bad_index = static_cast<int64_t>(h[1]);
  return cudaSuccess;
}

// ---- labels -----------------------------------------------------------------
template <typename T, typename Idx>
__global__ void UniformLabelsKernel(const T* labels, const Idx* indices, int64_t n, Key key,
                                    uint64_t threshold, uint64_t num_classes, T* out) {
  RG_GRID_LOOP(i, n) {
    out[i] =
        UniformLabel<T>(key, static_cast<int64_t>(indices[i]), threshold, num_classes, labels[i]);
  }
}

template <typename T, typename Idx>
cudaError_t CorruptLabelsUniform(const T* labels, const Idx* indices, int64_t n, double p,
                                 uint64_t num_classes, int64_t seed, T* out, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  UniformLabelsKernel<T, Idx><<<GridFor(n), kThreads, 0, stream>>>(
      labels, indices, n, KeyFromSeed(seed), CorruptThreshold(p), num_classes, out);
  return cudaGetLastError();
}

// ---- Fisher-Yates permutations ---------------------------------------------
// Index of example g: indices[g] (per-example streams) or 0 (indices null).
template <typename Idx>
__device__ __forceinline__ int64_t StreamIndex(const Idx* indices, int64_t g) {
  return indices == nullptr ? 0 : static_cast<int64_t>(indices[g]);
}

// Copies unit perm[k] of `in` to unit k of `out`, C elements per unit.
template <typename E>
__device__ __forceinline__ void CopyUnit(const E* in, E* out, uint32_t src, uint32_t k,
                                         uint32_t C) {
  const E* s = in + static_cast<int64_t>(src) * C;
  E* d = out + static_cast<int64_t>(k) * C;
  for (uint32_t c = 0; c < C; ++c) d[c] = s[c];
}

// One thread block per image: draws, hit lists, walks and the gather, with
// the four arrays in shared memory (n <= kSmemMaxUnits).  If `perm_out` is
// set the permutation of image g is written to perm_out + g * n, and in/out
// may be null.
template <typename E, typename Idx>
__global__ void PermuteSmemKernel(const E* in, E* out, const Idx* indices, int64_t batch,
                                  uint32_t n, uint32_t C, Key key, uint32_t purpose,
                                  uint32_t* perm_out) {
  extern __shared__ uint32_t smem[];
  uint32_t* r = smem;
  uint32_t* head = smem + n;
  uint32_t* link = smem + 2 * n;
  uint32_t* perm = smem + 3 * n;
  const uint32_t nb = PermBlocks(n);
  const int64_t stride = static_cast<int64_t>(n) * C;
  for (int64_t g = blockIdx.x; g < batch; g += gridDim.x) {
    const int64_t index = StreamIndex(indices, g);
    for (uint32_t x = threadIdx.x; x < n; x += blockDim.x) head[x] = 0;
    __syncthreads();
    for (uint32_t b = threadIdx.x; b < nb; b += blockDim.x)
      PermDrawBlock(key, purpose, index, n, b, r, head, link);
    __syncthreads();
    for (uint32_t v = threadIdx.x; v < n; v += blockDim.x) perm[PermWalk(r, head, link, v)] = v;
    __syncthreads();
    if (perm_out != nullptr) {
      for (uint32_t k = threadIdx.x; k < n; k += blockDim.x) perm_out[g * n + k] = perm[k];
    } else {
      const E* src = in + g * stride;
      E* dst = out + g * stride;
      for (uint32_t k = threadIdx.x; k < n; k += blockDim.x) CopyUnit(src, dst, perm[k], k, C);
    }
    __syncthreads();  // before the next image reuses the arrays
  }
}

// Global-memory path, phase 1: thread per (image in chunk, Philox block).
template <typename Idx>
__global__ void PermDrawKernel(const Idx* indices, int64_t g0, int64_t groups, uint32_t n, Key key,
                               uint32_t purpose, uint32_t* r, uint32_t* head, uint32_t* link) {
  const uint32_t nb = PermBlocks(n);
  RG_GRID_LOOP(u, groups * nb) {
    int64_t g;
    uint32_t b;
    SplitIndex(u, nb, &g, &b);
    const int64_t off = g * n;
    PermDrawBlock(key, purpose, StreamIndex(indices, g0 + g), n, b, r + off, head + off,
                  link + off);
  }
}

// Phase 2: thread per (image in chunk, value).
template <typename Unused = void>
__global__ void PermWalkKernel(int64_t groups, uint32_t n, const uint32_t* r, const uint32_t* head,
                               const uint32_t* link, uint32_t* perm) {
  RG_GRID_LOOP(u, groups * n) {
    int64_t g;
    uint32_t v;
    SplitIndex(u, n, &g, &v);
    const int64_t off = g * n;
    perm[off + PermWalk(r + off, head + off, link + off, v)] = v;
  }
}

// Gather: thread per (image, unit).  perm_stride 0 = one shared permutation.
template <typename E>
__global__ void GatherKernel(const E* in, E* out, int64_t groups, uint32_t n, uint32_t C,
                             const uint32_t* perm, int64_t perm_stride) {
  const int64_t stride = static_cast<int64_t>(n) * C;
  RG_GRID_LOOP(u, groups * n) {
    int64_t g;
    uint32_t k;
    SplitIndex(u, n, &g, &k);
    CopyUnit(in + g * stride, out + g * stride, perm[g * perm_stride + k], k, C);
  }
}

// Images per chunk of the global-memory path.
inline int64_t PermChunk(uint32_t n, size_t scratch_bytes) {
  const int64_t per = int64_t{16} * n;
  int64_t g = static_cast<int64_t>(scratch_bytes) / per;
  return g < 1 ? 1 : g;
}

// Global-memory path for `groups` images starting at g0: writes their
// permutations to perm (groups * n).  Scratch: 12 * groups * n bytes.
template <typename Idx>
cudaError_t PermutationsGlobal(const Idx* indices, int64_t g0, int64_t groups, uint32_t n, Key key,
                               uint32_t purpose, uint32_t* r, uint32_t* head, uint32_t* link,
                               uint32_t* perm, cudaStream_t stream) {
  const int64_t units = groups * n;
  cudaError_t e = cudaMemsetAsync(head, 0, sizeof(uint32_t) * units, stream);
  if (e != cudaSuccess) return e;
  const int64_t draws = groups * PermBlocks(n);
  if (draws > 0) {
    PermDrawKernel<Idx><<<GridFor(draws), kThreads, 0, stream>>>(indices, g0, groups, n, key,
                                                                 purpose, r, head, link);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
  }
  PermWalkKernel<><<<GridFor(units), kThreads, 0, stream>>>(groups, n, r, head, link, perm);
  return cudaGetLastError();
}

// Writes `batch` Fisher-Yates permutations of n (n >= 1) to perm
// (batch * n uint32, device): permutation g uses counter index indices[g]
// (indices == nullptr: index 0 for all).  For the harness and the label
// permutation.
template <typename Idx>
cudaError_t Permutations(const Idx* indices, int64_t batch, uint32_t n, int64_t seed,
                         uint32_t purpose, uint32_t* perm, cudaStream_t stream,
                         const ScratchFn& scratch,
                         size_t scratch_bytes = kDefaultPermScratchBytes) {
  if (batch <= 0 || n == 0) return cudaSuccess;
  const Key key = KeyFromSeed(seed);
  if (n <= kSmemMaxUnits) {
    PermuteSmemKernel<uint8_t, Idx><<<GridFor(batch, 1), kThreads, 16 * n, stream>>>(
        nullptr, nullptr, indices, batch, n, 1, key, purpose, perm);
    return cudaGetLastError();
  }
  const int64_t chunk = PermChunk(n, scratch_bytes);
  const int64_t first = batch < chunk ? batch : chunk;
  auto* buf = static_cast<uint32_t*>(scratch(sizeof(uint32_t) * 3 * first * n));
  if (buf == nullptr) return cudaErrorMemoryAllocation;
  for (int64_t g0 = 0; g0 < batch; g0 += chunk) {
    const int64_t groups = batch - g0 < chunk ? batch - g0 : chunk;
    const int64_t units = groups * n;
    cudaError_t e = PermutationsGlobal(indices, g0, groups, n, key, purpose, buf, buf + units,
                                       buf + 2 * units, perm + g0 * n, stream);
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

// ---- pixel permutation ------------------------------------------------------
// E: element type of the image's byte width (uint8_t, uint16_t, uint32_t,
// uint64_t).  `batch` examples of P units of C elements (unit "value": pass
// P = H*W*C, C = 1).  Per-example mode uses indices (device); shared mode
// ignores them.
template <typename E, typename Idx>
cudaError_t PermutePixels(const E* in, const Idx* indices, int64_t batch, uint32_t P, uint32_t C,
                          int64_t seed, bool per_example, E* out, cudaStream_t stream,
                          const ScratchFn& scratch,
                          size_t scratch_bytes = kDefaultPermScratchBytes) {
  if (batch <= 0 || P == 0 || C == 0) return cudaSuccess;
  const Key key = KeyFromSeed(seed);
  cudaError_t e;
  if (!per_example) {
    auto* perm = static_cast<uint32_t*>(scratch(sizeof(uint32_t) * P));
    if (perm == nullptr) return cudaErrorMemoryAllocation;
    e = Permutations<Idx>(nullptr, 1, P, seed, kPixelsShared, perm, stream, scratch, scratch_bytes);
    if (e != cudaSuccess) return e;
    GatherKernel<E><<<GridFor(batch * P), kThreads, 0, stream>>>(in, out, batch, P, C, perm, 0);
    return cudaGetLastError();
  }
  if (P <= kSmemMaxUnits) {
    PermuteSmemKernel<E, Idx><<<GridFor(batch, 1), kThreads, 16 * P, stream>>>(
        in, out, indices, batch, P, C, key, kPixelsPerExample, nullptr);
    return cudaGetLastError();
  }
  const int64_t chunk = PermChunk(P, scratch_bytes);
  const int64_t first = batch < chunk ? batch : chunk;
  auto* buf = static_cast<uint32_t*>(scratch(sizeof(uint32_t) * 4 * first * P));
  if (buf == nullptr) return cudaErrorMemoryAllocation;
  const int64_t stride = static_cast<int64_t>(P) * C;
  for (int64_t g0 = 0; g0 < batch; g0 += chunk) {
    const int64_t groups = batch - g0 < chunk ? batch - g0 : chunk;
    const int64_t units = groups * P;
    uint32_t* perm = buf + 3 * units;
    e = PermutationsGlobal(indices, g0, groups, P, key, kPixelsPerExample, buf, buf + units,
                           buf + 2 * units, perm, stream);
    if (e != cudaSuccess) return e;
    GatherKernel<E><<<GridFor(units), kThreads, 0, stream>>>(in + g0 * stride, out + g0 * stride,
                                                             groups, P, C, perm, P);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
  }
  return cudaSuccess;
}

// ---- labels, mode "permute" -------------------------------------------------
template <typename T, typename Idx>
__global__ void LabelFlagsKernel(const T* labels, const Idx* indices, int64_t n, Key key,
                                 uint64_t threshold, uint8_t* flags, int64_t* iota, T* out) {
  RG_GRID_LOOP(i, n) {
    flags[i] = DrawLabel(key, static_cast<int64_t>(indices[i]), threshold, 1).corrupted;
    iota[i] = i;
    out[i] = labels[i];
  }
}

template <typename Idx>
__global__ void GatherKeysKernel(const Idx* indices, const int64_t* pos, const int64_t* m_dev,
                                 Idx* keys) {
  const int64_t m = *m_dev;
  RG_GRID_LOOP(k, m) { keys[k] = indices[pos[k]]; }
}

template <typename T>
__global__ void ApplyLabelPermKernel(const T* labels, const int64_t* pos, const uint32_t* perm,
                                     int64_t m, T* out) {
  RG_GRID_LOOP(k, m) { out[pos[k]] = labels[pos[perm[k]]]; }
}

// Mode "permute" v2 for m > kFeistelMinItems: thread per item, its own
// cycle-walk through the Feistel bijection (randomize.h), then the gather.
template <typename T>
__global__ void FeistelLabelsKernel(const T* labels, const int64_t* pos, FeistelKey f, T* out) {
  RG_GRID_LOOP(k, static_cast<int64_t>(f.m)) {
    out[pos[k]] = labels[pos[FeistelIndex(f, static_cast<uint32_t>(k))]];
  }
}

// Dataset-level label permutation (see randomize.h), fully on the device:
// flags -> compaction (cub::DeviceSelect, order kept) -> stable radix sort by
// example index (cub::DeviceRadixSort; ties keep position order, as
// std::stable_sort on the CPU) -> the permutation of the m selected
// (LabelPermutation, randomize.h: parallel Fisher-Yates for m <=
// kFeistelMinItems, else the Feistel walk, fused with the scatter).  Reads
// m back to the host once (synchronizes the stream).  n < 2^31 (cub item
// counts are int).
template <typename T, typename Idx>
cudaError_t CorruptLabelsPermute(const T* labels, const Idx* indices, int64_t n, double p,
                                 int64_t seed, T* out, cudaStream_t stream,
                                 const ScratchFn& scratch) {
  if (n <= 0) return cudaSuccess;
  if (n >= (int64_t{1} << 31)) return cudaErrorInvalidValue;
  const int num = static_cast<int>(n);
  const Key key = KeyFromSeed(seed);
  auto* flags = static_cast<uint8_t*>(scratch(n));
  auto* iota = static_cast<int64_t*>(scratch(sizeof(int64_t) * n));
  auto* pos = static_cast<int64_t*>(scratch(sizeof(int64_t) * n));
  auto* pos_sorted = static_cast<int64_t*>(scratch(sizeof(int64_t) * n));
  auto* keys = static_cast<Idx*>(scratch(sizeof(Idx) * n));
  auto* keys_sorted = static_cast<Idx*>(scratch(sizeof(Idx) * n));
  auto* m_dev = static_cast<int64_t*>(scratch(sizeof(int64_t)));
  if (!flags || !iota || !pos || !pos_sorted || !keys || !keys_sorted || !m_dev)
    return cudaErrorMemoryAllocation;
  LabelFlagsKernel<T, Idx><<<GridFor(n), kThreads, 0, stream>>>(
      labels, indices, n, key, CorruptThreshold(p), flags, iota, out);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  size_t bytes_select = 0;
  e = cub::DeviceSelect::Flagged(nullptr, bytes_select, iota, flags, pos, m_dev, num, stream);
  if (e != cudaSuccess) return e;
  void* temp_select = scratch(bytes_select > 0 ? bytes_select : 1);
  if (temp_select == nullptr) return cudaErrorMemoryAllocation;
  e = cub::DeviceSelect::Flagged(temp_select, bytes_select, iota, flags, pos, m_dev, num, stream);
  if (e != cudaSuccess) return e;
  int64_t m = 0;
  e = cudaMemcpyAsync(&m, m_dev, sizeof(m), cudaMemcpyDeviceToHost, stream);
  if (e != cudaSuccess) return e;
  if ((e = cudaStreamSynchronize(stream)) != cudaSuccess) return e;
  if (m < 2) return cudaSuccess;
  GatherKeysKernel<Idx><<<GridFor(m), kThreads, 0, stream>>>(indices, pos, m_dev, keys);
  if ((e = cudaGetLastError()) != cudaSuccess) return e;
  size_t bytes_sort = 0;
  e = cub::DeviceRadixSort::SortPairs(nullptr, bytes_sort, keys, keys_sorted, pos, pos_sorted,
                                      static_cast<int>(m), 0, static_cast<int>(8 * sizeof(Idx)),
                                      stream);
  if (e != cudaSuccess) return e;
  void* temp_sort = scratch(bytes_sort > 0 ? bytes_sort : 1);
  if (temp_sort == nullptr) return cudaErrorMemoryAllocation;
  e = cub::DeviceRadixSort::SortPairs(temp_sort, bytes_sort, keys, keys_sorted, pos, pos_sorted,
                                      static_cast<int>(m), 0, static_cast<int>(8 * sizeof(Idx)),
                                      stream);
  if (e != cudaSuccess) return e;
  if (m > kFeistelMinItems) {
    const FeistelKey f = MakeFeistelKey(key, static_cast<uint32_t>(m));
    FeistelLabelsKernel<T><<<GridFor(m), kThreads, 0, stream>>>(labels, pos_sorted, f, out);
    return cudaGetLastError();
  }
  auto* perm = static_cast<uint32_t*>(scratch(sizeof(uint32_t) * m));
  if (perm == nullptr) return cudaErrorMemoryAllocation;
  e = Permutations<Idx>(nullptr, 1, static_cast<uint32_t>(m), seed, kLabelPermute, perm, stream,
                        scratch);
  if (e != cudaSuccess) return e;
  ApplyLabelPermKernel<T><<<GridFor(m), kThreads, 0, stream>>>(labels, pos_sorted, perm, m, out);
  return cudaGetLastError();
}

// ---- Gaussian images --------------------------------------------------------
// Thread per (example, Philox block): 4 consecutive outputs; one vector store
// when N % 4 == 0 (aligned), element stores otherwise.
template <typename Store, typename Idx>
__global__ void GaussianKernel(const Idx* indices, int64_t batch, int64_t N, uint32_t C,
                               const float* mean, const float* stddev, Key key, bool vec,
                               typename Store::Bits* out) {
  using Bits = typename Store::Bits;
  const uint32_t nb = static_cast<uint32_t>((N + 3) / 4);  // < 2^32
  RG_GRID_LOOP(u, batch * nb) {
    int64_t g;
    uint32_t blk;
    SplitIndex(u, nb, &g, &blk);
    float z[4];
    GaussianBlock4(key, static_cast<int64_t>(indices[g]), blk, C, mean, stddev, z);
    Bits* o = out + g * N + 4 * static_cast<int64_t>(blk);
    if (vec) {
      if constexpr (sizeof(Bits) == 4) {
        float4 v;
        v.x = z[0];
        v.y = z[1];
        v.z = z[2];
        v.w = z[3];
        *reinterpret_cast<float4*>(o) = v;
      } else {
        ushort4 v;
        v.x = Store::Convert(z[0]);
        v.y = Store::Convert(z[1]);
        v.z = Store::Convert(z[2]);
        v.w = Store::Convert(z[3]);
        *reinterpret_cast<ushort4*>(o) = v;
      }
    } else {
      const int64_t left = N - 4 * static_cast<int64_t>(blk);
      for (int k = 0; k < 4; ++k)
        if (k < left) o[k] = Store::Convert(z[k]);
    }
  }
}

// out: batch * N bit patterns (device); mean/stddev: C floats (host memory,
// copied to scratch).  N = H*W*C >= 1, (N + 3) / 4 < 2^32.
template <typename Store, typename Idx>
cudaError_t GaussianImages(const Idx* indices, int64_t batch, int64_t N, int64_t C,
                           const float* mean_host, const float* stddev_host, int64_t seed,
                           typename Store::Bits* out, cudaStream_t stream,
                           const ScratchFn& scratch) {
  if (batch <= 0 || N <= 0) return cudaSuccess;
  if ((N + 3) / 4 >= (int64_t{1} << 32)) return cudaErrorInvalidValue;
  auto* ms = static_cast<float*>(scratch(sizeof(float) * 2 * C));
  if (ms == nullptr) return cudaErrorMemoryAllocation;
  cudaError_t e = cudaMemcpyAsync(ms, mean_host, sizeof(float) * C, cudaMemcpyHostToDevice, stream);
  if (e != cudaSuccess) return e;
  e = cudaMemcpyAsync(ms + C, stddev_host, sizeof(float) * C, cudaMemcpyHostToDevice, stream);
  if (e != cudaSuccess) return e;
  const int64_t work = batch * ((N + 3) / 4);
  const bool vec = N % 4 == 0 && reinterpret_cast<uintptr_t>(out) % (4 * sizeof(*out)) == 0;
  GaussianKernel<Store, Idx><<<GridFor(work), kThreads, 0, stream>>>(
      indices, batch, N, static_cast<uint32_t>(C), ms, ms + C, KeyFromSeed(seed), vec, out);
  return cudaGetLastError();
}

#undef RG_GRID_LOOP

}  // namespace gpu
}  // namespace rethinkgen

#endif  // defined(__CUDACC__)

#endif  // RETHINKGEN_RANDOMIZE_GPU_CUH_
