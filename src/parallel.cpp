#include "ntk/parallel.hpp"

#include <cblas.h>
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <condition_variable>
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

// ntkit threads its own loops and splits large GEMMs itself (detail::gemm), so OpenBLAS runs
// single-threaded in every caller: its own workers would otherwise spin between calls and compete
// with ntkit's threads for the cores.
// OpenBLAS's own thread count before ntkit set it to 1, given back between calls in a sharing host.
int g_blas_threads_before = 1;

bool configure_blas() {
  g_blas_threads_before = std::max(1, openblas_get_num_threads());
  select_blas_kernels();
  openblas_set_num_threads(1);
  return true;
}

std::mutex g_blas_mutex;
bool g_blas_shared = false;  // share_blas_with_host() was called
int g_blas_holds = 0;        // BlasForNtkit alive

[[maybe_unused]] const bool g_blas_configured = configure_blas();

std::atomic<int> g_threads{0};
int hardware_threads() { return std::max(1u, std::thread::hardware_concurrency()); }

// A per-call thread count (ThreadScope) on the thread that makes the call; 0: the process-wide one.
thread_local int t_scoped_threads = 0;

// True on pool workers and on a caller while it runs a parallel loop: nested loops run serially.
thread_local bool t_in_parallel = false;

// A fixed set of sleeping workers that run the parts of one parallel_for at a time. Workers wait
// on a condition variable rather than spinning, so the cores are free between loops.
class Pool {
 public:
  static Pool& instance() {
    static Pool pool;
    return pool;
  }

  void run(std::int64_t parts, const std::function<void(std::int64_t)>& part) {
    std::unique_lock<std::mutex> caller(call_mutex_);  // one loop at a time
    ensure_workers(parts - 1);
    {
      std::lock_guard<std::mutex> lock(m_);
      part_ = &part;
      parts_ = parts;
      next_ = 1;
      pending_ = parts - 1;
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    run_part(0);
    std::unique_lock<std::mutex> lock(m_);
    done_.wait(lock, [&] { return pending_ == 0; });
    part_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }

 private:
  void ensure_workers(std::int64_t count) {
    while (static_cast<std::int64_t>(workers_.size()) < count) workers_.emplace_back([this] { work(); });
  }

  void run_part(std::int64_t index) {
    try {
      (*part_)(index);
    } catch (...) {
      std::lock_guard<std::mutex> lock(m_);
      if (!error_) error_ = std::current_exception();
    }
  }

  void work() {
    t_in_parallel = true;
    std::uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(m_);
    while (true) {
      wake_.wait(lock, [&] { return stop_ || (generation_ != seen && next_ < parts_); });
      if (stop_) return;
      const std::int64_t index = next_++;
      if (next_ >= parts_) seen = generation_;
      lock.unlock();
      run_part(index);
      lock.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex call_mutex_, m_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(std::int64_t)>* part_ = nullptr;
  std::int64_t parts_ = 0, next_ = 0, pending_ = 0;
  std::uint64_t generation_ = 0;
  std::exception_ptr error_;
  bool stop_ = false;
};

}  // namespace

ThreadScope::ThreadScope(int threads) : outer_(t_scoped_threads) {
  if (threads > 0) t_scoped_threads = threads;
}
ThreadScope::~ThreadScope() { t_scoped_threads = outer_; }

void share_blas_with_host() {
  std::lock_guard<std::mutex> lock(g_blas_mutex);
  g_blas_shared = true;
  if (g_blas_holds == 0) openblas_set_num_threads(g_blas_threads_before);
}

void set_host_blas_threads(int threads) {
  std::lock_guard<std::mutex> lock(g_blas_mutex);
  g_blas_threads_before = std::max(1, threads);
  if (g_blas_shared && g_blas_holds == 0) openblas_set_num_threads(g_blas_threads_before);
}

int host_blas_threads() {
  std::lock_guard<std::mutex> lock(g_blas_mutex);
  return g_blas_shared ? g_blas_threads_before : 1;
}

BlasForNtkit::BlasForNtkit() {
  std::lock_guard<std::mutex> lock(g_blas_mutex);
  if (g_blas_holds++ == 0 && g_blas_shared) openblas_set_num_threads(1);
}

BlasForNtkit::~BlasForNtkit() {
  std::lock_guard<std::mutex> lock(g_blas_mutex);
  if (--g_blas_holds == 0 && g_blas_shared) openblas_set_num_threads(g_blas_threads_before);
}

bool in_parallel_region() { return t_in_parallel; }

void set_num_threads(int threads) { g_threads = threads <= 0 ? hardware_threads() : threads; }

int num_threads() {
  if (t_scoped_threads > 0) return t_scoped_threads;
  int t = g_threads.load();
  return t > 0 ? t : hardware_threads();
}

void parallel_for(std::int64_t count, const std::function<void(std::int64_t, std::int64_t)>& body, int threads) {
  if (count <= 0) return;
  std::int64_t t = std::min<std::int64_t>(threads > 0 ? threads : num_threads(), count);
  if (t <= 1 || t_in_parallel) {
    body(0, count);
    return;
  }
  const std::function<void(std::int64_t)> part = [&](std::int64_t w) {
    // Restored however the body ends: a body that throws on the calling thread must not leave the
    // flag set, or every later loop on that thread (a long-lived Python process) would run serially.
    struct InParallel {
      bool outer = t_in_parallel;
      InParallel() { t_in_parallel = true; }
      ~InParallel() { t_in_parallel = outer; }
    } in_parallel;
    body(count * w / t, count * (w + 1) / t);
  };
  Pool::instance().run(t, part);
}

}  // namespace ntk
