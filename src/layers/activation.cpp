// Elementwise nonlinearities. Each is a pair (phi, phi') applied row by row; the tangent and
// cotangent rules are both multiplication by phi'(x) of the row's example.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <type_traits>
#include <vector>

#include "gaussian.hpp"
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

// ABReLU(a, b) = a·min(x, 0) + b·max(x, 0): Relu (0, 1), LeakyRelu (α, 1), Abs (−1, 1).
template <Kind K>
constexpr bool is_abrelu = K == Kind::relu || K == Kind::leaky_relu || K == Kind::abs;
template <Kind K, class T>
inline T abrelu_a(T alpha) {
  return K == Kind::relu ? T(0) : (K == Kind::abs ? T(-1) : alpha);
}

// The ABReLU rule from norm = √(Σ11Σ22) and the correlation ρ (already in [−1, 1]). ρ within 4 ulp
// of ±1 is taken as ±1: such ρ carry no information beyond rounding, arccos is infinitely steep
// there, and exact ±1 is common (a pair (x, x) at p = p'; SAME-padded corners whose window holds one
// input pixel), where the rounded ρ would put an error of 1e-8 into θ.
template <Kind K, class T>
inline std::pair<T, T> abrelu_entry(T norm, T rho, T s12, T alpha) {
  constexpr T near_one = T(1) - 4 * std::numeric_limits<T>::epsilon();
  rho = std::abs(rho) >= near_one ? std::copysign(T(1), rho) : rho;
  const T a = abrelu_a<K>(alpha), b = T(1);
  const T f = (a - b) * (a - b) / (2 * std::numbers::pi_v<T>);
  const T dot = (a * a + b * b) / 2 - f * acos_vectorizable(rho);
  // √(Σ11Σ22 − Σ12²) as √(Σ11Σ22)·sin θ, sin θ = √((1 − ρ)(1 + ρ)): exactly 0 at ρ = ±1, where
  // the difference form leaves the rounding error of Σ12² (under FMA contraction) as 1e-8·Σ.
  return {f * norm * std::sqrt((1 - rho) * (1 + rho)) + dot * s12, dot};
}

// One entry of the infinite-width rule: (Σ', Σ̇ = E[φ'(u)φ'(v)]) from (Σ11, Σ12, Σ22), branch-free
// in the closed forms so that loops over entries vectorize.
template <Kind K, class T>
inline std::pair<T, T> kernel_entry(T s11, T s12, T s22, T alpha) {
  constexpr T pi = std::numbers::pi_v<T>, zero = T(0), one = T(1);
  constexpr T tiny = std::numeric_limits<T>::min();
  if constexpr (is_abrelu<K>) {
    const T norm = std::sqrt(std::max(s11, zero) * std::max(s22, zero));
    const T rho = norm > 0 ? std::clamp(s12 / norm, -one, one) : zero;
    return abrelu_entry<K>(norm, rho, s12, alpha);
  } else if constexpr (K == Kind::erf) {
    const T den = (1 + 2 * std::max(s11, zero)) * (1 + 2 * std::max(s22, zero));
    const T arg = std::clamp(2 * s12 / std::sqrt(den), -one, one);
    return {2 / pi * asin_vectorizable(arg), 4 / pi / std::sqrt(std::max(den - 4 * s12 * s12, tiny))};
  } else if constexpr (K == Kind::gelu) {
    // φ(x) = x·Φ(x) (Tsuchida et al., arXiv:2002.08517; derivation in docs/kernels.md): with
    // S = (1+Σ11)(1+Σ22), δ = √(S − Σ12²) and α = asin(Σ12/√S),
    //   Σ' = Σ12/4 + (Σ12·α + (Σ12² + Σ11Σ22·δ²)/(S·δ))/2π,
    //   Σ̇ = 1/4 + (α + (Σ12/δ)·(1 + (1 − Σ11Σ22)/S + 1/δ²))/2π  (= ∂Σ'/∂Σ12).
    const T a = std::max(s11, zero), b = std::max(s22, zero), ab = a * b, S = (1 + a) * (1 + b);
    const T d2 = std::max(S - s12 * s12, tiny), d = std::sqrt(d2);
    const T angle = asin_vectorizable(std::clamp(s12 / std::sqrt(S), -one, one));
    const T sig = s12 / 4 + (s12 * angle + (s12 * s12 + ab * d2) / (S * d)) / (2 * pi);
    const T dot = T(0.25) + (angle + s12 / d * (1 + (1 - ab) / S + 1 / d2)) / (2 * pi);
    return {sig, dot};
  } else {
    const double al = double(alpha);
    const auto [e, ed] = gaussian_expectations([&](double x) { return phi(K, x, al); },
                                               [&](double x) { return dphi(K, x, al); }, double(s11), double(s12),
                                               double(s22));
    return {T(e), T(ed)};
  }
}

// The rule over n entries: Σ12 in nngp, Θ12 in ntk (null: NNGP only), variances v1, v2.
template <Kind K, class T>
NTK_SIMD_CLONES void kernel_rows(index_t n, const T* v1, const T* v2, T* nngp, T* ntk, T alpha) {
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

// The ABReLU rule from per-pixel standard deviations and their inverses (the offset path has them
// per pixel, saving a square root and a division per entry; ρ of a pair (x, x) at p = p' is then
// x·(1/√x)², within the 4 ulp that abrelu_entry takes as 1).
template <Kind K, class T>
NTK_SIMD_CLONES void abrelu_rows_sd(index_t n, const T* sd1, const T* sd2, const T* isd1, const T* isd2, T* nngp,
                                    T* ntk, T alpha) {
  constexpr T one = T(1);
  for (index_t i = 0; i < n; ++i) {
    const T s12 = nngp[i];
    const T rho = std::clamp(s12 * isd1[i] * isd2[i], -one, one);
    const auto [sig, dot] = abrelu_entry<K>(sd1[i] * sd2[i], rho, s12, alpha);
    nngp[i] = sig;
    if (ntk) ntk[i] *= dot;
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
  void kernel_offset_rule(OffsetBlockT<double>& b) const override { offset_rule(b); }
  void kernel_offset_rule(OffsetBlockT<float>& b) const override { offset_rule(b); }
  bool kernel_needs_gaussian_input() const override { return kind_ != Kind::identity; }
  bool kernel_output_gaussian(bool in) const override { return kind_ == Kind::identity && in; }

 protected:
  Shape infer_shape(const Shape& in) override { return in; }

 private:
  template <class T>
  void rows(index_t n, const T* v1, const T* v2, T* nngp, T* ntk) const {
    dispatch([&](auto kind) { kernel_rows<kind.value>(n, v1, v2, nngp, ntk, T(alpha_)); });
  }

  template <class T>
  void offset_rule(OffsetBlockT<T>& b) const {
    if (kind_ == Kind::identity || b.empty()) return;
    const index_t L = OffsetBlockT<T>::lanes, run = b.grid_w() * L;
    dispatch([&](auto kind) {
      for (index_t gy = 0; gy < b.grid_h(); ++gy) {
        const index_t p1 = b.pixel1(gy) * L, p2 = b.pixel2(gy) * L;
        T* nngp = b.nngp + gy * run;
        T* ntk = b.ntk ? b.ntk + gy * run : nullptr;
        if constexpr (is_abrelu<kind.value>)
          abrelu_rows_sd<kind.value>(run, b.sd1 + p1, b.sd2 + p2, b.isd1 + p1, b.isd2 + p2, nngp, ntk, T(alpha_));
        else
          kernel_rows<kind.value>(run, b.var1 + p1, b.var2 + p2, nngp, ntk, T(alpha_));
      }
    });
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
