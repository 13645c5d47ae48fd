// Polynomial fits of the arc-cosine functions and the NTKSketch / NTKRF feature maps.
//
// Oracles: the depth-L ReLU NTK of neural-tangents' spec computed by the infinite-kernel code (a
// separate implementation, layer by layer), REFERENCE.md's values of K_L(−1), closed forms of κ0 / κ1,
// an exhaustive search over active sets for NNLS, means over many seeds for unbiasedness.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numbers>
#include <string>
#include <tuple>

#include "harness.hpp"
#include "ntk/empirical.hpp"
#include "ntk/error.hpp"
#include "ntk/features.hpp"
#include "ntk/infinite.hpp"
#include "ntk/network.hpp"
#include "ntk/polyfit.hpp"
#include "sketch_oracle.hpp"

namespace ntk {
namespace {

using test::check_deterministic;
using test::check_unbiased;
using test::gram;
using Vec = std::vector<double>;

// neural-tangents' spec whose NTK the maps approximate (features.hpp).
std::string relu_spec(int depth) {
  std::string s;
  for (int h = 0; h < depth; ++h) s += "Dense(64, W_std=1.4142135623730951, b_std=none), Relu, ";
  return s + "Dense(1, W_std=1, b_std=none)";
}

Vec exact_ntk(const Vec& x, index_t n, index_t d, int depth) {
  Network net(relu_spec(depth), Shape{d});
  const Array<double> k = infinite_kernel(net, Array<double>(Shape{n, d}, x), nullptr);
  return Vec(k.data(), k.data() + k.size());
}

double rel_frobenius(const Vec& a, const Vec& ref) {
  double e = 0, r = 0;
  for (size_t k = 0; k < a.size(); ++k) {
    e += (a[k] - ref[k]) * (a[k] - ref[k]);
    r += ref[k] * ref[k];
  }
  return std::sqrt(e / r);
}

// ---- the functions and their fits ----

TEST(PolyFit, ReluNtkUnitMatchesTheInfiniteKernelOfTheSpec) {
  // Θ_nt(x, y) = ‖x‖‖y‖·K_L(cos θ)/d for every pair: the conversion of REFERENCE.md section 4.
  const index_t n = 7, d = 5;
  const Vec x = test::random_vector<double>(n * d, 3);
  for (int depth : {1, 2, 3}) {
    SCOPED_TRACE(depth);
    const Vec k = exact_ntk(x, n, d, depth);
    const Vec lin = test::linear_gram(x, n, d);
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j) {
        const double ni = std::sqrt(lin[size_t(i * n + i)]), nj = std::sqrt(lin[size_t(j * n + j)]);
        const double mine = ni * nj * relu_ntk_unit(lin[size_t(i * n + j)] / (ni * nj), depth) / double(d);
        // arccos near t = 1 turns rounding of order 1e-16 in t into 1e-8 in θ: the diagonal is the worst case.
        EXPECT_NEAR(mine, k[size_t(i * n + j)], 1e-7 * std::abs(k[size_t(i * n + j)]) + 1e-14);
      }
  }
  // REFERENCE.md: K_L(1) = L + 1; K_L(−1) = 0, 0.318, 0.686, 1.430 for L = 1, 2, 3, 5.
  const double at_minus_one[] = {0.0, 0.318, 0.686, 1.430};
  const int depths[] = {1, 2, 3, 5};
  for (int k = 0; k < 4; ++k) {
    EXPECT_NEAR(relu_ntk_unit(-1.0, depths[k]), at_minus_one[k], 5e-4);
    EXPECT_DOUBLE_EQ(relu_ntk_unit(1.0, depths[k]), depths[k] + 1.0);
  }
}

TEST(PolyFit, TaylorSeriesConvergeToTheClosedForms) {
  // κ0 = 1/2 + arcsin(t)/π; the truncation error at |t| ≤ 0.6 after degree 61 is below 0.6^62 ≈ 2e-14.
  for (double t : {-0.6, -0.2, 0.0, 0.3, 0.6}) {
    EXPECT_NEAR(eval_polynomial(kappa0_taylor(61), t), 0.5 + std::asin(t) / std::numbers::pi, 1e-13);
    EXPECT_NEAR(eval_polynomial(kappa1_taylor(62), t), arccos_kappa1(t), 1e-13);
  }
  for (double c : kappa0_taylor(20)) EXPECT_GE(c, 0.0);
  for (double c : kappa1_taylor(20)) EXPECT_GE(c, 0.0);
}

// Every subset of columns as the passive set: the best feasible unconstrained least squares on it.
Vec brute_force_nnls(const Vec& a, int rows, int cols, const Vec& b) {
  double best = std::numeric_limits<double>::infinity();
  Vec best_u(size_t(cols), 0.0);
  for (int mask = 0; mask < (1 << cols); ++mask) {
    std::vector<int> idx;
    for (int j = 0; j < cols; ++j)
      if (mask & (1 << j)) idx.push_back(j);
    // Normal equations on the subset by Gaussian elimination (tiny and well conditioned here).
    const int k = int(idx.size());
    Vec g(size_t(k * k), 0.0), h(size_t(k), 0.0);
    for (int p = 0; p < k; ++p) {
      for (int q = 0; q < k; ++q)
        for (int r = 0; r < rows; ++r) g[size_t(p * k + q)] += a[size_t(r * cols + idx[p])] * a[size_t(r * cols + idx[q])];
      for (int r = 0; r < rows; ++r) h[size_t(p)] += a[size_t(r * cols + idx[p])] * b[size_t(r)];
    }
    for (int p = 0; p < k; ++p)
      for (int q = p + 1; q < k; ++q) {
        const double f = g[size_t(q * k + p)] / g[size_t(p * k + p)];
        for (int c = p; c < k; ++c) g[size_t(q * k + c)] -= f * g[size_t(p * k + c)];
        h[size_t(q)] -= f * h[size_t(p)];
      }
    Vec z(static_cast<size_t>(k));
    for (int p = k - 1; p >= 0; --p) {
      double s = h[size_t(p)];
      for (int c = p + 1; c < k; ++c) s -= g[size_t(p * k + c)] * z[size_t(c)];
      z[size_t(p)] = s / g[size_t(p * k + p)];
    }
    bool feasible = true;
    for (double v : z) feasible = feasible && v >= 0;
    if (!feasible) continue;
    Vec u(size_t(cols), 0.0);
    for (int p = 0; p < k; ++p) u[size_t(idx[p])] = z[size_t(p)];
    double r2 = 0;
    for (int r = 0; r < rows; ++r) {
      double v = -b[size_t(r)];
      for (int c = 0; c < cols; ++c) v += a[size_t(r * cols + c)] * u[size_t(c)];
      r2 += v * v;
    }
    if (r2 < best) {
      best = r2;
      best_u = u;
    }
  }
  return best_u;
}

TEST(PolyFit, NnlsMatchesExhaustiveSearch) {
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    const int rows = 9, cols = 6;
    const Vec a = test::random_vector<double>(rows * cols, 100 + seed), b = test::random_vector<double>(rows, 200 + seed);
    const Vec u = nnls(a, rows, cols, b), ref = brute_force_nnls(a, rows, cols, b);
    for (int j = 0; j < cols; ++j) EXPECT_NEAR(u[size_t(j)], ref[size_t(j)], 1e-10) << "seed " << seed << " column " << j;
  }
}

