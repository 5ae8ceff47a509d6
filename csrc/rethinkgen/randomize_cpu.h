// CPU drivers for the randomizations in randomize.h, free of TensorFlow.
//
// Each driver takes a ParallelFor callable
//   pf(int64_t total, int64_t cost_per_unit, std::function<void(int64_t, int64_t)>)
// that runs the callback over disjoint [begin, end) ranges covering
// [0, total).  The TensorFlow kernels pass TensorFlow's work sharder, the
// pybind11 module passes a std::thread pool.  Results never depend on how
// the range is split.
//
// Three code paths (cpu_path.h) compute the same bits: "generic" (portable
// C++ compiled for the baseline instruction set), "avx2" (x86-64: the
// hand-written intrinsics of randomize_avx2.h, and the same lane loops as
// generic compiled with target("avx2")) and "avx512" (the avx2 path with the
// Gaussian images in the AVX-512 intrinsics of randomize_avx512.h and the
// Feistel lanes compiled for AVX-512).  The path is chosen in one place:
// ActiveCpuKernels() below, evaluated once per library, maps the choice of
// cpu_path.h (CPU features, RETHINKGEN_CPU_PATH) to a table of function
// pointers (CpuKernels); the drivers reach every path-specific loop through
// that table and nothing else tests the CPU.
#ifndef RETHINKGEN_RANDOMIZE_CPU_H_
#define RETHINKGEN_RANDOMIZE_CPU_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <numeric>
#include <type_traits>
#include <vector>

#include "rethinkgen/cpu_path.h"
#include "rethinkgen/randomize.h"

#ifdef RG_HAVE_AVX2_PATH
#include "rethinkgen/randomize_avx2.h"
#include "rethinkgen/randomize_avx512.h"
#endif
#if defined(__linux__)
#include <sys/mman.h>
#endif

#if defined(__GNUC__)
#define RG_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define RG_ALWAYS_INLINE inline
#endif

namespace rethinkgen {

using RangeFn = std::function<void(int64_t, int64_t)>;

// ---- the per-path loops ---------------------------------------------------
// The hot loops work on kLanes independent Philox blocks at once in
// struct-of-arrays form, which compilers vectorize.  A loop shared by the two
// paths is written once as an always-inlined template body (...Body) and
// instantiated into one entry point per path (...Generic, ...Avx2), so each
// copy is compiled for its path's instruction set.  Integer results and IEEE
// float results are the same on every path.
constexpr int kLanes = 64;

struct Lanes {
  uint32_t c0[kLanes], c1[kLanes], c2[kLanes], c3[kLanes];
};

// Philox4x32-10 on every lane, in place (counter in, random words out).
using PhiloxLanesFn = void (*)(Lanes*, Key);

inline void PhiloxLanesGeneric(Lanes* x, Key key) {
  uint32_t k0 = key.k0, k1 = key.k1;
#pragma GCC unroll 1
  for (int r = 0; r < 10; ++r) {
    for (int l = 0; l < kLanes; ++l) {
      const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * x->c0[l];
      const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * x->c2[l];
      const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ x->c1[l] ^ k0;
      const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ x->c3[l] ^ k1;
      x->c1[l] = static_cast<uint32_t>(p1);
      x->c3[l] = static_cast<uint32_t>(p0);
      x->c0[l] = n0;
      x->c2[l] = n2;
    }
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
}

#ifdef RG_HAVE_AVX2_PATH
RG_AVX2 inline void PhiloxLanesAvx2(Lanes* x, Key key) {
  const avx2::RoundKeys keys = avx2::MakeRoundKeys(key);
  uint32_t* words[4] = {x->c0, x->c1, x->c2, x->c3};
  for (int l = 0; l < kLanes; l += 8) {
    __m256i c[4][2];
    for (int w = 0; w < 4; ++w)
      avx2::Split(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(words[w] + l)), &c[w][0],
                  &c[w][1]);
    avx2::Philox(c, keys);
    for (int w = 0; w < 4; ++w)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(words[w] + l), avx2::Join(c[w][0], c[w][1]));
  }
}
#endif

// Blocks b0 .. b0+kLanes-1 of one (purpose, index) stream.
template <PhiloxLanesFn Philox>
RG_ALWAYS_INLINE void StreamLanes(Lanes* x, Key key, uint32_t purpose, int64_t index, uint32_t b0) {
  const uint64_t i = static_cast<uint64_t>(index);
  for (int l = 0; l < kLanes; ++l) {
    x->c0[l] = b0 + static_cast<uint32_t>(l);
    x->c1[l] = purpose;
    x->c2[l] = static_cast<uint32_t>(i);
    x->c3[l] = static_cast<uint32_t>(i >> 32);
  }
  Philox(x, key);
}

// Fisher-Yates draws r[t], t < n-1, of one stream (draws holds n rounded up
// to 2 * kLanes).
using ShuffleDrawsFn = void (*)(Key key, uint32_t purpose, int64_t index, uint32_t n,
                                uint32_t* draws);

