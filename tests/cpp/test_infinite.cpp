// Infinite-width NNGP / NTK kernels: ReLU closed forms, the arc-cosine conversion, quadrature vs
// closed form, Monte Carlo agreement with the averaged empirical kernels, finiteness, symmetry.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <numbers>

#include "harness.hpp"
#include "ntk/empirical.hpp"
#include "ntk/error.hpp"
#include "layers/gaussian.hpp"
#include "ntk/infinite.hpp"

namespace ntk {
namespace {

constexpr double kPi = std::numbers::pi;

Array<double> rows(index_t n, index_t d, std::vector<double> v) { return Array<double>(Shape{n, d}, std::move(v)); }

Array<double> random_x(index_t n, index_t d, std::uint64_t seed) {
  return Array<double>(Shape{n, d}, test::random_vector<double>(n * d, seed));
}

KernelOptions get(KernelOptions::Get g) {
  KernelOptions o;
  o.get = g;
  return o;
}

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

double rel_frob(const Array<double>& a, const Array<double>& b) {
  double num2 = 0, den2 = 0;
  for (index_t i = 0; i < a.size(); ++i) {
    num2 += (a[i] - b[i]) * (a[i] - b[i]);
    den2 += b[i] * b[i];
  }
  return std::sqrt(num2 / den2);
}

TEST(Infinite, ReluClosedFormAtThreeAngles) {
  // Input Σ⁰ = x·y/2 with x = (1, 0), y at angle θ: Σ11 = Σ22 = 1/2, Σ12 = cos θ / 2.
  // Dense (NTK param, W_std 1, no bias) leaves Σ = Σ⁰ and makes the input to Relu Gaussian.
  Network relu("Dense(3), Relu", {2});
  Network dense_relu("Dense(3), Relu", {2});
  const double thetas[] = {0.0, kPi / 2, kPi, kPi / 3};
  for (double th : thetas) {
    Array<double> x = rows(1, 2, {1.0, 0.0}), y = rows(1, 2, {std::cos(th), std::sin(th)});
    const double K = infinite_kernel(relu, x, &y, get(KernelOptions::nngp))[0];
    // (√(Σ11Σ22)/2π)(sin θ + (π − θ) cos θ) with √(Σ11Σ22) = 1/2.
    const double want = 0.5 / (2 * kPi) * (std::sin(th) + (kPi - th) * std::cos(th));
    EXPECT_NEAR(K, want, 1e-15) << th;
    // Dense (NTK param, W_std 1, no bias): Θ = Σ = cos θ / 2; then ReLU: Θ·(π − θ)/(2π).
    const double T = infinite_kernel(dense_relu, x, &y, get(KernelOptions::ntk))[0];
    EXPECT_NEAR(T, 0.5 * std::cos(th) * (kPi - th) / (2 * kPi), 1e-15) << th;
  }
  // Hand values: θ = 0 → Σ/2 = 1/4; θ = π/2 → 1/(4π); θ = π → 0.
  Array<double> x = rows(1, 2, {1.0, 0.0});
  Array<double> y0 = rows(1, 2, {1.0, 0.0}), y1 = rows(1, 2, {0.0, 1.0}), y2 = rows(1, 2, {-1.0, 0.0});
  EXPECT_NEAR(infinite_kernel(relu, x, &y0, get(KernelOptions::nngp))[0], 0.25, 1e-15);
  EXPECT_NEAR(infinite_kernel(relu, x, &y1, get(KernelOptions::nngp))[0], 1 / (4 * kPi), 1e-15);
  EXPECT_NEAR(infinite_kernel(relu, x, &y2, get(KernelOptions::nngp))[0], 0.0, 1e-15);
}

// Θᴸ of the arc-cosine (c_σ = 2) convention, computed independently (REFERENCE.md section 4).
double arccos_ntk(const double* x, const double* y, index_t d, int L) {
  double xy = 0, xx = 0, yy = 0;
  for (index_t i = 0; i < d; ++i) xy += x[i] * y[i], xx += x[i] * x[i], yy += y[i] * y[i];
  auto k0 = [](double t) { return (kPi - std::acos(t)) / kPi; };
  auto k1 = [](double t) { return (std::sqrt(std::max(0.0, 1 - t * t)) + t * (kPi - std::acos(t))) / kPi; };
  double sig = xy, theta = xy, sxx = xx, syy = yy;
  for (int h = 1; h <= L; ++h) {
    const double rho = std::clamp(sig / std::sqrt(sxx * syy), -1.0, 1.0);
    sig = std::sqrt(sxx * syy) * k1(rho);
    theta = theta * k0(rho) + sig;
    // Diagonal: κ1(1) = 1, so Σ_xx stays ‖x‖².
  }
  return theta;
}

std::string nt_relu_net(int L, index_t width = 7) {
  std::string s;
  for (int l = 0; l < L; ++l) s += "Dense(" + std::to_string(width) + ", W_std=" + num(std::sqrt(2.0)) + "), Relu, ";
  return s + "Dense(" + std::to_string(width) + ")";
}

TEST(Infinite, ArcCosineConversion) {
  const index_t d = 5, n = 6;
  Array<double> x = random_x(n, d, 11);
  double worst = 0;
  for (int L = 1; L <= 5; ++L) {
    Network net(nt_relu_net(L), {d});
    Array<double> K = infinite_kernel(net, x, nullptr, get(KernelOptions::ntk));
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j) {
        const double want = arccos_ntk(x.data() + i * d, x.data() + j * d, d, L) / double(d);
        const double err = std::abs(K[i * n + j] - want) / std::abs(want);
        worst = std::max(worst, err);
        EXPECT_LE(err, 1e-12) << "L=" << L << " (" << i << "," << j << ")";
      }
    // Unit norm x, y = ±x: Θ_nt = K_L(±1)/d with K_L(1) = L + 1.
    std::vector<double> u = test::random_vector<double>(d, 5);
    double nrm = 0;
    for (double v : u) nrm += v * v;
    for (double& v : u) v /= std::sqrt(nrm);
    std::vector<double> both = u;
    for (double v : u) both.push_back(-v);
    Array<double> ux(Shape{2, d}, both);
    Array<double> Ku = infinite_kernel(net, ux, nullptr, get(KernelOptions::ntk));
    EXPECT_NEAR(Ku[0] * double(d), double(L + 1), 1e-12) << L;
    const double km1 = Ku[1] * double(d);
    const double listed[] = {0.0, 0.0, 0.318, 0.686, -1.0, 1.430};
    if (listed[L] >= 0) EXPECT_NEAR(km1, listed[L], 5e-4) << "K_" << L << "(-1)";
    std::printf("[ info ] K_%d(-1) = %.6f\n", L, km1);
  }
  std::printf("[ info ] arc-cosine conversion: worst relative error %.3g over L = 1..5\n", worst);
}

TEST(Infinite, GaussHermiteRule) {
  const auto& r = detail::gauss_hermite(25);
  double s0 = 0, s2 = 0, s4 = 0;
  for (size_t i = 0; i < r.nodes.size(); ++i) {
    s0 += r.weights[i];
    s2 += r.weights[i] * r.nodes[i] * r.nodes[i];
    s4 += r.weights[i] * std::pow(r.nodes[i], 4);
  }
  const double sp = std::sqrt(kPi);
  EXPECT_NEAR(s0, sp, 1e-13);
  EXPECT_NEAR(s2, sp / 2, 1e-13);
  EXPECT_NEAR(s4, 3 * sp / 4, 1e-12);
}

TEST(Infinite, QuadratureMatchesClosedForms) {
  auto erf_phi = [](double x) { return std::erf(x); };
  auto erf_dphi = [](double x) { return 2 / std::sqrt(kPi) * std::exp(-x * x); };
  const double cases[][3] = {{1.0, 0.3, 0.8}, {0.5, -0.4, 2.0}, {1.0, 0.9, 1.2}, {0.1, 0.0, 0.3}, {1.5, -1.4, 1.5}};
  for (const auto& c : cases) {
    const double s11 = c[0], s12 = c[1], s22 = c[2];
    auto [e, ed] = detail::gaussian_expectations(erf_phi, erf_dphi, s11, s12, s22);
    const double den = (1 + 2 * s11) * (1 + 2 * s22);
    const double want = 2 / kPi * std::asin(2 * s12 / std::sqrt(den));
    const double want_d = 4 / kPi / std::sqrt(den - 4 * s12 * s12);
    EXPECT_NEAR(e, want, 2e-3 * std::max(std::abs(want), 1e-2)) << s11 << " " << s12 << " " << s22;
    EXPECT_NEAR(ed, want_d, 2e-3 * std::abs(want_d));
    // ReLU NNGP: the kink makes quadrature only near (~1e-3), so 1e-2 here; ReLU uses its closed form.
    auto relu = [](double x) { return x > 0 ? x : 0.0; };
    auto [r, rd] = detail::gaussian_expectations(relu, relu, s11, s12, s22);
    (void)rd;
    const double prod = s11 * s22, th = std::acos(s12 / std::sqrt(prod));
    const double want_r = std::sqrt(prod) / (2 * kPi) * (std::sin(th) + (kPi - th) * std::cos(th));
    EXPECT_NEAR(r, want_r, 1e-2 * std::sqrt(prod));
  }
}

TEST(Infinite, GeluClosedFormMatchesQuadrature) {
  // The closed form (through a Dense layer that leaves Σ = x·y/d) against bivariate Gauss-Hermite
  // quadrature of φ(x) = x·Φ(x): the acceptance bound 2e-3 at degree 25, and 1e-9 at degree 120
  // (GELU is smooth, so the quadrature converges to the exact value).
  auto gelu = [](double x) { return 0.5 * x * std::erfc(-x / std::numbers::sqrt2); };
  auto dgelu = [](double x) {
    return 0.5 * std::erfc(-x / std::numbers::sqrt2) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * kPi);
  };
  Network net("Dense(4), Gelu", {2});
  const double cases[][4] = {{1.0, 0.0, 0.3, 0.8}, {0.5, 0.2, -0.4, 2.0}, {1.3, 0.9, 0.1, 1.2}, {0.1, 0.0, 0.0, 0.3},
                             {1.5, 0.0, -1.4, 0.5}, {1.6, 0.5, 1.5, 0.6}, {3.0, 1.0, 2.9, 1.1}};
  for (const auto& c : cases) {
    // x = (c0, c1), y = (c2, c3): Σ11 = |x|²/2, Σ12 = x·y/2, Σ22 = |y|²/2.
    Array<double> x = rows(1, 2, {c[0], c[1]}), y = rows(1, 2, {c[2], c[3]});
    const double s11 = (c[0] * c[0] + c[1] * c[1]) / 2, s22 = (c[2] * c[2] + c[3] * c[3]) / 2;
    const double s12 = (c[0] * c[2] + c[1] * c[3]) / 2;
    const double K = infinite_kernel(net, x, &y, get(KernelOptions::nngp))[0];
    // NTK of Dense(no bias), Gelu: Θ = Σ12·E[φ'φ'].
    const double T = infinite_kernel(net, x, &y, get(KernelOptions::ntk))[0];
    for (int degree : {25, 120}) {
      // Degree 25 resolves φ' (a smoothed step) only at moderate variances; at Σ ≈ 5 it is off by 1%.
      if (degree == 25 && std::max(s11, s22) > 2) continue;
      auto [e, ed] = detail::gaussian_expectations(gelu, dgelu, s11, s12, s22, degree);
      const double tol = degree == 25 ? 2e-3 : 1e-9;
      EXPECT_NEAR(K, e, tol * std::max(std::abs(e), 1e-2)) << degree << " " << s11 << " " << s12 << " " << s22;
      EXPECT_NEAR(T, s12 * ed, tol * std::max(std::abs(s12 * ed), 1e-2)) << degree;
    }
  }
}

