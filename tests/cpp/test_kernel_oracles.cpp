// Exact oracles for every layer's infinite-width kernel rule (REFERENCE.md section 4), written in
// this file and sharing no code with the library: a Gauss-Hermite rule built here (Jacobi-matrix
// eigenvalues by Sturm bisection, Christoffel weights; not ntk::detail::gauss_hermite), closed forms
// derived here from first principles (ABReLU family as a·x + b·|x|, Dense in both
// parameterizations), and a direct pixel-sum transcription of the spatial rules (Conv with
// SAME/VALID/integer padding and strides, AvgPool, GlobalAvgPool, Flatten), LayerNorm and Residual.
// The point is that a one-term change in any rule makes a test here fail; Monte Carlo at 5% and
// the optional neural-tangents tier do not guarantee that.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <memory>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numbers>
#include <optional>
#include <string>
#include <vector>

#include "harness.hpp"
#include "layers/gaussian.hpp"
#include "ntk/infinite.hpp"

namespace ntk {
namespace {

constexpr double kPi = std::numbers::pi;

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Gauss-Hermite rule for the weight e^{-t²}, built independently of the library's (which runs
// Newton on the recurrence): the nodes are the eigenvalues of the symmetric tridiagonal Jacobi
// matrix (zero diagonal, off-diagonal √(k/2)), found by bisection on Sturm counts; the weights are
// Christoffel numbers 1/Σ_{k<n} p_k(t)² with p_k the orthonormal Hermite polynomials.
struct Rule {
  std::vector<double> t, w;
};

Rule hermite_rule(int n) {
  // Number of eigenvalues below x (Sturm sequence of the LDLᵀ pivots of J − x·I).
  auto below = [n](double x) {
    int count = 0;
    double q = -x;
    if (q < 0) ++count;
    for (int k = 1; k < n; ++k) {
      if (q == 0) q = 1e-300;
      q = -x - (0.5 * k) / q;
      if (q < 0) ++count;
    }
    return count;
  };
  const double bound = std::sqrt(2.0 * n) + 1.0;  // Gershgorin: every eigenvalue lies within
  Rule r;
  for (int i = 0; i < n; ++i) {
    double lo = -bound, hi = bound;
    for (int it = 0; it < 200; ++it) {
      const double mid = 0.5 * (lo + hi);
      if (mid == lo || mid == hi) break;
      (below(mid) > i ? hi : lo) = mid;
    }
    const double x = 0.5 * (lo + hi);
    double p_prev = 0, p = std::pow(kPi, -0.25), sum = p * p;
    for (int k = 0; k + 1 < n; ++k) {
      const double next = (x * p - std::sqrt(0.5 * k) * p_prev) / std::sqrt(0.5 * (k + 1));
      p_prev = p, p = next;
      sum += p * p;
    }
    r.t.push_back(x);
    r.w.push_back(1.0 / sum);
  }
  return r;
}

const Rule& rule(int n) {
  static std::vector<std::unique_ptr<Rule>> cache(201);
  if (!cache[size_t(n)]) cache[size_t(n)] = std::make_unique<Rule>(hermite_rule(n));
  return *cache[size_t(n)];
}

TEST(KernelOracle, OwnHermiteRuleIntegratesMoments) {
  // Σ w t^{2m} = Γ(m + 1/2) exactly for 2m < 2n: checks the rule the oracles below rely on.
  for (int n : {25, 64, 100}) {
    const Rule& r = rule(n);
    for (int m = 0; m <= 12; ++m) {
      double s = 0, odd = 0;
      for (size_t i = 0; i < r.t.size(); ++i) s += r.w[i] * std::pow(r.t[i], 2 * m), odd += r.w[i] * std::pow(r.t[i], 2 * m + 1);
      const double want = std::tgamma(m + 0.5);
      EXPECT_NEAR(s, want, 1e-13 * want) << "n=" << n << " m=" << m;
      EXPECT_NEAR(odd, 0.0, 1e-12 * want) << "n=" << n << " m=" << m;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Activations and their Gaussian expectations E[φ(u)φ(v)], E[φ'(u)φ'(v)] for
// (u, v) ~ N(0, [[s11, s12], [s12, s22]]).
enum class Act { relu, leaky_relu, abs, erf, gelu, tanh, sigmoid, identity };

double phi(Act a, double alpha, double x) {
  switch (a) {
    case Act::relu: return std::max(x, 0.0);
    case Act::leaky_relu: return x >= 0 ? x : alpha * x;
    case Act::abs: return std::abs(x);
    case Act::erf: return std::erf(x);
    case Act::gelu: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));  // x·Φ(x)
    case Act::tanh: return std::tanh(x);
    case Act::sigmoid: return 1 / (1 + std::exp(-x));
    case Act::identity: return x;
  }
  return 0;
}

double dphi(Act a, double alpha, double x) {
  switch (a) {
    case Act::relu: return x > 0 ? 1.0 : 0.0;
    case Act::leaky_relu: return x > 0 ? 1.0 : alpha;
    case Act::abs: return x > 0 ? 1.0 : -1.0;
    case Act::erf: return 2 / std::sqrt(kPi) * std::exp(-x * x);
    case Act::gelu: return 0.5 * (1 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * kPi);
    case Act::tanh: return 1 - std::tanh(x) * std::tanh(x);
    case Act::sigmoid: {
      const double s = 1 / (1 + std::exp(-x));
      return s * (1 - s);
    }
    case Act::identity: return 1.0;
  }
  return 0;
}

bool is_abrelu(Act a) { return a == Act::relu || a == Act::leaky_relu || a == Act::abs; }

// How smooth activations are integrated: exactly (a high-degree rule over a Cholesky factor), or
// as the library documents it does for activations without a closed form (Tanh, Sigmoid): degree
// 25 in the form symmetric in u and v, transcribed here to check that rule to rounding.
enum class Quadrature { exact, symmetric25 };

std::pair<double, double> expectations(Act a, double alpha, double s11, double s12, double s22, Quadrature quad,
                                       int degree) {
  s11 = std::max(s11, 0.0), s22 = std::max(s22, 0.0);
  if (is_abrelu(a)) {
    // φ(x) = lo·min(x, 0) + hi·max(x, 0) = ((lo + hi)/2)·x + ((hi − lo)/2)·|x|. E[u|v|] = 0 (odd), and
    // for unit variances with correlation ρ: E[|u||v|] = (2/π)(√(1 − ρ²) + ρ·asin ρ),
    // E[sgn u · sgn v] = (2/π)·asin ρ.
    const double lo = a == Act::relu ? 0.0 : (a == Act::abs ? -1.0 : alpha), hi = 1.0;
    const double even = (lo + hi) / 2, odd = (hi - lo) / 2;
    const double norm = std::sqrt(s11 * s22);
    const double rho = norm > 0 ? std::clamp(s12 / norm, -1.0, 1.0) : 0.0;
    const double abs_abs = 2 / kPi * norm * (std::sqrt(1 - rho * rho) + rho * std::asin(rho));
    return {even * even * s12 + odd * odd * abs_abs, even * even + odd * odd * 2 / kPi * std::asin(rho)};
  }
  if (a == Act::identity) return {s12, 1.0};
  double e = 0, ed = 0;
  if (quad == Quadrature::exact) {
    // u = √(2 s11)·t1, v = √2·(c·t1 + s·t2): Cov(u, v) = s12, Var v = s22.
    const Rule& r = rule(degree);
    const double c = s11 > 0 ? s12 / std::sqrt(s11) : 0.0, s = std::sqrt(std::max(s22 - c * c, 0.0));
    for (size_t i = 0; i < r.t.size(); ++i) {
      const double u = std::sqrt(2 * s11) * r.t[i], fu = phi(a, alpha, u), du = dphi(a, alpha, u);
      double inner = 0, inner_d = 0;
      for (size_t j = 0; j < r.t.size(); ++j) {
        const double v = std::sqrt(2.0) * (c * r.t[i] + s * r.t[j]);
        inner += r.w[j] * phi(a, alpha, v);
        inner_d += r.w[j] * dphi(a, alpha, v);
      }
      e += r.w[i] * fu * inner;
      ed += r.w[i] * du * inner_d;
    }
  } else {
    // u = √(2 s11)(c1 t1 + c2 t2), v = √(2 s22)(c1 t1 − c2 t2), c1² − c2² = ρ, c1² + c2² = 1.
    const Rule& r = rule(25);
    const double prod = s11 * s22, rho = prod > 0 ? std::clamp(s12 / std::sqrt(prod), -1.0, 1.0) : 0.0;
    const double c1 = std::sqrt((1 + rho) / 2), c2 = std::sqrt((1 - rho) / 2);
    for (size_t i = 0; i < r.t.size(); ++i)
      for (size_t j = 0; j < r.t.size(); ++j) {
        const double u = std::sqrt(2 * s11) * (c1 * r.t[i] + c2 * r.t[j]);
        const double v = std::sqrt(2 * s22) * (c1 * r.t[i] - c2 * r.t[j]);
        e += r.w[i] * r.w[j] * phi(a, alpha, u) * phi(a, alpha, v);
        ed += r.w[i] * r.w[j] * dphi(a, alpha, u) * dphi(a, alpha, v);
      }
  }
  return {e / kPi, ed / kPi};
}

TEST(KernelOracle, AbreluClosedFormsSelfCheck) {
  // A check of this file's ABReLU closed forms, not of the library: at ρ = 0 the expectations
  // factor, with E[φ(u)] = ((hi − lo)/2)·E|u| = (hi − lo)·√(s/2π) and E[φ'(u)] = (lo + hi)/2; at
  // ρ = ±1 they are second moments (v = ±u); in between they match degree-150 quadrature to its
  // accuracy on a kink (~1e-3; the library is held to 1e-12 against the closed forms below).
  for (Act a : {Act::relu, Act::leaky_relu, Act::abs}) {
    const double alpha = 0.2, lo = a == Act::relu ? 0.0 : (a == Act::abs ? -1.0 : alpha), hi = 1.0;
    const double s11 = 0.7, s22 = 1.9;
    const double mean1 = (hi - lo) * std::sqrt(s11 / (2 * kPi)), mean2 = (hi - lo) * std::sqrt(s22 / (2 * kPi));
    auto [e0, ed0] = expectations(a, alpha, s11, 0.0, s22, Quadrature::exact, 100);
    EXPECT_NEAR(e0, mean1 * mean2, 1e-15);
    EXPECT_NEAR(ed0, (lo + hi) * (lo + hi) / 4, 1e-15);
    const double sq = (lo * lo + hi * hi) / 2;  // E[φ(u)²] = Var u·(lo² + hi²)/2
    EXPECT_NEAR(expectations(a, alpha, s11, s11, s11, Quadrature::exact, 100).first, s11 * sq, 1e-15);
    EXPECT_NEAR(expectations(a, alpha, s11, s11, s11, Quadrature::exact, 100).second, sq, 1e-15);
    EXPECT_NEAR(expectations(a, alpha, s11, -s11, s11, Quadrature::exact, 100).first, -s11 * lo * hi, 1e-15);
    EXPECT_NEAR(expectations(a, alpha, s11, -s11, s11, Quadrature::exact, 100).second, lo * hi, 1e-15);
    for (const auto& c : std::vector<std::array<double, 3>>{{1.0, 0.3, 0.8}, {0.5, -0.4, 2.0}, {1.2, 1.1, 1.3}}) {
      const double e = expectations(a, alpha, c[0], c[1], c[2], Quadrature::exact, 100).first;
      double qe = 0;
      const Rule& r = rule(150);
      const double cc = c[1] / std::sqrt(c[0]), s = std::sqrt(c[2] - cc * cc);
      for (size_t i = 0; i < r.t.size(); ++i)
        for (size_t j = 0; j < r.t.size(); ++j)
          qe += r.w[i] * r.w[j] * phi(a, alpha, std::sqrt(2 * c[0]) * r.t[i]) *
                phi(a, alpha, std::sqrt(2.0) * (cc * r.t[i] + s * r.t[j]));
      EXPECT_NEAR(e, qe / kPi, 3e-3 * std::sqrt(c[0] * c[2]));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The oracle network: the kernel state of one pair (x, x') over its P×P pixel pairs, pushed
// through steps written here. The spec string handed to the library is built alongside, so the
// two describe the same network by construction.
struct PairState {
  index_t h = 1, w = 1, c = 1;  // spatial extent and channels of the activation
  std::vector<double> sig, ntk;  // (P, P): (p of x, p' of x')
  index_t pixels() const { return h * w; }
};

// Per-example variances Σ(x, x)(p, p) at each variance-reading step, in order of the steps.
using VarMaps = std::vector<std::vector<double>>;

struct Ctx {
  VarMaps* record = nullptr;  // self pairs (x, x): record the variances
  const VarMaps* va = nullptr;
  const VarMaps* vb = nullptr;
  size_t next = 0;
  Quadrature quad = Quadrature::exact;
  int degree = 160;
};

using Step = std::function<void(PairState&, Ctx&)>;

std::vector<double> diagonal_of(const PairState& s) {
  const index_t P = s.pixels();
  std::vector<double> d(static_cast<size_t>(P));
  for (index_t p = 0; p < P; ++p) d[size_t(p)] = s.sig[size_t(p * P + p)];
  return d;
}

// The variances (of x at p, of x' at p') a Gaussian-input step reads.
std::pair<std::vector<double>, std::vector<double>> variances(const PairState& s, Ctx& ctx) {
  const size_t id = ctx.next++;
  if (ctx.record) {
    if (ctx.record->size() <= id) ctx.record->resize(id + 1);
    (*ctx.record)[id] = diagonal_of(s);
    return {(*ctx.record)[id], (*ctx.record)[id]};
  }
  return {(*ctx.va)[id], (*ctx.vb)[id]};
}

// Padding as the spec writes it: VALID, SAME, or PyTorch's integer padding (h zero rows above and
// below, w zero columns left and right).
struct Pad {
  enum Kind { valid, same, zeros } kind = valid;
  index_t h = 0, w = 0;
  std::string text() const {
    if (kind != zeros) return kind == same ? "SAME" : "VALID";
    return std::to_string(h) + "x" + std::to_string(w);
  }
};
Pad same_or_valid(bool same) { return {same ? Pad::same : Pad::valid}; }
Pad zeros(index_t h, index_t w) { return {Pad::zeros, h, w}; }

// Output size and leading pad of a window along one axis (TensorFlow's SAME: ceil(in / stride)
// outputs, the odd padding pixel at the end; VALID: no padding; PyTorch's integer padding p:
// floor((in + 2p − k) / stride) + 1 outputs, p leading zeros).
std::pair<index_t, index_t> window_axis(index_t in, index_t k, index_t stride, Pad::Kind kind, index_t p) {
  if (kind == Pad::valid) return {(in - k) / stride + 1, 0};
  if (kind == Pad::zeros) return {(in + 2 * p - k) / stride + 1, p};
  const index_t out = (in + stride - 1) / stride;
  return {out, std::max<index_t>((out - 1) * stride + k - in, 0) / 2};
}

struct AffineParams {
  double W_std = 1.0;
  std::optional<double> b_std;
  bool standard = false;
};

// The affine rule from first principles, given m(Σ), m(Θ) (the input covariances the unit's
// pre-activation sums over, averaged) and fan_in:
//   z = (W_std/√fan_in)·Σ W a + b_std·b (NTK) or Σ W a + b with W ~ N(0, W_std²/fan_in) (standard):
//   Σ' = W_std²·m(Σ) + b_std²;  NTK: Θ' = Σ' + W_std²·m(Θ)  (∂z/∂W, ∂z/∂b, then back-propagated Θ);
//   standard: Θ' = fan_in·m(Σ) + [bias]·1 + W_std²·m(Θ)     (∂z/∂W = a, ∂z/∂b = 1, unscaled).
void affine(const AffineParams& o, double fan_in, double& sig, double& ntk) {
  const double b2 = o.b_std ? *o.b_std * *o.b_std : 0.0, w2 = o.W_std * o.W_std;
  const double m_sig = sig, m_ntk = ntk;
  sig = w2 * m_sig + b2;
  ntk = o.standard ? fan_in * m_sig + (o.b_std ? 1.0 : 0.0) + w2 * m_ntk : sig + w2 * m_ntk;
}

struct OracleNet {
  std::string spec;
  std::vector<Step> steps;

  static std::string affine_args(const AffineParams& o) {
    std::string s = ", W_std=" + num(o.W_std);
    if (o.b_std) s += ", b_std=" + num(*o.b_std);
    return s + ", parameterization=" + (o.standard ? "standard" : "ntk");
  }
  void add(const std::string& layer, Step step) {
    spec += (spec.empty() ? "" : ", ") + layer;
    steps.push_back(std::move(step));
  }

  // Dense acts on each pixel's channels: pointwise over pixel pairs, fan_in = channels.
  OracleNet& dense(index_t out, AffineParams o) {
    add("Dense(" + std::to_string(out) + affine_args(o) + ")", [=](PairState& s, Ctx&) {
      const double fan_in = double(s.c);
      for (size_t e = 0; e < s.sig.size(); ++e) affine(o, fan_in, s.sig[e], s.ntk[e]);
      s.c = out;
    });
    return *this;
  }

  // Conv: z(o) = Σ_δ Σ_c W[δ, c]·a(s·o + δ − pad, c) (zero outside): the same W[δ] multiplies both
  // examples, so m(Σ)(o, o') = mean over the kh·kw taps δ of Σ(s·o + δ − pad, s·o' + δ − pad),
  // zero when either pixel is padding; fan_in = kh·kw·C.
  OracleNet& conv(index_t out, index_t kh, index_t kw, index_t stride, bool same, AffineParams o) {
    return conv(out, kh, kw, stride, same_or_valid(same), o);
  }
  OracleNet& conv(index_t out, index_t kh, index_t kw, index_t stride, Pad pad, AffineParams o) {
    add("Conv(" + std::to_string(out) + ", " + std::to_string(kh) + "x" + std::to_string(kw) +
            ", stride=" + std::to_string(stride) + ", padding=" + pad.text() + affine_args(o) + ")",
        [=](PairState& s, Ctx&) {
          const auto [oh, pt] = window_axis(s.h, kh, stride, pad.kind, pad.h);
          const auto [ow, pl] = window_axis(s.w, kw, stride, pad.kind, pad.w);
          const index_t P = s.pixels(), Po = oh * ow;
          std::vector<double> sig(size_t(Po * Po)), ntk(size_t(Po * Po));
          for (index_t a = 0; a < Po; ++a)
            for (index_t b = 0; b < Po; ++b) {
              double ms = 0, mt = 0;
              for (index_t dy = 0; dy < kh; ++dy)
                for (index_t dx = 0; dx < kw; ++dx) {
                  const index_t y1 = (a / ow) * stride + dy - pt, x1 = (a % ow) * stride + dx - pl;
                  const index_t y2 = (b / ow) * stride + dy - pt, x2 = (b % ow) * stride + dx - pl;
                  if (y1 < 0 || y1 >= s.h || x1 < 0 || x1 >= s.w || y2 < 0 || y2 >= s.h || x2 < 0 || x2 >= s.w) continue;
                  const index_t at = (y1 * s.w + x1) * P + (y2 * s.w + x2);
                  ms += s.sig[size_t(at)], mt += s.ntk[size_t(at)];
                }
              double sg = ms / double(kh * kw), nt = mt / double(kh * kw);
              affine(o, double(kh * kw * s.c), sg, nt);
              sig[size_t(a * Po + b)] = sg, ntk[size_t(a * Po + b)] = nt;
            }
          s.sig.swap(sig), s.ntk.swap(ntk);
          s.h = oh, s.w = ow, s.c = out;
        });
    return *this;
  }

  // Σ' = E[φ(u)φ(v)], Θ' = Θ·E[φ'(u)φ'(v)] per pixel pair, (u, v) with variances Σ(x,x)(p,p),
  // Σ(x',x')(p',p') and covariance Σ(p, p').
  OracleNet& act(Act a, double alpha = 0.0) {
    static const char* names[] = {"Relu", "LeakyRelu", "Abs", "Erf", "Gelu", "Tanh", "Sigmoid", "Identity"};
    std::string name = names[int(a)];
    if (a == Act::leaky_relu) name += "(" + num(alpha) + ")";
    add(name, [=](PairState& s, Ctx& ctx) {
      if (a == Act::identity) return;
      const auto [v1, v2] = variances(s, ctx);
      const index_t P = s.pixels();
      for (index_t p = 0; p < P; ++p)
        for (index_t q = 0; q < P; ++q) {
          const size_t at = size_t(p * P + q);
          const auto [e, ed] = expectations(a, alpha, v1[size_t(p)], s.sig[at], v2[size_t(q)], ctx.quad, ctx.degree);
          s.sig[at] = e;
          s.ntk[at] *= ed;
        }
    });
    return *this;
  }

  // LayerNorm over channels of a zero-mean Gaussian process: the channel mean vanishes and the
  // channel variance is Σ(x, x)(p, p), so it divides by √(Σ(x,x)(p,p)·Σ(x',x')(p',p')).
  OracleNet& layer_norm() {
    add("LayerNorm", [](PairState& s, Ctx& ctx) {
      const auto [v1, v2] = variances(s, ctx);
      const index_t P = s.pixels();
      for (index_t p = 0; p < P; ++p)
        for (index_t q = 0; q < P; ++q) {
          const double d = std::sqrt(v1[size_t(p)] * v2[size_t(q)]);
          s.sig[size_t(p * P + q)] /= d;
          s.ntk[size_t(p * P + q)] /= d;
        }
    });
    return *this;
  }

  // AvgPool (zero padding counted, as neural-tangents): the two examples' windows are averaged
  // independently, so m(o, o') = mean over δ, δ' of Σ(s·o + δ − pad, s·o' + δ' − pad).
  OracleNet& avg_pool(index_t k, index_t stride, bool same) { return avg_pool(k, stride, same_or_valid(same)); }
  OracleNet& avg_pool(index_t k, index_t stride, Pad pad) {
    add("AvgPool(" + std::to_string(k) + ", stride=" + std::to_string(stride) + ", padding=" + pad.text() + ")",
        [=](PairState& s, Ctx&) {
          const auto [oh, pt] = window_axis(s.h, k, stride, pad.kind, pad.h);
          const auto [ow, pl] = window_axis(s.w, k, stride, pad.kind, pad.w);
          const index_t P = s.pixels(), Po = oh * ow;
          auto in_pixel = [&](index_t o, index_t dy, index_t dx) -> index_t {
            const index_t y = (o / ow) * stride + dy - pt, x = (o % ow) * stride + dx - pl;
            return y < 0 || y >= s.h || x < 0 || x >= s.w ? -1 : y * s.w + x;
          };
          std::vector<double> sig(size_t(Po * Po), 0.0), ntk(size_t(Po * Po), 0.0);
          const double inv = 1.0 / double(k * k * k * k);
          for (index_t a = 0; a < Po; ++a)
            for (index_t b = 0; b < Po; ++b)
              for (index_t d1 = 0; d1 < k * k; ++d1)
                for (index_t d2 = 0; d2 < k * k; ++d2) {
                  const index_t p = in_pixel(a, d1 / k, d1 % k), q = in_pixel(b, d2 / k, d2 % k);
                  if (p < 0 || q < 0) continue;
                  sig[size_t(a * Po + b)] += inv * s.sig[size_t(p * P + q)];
                  ntk[size_t(a * Po + b)] += inv * s.ntk[size_t(p * P + q)];
                }
          s.sig.swap(sig), s.ntk.swap(ntk);
          s.h = oh, s.w = ow;
        });
    return *this;
  }

  // GlobalAvgPool: the mean over all pixel pairs (p, p').
  OracleNet& global_avg_pool() {
    add("GlobalAvgPool", [](PairState& s, Ctx&) {
      double sg = 0, nt = 0;
      for (size_t e = 0; e < s.sig.size(); ++e) sg += s.sig[e], nt += s.ntk[e];
      s.sig = {sg / double(s.sig.size())}, s.ntk = {nt / double(s.ntk.size())};
      s.h = s.w = 1;
    });
    return *this;
  }

  // Flatten: the flattened features' mean inner product over P·C is the mean over p of Σ(p, p).
  OracleNet& flatten() {
    add("Flatten", [](PairState& s, Ctx&) {
      const index_t P = s.pixels();
      double sg = 0, nt = 0;
      for (index_t p = 0; p < P; ++p) sg += s.sig[size_t(p * P + p)], nt += s.ntk[size_t(p * P + p)];
      s.sig = {sg / double(P)}, s.ntk = {nt / double(P)};
      s.c = P * s.c, s.h = s.w = 1;
    });
    return *this;
  }

  // x + block(x) with block ending in a zero-mean random layer: the two branches' kernels add.
  OracleNet& residual(const OracleNet& block) {
    const std::vector<Step> inner = block.steps;
    add("Residual(" + block.spec + ")", [inner](PairState& s, Ctx& ctx) {
      PairState b = s;
      for (const Step& st : inner) st(b, ctx);
      for (size_t e = 0; e < s.sig.size(); ++e) s.sig[e] += b.sig[e], s.ntk[e] += b.ntk[e];
    });
    return *this;
  }

  // The input state: Σ⁰(p, p') = x(p)·x'(p')/C, Θ⁰ = 0.
  static PairState input(const double* x, const double* y, const Shape& in) {
    PairState s;
    if (in.size() == 3) s.h = in[0], s.w = in[1];
    s.c = in.back();
    const index_t P = s.pixels(), C = s.c;
    s.sig.assign(size_t(P * P), 0.0);
    s.ntk.assign(size_t(P * P), 0.0);
    for (index_t p = 0; p < P; ++p)
      for (index_t q = 0; q < P; ++q) {
        double t = 0;
        for (index_t c = 0; c < C; ++c) t += x[p * C + c] * y[q * C + c];
        s.sig[size_t(p * P + q)] = t / double(C);
      }
    return s;
  }

  // (NNGP, NTK) kernels (N1, N2) of examples x1 (N1 × in) and x2 (N2 × in).
  std::pair<std::vector<double>, std::vector<double>> kernels(const std::vector<double>& x1, const std::vector<double>& x2,
                                                              const Shape& in, Quadrature quad = Quadrature::exact,
                                                              int degree = 160) const {
    const index_t per = numel(in), n1 = index_t(x1.size()) / per, n2 = index_t(x2.size()) / per;
    auto self_maps = [&](const std::vector<double>& x, index_t n) {
      std::vector<VarMaps> maps(static_cast<size_t>(n));
      for (index_t i = 0; i < n; ++i) {
        Ctx ctx;
        ctx.record = &maps[size_t(i)], ctx.quad = quad, ctx.degree = degree;
        PairState s = input(x.data() + i * per, x.data() + i * per, in);
        for (const Step& st : steps) st(s, ctx);
      }
      return maps;
    };
    const std::vector<VarMaps> m1 = self_maps(x1, n1), m2 = self_maps(x2, n2);
    std::vector<double> nngp(size_t(n1 * n2)), ntk(size_t(n1 * n2));
    for (index_t i = 0; i < n1; ++i)
      for (index_t j = 0; j < n2; ++j) {
        Ctx ctx;
        ctx.va = &m1[size_t(i)], ctx.vb = &m2[size_t(j)], ctx.quad = quad, ctx.degree = degree;
        PairState s = input(x1.data() + i * per, x2.data() + j * per, in);
        for (const Step& st : steps) st(s, ctx);
        nngp[size_t(i * n2 + j)] = s.sig.at(0);
        ntk[size_t(i * n2 + j)] = s.ntk.at(0);
      }
    return {nngp, ntk};
  }
};

AffineParams aff(double W, std::optional<double> b = std::nullopt, bool standard = false) { return {W, b, standard}; }

KernelOptions get(KernelOptions::Get g, bool offset_path = true) {
  KernelOptions o;
  o.get = g;
  o.offset_path = offset_path;
  return o;
}

// max |got − want| / max |want| over the kernel, and the worst entry.
struct Compare {
  double err = 0, scale = 0;
  index_t at = -1;
};
template <class T>
Compare compare(const Array<T>& got, const std::vector<double>& want) {
  Compare c;
  for (double v : want) c.scale = std::max(c.scale, std::abs(v));
  for (index_t e = 0; e < got.size(); ++e) {
    const double d = std::abs(double(got[e]) - want[size_t(e)]);
    if (d > c.err) c.err = d, c.at = e;
  }
  c.err /= c.scale > 0 ? c.scale : 1.0;
  return c;
}

// Checks the library's NNGP and NTK (float64; both paths for images) against the oracle, to a
// tolerance relative to the kernel's largest entry. Returns the worst error seen.
double check_net(const OracleNet& net, const Shape& in, const std::vector<double>& x1, const std::vector<double>& x2,
                 double tol, Quadrature quad = Quadrature::exact, int degree = 160) {
  SCOPED_TRACE(net.spec);
  Network lib(net.spec, in);
  const index_t per = numel(in);
  Shape s1{index_t(x1.size()) / per}, s2{index_t(x2.size()) / per};
  s1.insert(s1.end(), in.begin(), in.end());
  s2.insert(s2.end(), in.begin(), in.end());
  Array<double> a1(s1, x1), a2(s2, x2);
  const auto [nngp, ntk] = net.kernels(x1, x2, in, quad, degree);
  double worst = 0;
  for (bool offset : {true, false}) {
    if (!offset && in.size() != 3) continue;  // vectors have one path
    for (auto g : {KernelOptions::nngp, KernelOptions::ntk}) {
      const Array<double> K = infinite_kernel(lib, a1, &a2, get(g, offset));
      const Compare c = compare(K, g == KernelOptions::ntk ? ntk : nngp);
      EXPECT_GT(c.scale, 0.0);
      EXPECT_LE(c.err, tol) << (g == KernelOptions::ntk ? "NTK" : "NNGP") << (offset ? "" : " layer by layer")
                            << ", worst entry " << c.at << ": " << K[c.at] << " vs "
                            << (g == KernelOptions::ntk ? ntk : nngp)[size_t(c.at)];
      worst = std::max(worst, c.err);
    }
  }
  return worst;
}

// Hand-picked vectors (d = 3): equal, opposite, parallel with another norm, orthogonal, generic,
// and zero, so that correlations ±1 (exact in both computations), 0 and in between all occur.
const std::vector<double> kX1 = {1.0, 0.0, 0.5, -1.0, 0.0, -0.5, 0.0, 2.0, 0.0, 0.3, -1.2, 0.7, 0.0, 0.0, 0.0};
const std::vector<double> kX2 = {1.0, 0.0, 0.5, 2.0, 0.0, 1.0, 0.5, 0.5, -1.0, -0.3, 1.2, -0.7, 1.5, -0.4, 0.9};

struct ActCase {
  Act act;
  double alpha;
  const char* name;
};
const ActCase kActs[] = {{Act::relu, 0, "Relu"},       {Act::leaky_relu, 0.2, "LeakyRelu(0.2)"},
                         {Act::leaky_relu, -0.5, "LeakyRelu(-0.5)"}, {Act::abs, 0, "Abs"},
                         {Act::erf, 0, "Erf"},         {Act::gelu, 0, "Gelu"},
                         {Act::tanh, 0, "Tanh"},       {Act::sigmoid, 0, "Sigmoid"},
                         {Act::identity, 0, "Identity"}};

// The small networks every activation is checked in: with and without biases, both
// parameterizations, one and two nonlinear layers (the second reads variances produced by the
// first rule).
std::vector<OracleNet> vector_nets(Act a, double alpha) {
  std::vector<OracleNet> nets;
  for (bool standard : {false, true}) {
    OracleNet n1;
    n1.dense(1, aff(1.5, 0.3, standard)).act(a, alpha).dense(1, aff(0.9, 0.2, standard));
    nets.push_back(n1);
    OracleNet n2;
    n2.dense(1, aff(1.2, std::nullopt, standard)).act(a, alpha).dense(1, aff(1.0, std::nullopt, standard));
    nets.push_back(n2);
    OracleNet n3;
    n3.dense(2, aff(1.4, 0.1, standard)).act(a, alpha).dense(3, aff(1.1, 0.0, standard)).act(a, alpha).dense(1, aff(1.0, std::nullopt, standard));
    nets.push_back(n3);
  }
  return nets;
}

TEST(KernelOracle, ClosedFormActivationsExact) {
  // ReLU, LeakyReLU, Abs (closed forms written above), Erf and Gelu (closed forms in the library,
  // degree-160 quadrature here: both are entire, and at the variances here (up to ~4) degree 160
  // is exact to ~1e-13, degree 100 only to ~1e-9 for Erf), Identity.
  double worst = 0;
  for (const ActCase& c : kActs) {
    if (c.act == Act::tanh || c.act == Act::sigmoid) continue;
    const double tol = is_abrelu(c.act) || c.act == Act::identity ? 1e-12 : 1e-10;
    for (const OracleNet& n : vector_nets(c.act, c.alpha)) worst = std::max(worst, check_net(n, {3}, kX1, kX2, tol));
  }
  std::printf("[ info ] closed-form activations: worst error %.3g of the largest entry\n", worst);
}

TEST(KernelOracle, QuadratureActivationsTanhSigmoid) {
  // The library integrates Tanh and Sigmoid by degree-25 bivariate Gauss-Hermite quadrature in a
  // form symmetric in u and v (include/ntk/infinite.hpp). Two checks: that rule transcribed here
  // with this file's own nodes, to rounding (a one-term change in the rule shows); and, at moderate
  // variances (inputs halved, pre-activation variances below ~1), the exact expectation (degree 160
  // here) to REFERENCE.md's acceptance bound for degree-25 quadrature, 2e-3. At the larger
  // variances of kX1/kX2 (up to ~4) degree 25 is off by about 1%; printed, not asserted.
  std::vector<double> half1 = kX1, half2 = kX2;
  for (double& v : half1) v *= 0.5;
  for (double& v : half2) v *= 0.5;
  double worst_moderate = 0, worst_large = 0;
  for (Act a : {Act::tanh, Act::sigmoid})
    for (const OracleNet& n : vector_nets(a, 0)) {
      check_net(n, {3}, kX1, kX2, 1e-12, Quadrature::symmetric25);
      worst_moderate = std::max(worst_moderate, check_net(n, {3}, half1, half2, 2e-3, Quadrature::exact));
      worst_large = std::max(worst_large, check_net(n, {3}, kX1, kX2, 1.0, Quadrature::exact));
    }
  std::printf("[ info ] Tanh/Sigmoid, the library's degree-25 quadrature against the exact kernels: %.3g of the largest "
              "entry at moderate variances, %.3g at variances up to ~4\n", worst_moderate, worst_large);
}

TEST(KernelOracle, DenseClosedFormsBothParameterizations) {
  // One Dense layer f = x·W + b, from ∂f/∂W = x, ∂f/∂b = 1 (REFERENCE.md section 2):
  //   NTK param:      NNGP = NTK = W_std²·x·y/d + b_std²;
  //   standard param: NNGP = W_std²·x·y/d + b_std², NTK = x·y + 1 (bias, any b_std incl. 0).
  // No b_std: no bias term anywhere. b_std = 0: a bias exists (adds 1 to the standard NTK only).
  const index_t d = 3, n1 = 5, n2 = 5;
  Array<double> x1(Shape{n1, d}, kX1), x2(Shape{n2, d}, kX2);
  auto input_dot = [&](index_t i, index_t j) {
    double xy = 0;
    for (index_t c = 0; c < d; ++c) xy += kX1[size_t(i * d + c)] * kX2[size_t(j * d + c)];
    return xy;
  };
  for (bool standard : {false, true})
    for (std::optional<double> b : {std::optional<double>(), std::optional<double>(0.0), std::optional<double>(0.7)}) {
      const double W = 1.7;
      std::string spec = "Dense(4, W_std=" + num(W) + (b ? ", b_std=" + num(*b) : "") +
                         ", parameterization=" + (standard ? "standard" : "ntk") + ")";
      Network net(spec, {d});
      const Array<double> nngp = infinite_kernel(net, x1, &x2, get(KernelOptions::nngp));
      const Array<double> ntk = infinite_kernel(net, x1, &x2, get(KernelOptions::ntk));
      for (index_t i = 0; i < n1; ++i)
        for (index_t j = 0; j < n2; ++j) {
          const double xy = input_dot(i, j);
          const double b2 = b ? *b * *b : 0.0;
          const double want_nngp = W * W * xy / double(d) + b2;
          const double want_ntk = standard ? xy + (b ? 1.0 : 0.0) : want_nngp;
          EXPECT_NEAR(nngp[i * n2 + j], want_nngp, 1e-13) << spec << " " << i << "," << j;
          EXPECT_NEAR(ntk[i * n2 + j], want_ntk, 1e-13) << spec << " " << i << "," << j;
        }
    }
  // Two linear layers, widths 5 then 2, expectation over the random weights:
  //   NTK param:      Θ = Σ2 + W2²·Σ1 with Σ1 = W1²·x·y/d + b1², Σ2 = W2²·Σ1 + b2²;
  //   standard param: Θ = 5·Σ1 (E[h·h'], 5 units) + 1 + W2²·(x·y + 1) (Σ_k E[W2_k²] = W2²).
  for (bool standard : {false, true}) {
    const std::string p = standard ? "standard" : "ntk";
    Network net("Dense(5, W_std=1.3, b_std=0.4, parameterization=" + p + "), Dense(2, W_std=0.8, b_std=0.6, parameterization=" + p + ")",
                {d});
    const Array<double> nngp = infinite_kernel(net, x1, &x2, get(KernelOptions::nngp));
    const Array<double> ntk = infinite_kernel(net, x1, &x2, get(KernelOptions::ntk));
    for (index_t i = 0; i < n1; ++i)
      for (index_t j = 0; j < n2; ++j) {
        const double xy = input_dot(i, j);
        const double s1 = 1.69 * xy / 3 + 0.16, s2 = 0.64 * s1 + 0.36;
        const double want = standard ? 5 * s1 + 1 + 0.64 * (xy + 1) : s2 + 0.64 * s1;
        EXPECT_NEAR(nngp[i * n2 + j], s2, 1e-13) << p;
        EXPECT_NEAR(ntk[i * n2 + j], want, 1e-13) << p;
      }
  }
}

std::vector<double> images(index_t n, const Shape& in, std::uint64_t seed) {
  return test::random_vector<double>(n * numel(in), seed);
}

// x2 holds a copy of x1's first image (correlations exactly 1 at p = p'), the negated second
// image, and fresh ones.
std::pair<std::vector<double>, std::vector<double>> image_pair(const Shape& in, std::uint64_t seed) {
  const index_t per = numel(in);
  std::vector<double> x1 = images(3, in, seed), x2 = images(3, in, seed + 1);
  std::copy(x1.begin(), x1.begin() + per, x2.begin());
  for (index_t e = 0; e < per; ++e) x2[size_t(per + e)] = -x1[size_t(per + e)];
  return {x1, x2};
}

TEST(KernelOracle, ConvPoolingLayerNormResidualExact) {
  // Spatial rules by direct pixel sums; activations by the closed forms (ABReLU family).
  struct Case {
    OracleNet net;
    Shape in;
  };
  std::vector<Case> cases;
  for (bool standard : {false, true}) {
    {  // SAME, stride 1, GlobalAvgPool (offset path), odd-sized images
      OracleNet n;
      n.conv(3, 3, 3, 1, true, aff(1.3, 0.2, standard)).act(Act::relu).conv(2, 3, 3, 1, true, aff(1.2, std::nullopt, standard))
          .act(Act::relu).global_avg_pool().dense(1, aff(1.0, std::nullopt, standard));
      cases.push_back({n, {5, 4, 2}});
    }
    {  // VALID with stride 2, then SAME with stride 2 (asymmetric padding), Flatten
      OracleNet n;
      n.conv(2, 2, 2, 2, false, aff(1.4, 0.1, standard)).act(Act::abs).conv(3, 3, 3, 2, true, aff(1.1, 0.3, standard))
          .act(Act::leaky_relu, 0.1).flatten().dense(1, aff(1.0, 0.1, standard));
      cases.push_back({n, {7, 6, 1}});
    }
    {  // non-square filter, VALID stride 1 (offset path), Dense pointwise on pixels, GlobalAvgPool
      OracleNet n;
      n.conv(2, 2, 3, 1, false, aff(1.2, 0.2, standard)).act(Act::leaky_relu, 0.3).dense(3, aff(0.9, 0.3, standard))
          .act(Act::abs).global_avg_pool().dense(1, aff(1.0, 0.1, standard));
      cases.push_back({n, {4, 5, 2}});
    }
  }
  {  // AvgPool VALID, then SAME with stride 1 and window 3 (padding counted), Flatten
    OracleNet n;
    n.conv(2, 3, 3, 1, true, aff(1.3, 0.1)).act(Act::relu).avg_pool(2, 2, false).conv(2, 1, 1, 1, false, aff(1.2))
        .act(Act::relu).avg_pool(3, 1, true).flatten().dense(1, aff(1.0));
    cases.push_back({n, {5, 4, 1}});
  }
  {  // AvgPool SAME with stride 2 on odd sizes, GlobalAvgPool
    OracleNet n;
    n.conv(2, 2, 2, 1, true, aff(1.1, 0.2)).act(Act::abs).avg_pool(2, 2, true).global_avg_pool().dense(1, aff(1.0, 0.1));
    cases.push_back({n, {5, 5, 1}});
  }
  {  // LayerNorm over channels, on images and after a bias
    OracleNet n;
    n.conv(3, 3, 3, 1, true, aff(1.0, 0.3)).layer_norm().act(Act::relu).global_avg_pool().dense(1, aff(1.0));
    cases.push_back({n, {4, 4, 2}});
  }
  {  // Residual: x + block(x), on images, with a nonlinearity first inside the block
    OracleNet block;
    block.act(Act::relu).conv(3, 3, 3, 1, true, aff(1.0, 0.1));
    OracleNet n;
    n.conv(3, 3, 3, 1, true, aff(1.2)).residual(block).act(Act::relu).global_avg_pool().dense(1, aff(1.0));
    cases.push_back({n, {4, 5, 2}});
  }
  {  // Residual with standard parameterization inside, then Flatten
    OracleNet block;
    block.act(Act::leaky_relu, 0.1).conv(2, 1, 1, 1, false, aff(1.0, 0.2, true));
    OracleNet n;
    n.conv(2, 2, 2, 1, true, aff(1.3, std::nullopt, true)).residual(block).act(Act::abs).flatten().dense(1, aff(1.0, 0.0, true));
    cases.push_back({n, {3, 4, 2}});
  }
  double worst = 0;
  for (const Case& c : cases) {
    const auto [x1, x2] = image_pair(c.in, 71);
    worst = std::max(worst, check_net(c.net, c.in, x1, x2, 1e-12));
  }
  {  // vectors: LayerNorm and Residual
    OracleNet n;
    n.dense(4, aff(1.3, 0.2)).layer_norm().act(Act::erf).dense(1, aff(1.0, 0.1));
    worst = std::max(worst, check_net(n, {3}, kX1, kX2, 1e-10));
    OracleNet block;
    block.act(Act::relu).dense(4, aff(1.1, 0.1));
    OracleNet r;
    r.dense(4, aff(1.2)).residual(block).act(Act::abs).dense(1, aff(1.0, 0.2, true));
    worst = std::max(worst, check_net(r, {3}, kX1, kX2, 1e-12));
  }
  std::printf("[ info ] spatial rules, LayerNorm, Residual: worst error %.3g of the largest entry\n", worst);
}

TEST(KernelOracle, IntegerPaddingExact) {
  // PyTorch's integer padding (p zeros on each side) on both paths of the library.
  struct Case {
    OracleNet net;
    Shape in;
  };
  std::vector<Case> cases;
  for (bool standard : {false, true}) {
    {  // stride 1 with GlobalAvgPool (the offset path): SAME's padding written as 1, less than
       // SAME's (a 5x5 filter with padding 1 shrinks the image to 3x2), rows only (3x1, 1x0)
      OracleNet n;
      n.conv(3, 3, 3, 1, zeros(1, 1), aff(1.3, 0.2, standard)).act(Act::relu)
          .conv(2, 5, 5, 1, zeros(1, 1), aff(1.2, 0.1, standard)).act(Act::abs)
          .conv(2, 3, 1, 1, zeros(1, 0), aff(1.1, std::nullopt, standard)).act(Act::relu)
          .global_avg_pool().dense(1, aff(1.0, std::nullopt, standard));
      cases.push_back({n, {5, 4, 2}});
    }
    {  // an even kernel with padding k/2 grows the image (3x4 -> 4x5): more pixel pairs, and
       // more offsets, than the input has, each carrying the bias
      OracleNet n;
      n.conv(2, 2, 2, 1, zeros(1, 1), aff(1.2, 0.3, standard)).act(Act::abs)
          .conv(2, 3, 3, 1, zeros(1, 1), aff(1.1, 0.1, standard)).act(Act::relu)
          .global_avg_pool().dense(1, aff(1.0, 0.1, standard));
      cases.push_back({n, {3, 4, 1}});
    }
  }
  {  // a ResNet stem: 7x7 stride 2 padding 3 (9x8 -> 5x4), AvgPool 3 stride 2 padding 1 (-> 3x2),
     // 3x3 padding 1, Flatten
    OracleNet n;
    n.conv(3, 7, 7, 2, zeros(3, 3), aff(1.4, 0.1)).act(Act::relu).avg_pool(3, 2, zeros(1, 1))
        .conv(2, 3, 3, 1, zeros(1, 1), aff(1.2)).act(Act::leaky_relu, 0.1).flatten().dense(1, aff(1.0, 0.1));
    cases.push_back({n, {9, 8, 1}});
  }
  {  // AvgPool stride 1 padding 1 grows the image (4x4 -> 5x5), zeros counted; GlobalAvgPool
    OracleNet n;
    n.conv(2, 3, 3, 1, zeros(1, 1), aff(1.1, 0.2)).act(Act::abs).avg_pool(2, 1, zeros(1, 1)).global_avg_pool()
        .dense(1, aff(1.0, 0.1));
    cases.push_back({n, {4, 4, 1}});
  }
  double worst = 0;
  for (const Case& c : cases) {
    const auto [x1, x2] = image_pair(c.in, 73);
    worst = std::max(worst, check_net(c.net, c.in, x1, x2, 1e-12));
  }
  std::printf("[ info ] integer padding: worst error %.3g of the largest entry\n", worst);
}

TEST(KernelOracle, SmoothActivationsOnImages) {
  // Erf and Gelu per pixel pair on both paths (the offset path vectorizes them with its own arcsin),
  // against quadrature of degree 48 here (both are entire functions: exact to ~1e-13 at these
  // variances, below ~1), plus the quadrature activations (Tanh: the transcribed degree-25 rule).
  Shape in{4, 4, 2};
  const auto [x1, x2] = image_pair(in, 81);
  OracleNet n;
  n.conv(2, 3, 3, 1, true, aff(0.8, 0.1)).act(Act::erf).conv(2, 3, 2, 1, false, aff(1.2)).act(Act::gelu)
      .global_avg_pool().dense(2, aff(1.0, 0.1));
  const double e1 = check_net(n, in, x1, x2, 1e-10, Quadrature::exact, 48);
  OracleNet t;
  t.conv(2, 2, 2, 1, true, aff(1.2, 0.2, true)).act(Act::tanh).flatten().dense(1, aff(1.0, std::nullopt, true));
  const double e2 = check_net(t, {3, 3, 1}, images(2, {3, 3, 1}, 82), images(2, {3, 3, 1}, 83), 1e-12, Quadrature::symmetric25);
  std::printf("[ info ] Erf/Gelu on images: worst error %.3g; Tanh (degree-25 rule) %.3g\n", e1, e2);
}

TEST(KernelOracle, Float32OffsetPathAgainstOracle) {
  // float32 kernels on the offset path compute in float32, arccos/arcsin by a shorter series
  // (asin_series_terms<float>): against the float64 oracle, relative to the largest entry.
  Shape in{4, 4, 2};
  const auto [x1, x2] = image_pair(in, 91);
  std::vector<OracleNet> nets(3);
  nets[0].conv(2, 3, 3, 1, true, aff(1.0)).act(Act::relu).conv(2, 3, 3, 1, true, aff(1.0)).act(Act::relu)
      .global_avg_pool().dense(1, aff(1.0));
  nets[1].conv(2, 3, 3, 1, true, aff(0.9, 0.2)).act(Act::erf).conv(2, 3, 3, 1, true, aff(1.3, 0.1)).act(Act::gelu)
      .global_avg_pool().dense(1, aff(1.0, 0.1));
  nets[2].conv(2, 3, 3, 1, true, aff(1.2, 0.1, true)).act(Act::abs).conv(2, 2, 2, 1, true, aff(1.1, std::nullopt, true))
      .act(Act::leaky_relu, 0.2).flatten().dense(1, aff(1.0, 0.1, true));
  double worst = 0;
  for (const OracleNet& n : nets) {
    SCOPED_TRACE(n.spec);
    Network lib(n.spec, in);
    Array<float> a1(Shape{3, 4, 4, 2}, std::vector<float>(x1.begin(), x1.end()));
    Array<float> a2(Shape{3, 4, 4, 2}, std::vector<float>(x2.begin(), x2.end()));
    // The oracle on the float-rounded inputs, so only the kernel arithmetic differs.
    const std::vector<double> r1(a1.data(), a1.data() + a1.size()), r2(a2.data(), a2.data() + a2.size());
    const auto [nngp, ntk] = n.kernels(r1, r2, in, Quadrature::exact, 48);
    for (auto g : {KernelOptions::nngp, KernelOptions::ntk}) {
      const Compare c = compare(infinite_kernel(lib, a1, &a2, get(g)), g == KernelOptions::ntk ? ntk : nngp);
      EXPECT_LE(c.err, 1e-5) << (g == KernelOptions::ntk ? "NTK" : "NNGP");
      worst = std::max(worst, c.err);
      // And the float32 symmetric kernel against the float64 one.
      const Array<float> kf = infinite_kernel(lib, a1, nullptr, get(g));
      const Array<double> kd = infinite_kernel(lib, cast<double>(a1), nullptr, get(g));
      const Compare s = compare(kf, kd.vector());
      EXPECT_LE(s.err, 1e-5) << "symmetric float32 vs float64";
      worst = std::max(worst, s.err);
    }
  }
  std::printf("[ info ] float32 offset path: worst error %.3g of the largest entry\n", worst);
}

TEST(KernelOracle, Float32ArcsinArccosSeries) {
  // The float instantiation of the vectorizable arcsin / arccos (11 series terms) against libm in
  // float64, at every float in a fine grid and near the branch points ±1/2, ±1.
  double worst = 0;
  auto check = [&](float t) {
    worst = std::max(worst, std::abs(double(detail::asin_vectorizable(t)) - std::asin(double(t))));
    worst = std::max(worst, std::abs(double(detail::acos_vectorizable(t)) - std::acos(double(t))));
  };
  for (int i = 0; i <= 400000; ++i) check(float(-1.0 + i * 5e-6));
  for (float c : {-1.0f, -0.5f, 0.0f, 0.5f, 1.0f})
    for (int k = -64; k <= 64; ++k) {
      float t = c;
      for (int s = 0; s < std::abs(k); ++s) t = std::nextafter(t, k > 0 ? 2.0f : -2.0f);
      if (std::abs(t) <= 1.0f) check(t);
    }
  // A few ulp of π (float ulp at π is 2.4e-7; asin of a rounded t is itself within 1 ulp).
  EXPECT_LE(worst, 6e-7);
  std::printf("[ info ] float32 arcsin/arccos series: worst absolute error %.3g\n", worst);
}

}  // namespace
}  // namespace ntk