template <PhiloxLanesFn Philox>
RG_ALWAYS_INLINE void ShuffleDrawsBody(Key key, uint32_t purpose, int64_t index, uint32_t n,
                                       uint32_t* draws) {
  Lanes x;
  const uint32_t blocks = n / 2;  // ceil((n - 1) / 2)
  for (uint32_t b = 0; b < blocks; b += kLanes) {
    StreamLanes<Philox>(&x, key, purpose, index, b);
    for (int l = 0; l < kLanes; ++l) {
      const uint32_t bound = n - 2 * (b + static_cast<uint32_t>(l));  // n - t
      draws[2 * (b + l)] = UniformIndex32(x.c0[l], x.c1[l], bound);
      draws[2 * (b + l) + 1] = UniformIndex32(x.c2[l], x.c3[l], bound - 1);
    }
  }
}

// Label draws for kLanes example indices (block 0 of kLabelCorrupt).
using LabelLanesFn = void (*)(Key key, const int64_t* index, uint64_t threshold,
                              uint64_t num_classes, uint8_t* corrupted, uint32_t* random_class);

template <PhiloxLanesFn Philox>
RG_ALWAYS_INLINE void LabelLanesBody(Key key, const int64_t* index, uint64_t threshold,
                                     uint64_t num_classes, uint8_t* corrupted,
                                     uint32_t* random_class) {
  Lanes x;
  for (int l = 0; l < kLanes; ++l) {
    const uint64_t i = static_cast<uint64_t>(index[l]);
    x.c0[l] = 0;
    x.c1[l] = kLabelCorrupt;
    x.c2[l] = static_cast<uint32_t>(i);
    x.c3[l] = static_cast<uint32_t>(i >> 32);
  }
  Philox(&x, key);
  // num_classes = 2^32 draws the high word itself (UniformIndex's value).
  const bool all = num_classes >> 32;
  const uint32_t k = static_cast<uint32_t>(num_classes);
  for (int l = 0; l < kLanes; ++l) {
    corrupted[l] = static_cast<uint64_t>(x.c0[l]) < threshold;
    random_class[l] = all ? x.c1[l] : UniformIndex32(x.c1[l], x.c2[l], k);
  }
}

inline void ShuffleDrawsGeneric(Key key, uint32_t purpose, int64_t index, uint32_t n,
                                uint32_t* draws) {
  ShuffleDrawsBody<PhiloxLanesGeneric>(key, purpose, index, n, draws);
}
inline void LabelLanesGeneric(Key key, const int64_t* index, uint64_t threshold,
                              uint64_t num_classes, uint8_t* corrupted, uint32_t* random_class) {
  LabelLanesBody<PhiloxLanesGeneric>(key, index, threshold, num_classes, corrupted, random_class);
}
#ifdef RG_HAVE_AVX2_PATH
RG_AVX2 inline void ShuffleDrawsAvx2(Key key, uint32_t purpose, int64_t index, uint32_t n,
                                     uint32_t* draws) {
  ShuffleDrawsBody<PhiloxLanesAvx2>(key, purpose, index, n, draws);
}
RG_AVX2 inline void LabelLanesAvx2(Key key, const int64_t* index, uint64_t threshold,
                                   uint64_t num_classes, uint8_t* corrupted,
                                   uint32_t* random_class) {
  LabelLanesBody<PhiloxLanesAvx2>(key, index, threshold, num_classes, corrupted, random_class);
}
#endif

// Feistel lanes (mode "permute" v2): x[j] = FeistelEncrypt(f, x[j]) for
// j < count rounded up to kFeistelLanes (x holds that many values < 2^b).
// Plain C++ that each path's compiler flags vectorize (32-bit multiplies);
// whole groups of kFeistelLanes leave no scalar remainder loop.
constexpr int kFeistelLanes = 16;
using FeistelLanesFn = void (*)(const FeistelKey& f, uint32_t* x, int count);

RG_ALWAYS_INLINE void FeistelLanesBody(const FeistelKey& f, uint32_t* x, int count) {
  const uint32_t lo = f.lo_bits, mask = (1u << lo) - 1u;
  const uint32_t shift_hi = 32 - f.hi_bits, shift_lo = 32 - lo;
  uint32_t k[kFeistelRounds];
  for (int r = 0; r < kFeistelRounds; ++r) k[r] = f.k[r];
  for (int j0 = 0; j0 < count; j0 += kFeistelLanes) {
    uint32_t* v = x + j0;
    for (int j = 0; j < kFeistelLanes; ++j) {
      uint32_t left = v[j] >> lo, right = v[j] & mask;
#pragma GCC unroll 8
      for (int r = 0; r < kFeistelRounds; r += 2) {
        left ^= FeistelRound(right, k[r]) >> shift_hi;
        right ^= FeistelRound(left, k[r + 1]) >> shift_lo;
      }
      v[j] = (left << lo) | right;
    }
  }
}

inline void FeistelLanesGeneric(const FeistelKey& f, uint32_t* x, int count) {
  FeistelLanesBody(f, x, count);
}
#ifdef RG_HAVE_AVX2_PATH
RG_AVX2 inline void FeistelLanesAvx2(const FeistelKey& f, uint32_t* x, int count) {
  FeistelLanesBody(f, x, count);
}
RG_AVX512 inline void FeistelLanesAvx512(const FeistelKey& f, uint32_t* x, int count) {
  FeistelLanesBody(f, x, count);
}
#endif