TEST(Infinite, VectorizableArcsinArccosMatchLibm) {
  double worst = 0;
  for (int i = 0; i <= 200000; ++i) {
    const double t = -1.0 + i * 1e-5;
    worst = std::max(worst, std::abs(detail::acos_vectorizable(t) - std::acos(t)));
    worst = std::max(worst, std::abs(detail::asin_vectorizable(t) - std::asin(t)));
  }
  for (double t : {1.0, -1.0, 0.5, -0.5, 1e-300, 1.0 - 1e-16, -1.0 + 1e-16}) {
    worst = std::max(worst, std::abs(detail::acos_vectorizable(t) - std::acos(t)));
    worst = std::max(worst, std::abs(detail::asin_vectorizable(t) - std::asin(t)));
  }
  EXPECT_LE(worst, 1e-15);
  EXPECT_EQ(detail::acos_vectorizable(1.0), 0.0);
  EXPECT_EQ(detail::acos_vectorizable(-1.0), kPi);
}

TEST(Infinite, OffsetPathMatchesLayerByLayer) {
  // The offset path (one pixel offset at a time, pairs in SIMD lanes) against the layer-by-layer
  // path over whole pixel-pair states, which shares only the pointwise formulas with it.
  struct Case {
    std::string spec;
    Shape in;
    Parameterization param = Parameterization::ntk;
  };
  const Case cases[] = {
      {"Conv(2, 3, padding=SAME, W_std=1.4, b_std=0.2), Relu, Conv(2, 3, padding=SAME, W_std=1.4), Relu, "
       "GlobalAvgPool, Dense(1)", {5, 6, 3}},
      {"Conv(2, 3, padding=SAME, W_std=1.3, b_std=0.1), Erf, Conv(2, 3x2, padding=VALID), Gelu, GlobalAvgPool, "
       "Dense(2, b_std=0.1)", {6, 5, 2}, Parameterization::standard},
      {"Conv(2, 2, padding=SAME), LeakyRelu(0.1), Dense(3, b_std=0.3), Abs, GlobalAvgPool, Dense(1, b_std=0.1), "
       "Relu, Dense(1)", {4, 5, 1}},
      {"Conv(3, 3, padding=SAME, W_std=1.2), Residual(Relu, Conv(3, 3, padding=SAME, b_std=0.1)), Tanh, "
       "GlobalAvgPool, Dense(1)", {5, 4, 2}},
      {"Conv(2, 3, padding=VALID, W_std=1.4), Relu, Conv(2, 3, padding=SAME), Relu, Flatten, Dense(1)", {6, 7, 2}},
      {"Conv(2, 5, padding=VALID), Relu, GlobalAvgPool, Dense(1)", {5, 6, 1}},  // one output pixel
  };
  // Printed after the loop: the float32 offset path's worst error relative to the largest entry.
  double worst32 = 0;
  for (const auto& c : cases) {
    NetworkDefaults def;
    def.parameterization = c.param;
    Network net(c.spec, c.in, def);
    const index_t per = numel(c.in);
    Array<double> x(Shape{11, c.in[0], c.in[1], c.in[2]}, test::random_vector<double>(11 * per, 61));
    Array<double> y(Shape{3, c.in[0], c.in[1], c.in[2]}, test::random_vector<double>(3 * per, 62));
    for (auto g : {KernelOptions::ntk, KernelOptions::nngp}) {
      KernelOptions fast = get(g), slow = get(g);
      slow.offset_path = false;
      for (bool sym : {true, false}) {
        const Array<double>* x2 = sym ? nullptr : &y;
        Array<double> a = infinite_kernel(net, x, x2, fast), b = infinite_kernel(net, x, x2, slow);
        ASSERT_EQ(a.shape(), b.shape());
        double scale = 0, err = 0;
        for (index_t i = 0; i < b.size(); ++i) scale = std::max(scale, std::abs(b[i]));
        for (index_t i = 0; i < b.size(); ++i) err = std::max(err, std::abs(a[i] - b[i]));
        EXPECT_LE(err, 1e-13 * scale) << c.spec << (sym ? " symmetric" : " x2") << (g == KernelOptions::ntk ? " ntk" : " nngp");
        EXPECT_GT(scale, 0.0);
        // float32 kernels: the offset path computes in float32.
        Array<float> xf(x.shape(), std::vector<float>(x.data(), x.data() + x.size()));
        Array<float> yf(y.shape(), std::vector<float>(y.data(), y.data() + y.size()));
        Array<float> f = infinite_kernel(net, xf, sym ? nullptr : &yf, fast);
        double err32 = 0;
        for (index_t i = 0; i < b.size(); ++i) err32 = std::max(err32, std::abs(double(f[i]) - b[i]));
        EXPECT_LE(err32, 2e-5 * scale) << c.spec << " float32";
        worst32 = std::max(worst32, err32 / scale);
      }
    }
  }
  std::printf("[ info ] float32 offset path: worst error %.3g of the largest entry\n", worst32);
}

