// AVX2 building blocks of the CPU hot loops (randomize_cpu.h): Philox,
// Box-Muller and the label draw of randomize.h, 8 (Philox: 4) lanes per
// register.
//
// Bit-identical to randomize.h: the integer steps are the same, and every
// float32 +, -, * and sqrt of the scalar code is one IEEE-rounded AVX
// instruction here, in the same order (no FMA, no reassociation; the
// polynomials are evaluated exactly as LogF and SinCosQuarter do).
//
// Everything is compiled with target("avx2") and reached only through the
// AVX2 kernel table of randomize_cpu.h (Avx2CpuKernels), which is used only
// where the CPU has AVX2 (cpu_path.h), so the library still loads and runs on
// x86-64 CPUs without AVX2.
#ifndef RETHINKGEN_RANDOMIZE_AVX2_H_
#define RETHINKGEN_RANDOMIZE_AVX2_H_

#include <immintrin.h>

#include <cstdint>

#include "rethinkgen/randomize.h"

// Helpers are forced inline so that the vectors stay in registers.
#define RG_AVX2 __attribute__((target("avx2")))
#define RG_AVX2_INLINE __attribute__((target("avx2"), always_inline)) inline

namespace rethinkgen {
namespace avx2 {

// ---- Philox4x32-10 ------------------------------------------------------
// Lanes live in the low 32 bits of 64-bit elements, 4 per register: that is
// where _mm256_mul_epu32 reads its factors and leaves the low product word,
// and a 64-bit shift yields the high word.  Nothing needs to be shuffled;
// the high halves of the elements carry junk that no step reads.

// Round keys, broadcast.
struct RoundKeys {
  __m256i k0[10], k1[10];
};

RG_AVX2_INLINE RoundKeys MakeRoundKeys(Key key) {
  RoundKeys r;
  uint32_t k0 = key.k0, k1 = key.k1;
  for (int i = 0; i < 10; ++i) {
    r.k0[i] = _mm256_set1_epi32(static_cast<int>(k0));
    r.k1[i] = _mm256_set1_epi32(static_cast<int>(k1));
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return r;
}

// Philox4x32-10 on R registers of 4 lanes, in place: c[w][j] holds counter
// (then random) word w of register j's lanes.  Independent registers are
// interleaved round by round to hide the multiplies' latency.
template <int R>
RG_AVX2_INLINE void Philox(__m256i (&c)[4][R], const RoundKeys& k) {
  const __m256i m0 = _mm256_set1_epi64x(kPhiloxM0);
  const __m256i m1 = _mm256_set1_epi64x(kPhiloxM1);
  for (int r = 0; r < 10; ++r) {
#pragma GCC unroll 8
    for (int j = 0; j < R; ++j) {
      const __m256i p0 = _mm256_mul_epu32(c[0][j], m0);
      const __m256i p1 = _mm256_mul_epu32(c[2][j], m1);
      c[0][j] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), c[1][j]), k.k0[r]);
      c[2][j] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), c[3][j]), k.k1[r]);
      c[1][j] = p1;
      c[3][j] = p0;
    }
  }
}

// 8 lanes (32-bit elements) to two registers of lanes 0 2 4 6 and 1 3 5 7,
// and back.
RG_AVX2_INLINE void Split(__m256i x, __m256i* even, __m256i* odd) {
  *even = x;
  *odd = _mm256_srli_epi64(x, 32);
}
RG_AVX2_INLINE __m256i Join(__m256i even, __m256i odd) {
  return _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

// ---- Box-Muller (GaussianPair) -------------------------------------------
RG_AVX2_INLINE __m256 Set(float x) { return _mm256_set1_ps(x); }
RG_AVX2_INLINE __m256i Set(uint32_t x) { return _mm256_set1_epi32(static_cast<int>(x)); }
RG_AVX2_INLINE __m256 Mul(__m256 a, __m256 b) { return _mm256_mul_ps(a, b); }
RG_AVX2_INLINE __m256 Add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
RG_AVX2_INLINE __m256 Sub(__m256 a, __m256 b) { return _mm256_sub_ps(a, b); }

// The Box-Muller steps below work on N independent registers at once, one
// step for all N before the next: the polynomial chains are long and
// latency-bound, so N interleaved chains keep the FP pipes busy (N = 4
// with GaussianValuesAvx2's two passes; N = 8 spills and runs slower).  Each lane still sees
// exactly the scalar code's operations in the scalar code's order.
#define RG_EACH(j, N) _Pragma("GCC unroll 8") for (int j = 0; j < N; ++j)

// U32ToFloat.
template <int N>
RG_AVX2_INLINE void U32ToFloat(const __m256i (&x)[N], __m256 (&f)[N]) {
  RG_EACH(j, N) {
    const __m256 hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(x[j], 16));
    const __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(x[j], Set(0xFFFFu)));
    f[j] = Add(Mul(hi, Set(65536.0f)), lo);
  }
}

