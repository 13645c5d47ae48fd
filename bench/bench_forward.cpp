// Forward-pass throughput of Network::apply on the peer's MLP and CNN (bench/peers/torch_entk.py
// in the shared bench folder; bench/torch_forward.py times PyTorch on the same configs and
// bench/compare_forward.sh puts the two side by side).
//
// Names: BM_Forward/<arch>/W<width>/N<batch>/<dtype>/real_time. Counters: items_per_second
// (examples per second) and GFLOP/s from an analytic count of the Dense and Conv multiply-adds:
//   Dense  2 · positions · fan_in · out           per example (positions = 1 for vectors)
//   Conv   2 · Ho · Wo · kh · kw · C_in · C_out   per example
// Both are 2 · (output positions) · numel(W), which is how the count is computed below. Biases,
// activations and pooling are left out: they are O(activations), not O(weights), and a few percent
// at most here. ntkit runs OpenBLAS single-threaded and threads its own loops and GEMM splits
// (ntk/parallel.hpp); the environment variable NTK_NUM_THREADS sets that thread count (default:
// all hardware threads) and the "threads" counter shows the count in effect. Times are wall-clock
// (UseRealTime) because the work runs on several threads.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <random>
#include <string>

#include "ntk/network.hpp"
#include "ntk/parallel.hpp"

namespace {

const char* const kMlp = "Dense({W}, b_std=0), Relu, Dense({W}, b_std=0), Relu, Dense(10, b_std=0)";
const char* const kCnn =
    "Conv({W}, 3, padding=SAME, b_std=0), Relu, Conv({W}, 3, padding=SAME, b_std=0), Relu, "
    "GlobalAvgPool, Dense(10, b_std=0)";

std::string with_width(std::string spec, int width) {
  const std::string key = "{W}", w = std::to_string(width);
  for (size_t p = spec.find(key); p != std::string::npos; p = spec.find(key, p + w.size())) spec.replace(p, key.size(), w);
  return spec;
}

// Multiply-add FLOPs of one example: 2 · (output positions) · numel(W) for every Dense and Conv.
double flops_per_example(const ntk::Network& net) {
  double flops = 0;
  for (const auto& layer : net.layers()) {
    if (layer->name() != "Dense" && layer->name() != "Conv") continue;
    for (const ntk::ParamSpec& p : layer->param_specs()) {
      if (p.name != "W") continue;
      const double positions = double(layer->out_size()) / double(layer->out_shape().back());
      flops += 2.0 * positions * double(ntk::numel(p.shape));
    }
  }
  return flops;
}

template <class T>
void forward_benchmark(benchmark::State& state, const std::string& arch, int width, ntk::index_t n) {
  ntk::NetworkDefaults defaults;
  defaults.parameterization = ntk::Parameterization::standard;
  const bool mlp = arch == "mlp";
  const ntk::Shape input_shape = mlp ? ntk::Shape{784} : ntk::Shape{28, 28, 1};
  ntk::Network net(with_width(mlp ? kMlp : kCnn, width), input_shape, defaults);
  const std::vector<T> theta = net.template init<T>(0);

  ntk::Shape x_shape{n};
  x_shape.insert(x_shape.end(), input_shape.begin(), input_shape.end());
  ntk::Array<T> x(x_shape);
  std::mt19937_64 gen(1);
  std::normal_distribution<double> normal;
  for (ntk::index_t i = 0; i < x.size(); ++i) x[i] = T(normal(gen));

  for (auto _ : state) {
    ntk::Array<T> y = net.apply(theta, x);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double flops = flops_per_example(net) * double(n);
  state.SetItemsProcessed(state.iterations() * n);
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = ntk::num_threads();
  state.counters["N"] = double(n);
  state.counters["W"] = width;
}

template <class T>
void register_forward(const std::string& arch, int width, ntk::index_t n, const char* dtype) {
  const std::string name =
      "BM_Forward/" + arch + "/W" + std::to_string(width) + "/N" + std::to_string(n) + "/" + dtype;
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& s) { forward_benchmark<T>(s, arch, width, n); })
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}

const int registered = [] {
  if (const char* t = std::getenv("NTK_NUM_THREADS")) ntk::set_num_threads(std::atoi(t));
  struct Config {
    const char* arch;
    int width;
    ntk::index_t n;
  };
  for (Config c : {Config{"mlp", 512, 64}, Config{"mlp", 512, 1000}, Config{"cnn", 64, 32}, Config{"cnn", 64, 128}}) {
    register_forward<float>(c.arch, c.width, c.n, "float32");
    register_forward<double>(c.arch, c.width, c.n, "float64");
  }
  return 0;
}();

}  // namespace