TEST(Infinite, MonteCarloMatchesVectorKernels) {
  // Width 1024, 64 initializations, through monte_carlo_kernel (our averaged empirical kernels).
  const index_t d = 6, n = 5;
  const std::string w = num(std::sqrt(2.0));
  const std::pair<std::string, Parameterization> cases[] = {
      {"Dense(1024, W_std=" + w + "), Relu, Dense(1024, W_std=" + w + "), Relu, Dense(%)", Parameterization::ntk},
      {"Dense(1024, W_std=1.5, b_std=0.3), Erf, Dense(%, W_std=1.2, b_std=0.3)", Parameterization::ntk},
      {"Dense(1024, W_std=" + w + ", b_std=0.2), LayerNorm, Tanh, Dense(%, b_std=0.2)", Parameterization::ntk},
      {"Dense(1024, W_std=" + w + ", b_std=0.2), Relu, Dense(%, b_std=0.2)", Parameterization::standard},
  };
  Array<double> x = random_x(n, d, 3);
  for (const auto& [pattern, param] : cases) {
    NetworkDefaults def;
    def.parameterization = param;
    for (auto g : {KernelOptions::ntk, KernelOptions::nngp}) {
      // Readout 8 for the NTK, 256 for the NNGP (its error falls with outputs × seeds).
      std::string spec = pattern;
      spec.replace(spec.find('%'), 1, g == KernelOptions::ntk ? "8" : "256");
      Network net(spec, {d}, def);
      const double err = rel_frob(monte_carlo_kernel(net, x, nullptr, get(g), 64, 1000), infinite_kernel(net, x, nullptr, get(g)));
      std::printf("[ info ] MC %s (%s) %s, width 1024, 64 seeds: rel Frobenius error %.4f\n", spec.c_str(),
                  to_string(param), g == KernelOptions::ntk ? "NTK" : "NNGP", err);
      EXPECT_LE(err, 0.05) << spec;
    }
  }
}