// LogF.
template <int N>
RG_AVX2_INLINE void LogF(const __m256 (&x)[N], __m256 (&r)[N]) {
  __m256 f[N], z[N], y[N], fe[N];
  RG_EACH(j, N) {
    const __m256i bits = _mm256_castps_si256(x[j]);
    const __m256i mb = _mm256_or_si256(_mm256_and_si256(bits, Set(0x007FFFFFu)), Set(0x3F800000u));
    // big: all ones where the mantissa is halved (exponent + 1).
    const __m256i big =
        _mm256_castps_si256(_mm256_cmp_ps(_mm256_castsi256_ps(mb), Set(1.41421356f), _CMP_GT_OQ));
    const __m256 m =
        _mm256_castsi256_ps(_mm256_sub_epi32(mb, _mm256_and_si256(big, Set(1u << 23))));
    const __m256i e =
        _mm256_sub_epi32(_mm256_sub_epi32(_mm256_srli_epi32(bits, 23), Set(127u)), big);
    f[j] = Sub(m, Set(1.0f));
    fe[j] = _mm256_cvtepi32_ps(e);
  }
  RG_EACH(j, N) z[j] = Mul(f[j], f[j]);
  RG_EACH(j, N) y[j] = Set(7.0376836292E-2f);
  static constexpr float kP[] = {-1.1514610310E-1f, 1.1676998740E-1f,  -1.2420140846E-1f,
                                 1.4249322787E-1f,  -1.6668057665E-1f, 2.0000714765E-1f,
                                 -2.4999993993E-1f, 3.3333331174E-1f};
#pragma GCC unroll 8
  for (float p : kP) RG_EACH(j, N) y[j] = Add(Mul(y[j], f[j]), Set(p));
  RG_EACH(j, N) y[j] = Mul(Mul(y[j], f[j]), z[j]);
  RG_EACH(j, N) y[j] = Add(y[j], Mul(Set(-2.12194440E-4f), fe[j]));
  RG_EACH(j, N) y[j] = Sub(y[j], Mul(Set(0.5f), z[j]));
  RG_EACH(j, N) r[j] = Add(Add(f[j], y[j]), Mul(Set(0.693359375f), fe[j]));
}

// SinCosQuarter.
template <int N>
RG_AVX2_INLINE void SinCosQuarter(const __m256 (&a)[N], __m256 (&s)[N], __m256 (&c)[N]) {
  __m256 z[N], t[N], u[N];
  RG_EACH(j, N) z[j] = Mul(a[j], a[j]);
  RG_EACH(j, N) t[j] = Mul(Set(-1.9515295891E-4f), z[j]);
  RG_EACH(j, N) u[j] = Mul(Set(2.443315711809948E-5f), z[j]);
  RG_EACH(j, N) t[j] = Add(t[j], Set(8.3321608736E-3f));
  RG_EACH(j, N) u[j] = Sub(u[j], Set(1.388731625493765E-3f));
  RG_EACH(j, N) t[j] = Mul(t[j], z[j]);
  RG_EACH(j, N) u[j] = Mul(u[j], z[j]);
  RG_EACH(j, N) t[j] = Sub(t[j], Set(1.6666654611E-1f));
  RG_EACH(j, N) u[j] = Add(u[j], Set(4.166664568298827E-2f));
  RG_EACH(j, N) t[j] = Mul(Mul(t[j], z[j]), a[j]);
  RG_EACH(j, N) u[j] = Mul(Mul(u[j], z[j]), z[j]);
  RG_EACH(j, N) s[j] = Add(t[j], a[j]);
  RG_EACH(j, N) u[j] = Sub(u[j], Mul(Set(0.5f), z[j]));
  RG_EACH(j, N) c[j] = Add(u[j], Set(1.0f));
}

