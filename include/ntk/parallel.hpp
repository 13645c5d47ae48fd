// Threads: one process-wide thread count used by ntkit's own loops and by OpenBLAS, and a
// parallel_for over index ranges that captures the first exception of any worker and rethrows it
// on the calling thread (as faiss does), so errors inside parallel work are never lost.
#pragma once
#include <cstdint>
#include <functional>

namespace ntk {

// 0 = all hardware threads. Also sets OpenBLAS's thread count.
void set_num_threads(int threads);
int num_threads();

// Calls body(begin, end) on contiguous chunks of [0, count) using up to `threads` threads
// (0 = num_threads()). Chunks are fixed by count and the thread count only; body must make each
// element's result independent of the chunking.
// Thread count for memory-bound loops that run between BLAS calls: OpenBLAS's workers keep
// spinning for a while after each call, so extra threads there only contend for the cores.
inline constexpr int kMemoryBoundThreads = 1;

void parallel_for(std::int64_t count, const std::function<void(std::int64_t, std::int64_t)>& body, int threads = 0);

}  // namespace ntk
