// The randomization semantics of rethinkgen_tf, in one place.
//
// Every function here is a pure function of (seed, example index, draw
// number, parameters), compiled unchanged for the CPU kernels, the CUDA
// kernels, the pybind11 module and the GPU harness.  docs/randomization.md
// states the same rules in prose; rethinkgen_tf/ops/reference.py restates them in
// NumPy.  Change one and you must change all three (the tests compare them
// bit for bit).
//
// Random bits
//   Philox4x32-10, key = (seed mod 2^32, seed >> 32) of the int64 user seed,
//   counter = (block, purpose, index mod 2^32, index >> 32).  `purpose` is a
//   fixed tag per randomization (enum Purpose), `block` counts the 128-bit
//   blocks drawn for one example.  Nothing depends on batch, order, thread
//   or device.
//
// Uniform integers in [0, m), m <= 2^32, from 64 random bits x = (hi, lo):
//   floor(x * m / 2^64).  Total-variation distance to uniform < m / 2^64.
//
// Label corruption (purpose kLabelCorrupt, block 0 = words w0..w3)
//   corrupted  <=>  w0 < floor(p * 2^32)     (p = 1: always, p = 0: never)
//   new label   =  UniformIndex(w1, w2, K)    (may equal the old label)
//   Mode "permute" (v2): the m corrupted examples (same rule), taken in
//   increasing order of example index, exchange labels: the k-th of them gets
//   the label of the LabelPermutation(k)-th.  Class counts are kept.
//
// LabelPermutation of m items (permute v2)
//   m <= kFeistelMinItems: Fisher-Yates (below), purpose kLabelPermute,
//   counter index 0.  Larger m: a keyed Feistel bijection of [0, 2^b),
//   2^b the smallest power of two >= m, restricted to [0, m) by cycle-walking
//   (FeistelKey, FeistelIndex below).  Each item maps independently, so it
//   runs in parallel; the total work is at most 2^b < 2m bijection calls.
//
// Fisher-Yates shuffle of n items (perm starts as the identity)
//   for j = n-1 down to 1, step t = n-1-j:
//     block t/2 of the stream, words (2*(t%2), 2*(t%2)+1) = (hi, lo)
//     r = UniformIndex(hi, lo, j+1);  swap(perm[j], perm[r])
//   Total-variation distance of the permutation to uniform < n^2 / 2^64.
//
// Pixel permutation: out[k] = in[perm[k]] over the P = H*W positions (each
//   position carries its C channels), or over all P = H*W*C values.
//   Mode "shared": one perm, purpose kPixelsShared, counter index 0.
//   Mode "per_example": purpose kPixelsPerExample, counter index = example.
//
// Gaussian images: element e (row-major H, W, C; channel e % C) of example i
//   pair q = e/2, block q/2, words (2*(q%2), 2*(q%2)+1) = (x1, x2), purpose
//   kGaussian; Box-Muller in float32 (GaussianPair below, every operation an
//   IEEE-rounded float32 +, -, *, sqrt or integer op, no FMA contraction):
//   element 2q gets r*cos(theta), element 2q+1 gets r*sin(theta), then
//   out = mean[c] + stddev[c] * z, rounded to the output dtype (RNE).
#ifndef RETHINKGEN_RANDOMIZE_H_
#define RETHINKGEN_RANDOMIZE_H_

#include <cstdint>
#include <cstring>

#include "rethinkgen/philox.h"