// Applies fn(i, corrupted, random_class) to examples [begin, end).
template <typename Idx, typename Fn>
void ForLabelDraws(LabelLanesFn label_lanes, const Idx* indices, int64_t begin, int64_t end,
                   Key key, uint64_t threshold, uint64_t num_classes, Fn&& fn) {
  int64_t idx[kLanes];
  uint8_t corrupted[kLanes];
  uint32_t cls[kLanes];
  for (int64_t i0 = begin; i0 < end; i0 += kLanes) {
    const int m = static_cast<int>(std::min<int64_t>(kLanes, end - i0));
    for (int l = 0; l < kLanes; ++l) idx[l] = l < m ? static_cast<int64_t>(indices[i0 + l]) : 0;
    label_lanes(key, idx, threshold, num_classes, corrupted, cls);
    for (int l = 0; l < m; ++l) fn(i0 + l, corrupted[l] != 0, cls[l]);
  }
}

// ---- validation (returns the position of the first bad entry, or -1) ----
template <typename T>
int64_t FirstNegative(const T* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (x[i] < 0) return i;
  return -1;
}

template <typename T>
int64_t FirstOutsideRange(const T* x, int64_t n, int64_t hi) {
  for (int64_t i = 0; i < n; ++i)
    if (x[i] < 0 || static_cast<int64_t>(x[i]) >= hi) return i;
  return -1;
}

// Uniform corruption of labels [begin, end), with the input checks done in
// the same pass over the range: returns false if a label is outside
// [0, num_classes) or an index is negative (out is then unspecified; the
// callers name the first bad entry).
template <typename T, typename Idx>
using LabelsUniformFn = bool (*)(const T* labels, const Idx* indices, int64_t begin, int64_t end,
                                 Key key, uint64_t threshold, uint64_t num_classes, T* out);

template <typename T, typename Idx, LabelLanesFn LabelLanes>
bool CorruptLabelsUniformRange(const T* labels, const Idx* indices, int64_t begin, int64_t end,
                               Key key, uint64_t threshold, uint64_t num_classes, T* out) {
  if (FirstNegative(indices + begin, end - begin) >= 0 ||
      FirstOutsideRange(labels + begin, end - begin, static_cast<int64_t>(num_classes)) >= 0)
    return false;
  ForLabelDraws(LabelLanes, indices, begin, end, key, threshold, num_classes,
                [&](int64_t i, bool corrupted, uint32_t cls) {
                  out[i] = corrupted ? static_cast<T>(cls) : labels[i];
                });
  return true;
}

#ifdef RG_HAVE_AVX2_PATH
// The same, 16 labels at a time, checks and draws in registers; the last
// < 16 labels go through the lane loop.
template <typename T, typename Idx>
RG_AVX2 bool CorruptLabelsUniformAvx2(const T* labels, const Idx* indices, int64_t begin,
                                      int64_t end, Key key, uint64_t threshold,
                                      uint64_t num_classes, T* out) {
  const avx2::RoundKeys keys = avx2::MakeRoundKeys(key);
  const __m256i thr = _mm256_set1_epi64x(static_cast<int64_t>(threshold));
  const __m256i k = _mm256_set1_epi64x(static_cast<int64_t>(num_classes));
  const bool all = num_classes >> 32;
  const __m256i k_minus_1 = avx2::KMinus1(static_cast<int64_t>(num_classes) - 1, labels);
  __m256i bad = _mm256_setzero_si256();
  int64_t i = begin;
  for (; i + 16 <= end; i += 16) {
    __m256i c[4][4];  // register j: examples i + 4j .. i + 4j + 3
    for (int j = 0; j < 4; ++j) {
      c[0][j] = _mm256_setzero_si256();
      c[1][j] = avx2::Set(static_cast<uint32_t>(kLabelCorrupt));
      bad = _mm256_or_si256(bad, avx2::LoadIndices(indices + i + 4 * j, &c[2][j], &c[3][j]));
    }
    avx2::Philox(c, keys);
    for (int h = 0; h < 2; ++h) {
      __m256i corrupted[2], cls[2];
      for (int j = 0; j < 2; ++j)
        avx2::DrawLabels(c[0][2 * h + j], c[1][2 * h + j], c[2][2 * h + j], thr, k, all,
                         &corrupted[j], &cls[j]);
      bad = _mm256_or_si256(
          bad, avx2::SelectLabels(labels + i + 8 * h, corrupted, cls, k_minus_1, out + i + 8 * h));
    }
  }
  if (!_mm256_testz_si256(bad, bad)) return false;
  return CorruptLabelsUniformRange<T, Idx, LabelLanesAvx2>(labels, indices, i, end, key, threshold,
                                                           num_classes, out);
}
#endif

// Standard normals of blocks [b0, b0 + n) of example `index`: 4 per block,
// written to z[0 .. 4n) (z must hold 4 * n rounded up to kLanes blocks).
using GaussianNormalsFn = void (*)(Key key, int64_t index, uint32_t b0, uint32_t n, float* z);

inline void GaussianNormalsGeneric(Key key, int64_t index, uint32_t b0, uint32_t n, float* z) {
  Lanes x;
  float z0[kLanes], z1[kLanes], z2[kLanes], z3[kLanes];
  for (uint32_t b = 0; b < n; b += kLanes) {
    StreamLanes<PhiloxLanesGeneric>(&x, key, kGaussian, index, b0 + b);
    for (int l = 0; l < kLanes; ++l) {
      GaussianPair(x.c0[l], x.c1[l], &z0[l], &z1[l]);
      GaussianPair(x.c2[l], x.c3[l], &z2[l], &z3[l]);
    }
    float* o = z + 4 * static_cast<int64_t>(b);
    for (int l = 0; l < kLanes; ++l) {
      o[4 * l] = z0[l];
      o[4 * l + 1] = z1[l];
      o[4 * l + 2] = z2[l];
      o[4 * l + 3] = z3[l];
    }
  }
}