TEST(PolyFit, NarrowIntervalsNearOneStayAccurate) {
  // Deep layers fit on [α, 1] with α → 1, where the monomials are nearly collinear; a high degree there
  // must still give a good fit, not huge cancelling coefficients.
  for (double lo : {0.0, 0.318, 0.5, 0.8}) {
    for (int q : {2, 8, 16}) {
      PolyFitOptions o;
      o.lo = lo;
      const Vec c = fit_polynomial(arccos_kappa1, q, o);
      double err = 0;
      for (int i = 0; i <= 1000; ++i) {
        const double t = lo + (1 - lo) * i / 1000.0;
        err = std::max(err, std::abs(eval_polynomial(c, t) - arccos_kappa1(t)));
      }
      EXPECT_LT(err, 0.01) << "lo " << lo << " degree " << q;
      for (double v : c) EXPECT_LT(v, 10.0) << "lo " << lo << " degree " << q;
    }
  }
}

TEST(PolyFit, NnlsWithEveryColumnInfeasibleIsZero) {
  // b in the cone of −A's columns: every column's gradient is negative, the answer is u = 0.
  const Vec a{1, 0, 0, 1, 1, 1};  // 3 x 2
  const Vec b{-1, -2, -1};
  for (double v : nnls(a, 3, 2, b)) EXPECT_EQ(v, 0.0);
}

