// Elementwise nonlinearities. Each is a pair (phi, phi') applied row by row; the tangent and
// cotangent rules are both multiplication by phi'(x) of the row's example.
#include <cmath>
#include <numbers>
#include <type_traits>
#include <vector>

#include "layers.hpp"
#include "ntk/infinite.hpp"
#include "ntk/error.hpp"
#include "ntk/parallel.hpp"

namespace ntk::detail {
namespace {

enum class Kind { relu, leaky_relu, abs, erf, gelu, tanh, sigmoid, identity };

template <class T>
inline T phi(Kind kind, T x, T alpha) {
  switch (kind) {
    case Kind::relu: return x > T(0) ? x : T(0);
    case Kind::leaky_relu: return x > T(0) ? x : alpha * x;
    case Kind::abs: return std::abs(x);
    case Kind::erf: return std::erf(x);
    case Kind::gelu: return T(0.5) * x * std::erfc(-x / std::numbers::sqrt2_v<T>);  // exact: x·Φ(x)
    case Kind::tanh: return std::tanh(x);
    case Kind::sigmoid: return T(1) / (T(1) + std::exp(-x));
    case Kind::identity: return x;
  }
  return x;
}

// Derivative. At kinks we take PyTorch's values (relu'(0) = 0, abs'(0) = 0) so that
// empirical kernels match autograd exactly.
template <class T>
inline T dphi(Kind kind, T x, T alpha) {
  switch (kind) {
    case Kind::relu: return x > T(0) ? T(1) : T(0);
    case Kind::leaky_relu: return x > T(0) ? T(1) : alpha;
    case Kind::abs: return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
    case Kind::erf: return T(2) / std::sqrt(std::numbers::pi_v<T>) * std::exp(-x * x);
    case Kind::gelu:
      return T(0.5) * std::erfc(-x / std::numbers::sqrt2_v<T>) +
             x * std::exp(T(-0.5) * x * x) / std::sqrt(T(2) * std::numbers::pi_v<T>);
    case Kind::tanh: {
      T t = std::tanh(x);
      return T(1) - t * t;
    }
    case Kind::sigmoid: {
      T s = T(1) / (T(1) + std::exp(-x));
      return s * (T(1) - s);
    }
    case Kind::identity: return T(1);
  }
  return T(1);
}

class Activation final : public LayerImpl<Activation> {
 public:
  Activation(std::string name, Kind kind, double alpha) : name_(std::move(name)), kind_(kind), alpha_(alpha) {}

  std::string name() const override { return name_; }
  bool channelwise() const override { return true; }
  std::string describe() const override {
    return kind_ == Kind::leaky_relu ? name_ + "(" + format_number(alpha_) + ")" : name_;
  }

  template <class T>
  void forward_t(const T*, const T* x, T* y, index_t n) const {
    const T a = T(alpha_);
    dispatch([&](auto kind) {
      parallel_for(n * in_size(), [&](index_t begin, index_t end) {
        for (index_t i = begin; i < end; ++i) y[i] = phi(kind.value, x[i], a);
      });
    });
  }

  // Calls f with the kind as a compile-time constant, so the loops inside are specialized per
  // activation (a switch per element defeats vectorization: measured 15x slower for Relu).
  template <class F>
  void dispatch(F&& f) const {
    switch (kind_) {
      case Kind::relu: return f(std::integral_constant<Kind, Kind::relu>{});
      case Kind::leaky_relu: return f(std::integral_constant<Kind, Kind::leaky_relu>{});
      case Kind::abs: return f(std::integral_constant<Kind, Kind::abs>{});
      case Kind::erf: return f(std::integral_constant<Kind, Kind::erf>{});
      case Kind::gelu: return f(std::integral_constant<Kind, Kind::gelu>{});
      case Kind::tanh: return f(std::integral_constant<Kind, Kind::tanh>{});
      case Kind::sigmoid: return f(std::integral_constant<Kind, Kind::sigmoid>{});
      case Kind::identity: return f(std::integral_constant<Kind, Kind::identity>{});
    }
  }

  // Both directions multiply each of the k rows of example i by phi'(x_i).
  template <class T>
  void scale_rows(const T* x, index_t n, index_t k, const T* in, T* out) const {
    const T a = T(alpha_);
    const index_t d = in_size();
    dispatch([&](auto kind) {
    parallel_for(n, [&](index_t begin, index_t end) {
      std::vector<T> slope(static_cast<size_t>(d));
      for (index_t i = begin; i < end; ++i) {
        for (index_t j = 0; j < d; ++j) slope[size_t(j)] = dphi(kind.value, x[i * d + j], a);
        for (index_t kk = 0; kk < k; ++kk) {
          const T* src = in + (i * k + kk) * d;
          T* dst = out + (i * k + kk) * d;
          for (index_t j = 0; j < d; ++j) dst[j] = slope[size_t(j)] * src[j];
        }
      }
    });
    });
  }

