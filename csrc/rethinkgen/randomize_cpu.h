// CPU drivers for the randomizations in randomize.h, free of TensorFlow.
//
// Each driver takes a ParallelFor callable
//   pf(int64_t total, int64_t cost_per_unit, std::function<void(int64_t, int64_t)>)
// that runs the callback over disjoint [begin, end) ranges covering
// [0, total).  The TensorFlow kernels pass TensorFlow's work sharder, the
// pybind11 module passes a std::thread pool.  Results never depend on how
// the range is split.
#ifndef RETHINKGEN_RANDOMIZE_CPU_H_
#define RETHINKGEN_RANDOMIZE_CPU_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <numeric>
#include <vector>

#include "rethinkgen/randomize.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__CUDACC__)
#include <immintrin.h>
#endif

namespace rethinkgen {

using RangeFn = std::function<void(int64_t, int64_t)>;

// ---- vectorizable Philox ------------------------------------------------
// The hot loops below work on kLanes independent Philox blocks at once in
// struct-of-arrays form, which GCC and Clang vectorize; the x86-64 build
// also carries an AVX2 clone chosen at load time.  Integer results and
// IEEE float results are the same in every clone.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__CUDACC__)
#define RG_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define RG_CLONES
#endif

constexpr int kLanes = 64;

struct Lanes {
  uint32_t c0[kLanes], c1[kLanes], c2[kLanes], c3[kLanes];
};

// Philox4x32-10 on every lane, in place (counter in, random words out).
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

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__CUDACC__)
// The same with AVX2 intrinsics, 8 lanes per register: the 32x32->64-bit
// products of even and odd lanes are split into high and low words with
// blends (compilers do not find this on their own).
__attribute__((target("avx2"))) inline void PhiloxLanesAvx2(Lanes* x, Key key) {
  const __m256i m0 = _mm256_set1_epi64x(kPhiloxM0);
  const __m256i m1 = _mm256_set1_epi64x(kPhiloxM1);
  for (int l = 0; l < kLanes; l += 8) {
    __m256i c0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x->c0 + l));
    __m256i c1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x->c1 + l));
    __m256i c2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x->c2 + l));
    __m256i c3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x->c3 + l));
    uint32_t k0 = key.k0, k1 = key.k1;
    for (int r = 0; r < 10; ++r) {
      const __m256i p0e = _mm256_mul_epu32(c0, m0);
      const __m256i p0o = _mm256_mul_epu32(_mm256_srli_epi64(c0, 32), m0);
      const __m256i p1e = _mm256_mul_epu32(c2, m1);
      const __m256i p1o = _mm256_mul_epu32(_mm256_srli_epi64(c2, 32), m1);
      const __m256i hi0 = _mm256_blend_epi32(_mm256_srli_epi64(p0e, 32), p0o, 0xAA);
      const __m256i lo0 = _mm256_blend_epi32(p0e, _mm256_slli_epi64(p0o, 32), 0xAA);
      const __m256i hi1 = _mm256_blend_epi32(_mm256_srli_epi64(p1e, 32), p1o, 0xAA);
      const __m256i lo1 = _mm256_blend_epi32(p1e, _mm256_slli_epi64(p1o, 32), 0xAA);
      const __m256i n0 = _mm256_xor_si256(
          _mm256_xor_si256(hi1, c1), _mm256_set1_epi32(static_cast<int>(k0)));
      const __m256i n2 = _mm256_xor_si256(
          _mm256_xor_si256(hi0, c3), _mm256_set1_epi32(static_cast<int>(k1)));
      c1 = lo1;
      c3 = lo0;
      c0 = n0;
      c2 = n2;
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(x->c0 + l), c0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(x->c1 + l), c1);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(x->c2 + l), c2);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(x->c3 + l), c3);
  }
}

inline void PhiloxLanes(Lanes* x, Key key) {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2)
    PhiloxLanesAvx2(x, key);
  else
    PhiloxLanesGeneric(x, key);
}
#else
inline void PhiloxLanes(Lanes* x, Key key) { PhiloxLanesGeneric(x, key); }
#endif

// Blocks b0 .. b0+kLanes-1 of one (purpose, index) stream.
inline void StreamLanes(Lanes* x, Key key, uint32_t purpose, int64_t index,
                        uint32_t b0) {
  const uint64_t i = static_cast<uint64_t>(index);
  for (int l = 0; l < kLanes; ++l) {
    x->c0[l] = b0 + static_cast<uint32_t>(l);
    x->c1[l] = purpose;
    x->c2[l] = static_cast<uint32_t>(i);
    x->c3[l] = static_cast<uint32_t>(i >> 32);
  }
  PhiloxLanes(x, key);
}