TEST(PolyFit, RecoversAFeasiblePolynomialExactly) {
  const Vec c{0.3, 0.5, 0.0, 0.2, 0.0};  // non-negative, non-decreasing on [−1, 1]
  const Vec fit = fit_polynomial([&](double t) { return eval_polynomial(c, t); }, 4);
  for (size_t j = 0; j < c.size(); ++j) EXPECT_NEAR(fit[j], c[j], 1e-9);
}

TEST(PolyFit, FitsAreFeasibleAndBeatTaylor) {
  for (int q : {2, 4, 8, 16}) {
    SCOPED_TRACE(q);
    for (int which = 0; which < 3; ++which) {
      std::function<double(double)> f = which == 0   ? std::function<double(double)>(arccos_kappa0)
                                        : which == 1 ? std::function<double(double)>(arccos_kappa1)
                                                     : [](double t) { return relu_ntk_unit(t, 2); };
      const Vec c = fit_polynomial(f, q);
      ASSERT_EQ(c.size(), size_t(q + 1));
      double fit_err = 0, prev = -std::numeric_limits<double>::infinity();
      for (int i = 0; i <= 4000; ++i) {
        const double t = -1.0 + i / 2000.0, v = eval_polynomial(c, t);
        fit_err = std::max(fit_err, std::abs(v - f(t)));
        EXPECT_GE(v, prev - 1e-9) << "not monotone at t = " << t;
        prev = v;
      }
      for (double v : c) EXPECT_GE(v, 0.0);
      if (which < 2) {  // the fit does better than the Taylor polynomial of the same degree
        const Vec taylor = which == 0 ? kappa0_taylor(q) : kappa1_taylor(q);
        double taylor_err = 0;
        for (int i = 0; i <= 4000; ++i) {
          const double t = -1.0 + i / 2000.0;
          taylor_err = std::max(taylor_err, std::abs(eval_polynomial(taylor, t) - f(t)));
        }
        EXPECT_LT(fit_err, taylor_err) << "function " << which;
      }
    }
  }
}

// ---- feature maps ----

// Points with ⟨x, y⟩ of both signs, and one zero row.
Vec points(index_t n, index_t d, std::uint64_t seed) {
  Vec x = test::random_vector<double>(n * d, seed);
  for (index_t j = 0; j < d; ++j) x[size_t((n - 1) * d + j)] = 0.0;
  return x;
}

TEST(Features, NtkSketchIsUnbiasedForItsPolynomial) {
  const index_t n = 6, d = 5, m = 16;
  const Vec x = points(n, d, 7);
  const int depth = 2, q = 4;
  const Vec c = NtkSketch({d, m, depth, q, 4, 0}).coefficients();
  const Vec lin = test::linear_gram(x, n, d);
  Vec poly(size_t(n * n), 0.0);
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) {
      const double ni = std::sqrt(lin[size_t(i * n + i)]), nj = std::sqrt(lin[size_t(j * n + j)]);
      if (ni > 0 && nj > 0) poly[size_t(i * n + j)] = ni * nj * eval_polynomial(c, lin[size_t(i * n + j)] / (ni * nj)) / double(d);
    }
  for (SketchTransform t : {SketchTransform::fourier, SketchTransform::hadamard}) {
    SCOPED_TRACE(int(t));
    check_unbiased(
        [&](std::uint64_t seed) {
          NtkSketch s({d, m, depth, q, 4, seed, t});
          Vec f(size_t(n * m));
          s.transform(x.data(), n, f.data());
          return gram(f, n, m);
        },
        poly, 0.08);
  }
}

TEST(Features, NtkRandomFeaturesAreUnbiasedAtDepthOne) {
  const index_t n = 6, d = 4, m = 16;
  const Vec x = points(n, d, 8);
  for (auto [leverage, shared] : {std::pair{false, false}, std::pair{true, false}, std::pair{false, true}, std::pair{true, true}}) {
    SCOPED_TRACE(int(leverage) + 10 * int(shared));
    check_unbiased(
        [&](std::uint64_t seed) {
          NtkRandomFeatures s({d, m, 1, 0, 0, leverage, seed, SketchTransform::fourier, shared});
          Vec f(size_t(n * m));
          s.transform(x.data(), n, f.data());
          return gram(f, n, m);
        },
        exact_ntk(x, n, d, 1), 0.05);
  }
}