// Monte Carlo at width 1024 over 64 initializations (monte_carlo_kernel, which averages our own
// empirical kernels) against the analytic kernels, for images and every kind of rule: Conv SAME
// and VALID with stride, GlobalAvgPool and AvgPool (full spatial covariance), Flatten (diagonal
// only), Residual, LayerNorm, Erf, standard parameterization.
struct McCase {
  std::string spec;
  Parameterization parameterization = Parameterization::ntk;
};

// The NTK is estimated with a readout of 4 outputs; the NNGP, whose Monte Carlo error falls with
// outputs × seeds rather than width, with 256 (the analytic kernels do not depend on it). Second
// convolutions are 1x1 except in the first case, to keep the test quick.
std::vector<McCase> image_cases(int width, int readout) {
  const std::string W = std::to_string(width), R = std::to_string(readout), r2 = num(std::sqrt(2.0));
  return {
      {"Conv(" + W + ", 3, padding=SAME, W_std=" + r2 + "), Relu, Conv(" + W + ", 3, padding=SAME, W_std=" + r2 +
       "), Relu, GlobalAvgPool, Dense(" + R + ")"},
      {"Conv(" + W + ", 3, padding=SAME, W_std=" + r2 + ", b_std=0.1), Relu, Conv(" + W +
       ", 2, stride=2, W_std=1.5), Erf, Flatten, Dense(" + R + ", b_std=0.2)"},
      {"Conv(" + W + ", 3, padding=SAME), Residual(Relu, Conv(" + W + ", 1)), Relu, AvgPool(2), Flatten, Dense(" + R + ")"},
      {"Conv(" + W + ", 3, padding=SAME, b_std=0.3), LayerNorm, Gelu, GlobalAvgPool, Dense(" + R + ")"},
      {"Conv(" + W + ", 2, W_std=" + r2 + ", b_std=0.2), Relu, Conv(" + W + ", 1, b_std=0.2), Relu, GlobalAvgPool, Dense(" +
           R + ", b_std=0.1)",
       Parameterization::standard},
  };
}

