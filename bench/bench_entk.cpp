// Empirical NTK benchmarks on the PyTorch peer's configurations (../shared/bench/peers/torch_entk.py):
// standard parameterization, biases everywhere, float32. bench/compare_entk.sh prints these beside
// the peer's figures from the same run.
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <malloc.h>

#include <vector>

#include "ntk/empirical.hpp"
#include "ntk/network.hpp"
#include "ntk/parallel.hpp"
#include "ntk/rng.hpp"

namespace {

// As the ntk CLI does (apps/ntk/main.cpp): keep large freed buffers in the heap.
[[maybe_unused]] const int kMallocTuned = (mallopt(M_MMAP_THRESHOLD, 1 << 30), mallopt(M_TRIM_THRESHOLD, 1 << 30));

std::string mlp(int width) {
  return "Dense(" + std::to_string(width) + ", b_std=0), Relu, Dense(" + std::to_string(width) +
         ", b_std=0), Relu, Dense(10, b_std=0)";
}
std::string cnn(int width) {
  return "Conv(" + std::to_string(width) + ", 3, padding=SAME, b_std=0), Relu, Conv(" + std::to_string(width) +
         ", 3, padding=SAME, b_std=0), Relu, GlobalAvgPool, Dense(10, b_std=0)";
}

void run(benchmark::State& state, const std::string& spec, ntk::Shape input, const char* mode, ntk::EntkMethod method) {
  const ntk::index_t n = state.range(0);
  ntk::NetworkDefaults d;
  d.parameterization = ntk::Parameterization::standard;
  ntk::Network net(spec, input, d);
  auto theta = net.init<float>(0);
  ntk::Shape shape{n};
  shape.insert(shape.end(), input.begin(), input.end());
  ntk::Array<float> x(shape);
  for (ntk::index_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(ntk::normal(1, 0, static_cast<std::uint64_t>(i)));
  ntk::EntkOptions o;
  o.mode = ntk::parse_entk_mode(mode);
  o.method = method;
  for (auto _ : state) {
    auto k = ntk::empirical_ntk(net, theta, x, nullptr, o);
    benchmark::DoNotOptimize(k.data());
  }
}

using M = ntk::EntkMethod;
void BM_EntkMlp512Full_sd(benchmark::State& s) { run(s, mlp(512), {784}, "full", M::sd); }
void BM_EntkMlp512Full_jc(benchmark::State& s) { run(s, mlp(512), {784}, "full", M::jc); }
void BM_EntkMlp2048Pntk_sd(benchmark::State& s) { run(s, mlp(2048), {784}, "pntk", M::sd); }
void BM_EntkCnn64Full_sd(benchmark::State& s) { run(s, cnn(64), {28, 28, 1}, "full", M::sd); }
void BM_EntkCnn64Full_jc(benchmark::State& s) { run(s, cnn(64), {28, 28, 1}, "full", M::jc); }

BENCHMARK(BM_EntkMlp512Full_sd)->Arg(64)->Arg(1000)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_EntkMlp512Full_jc)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_EntkMlp2048Pntk_sd)->Arg(128)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_EntkCnn64Full_sd)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_EntkCnn64Full_jc)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

namespace {
// The machine's SGEMM ceiling through the same OpenBLAS, for reporting achieved GFLOP/s as a
// fraction of peak (counter "GFLOPs" = 2·n³ per iteration).
void BM_Sgemm(benchmark::State& state) {
  const ntk::index_t n = state.range(0);
  std::vector<float> a(static_cast<size_t>(n * n), 1.f), b(a), c(a);
  // ntkit keeps OpenBLAS single-threaded and threads around it; the peak is OpenBLAS's own
  // multi-threaded SGEMM on all the threads ntkit uses.
  openblas_set_num_threads(ntk::num_threads());
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(n), int(n), 1.f, a.data(), int(n), b.data(), int(n),
                0.f, c.data(), int(n));
    benchmark::DoNotOptimize(c.data());
  }
  openblas_set_num_threads(1);
  state.counters["GFLOPs"] = benchmark::Counter(2.0 * double(n) * double(n) * double(n), benchmark::Counter::kIsIterationInvariantRate,
                                                benchmark::Counter::kIs1000);
}
BENCHMARK(BM_Sgemm)->Arg(2048)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();
}  // namespace