TEST(Features, LargeFeatureMapsApproximateTheExactNtk) {
  // One draw at a large dimension against the exact kernel of the spec: the fit error and the
  // sketch's variance together, for both maps and depths 1-3.
  const index_t n = 24, d = 16;
  Vec x = test::random_vector<double>(n * d, 9);
  for (double& v : x) v = std::abs(v);  // non-negative inputs like images: cos θ in [0, 1]
  for (int depth : {1, 2, 3}) {
    SCOPED_TRACE(depth);
    const Vec exact = exact_ntk(x, n, d, depth);
    const index_t m = 8192;
    Vec f(size_t(n * m));
    for (SketchTransform t : {SketchTransform::fourier, SketchTransform::hadamard}) {
      NtkSketch({d, m, depth, 8, 0, 1, t}).transform(x.data(), n, f.data());
      const double e_sketch = rel_frobenius(gram(f, n, m), exact);
      NtkRandomFeatures({d, m, depth, 0, 0, true, 1, t, false}).transform(x.data(), n, f.data());
      const double e_rf = rel_frobenius(gram(f, n, m), exact);
      NtkRandomFeatures({d, m, depth, 0, 0, true, 1, t, true}).transform(x.data(), n, f.data());
      const double e_shared = rel_frobenius(gram(f, n, m), exact);
      std::cout << "[ info ] depth " << depth << ", m = " << m << ", transform " << int(t) << ": NTKSketch error "
                << e_sketch << ", NTKRF error " << e_rf << " (shared projections, the default: " << e_shared << ")\n";
      // The real Hadamard samples have more variance per output than the complex Fourier ones (a product
      // of two real samples has relative variance 8 against 3 for two complex ones at half the count).
      const double limit = t == SketchTransform::fourier ? 0.05 : 0.1;
      EXPECT_LT(e_sketch, limit);
      EXPECT_LT(e_rf, limit);
      EXPECT_LT(e_shared, limit);
    }
  }
}

// ---- gradient sketches ----

// The eNTK of `mode` by the library's empirical_ntk (Jacobian contraction, a separate code path),
// flattened: pntk (n, n); full (n, n, O, O) reordered to (n·O, n·O) to match features (n, O, m).
Vec exact_entk(const Network& net, const std::vector<double>& theta, const Array<double>& x, EntkMode mode) {
  EntkOptions o;
  o.mode = mode;
  const Array<double> k = empirical_ntk(net, theta, x, nullptr, o);
  const index_t n = x.dim(0);
  if (mode.kind != EntkMode::full) return Vec(k.data(), k.data() + k.size());
  const index_t O = net.output_size(), r = n * O;
  Vec out(size_t(r * r));
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j)
      for (index_t a = 0; a < O; ++a)
        for (index_t b = 0; b < O; ++b) out[size_t((i * O + a) * r + j * O + b)] = k[((i * n + j) * O + a) * O + b];
  return out;
}

TEST(Features, GradientSketchIsUnbiasedForTheEmpiricalKernel) {
  Network net("Dense(6, b_std=0.1), Relu, Dense(3)", Shape{4});
  const std::vector<double> theta = net.init<double>(3);
  const index_t n = 5, m = 16;
  const Array<double> x(Shape{n, 4}, test::random_vector<double>(n * 4, 4));
  for (auto [mode, projection] : {std::pair{EntkMode{EntkMode::pntk}, GradientProjection::srht},
                                  std::pair{EntkMode{EntkMode::pntk}, GradientProjection::countsketch},
                                  std::pair{EntkMode{EntkMode::full}, GradientProjection::hadamard}}) {
    SCOPED_TRACE(to_string(mode) + " " + std::to_string(int(projection)));
    const index_t rows = mode.kind == EntkMode::full ? n * 3 : n;
    check_unbiased(
        [&](std::uint64_t seed) {
          GradientSketch g(net, theta, {m, mode, projection, seed});
          Vec f(size_t(rows * m));
          g.transform(x.data(), n, f.data());
          return gram(f, rows, m);
        },
        exact_entk(net, theta, x, mode), 0.08);
  }
}

