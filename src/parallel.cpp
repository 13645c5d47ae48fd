#include "ntk/parallel.hpp"

#include <cblas.h>
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace ntk {

namespace {

// OpenBLAS picks its kernels by CPU model; on CPUs it does not know (common in VMs, whose model
// string is generic) it falls back to Prescott SSE3 kernels, 5x below the machine's SGEMM peak.
// Unless the user chose a core with OPENBLAS_CORETYPE, re-run its kernel selection with the core
// the CPU's features support. Looked up with dlsym because only DYNAMIC_ARCH builds have it.
bool select_blas_kernels() {
  if (std::getenv("OPENBLAS_CORETYPE")) return false;
  using CoreName = char* (*)();
  using Hook = void (*)();
  auto corename = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  auto quit = reinterpret_cast<Hook>(dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit"));
  auto init = reinterpret_cast<Hook>(dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init"));
  if (!corename || !quit || !init) return false;
  const char* name = corename();
  if (!name || std::strcmp(name, "Prescott") != 0) return false;
  const char* better = nullptr;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    better = "SkylakeX";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    better = "Haswell";
  if (!better) return false;
  setenv("OPENBLAS_CORETYPE", better, 0);
  quit();
  init();
  return true;
}

[[maybe_unused]] const bool g_blas_kernels_selected = select_blas_kernels();

std::atomic<int> g_threads{0};
int hardware_threads() { return std::max(1u, std::thread::hardware_concurrency()); }
}  // namespace

void set_num_threads(int threads) {
  int t = threads <= 0 ? hardware_threads() : threads;
  g_threads = t;
  openblas_set_num_threads(t);
}

int num_threads() {
  int t = g_threads.load();
  return t > 0 ? t : hardware_threads();
}

void parallel_for(std::int64_t count, const std::function<void(std::int64_t, std::int64_t)>& body, int threads) {
  if (count <= 0) return;
  std::int64_t t = std::min<std::int64_t>(threads > 0 ? threads : num_threads(), count);
  if (t <= 1) {
    body(0, count);
    return;
  }
  std::exception_ptr error;
  std::mutex error_mutex;
  std::vector<std::thread> workers;
  workers.reserve(static_cast<size_t>(t));
  for (std::int64_t w = 0; w < t; ++w) {
    std::int64_t begin = count * w / t, end = count * (w + 1) / t;
    workers.emplace_back([&, begin, end] {
      try {
        body(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
    });
  }
  for (auto& w : workers) w.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace ntk
