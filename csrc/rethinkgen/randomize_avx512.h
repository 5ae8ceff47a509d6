// AVX-512 building blocks of the CPU hot loops (randomize_cpu.h): Philox and
// Box-Muller of randomize.h, 16 (Philox: 8) lanes per register.
//
// Bit-identical to randomize.h and randomize_avx2.h: the integer steps are
// the same, and every float32 +, -, * and sqrt of the scalar code is one
// IEEE-rounded AVX-512 instruction here, in the same order (no FMA, no
// reassociation).  What AVX-512 adds over the AVX2 path is width and fewer
// instructions: three-input logic (vpternlogd) for Philox's double XOR and
// the sign flips, mask registers for the selects.
//
// Everything is compiled with target(RG_AVX512_TARGET) and reached only
// through the AVX-512 kernel table of randomize_cpu.h (Avx512CpuKernels),
// which is used only where the CPU and OS run AVX-512 F/BW/DQ/VL
// (cpu_path.h), so the library still loads and runs on CPUs without them.
#ifndef RETHINKGEN_RANDOMIZE_AVX512_H_
#define RETHINKGEN_RANDOMIZE_AVX512_H_

#include <immintrin.h>

#include <cstdint>

#include "rethinkgen/randomize.h"

#define RG_AVX512_TARGET "avx2,avx512f,avx512bw,avx512dq,avx512vl,prefer-vector-width=512"
#define RG_AVX512 __attribute__((target(RG_AVX512_TARGET)))
#define RG_AVX512_INLINE __attribute__((target(RG_AVX512_TARGET), always_inline)) inline

