// Threads: one process-wide thread count for ntkit's loops, which run on a pool of sleeping
// workers; OpenBLAS itself runs single-threaded and ntkit splits large GEMMs over the pool.
// parallel_for captures the first exception of any part and rethrows it on the calling thread
// (as faiss does), so errors inside parallel work are never lost; loops nested inside a parallel
// loop run serially on their thread.
#pragma once
#include <cstdint>
#include <functional>

namespace ntk {

// 0 = all hardware threads.
void set_num_threads(int threads);
int num_threads();

// Calls body(begin, end) on contiguous chunks of [0, count) using up to `threads` threads
// (0 = num_threads()). Chunks are fixed by count and the thread count only; body must make each
// element's result independent of the chunking.
void parallel_for(std::int64_t count, const std::function<void(std::int64_t, std::int64_t)>& body, int threads = 0);

}  // namespace ntk