// Normals e < count of blocks b0, b0 + 1, ... of example `index` (the
// element order of GaussianNormals), fused with the affine map:
//   out[e] = mean[e] + stddev[e] * z[e]   (Affine).
using GaussianAffineFn = void (*)(Key key, int64_t index, uint32_t b0, int64_t count,
                                  const float* mean, const float* stddev, float* out);

#ifdef RG_HAVE_AVX2_PATH
// GaussianValuesAvx2 writes
//   out[e] = mean[e] + stddev[e] * z[e]   (Affine) when mean is given,
//   out[e] = z[e]                         otherwise.
RG_AVX2 inline void GaussianValuesAvx2(Key key, int64_t index, uint32_t b0, int64_t count,
                                       const float* mean, const float* stddev, float* out) {
  // Two passes over up to kGroups groups of 8 blocks (32 values): Philox
  // into an 8 KB buffer (L1), then Box-Muller on 2 * kStep register pairs
  // interleaved.  The fused loop (Philox, then two pairs, per 8 blocks) was
  // bound by its long dependency chains; this one runs about 1.35x faster
  // (best of 5 on one thread: 575 vs 425 M values/s), bit for bit the same.
  constexpr int kGroups = 64;
  constexpr int kPhiloxStep = 2;  // groups per Philox step: 4 registers of 4 blocks
  constexpr int kStep = 2;        // groups per Box-Muller step: 2 * kStep register pairs
  static_assert(kGroups % kStep == 0 && kStep % kPhiloxStep == 0, "whole steps");
  const avx2::RoundKeys keys = avx2::MakeRoundKeys(key);
  const uint64_t i = static_cast<uint64_t>(index);
  // Blocks b + 0, 2, 4, 6 and b + 1, 3, 5, 7 in two registers.
  const __m256i even = _mm256_setr_epi64x(0, 2, 4, 6);
  __m256i w[kGroups][4];
  for (int64_t e0 = 0; e0 < count; e0 += 32 * kGroups) {
    const int64_t n = std::min<int64_t>(count - e0, 32 * kGroups);
    const int groups = static_cast<int>((n + 32 * kStep - 1) / (32 * kStep)) * kStep;
    for (int g = 0; g < groups; g += kPhiloxStep) {
      __m256i c[4][2 * kPhiloxStep];
      for (int q = 0; q < kPhiloxStep; ++q) {
        const uint32_t b = b0 + static_cast<uint32_t>((e0 + 32 * (g + q)) / 4);
        for (int j = 0; j < 2; ++j) {
          c[0][2 * q + j] = _mm256_add_epi32(avx2::Set(b + j), even);
          c[1][2 * q + j] = avx2::Set(static_cast<uint32_t>(kGaussian));
          c[2][2 * q + j] = avx2::Set(static_cast<uint32_t>(i));
          c[3][2 * q + j] = avx2::Set(static_cast<uint32_t>(i >> 32));
        }
      }
      avx2::Philox(c, keys);
      for (int q = 0; q < kPhiloxStep; ++q)
        for (int k = 0; k < 4; ++k) w[g + q][k] = avx2::Join(c[k][2 * q], c[k][2 * q + 1]);
    }
    for (int g = 0; g < groups; g += kStep) {
      // Pairs (word 0, word 1) and (word 2, word 3) of each group.
      __m256i x1[2 * kStep], x2[2 * kStep];
      for (int q = 0; q < kStep; ++q) {
        x1[2 * q] = w[g + q][0];
        x2[2 * q] = w[g + q][1];
        x1[2 * q + 1] = w[g + q][2];
        x2[2 * q + 1] = w[g + q][3];
      }
      __m256 z0[2 * kStep], z1[2 * kStep];
      avx2::GaussianPairs(x1, x2, z0, z1);
      for (int q = 0; q < kStep; ++q) {
        const __m256 z[4] = {z0[2 * q], z1[2 * q], z0[2 * q + 1], z1[2 * q + 1]};
        __m256 v[4];
        avx2::ToElementOrder(z, v);
        for (int r = 0; r < 4; ++r) {
          const int64_t at = e0 + 32 * (g + q) + 8 * r;
          if (at >= count) break;
          __m256 x = v[r];
          if (mean)
            x = _mm256_add_ps(_mm256_loadu_ps(mean + at),
                              _mm256_mul_ps(_mm256_loadu_ps(stddev + at), x));
          if (at + 8 <= count) {
            _mm256_storeu_ps(out + at, x);
          } else {
            float tail[8];
            _mm256_storeu_ps(tail, x);
            std::memcpy(out + at, tail, sizeof(float) * (count - at));
          }
        }
      }
    }
  }
}

RG_AVX2 inline void GaussianNormalsAvx2(Key key, int64_t index, uint32_t b0, uint32_t n, float* z) {
  GaussianValuesAvx2(key, index, b0, 4 * int64_t{n}, nullptr, nullptr, z);
}

