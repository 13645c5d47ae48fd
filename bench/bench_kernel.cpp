// Infinite-width kernel throughput: the exact CNTK (3 x [Conv 3x3 SAME, Relu], then GlobalAvgPool
// or Flatten, Dense) on N random 28 x 28 x 1 images, symmetric, as in issue 5's benchmark, and the
// 3-ReLU FCN kernel on vectors of 784.
//
// Names: BM_Cntk/<readout>/N<images>/<dtype>/real_time, BM_FcnKernel/N<n>/<dtype>/real_time.
// Counters: pairs_per_second (kernel entries computed: N(N+1)/2 plus the N pairs (x, x) of the
// variance pass) and, for the CNTK, updates_per_second: pixel-pair-layer updates (pairs × pixel
// pairs per pair, 784² for GlobalAvgPool and 784 for Flatten × 3 layers), the unit of
// neural-tangents' published CPU figure. Threads: NTK_NUM_THREADS (default: all).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

#include "ntk/infinite.hpp"
#include "ntk/parallel.hpp"

namespace {

const char* const kCntk =
    "Conv(1, 3, padding=SAME, W_std=1.4142135623730951), Relu, Conv(1, 3, padding=SAME, W_std=1.4142135623730951), "
    "Relu, Conv(1, 3, padding=SAME, W_std=1.4142135623730951), Relu, ";

void use_env_threads() {
  const char* t = std::getenv("NTK_NUM_THREADS");
  ntk::set_num_threads(t ? std::atoi(t) : 0);
}

template <class T>
ntk::Array<T> images(ntk::index_t n, ntk::index_t h, ntk::index_t w) {
  ntk::Array<T> x(ntk::Shape{n, h, w, 1});
  std::uint64_t state = 12345;
  for (ntk::index_t i = 0; i < x.size(); ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    x[i] = T(double(state >> 11) / double(1ull << 53));  // pixel intensities in [0, 1)
  }
  return x;
}

template <class T>
void BM_Cntk(benchmark::State& state, bool gap) {
  use_env_threads();
  const ntk::index_t n = state.range(0);
  ntk::Network net(std::string(kCntk) + (gap ? "GlobalAvgPool, Dense(1)" : "Flatten, Dense(1)"), {28, 28, 1});
  const ntk::Array<T> x = images<T>(n, 28, 28);
  for (auto _ : state) benchmark::DoNotOptimize(ntk::infinite_kernel(net, x, nullptr).data());
  const double pairs = double(n) * double(n + 1) / 2 + double(n);
  const double per_pair = gap ? 784.0 * 784.0 * 3 : 784.0 * 3;
  state.counters["pairs_per_second"] = benchmark::Counter(pairs, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["updates_per_second"] = benchmark::Counter(pairs * per_pair, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = ntk::num_threads();
}

template <class T>
void BM_FcnKernel(benchmark::State& state) {
  use_env_threads();
  const ntk::index_t n = state.range(0);
  ntk::Network net(
      "Dense(1, W_std=1.4142135623730951, b_std=0.05), Relu, Dense(1, W_std=1.4142135623730951, b_std=0.05), Relu, "
      "Dense(1, W_std=1.4142135623730951, b_std=0.05), Relu, Dense(1)",
      {784});
  ntk::Array<T> x = images<T>(n, 28, 28);
  x = ntk::Array<T>(ntk::Shape{n, 784}, x.vector());
  for (auto _ : state) benchmark::DoNotOptimize(ntk::infinite_kernel(net, x, nullptr).data());
  state.counters["pairs_per_second"] =
      benchmark::Counter(double(n) * double(n + 1) / 2 + double(n), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = ntk::num_threads();
}

void BM_CntkGapFloat32(benchmark::State& s) { BM_Cntk<float>(s, true); }
void BM_CntkGapFloat64(benchmark::State& s) { BM_Cntk<double>(s, true); }
void BM_CntkFlattenFloat32(benchmark::State& s) { BM_Cntk<float>(s, false); }
BENCHMARK(BM_CntkGapFloat32)->Name("BM_Cntk/gap/float32")->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CntkGapFloat64)->Name("BM_Cntk/gap/float64")->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CntkFlattenFloat32)->Name("BM_Cntk/flatten/float32")->Arg(1000)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_FcnKernel, float)->Name("BM_FcnKernel/float32")->Arg(4000)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
