// Which of the two CPU code paths of randomize_cpu.h runs: the rule, in one
// place.  No TensorFlow.
//
//   "generic"  portable C++ compiled for the baseline instruction set (the
//              compiler vectorizes the lane loops); runs everywhere.
//   "avx2"     x86-64 only: the hand-written intrinsics of randomize_avx2.h
//              and the lane loops compiled with target("avx2").
//
// Both give the same bits.  The environment variable RETHINKGEN_CPU_PATH
// (read once, when the library loads) selects one:
//   unset, "" or "auto"   avx2 where the CPU has AVX2, else generic;
//   "generic"             generic, also on AVX2 machines;
//   "avx2"                avx2; on a CPU (or build) without AVX2 the library
//                         still loads, warns once and runs generic;
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

// The AVX2 path exists in host builds for x86-64 with GCC or Clang.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__CUDACC__)
#define RG_HAVE_AVX2_PATH 1
#endif

namespace rethinkgen {

enum class CpuPath { kGeneric, kAvx2 };

inline const char* CpuPathName(CpuPath path) { return path == CpuPath::kAvx2 ? "avx2" : "generic"; }

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

struct CpuPathChoice {
  CpuPath path;
  std::string warning;  // "" or one line: why the request was not followed
};

// The rule above, as a pure function of the variable's value (null: unset)
// and of whether the AVX2 path can run.
inline CpuPathChoice ChooseCpuPath(const char* request, bool avx2_runs) {
  const CpuPath best = avx2_runs ? CpuPath::kAvx2 : CpuPath::kGeneric;
  std::string r = request ? request : "";
  for (char& ch : r) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (r.empty() || r == "auto") return {best, ""};
  if (r == "generic") return {CpuPath::kGeneric, ""};
  if (r == "avx2") {
    if (avx2_runs) return {CpuPath::kAvx2, ""};
    return {CpuPath::kGeneric, std::string(kCpuPathEnv) +
                                   "=avx2, but this CPU or this build has no AVX2; running the "
                                   "generic path (same outputs)"};
  }
  return {best, std::string(kCpuPathEnv) + "=" + request +
                    " is not one of generic, avx2, auto; running the " + CpuPathName(best) +
                    " path"};
}

// This library's choice: evaluated once, on first use (the op library and
// the NumPy module call it when they load).
inline const CpuPathChoice& ActiveCpuPathChoice() {
  static const CpuPathChoice choice = ChooseCpuPath(std::getenv(kCpuPathEnv), CpuRunsAvx2Path());
  return choice;
}

}  // namespace rethinkgen

#endif  // RETHINKGEN_CPU_PATH_H_