// The same with AVX-512: groups of 16 blocks (64 values), Philox into an
// 8 KB buffer, then Box-Muller on 2 * kStep register pairs interleaved.
RG_AVX512 inline void GaussianValuesAvx512(Key key, int64_t index, uint32_t b0, int64_t count,
                                           const float* mean, const float* stddev, float* out) {
  constexpr int kGroups = 32;
  constexpr int kPhiloxStep = 2;  // groups per Philox step: 4 registers of 8 blocks
  constexpr int kStep = 2;        // groups per Box-Muller step: 2 * kStep register pairs
  static_assert(kGroups % kStep == 0 && kStep % kPhiloxStep == 0, "whole steps");
  const avx512::RoundKeys keys = avx512::MakeRoundKeys(key);
  const uint64_t i = static_cast<uint64_t>(index);
  // Blocks b + 0, 2, .., 14 and b + 1, 3, .., 15 in two registers.
  const __m512i even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
  __m512i w[kGroups][4];
  for (int64_t e0 = 0; e0 < count; e0 += 64 * kGroups) {
    const int64_t n = std::min<int64_t>(count - e0, 64 * kGroups);
    const int groups = static_cast<int>((n + 64 * kStep - 1) / (64 * kStep)) * kStep;
    for (int g = 0; g < groups; g += kPhiloxStep) {
      __m512i c[4][2 * kPhiloxStep];
      for (int q = 0; q < kPhiloxStep; ++q) {
        const uint32_t b = b0 + static_cast<uint32_t>((e0 + 64 * (g + q)) / 4);
        for (int j = 0; j < 2; ++j) {
          c[0][2 * q + j] = _mm512_add_epi32(avx512::Set(b + j), even);
          c[1][2 * q + j] = avx512::Set(static_cast<uint32_t>(kGaussian));
          c[2][2 * q + j] = avx512::Set(static_cast<uint32_t>(i));
          c[3][2 * q + j] = avx512::Set(static_cast<uint32_t>(i >> 32));
        }
      }
      avx512::Philox(c, keys);
      for (int q = 0; q < kPhiloxStep; ++q)
        for (int k = 0; k < 4; ++k) w[g + q][k] = avx512::Join(c[k][2 * q], c[k][2 * q + 1]);
    }
    for (int g = 0; g < groups; g += kStep) {
      __m512i x1[2 * kStep], x2[2 * kStep];
      for (int q = 0; q < kStep; ++q) {
        x1[2 * q] = w[g + q][0];
        x2[2 * q] = w[g + q][1];
        x1[2 * q + 1] = w[g + q][2];
        x2[2 * q + 1] = w[g + q][3];
      }
      __m512 z0[2 * kStep], z1[2 * kStep];
      avx512::GaussianPairs(x1, x2, z0, z1);
      for (int q = 0; q < kStep; ++q) {
        const __m512 z[4] = {z0[2 * q], z1[2 * q], z0[2 * q + 1], z1[2 * q + 1]};
        __m512 v[4];
        avx512::ToElementOrder(z, v);
        for (int r = 0; r < 4; ++r) {
          const int64_t at = e0 + 64 * (g + q) + 16 * r;
          if (at >= count) break;
          const int64_t left = count - at;
          const __mmask16 keep =
              left >= 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << left) - 1u);
          __m512 x = v[r];
          if (mean)
            x = _mm512_add_ps(_mm512_maskz_loadu_ps(keep, mean + at),
                              _mm512_mul_ps(_mm512_maskz_loadu_ps(keep, stddev + at), x));
          _mm512_mask_storeu_ps(out + at, keep, x);
        }
      }
    }
  }
}

RG_AVX512 inline void GaussianNormalsAvx512(Key key, int64_t index, uint32_t b0, uint32_t n,
                                            float* z) {
  GaussianValuesAvx512(key, index, b0, 4 * int64_t{n}, nullptr, nullptr, z);
}
#endif

// ---- the path, chosen once ------------------------------------------------
// Every path-specific loop the drivers run.
struct CpuKernels {
  CpuPath path;
  ShuffleDrawsFn shuffle_draws;
  LabelLanesFn label_lanes;
  LabelsUniformFn<int32_t, int32_t> labels_uniform_i32_i32;
  LabelsUniformFn<int32_t, int64_t> labels_uniform_i32_i64;
  LabelsUniformFn<int64_t, int32_t> labels_uniform_i64_i32;
  LabelsUniformFn<int64_t, int64_t> labels_uniform_i64_i64;
  GaussianNormalsFn gaussian_normals;
  // Fused normals + affine for float32 outputs; null where the path has
  // none (the driver then maps gaussian_normals' output itself).
  GaussianAffineFn gaussian_affine_f32;
  FeistelLanesFn feistel_lanes;
};

inline CpuKernels GenericCpuKernels() {
  CpuKernels k;
  k.path = CpuPath::kGeneric;
  k.shuffle_draws = ShuffleDrawsGeneric;
  k.label_lanes = LabelLanesGeneric;
  k.labels_uniform_i32_i32 = CorruptLabelsUniformRange<int32_t, int32_t, LabelLanesGeneric>;
  k.labels_uniform_i32_i64 = CorruptLabelsUniformRange<int32_t, int64_t, LabelLanesGeneric>;
  k.labels_uniform_i64_i32 = CorruptLabelsUniformRange<int64_t, int32_t, LabelLanesGeneric>;
  k.labels_uniform_i64_i64 = CorruptLabelsUniformRange<int64_t, int64_t, LabelLanesGeneric>;
  k.gaussian_normals = GaussianNormalsGeneric;
  k.gaussian_affine_f32 = nullptr;
  k.feistel_lanes = FeistelLanesGeneric;
  return k;
}