Array<double> random_images(index_t n, std::uint64_t seed) {
  return Array<double>(Shape{n, 4, 4, 2}, test::random_vector<double>(n * 32, seed));
}

// Relative Frobenius error of the 64-seed Monte Carlo estimate against the analytic kernel.
double mc_error(const McCase& c, const Array<double>& x, KernelOptions::Get g) {
  NetworkDefaults def;
  def.parameterization = c.parameterization;
  Network net(c.spec, {4, 4, 2}, def);
  return rel_frob(monte_carlo_kernel(net, x, nullptr, get(g), 64, 500), infinite_kernel(net, x, nullptr, get(g)));
}

TEST(Infinite, MonteCarloMatchesImageKernels) {
  Array<double> x = random_images(3, 41);
  const auto ntk_cases = image_cases(1024, 4), nngp_cases = image_cases(1024, 256);
  for (size_t c = 0; c < ntk_cases.size(); ++c) {
    const double e_ntk = mc_error(ntk_cases[c], x, KernelOptions::ntk), e_nngp = mc_error(nngp_cases[c], x, KernelOptions::nngp);
    std::printf("[ info ] MC %s (%s), width 1024, 64 seeds: NTK rel Frobenius error %.4f, NNGP %.4f\n",
                ntk_cases[c].spec.c_str(), to_string(ntk_cases[c].parameterization), e_ntk, e_nngp);
    EXPECT_LE(e_ntk, 0.05) << ntk_cases[c].spec;
    EXPECT_LE(e_nngp, 0.05) << nngp_cases[c].spec;
  }
}

