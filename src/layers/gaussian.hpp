// Numerics of Gaussian expectations for the activations' kernel rules: Gauss-Hermite quadrature,
// and arcsin / arccos series that vectorize (internal to the layers and their tests).
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <numbers>
#include <utility>
#include <vector>

namespace ntk {

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
