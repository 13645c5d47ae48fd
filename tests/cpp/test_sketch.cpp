// Sketch operators and random features: unbiasedness over seeds against the exact kernels (with the
// error of the mean shrinking like 1/√seeds), determinism across threads and batch splits, bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <iostream>
#include <limits>
#include <numbers>
#include <string>

#include "harness.hpp"
#include "sketch_oracle.hpp"
#include "ntk/error.hpp"
#include "ntk/parallel.hpp"
#include "ntk/rng.hpp"
#include "ntk/sketch.hpp"

namespace ntk {
namespace {

using test::gram;
using test::linear_gram;
using test::check_unbiased;
using test::check_deterministic;
using Vec = std::vector<double>;

double kappa0(double t) { return (std::numbers::pi - std::acos(t)) / std::numbers::pi; }
double kappa1(double t) { return (std::sqrt(1 - t * t) + t * (std::numbers::pi - std::acos(t))) / std::numbers::pi; }

// The arc-cosine kernel of REFERENCE.md section 4 (c_σ = 2): κ0(cos θ), resp. ‖x‖‖y‖·κ1(cos θ).
Vec arccos_gram(const Vec& x, index_t n, index_t d, int order) {
  const Vec lin = linear_gram(x, n, d);
  Vec g(size_t(n * n));
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) {
      const double ni = std::sqrt(lin[size_t(i * n + i)]), nj = std::sqrt(lin[size_t(j * n + j)]);
      const double t = std::clamp(lin[size_t(i * n + j)] / (ni * nj), -1.0, 1.0);
      g[size_t(i * n + j)] = order == 0 ? kappa0(t) : ni * nj * kappa1(t);
    }
  return g;
}

const index_t kN = 6;  // points per Gram

const SketchTransform kTransforms[] = {SketchTransform::fourier, SketchTransform::hadamard};

TEST(Sketch, SrhtUnbiasedForInnerProduct) {
  for (SketchTransform t : kTransforms)
  for (index_t d : {7, 13}) {  // padded to FFT lengths 8 and 15 (radix 2 and radices 3, 5); Hadamard 8, 16
    SCOPED_TRACE(int(t));
    const Vec x = test::random_vector<double>(kN * d, 11 + std::uint64_t(d));
    const index_t m = 8;
    check_unbiased(
        [&](std::uint64_t seed) {
          Srht s({d, m, seed, 0, t});
          Vec f(size_t(kN * m));
          s.apply(x.data(), kN, f.data());
          return gram(f, kN, m);
        },
        linear_gram(x, kN, d), 0.05);
  }
}

// Uniform frequency sampling alone is already unbiased (Parseval), so the tests above cannot see the
// random signs D; their job is to spread a spiky spectrum. The constant vector has all its energy at
// frequency 0: without D one complex sample estimates ‖x‖² by L·‖x‖² or 0 (relative variance L − 1 =
// 7); with D every frequency carries ‖x‖² in expectation and the relative variance is at most ≈ 1.75.
TEST(Sketch, SrhtRandomSignsSpreadASpikySpectrum) {
  const index_t d = 8, m = 2;
  const Vec x(static_cast<size_t>(d), 1.0);
  const int seeds = 1600;
  double sum = 0, sum2 = 0;
  for (int s = 0; s < seeds; ++s) {
    Vec f(static_cast<size_t>(m));
    Srht({d, m, std::uint64_t(s), 0}).apply(x.data(), 1, f.data());
    const double r = (f[0] * f[0] + f[1] * f[1]) / double(d);  // ‖S(x)‖² / ‖x‖²
    sum += r;
    sum2 += r * r;
  }
  const double mean = sum / seeds, var = sum2 / seeds - mean * mean;
  std::cout << "[ info ] constant vector, one complex sample: mean " << mean << ", relative variance " << var << "\n";
  EXPECT_NEAR(mean, 1.0, 0.1);
  EXPECT_LT(var, 2.5);
}

TEST(Sketch, TensorSrhtUnbiasedForProductOfInnerProducts) {
  const index_t d1 = 5, d2 = 3, m = 8;
  const Vec x = test::random_vector<double>(kN * d1, 21), y = test::random_vector<double>(kN * d2, 22);
  const Vec gx = linear_gram(x, kN, d1), gy = linear_gram(y, kN, d2);
  Vec exact(gx.size());
  for (size_t k = 0; k < exact.size(); ++k) exact[k] = gx[k] * gy[k];
  for (SketchTransform t : kTransforms) {
    SCOPED_TRACE(int(t));
    check_unbiased(
        [&](std::uint64_t seed) {
          TensorSrht s({d1, d2, m, seed, 0, t});
          Vec f(size_t(kN * m));
          s.apply(x.data(), y.data(), kN, f.data());
          return gram(f, kN, m);
        },
        exact, 0.08);
  }
}

TEST(Sketch, CountSketchUnbiasedForInnerProduct) {
  const index_t d = 7, m = 5;
  const Vec x = test::random_vector<double>(kN * d, 31);
  check_unbiased(
      [&](std::uint64_t seed) {
        CountSketch s({d, m, seed, 0});
        Vec f(size_t(kN * m));
        s.apply(x.data(), kN, f.data());
        return gram(f, kN, m);
      },
      linear_gram(x, kN, d), 0.05);
}

TEST(Sketch, TensorSketchUnbiasedForProductOfInnerProducts) {
  const index_t d1 = 5, d2 = 3, m = 7;  // conv length 13 -> FFT length 15
  const Vec x = test::random_vector<double>(kN * d1, 41), y = test::random_vector<double>(kN * d2, 42);
  const Vec gx = linear_gram(x, kN, d1), gy = linear_gram(y, kN, d2);
  Vec exact(gx.size());
  for (size_t k = 0; k < exact.size(); ++k) exact[k] = gx[k] * gy[k];
  check_unbiased(
      [&](std::uint64_t seed) {
        TensorSketch s({d1, d2, m, seed, 0});
        Vec f(size_t(kN * m));
        s.apply(x.data(), y.data(), kN, f.data());
        return gram(f, kN, m);
      },
      exact, 0.08);
}

// With d1 = d2 = 1 the sketch is the scalar x·y times a random sign at one random position, so the
// Gram is exact: checks the FFT convolution and its 1/length normalization.
TEST(Sketch, TensorSketchOfScalarsIsExact) {
  const Vec x{1.5, -2.0, 0.25}, y{3.0, 0.5, -1.0};
  TensorSketch s({1, 1, 4, 9, 0});
  Vec f(12);
  s.apply(x.data(), y.data(), 3, f.data());
  const Vec g = gram(f, 3, 4);
  for (index_t i = 0; i < 3; ++i)
    for (index_t j = 0; j < 3; ++j) EXPECT_NEAR(g[size_t(i * 3 + j)], x[size_t(i)] * x[size_t(j)] * y[size_t(i)] * y[size_t(j)], 1e-12);
}

TEST(Sketch, ArcCosineFeaturesUnbiasedForArcCosineKernels) {
  const index_t d = 4, m = 8;
  const Vec x = test::random_vector<double>(kN * d, 51);
  for (int variant : {0, 1, 2}) {  // order 0, order 1, order 1 by leverage-score sampling
    SCOPED_TRACE(variant);
    const int order = variant == 0 ? 0 : 1;
    check_unbiased(
        [&](std::uint64_t seed) {
          ArcCosineFeatures s({d, m, order, seed, 0, variant == 2});
          Vec f(size_t(kN * m));
          s.apply(x.data(), kN, f.data());
          return gram(f, kN, m);
        },
        arccos_gram(x, kN, d, order), 0.05);
  }
}

TEST(Sketch, PolySketchUnbiasedForPowersOfInnerProduct) {
  const index_t d = 5, m = 32;
  const int q = 4;
  const Vec x = test::random_vector<double>(kN * d, 71, 1.0 / std::sqrt(double(d)));  // ⟨x, y⟩ of order 1
  const Vec lin = linear_gram(x, kN, d);
  for (SketchTransform t : kTransforms)
  for (int j = 0; j <= q; ++j) {
    SCOPED_TRACE(j + 100 * int(t));
    Vec exact(lin.size());
    for (size_t k = 0; k < lin.size(); ++k) exact[k] = std::pow(lin[k], j);
    check_unbiased(
        [&](std::uint64_t seed) {
          PolySketch s({d, m, q, seed, 0, t});
          Vec all(static_cast<size_t>(kN * (q + 1) * m)), f(static_cast<size_t>(kN * m));
          s.apply_degrees(x.data(), kN, all.data());
          for (index_t i = 0; i < kN; ++i)
            std::copy_n(all.begin() + (i * (q + 1) + j) * m, m, f.begin() + i * m);
          return gram(f, kN, m);
        },
        exact, 0.1);
  }
  // apply() is the top degree of apply_degrees().
  PolySketch s({d, m, q, 3, 0});
  Vec all(static_cast<size_t>(kN * (q + 1) * m)), top(static_cast<size_t>(kN * m));
  s.apply_degrees(x.data(), kN, all.data());
  s.apply(x.data(), kN, top.data());
  for (index_t i = 0; i < kN; ++i)
    for (index_t k = 0; k < m; ++k) EXPECT_EQ(top[size_t(i * m + k)], all[size_t((i * (q + 1) + q) * m + k)]);
}

TEST(Sketch, PolySketchDegreesEqualTheTreeEvaluatedNodeByNode) {
  // apply_degrees transforms each node input once per row and shares it across degrees; here every
  // degree j is the plain tree: leaves 0..j−1 fed x and the rest e1, each node a TensorSRHT::apply of
  // its two children (the nodes built as PolySketch names them).
  const index_t d = 7, m = 24, n = 3;
  const int q = 8;
  const Vec x = test::random_vector<double>(n * d, 5);
  for (SketchTransform t : kTransforms) {
    SCOPED_TRACE(int(t));
    const std::uint64_t seed = 11, index = 4;
    PolySketch s({d, m, q, seed, index, t});
    Vec all(static_cast<size_t>(n * (q + 1) * m));
    s.apply_degrees(x.data(), n, all.data());
    std::vector<TensorSrht> nodes;
    for (int l = 1, i = 0; (1 << l) <= q; ++l)
      for (int k = 0; k < (q >> l); ++k, ++i) {
        const std::string name = "polysketch." + std::to_string(index) + ".node." + std::to_string(i);
        nodes.emplace_back(TensorSketchParams{l == 1 ? d : m, l == 1 ? d : m, m, seed, stream_id(name.c_str()), t});
      }
    Vec e1(static_cast<size_t>(d), 0.0);
    e1[0] = 1.0;
    for (index_t r = 0; r < n; ++r)
      for (int j = 0; j <= q; ++j) {
        std::vector<Vec> level;
        for (int leaf = 0; leaf < q; ++leaf) level.push_back(leaf < j ? Vec(x.begin() + r * d, x.begin() + (r + 1) * d) : e1);
        size_t node = 0;
        while (level.size() > 1) {
          std::vector<Vec> up;
          for (size_t k = 0; k < level.size(); k += 2) {
            up.emplace_back(static_cast<size_t>(m));
            nodes[node++].apply(level[k].data(), level[k + 1].data(), 1, up.back().data());
          }
          level = std::move(up);
        }
        for (index_t k = 0; k < m; ++k)
          EXPECT_NEAR(all[size_t((r * (q + 1) + j) * m + k)], level[0][size_t(k)], 1e-12) << "row " << r << " degree " << j;
      }
  }
}

TEST(Sketch, OutputDependsOnlyOnSeedAndRow) {
  const index_t n = 37, d = 10, d2 = 6, m = 12;
  const Vec x = test::random_vector<double>(n * d, 61), y = test::random_vector<double>(n * d2, 62);
  Srht srht({d, m, 5, 0});
  check_deterministic(n, m, [&](index_t r, index_t c, double* o) { srht.apply(x.data() + r * d, c, o); });
  TensorSrht tsrht({d, d2, m, 5, 0});
  check_deterministic(n, m, [&](index_t r, index_t c, double* o) { tsrht.apply(x.data() + r * d, y.data() + r * d2, c, o); });
  CountSketch cs({d, m, 5, 0});
  check_deterministic(n, m, [&](index_t r, index_t c, double* o) { cs.apply(x.data() + r * d, c, o); });
  TensorSketch ts({d, d2, m, 5, 0});
  check_deterministic(n, m, [&](index_t r, index_t c, double* o) { ts.apply(x.data() + r * d, y.data() + r * d2, c, o); });
  PolySketch ps({d, m, 4, 5, 0});
  check_deterministic(n, m, [&](index_t r, index_t c, double* o) { ps.apply(x.data() + r * d, c, o); });
  Srht hsrht({d, m - 1, 5, 0, SketchTransform::hadamard});  // any m with Hadamard
  check_deterministic(n, m - 1, [&](index_t r, index_t c, double* o) { hsrht.apply(x.data() + r * d, c, o); });
  PolySketch hps({d, m, 4, 5, 0, SketchTransform::hadamard});
  check_deterministic(n, m, [&](index_t r, index_t c, double* o) { hps.apply(x.data() + r * d, c, o); });
  for (int variant : {0, 1, 2}) {
    ArcCosineFeatures rf({d, m, variant == 0 ? 0 : 1, 5, 0, variant == 2});
    check_deterministic(n, m, [&](index_t r, index_t c, double* o) { rf.apply(x.data() + r * d, c, o); });
  }
  // The same parameters give the same operator; another seed or index another one.
  Vec a(static_cast<size_t>(m)), b(a), c(a), e(a);
  Srht({d, m, 5, 0}).apply(x.data(), 1, a.data());
  Srht({d, m, 5, 0}).apply(x.data(), 1, b.data());
  Srht({d, m, 6, 0}).apply(x.data(), 1, c.data());
  Srht({d, m, 5, 1}).apply(x.data(), 1, e.data());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a, e);
}