TEST(Features, GradientSketchOfAConvNetApproximatesItsPntk) {
  Network net("Conv(8, 3, padding=SAME, b_std=0), Relu, GlobalAvgPool, Dense(4, b_std=0)", Shape{6, 6, 1},
              NetworkDefaults{.parameterization = Parameterization::standard});
  const std::vector<double> theta = net.init<double>(0);
  const index_t n = 12, m = 16384;
  const Array<double> x(Shape{n, 6, 6, 1}, test::random_vector<double>(n * 36, 8));
  const Vec exact = exact_entk(net, theta, x, EntkMode{EntkMode::pntk});
  for (auto projection : {GradientProjection::srht, GradientProjection::hadamard, GradientProjection::countsketch}) {
    Vec f(size_t(n * m));
    GradientSketch(net, theta, {m, EntkMode{EntkMode::pntk}, projection, 1}).transform(x.data(), n, f.data());
    const double e = rel_frobenius(gram(f, n, m), exact);
    std::cout << "[ info ] projection " << int(projection) << ", m = " << m << ": error " << e << "\n";
    EXPECT_LT(e, 0.05);
  }
  // Deterministic across threads and batches, and bad input.
  GradientSketch g(net, theta, {32, EntkMode{EntkMode::pntk}, GradientProjection::srht, 2});
  check_deterministic(n, 32, [&](index_t r, index_t c, double* o) { g.transform(x.data() + r * 36, c, o); });
  EXPECT_THROW(GradientSketch(net, theta, {32, EntkMode{EntkMode::trace}, GradientProjection::srht, 2}), InvalidArgument);
  EXPECT_THROW(GradientSketch(net, std::vector<double>(3), {32, EntkMode{EntkMode::pntk}, GradientProjection::srht, 2}),
               InvalidArgument);
}

// ---- CNTKSketch ----

std::string cntk_spec(int depth, int filter, bool same) {
  std::string s;
  for (int h = 0; h < depth; ++h)
    s += "Conv(8, " + std::to_string(filter) + ", padding=" + (same ? "SAME" : "VALID") +
         ", W_std=1.4142135623730951, b_std=none), Relu, ";
  return s + "GlobalAvgPool, Dense(1, W_std=1, b_std=none)";
}

TEST(Features, CntkSketchApproximatesTheExactCntkOfItsSpec) {
  const index_t n = 8, H = 6, W = 6, C = 2;
  Vec x = test::random_vector<double>(n * H * W * C, 12);
  for (double& v : x) v = std::abs(v);  // images: non-negative pixels
  const Array<double> images(Shape{n, H, W, C}, x);
  for (auto [depth, filter, same] : {std::tuple{2, 3, true}, std::tuple{2, 3, false}, std::tuple{1, 2, true}}) {
    SCOPED_TRACE(cntk_spec(depth, filter, same));
    Network net(cntk_spec(depth, filter, same), Shape{H, W, C});
    const Array<double> k = infinite_kernel(net, images, nullptr);
    const Vec exact(k.data(), k.data() + k.size());
    double previous = 1e9;
    for (index_t m : {256, 4096}) {
      CntkSketch sk({H, W, C, m, depth, filter, same, 4, 0, 7});
      Vec f(size_t(n * m));
      sk.transform(x.data(), n, f.data());
      const double e = rel_frobenius(gram(f, n, m), exact);
      std::cout << "[ info ] depth " << depth << ", " << filter << "x" << filter << (same ? " SAME" : " VALID")
                << ", m = " << m << ": CNTKSketch error " << e << "\n";
      if (m == 4096) EXPECT_LT(e, 0.1);
      EXPECT_LT(e, previous);  // the error falls as the sketch widens
      previous = e;
    }
  }
  CntkSketch sk({H, W, C, 64, 2, 3, true, 4, 0, 7});
  check_deterministic(n, 64, [&](index_t r, index_t c, double* o) { sk.transform(x.data() + r * H * W * C, c, o); });
  EXPECT_THROW(CntkSketch({H, W, C, 64, 4, 3, false, 4, 0, 7}), InvalidArgument);  // 4 VALID 3x3 layers on 6x6
  EXPECT_THROW(CntkSketch({H, W, C, 62, 2, 3, true, 4, 0, 7}), InvalidArgument);   // not a multiple of 4
  EXPECT_THROW(CntkSketch({H, W, C, 64, 2, 3, true, 3, 0, 7}), InvalidArgument);   // degree not a power of two
}

