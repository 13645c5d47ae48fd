#include "ntk/parallel.hpp"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace ntk {

namespace {
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
