// One source, two backends (see harness.h):
//   nvcc -x cu harness_kernels.cc  -> "cuda" (kernels of randomize_gpu.cuh)
//   g++ -ffp-contract=off harness_kernels.cc -> "cpu" (their per-element
//     functions run phase by phase on the host: the parallel Fisher-Yates
//     walk, the Gaussian block function, the label function)
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "harness.h"
#include "rethinkgen/randomize_gpu.cuh"

namespace harness {
namespace {

using rethinkgen::Key;
using rethinkgen::KeyFromSeed;

bool g_validate = true;

std::string CheckScalars(double p, int64_t num_classes) {
  if (!(p >= 0.0 && p <= 1.0)) return "corrupt_prob must be in [0, 1]";
  if (num_classes < 1 || num_classes > (int64_t{1} << 32))
    return "num_classes must be in [1, 2^32]";
  return "";
}

std::string BadLabel(int64_t pos) {
  return "labels must be in [0, num_classes), got a bad label at position " +
         std::to_string(pos);
}
std::string BadIndex(int64_t pos) {
  return "indices must be >= 0, got a negative index at position " +
         std::to_string(pos);
}

}  // namespace

#if defined(__CUDACC__)
// ===========================================================================
// cuda backend
namespace {

std::string Err(cudaError_t e, const char* what) {
  return std::string(what) + ": " + cudaGetErrorString(e);
}

// Grow-only scratch pool: the i-th request of a call gets buffer i.  Work is
// stream-ordered on one stream, so reuse across calls is safe; a buffer that
// must grow is replaced after a device synchronization.
struct Pool {
  std::vector<std::pair<void*, size_t>> bufs;
  size_t next = 0;
  void Reset() { next = 0; }
  void* Get(size_t bytes) {
    bytes = (bytes + 255) / 256 * 256;
    if (bytes == 0) bytes = 256;
    if (next < bufs.size()) {
      auto& b = bufs[next];
      if (b.second < bytes) {
        cudaDeviceSynchronize();
        cudaFree(b.first);
        b.first = nullptr;
        b.second = 0;
        if (cudaMalloc(&b.first, bytes) != cudaSuccess) return nullptr;
        b.second = bytes;
      }
      ++next;
      return b.first;
    }
    void* p = nullptr;
    if (cudaMalloc(&p, bytes) != cudaSuccess) return nullptr;
    bufs.emplace_back(p, bytes);
    ++next;
    return p;
  }
};

Pool& ThePool() {
  static Pool* pool = new Pool;  // never freed: process lifetime
  return *pool;
}

rethinkgen::gpu::ScratchFn Scratch() {
  ThePool().Reset();
  return [](size_t b) { return ThePool().Get(b); };
}

// Device copies of host arrays for the host API.
struct DevBuf {
  void* p = nullptr;
  cudaError_t err = cudaSuccess;
  explicit DevBuf(size_t bytes) {
    err = cudaMalloc(&p, bytes > 0 ? bytes : 1);
    if (err != cudaSuccess) p = nullptr;
  }
  ~DevBuf() {
    if (p) cudaFree(p);
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
};

template <typename T, typename Idx>
std::string LabelsDev(const T* labels, const Idx* indices, int64_t n, double p,
                      int64_t k, int64_t seed, bool permute, T* out) {
  const cudaStream_t s = 0;
  auto scratch = Scratch();
  if (g_validate) {
    int64_t bad_label, bad_index;
    cudaError_t e = rethinkgen::gpu::Validate<T, Idx>(
        labels, k, indices, n, s, scratch, &bad_label, &bad_index);
    if (e != cudaSuccess) return Err(e, "validate");
    if (bad_label >= 0) return BadLabel(bad_label);
    if (bad_index >= 0) return BadIndex(bad_index);
  }
  cudaError_t e =
      permute ? rethinkgen::gpu::CorruptLabelsPermute<T, Idx>(
                    labels, indices, n, p, seed, out, s, scratch)
              : rethinkgen::gpu::CorruptLabelsUniform<T, Idx>(
                    labels, indices, n, p, static_cast<uint64_t>(k), seed, out,
                    s);
  return e == cudaSuccess ? "" : Err(e, "corrupt_labels");
}

template <typename E, typename Idx>
std::string PixelsDev(const E* in, const Idx* indices, int64_t batch,
                      uint32_t P, uint32_t C, int64_t seed, bool per_example,
                      E* out) {
  const cudaStream_t s = 0;
  auto scratch = Scratch();
  if (g_validate && per_example) {
    int64_t bad_label, bad_index;
    cudaError_t e = rethinkgen::gpu::Validate<int32_t, Idx>(
        nullptr, 0, indices, batch, s, scratch, &bad_label, &bad_index);
    if (e != cudaSuccess) return Err(e, "validate");
    if (bad_index >= 0) return BadIndex(bad_index);
  }
  cudaError_t e = rethinkgen::gpu::PermutePixels<E, Idx>(
      in, indices, batch, P, C, seed, per_example, out, s, scratch);
  return e == cudaSuccess ? "" : Err(e, "permute_pixels");
}

template <typename Store, typename Idx>
std::string GaussDev(const Idx* indices, int64_t batch, int64_t N, int64_t C,
                     const float* mean, const float* stddev, int64_t seed,
                     void* out) {
  const cudaStream_t s = 0;
  auto scratch = Scratch();
  if (g_validate) {
    int64_t bad_label, bad_index;
    cudaError_t e = rethinkgen::gpu::Validate<int32_t, Idx>(
        nullptr, 0, indices, batch, s, scratch, &bad_label, &bad_index);
    if (e != cudaSuccess) return Err(e, "validate");
    if (bad_index >= 0) return BadIndex(bad_index);
  }
  cudaError_t e = rethinkgen::gpu::GaussianImages<Store, Idx>(
      indices, batch, N, C, mean, stddev, seed,
      static_cast<typename Store::Bits*>(out), s, scratch);
  return e == cudaSuccess ? "" : Err(e, "gaussian_images");
}

// Runs `fn(dev_in..., dev_out)` for the host API: copies in, runs, copies out.
std::string CopyIn(DevBuf& d, const void* h, size_t bytes) {
  if (d.p == nullptr) return Err(d.err, "cudaMalloc");
  if (bytes == 0) return "";
  cudaError_t e = cudaMemcpy(d.p, h, bytes, cudaMemcpyHostToDevice);
  return e == cudaSuccess ? "" : Err(e, "copy in");
}
std::string CopyOut(void* h, const DevBuf& d, size_t bytes) {
  if (bytes == 0) return "";
  cudaError_t e = cudaMemcpy(h, d.p, bytes, cudaMemcpyDeviceToHost);
  return e == cudaSuccess ? "" : Err(e, "copy out");
}

#define RG_TRY(expr)                 \
  do {                               \
    std::string _m = (expr);         \
    if (!_m.empty()) return _m;      \
  } while (0)

}  // namespace

const char* Backend() { return "cuda"; }

std::string Synchronize() {
  cudaError_t e = cudaDeviceSynchronize();
  if (e == cudaSuccess) e = cudaGetLastError();
  return e == cudaSuccess ? "" : Err(e, "synchronize");
}

std::string DeviceName() {
  int dev = 0;
  cudaDeviceProp prop;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaGetDeviceProperties(&prop, dev) != cudaSuccess)
    return "";
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
         std::to_string(prop.minor) + ")";
}

std::string CorruptLabels(int lb, const void* labels, int ib,
                          const void* indices, int64_t n, double p,
                          int64_t k, int64_t seed, bool permute, void* out,
                          bool device) {
  RG_TRY(CheckScalars(p, k));
  if (!device) {
    DevBuf dl(lb * n), di(ib * n), dout(lb * n);
    RG_TRY(CopyIn(dl, labels, lb * n));
    RG_TRY(CopyIn(di, indices, ib * n));
    if (dout.p == nullptr) return Err(dout.err, "cudaMalloc");
    RG_TRY(CorruptLabels(lb, dl.p, ib, di.p, n, p, k, seed, permute, dout.p,
                         true));
    RG_TRY(Synchronize());
    return CopyOut(out, dout, lb * n);
  }
  if (lb == 4 && ib == 4)
    return LabelsDev<int32_t, int32_t>(
        static_cast<const int32_t*>(labels),
        static_cast<const int32_t*>(indices), n, p, k, seed, permute,
        static_cast<int32_t*>(out));
  if (lb == 4 && ib == 8)
    return LabelsDev<int32_t, int64_t>(
        static_cast<const int32_t*>(labels),
        static_cast<const int64_t*>(indices), n, p, k, seed, permute,
        static_cast<int32_t*>(out));
  if (lb == 8 && ib == 4)
    return LabelsDev<int64_t, int32_t>(
        static_cast<const int64_t*>(labels),
        static_cast<const int32_t*>(indices), n, p, k, seed, permute,
        static_cast<int64_t*>(out));
  if (lb == 8 && ib == 8)
    return LabelsDev<int64_t, int64_t>(
        static_cast<const int64_t*>(labels),
        static_cast<const int64_t*>(indices), n, p, k, seed, permute,
        static_cast<int64_t*>(out));
  return "unsupported dtypes";
}

template <typename E>
static std::string PixelsIdx(int ib, const void* in, const void* idx,
                             int64_t batch, uint32_t P, uint32_t C,
                             int64_t seed, bool per_example, void* out) {
  if (ib == 4)
    return PixelsDev<E, int32_t>(static_cast<const E*>(in),
                                 static_cast<const int32_t*>(idx), batch, P, C,
                                 seed, per_example, static_cast<E*>(out));
  if (ib == 8)
    return PixelsDev<E, int64_t>(static_cast<const E*>(in),
                                 static_cast<const int64_t*>(idx), batch, P, C,
                                 seed, per_example, static_cast<E*>(out));
  return "unsupported index dtype";
}

std::string PermutePixels(int eb, const void* in, int ib, const void* indices,
                          int64_t batch, uint32_t P, uint32_t C, int64_t seed,
                          bool per_example, void* out, bool device) {
  const size_t bytes = static_cast<size_t>(eb) * batch * P * C;
  if (!device) {
    DevBuf din(bytes), di(ib * batch), dout(bytes);
    RG_TRY(CopyIn(din, in, bytes));
    RG_TRY(CopyIn(di, indices, ib * batch));
    if (dout.p == nullptr) return Err(dout.err, "cudaMalloc");
    RG_TRY(PermutePixels(eb, din.p, ib, di.p, batch, P, C, seed, per_example,
                         dout.p, true));
    RG_TRY(Synchronize());
    return CopyOut(out, dout, bytes);
  }
  switch (eb) {
    case 1: return PixelsIdx<uint8_t>(ib, in, indices, batch, P, C, seed, per_example, out);
    case 2: return PixelsIdx<uint16_t>(ib, in, indices, batch, P, C, seed, per_example, out);
    case 4: return PixelsIdx<uint32_t>(ib, in, indices, batch, P, C, seed, per_example, out);
    case 8: return PixelsIdx<uint64_t>(ib, in, indices, batch, P, C, seed, per_example, out);
  }
  return "unsupported element size";
}

std::string Permutations(const int64_t* indices, int64_t batch, uint32_t n,
                         int64_t seed, uint32_t purpose, uint32_t* perm,
                         bool device) {
  const size_t bytes = sizeof(uint32_t) * batch * n;
  if (!device) {
    DevBuf di(sizeof(int64_t) * batch), dout(bytes);
    if (indices != nullptr) RG_TRY(CopyIn(di, indices, sizeof(int64_t) * batch));
    if (dout.p == nullptr) return Err(dout.err, "cudaMalloc");
    RG_TRY(Permutations(indices ? static_cast<int64_t*>(di.p) : nullptr, batch,
                        n, seed, purpose, static_cast<uint32_t*>(dout.p),
                        true));
    RG_TRY(Synchronize());
    return CopyOut(perm, dout, bytes);
  }
  cudaError_t e = rethinkgen::gpu::Permutations<int64_t>(
      indices, batch, n, seed, purpose, perm, 0, Scratch());
  return e == cudaSuccess ? "" : Err(e, "permutations");
}

template <typename Store>
static std::string GaussIdx(int ib, const void* idx, int64_t batch, int64_t N,
                            int64_t C, const float* mean, const float* sd,
                            int64_t seed, void* out) {
  if (ib == 4)
    return GaussDev<Store, int32_t>(static_cast<const int32_t*>(idx), batch, N,
                                    C, mean, sd, seed, out);
  if (ib == 8)
    return GaussDev<Store, int64_t>(static_cast<const int64_t*>(idx), batch, N,
                                    C, mean, sd, seed, out);
  return "unsupported index dtype";
}

std::string GaussianImages(int dtype, int ib, const void* indices,
                           int64_t batch, int64_t N, int64_t C,
                           const float* mean, const float* stddev,
                           int64_t seed, void* out, bool device) {
  const size_t ob = dtype == 0 ? 4 : 2;
  if (!device) {
    DevBuf di(ib * batch), dout(ob * batch * N);
    RG_TRY(CopyIn(di, indices, ib * batch));
    if (dout.p == nullptr) return Err(dout.err, "cudaMalloc");
    RG_TRY(GaussianImages(dtype, ib, di.p, batch, N, C, mean, stddev, seed,
                          dout.p, true));
    RG_TRY(Synchronize());
    return CopyOut(out, dout, ob * batch * N);
  }
  using namespace rethinkgen::gpu;
  switch (dtype) {
    case 0: return GaussIdx<GaussFloat>(ib, indices, batch, N, C, mean, stddev, seed, out);
    case 1: return GaussIdx<GaussHalf>(ib, indices, batch, N, C, mean, stddev, seed, out);
    case 2: return GaussIdx<GaussBfloat16>(ib, indices, batch, N, C, mean, stddev, seed, out);
  }
  return "unsupported dtype";
}

#else  // !defined(__CUDACC__)
// ===========================================================================
// cpu backend: the kernels' per-element functions, phase by phase.
namespace {

// The parallel Fisher-Yates of randomize_gpu.cuh (draw phase in reverse
// block order, to mimic an arbitrary order of the atomics).
void Permutation(uint32_t n, Key key, uint32_t purpose, int64_t index,
                 uint32_t* perm) {
  std::vector<uint32_t> r(n), head(n, 0), link(n);
  const uint32_t nb = rethinkgen::gpu::PermBlocks(n);
  for (uint32_t b = nb; b-- > 0;)
    rethinkgen::gpu::PermDrawBlock(key, purpose, index, n, b, r.data(),
                                   head.data(), link.data());
  for (uint32_t v = 0; v < n; ++v)
    perm[rethinkgen::gpu::PermWalk(r.data(), head.data(), link.data(), v)] = v;
}

template <typename Idx>
int64_t FirstNegative(const Idx* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (x[i] < 0) return i;
  return -1;
}

template <typename T, typename Idx>
std::string LabelsCpu(const T* labels, const Idx* indices, int64_t n,
                      double p, int64_t k, int64_t seed, bool permute,
                      T* out) {
  if (g_validate) {
    for (int64_t i = 0; i < n; ++i)
      if (labels[i] < 0 || static_cast<int64_t>(labels[i]) >= k)
        return BadLabel(i);
    const int64_t bi = FirstNegative(indices, n);
    if (bi >= 0) return BadIndex(bi);
  }
  const Key key = KeyFromSeed(seed);
  const uint64_t thr = rethinkgen::CorruptThreshold(p);
  if (!permute) {
    for (int64_t i = 0; i < n; ++i)
      out[i] = rethinkgen::gpu::UniformLabel<T>(
          key, static_cast<int64_t>(indices[i]), thr,
          static_cast<uint64_t>(k), labels[i]);
    return "";
  }
  std::vector<int64_t> pos;
  for (int64_t i = 0; i < n; ++i) {
    out[i] = labels[i];
    if (rethinkgen::DrawLabel(key, static_cast<int64_t>(indices[i]), thr, 1)
            .corrupted)
      pos.push_back(i);
  }
  std::stable_sort(pos.begin(), pos.end(), [&](int64_t a, int64_t b) {
    return indices[a] < indices[b];
  });
  if (pos.size() < 2) return "";
  const uint32_t m = static_cast<uint32_t>(pos.size());
  if (m > rethinkgen::kFeistelMinItems) {  // FeistelLabelsKernel's per-item walk
    const rethinkgen::FeistelKey f = rethinkgen::MakeFeistelKey(key, m);
    for (uint32_t q = 0; q < m; ++q)
      out[pos[q]] = labels[pos[rethinkgen::FeistelIndex(f, q)]];
    return "";
  }
  std::vector<uint32_t> perm(m);
  Permutation(m, key, rethinkgen::kLabelPermute, 0, perm.data());
  for (size_t q = 0; q < pos.size(); ++q) out[pos[q]] = labels[pos[perm[q]]];
  return "";
}

template <typename E, typename Idx>
std::string PixelsCpu(const E* in, const Idx* indices, int64_t batch,
                      uint32_t P, uint32_t C, int64_t seed, bool per_example,
                      E* out) {
  if (g_validate && per_example) {
    const int64_t bi = FirstNegative(indices, batch);
    if (bi >= 0) return BadIndex(bi);
  }
  const Key key = KeyFromSeed(seed);
  std::vector<uint32_t> perm(P);
  if (!per_example)
    Permutation(P, key, rethinkgen::kPixelsShared, 0, perm.data());
  const int64_t stride = static_cast<int64_t>(P) * C;
  for (int64_t g = 0; g < batch; ++g) {
    if (per_example)
      Permutation(P, key, rethinkgen::kPixelsPerExample,
                  static_cast<int64_t>(indices[g]), perm.data());
    for (uint32_t q = 0; q < P; ++q)
      for (uint32_t c = 0; c < C; ++c)
        out[g * stride + static_cast<int64_t>(q) * C + c] =
            in[g * stride + static_cast<int64_t>(perm[q]) * C + c];
  }
  return "";
}

template <typename Store, typename Idx>
std::string GaussCpu(const Idx* indices, int64_t batch, int64_t N, int64_t C,
                     const float* mean, const float* stddev, int64_t seed,
                     void* out_v) {
  if (g_validate) {
    const int64_t bi = FirstNegative(indices, batch);
    if (bi >= 0) return BadIndex(bi);
  }
  auto* out = static_cast<typename Store::Bits*>(out_v);
  const Key key = KeyFromSeed(seed);
  const int64_t nb = (N + 3) / 4;
  for (int64_t g = 0; g < batch; ++g)
    for (int64_t b = 0; b < nb; ++b) {
      float z[4];
      rethinkgen::gpu::GaussianBlock4(key, static_cast<int64_t>(indices[g]),
                                      static_cast<uint32_t>(b),
                                      static_cast<uint32_t>(C), mean, stddev,
                                      z);
      for (int64_t k = 0; k < 4 && 4 * b + k < N; ++k)
        out[g * N + 4 * b + k] = Store::Convert(z[k]);
    }
  return "";
}

}  // namespace

const char* Backend() { return "cpu"; }
std::string Synchronize() { return ""; }
std::string DeviceName() { return ""; }

std::string CorruptLabels(int lb, const void* labels, int ib,
                          const void* indices, int64_t n, double p,
                          int64_t k, int64_t seed, bool permute, void* out,
                          bool device) {
  if (device) return "device pointers need the cuda backend";
  std::string m = CheckScalars(p, k);
  if (!m.empty()) return m;
#define RG_L(T, I)                                                         \
  return LabelsCpu<T, I>(static_cast<const T*>(labels),                    \
                         static_cast<const I*>(indices), n, p, k, seed,    \
                         permute, static_cast<T*>(out))
  if (lb == 4 && ib == 4) RG_L(int32_t, int32_t);
  if (lb == 4 && ib == 8) RG_L(int32_t, int64_t);
  if (lb == 8 && ib == 4) RG_L(int64_t, int32_t);
  if (lb == 8 && ib == 8) RG_L(int64_t, int64_t);
#undef RG_L
  return "unsupported dtypes";
}

std::string PermutePixels(int eb, const void* in, int ib, const void* indices,
                          int64_t batch, uint32_t P, uint32_t C, int64_t seed,
                          bool per_example, void* out, bool device) {
  if (device) return "device pointers need the cuda backend";
#define RG_P(E)                                                               \
  if (ib == 4)                                                                \
    return PixelsCpu<E, int32_t>(static_cast<const E*>(in),                   \
                                 static_cast<const int32_t*>(indices), batch, \
                                 P, C, seed, per_example, static_cast<E*>(out)); \
  return PixelsCpu<E, int64_t>(static_cast<const E*>(in),                     \
                               static_cast<const int64_t*>(indices), batch,   \
                               P, C, seed, per_example, static_cast<E*>(out))
  switch (eb) {
    case 1: RG_P(uint8_t);
    case 2: RG_P(uint16_t);
    case 4: RG_P(uint32_t);
    case 8: RG_P(uint64_t);
  }
#undef RG_P
  return "unsupported element size";
}

std::string Permutations(const int64_t* indices, int64_t batch, uint32_t n,
                         int64_t seed, uint32_t purpose, uint32_t* perm,
                         bool device) {
  if (device) return "device pointers need the cuda backend";
  const Key key = KeyFromSeed(seed);
  for (int64_t g = 0; g < batch; ++g)
    Permutation(n, key, purpose, indices ? indices[g] : 0,
                perm + g * static_cast<int64_t>(n));
  return "";
}

std::string GaussianImages(int dtype, int ib, const void* indices,
                           int64_t batch, int64_t N, int64_t C,
                           const float* mean, const float* stddev,
                           int64_t seed, void* out, bool device) {
  if (device) return "device pointers need the cuda backend";
  using namespace rethinkgen::gpu;
#define RG_G(S)                                                              \
  if (ib == 4)                                                               \
    return GaussCpu<S, int32_t>(static_cast<const int32_t*>(indices), batch, \
                                N, C, mean, stddev, seed, out);              \
  return GaussCpu<S, int64_t>(static_cast<const int64_t*>(indices), batch,   \
                              N, C, mean, stddev, seed, out)
  switch (dtype) {
    case 0: RG_G(GaussFloat);
    case 1: RG_G(GaussHalf);
    case 2: RG_G(GaussBfloat16);
  }
#undef RG_G
  return "unsupported dtype";
}

#endif  // defined(__CUDACC__)

void SetValidate(bool on) { g_validate = on; }

}  // namespace harness