TEST(Infinite, MonteCarloErrorFallsWithWidth) {
  // The error of a 64-seed average behaves like 1/√(width·seeds): from width 64 to 1024 it should
  // shrink about 4x (allow 2x..10x for the randomness of one draw per width).
  Array<double> x = random_images(3, 43);
  double err[3];
  const int widths[] = {64, 256, 1024};
  for (int w = 0; w < 3; ++w) {
    err[w] = mc_error(image_cases(widths[w], 4)[3], x, KernelOptions::ntk);
    std::printf("[ info ] MC %s: NTK rel Frobenius error %.4f\n", image_cases(widths[w], 4)[3].spec.c_str(), err[w]);
  }
  EXPECT_GT(err[0] / err[2], 2.0);
  EXPECT_LT(err[0] / err[2], 10.0);
  EXPECT_GT(err[0], err[1] * 0.8);
}

TEST(Infinite, FiniteForZeroInputsAndDeepNets) {
  const index_t d = 4;
  std::vector<double> v(3 * d, 0.0);
  auto r = test::random_vector<double>(2 * d, 9);
  std::copy(r.begin(), r.end(), v.begin() + d);  // row 0 is x = 0
  Array<float> x(Shape{3, d}, std::vector<float>(v.begin(), v.end()));
  for (const char* act : {"Relu", "Erf", "Tanh", "Gelu", "Sigmoid", "LeakyRelu(0.1)", "Abs"}) {
    std::string spec;
    for (int l = 0; l < 20; ++l) spec += std::string("Dense(16, W_std=2, b_std=0.1), ") + act + ", ";
    spec += "Dense(2)";
    Network net(spec, {d});
    for (auto g : {KernelOptions::ntk, KernelOptions::nngp}) {
      Array<float> K = infinite_kernel(net, x, nullptr, get(g));
      for (index_t i = 0; i < K.size(); ++i) EXPECT_TRUE(std::isfinite(K[i])) << act << " " << i;
    }
    // Images through the float32 offset path: 20 conv layers, one image all zeros (closed forms;
    // quadrature per pixel pair of 20 layers is slow under the sanitizers and adds nothing here).
    const bool quadrature = std::string(act) == "Tanh" || std::string(act) == "Sigmoid";
    std::string cnn;
    for (int l = 0; l < 20; ++l) cnn += std::string("Conv(2, 3, padding=SAME, W_std=2, b_std=0.1), ") + act + ", ";
    for (const char* readout : {"GlobalAvgPool, Dense(1)", "Flatten, Dense(1)"}) {
      if (quadrature) break;
      Network img(cnn + readout, {4, 3, 2});
      std::vector<float> pixels(3 * 24, 0.0f);
      auto rnd = test::random_vector<double>(2 * 24, 10);
      std::copy(rnd.begin(), rnd.end(), pixels.begin() + 24);
      Array<float> xi(Shape{3, 4, 3, 2}, pixels);
      for (auto g : {KernelOptions::ntk, KernelOptions::nngp}) {
        Array<float> K = infinite_kernel(img, xi, nullptr, get(g));
        for (index_t i = 0; i < K.size(); ++i) EXPECT_TRUE(std::isfinite(K[i])) << act << " " << readout << " " << i;
      }
    }
    // No bias and x = 0: every kernel entry with x = 0 is exactly 0.
    Network nb("Dense(8), " + std::string(act) + ", Dense(1)", {d});
    Array<float> K = infinite_kernel(nb, x, nullptr, get(KernelOptions::ntk));
    for (index_t j = 0; j < 3; ++j) EXPECT_TRUE(std::isfinite(K[j]));
  }
}