  template <class T>
  void vjp_t(const T*, const T* x, const T*, index_t n, index_t k, const T* g_out, T* g_in, ParamCotangent<T>) const {
    if (g_in) scale_rows(x, n, k, g_out, g_in);
  }

  template <class T>
  void jvp_t(const T*, const T* x, const T*, index_t n, index_t k, const T* t_in, const T*, index_t, T* t_out) const {
    if (t_in)
      scale_rows(x, n, k, t_in, t_out);
    else
      std::fill(t_out, t_out + n * k * out_size(), T(0));
  }

  // Infinite width (REFERENCE.md section 4): Σ12 ← E[φ(u)φ(v)], Θ12 ← Θ12·E[φ'(u)φ'(v)] over
  // (u, v) ~ N(0, [[Σ11, Σ12], [Σ12, Σ22]]); closed forms for the ABReLU family (Relu, LeakyRelu,
  // Abs) and Erf, Gauss-Hermite quadrature for Gelu, Tanh, Sigmoid.
  void kernel_rule(KernelState& s) const override {
    if (kind_ == Kind::identity) return;
    // Returns (Σ', Σ̇) for one pair.
    auto pair_rule = [&](double s11, double s12, double s22) -> std::pair<double, double> {
      switch (kind_) {
        case Kind::relu:
        case Kind::leaky_relu:
        case Kind::abs: {
          const double a = kind_ == Kind::relu ? 0.0 : (kind_ == Kind::abs ? -1.0 : alpha_), b = 1.0;
          const double prod = std::max(s11, 0.0) * std::max(s22, 0.0);
          const double rho = prod > 0 ? std::clamp(s12 / std::sqrt(prod), -1.0, 1.0) : 0.0;
          const double theta = std::acos(rho);
          const double f = (a - b) * (a - b) / (2 * std::numbers::pi);
          const double dot = (a * a + b * b) / 2 - f * theta;
          return {f * std::sqrt(std::max(0.0, prod - s12 * s12)) + dot * s12, dot};
        }
        case Kind::erf: {
          const double den = (1 + 2 * s11) * (1 + 2 * s22);
          const double arg = std::clamp(2 * s12 / std::sqrt(den), -1.0, 1.0);
          return {2 / std::numbers::pi * std::asin(arg), 4 / std::numbers::pi / std::sqrt(den - 4 * s12 * s12)};
        }
        default: {
          const double al = alpha_;
          const Kind k = kind_;
          return gaussian_expectations([&](double x) { return phi(k, x, al); },
                                       [&](double x) { return dphi(k, x, al); }, s11, s12, s22);
        }
      }
    };
    const index_t per_pair = s.entries();
    parallel_for(s.pairs * per_pair, [&](index_t begin, index_t end) {
      for (index_t e = begin; e < end; ++e) {
        const index_t q = e / per_pair, entry = e % per_pair;
        const auto [sig, dot] = pair_rule(s.v1(q, entry), s.nngp[size_t(e)], s.v2(q, entry));
        s.nngp[size_t(e)] = sig;
        if (s.want_ntk) s.ntk[size_t(e)] *= dot;
      }
    });
  }
  bool kernel_needs_gaussian_input() const override { return kind_ != Kind::identity; }
  bool kernel_output_gaussian(bool in) const override { return kind_ == Kind::identity && in; }

 protected:
  Shape infer_shape(const Shape& in) override { return in; }

 private:
  std::string name_;
  Kind kind_;
  double alpha_;
};

}  // namespace

std::unique_ptr<Layer> make_activation(const LayerSpec& spec) {
  static const std::pair<const char*, Kind> kinds[] = {
      {"Relu", Kind::relu}, {"LeakyRelu", Kind::leaky_relu}, {"Abs", Kind::abs}, {"Erf", Kind::erf},
      {"Gelu", Kind::gelu}, {"Tanh", Kind::tanh}, {"Sigmoid", Kind::sigmoid}, {"Identity", Kind::identity}};
  for (const auto& [name, kind] : kinds) {
    if (spec.name != name) continue;
    if (kind == Kind::leaky_relu) {
      ArgReader args(spec, {"alpha"});
      return std::make_unique<Activation>(name, kind, args.get_double("alpha", 0.01));
    }
    ArgReader args(spec, {});  // rejects any argument
    return std::make_unique<Activation>(name, kind, 0.0);
  }
  throw std::logic_error("make_activation: not an activation: " + spec.name);
}

}  // namespace ntk::detail
