// Gauss-Hermite rules for the quadrature of activations without closed-form kernels.
#include "gaussian.hpp"

#include <map>
#include <mutex>

#include "ntk/error.hpp"

namespace ntk {

namespace detail {

const GaussHermiteRule& gauss_hermite(int n) {
  static std::mutex mu;
  static std::map<int, GaussHermiteRule> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(n);
  if (it != cache.end()) return it->second;
  if (n < 1 || n > 200) throw InvalidArgument("Gauss-Hermite degree must be in [1, 200]");
  // Orthonormal Hermite recurrence p_j = t·√(2/j)·p_{j−1} − √((j−1)/j)·p_{j−2}, Newton on the
  // roots (Numerical Recipes' gauher); w = 2 / p'_n², the weight of e^{-t²}.
  GaussHermiteRule r;
  r.nodes.assign(size_t(n), 0.0);
  r.weights.assign(size_t(n), 0.0);
  const double pim4 = 0.7511255444649425;  // π^{-1/4}
  const int m = (n + 1) / 2;
  double z = 0;
  for (int i = 0; i < m; ++i) {
    if (i == 0)
      z = std::sqrt(double(2 * n + 1)) - 1.85575 * std::pow(double(2 * n + 1), -0.16667);
    else if (i == 1)
      z -= 1.14 * std::pow(double(n), 0.426) / z;
    else if (i == 2)
      z = 1.86 * z - 0.86 * r.nodes[0];
    else if (i == 3)
      z = 1.91 * z - 0.91 * r.nodes[1];
    else
      z = 2.0 * z - r.nodes[size_t(i - 2)];
    double pp = 0;
    for (int it2 = 0; it2 < 100; ++it2) {
      double p1 = pim4, p2 = 0;
      for (int j = 1; j <= n; ++j) {
        const double p3 = p2;
        p2 = p1;
        p1 = z * std::sqrt(2.0 / j) * p2 - std::sqrt(double(j - 1) / j) * p3;
      }
      pp = std::sqrt(2.0 * n) * p2;
      const double z1 = z;
      z = z1 - p1 / pp;
      if (std::abs(z - z1) <= 1e-15 * std::max(1.0, std::abs(z))) break;
    }
    r.nodes[size_t(i)] = z;  // temporarily descending from the largest
    r.weights[size_t(i)] = 2.0 / (pp * pp);
  }
  // Mirror: node i (largest first) and -node i.
  GaussHermiteRule out;
  out.nodes.resize(size_t(n));
  out.weights.resize(size_t(n));
  for (int i = 0; i < m; ++i) {
    out.nodes[size_t(i)] = -r.nodes[size_t(i)];
    out.weights[size_t(i)] = r.weights[size_t(i)];
    out.nodes[size_t(n - 1 - i)] = r.nodes[size_t(i)];
    out.weights[size_t(n - 1 - i)] = r.weights[size_t(i)];
  }
  if (n % 2 == 1) out.nodes[size_t(m - 1)] = 0.0;
  return cache.emplace(n, std::move(out)).first->second;
}

}  // namespace detail

}  // namespace ntk
