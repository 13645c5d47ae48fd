// Threads: one process-wide thread count for ntkit's loops, which run on a pool of sleeping
// workers; OpenBLAS itself runs single-threaded and ntkit splits large GEMMs over the pool.
// parallel_for captures the first exception of any part and rethrows it on the calling thread
// (as faiss does), so errors inside parallel work are never lost; loops nested inside a parallel
// loop run serially on their thread.
#pragma once
#include <cstdint>
#include <functional>

namespace ntk {

// Work split into pieces that are single BLAS calls is split by size, into at least this many
// pieces, never by the thread count: OpenBLAS rounds by the shapes it is given, and results must
// not depend on the threads.
inline constexpr std::int64_t kParallelChunks = 16;

// 0 = all hardware threads.
void set_num_threads(int threads);
// The thread count loops started from this thread use: a ThreadScope's if one is active, else the
// process-wide one.
int num_threads();

// Sets the thread count of the calling thread's loops for its lifetime (threads <= 0: leaves it as
// it is), so one call can run on T threads without changing the process-wide setting; the entry
// points take it from their options' `threads`.
class ThreadScope {
 public:
  explicit ThreadScope(int threads);
  ~ThreadScope();
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  int outer_;
};

// OpenBLAS runs single-threaded while ntkit works (ntkit calls it from its own threads). In a host
// process whose other code links the same OpenBLAS (NumPy and PyTorch in Python), that setting must
// not outlive ntkit's calls: the host calls share_blas_with_host() once, which gives OpenBLAS back
// its own thread count (as the environment set it, OPENBLAS_NUM_THREADS or all cores), and holds a
// BlasForNtkit over each call into ntkit. Nested and concurrent holds count: the last to end gives
// the count back. Without share_blas_with_host() (the CLI) OpenBLAS stays single-threaded.
void share_blas_with_host();
// OpenBLAS's thread count outside ntkit's calls in a sharing host (1 otherwise), and setting it.
int host_blas_threads();
void set_host_blas_threads(int threads);

class BlasForNtkit {
 public:
  BlasForNtkit();
  ~BlasForNtkit();
  BlasForNtkit(const BlasForNtkit&) = delete;
  BlasForNtkit& operator=(const BlasForNtkit&) = delete;
};

// True on a pool worker, or on a caller while it runs a parallel loop (for tests).
bool in_parallel_region();

// Calls body(begin, end) on contiguous chunks of [0, count) using up to `threads` threads
// (0 = num_threads()). Chunks are fixed by count and the thread count only; body must make each
// element's result independent of the chunking.
void parallel_for(std::int64_t count, const std::function<void(std::int64_t, std::int64_t)>& body, int threads = 0);

}  // namespace ntk