#ifdef RG_HAVE_AVX2_PATH
inline CpuKernels Avx2CpuKernels() {
  CpuKernels k;
  k.path = CpuPath::kAvx2;
  k.shuffle_draws = ShuffleDrawsAvx2;
  k.label_lanes = LabelLanesAvx2;
  k.labels_uniform_i32_i32 = CorruptLabelsUniformAvx2<int32_t, int32_t>;
  k.labels_uniform_i32_i64 = CorruptLabelsUniformAvx2<int32_t, int64_t>;
  k.labels_uniform_i64_i32 = CorruptLabelsUniformAvx2<int64_t, int32_t>;
  k.labels_uniform_i64_i64 = CorruptLabelsUniformAvx2<int64_t, int64_t>;
  k.gaussian_normals = GaussianNormalsAvx2;
  k.gaussian_affine_f32 = GaussianValuesAvx2;
  k.feistel_lanes = FeistelLanesAvx2;
  return k;
}

// The AVX2 table with the Gaussian and Feistel loops in AVX-512.
inline CpuKernels Avx512CpuKernels() {
  CpuKernels k = Avx2CpuKernels();
  k.path = CpuPath::kAvx512;
  k.gaussian_normals = GaussianNormalsAvx512;
  k.gaussian_affine_f32 = GaussianValuesAvx512;
  k.feistel_lanes = FeistelLanesAvx512;
  return k;
}
#endif

// The table of a path (kAvx2 and kAvx512 need such a CPU: cpu_path.h only
// picks them where CpuRunsAvx2Path() / CpuRunsAvx512Path()).
inline CpuKernels CpuKernelsFor(CpuPath path) {
#ifdef RG_HAVE_AVX2_PATH
  if (path == CpuPath::kAvx512) return Avx512CpuKernels();
  if (path == CpuPath::kAvx2) return Avx2CpuKernels();
#endif
  (void)path;
  return GenericCpuKernels();
}

// This library's table: built once, from ActiveCpuPathChoice().
inline const CpuKernels& ActiveCpuKernels() {
  static const CpuKernels kernels = CpuKernelsFor(ActiveCpuPathChoice().path);
  return kernels;
}

template <typename T, typename Idx>
LabelsUniformFn<T, Idx> LabelsUniformOf(const CpuKernels& k) {
  static_assert((std::is_same<T, int32_t>::value || std::is_same<T, int64_t>::value) &&
                    (std::is_same<Idx, int32_t>::value || std::is_same<Idx, int64_t>::value),
                "labels and indices are int32 or int64");
  if constexpr (std::is_same<T, int32_t>::value) {
    if constexpr (std::is_same<Idx, int32_t>::value)
      return k.labels_uniform_i32_i32;
    else
      return k.labels_uniform_i32_i64;
  } else {
    if constexpr (std::is_same<Idx, int32_t>::value)
      return k.labels_uniform_i64_i32;
    else
      return k.labels_uniform_i64_i64;
  }
}

// Scratch size for ShuffleDraws over n items.
inline size_t DrawsSize(size_t n) { return (n / 2 + kLanes) / kLanes * kLanes * 2; }

// Fisher-Yates (randomize.h) with the random draws computed first in
// vectorized form, then the sequential swap chain.  draws: DrawsSize(n).
inline void FisherYatesFast(const CpuKernels& kernels, uint32_t* perm, uint32_t* draws, uint32_t n,
                            Key key, uint32_t purpose, int64_t index) {
  for (uint32_t k = 0; k < n; ++k) perm[k] = k;
  if (n < 2) return;
  kernels.shuffle_draws(key, purpose, index, n, draws);
  for (uint32_t t = 0; t + 1 < n; ++t) {
    const uint32_t j = n - 1 - t;
    const uint32_t r = draws[t];
    const uint32_t tmp = perm[j];
    perm[j] = perm[r];
    perm[r] = tmp;
  }
}

// ---- outputs -------------------------------------------------------------
// A fresh output of hundreds of MB costs one page fault per 4 KiB page on
// first touch, which takes longer than computing the values (measured: a
// 470 MB float32 batch, ~0.45 s of faults in a VM, vs ~0.1 s with 2 MiB
// pages).  Asking for transparent huge pages on the untouched output cuts
// that 512-fold where the kernel allows it (THP "madvise" mode); it is only
// advice, so results and correctness never depend on it.  Outputs under
// 64 MiB are left alone: glibc serves blocks that size from its heap, where
// they share pages with other data; larger ones get a mapping of their own.
inline void AdviseHugePages(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{1} << 21;
  if (bytes < 32 * kHuge) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHuge - 1);
  madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

// ---- labels --------------------------------------------------------------
// Cost of one label for the work sharder (about a CPU cycle), set below the
// real few cycles on purpose: handing half of a 50,000-label batch (~0.2 ms
// of work) to a second thread was measured to cost more than it saves, so
// with this cost only batches of a few hundred thousand labels get split.
constexpr int64_t kLabelCost = 1;

