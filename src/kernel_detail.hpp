// Internals of the infinite-width kernels shared by the layer-by-layer path (kernel_layerwise.cpp),
// the offset path (offset_path.hpp / .cpp) and the driver (infinite.cpp); not part of the public API.
#pragma once
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "ntk/infinite.hpp"
#include "ntk/layer.hpp"
#include "ntk/network.hpp"

namespace ntk::detail {

// Spatial extent (h, w) of an activation shape: (H, W, C) images, (L, C) sequences, (d) vectors.
inline std::pair<index_t, index_t> spatial_of(const Shape& s) {
  if (s.size() >= 3) return {s[0], s[1]};
  if (s.size() == 2) return {s[0], 1};
  return {1, 1};
}

// Inputs in float64, as (N, P, C) with P pixels of C channels.
struct Inputs {
  std::vector<double> x;
  index_t n = 0, pixels = 1, channels = 1;
  const double* example(index_t i) const { return x.data() + i * pixels * channels; }
};

template <class T>
Inputs read_inputs(const Network& net, const Array<T>& a, const char* what) {
  net.check_inputs(a, what);
  Inputs in;
  in.x.assign(a.data(), a.data() + a.size());
  in.n = a.dim(0);
  const auto [h, w] = spatial_of(net.input_shape());
  in.pixels = h * w;
  in.channels = net.input_size() / in.pixels;
  return in;
}

// A batch of pairs (i of a, j of b): the grid [i0, i0 + c1) × [j0, j0 + c2), or, with `self`, the
// pairs (i, i) for i in [i0, i0 + c1) of a.
struct PairBatch {
  index_t i0 = 0, c1 = 0, j0 = 0, c2 = 0;
  bool self = false;
  index_t pairs() const { return self ? c1 : c1 * c2; }
  index_t first(index_t q) const { return self ? i0 + q : i0 + q / c2; }
  index_t second(index_t q) const { return self ? i0 + q : j0 + q % c2; }
};

// Per layer with a variance-reading rule, per example, its input's variances Σ(x, x)(p, p).
using VarianceMaps = std::vector<std::vector<double>>;  // [layer] -> (n, pixels)

// Which kernel the program admits, checked before any work: every nonlinearity must see a
// Gaussian input, every Residual block must end in a zero-mean random layer (so the branches'
// kernels add), and the output must be a vector. Returns whether the full spatial covariance is
// needed (some layer pools) or only its diagonal. Throws NotSupported naming the layer otherwise.
bool check_program(const Network& net);

// Σ⁰(p, p') = x(p)·x'(p')/C for every pair; Θ⁰ = 0. A GEMM over the grid for vectors, one per
// pair over its pixels for images.
KernelState input_state(const Inputs& a, const Inputs& b, const PairBatch& batch, bool diagonal, const Shape& in_shape,
                        bool want_ntk);

// Runs the program on a batch of pairs from step `first` on, `input` being the state of the buffer
// that step reads. Before each layer the variances are filled in: for pairs (x, x) from the state
// itself (so ρ = 1 exactly on them) and recorded into `record`; otherwise from the maps of x1, x2.
KernelState propagate(const Network& net, KernelState input, size_t first, const PairBatch& batch, bool symmetric,
                      const VarianceMaps* maps1, const VarianceMaps* maps2, VarianceMaps* record, index_t record_n);

// Pairs per batch of the layer-by-layer path: the grid of vectors is cheap per pair; image pairs
// hold P² (or P) entries in every live buffer, so batches stay near 256 MiB.
index_t batch_pairs(const Network& net, bool diagonal);

// Pairs per tile of the offset path: its state is one entry per pair, so tiles are for progress.
inline constexpr index_t offset_tile_pairs = index_t(1) << 16;

// Bytes of the variance maps of n examples: per variance-reading layer, per example, its input's pixels.
std::uint64_t variance_map_bytes(const Network& net, index_t n);

// The step of the readout layer (GlobalAvgPool, Flatten) that ends the offset path, when every
// step before it has an offset rule (stride-1 Conv, pointwise layers, Residual sums) and nothing
// computed before it is read after it; otherwise none, and the layer-by-layer path runs.
std::optional<size_t> offset_readout(const Network& net);

}  // namespace ntk::detail