// Standard normals of blocks [b0, b0 + n) of example `index`: 4 per block,
// written to z[0 .. 4n) (z must hold 4 * n rounded up to kLanes blocks).
static RG_CLONES void GaussianRun(Key key, int64_t index, uint32_t b0,
                                  uint32_t n, float* z) {
  Lanes x;
  float z0[kLanes], z1[kLanes], z2[kLanes], z3[kLanes];
  for (uint32_t b = 0; b < n; b += kLanes) {
    StreamLanes(&x, key, kGaussian, index, b0 + b);
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

// Fisher-Yates draws r[t], t < n-1, of one stream (draws holds n rounded up
// to 2 * kLanes).
static RG_CLONES void ShuffleDraws(Key key, uint32_t purpose, int64_t index,
                                   uint32_t n, uint32_t* draws) {
  Lanes x;
  const uint32_t blocks = n / 2;  // ceil((n - 1) / 2)
  for (uint32_t b = 0; b < blocks; b += kLanes) {
    StreamLanes(&x, key, purpose, index, b);
    for (int l = 0; l < kLanes; ++l) {
      const uint32_t bound = n - 2 * (b + static_cast<uint32_t>(l));  // n - t
      draws[2 * (b + l)] = UniformIndex32(x.c0[l], x.c1[l], bound);
      draws[2 * (b + l) + 1] = UniformIndex32(x.c2[l], x.c3[l], bound - 1);
    }
  }
}

// Label draws for kLanes example indices (block 0 of kLabelCorrupt).
static RG_CLONES void LabelLanes(Key key, const int64_t* index,
                                 uint64_t threshold, uint64_t num_classes,
                                 uint8_t* corrupted, uint32_t* random_class) {
  Lanes x;
  for (int l = 0; l < kLanes; ++l) {
    const uint64_t i = static_cast<uint64_t>(index[l]);
    x.c0[l] = 0;
    x.c1[l] = kLabelCorrupt;
    x.c2[l] = static_cast<uint32_t>(i);
    x.c3[l] = static_cast<uint32_t>(i >> 32);
  }
  PhiloxLanes(&x, key);
  // num_classes = 2^32 draws the high word itself (UniformIndex's value).
  const bool all = num_classes >> 32;
  const uint32_t k = static_cast<uint32_t>(num_classes);
  for (int l = 0; l < kLanes; ++l) {
    corrupted[l] = static_cast<uint64_t>(x.c0[l]) < threshold;
    random_class[l] = all ? x.c1[l] : UniformIndex32(x.c1[l], x.c2[l], k);
  }
}

// Applies fn(i, corrupted, random_class) to examples [begin, end).
template <typename Idx, typename Fn>
void ForLabelDraws(const Idx* indices, int64_t begin, int64_t end, Key key,
                   uint64_t threshold, uint64_t num_classes, Fn&& fn) {
  int64_t idx[kLanes];
  uint8_t corrupted[kLanes];
  uint32_t cls[kLanes];
  for (int64_t i0 = begin; i0 < end; i0 += kLanes) {
    const int m = static_cast<int>(std::min<int64_t>(kLanes, end - i0));
    for (int l = 0; l < kLanes; ++l)
      idx[l] = l < m ? static_cast<int64_t>(indices[i0 + l]) : 0;
    LabelLanes(key, idx, threshold, num_classes, corrupted, cls);
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

// Scratch size for ShuffleDraws over n items.
inline size_t DrawsSize(size_t n) {
  return (n / 2 + kLanes) / kLanes * kLanes * 2;
}

// Fisher-Yates (randomize.h) with the random draws computed first in
// vectorized form, then the sequential swap chain.  draws: DrawsSize(n).
inline void FisherYatesFast(uint32_t* perm, uint32_t* draws, uint32_t n,
                            Key key, uint32_t purpose, int64_t index) {
  for (uint32_t k = 0; k < n; ++k) perm[k] = k;
  if (n < 2) return;
  ShuffleDraws(key, purpose, index, n, draws);
  for (uint32_t t = 0; t + 1 < n; ++t) {
    const uint32_t j = n - 1 - t;
    const uint32_t r = draws[t];
    const uint32_t tmp = perm[j];
    perm[j] = perm[r];
    perm[r] = tmp;
  }
}

// ---- labels --------------------------------------------------------------
template <typename T, typename Idx, typename PF>
void CorruptLabelsUniform(const T* labels, const Idx* indices, int64_t n,
                          double p, uint64_t num_classes, int64_t seed, T* out,
                          PF&& pf) {
  const Key key = KeyFromSeed(seed);
  const uint64_t thr = CorruptThreshold(p);
  pf(n, 50, [&](int64_t begin, int64_t end) {
    ForLabelDraws(indices, begin, end, key, thr, num_classes,
                  [&](int64_t i, bool corrupted, uint32_t cls) {
                    out[i] = corrupted ? static_cast<T>(cls) : labels[i];
                  });
  });
}

// Dataset-level: the corrupted examples exchange labels (see randomize.h).
template <typename T, typename Idx, typename PF>
void CorruptLabelsPermute(const T* labels, const Idx* indices, int64_t n,
                          double p, int64_t seed, T* out, PF&& pf) {
  const Key key = KeyFromSeed(seed);
  const uint64_t thr = CorruptThreshold(p);
  std::vector<uint8_t> chosen(n);
  pf(n, 50, [&](int64_t begin, int64_t end) {
    ForLabelDraws(indices, begin, end, key, thr, 1,
                  [&](int64_t i, bool corrupted, uint32_t) {
                    chosen[i] = corrupted;
                  });
  });
  std::vector<int64_t> pos;
  for (int64_t i = 0; i < n; ++i)
    if (chosen[i]) pos.push_back(i);
  std::stable_sort(pos.begin(), pos.end(), [&](int64_t a, int64_t b) {
    return indices[a] < indices[b];
  });
  std::copy(labels, labels + n, out);
  if (pos.size() < 2) return;
  std::vector<uint32_t> perm(pos.size()), draws(DrawsSize(pos.size()));
  FisherYatesFast(perm.data(), draws.data(), static_cast<uint32_t>(pos.size()),
                  key, kLabelPermute, 0);
  for (size_t k = 0; k < pos.size(); ++k) out[pos[k]] = labels[pos[perm[k]]];
}

// ---- pixels --------------------------------------------------------------
// out[k*C .. k*C+C) = in[perm[k]*C ..) for one example.
template <typename E>
inline void GatherUnits(const E* in, E* out, const uint32_t* perm, uint32_t P,
                        int64_t C) {
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
      std::memcpy(out + k * C, in + static_cast<int64_t>(perm[k]) * C,
                  sizeof(E) * C);
  }
}

// E is an element type of the image's byte width (uint8_t, uint16_t, ...).
// P units of C elements each per example.
template <typename E, typename Idx, typename PF>
void PermutePixels(const E* in, const Idx* indices, int64_t batch, uint32_t P,
                   int64_t C, int64_t seed, bool per_example, E* out,
                   PF&& pf) {
  const Key key = KeyFromSeed(seed);
  const int64_t stride = static_cast<int64_t>(P) * C;
  if (!per_example) {
    std::vector<uint32_t> perm(P), draws(DrawsSize(P));
    FisherYatesFast(perm.data(), draws.data(), P, key, kPixelsShared, 0);
    pf(batch, stride * 2, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b)
        GatherUnits(in + b * stride, out + b * stride, perm.data(), P, C);
    });
    return;
  }
  pf(batch, static_cast<int64_t>(P) * 40 + stride * 2,
     [&](int64_t begin, int64_t end) {
       std::vector<uint32_t> perm(P), draws(DrawsSize(P));
       for (int64_t b = begin; b < end; ++b) {
         FisherYatesFast(perm.data(), draws.data(), P, key, kPixelsPerExample,
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
void GaussianImages(const Idx* indices, int64_t batch, int64_t N, int64_t C,
                    const float* mean, const float* stddev, int64_t seed,
                    typename Store::Bits* out, PF&& pf) {
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
  pf(batch * chunks, 4 * kGaussChunkBlocks * 12, [&](int64_t begin,
                                                       int64_t end) {
    static_assert(kGaussChunkBlocks % kLanes == 0, "chunk = whole lanes");
    float z[4 * kGaussChunkBlocks];
    for (int64_t u = begin; u < end; ++u) {
      const int64_t b = u / chunks, ch = u % chunks;
      const int64_t blk0 = ch * kGaussChunkBlocks;
      const int64_t blk1 = std::min(blocks, blk0 + kGaussChunkBlocks);
      GaussianRun(key, static_cast<int64_t>(indices[b]),
                  static_cast<uint32_t>(blk0),
                  static_cast<uint32_t>(blk1 - blk0), z);
      const int64_t e0 = 4 * blk0;
      const int64_t e1 = std::min(N, 4 * blk1);
      const int64_t off = e0 % period;
      typename Store::Bits* o = out + b * N + e0;
      const float* m = mv.data() + off;
      const float* s = sv.data() + off;
      for (int64_t e = 0; e < e1 - e0; ++e)
        o[e] = Store::Convert(Affine(z[e], m[e], s[e]));
    }
  });
}

}  // namespace rethinkgen

#endif  // RETHINKGEN_RANDOMIZE_CPU_H_