namespace rethinkgen {

// Stream tags (ASCII), one per randomization.
enum Purpose : uint32_t {
  kLabelCorrupt = 0x4C41424Cu,      // "LABL"
  kLabelPermute = 0x4C50524Du,      // "LPRM"
  kPixelsShared = 0x50495853u,      // "PIXS"
  kPixelsPerExample = 0x50495845u,  // "PIXE"
  kGaussian = 0x47415553u,          // "GAUS"
};

struct Key {
  uint32_t k0, k1;
};

RG_HD Key KeyFromSeed(int64_t seed) {
  const uint64_t s = static_cast<uint64_t>(seed);
  Key k;
  k.k0 = static_cast<uint32_t>(s);
  k.k1 = static_cast<uint32_t>(s >> 32);
  return k;
}

RG_HD U32x4 Block(Key key, uint32_t purpose, int64_t index, uint32_t block) {
  const uint64_t i = static_cast<uint64_t>(index);
  return Philox4x32(block, purpose, static_cast<uint32_t>(i), static_cast<uint32_t>(i >> 32),
                    key.k0, key.k1);
}

// floor((hi * 2^32 + lo) * m / 2^64) for m <= 2^32, exactly, in 64-bit math.
RG_HD uint32_t UniformIndex(uint32_t hi, uint32_t lo, uint64_t m) {
  const uint64_t a = static_cast<uint64_t>(hi) * m;
  const uint64_t b = (static_cast<uint64_t>(lo) * m) >> 32;
  return static_cast<uint32_t>((a + b) >> 32);
}

// The same for m < 2^32, with 32x32-bit products only (vectorizes well).
RG_HD uint32_t UniformIndex32(uint32_t hi, uint32_t lo, uint32_t m) {
  const uint64_t a = static_cast<uint64_t>(hi) * m;
  const uint64_t b = (static_cast<uint64_t>(lo) * m) >> 32;
  return static_cast<uint32_t>((a + b) >> 32);
}

// Mode "permute" takes fewer than 2^31 labels: the compiled op on every
// device and the NumPy module (the GPU kernel counts items in int; the CPU
// alone would reach 2^32).
constexpr int64_t kMaxPermuteLabels = int64_t{1} << 31;
constexpr char kPermuteLabelsRule[] = "permute mode takes < 2^31 labels";

// Whether p is a probability: in [0, 1], not NaN.  The sign is read from the
// bits, because TensorFlow's threads run with denormals-are-zero, under which
// a negative denormal compares equal to 0 (and would pass `p >= 0`).
inline bool IsProbability(double p) {
  uint64_t bits;
  std::memcpy(&bits, &p, sizeof bits);
  const bool negative = (bits >> 63) != 0 && (bits << 1) != 0;  // -0.0 is 0
  return !negative && p <= 1.0;                                 // NaN fails p <= 1
}

// floor(p * 2^32) for p in [0, 1]; a word w is "corrupted" iff w < threshold.
inline uint64_t CorruptThreshold(double p) {
  if (!(p > 0.0)) return 0;
  if (p >= 1.0) return uint64_t{1} << 32;
  return static_cast<uint64_t>(p * 4294967296.0);
}

struct LabelDraw {
  bool corrupted;
  uint32_t random_class;
};

RG_HD LabelDraw DrawLabel(Key key, int64_t index, uint64_t threshold, uint64_t num_classes) {
  const U32x4 w = Block(key, kLabelCorrupt, index, 0);
  LabelDraw d;
  d.corrupted = static_cast<uint64_t>(w.v[0]) < threshold;
  d.random_class = UniformIndex(w.v[1], w.v[2], num_classes);
  return d;
}

// Fisher-Yates step t's 64 random bits come from block t/2, half t%2.
RG_HD uint32_t ShuffleDraw(const U32x4& w, uint32_t t, uint64_t bound) {
  const int h = 2 * static_cast<int>(t & 1u);
  return UniformIndex(w.v[h], w.v[h + 1], bound);
}

// Writes a Fisher-Yates permutation of [0, n) into perm (n >= 1).
RG_HD void FisherYates(uint32_t* perm, uint32_t n, Key key, uint32_t purpose, int64_t index) {
  for (uint32_t k = 0; k < n; ++k) perm[k] = k;
  U32x4 w;
  for (uint32_t t = 0; t + 1 < n; ++t) {
    if ((t & 1u) == 0) w = Block(key, purpose, index, t >> 1);
    const uint32_t j = n - 1 - t;
    const uint32_t r = ShuffleDraw(w, t, static_cast<uint64_t>(j) + 1);
    const uint32_t tmp = perm[j];
    perm[j] = perm[r];
    perm[r] = tmp;
  }
}

// ---------------------------------------------------------------------------
// Keyed Feistel bijection (mode "permute" v2, m > kFeistelMinItems items).
//   b = number of bits of m - 1 (2^b >= m > 2^(b-1)); x < 2^b splits into a
//   high half L of hb = b / 2 bits and a low half R of lb = b - hb bits.
//   Round keys k[0..7]: words 0..3 of blocks 0 and 1 of purpose kLabelPermute,
//   counter index m (so every m has its own permutation).
//   Round r: r even: L ^= F(R, k[r]) >> (32 - hb);  r odd: R ^= F(L, k[r]) >> (32 - lb);
//   F(v, k) = h2 * M1 (mod 2^32), h2 = h ^ (h >> 16), h = (v ^ k) * M0 (mod 2^32),
//   with Philox's multipliers M0, M1; the shift keeps F's top bits, which
//   depend on every bit of v.  E(x) = (L << lb) | R after 8 rounds.
//   Cycle-walking: FeistelIndex(k) = the first of E(k), E(E(k)), ... below m,
//   a bijection of [0, m).
// Feistel networks on few bits are measurably far from uniform (tiny round
// functions), so m <= kFeistelMinItems (b <= 12) keeps Fisher-Yates.
constexpr uint32_t kFeistelMinItems = 4096;
constexpr int kFeistelRounds = 8;

struct FeistelKey {
  uint32_t k[kFeistelRounds];
  uint32_t m;        // items: the domain [0, m)
  uint32_t lo_bits;  // lb: bits of the low half R
  uint32_t hi_bits;  // hb: bits of the high half L
};

// m > kFeistelMinItems, m < 2^31 (so 13 <= b <= 31).
RG_HD FeistelKey MakeFeistelKey(Key key, uint32_t m) {
  FeistelKey f;
  for (uint32_t blk = 0; blk < kFeistelRounds / 4; ++blk) {
    const U32x4 w = Block(key, kLabelPermute, m, blk);
    for (int j = 0; j < 4; ++j) f.k[4 * blk + j] = w.v[j];
  }
  uint32_t b = 0;
  while ((uint64_t{1} << b) < m) ++b;
  f.m = m;
  f.hi_bits = b / 2;
  f.lo_bits = b - b / 2;
  return f;
}

RG_HD uint32_t FeistelRound(uint32_t v, uint32_t k) {
  uint32_t h = (v ^ k) * kPhiloxM0;
  h ^= h >> 16;
  return h * kPhiloxM1;
}

RG_HD uint32_t FeistelEncrypt(const FeistelKey& f, uint32_t x) {
  const uint32_t lo = f.lo_bits, hi = f.hi_bits;
  uint32_t left = x >> lo, right = x & ((1u << lo) - 1u);
  for (int r = 0; r < kFeistelRounds; r += 2) {
    left ^= FeistelRound(right, f.k[r]) >> (32 - hi);
    right ^= FeistelRound(left, f.k[r + 1]) >> (32 - lo);
  }
  return (left << lo) | right;
}

// The item whose label item k receives: a bijection of [0, m).
RG_HD uint32_t FeistelIndex(const FeistelKey& f, uint32_t k) {
  uint32_t x = FeistelEncrypt(f, k);
  while (x >= f.m) x = FeistelEncrypt(f, x);
  return x;
}

// ---------------------------------------------------------------------------
// Float32 arithmetic that rounds the same on every device.  On CUDA the
// intrinsics below are never contracted into FMAs; on the host the build
// passes -ffp-contract=off.
#if defined(__CUDA_ARCH__)
#define RG_FMUL(a, b) __fmul_rn((a), (b))
#define RG_FADD(a, b) __fadd_rn((a), (b))
#define RG_FSUB(a, b) __fsub_rn((a), (b))
#define RG_FSQRT(a) __fsqrt_rn(a)
#define RG_U2F(a) __uint2float_rn(a)
#else
#define RG_FMUL(a, b) ((a) * (b))
#define RG_FADD(a, b) ((a) + (b))
#define RG_FSUB(a, b) ((a) - (b))
#define RG_FSQRT(a) __builtin_sqrtf(a)
#define RG_U2F(a) ::rethinkgen::U32ToFloat(a)
#endif

// uint32 -> float32, rounded to nearest even, in a form that vectorizes
// (two exact int32 conversions, one exact multiply, one rounded add).
inline float U32ToFloat(uint32_t x) {
  return static_cast<float>(static_cast<int32_t>(x >> 16)) * 65536.0f +
         static_cast<float>(static_cast<int32_t>(x & 0xFFFFu));
}

RG_HD uint32_t F2U(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  return u;
}
RG_HD float U2F(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

// Natural log for normal positive floats (polynomial of Cephes' logf;
// about 1 ulp).  Used only on (0, 1].
RG_HD float LogF(float x) {
  const uint32_t bits = F2U(x);
  const uint32_t mb = (bits & 0x007FFFFFu) | 0x3F800000u;  // mantissa in [1, 2)
  // Mantissas above 1.41421356 are halved (exactly: exponent - 1).
  const uint32_t big = U2F(mb) > 1.41421356f ? 1u : 0u;
  const float m = U2F(mb - (big << 23));
  const int e = static_cast<int>(bits >> 23) - 127 + static_cast<int>(big);
  const float f = RG_FSUB(m, 1.0f);
  const float z = RG_FMUL(f, f);
  float y = 7.0376836292E-2f;
  y = RG_FADD(RG_FMUL(y, f), -1.1514610310E-1f);
  y = RG_FADD(RG_FMUL(y, f), 1.1676998740E-1f);
  y = RG_FADD(RG_FMUL(y, f), -1.2420140846E-1f);
  y = RG_FADD(RG_FMUL(y, f), 1.4249322787E-1f);
  y = RG_FADD(RG_FMUL(y, f), -1.6668057665E-1f);
  y = RG_FADD(RG_FMUL(y, f), 2.0000714765E-1f);
  y = RG_FADD(RG_FMUL(y, f), -2.4999993993E-1f);
  y = RG_FADD(RG_FMUL(y, f), 3.3333331174E-1f);
  y = RG_FMUL(RG_FMUL(y, f), z);
  const float fe = static_cast<float>(e);
  y = RG_FADD(y, RG_FMUL(-2.12194440E-4f, fe));
  y = RG_FSUB(y, RG_FMUL(0.5f, z));
  float r = RG_FADD(f, y);
  r = RG_FADD(r, RG_FMUL(0.693359375f, fe));
  return r;
}

// sin and cos of a in [0, pi/4] (Cephes' minimax polynomials).
RG_HD void SinCosQuarter(float a, float* s, float* c) {
  const float z = RG_FMUL(a, a);
  float t = RG_FMUL(-1.9515295891E-4f, z);
  t = RG_FADD(t, 8.3321608736E-3f);
  t = RG_FMUL(t, z);
  t = RG_FSUB(t, 1.6666654611E-1f);
  t = RG_FMUL(RG_FMUL(t, z), a);
  *s = RG_FADD(t, a);
  float u = RG_FMUL(2.443315711809948E-5f, z);
  u = RG_FSUB(u, 1.388731625493765E-3f);
  u = RG_FMUL(u, z);
  u = RG_FADD(u, 4.166664568298827E-2f);
  u = RG_FMUL(RG_FMUL(u, z), z);
  u = RG_FSUB(u, RG_FMUL(0.5f, z));
  *c = RG_FADD(u, 1.0f);
}

// Box-Muller: two standard normals from two 32-bit words.
//   u1 = x1 * 2^-32 + 2^-33 in (0, 1],  r = sqrt(-2 log u1)  (|z| <= 6.77)
//   theta = 2 pi x2 / 2^32, split exactly into octant (top 3 bits) and a
//   29-bit offset, reduced to [0, pi/4].
RG_HD void GaussianPair(uint32_t x1, uint32_t x2, float* z0, float* z1) {
  const float u1 =
      RG_FADD(RG_FMUL(RG_U2F(x1), 2.3283064365386963e-10f), 1.16415321826934814453125e-10f);
  const float r = RG_FSQRT(RG_FMUL(-2.0f, LogF(u1)));
  const uint32_t octant = x2 >> 29;
  const uint32_t k = x2 & 0x1FFFFFFFu;
  const uint32_t kk = (octant & 1u) ? (0x20000000u - k) : k;
  const float a = RG_FMUL(RG_FMUL(RG_U2F(kk), 1.862645149230957e-09f), 0.785398163397448309616f);
  float s, c;
  SinCosQuarter(a, &s, &c);
  // Rotate by the quadrant q = octant / 2 (branch-free, so it vectorizes):
  // sin(theta) = +-(swap ? c : s), cos(theta) = +-(swap ? s : c).
  const uint32_t q = octant >> 1;
  const bool swap = ((octant ^ q) & 1u) != 0;
  const float sin_mag = swap ? c : s;
  const float cos_mag = swap ? s : c;
  const float sin_t = U2F(F2U(sin_mag) ^ ((q >> 1) << 31));
  const float cos_t = U2F(F2U(cos_mag) ^ (((q ^ (q >> 1)) & 1u) << 31));
  *z0 = RG_FMUL(r, cos_t);
  *z1 = RG_FMUL(r, sin_t);
}

// mean + stddev * z, as two rounded float32 operations.
RG_HD float Affine(float z, float mean, float stddev) { return RG_FADD(mean, RG_FMUL(stddev, z)); }

// Round-to-nearest-even float32 -> bfloat16 / float16 bit patterns.
RG_HD uint16_t FloatToBfloat16Bits(float f) {
  const uint32_t u = F2U(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  const uint32_t rounding = 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

RG_HD uint16_t FloatToHalfBits(float f) {
  const uint32_t u = F2U(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u);   // NaN
  if (a >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // inf
  if (a < 0x38800000u) {                                               // subnormal half (or zero)
    // value * 2^24 rounded to an integer, RNE: add via float arithmetic on
    // exact magic number 0.5 (2^-1 * 2^24 scale) keeps it portable.
    if (a < 0x33000000u) return static_cast<uint16_t>(sign);  // < 2^-25
    const uint32_t e = a >> 23;                               // 102..112
    const uint32_t mant = (a & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126u - e;  // 14..24
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = ((a >> 13) - (112u << 10));  // rebias exponent 127 -> 15
  const uint32_t rem = a & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

}  // namespace rethinkgen

#endif  // RETHINKGEN_RANDOMIZE_H_