// GaussianPair on N register pairs.  The octant bits of x2 (31, 30, 29)
// drive the selects and signs through sign-bit masks: _mm256_blendv_ps
// looks only at bit 31.
template <int N>
RG_AVX2_INLINE void GaussianPairs(const __m256i (&x1)[N], const __m256i (&x2)[N], __m256 (&z0)[N],
                                  __m256 (&z1)[N]) {
  __m256 u1[N], lg[N], a[N], s[N], c[N];
  U32ToFloat(x1, u1);
  RG_EACH(j, N)
  u1[j] = Add(Mul(u1[j], Set(2.3283064365386963e-10f)), Set(1.16415321826934814453125e-10f));
  RG_EACH(j, N) {
    const __m256i k = _mm256_and_si256(x2[j], Set(0x1FFFFFFFu));
    const __m256i b29 = _mm256_slli_epi32(x2[j], 2);  // octant & 1 in bit 31
    const __m256i kk = _mm256_castps_si256(_mm256_blendv_ps(
        _mm256_castsi256_ps(k), _mm256_castsi256_ps(_mm256_sub_epi32(Set(0x20000000u), k)),
        _mm256_castsi256_ps(b29)));
    // kk <= 2^29 converts exactly as U32ToFloat does (both round to nearest
    // even once), with one instruction.
    a[j] = Mul(Mul(_mm256_cvtepi32_ps(kk), Set(1.862645149230957e-09f)),
               Set(0.785398163397448309616f));
  }
  LogF(u1, lg);
  SinCosQuarter(a, s, c);
  RG_EACH(j, N) {
    const __m256 r = _mm256_sqrt_ps(Mul(Set(-2.0f), lg[j]));
    // x2 shifted so that bit 31 holds bit 30 (b30) or bit 29 (b29) of x2.
    const __m256i b30 = _mm256_slli_epi32(x2[j], 1);
    const __m256i b29 = _mm256_slli_epi32(x2[j], 2);
    // swap = (octant ^ q) & 1 = bit 29 ^ bit 30; sin < 0 iff bit 31 (q >> 1);
    // cos < 0 iff bit 30 ^ bit 31 (q ^ (q >> 1)).
    const __m256 swap = _mm256_castsi256_ps(_mm256_xor_si256(b30, b29));
    const __m256i sign = Set(0x80000000u);
    const __m256 sin_sign = _mm256_castsi256_ps(_mm256_and_si256(x2[j], sign));
    const __m256 cos_sign =
        _mm256_castsi256_ps(_mm256_and_si256(_mm256_xor_si256(x2[j], b30), sign));
    const __m256 sin_t = _mm256_xor_ps(_mm256_blendv_ps(s[j], c[j], swap), sin_sign);
    const __m256 cos_t = _mm256_xor_ps(_mm256_blendv_ps(c[j], s[j], swap), cos_sign);
    z0[j] = Mul(r, cos_t);
    z1[j] = Mul(r, sin_t);
  }
}
#undef RG_EACH

RG_AVX2_INLINE __m256 UnpackLo64(__m256 a, __m256 b) {
  return _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(a), _mm256_castps_pd(b)));
}
RG_AVX2_INLINE __m256 UnpackHi64(__m256 a, __m256 b) {
  return _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(a), _mm256_castps_pd(b)));
}

// Normals of 8 consecutive blocks, z[w] holding word w's normal of each
// block (words 0, 1 from the pair (w0, w1), words 2, 3 from (w2, w3)), to
// element order 4 * block + w: v[0] = elements 0..7, ..., v[3] = 24..31.
RG_AVX2_INLINE void ToElementOrder(const __m256 (&z)[4], __m256 (&v)[4]) {
  const __m256 t0 = _mm256_unpacklo_ps(z[0], z[1]);  // blocks 0 1 | 4 5
  const __m256 t1 = _mm256_unpackhi_ps(z[0], z[1]);  // blocks 2 3 | 6 7
  const __m256 t2 = _mm256_unpacklo_ps(z[2], z[3]);
  const __m256 t3 = _mm256_unpackhi_ps(z[2], z[3]);
  const __m256 b04 = UnpackLo64(t0, t2);  // block 0 | 4, words 0 1 2 3
  const __m256 b15 = UnpackHi64(t0, t2);
  const __m256 b26 = UnpackLo64(t1, t3);
  const __m256 b37 = UnpackHi64(t1, t3);
  v[0] = _mm256_permute2f128_ps(b04, b15, 0x20);
  v[1] = _mm256_permute2f128_ps(b26, b37, 0x20);
  v[2] = _mm256_permute2f128_ps(b04, b15, 0x31);
  v[3] = _mm256_permute2f128_ps(b26, b37, 0x31);
}

