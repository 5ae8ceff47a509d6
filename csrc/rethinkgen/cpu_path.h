// Which of the three CPU code paths of randomize_cpu.h runs: the rule, in
// one place.  No TensorFlow.
//
//   "generic"  portable C++ compiled for the baseline instruction set (the
//              compiler vectorizes the lane loops); runs everywhere.
//   "avx2"     x86-64 only: the hand-written intrinsics of randomize_avx2.h
//              and the lane loops compiled with target("avx2").
//   "avx512"   x86-64 only: the avx2 path, with the Gaussian images in the
//              AVX-512 intrinsics of randomize_avx512.h and the Feistel lanes
//              compiled for AVX-512 (needs AVX-512 F, BW, DQ and VL).
//
// All give the same bits.  The environment variable RETHINKGEN_CPU_PATH
// (read once, when the library loads) selects one:
//   unset, "" or "auto"   the widest path the CPU runs: avx512, avx2, generic;
//   "generic"             generic, also on AVX2 / AVX-512 machines;
//   "avx2"                avx2 (also on AVX-512 machines);
//   "avx512"              avx512;
//   a path the CPU (or the build) lacks: the library still loads, warns once
//   and runs what "auto" runs;
//   anything else         warns once and runs what "auto" runs.
// The value is matched case-insensitively.  A library never refuses to load
// because of it: every path computes the same outputs, so running another
// one is always safe, and the warning says so.
//
// The TensorFlow op library and the pybind11 module each evaluate this once
// (ActiveCpuPathChoice) from the same variable; both report the result
// (ops: op RethinkgenCpuPath; NumPy module: cpu_path()).
#ifndef RETHINKGEN_CPU_PATH_H_
#define RETHINKGEN_CPU_PATH_H_

#include <cctype>
#include <cstdlib>
#include <string>

// The AVX2 and AVX-512 paths exist in host builds for x86-64 with GCC or Clang.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__CUDACC__)
#define RG_HAVE_AVX2_PATH 1
#endif

namespace rethinkgen {

enum class CpuPath { kGeneric, kAvx2, kAvx512 };

inline const char* CpuPathName(CpuPath path) {
  return path == CpuPath::kAvx512 ? "avx512" : path == CpuPath::kAvx2 ? "avx2" : "generic";
}

constexpr const char kCpuPathEnv[] = "RETHINKGEN_CPU_PATH";

// Whether this build has the AVX2 path and this CPU (and OS) runs it.
inline bool CpuRunsAvx2Path() {
#ifdef RG_HAVE_AVX2_PATH
  __builtin_cpu_init();  // may run before the library's constructors
  return __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}

// Whether this build has the AVX-512 path and this CPU (and OS: libgcc checks
// that the OS saves the AVX-512 registers) runs it.
inline bool CpuRunsAvx512Path() {
#ifdef RG_HAVE_AVX2_PATH
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

struct CpuPathChoice {
  CpuPath path;
  std::string warning;  // "" or one line: why the request was not followed
};

// The rule above, as a pure function of the variable's value (null: unset)
// and of which paths can run.
inline CpuPathChoice ChooseCpuPath(const char* request, bool avx2_runs, bool avx512_runs) {
  avx512_runs = avx512_runs && avx2_runs;
  const CpuPath best = avx512_runs ? CpuPath::kAvx512
                       : avx2_runs ? CpuPath::kAvx2
                                   : CpuPath::kGeneric;
  std::string r = request ? request : "";
  for (char& ch : r) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (r.empty() || r == "auto") return {best, ""};
  if (r == "generic") return {CpuPath::kGeneric, ""};
  if (r == "avx2" || r == "avx512") {
    const bool runs = r == "avx2" ? avx2_runs : avx512_runs;
    if (runs) return {r == "avx2" ? CpuPath::kAvx2 : CpuPath::kAvx512, ""};
    return {best, std::string(kCpuPathEnv) + "=" + r + ", but this CPU or this build has no " +
                      (r == "avx2" ? "AVX2" : "AVX-512") + "; running the " + CpuPathName(best) +
                      " path (same outputs)"};
  }
  return {best, std::string(kCpuPathEnv) + "=" + request +
                    " is not one of generic, avx2, avx512, auto; running the " + CpuPathName(best) +
                    " path"};
}

// This library's choice: evaluated once, on first use (the op library and
// the NumPy module call it when they load).
inline const CpuPathChoice& ActiveCpuPathChoice() {
  static const CpuPathChoice choice =
      ChooseCpuPath(std::getenv(kCpuPathEnv), CpuRunsAvx2Path(), CpuRunsAvx512Path());
  return choice;
}

}  // namespace rethinkgen

#endif  // RETHINKGEN_CPU_PATH_H_