TEST(Features, LayerwiseNtkSketchIsCntkSketchOfOnePixel) {
  // The paper's Algorithm 1 as CNTKSketch of 1 x 1 images with d channels and 1 x 1 filters, against
  // the exact NTK of the dense spec (the same kernel as NTKSketch's).
  const index_t n = 24, d = 16, m = 8192;
  Vec x = test::random_vector<double>(n * d, 9);
  for (int depth : {1, 2, 3}) {
    SCOPED_TRACE(depth);
    const Vec exact = exact_ntk(x, n, d, depth);
    Vec f(size_t(n * m));
    CntkSketch({1, 1, d, m, depth, 1, true, 2, 0, 1, SketchTransform::fourier}).transform(x.data(), n, f.data());
    const double e = rel_frobenius(gram(f, n, m), exact);
    std::cout << "[ info ] layer-wise NTKSketch, depth " << depth << ", m = " << m << ": error " << e << "\n";
    EXPECT_LT(e, 0.1);  // signed inputs: the first layer's fit spans [−1, 1]
  }
}

TEST(Features, OutputDependsOnlyOnSeedAndRow) {
  const index_t n = 300, d = 10, m = 16;  // n > the internal batch of 256 rows
  const Vec x = test::random_vector<double>(n * d, 61);
  NtkSketch s({d, m, 2, 4, 0, 5});
  check_deterministic(n, m, [&](index_t r, index_t c, double* o) { s.transform(x.data() + r * d, c, o); });
  NtkRandomFeatures rf({d, m, 2, 0, 0, true, 5});
  check_deterministic(n, m, [&](index_t r, index_t c, double* o) { rf.transform(x.data() + r * d, c, o); });
  NtkSketch hs({d, m, 2, 4, 0, 5, SketchTransform::hadamard});
  check_deterministic(n, m, [&](index_t r, index_t c, double* o) { hs.transform(x.data() + r * d, c, o); });
}

TEST(Features, BadInputThrows) {
  EXPECT_THROW(NtkSketch({4, 16, 2, 3, 0, 0}), InvalidArgument);   // degree not a power of two
  EXPECT_THROW(NtkSketch({4, 15, 2, 4, 0, 0}), InvalidArgument);   // odd feature dimension
  EXPECT_THROW(NtkSketch({4, 16, 0, 4, 0, 0}), InvalidArgument);   // depth 0
  EXPECT_THROW(NtkSketch({0, 16, 1, 4, 0, 0}), InvalidArgument);
  EXPECT_THROW(NtkSketch({4, 16, 1, 4, 3, 0}), InvalidArgument);   // odd PolySketch width
  EXPECT_THROW(NtkRandomFeatures({4, 16, 0, 0, 0, true, 0}), InvalidArgument);
  EXPECT_THROW(NtkRandomFeatures({4, 16, 1, 15, 0, true, 0}), InvalidArgument);  // leaves 1 for the tensor sketch
  EXPECT_THROW(NtkRandomFeatures({4, 2, 1, 0, 0, true, 0}), InvalidArgument);    // too small for both parts
  EXPECT_THROW(NtkRandomFeatures({4, 16, 1, 4, 8, true, 0}), InvalidArgument);   // shared projections: m0 = m1
  EXPECT_NO_THROW(NtkRandomFeatures({4, 16, 1, 4, 8, true, 0, SketchTransform::fourier, false}));
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Vec x{1, 2, 3, 4, 5, 6, 7, nan}, out(32);
  EXPECT_THROW(NtkSketch({4, 16, 1, 4, 0, 0}).transform(x.data(), 2, out.data()), InvalidArgument);
  EXPECT_THROW(NtkRandomFeatures({4, 16, 1, 0, 0, true, 0}).transform(x.data(), 2, out.data()), InvalidArgument);
}

}  // namespace
}  // namespace ntk