// ---- label draw (DrawLabel) ---------------------------------------------
// Example indices, 4 per register, as Philox counter words 2 (low) and 3
// (high); returns all ones in the negative ones' 64-bit elements.
RG_AVX2_INLINE __m256i LoadIndices(const int64_t* p, __m256i* lo, __m256i* hi) {
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  *lo = x;
  *hi = _mm256_srli_epi64(x, 32);
  return _mm256_cmpgt_epi64(_mm256_setzero_si256(), x);
}
RG_AVX2_INLINE __m256i LoadIndices(const int32_t* p, __m256i* lo, __m256i* hi) {
  const __m256i x = _mm256_cvtepi32_epi64(  // static_cast<int64_t>
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  *lo = x;
  *hi = _mm256_srli_epi64(x, 32);
  return _mm256_cmpgt_epi64(_mm256_setzero_si256(), x);
}

// Philox words w0, w1, w2 of 4 examples to DrawLabel's result, as 64-bit
// elements: corrupted (all ones) iff w0 < threshold, and the class
// UniformIndex(w1, w2, k) = (w1 * k + ((w2 * k) >> 32)) >> 32, or w1 itself
// when all (k = 2^32).
RG_AVX2_INLINE void DrawLabels(__m256i w0, __m256i w1, __m256i w2, __m256i threshold, __m256i k,
                               bool all, __m256i* corrupted, __m256i* cls) {
  const __m256i low = _mm256_set1_epi64x(0xFFFFFFFFll);
  *corrupted = _mm256_cmpgt_epi64(threshold, _mm256_and_si256(w0, low));
  if (all) {
    *cls = _mm256_and_si256(w1, low);
  } else {
    const __m256i a = _mm256_mul_epu32(w1, k);
    const __m256i b = _mm256_srli_epi64(_mm256_mul_epu32(w2, k), 32);
    *cls = _mm256_srli_epi64(_mm256_add_epi64(a, b), 32);
  }
}

// out = corrupted ? class : label for 8 labels, draws j = 0 (labels 0..3)
// and 1 (4..7); returns all ones where a label is outside [0, k_minus_1].
RG_AVX2_INLINE __m256i SelectLabels(const int64_t* labels, const __m256i (&corrupted)[2],
                                    const __m256i (&cls)[2], __m256i k_minus_1, int64_t* out) {
  __m256i bad = _mm256_setzero_si256();
  for (int j = 0; j < 2; ++j) {
    const __m256i lab = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(labels + 4 * j));
    bad = _mm256_or_si256(bad, _mm256_or_si256(_mm256_cmpgt_epi64(lab, k_minus_1),
                                               _mm256_cmpgt_epi64(_mm256_setzero_si256(), lab)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 4 * j),
                        _mm256_blendv_epi8(lab, cls[j], corrupted[j]));
  }
  return bad;
}
// int32 labels (static_cast<int32_t>(class) keeps the low word);
// k_minus_1 is clamped to INT32_MAX by KMinus1.
RG_AVX2_INLINE __m256i SelectLabels(const int32_t* labels, const __m256i (&corrupted)[2],
                                    const __m256i (&cls)[2], __m256i k_minus_1, int32_t* out) {
  // Joined: labels 0 4 1 5 2 6 3 7; permuted back to 0 .. 7.
  const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  const __m256i c = _mm256_permutevar8x32_epi32(Join(cls[0], cls[1]), order);
  const __m256i m = _mm256_permutevar8x32_epi32(Join(corrupted[0], corrupted[1]), order);
  const __m256i lab = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(labels));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm256_blendv_epi8(lab, c, m));
  return _mm256_or_si256(_mm256_cmpgt_epi32(lab, k_minus_1),
                         _mm256_cmpgt_epi32(_mm256_setzero_si256(), lab));
}

RG_AVX2_INLINE __m256i KMinus1(int64_t k_minus_1, const int64_t*) {
  return _mm256_set1_epi64x(k_minus_1);
}
RG_AVX2_INLINE __m256i KMinus1(int64_t k_minus_1, const int32_t*) {
  return _mm256_set1_epi32(
      static_cast<int>(k_minus_1 < INT32_MAX ? k_minus_1 : int64_t{INT32_MAX}));
}

}  // namespace avx2
}  // namespace rethinkgen

#endif  // RETHINKGEN_RANDOMIZE_AVX2_H_
