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

// The same kernel written straight into an .npy file that is memory-mapped and filled tile row by
// tile row, each finished strip written back and dropped from RAM, so kernels larger than memory
// fit in max_memory. Atomic: nothing is left at path if anything fails.
template <class T>
void infinite_kernel_to_file(const Network& net, const Array<T>& x1, const std::type_identity_t<Array<T>>* x2,
                             const KernelOptions& options, const std::string& path);

// Monte Carlo estimate of the same kernel (neural-tangents' monte_carlo_kernel_fn): the empirical
// NTK (or NNGP) in trace mode, i.e. averaged over the outputs as the infinite kernel is K ⊗ I,
// averaged over `samples` initializations drawn with seeds seed, seed + 1, ... For layers without
// closed forms and for testing; its error falls like 1/√(width · samples).
template <class T>
Array<T> monte_carlo_kernel(const Network& net, const Array<T>& x1, const std::type_identity_t<Array<T>>* x2,
                            KernelOptions options = {}, int samples = 64, std::uint64_t seed = 0);

namespace detail {

// Gauss-Hermite rule for the weight e^{-t²} with n nodes (Newton on the three-term recurrence),
// cached per n. Nodes ascending.
struct GaussHermiteRule {
  std::vector<double> nodes, weights;
};
const GaussHermiteRule& gauss_hermite(int n);

// E[φ(u)φ(v)] and E[φ'(u)φ'(v)] for (u, v) ~ N(0, [[s11, s12], [s12, s22]]), by bivariate
// Gauss-Hermite quadrature in a form symmetric under swapping u and v (so symmetric kernels stay
// symmetric): u = √(2 s11)·(c1 t1 + c2 t2), v = √(2 s22)·(c1 t1 − c2 t2), c1² − c2² = ρ.
template <class Phi, class DPhi>
std::pair<double, double> gaussian_expectations(const Phi& phi, const DPhi& dphi, double s11, double s12, double s22,
                                                int degree = 25) {
  const GaussHermiteRule& r = gauss_hermite(degree);
  const double a = std::sqrt(2.0 * std::max(s11, 0.0)), b = std::sqrt(2.0 * std::max(s22, 0.0));
  const double prod = std::max(s11, 0.0) * std::max(s22, 0.0);
  const double rho = prod > 0 ? std::clamp(s12 / std::sqrt(prod), -1.0, 1.0) : 0.0;
  const double c1 = std::sqrt((1 + rho) / 2), c2 = std::sqrt((1 - rho) / 2);
  const size_t n = r.nodes.size();
  double e = 0, ed = 0;
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) {
      const double w = r.weights[i] * r.weights[j];
      const double u = a * (c1 * r.nodes[i] + c2 * r.nodes[j]), v = b * (c1 * r.nodes[i] - c2 * r.nodes[j]);
      e += w * phi(u) * phi(v);
      ed += w * dphi(u) * dphi(v);
    }
  return {e / std::numbers::pi, ed / std::numbers::pi};
}

// arcsin and arccos without a libm call, so that loops over kernel entries vectorize (a call to
// std::acos keeps a loop scalar). On |t| ≤ 1/2, asin is its Taylor series t·Σ c_n t^{2n}, whose
// coefficients are exact rationals, c_0 = 1, c_{n+1} = c_n·(2n+1)²/((2n+2)(2n+3)); 24 terms leave a
// remainder below 1e-17 there (11 below float's 6e-8). Larger |t| use
// asin|t| = π/2 − 2·asin√((1−|t|)/2), whose argument is again at most 1/2 and is computed without
// cancellation. Accurate to a few ulp on [−1, 1].
template <class T>
inline constexpr int asin_series_terms = sizeof(T) == 4 ? 11 : 24;
inline constexpr auto asin_series_coefficients = [] {
  std::array<double, 24> c{};
  c[0] = 1.0;
  for (size_t n = 0; n + 1 < c.size(); ++n)
    c[n + 1] = c[n] * double((2 * n + 1) * (2 * n + 1)) / double((2 * n + 2) * (2 * n + 3));
  return c;
}();

// asin(s) for 0 ≤ s ≤ 1/2.
// The polynomial Σ_{n≥1} c_n z^{n−1} is evaluated as two interleaved Horner chains in z² (odd and
// even n), halving the chain of dependent multiply-adds that bounds the loops calling this.
template <class T>
inline T asin_small(T s) {
  const T z = s * s, z2 = z * z;
  constexpr int terms = asin_series_terms<T>;
  constexpr int last = terms - 1;  // c_1 .. c_last
  T odd = T(0), even = T(0);       // Σ c_{2k+1} z2^k and Σ c_{2k+2} z2^k
#pragma GCC unroll 24  // fully: a loop left inside keeps the caller's loop from vectorizing
  for (int n = last; n >= 1; --n) {
    if (n % 2 == 1)
      odd = odd * z2 + T(asin_series_coefficients[size_t(n)]);
    else
      even = even * z2 + T(asin_series_coefficients[size_t(n)]);
  }
  return s + s * z * (odd + z * even);
}

// t must lie in [−1, 1] (callers clamp).
template <class T>
inline T asin_vectorizable(T t) {
  const T a = std::abs(t);
  const bool big = a > T(0.5);
  const T r = asin_small(big ? std::sqrt(T(0.5) * (T(1) - a)) : a);
  return std::copysign(big ? std::numbers::pi_v<T> / 2 - T(2) * r : r, t);
}

template <class T>
inline T acos_vectorizable(T t) {
  const T a = std::abs(t);
  const bool big = a > T(0.5);
  const T r = asin_small(big ? std::sqrt(T(0.5) * (T(1) - a)) : a);
  // acos t = π/2 − asin t for small |t|; 2·asin√((1−t)/2) for t > 1/2; π − that for t < −1/2.
  constexpr T pi = std::numbers::pi_v<T>;
  return big ? (t > 0 ? T(2) * r : pi - T(2) * r) : pi / 2 - std::copysign(r, t);
}

}  // namespace detail
}  // namespace ntk
