// Infinite-width kernels: the driver. The pass over the pairs (x, x), then tiles of pairs through
// the offset path (offset_path.hpp) or the layer-by-layer path (kernel_layerwise.cpp), handed to
// the tile engine (tiles.hpp); the plan, the public entry points and the Monte Carlo estimator.
#include "ntk/infinite.hpp"

#include <cmath>
#include <optional>

#include "kernel_detail.hpp"
#include "ntk/empirical.hpp"
#include "ntk/error.hpp"
#include "ntk/io.hpp"
#include "ntk/parallel.hpp"
#include "offset_path.hpp"
#include "tiles.hpp"

namespace ntk {

using namespace detail;

namespace {

// The infinite-width kernel as a producer of tiles for the tile engine. Construction runs the pass
// over the pairs (x, x) of every example, recording the variances each rule reads; a tile is then a
// batch of pairs through the program (the symmetric path computes only pairs j ≥ i of a diagonal tile).
template <class T>
class KernelProducer final : public detail::TileProducer<T> {
 public:
  KernelProducer(const Network& net, const Array<T>& x1, const Array<T>* x2, const KernelOptions& options)
      : net_(net), diagonal_(!check_program(net)), a_(read_inputs(net, x1, "x1")), symmetric_(x2 == nullptr || x2 == &x1),
        b_(symmetric_ ? Inputs() : read_inputs(net, *x2, "x2")), want_ntk_(options.get == KernelOptions::ntk) {
    if (const std::optional<size_t> readout = options.offset_path ? offset_readout(net) : std::nullopt)
      offsets_.emplace(net, *readout);  // float32 kernels: the offset path computes in float32
    self_pass(a_, maps1_);
    if (!symmetric_) self_pass(b_, maps2_);
  }

  std::string what() const override { return want_ntk_ ? "the infinite-width NTK" : "the infinite-width NNGP kernel"; }

  // The offset path keeps one vector entry per pair; the layer-by-layer path whole pixel-pair states.
  index_t batch() const { return offsets_ ? offset_tile_pairs : batch_pairs(net_, diagonal_); }

  void tile(index_t i0, index_t c1, index_t j0, index_t c2, T* tile) override {
    const PairBatch batch{i0, c1, j0, c2, false};
    const KernelState s = run(a_, second(), batch, symmetric_, want_ntk_, &maps1_, symmetric_ ? &maps1_ : &maps2_, nullptr, 0);
    const std::vector<double>& k = want_ntk_ ? s.ntk : s.nngp;
    for (index_t q = 0; q < batch.pairs(); ++q) {
      const index_t i = batch.first(q), j = batch.second(q);
      if (symmetric_ && j < i) continue;  // the engine mirrors (j, i)
      tile[(i - i0) * c2 + (j - j0)] = static_cast<T>(k[size_t(q)]);
    }
  }

  bool symmetric() const { return symmetric_; }
  index_t n1() const { return a_.n; }
  index_t n2() const { return second().n; }

 private:
  const Inputs& second() const { return symmetric_ ? a_ : b_; }

  // The kernel of a batch of pairs at the network's output.
  KernelState run(const Inputs& x, const Inputs& y, const PairBatch& batch, bool sym, bool ntk, const VarianceMaps* m1,
                  const VarianceMaps* m2, VarianceMaps* record, index_t record_n) const {
    if (offsets_) {
      KernelState s = offsets_->run(x, y, batch, sym, ntk, m1, m2, record, record_n);
      return propagate(net_, std::move(s), offsets_->readout() + 1, batch, sym, m1, m2, record, record_n);
    }
    return propagate(net_, input_state(x, y, batch, diagonal_, net_.input_shape(), ntk), 0, batch, sym, m1, m2, record,
                     record_n);
  }

  // The pairs (x, x) of every example, recording the variances each rule reads.
  void self_pass(const Inputs& in, VarianceMaps& maps) const {
    maps.assign(net_.layers().size(), {});
    const index_t per_batch = batch();
    for (index_t i0 = 0; i0 < in.n; i0 += per_batch) {
      const PairBatch batch{i0, std::min(per_batch, in.n - i0), i0, 0, true};
      run(in, in, batch, false, false, nullptr, nullptr, &maps, in.n);
    }
  }