// Returns false if a label is outside [0, num_classes) or an index is
// negative; the caller then reports the first such entry.
template <typename T, typename Idx, typename PF>
bool CorruptLabelsUniform(const T* labels, const Idx* indices, int64_t n, double p,
                          uint64_t num_classes, int64_t seed, T* out, PF&& pf) {
  const LabelsUniformFn<T, Idx> range = LabelsUniformOf<T, Idx>(ActiveCpuKernels());
  const Key key = KeyFromSeed(seed);
  const uint64_t thr = CorruptThreshold(p);
  std::atomic<bool> ok{true};
  pf(n, kLabelCost, [&](int64_t begin, int64_t end) {
    if (!range(labels, indices, begin, end, key, thr, num_classes, out))
      ok.store(false, std::memory_order_relaxed);
  });
  return ok.load();
}

// Feistel cycle-walk of a chunk: dst[j] = FeistelIndex(f, k0 + j) for
// j < count <= kFeistelChunk.  Each pass runs the lanes over the items still
// walking (a value >= m), then keeps only those.
constexpr int kFeistelChunk = 512;

inline void FeistelIndices(FeistelLanesFn lanes, const FeistelKey& f, uint32_t k0, int count,
                           uint32_t* dst) {
  static_assert(kFeistelChunk % kFeistelLanes == 0, "whole lane groups");
  uint32_t x[kFeistelChunk], slot[kFeistelChunk];
  for (int j = 0; j < kFeistelChunk; ++j) {  // the padding lanes hold values < m too
    x[j] = j < count ? k0 + static_cast<uint32_t>(j) : 0;
    slot[j] = static_cast<uint32_t>(j);
  }
  for (int c = count; c > 0;) {
    lanes(f, x, c);
    int kept = 0;
    for (int j = 0; j < c; ++j) {  // branch-free: dst's last write is the final value
      const uint32_t v = x[j], s = slot[j];
      dst[s] = v;
      x[kept] = v;
      slot[kept] = s;
      kept += v >= f.m ? 1 : 0;
    }
    c = kept;
  }
}

// Cost of one permuted label for the work sharder (Feistel walk and gather).
constexpr int64_t kPermuteLabelCost = 40;

// Dataset-level: the corrupted examples exchange labels (mode "permute" v2,
// see randomize.h): out[pos[k]] = labels[pos[LabelPermutation(k)]], pos the
// selected positions in increasing index order.
template <typename T, typename Idx, typename PF>
void CorruptLabelsPermute(const T* labels, const Idx* indices, int64_t n, double p, int64_t seed,
                          T* out, PF&& pf) {
  const CpuKernels& kernels = ActiveCpuKernels();
  const Key key = KeyFromSeed(seed);
  const uint64_t thr = CorruptThreshold(p);
  const bool all = (thr >> 32) != 0;  // p = 1 selects every example: no draws needed
  std::vector<uint8_t> chosen(all ? 0 : n);
  if (!all)
    pf(n, 50, [&](int64_t begin, int64_t end) {
      ForLabelDraws(kernels.label_lanes, indices, begin, end, key, thr, 1,
                    [&](int64_t i, bool corrupted, uint32_t) {
                      chosen[i] = corrupted;
                      out[i] = labels[i];
                    });
    });
  // pos: the selected positions, stably sorted by example index; left empty
  // for the identity (every example selected, indices already in order).
  std::vector<uint32_t> pos;
  int64_t m = n;
  const bool in_order = std::is_sorted(indices, indices + n);
  if (!all || !in_order) {
    for (int64_t i = 0; i < n; ++i)
      if (all || chosen[i]) pos.push_back(static_cast<uint32_t>(i));
    m = static_cast<int64_t>(pos.size());
    if (!in_order)
      std::stable_sort(pos.begin(), pos.end(),
                       [&](uint32_t a, uint32_t b) { return indices[a] < indices[b]; });
  }
  if (m < 2) {
    if (all) std::copy(labels, labels + n, out);
    return;
  }
  const uint32_t* ps = pos.empty() ? nullptr : pos.data();
  if (m <= kFeistelMinItems) {
    std::vector<uint32_t> perm(m), draws(DrawsSize(m));
    FisherYatesFast(kernels, perm.data(), draws.data(), static_cast<uint32_t>(m), key,
                    kLabelPermute, 0);
    for (int64_t k = 0; k < m; ++k) out[ps ? ps[k] : k] = labels[ps ? ps[perm[k]] : perm[k]];
    return;
  }
  const FeistelKey f = MakeFeistelKey(key, static_cast<uint32_t>(m));
  pf(m, kPermuteLabelCost, [&](int64_t begin, int64_t end) {
    uint32_t src[kFeistelChunk];
    for (int64_t k0 = begin; k0 < end; k0 += kFeistelChunk) {
      const int count = static_cast<int>(std::min<int64_t>(kFeistelChunk, end - k0));
      FeistelIndices(kernels.feistel_lanes, f, static_cast<uint32_t>(k0), count, src);
      if (ps) {
        for (int j = 0; j < count; ++j) out[ps[k0 + j]] = labels[ps[src[j]]];
      } else {
        for (int j = 0; j < count; ++j) out[k0 + j] = labels[src[j]];
      }
    }
  });
}