TEST(Infinite, SymmetricEqualsExplicitX2AndRejectsUnsupported) {
  const index_t d = 3;
  Network net("Dense(8, b_std=0.5), Tanh, Dense(8), LeakyRelu(0.2), Dense(8), Gelu, Dense(2)", {d});
  Array<double> x = random_x(4, d, 21), y = random_x(3, d, 22);
  for (auto g : {KernelOptions::ntk, KernelOptions::nngp}) {
    Array<double> a = infinite_kernel(net, x, nullptr, get(g)), b = infinite_kernel(net, x, &x, get(g));
    EXPECT_EQ(a.shape(), (Shape{4, 4}));
    EXPECT_EQ(a.vector(), b.vector());
    for (index_t i = 0; i < 4; ++i)
      for (index_t j = 0; j < 4; ++j) EXPECT_NEAR(a[i * 4 + j], a[j * 4 + i], 1e-14);
    Array<double> c = infinite_kernel(net, x, &y, get(g));
    EXPECT_EQ(c.shape(), (Shape{4, 3}));
  }
  Array<double> bad = random_x(2, 4, 1);
  EXPECT_THROW(infinite_kernel(net, bad, nullptr, {}), InvalidArgument);
  Network res("Dense(4), Residual(Dense(4), Relu)", {d});
  EXPECT_THROW(infinite_kernel(res, x, nullptr, {}), NotSupported);
  // Nonlinearities need Gaussian inputs: not the raw input, not another nonlinearity's output.
  for (const char* spec : {"Relu, Dense(1)", "Dense(4), Relu, LayerNorm, Dense(1)", "Dense(4), Erf, Tanh, Dense(1)"}) {
    Network n(spec, {d});
    try {
      infinite_kernel(n, x, nullptr, {});
      ADD_FAILURE() << spec << " was not refused";
    } catch (const NotSupported& e) {
      EXPECT_NE(std::string(e.what()).find("non-Gaussian"), std::string::npos) << e.what();
    }
  }
  // The output must be a vector.
  Network conv("Conv(2, 3, padding=SAME)", {4, 4, 1});
  Array<double> img(Shape{2, 4, 4, 1}, test::random_vector<double>(32, 2));
  EXPECT_THROW(infinite_kernel(conv, img, nullptr, {}), NotSupported);
}