TEST(Sketch, BadInputThrows) {
  EXPECT_THROW(Srht({0, 4, 1, 0}), InvalidArgument);
  EXPECT_THROW(Srht({3, 5, 1, 0}), InvalidArgument);  // odd m: [Re, Im] pairs
  EXPECT_THROW(Srht({3, 0, 1, 0}), InvalidArgument);
  EXPECT_THROW(TensorSrht({3, 4, 7, 1, 0}), InvalidArgument);
  EXPECT_THROW(TensorSrht({3, 0, 8, 1, 0}), InvalidArgument);
  EXPECT_THROW(CountSketch({0, 4, 1, 0}), InvalidArgument);
  EXPECT_THROW(TensorSketch({2, 2, 0, 1, 0}), InvalidArgument);
  EXPECT_THROW(ArcCosineFeatures({3, 4, 2, 1, 0}), InvalidArgument);
  EXPECT_THROW(PolySketch({3, 8, 3, 1, 0}), InvalidArgument);  // degree not a power of two
  EXPECT_THROW(PolySketch({3, 8, 0, 1, 0}), InvalidArgument);
  EXPECT_THROW(PolySketch({3, 7, 2, 1, 0}), InvalidArgument);
  EXPECT_THROW(ArcCosineFeatures({0, 4, 1, 1, 0}), InvalidArgument);
  EXPECT_THROW(ArcCosineFeatures({3, 4, 0, 1, 0, true}), InvalidArgument);  // leverage sampling is for order 1

  const double nan = std::numeric_limits<double>::quiet_NaN();
  Vec x{1, 2, 3, 4, nan, 6}, y{1, 2, 3, 4, 5, 6}, out(16);
  EXPECT_THROW(Srht({3, 4, 1, 0}).apply(x.data(), 2, out.data()), InvalidArgument);
  EXPECT_THROW(CountSketch({3, 4, 1, 0}).apply(x.data(), 2, out.data()), InvalidArgument);
  EXPECT_THROW(ArcCosineFeatures({3, 4, 1, 1, 0}).apply(x.data(), 2, out.data()), InvalidArgument);
  EXPECT_THROW(TensorSrht({3, 3, 4, 1, 0}).apply(y.data(), x.data(), 2, out.data()), InvalidArgument);
  EXPECT_THROW(TensorSketch({3, 3, 4, 1, 0}).apply(x.data(), y.data(), 2, out.data()), InvalidArgument);
  EXPECT_THROW(PolySketch({3, 4, 2, 1, 0}).apply(x.data(), 2, out.data()), InvalidArgument);
  EXPECT_NO_THROW(Srht({3, 4, 1, 0}).apply(y.data(), 2, out.data()));
}

}  // namespace
}  // namespace ntk
