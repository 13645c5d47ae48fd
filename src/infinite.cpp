// Infinite-width kernels: input kernel by GEMM, then every layer's kernel_rule in turn.
#include "ntk/infinite.hpp"

#include <map>
#include <mutex>

#include "blas.hpp"
#include "ntk/error.hpp"

namespace ntk {

void Layer::kernel_rule(KernelState&) const {
  throw NotSupported("infinite-width kernels: layer " + describe() + " has no kernel rule (yet)");
}

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

namespace {

template <class T>
std::vector<double> to_double(const Array<T>& x) {
  return std::vector<double>(x.data(), x.data() + x.size());
}

void check_input(const Network& net, const std::vector<double>& x, const Shape& shape,
                 const char* what) {
  if (shape.size() != 2 || shape[1] != net.input_size())
    throw InvalidArgument(std::string(what) + " must be (N, " + std::to_string(net.input_size()) + "), got " +
                          shape_string(shape));
  for (double v : x)
    if (!std::isfinite(v)) throw InvalidArgument(std::string(what) + " has non-finite values");
}

}  // namespace

template <class T>
Array<T> infinite_kernel(const Network& net, const Array<T>& x1, const std::type_identity_t<Array<T>>* x2,
                         KernelOptions options) {
  if (net.input_shape().size() != 1)
    throw NotSupported("infinite-width kernels support vector inputs (N, d) only for now; the network takes " +
                       shape_string(net.input_shape()));
  const auto& layers = net.layers();
  const auto& paths = net.layer_paths();
  for (size_t l = 0; l < layers.size(); ++l) {
    if (paths[l].find('.') != std::string::npos)
      throw NotSupported("infinite-width kernels: Residual (layer " + paths[l] + " " + layers[l]->describe() +
                         " is inside a Residual block) has no kernel rule (yet)");
    if (layers[l]->in_shape().size() != 1)
      throw NotSupported("infinite-width kernels: layer " + paths[l] + " " + layers[l]->describe() +
                         " takes non-vector inputs " + shape_string(layers[l]->in_shape()));
  }
  const std::vector<double> a = to_double(x1);
  const std::vector<double> b = x2 ? to_double(*x2) : std::vector<double>();
  check_input(net, a, x1.shape(), "x1");
  if (x2) check_input(net, b, x2->shape(), "x2");
  const double* pa = a.data();
  const double* pb = x2 ? b.data() : a.data();
  const index_t d = net.input_size();

  KernelState s;
  s.n1 = x1.shape()[0];
  s.n2 = x2 ? x2->shape()[0] : s.n1;
  s.want_ntk = options.get == KernelOptions::ntk;
  s.nngp.assign(size_t(s.n1 * s.n2), 0.0);
  if (s.n1 > 0 && s.n2 > 0)
    detail::gemm(false, true, s.n1, s.n2, d, 1.0 / double(d), pa, d, pb, d, 0.0, s.nngp.data(), s.n2);
  auto sq = [&](const double* x, index_t n) {
    std::vector<double> v(size_t(n), 0.0);
    for (index_t i = 0; i < n; ++i) {
      double t = 0;
      for (index_t j = 0; j < d; ++j) t += x[i * d + j] * x[i * d + j];
      v[size_t(i)] = t / double(d);
    }
    return v;
  };
  if (!x2 || x2 == &x1) {
    // Symmetric: the variances are the GEMM's diagonal, so that ρ = 1 exactly on it (arccos
    // amplifies a rounding difference δ in ρ to √(2δ) in the angle).
    s.var1.resize(size_t(s.n1));
    for (index_t i = 0; i < s.n1; ++i) s.var1[size_t(i)] = s.nngp[size_t(i * s.n2 + i)];
    s.var2 = s.var1;
  } else {
    s.var1 = sq(pa, s.n1);
    s.var2 = sq(pb, s.n2);
  }
  if (s.want_ntk) s.ntk.assign(s.nngp.size(), 0.0);

  for (const auto& layer : layers) layer->kernel_rule(s);

  const std::vector<double>& k = s.want_ntk ? s.ntk : s.nngp;
  Array<T> out(Shape{s.n1, s.n2});
  for (index_t i = 0; i < out.size(); ++i) out[i] = static_cast<T>(k[size_t(i)]);
  return out;
}

template Array<float> infinite_kernel(const Network&, const Array<float>&, const Array<float>*, KernelOptions);
template Array<double> infinite_kernel(const Network&, const Array<double>&, const Array<double>*, KernelOptions);

}  // namespace ntk