// ---- pixels --------------------------------------------------------------
// out[k*C .. k*C+C) = in[perm[k]*C ..) for one example.
template <typename E>
inline void GatherUnits(const E* in, E* out, const uint32_t* perm, uint32_t P, int64_t C) {
  if (C == 1) {
    for (uint32_t k = 0; k < P; ++k) out[k] = in[perm[k]];
  } else if (C == 3) {
    for (uint32_t k = 0; k < P; ++k) {
      const E* s = in + 3 * static_cast<int64_t>(perm[k]);
      out[3 * k] = s[0];
      out[3 * k + 1] = s[1];
      out[3 * k + 2] = s[2];
    }
  } else {
    for (uint32_t k = 0; k < P; ++k)
      std::memcpy(out + k * C, in + static_cast<int64_t>(perm[k]) * C, sizeof(E) * C);
  }
}

// E is an element type of the image's byte width (uint8_t, uint16_t, ...).
// P units of C elements each per example.
template <typename E, typename Idx, typename PF>
void PermutePixels(const E* in, const Idx* indices, int64_t batch, uint32_t P, int64_t C,
                   int64_t seed, bool per_example, E* out, PF&& pf) {
  const CpuKernels& kernels = ActiveCpuKernels();
  const Key key = KeyFromSeed(seed);
  const int64_t stride = static_cast<int64_t>(P) * C;
  AdviseHugePages(out, sizeof(E) * batch * stride);
  if (!per_example) {
    std::vector<uint32_t> perm(P), draws(DrawsSize(P));
    FisherYatesFast(kernels, perm.data(), draws.data(), P, key, kPixelsShared, 0);
    pf(batch, stride * 2, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b)
        GatherUnits(in + b * stride, out + b * stride, perm.data(), P, C);
    });
    return;
  }
  pf(batch, static_cast<int64_t>(P) * 40 + stride * 2, [&](int64_t begin, int64_t end) {
    std::vector<uint32_t> perm(P), draws(DrawsSize(P));
    for (int64_t b = begin; b < end; ++b) {
      FisherYatesFast(kernels, perm.data(), draws.data(), P, key, kPixelsPerExample,
                      static_cast<int64_t>(indices[b]));
      GatherUnits(in + b * stride, out + b * stride, perm.data(), P, C);
    }
  });
}

// ---- Gaussian images -----------------------------------------------------
struct StoreFloat {
  using Bits = float;
  static Bits Convert(float x) { return x; }
};
struct StoreHalf {
  using Bits = uint16_t;
  static Bits Convert(float x) { return FloatToHalfBits(x); }
};
struct StoreBfloat16 {
  using Bits = uint16_t;
  static Bits Convert(float x) { return FloatToBfloat16Bits(x); }
};

constexpr int64_t kGaussChunkBlocks = 512;  // 2048 values per work unit

template <typename Store, typename Idx, typename PF>
void GaussianImages(const Idx* indices, int64_t batch, int64_t N, int64_t C, const float* mean,
                    const float* stddev, int64_t seed, typename Store::Bits* out, PF&& pf) {
  const CpuKernels& kernels = ActiveCpuKernels();
  const Key key = KeyFromSeed(seed);
  const int64_t blocks = (N + 3) / 4;
  const int64_t chunks = (blocks + kGaussChunkBlocks - 1) / kGaussChunkBlocks;
  // Per-element mean and stddev over one chunk-aligned period, so the inner
  // loop needs no modulo: a chunk starts at a multiple of 4*512 elements.
  const int64_t period = 4 * kGaussChunkBlocks * C;  // multiple of C and chunk
  std::vector<float> mv(period), sv(period);
  for (int64_t e = 0; e < period; ++e) {
    mv[e] = mean[e % C];
    sv[e] = stddev[e % C];
  }
  AdviseHugePages(out, sizeof(*out) * batch * N);
  pf(batch * chunks, 4 * kGaussChunkBlocks * 12, [&](int64_t begin, int64_t end) {
    static_assert(kGaussChunkBlocks % kLanes == 0, "chunk = whole lanes");
    float z[4 * kGaussChunkBlocks];
    for (int64_t u = begin; u < end; ++u) {
      const int64_t b = u / chunks, ch = u % chunks;
      const int64_t blk0 = ch * kGaussChunkBlocks;
      const int64_t blk1 = std::min(blocks, blk0 + kGaussChunkBlocks);
      const int64_t e0 = 4 * blk0;
      const int64_t e1 = std::min(N, 4 * blk1);
      const int64_t off = e0 % period;
      const int64_t index = static_cast<int64_t>(indices[b]);
      typename Store::Bits* o = out + b * N + e0;
      const float* m = mv.data() + off;
      const float* s = sv.data() + off;
      if constexpr (std::is_same<Store, StoreFloat>::value) {
        if (kernels.gaussian_affine_f32) {  // fused, no z round trip
          kernels.gaussian_affine_f32(key, index, static_cast<uint32_t>(blk0), e1 - e0, m, s, o);
          continue;
        }
      }
      kernels.gaussian_normals(key, index, static_cast<uint32_t>(blk0),
                               static_cast<uint32_t>(blk1 - blk0), z);
      for (int64_t e = 0; e < e1 - e0; ++e) o[e] = Store::Convert(Affine(z[e], m[e], s[e]));
    }
  });
}

}  // namespace rethinkgen

#endif  // RETHINKGEN_RANDOMIZE_CPU_H_
