// TF-free test harness for the CUDA kernels of csrc/rethinkgen/randomize_gpu.cuh.
//
// harness_kernels.cc implements this API twice from one source:
//   nvcc -x cu  -> backend "cuda": the real kernels and launchers;
//   g++         -> backend "cpu":  the same per-element functions (layer 1 of
//                  randomize_gpu.cuh) run phase by phase on the host.
// harness_module.cc wraps it for Python (pybind11); check_harness.py compares
// it with rethinkgen_tf/ops/reference.py.
//
// Host API: host pointers in and out (the cuda backend copies).  Device API
// (cuda backend only): device pointers, asynchronous on the legacy default
// stream, for benchmarks.  Every function returns "" or an error message.
#ifndef RETHINKGEN_TESTS_GPU_HARNESS_H_
#define RETHINKGEN_TESTS_GPU_HARNESS_H_

#include <cstdint>
#include <string>

namespace harness {

const char* Backend();

// label_bytes, idx_bytes: 4 (int32) or 8 (int64).
std::string CorruptLabels(int label_bytes, const void* labels, int idx_bytes,
                          const void* indices, int64_t n, double p,
                          int64_t num_classes, int64_t seed, bool permute,
                          void* out, bool device = false);

// elem_bytes: 1, 2, 4 or 8.  P units of C elements per example.
std::string PermutePixels(int elem_bytes, const void* in, int idx_bytes,
                          const void* indices, int64_t batch, uint32_t P,
                          uint32_t C, int64_t seed, bool per_example,
                          void* out, bool device = false);

// batch Fisher-Yates permutations of n (indices int64, may be null: index 0).
std::string Permutations(const int64_t* indices, int64_t batch, uint32_t n,
                         int64_t seed, uint32_t purpose, uint32_t* perm,
                         bool device = false);

// dtype: 0 float32, 1 float16 bits, 2 bfloat16 bits.  N = H*W*C.
std::string GaussianImages(int dtype, int idx_bytes, const void* indices,
                           int64_t batch, int64_t N, int64_t C,
                           const float* mean, const float* stddev,
                           int64_t seed, void* out, bool device = false);

// cuda backend: waits for the device; returns the first pending error.
std::string Synchronize();

// Turns the input checks (labels in range, indices >= 0) on or off; on by
// default.  The cuda backend checks on the device (one reduction kernel and a
// stream synchronization per call).
void SetValidate(bool on);

// cuda backend: "name (sm_XY)" of the current device, "" on cpu.
std::string DeviceName();

}  // namespace harness

#endif  // RETHINKGEN_TESTS_GPU_HARNESS_H_
