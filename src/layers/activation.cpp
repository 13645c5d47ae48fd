// Elementwise nonlinearities. Each is a pair (phi, phi') applied row by row; the tangent and
// cotangent rules are both multiplication by phi'(x) of the row's example.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <type_traits>
#include <vector>

#include "layers.hpp"
#include "ntk/infinite.hpp"
#include "ntk/error.hpp"
#include "ntk/parallel.hpp"
#include "../simd.hpp"

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

// One entry of the infinite-width rule: (Σ', Σ̇ = E[φ'(u)φ'(v)]) from (Σ11, Σ12, Σ22), branch-free
// in the closed forms so that loops over entries vectorize.
template <Kind K>
inline std::pair<double, double> kernel_entry(double s11, double s12, double s22, double alpha) {
  constexpr double pi = std::numbers::pi;
  if constexpr (K == Kind::relu || K == Kind::leaky_relu || K == Kind::abs) {
    // ABReLU(a, b) = a·min(x, 0) + b·max(x, 0): Relu (0, 1), LeakyRelu (α, 1), Abs (−1, 1).
    const double a = K == Kind::relu ? 0.0 : (K == Kind::abs ? -1.0 : alpha), b = 1.0;
    const double prod = std::max(s11, 0.0) * std::max(s22, 0.0), norm = std::sqrt(prod);
    const double rho = norm > 0 ? std::clamp(s12 / norm, -1.0, 1.0) : 0.0;
    const double f = (a - b) * (a - b) / (2 * pi);
    const double dot = (a * a + b * b) / 2 - f * acos_vectorizable(rho);
    // √(Σ11Σ22 − Σ12²) as √(Σ11Σ22)·sin θ, sin θ = √((1 − ρ)(1 + ρ)): exactly 0 at ρ = ±1, where
    // the difference form leaves the rounding error of Σ12² (under FMA contraction) as 1e-8·Σ.
    return {f * norm * std::sqrt((1 - rho) * (1 + rho)) + dot * s12, dot};
  } else if constexpr (K == Kind::erf) {
    const double den = (1 + 2 * std::max(s11, 0.0)) * (1 + 2 * std::max(s22, 0.0));
    const double arg = std::clamp(2 * s12 / std::sqrt(den), -1.0, 1.0);
    return {2 / pi * asin_vectorizable(arg), 4 / pi / std::sqrt(std::max(den - 4 * s12 * s12, 1e-300))};
  } else if constexpr (K == Kind::gelu) {
    // φ(x) = x·Φ(x) (Tsuchida et al., arXiv:2002.08517; derivation in docs/kernels.md): with
    // S = (1+Σ11)(1+Σ22), δ = √(S − Σ12²) and α = asin(Σ12/√S),
    //   Σ' = Σ12/4 + (Σ12·α + (Σ12² + Σ11Σ22·δ²)/(S·δ))/2π,
    //   Σ̇ = 1/4 + (α + (Σ12/δ)·(1 + (1 − Σ11Σ22)/S + 1/δ²))/2π  (= ∂Σ'/∂Σ12).
    const double a = std::max(s11, 0.0), b = std::max(s22, 0.0), ab = a * b, S = (1 + a) * (1 + b);
    const double d2 = std::max(S - s12 * s12, 1e-300), d = std::sqrt(d2);
    const double angle = asin_vectorizable(std::clamp(s12 / std::sqrt(S), -1.0, 1.0));
    const double sig = s12 / 4 + (s12 * angle + (s12 * s12 + ab * d2) / (S * d)) / (2 * pi);
    const double dot = 0.25 + (angle + s12 / d * (1 + (1 - ab) / S + 1 / d2)) / (2 * pi);
    return {sig, dot};
  } else {
    return gaussian_expectations([&](double x) { return phi(K, x, alpha); }, [&](double x) { return dphi(K, x, alpha); },
                                 s11, s12, s22);
  }
}

// The rule over n entries: Σ12 in nngp, Θ12 in ntk (null: NNGP only), variances v1, v2.
template <Kind K>
NTK_SIMD_CLONES void kernel_rows(index_t n, const double* v1, const double* v2, double* nngp, double* ntk,
                                 double alpha) {
  if (ntk) {
    for (index_t i = 0; i < n; ++i) {
      const auto [sig, dot] = kernel_entry<K>(v1[i], nngp[i], v2[i], alpha);
      nngp[i] = sig;
      ntk[i] *= dot;
    }
  } else {
    for (index_t i = 0; i < n; ++i) nngp[i] = kernel_entry<K>(v1[i], nngp[i], v2[i], alpha).first;
  }
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
  // (u, v) ~ N(0, [[Σ11, Σ12], [Σ12, Σ22]]), entry by entry (kernel_rows).
  void kernel_rule(KernelState& s) const override {
    if (kind_ == Kind::identity) return;
    const index_t P = s.pixels(), E = s.entries();
    if (s.diagonal || P == 1) {
      // Entries and variances share the layout pairs × pixels: one run over any range.
      parallel_for(s.pairs * E, [&](index_t begin, index_t end) {
        rows(end - begin, s.var1.data() + begin, s.var2.data() + begin, s.nngp.data() + begin,
             s.want_ntk ? s.ntk.data() + begin : nullptr);
      });
      return;
    }
    // Full covariance: row p of pair q has Σ11 = var1(q, p) throughout and Σ22 = var2(q, ·).
    parallel_for(s.pairs * P, [&](index_t begin, index_t end) {
      std::vector<double> v1(static_cast<size_t>(P));
      for (index_t task = begin; task < end; ++task) {
        const index_t q = task / P, p = task % P;
        std::fill(v1.begin(), v1.end(), s.var1[size_t(q * P + p)]);
        const index_t at = q * E + p * P;
        rows(P, v1.data(), s.var2.data() + q * P, s.nngp.data() + at, s.want_ntk ? s.ntk.data() + at : nullptr);
      }
    });
  }
  bool kernel_has_offset_rule() const override { return true; }
  void kernel_offset_rule(OffsetBlock& b) const override {
    if (kind_ == Kind::identity || b.empty()) return;
    const index_t L = OffsetBlock::lanes, run = b.grid_w() * L;
    for (index_t gy = 0; gy < b.grid_h(); ++gy)
      rows(run, b.var1 + b.pixel1(gy) * L, b.var2 + b.pixel2(gy) * L, b.nngp + gy * run,
           b.ntk ? b.ntk + gy * run : nullptr);
  }
  bool kernel_needs_gaussian_input() const override { return kind_ != Kind::identity; }
  bool kernel_output_gaussian(bool in) const override { return kind_ == Kind::identity && in; }

 protected:
  Shape infer_shape(const Shape& in) override { return in; }

 private:
  void rows(index_t n, const double* v1, const double* v2, double* nngp, double* ntk) const {
    dispatch([&](auto kind) { kernel_rows<kind.value>(n, v1, v2, nngp, ntk, alpha_); });
  }

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