namespace rethinkgen {
namespace avx512 {

// vpternlogd immediates: a ^ b ^ c, and a ^ (b & c).
constexpr int kXor3 = 0x96;
constexpr int kXorAnd = 0x78;

// ---- Philox4x32-10 ------------------------------------------------------
// As in randomize_avx2.h: lanes in the low 32 bits of 64-bit elements (8 per
// register), where vpmuludq reads its factors; a 64-bit shift gives the
// high product word.
struct RoundKeys {
  __m512i k0[10], k1[10];
};

RG_AVX512_INLINE RoundKeys MakeRoundKeys(Key key) {
  RoundKeys r;
  uint32_t k0 = key.k0, k1 = key.k1;
  for (int i = 0; i < 10; ++i) {
    r.k0[i] = _mm512_set1_epi32(static_cast<int>(k0));
    r.k1[i] = _mm512_set1_epi32(static_cast<int>(k1));
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return r;
}

// Philox4x32-10 on R registers of 8 lanes, in place (c[w][j]: word w of
// register j's lanes), independent registers interleaved round by round.
template <int R>
RG_AVX512_INLINE void Philox(__m512i (&c)[4][R], const RoundKeys& k) {
  const __m512i m0 = _mm512_set1_epi64(kPhiloxM0);
  const __m512i m1 = _mm512_set1_epi64(kPhiloxM1);
  for (int r = 0; r < 10; ++r) {
#pragma GCC unroll 8
    for (int j = 0; j < R; ++j) {
      const __m512i p0 = _mm512_mul_epu32(c[0][j], m0);
      const __m512i p1 = _mm512_mul_epu32(c[2][j], m1);
      c[0][j] = _mm512_ternarylogic_epi32(_mm512_srli_epi64(p1, 32), c[1][j], k.k0[r], kXor3);
      c[2][j] = _mm512_ternarylogic_epi32(_mm512_srli_epi64(p0, 32), c[3][j], k.k1[r], kXor3);
      c[1][j] = p1;
      c[3][j] = p0;
    }
  }
}

// Lanes 0 2 4 .. 14 (even) and 1 3 5 .. 15 (odd) to one register of 16.
RG_AVX512_INLINE __m512i Join(__m512i even, __m512i odd) {
  return _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
}

// ---- Box-Muller (GaussianPair) -------------------------------------------
RG_AVX512_INLINE __m512 Set(float x) { return _mm512_set1_ps(x); }
RG_AVX512_INLINE __m512i Set(uint32_t x) { return _mm512_set1_epi32(static_cast<int>(x)); }
RG_AVX512_INLINE __m512 Mul(__m512 a, __m512 b) { return _mm512_mul_ps(a, b); }
RG_AVX512_INLINE __m512 Add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
RG_AVX512_INLINE __m512 Sub(__m512 a, __m512 b) { return _mm512_sub_ps(a, b); }

// Each step below runs for N independent registers before the next, to hide
// the latency of the polynomial chains (as in randomize_avx2.h); each lane
// sees exactly the scalar code's operations in the scalar code's order.
#define RG_EACH(j, N) _Pragma("GCC unroll 8") for (int j = 0; j < N; ++j)

// U32ToFloat: the scalar code's hi * 65536 + lo is x rounded once to nearest
// even (both terms and the product are exact); vcvtudq2ps with that rounding
// mode embedded computes the same in one instruction.
template <int N>
RG_AVX512_INLINE void U32ToFloat(const __m512i (&x)[N], __m512 (&f)[N]) {
  RG_EACH(j, N)
  f[j] = _mm512_cvt_roundepu32_ps(x[j], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

// LogF.
template <int N>
RG_AVX512_INLINE void LogF(const __m512 (&x)[N], __m512 (&r)[N]) {
  __m512 f[N], z[N], y[N], fe[N];
  RG_EACH(j, N) {
    const __m512i bits = _mm512_castps_si512(x[j]);
    const __m512i mb = _mm512_ternarylogic_epi32(bits, Set(0x007FFFFFu), Set(0x3F800000u),
                                                 0xEA);  // (bits & mant) | one
    // Mantissas above 1.41421356 are halved (exponent + 1).
    const __mmask16 big = _mm512_cmp_ps_mask(_mm512_castsi512_ps(mb), Set(1.41421356f), _CMP_GT_OQ);
    const __m512 m = _mm512_castsi512_ps(_mm512_mask_sub_epi32(mb, big, mb, Set(1u << 23)));
    __m512i e = _mm512_sub_epi32(_mm512_srli_epi32(bits, 23), Set(127u));
    e = _mm512_mask_add_epi32(e, big, e, Set(1u));
    f[j] = Sub(m, Set(1.0f));
    fe[j] = _mm512_cvtepi32_ps(e);
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
RG_AVX512_INLINE void SinCosQuarter(const __m512 (&a)[N], __m512 (&s)[N], __m512 (&c)[N]) {
  __m512 z[N], t[N], u[N];
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

// GaussianPair on N register pairs.  Bits 31, 30, 29 of x2 (the octant)
// drive the selects (mask registers) and the signs (vpternlogd).
template <int N>
RG_AVX512_INLINE void GaussianPairs(const __m512i (&x1)[N], const __m512i (&x2)[N], __m512 (&z0)[N],
                                    __m512 (&z1)[N]) {
  __m512 u1[N], lg[N], a[N], s[N], c[N];
  U32ToFloat(x1, u1);
  RG_EACH(j, N)
  u1[j] = Add(Mul(u1[j], Set(2.3283064365386963e-10f)), Set(1.16415321826934814453125e-10f));
  RG_EACH(j, N) {
    const __m512i k = _mm512_and_si512(x2[j], Set(0x1FFFFFFFu));
    const __mmask16 odd = _mm512_test_epi32_mask(x2[j], Set(1u << 29));
    const __m512i kk = _mm512_mask_sub_epi32(k, odd, Set(0x20000000u), k);
    // kk <= 2^29 converts with one rounding, as U32ToFloat does.
    a[j] = Mul(Mul(_mm512_cvtepi32_ps(kk), Set(1.862645149230957e-09f)),
               Set(0.785398163397448309616f));
  }
  LogF(u1, lg);
  SinCosQuarter(a, s, c);
  RG_EACH(j, N) {
    const __m512 r = _mm512_sqrt_ps(Mul(Set(-2.0f), lg[j]));
    // x2 ^ (x2 << 1): bit 30 = bit 29 ^ bit 30 (swap), bit 31 = bit 30 ^ bit 31
    // (cos < 0); sin < 0 iff bit 31 of x2.
    const __m512i flip = _mm512_xor_si512(x2[j], _mm512_slli_epi32(x2[j], 1));
    const __mmask16 swap = _mm512_test_epi32_mask(flip, Set(1u << 30));
    const __m512i sign = Set(0x80000000u);
    const __m512i sin_mag = _mm512_castps_si512(_mm512_mask_blend_ps(swap, s[j], c[j]));
    const __m512i cos_mag = _mm512_castps_si512(_mm512_mask_blend_ps(swap, c[j], s[j]));
    const __m512 sin_t =
        _mm512_castsi512_ps(_mm512_ternarylogic_epi32(sin_mag, x2[j], sign, kXorAnd));
    const __m512 cos_t =
        _mm512_castsi512_ps(_mm512_ternarylogic_epi32(cos_mag, flip, sign, kXorAnd));
    z0[j] = Mul(r, cos_t);
    z1[j] = Mul(r, sin_t);
  }
}
#undef RG_EACH

RG_AVX512_INLINE __m512 UnpackLo64(__m512 a, __m512 b) {
  return _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}
RG_AVX512_INLINE __m512 UnpackHi64(__m512 a, __m512 b) {
  return _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}

// Normals of 16 consecutive blocks, z[w] holding word w's normal of each
// block, to element order 4 * block + w: v[0] = elements 0..15 (blocks
// 0..3), ..., v[3] = elements 48..63.
RG_AVX512_INLINE void ToElementOrder(const __m512 (&z)[4], __m512 (&v)[4]) {
  // Within each 128-bit lane l (blocks 4l .. 4l+3), as randomize_avx2.h.
  const __m512 t0 = _mm512_unpacklo_ps(z[0], z[1]);
  const __m512 t1 = _mm512_unpackhi_ps(z[0], z[1]);
  const __m512 t2 = _mm512_unpacklo_ps(z[2], z[3]);
  const __m512 t3 = _mm512_unpackhi_ps(z[2], z[3]);
  const __m512 b0 = UnpackLo64(t0, t2);  // lane l: block 4l, words 0 1 2 3
  const __m512 b1 = UnpackHi64(t0, t2);  // block 4l + 1
  const __m512 b2 = UnpackLo64(t1, t3);  // block 4l + 2
  const __m512 b3 = UnpackHi64(t1, t3);  // block 4l + 3
  // 4 x 4 transpose of the 128-bit lanes.
  const __m512 u0 = _mm512_shuffle_f32x4(b0, b1, 0x44);  // b0.l0 b0.l1 b1.l0 b1.l1
  const __m512 u1 = _mm512_shuffle_f32x4(b2, b3, 0x44);  // b2.l0 b2.l1 b3.l0 b3.l1
  const __m512 u2 = _mm512_shuffle_f32x4(b0, b1, 0xEE);  // lanes 2, 3
  const __m512 u3 = _mm512_shuffle_f32x4(b2, b3, 0xEE);
  v[0] = _mm512_shuffle_f32x4(u0, u1, 0x88);  // b0.l0 b1.l0 b2.l0 b3.l0
  v[1] = _mm512_shuffle_f32x4(u0, u1, 0xDD);
  v[2] = _mm512_shuffle_f32x4(u2, u3, 0x88);
  v[3] = _mm512_shuffle_f32x4(u2, u3, 0xDD);
}

}  // namespace avx512
}  // namespace rethinkgen

#endif  // RETHINKGEN_RANDOMIZE_AVX512_H_
