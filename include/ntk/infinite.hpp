// Infinite-width NNGP / NTK kernels of a Network (neural-tangents conventions, REFERENCE.md
// section 4), propagated layer by layer through each layer's Layer::kernel_rule over the kernel
// state (Σ12, Θ12 per pair; Σ11, Σ22 per sample), vectorised over all pairs, in float64.
// Vectors and images: every layer has a rule; the full spatial covariance is kept when a pooling
// layer needs it, otherwise only its diagonal (Flatten readouts).
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <numbers>
#include <type_traits>
#include <utility>
#include <vector>

#include "ntk/array.hpp"
#include "ntk/layer.hpp"
#include "ntk/network.hpp"

namespace ntk {

struct KernelOptions {
  enum Get { nngp, ntk } get = ntk;
  // Networks whose pixel-pair part is stride-1 convolutions and pointwise layers up to a
  // GlobalAvgPool or Flatten readout run pair by pair, one pixel offset at a time (OffsetBlock in
  // layer.hpp); false forces the layer-by-layer path over whole pixel-pair states (for testing).
  bool offset_path = true;
  // Bytes for the working memory (and, in memory, the result); 0 = no limit. Work that cannot fit
  // throws MemoryBudgetError before allocating.
  std::uint64_t max_memory = 0;
  // Called after every tile of pairs with (pairs done, pairs in all); for progress displays.
  std::function<void(index_t, index_t)> progress;
  int threads = 0;  // threads for this call; 0 = num_threads()
  // infinite_kernel_to_file: continue an interrupted run of the same job from its checkpoint.
  bool resume = false;
};

// Memory of a kernel computation, estimated before any allocation.
struct KernelPlan {
  std::uint64_t result_bytes = 0;   // the (N1, N2) output
  std::uint64_t working_bytes = 0;  // inputs in float64, variance maps, the states of one tile
  bool offset_path = false;
  std::string describe() const;
};
// Throws MemoryBudgetError (naming --max-memory) when the working memory alone exceeds
// options.max_memory; the result may still be written out of core (infinite_kernel_to_file).
KernelPlan plan_infinite_kernel(const Network& net, index_t n1, index_t n2, const KernelOptions& options,
                                std::size_t element_bytes);

// x1 (N1, input shape...) and optional x2 (N2, ...) (nullptr: x2 = x1) -> the (N1, N2) kernel:
// first the pairs (x, x) of every example (their per-pixel variances feed the nonlinearities), then
// tiles of pairs (upper tiles only when symmetric). Computed in float64, except that float32
// kernels on the offset path compute it in float32. Throws InvalidArgument on shape mismatch or
// non-finite inputs, NotSupported for networks without an exact kernel (a nonlinearity or
// LayerNorm whose input is not Gaussian, a Residual block not ending in a random layer, a
// non-vector output), MemoryBudgetError when result and working memory exceed max_memory.
template <class T>
Array<T> infinite_kernel(const Network& net, const Array<T>& x1, const std::type_identity_t<Array<T>>* x2,
                         KernelOptions options = {});

// The same kernel written straight into an .npy file band of rows by band of rows (the tile engine,
// src/tiles.hpp), bands as large as max_memory leaves beside the working memory: kernels larger than
// memory fit in max_memory. Atomic and resumable as empirical_ntk_to_file; returns the row it
// continued from.
template <class T>
index_t infinite_kernel_to_file(const Network& net, const Array<T>& x1, const std::type_identity_t<Array<T>>* x2,
                                const KernelOptions& options, const std::string& path);

// Monte Carlo estimate of the same kernel (neural-tangents' monte_carlo_kernel_fn): the empirical
// NTK (or NNGP) in trace mode, i.e. averaged over the outputs as the infinite kernel is K ⊗ I,
// averaged over `samples` initializations drawn with seeds seed, seed + 1, ... For layers without
// closed forms and for testing; its error falls like 1/√(width · samples).
template <class T>
Array<T> monte_carlo_kernel(const Network& net, const Array<T>& x1, const std::type_identity_t<Array<T>>* x2,
                            KernelOptions options = {}, int samples = 64, std::uint64_t seed = 0);

}  // namespace ntk