// Layers with no exact infinite-width kernel are refused with a message that names them and says
// what to use instead; the empirical kernels take them.
TEST(Infinite, RefusesLayersWithoutAnExactKernel) {
  Network net("Conv(2, 3, padding=1), Relu, MaxPool(3, stride=2, padding=1), GlobalAvgPool, Dense(1)", {5, 5, 1});
  Array<double> img(Shape{2, 5, 5, 1}, test::random_vector<double>(50, 3));
  try {
    infinite_kernel(net, img, nullptr, {});
    ADD_FAILURE() << "MaxPool was not refused";
  } catch (const NotSupported& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("MaxPool(3x3, stride=2x2, padding=1)"), std::string::npos) << what;
    EXPECT_NE(what.find("ntk entk"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace ntk

namespace ntk {
namespace {

// A block of the kernel computed on its own (x1 rows against x2 rows) has the bits of the same
// entries of the whole kernel, whatever the block's size and offset: what ntkit.dask relies on to
// equal a single process. The input Gram of vector inputs is the part that had depended on the
// tile's shape (OpenBLAS picks its kernel by shape); it is now computed in GEMMs of one shape.
// (Rectangular blocks off the diagonal: a symmetric kernel's own pairs (i, i) come from the pass over
// (x, x), as they do in a diagonal block computed on its own.)
TEST(Infinite, BlocksHaveTheBitsOfTheWholeKernel) {
  const Network net("Dense(64, W_std=1.4142135623730951, b_std=0.05), Relu, Dense(64), Erf, Dense(1)", {16});
  const index_t n = 300, d = 16;
  const Array<double> x = test::random_batch<double>(n, {d}, 90);
  const Array<double> whole = infinite_kernel(net, x, nullptr);
  auto rows = [&](index_t r0, index_t r1) {
    Array<double> out(Shape{r1 - r0, d});
    std::copy(x.data() + r0 * d, x.data() + r1 * d, out.data());
    return out;
  };
  index_t checked = 0;
  auto expect_block = [&](index_t r0, index_t r1, index_t c0, index_t c1, bool symmetric) {
    const Array<double> a = rows(r0, r1), b = rows(c0, c1);
    const Array<double> block = infinite_kernel(net, a, symmetric ? nullptr : &b);
    for (index_t i = r0; i < r1; ++i)
      for (index_t j = c0; j < c1; ++j, ++checked)
        ASSERT_EQ(block[(i - r0) * (c1 - c0) + (j - c0)], whole[i * n + j]) << i << ", " << j;
  };
  // The tiles of ntkit.dask at tile 64: above the diagonal rectangular, on it symmetric (the last
  // one 44 examples); and blocks of other sizes and offsets.
  for (index_t i = 0; i < n; i += 64)
    for (index_t j = i; j < n; j += 64) expect_block(i, std::min(i + 64, n), j, std::min(j + 64, n), i == j);
  expect_block(10, 47, 60, 300, false);
  expect_block(0, 140, 299, 300, false);
  expect_block(3, 5, 3, 5, true);
  EXPECT_EQ(checked, 54160 + 37 * 240 + 140 + 4);  // the upper tiles hold 54160 entries
}

}  // namespace
}  // namespace ntk