  const Network& net_;
  const bool diagonal_;
  const Inputs a_;
  const bool symmetric_;
  const Inputs b_;
  const bool want_ntk_;
  std::optional<OffsetPath<T>> offsets_;
  VarianceMaps maps1_, maps2_;
};

// Square tiles near the producer's batch of pairs on the symmetric path; otherwise rows of the
// batch's square root by as many columns as fill it.
template <class T>
detail::TileGrid kernel_grid(const KernelProducer<T>& p) {
  const index_t per_batch = p.batch();
  const index_t side = std::max<index_t>(1, static_cast<index_t>(std::sqrt(double(per_batch))));
  detail::TileGrid g;
  g.n1 = p.n1(), g.n2 = p.n2(), g.symmetric = p.symmetric();
  g.tile1 = std::min(g.n1, side);
  g.tile2 = g.symmetric ? g.tile1 : std::min(g.n2, std::max<index_t>(1, per_batch / g.tile1));
  g.producer_fills_diagonal_tiles = false;
  return g;
}

}  // namespace

std::string KernelPlan::describe() const {
  return std::string("path ") + (offset_path ? "offset (pairs in SIMD lanes, one pixel offset at a time)" : "layer by layer") +
         ", kernel " + format_bytes(result_bytes) + " + working " + format_bytes(working_bytes) + "\n";
}

KernelPlan plan_infinite_kernel(const Network& net, index_t n1, index_t n2, const KernelOptions& options,
                                std::size_t element_bytes) {
  ThreadScope threads(options.threads);
  const bool diagonal = !check_program(net);
  KernelPlan plan;
  plan.offset_path = options.offset_path && offset_readout(net).has_value();
  plan.result_bytes = std::uint64_t(n1) * std::uint64_t(n2) * element_bytes;
  const std::uint64_t inputs = std::uint64_t(n1 + n2) * std::uint64_t(net.input_size()) * 8;
  std::uint64_t tile;
  if (plan.offset_path) {
    // Per pair a few vector states; per thread one block per buffer, the transposed inputs and variances.
    std::uint64_t widest = 1;
    for (size_t b = 0; b < net.num_buffers(); ++b) widest = std::max<std::uint64_t>(widest, std::uint64_t(net.buffer_size(b)));
    tile = std::uint64_t(offset_tile_pairs) * 8 * 8 + std::uint64_t(num_threads()) * 64 * widest * 2 * (net.num_buffers() + 4);
  } else {
    index_t widest = 1;
    for (size_t b = 0; b < net.num_buffers(); ++b) {
      const auto [h, w] = spatial_of(net.buffer_shape(b));
      widest = std::max(widest, diagonal ? h * w : h * w * h * w);
    }
    tile = std::uint64_t(batch_pairs(net, diagonal)) * std::uint64_t(widest) * 8 * 2 * 4;
  }
  plan.working_bytes = inputs + variance_map_bytes(net, n1 + n2) + tile;
  if (options.max_memory > 0 && plan.working_bytes > options.max_memory)
    throw MemoryBudgetError("the infinite-width kernel needs " + format_bytes(plan.working_bytes) +
                            " of working memory (inputs in float64, variance maps, one tile of pairs), more than "
                            "--max-memory " + format_bytes(options.max_memory) + "; raise --max-memory");
  return plan;
}

template <class T>
Array<T> infinite_kernel(const Network& net, const Array<T>& x1, const std::type_identity_t<Array<T>>* x2,
                         KernelOptions options) {
  ThreadScope threads(options.threads);
  const index_t n1 = x1.ndim() > 0 ? x1.dim(0) : 0, n2 = x2 ? (x2->ndim() > 0 ? x2->dim(0) : 0) : n1;
  const KernelPlan plan = plan_infinite_kernel(net, n1, n2, options, sizeof(T));  // before allocating
  if (options.max_memory > 0 && plan.result_bytes + plan.working_bytes > options.max_memory)
    throw MemoryBudgetError("the kernel takes " + format_bytes(plan.result_bytes) + " plus " +
                            format_bytes(plan.working_bytes) + " working memory, more than --max-memory " +
                            format_bytes(options.max_memory) + "; raise --max-memory or write it out of core");
  KernelProducer<T> producer(net, x1, x2, options);
  Array<T> out(Shape{n1, n2});
  detail::ArraySink<T> sink(out.data(), n2, 1);
  detail::run_tiles(kernel_grid(producer), producer, sink, options.progress);
  return out;
}

template <class T>
index_t infinite_kernel_to_file(const Network& net, const Array<T>& x1, const std::type_identity_t<Array<T>>* x2,
                             const KernelOptions& options, const std::string& path) {
  ThreadScope threads(options.threads);
  const index_t n1 = x1.ndim() > 0 ? x1.dim(0) : 0, n2 = x2 ? (x2->ndim() > 0 ? x2->dim(0) : 0) : n1;
  const KernelPlan plan = plan_infinite_kernel(net, n1, n2, options, sizeof(T));
  KernelProducer<T> producer(net, x1, x2, options);  // checks the inputs before the file is created
  detail::TileGrid grid = kernel_grid(producer);
  // Bands as large as the budget left beside the working memory allows.
  const std::uint64_t spare = options.max_memory > plan.working_bytes ? options.max_memory - plan.working_bytes : 0;
  grid.band = detail::band_rows(n1, grid.tile1, std::uint64_t(n2) * sizeof(T), spare);
  const detail::JobIdentity identity{
      {"kernel", std::string("infinite-width ") + (options.get == KernelOptions::nngp ? "NNGP" : "NTK")},
      {"network", net.describe() + " on " + shape_string(net.input_shape())},
      {"x1", detail::array_identity(x1)},
      {"x2", x2 ? detail::array_identity(*x2) : "x1 (symmetric)"},
      {"path", plan.offset_path ? "offset" : "layer by layer"},
      {"dtype", dtype_name(dtype_of<T>())},
      {"tile", std::to_string(grid.tile1) + " x " + std::to_string(grid.tile2) + ", bands of " +
                   std::to_string(grid.band) + " rows"}};
  return detail::run_tiles_to_file(grid, producer, path, Shape{n1, n2}, identity, options.resume, options.progress);
}

template <class T>
Array<T> monte_carlo_kernel(const Network& net, const Array<T>& x1, const std::type_identity_t<Array<T>>* x2,
                            KernelOptions options, int samples, std::uint64_t seed) {
  if (samples < 1) throw InvalidArgument("Monte Carlo kernel: samples must be >= 1, got " + std::to_string(samples));
  const EntkMode trace = parse_entk_mode("trace");
  EntkOptions o;
  o.mode = trace;
  Array<T> mean;
  for (int s = 0; s < samples; ++s) {
    const std::vector<T> theta = net.init<T>(seed + std::uint64_t(s));
    Array<T> k = options.get == KernelOptions::ntk ? empirical_ntk(net, theta, x1, x2, o)
                                                   : empirical_nngp(net, theta, x1, x2, trace);
    if (s == 0) mean = Array<T>(k.shape());
    for (index_t e = 0; e < k.size(); ++e) mean[e] += k[e] / T(samples);
  }
  return mean;
}

template Array<float> monte_carlo_kernel(const Network&, const Array<float>&, const Array<float>*, KernelOptions, int,
                                         std::uint64_t);
template Array<double> monte_carlo_kernel(const Network&, const Array<double>&, const Array<double>*, KernelOptions,
                                          int, std::uint64_t);
template Array<float> infinite_kernel(const Network&, const Array<float>&, const Array<float>*, KernelOptions);
template Array<double> infinite_kernel(const Network&, const Array<double>&, const Array<double>*, KernelOptions);
template index_t infinite_kernel_to_file(const Network&, const Array<float>&, const Array<float>*, const KernelOptions&,
                                      const std::string&);
template index_t infinite_kernel_to_file(const Network&, const Array<double>&, const Array<double>*, const KernelOptions&,
                                      const std::string&);

}  // namespace ntk