// Spectra, Lanczos, comparisons and the pNTK report against independent oracles: kernels built
// from known eigenvalues and an explicit orthogonal matrix, a cyclic Jacobi eigenvalue iteration
// written here, Kronecker products and target Grams formed explicitly, and a Gaussian elimination
// for the ridge systems.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>
#include <vector>

#include "harness.hpp"
#include "ntk/empirical.hpp"
#include "ntk/error.hpp"
#include "ntk/kernel_block.hpp"
#include "ntk/network.hpp"
#include "ntk/spectrum.hpp"

namespace ntk {
namespace {

using Matrix = std::vector<double>;  // row-major n × n

// H = I − 2 v vᵀ / ‖v‖², an explicit orthogonal (and symmetric) matrix.
Matrix householder(index_t n, std::uint64_t seed) {
  const auto v = test::random_vector<double>(n, seed);
  const double vv = test::dot(v, v);
  Matrix h(size_t(n * n));
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) h[size_t(i * n + j)] = (i == j ? 1.0 : 0.0) - 2 * v[size_t(i)] * v[size_t(j)] / vv;
  return h;
}

// Q diag(λ) Qᵀ for an orthogonal Q made of two Householder reflections (so it is not symmetric itself).
Array<double> kernel_with_eigenvalues(const std::vector<double>& lambda, std::uint64_t seed) {
  const index_t n = index_t(lambda.size());
  const Matrix h1 = householder(n, seed), h2 = householder(n, seed + 1);
  Matrix q(size_t(n * n), 0.0);
  for (index_t i = 0; i < n; ++i)
    for (index_t k = 0; k < n; ++k)
      for (index_t j = 0; j < n; ++j) q[size_t(i * n + j)] += h1[size_t(i * n + k)] * h2[size_t(k * n + j)];
  Array<double> k(Shape{n, n});
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) {
      double s = 0;
      for (index_t l = 0; l < n; ++l) s += q[size_t(i * n + l)] * lambda[size_t(l)] * q[size_t(j * n + l)];
      k[i * n + j] = s;
    }
  // Exactly symmetric, as a computed kernel is.
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < i; ++j) k[i * n + j] = k[j * n + i];
  return k;
}

// Cyclic Jacobi rotations until the off-diagonal vanishes; the eigenvalues ascending.
std::vector<double> jacobi_eigenvalues(Matrix a, index_t n) {
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0;
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j)
        if (i != j) off += a[size_t(i * n + j)] * a[size_t(i * n + j)];
    if (off < 1e-26) break;
    for (index_t p = 0; p < n; ++p)
      for (index_t q = p + 1; q < n; ++q) {
        const double apq = a[size_t(p * n + q)];
        if (std::abs(apq) < 1e-300) continue;
        const double theta = (a[size_t(q * n + q)] - a[size_t(p * n + p)]) / (2 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (index_t k = 0; k < n; ++k) {  // columns p, q
          const double akp = a[size_t(k * n + p)], akq = a[size_t(k * n + q)];
          a[size_t(k * n + p)] = c * akp - s * akq;
          a[size_t(k * n + q)] = s * akp + c * akq;
        }
        for (index_t k = 0; k < n; ++k) {  // rows p, q
          const double apk = a[size_t(p * n + k)], aqk = a[size_t(q * n + k)];
          a[size_t(p * n + k)] = c * apk - s * aqk;
          a[size_t(q * n + k)] = s * apk + c * aqk;
        }
      }
  }
  std::vector<double> w(static_cast<size_t>(n));
  for (index_t i = 0; i < n; ++i) w[size_t(i)] = a[size_t(i * n + i)];
  std::sort(w.begin(), w.end());
  return w;
}

void expect_eigenvalues(const std::vector<double>& got, std::vector<double> want, double tol) {
  std::sort(want.begin(), want.end());
  ASSERT_EQ(got.size(), want.size());
  const double scale = std::max(std::abs(want.front()), std::abs(want.back()));
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol * scale) << "eigenvalue " << i;
}

// A KernelBlocks over an array in memory, written here so that the tests do not depend on the
// library's factories; it records the largest block of rows asked for.
class TestBlocks : public KernelBlocks {
 public:
  explicit TestBlocks(const Array<double>& k) : k_(k) {}
  index_t rows() const override { return k_.dim(0); }
  index_t cols() const override { return k_.dim(1); }
  bool symmetric() const override { return true; }
  void block(std::span<const index_t> ri, std::span<const index_t> ci, double* out, int) const override {
    max_rows = std::max(max_rows, index_t(ri.size()));
    ++calls;
    for (size_t r = 0; r < ri.size(); ++r)
      for (size_t c = 0; c < ci.size(); ++c) out[r * ci.size() + c] = k_[ri[r] * k_.dim(1) + ci[c]];
  }
  std::string describe() const override { return "test kernel"; }
  mutable index_t max_rows = 0, calls = 0;

 private:
  const Array<double>& k_;
};

TEST(Spectrum, EigenvaluesAndDiagnosticsMatchClosedForm) {
  const std::vector<double> lambda = {5.0, 0.5, 2.0, 1e-3, 3.0, 0.25, 7.5, 1.0, 0.1, 4.0, 0.75};
  const Array<double> k = kernel_with_eigenvalues(lambda, 11);
  const KernelSpectrum s = spectrum(k);
  expect_eigenvalues(s.eigenvalues, lambda, 1e-12);
  const double sum = std::accumulate(lambda.begin(), lambda.end(), 0.0);
  double sum2 = 0, entropy = 0;
  for (double l : lambda) sum2 += l * l, entropy -= (l / sum) * std::log(l / sum);
  EXPECT_NEAR(s.lambda_max, 7.5, 1e-12);
  EXPECT_NEAR(s.lambda_min, 1e-3, 1e-12);
  EXPECT_NEAR(s.condition, 7500.0, 1e-6);
  EXPECT_TRUE(s.positive_definite);
  EXPECT_NEAR(s.trace, sum, 1e-12);
  EXPECT_NEAR(s.frobenius, std::sqrt(sum2), 1e-12);
  EXPECT_NEAR(s.effective_rank, std::exp(entropy), 1e-10);
  EXPECT_NEAR(s.trace_over_lambda_max, sum / 7.5, 1e-12);
  EXPECT_FALSE(s.alignment.has_value());

  // float32 input: the same eigenvalues to float32 rounding of the entries.
  const KernelSpectrum s32 = spectrum(cast<float>(k));
  expect_eigenvalues(s32.eigenvalues, lambda, 1e-6);

  // The extremes of the effective rank: a multiple of the identity and a rank-one kernel.
  const KernelSpectrum flat = spectrum(kernel_with_eigenvalues(std::vector<double>(9, 2.0), 3));
  EXPECT_NEAR(flat.effective_rank, 9.0, 1e-9);
  std::vector<double> one(9, 0.0);
  one[4] = 3.0;
  EXPECT_NEAR(spectrum(kernel_with_eigenvalues(one, 5)).effective_rank, 1.0, 1e-9);
}

TEST(Spectrum, IndefiniteKernelIsFlagged) {
  const std::vector<double> lambda = {2.0, -0.5, 1.0, 0.0, 3.0};
  const KernelSpectrum s = spectrum(kernel_with_eigenvalues(lambda, 21));
  expect_eigenvalues(s.eigenvalues, lambda, 1e-12);
  EXPECT_FALSE(s.positive_definite);
  EXPECT_TRUE(std::isinf(s.condition));
  // Over the positive eigenvalues 2, 1, 3 only.
  double entropy = 0;
  for (double l : {2.0, 1.0, 3.0}) entropy -= (l / 6) * std::log(l / 6);
  EXPECT_NEAR(s.effective_rank, std::exp(entropy), 1e-9);
}

TEST(Spectrum, AlignmentMatchesDirectFormula) {
  const index_t n = 8, o = 3;
  const Array<double> k = kernel_with_eigenvalues({1, 2, 3, 4, 0.5, 0.25, 6, 1.5}, 31);
  const Array<double> y(Shape{n, o}, test::random_vector<double>(n * o, 32));
  double kyy = 0, kk = 0, yy = 0;
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) {
      double g = 0;  // (Y Yᵀ)[i, j]
      for (index_t c = 0; c < o; ++c) g += y[i * o + c] * y[j * o + c];
      kyy += k[i * n + j] * g;
      kk += k[i * n + j] * k[i * n + j];
      yy += g * g;
    }
  const double want = kyy / std::sqrt(kk * yy);
  const KernelSpectrum s = spectrum(k, &y);
  ASSERT_TRUE(s.alignment.has_value());
  EXPECT_NEAR(*s.alignment, want, 1e-12);
  EXPECT_NEAR(kernel_alignment(k, y), want, 1e-12);
  // A kernel equal to YYᵀ aligns perfectly.
  Array<double> g(Shape{n, n});
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j)
      for (index_t c = 0; c < o; ++c) g[i * n + j] += y[i * o + c] * y[j * o + c];
  EXPECT_NEAR(kernel_alignment(g, y), 1.0, 1e-12);
  // The statistics from blocks agree.
  const TestBlocks blocks(k);
  const KernelSpectrum b = kernel_statistics(blocks, &y, 3);
  EXPECT_NEAR(*b.alignment, want, 1e-12);
  EXPECT_NEAR(b.trace, s.trace, 1e-12);
  EXPECT_NEAR(b.frobenius, s.frobenius, 1e-12);
}

TEST(Spectrum, RejectsBadKernels) {
  EXPECT_THROW(spectrum(Array<double>(Shape{3, 4})), InvalidArgument);
  EXPECT_THROW(spectrum(Array<double>(Shape{3, 3, 1})), InvalidArgument);
  Array<double> k = kernel_with_eigenvalues({1, 2, 3}, 41);
  k[4] = std::nan("");
  EXPECT_THROW(spectrum(k), InvalidArgument);
  const Array<double> good = kernel_with_eigenvalues({1, 2, 3}, 41);
  const Array<double> y(Shape{4, 1});
  EXPECT_THROW(spectrum(good, &y), InvalidArgument);
}

TEST(Lanczos, TopAndBottomOverBlocksMatchLapack) {
  const index_t n = 60;
  std::vector<double> lambda(static_cast<size_t>(n));
  for (index_t i = 0; i < n; ++i) lambda[size_t(i)] = 0.5 + std::pow(0.9, double(i)) * 10 + 0.01 * double(i);
  const Array<double> k = kernel_with_eigenvalues(lambda, 51);
  const std::vector<double> all = spectrum(k).eigenvalues;
  const TestBlocks blocks(k);
  LanczosOptions o;
  o.count = 4;
  o.block_rows = 7;  // N not a multiple of the block
  const LanczosResult top = lanczos_eigenvalues(blocks, o);
  ASSERT_EQ(top.eigenvalues.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(top.eigenvalues[size_t(i)], all[size_t(n - 4 + i)], 1e-9) << i;
  EXPECT_LE(blocks.max_rows, 7);  // never more than one block of rows at a time
  EXPECT_GT(top.products, 0);
  o.which = LanczosOptions::smallest;
  o.count = 3;
  o.ncv = 40;
  const LanczosResult bottom = lanczos_eigenvalues(blocks, o);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(bottom.eigenvalues[size_t(i)], all[size_t(i)], 1e-8) << i;

  o.count = n;  // all of them is LAPACK's job
  EXPECT_THROW(lanczos_eigenvalues(blocks, o), InvalidArgument);
}

TEST(Lanczos, NotConvergingSaysWhatToDo) {
  const index_t n = 300;
  std::vector<double> lambda(static_cast<size_t>(n));
  for (index_t i = 0; i < n; ++i) lambda[size_t(i)] = 1.0 + double(i) / double(n);  // evenly spread: slow
  const Array<double> k = kernel_with_eigenvalues(lambda, 61);
  const TestBlocks blocks(k);
  LanczosOptions o;
  o.count = 8;
  o.ncv = 10;
  o.max_iterations = 1;
  o.tolerance = 1e-15;
  try {
    lanczos_eigenvalues(blocks, o);
    FAIL() << "expected NumericalError";
  } catch (const NumericalError& e) {
    EXPECT_NE(std::string(e.what()).find("ncv"), std::string::npos) << e.what();
  }
}

TEST(Lanczos, NtkOperatorLambdaMaxMatchesFullEntk) {
  const Network net("Dense(12), Relu, Dense(12), Relu, Dense(3)", Shape{5});
  const std::vector<double> theta = net.init<double>(7);
  const Array<double> x = test::random_batch<double>(6, {5}, 8);
  EntkOptions eo;
  eo.mode = parse_entk_mode("full");
  const Array<double> full = empirical_ntk(net, theta, x, nullptr, eo);  // (6, 6, 3, 3)
  const index_t n = 6, o = 3, d = n * o;
  Matrix m(size_t(d * d));
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j)
      for (index_t a = 0; a < o; ++a)
        for (index_t b = 0; b < o; ++b) m[size_t((i * o + a) * d + j * o + b)] = full[((i * n + j) * o + a) * o + b];
  const std::vector<double> want = jacobi_eigenvalues(m, d);
  const NtkOperator<double> op(net, theta, x);
  LanczosOptions lo;
  lo.count = 2;
  const LanczosResult r = lanczos_eigenvalues(op, lo);
  EXPECT_NEAR(r.eigenvalues[1], want[size_t(d - 1)], 1e-9 * want.back());
  EXPECT_NEAR(r.eigenvalues[0], want[size_t(d - 2)], 1e-9 * want.back());
  // float32 operator: λmax to float32 precision.
  const NtkOperator<float> op32(net, std::vector<float>(theta.begin(), theta.end()), cast<float>(x));
  lo.tolerance = 1e-6;
  EXPECT_NEAR(lanczos_eigenvalues(op32, lo).eigenvalues[1], want.back(), 1e-4 * want.back());
}

// ‖A − B‖_F / ‖B‖_F, λ and condition of two explicit (d × d) matrices, naively.
struct Naive {
  double rel, lmax_ratio, cond_ratio;
};
Naive naive_compare(const Matrix& a, const Matrix& b, index_t d) {
  double num = 0, den = 0;
  for (size_t e = 0; e < a.size(); ++e) num += (a[e] - b[e]) * (a[e] - b[e]), den += b[e] * b[e];
  const auto wa = jacobi_eigenvalues(a, d), wb = jacobi_eigenvalues(b, d);
  return {std::sqrt(num / den), wa.back() / wb.back(), (wa.back() / wa.front()) / (wb.back() / wb.front())};
}

TEST(Compare, MatchesNaiveFormulasIncludingKronecker) {
  const index_t n = 5, o = 3, d = n * o;
  // A PSD full kernel B (n, n, o, o) = G Gᵀ reshaped, and a pNTK-like A (n, n) = its block means.
  const auto g = test::random_vector<double>(d * (d + 2), 71);
  Matrix bm(size_t(d * d), 0.0);
  for (index_t i = 0; i < d; ++i)
    for (index_t j = 0; j < d; ++j)
      for (index_t l = 0; l < d + 2; ++l) bm[size_t(i * d + j)] += g[size_t(i * (d + 2) + l)] * g[size_t(j * (d + 2) + l)];
  Array<double> b4(Shape{n, n, o, o});
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j)
      for (index_t a = 0; a < o; ++a)
        for (index_t c = 0; c < o; ++c) b4[((i * n + j) * o + a) * o + c] = bm[size_t((i * o + a) * d + j * o + c)];
  Array<double> a2(Shape{n, n});
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) {
      double s = 0;
      for (index_t a = 0; a < o; ++a)
        for (index_t c = 0; c < o; ++c) s += b4[((i * n + j) * o + a) * o + c];
      a2[i * n + j] = s / double(o) + (i == j ? 0.3 : 0.0);
    }
  // The Kronecker product formed explicitly.
  Matrix am(size_t(d * d), 0.0);
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j)
      for (index_t a = 0; a < o; ++a) am[size_t((i * o + a) * d + j * o + a)] = a2[i * n + j];

  const Naive want = naive_compare(am, bm, d);
  const KernelComparison c = compare(a2, b4);
  EXPECT_TRUE(c.kronecker);
  EXPECT_EQ(c.outputs, o);
  EXPECT_NEAR(c.relative_frobenius, want.rel, 1e-12);
  EXPECT_NEAR(c.lambda_max_ratio, want.lmax_ratio, 1e-10);
  EXPECT_NEAR(c.condition_ratio, want.cond_ratio, 1e-8 * want.cond_ratio);

  // The other way round: the full kernel as A, the 2-D one as the reference.
  const Naive back = naive_compare(bm, am, d);
  const KernelComparison cb = compare(b4, a2);
  EXPECT_NEAR(cb.relative_frobenius, back.rel, 1e-12);
  EXPECT_NEAR(cb.lambda_max_ratio, back.lmax_ratio, 1e-10);

  // Two full kernels, and two 2-D kernels.
  Array<double> b4b = b4;
  for (index_t e = 0; e < b4b.size(); ++e) b4b[e] *= 1.0 + 0.01 * std::sin(double(e));
  for (index_t i = 0; i < n; ++i)  // keep it symmetric
    for (index_t j = 0; j < n; ++j)
      for (index_t a = 0; a < o; ++a)
        for (index_t c2 = 0; c2 < o; ++c2) b4b[((j * n + i) * o + c2) * o + a] = b4b[((i * n + j) * o + a) * o + c2];
  Matrix bbm(size_t(d * d));
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j)
      for (index_t a = 0; a < o; ++a)
        for (index_t c2 = 0; c2 < o; ++c2) bbm[size_t((i * o + a) * d + j * o + c2)] = b4b[((i * n + j) * o + a) * o + c2];
  const Naive ff = naive_compare(bbm, bm, d);
  const KernelComparison c4 = compare(b4b, b4);
  EXPECT_FALSE(c4.kronecker);
  EXPECT_NEAR(c4.relative_frobenius, ff.rel, 1e-12);
  EXPECT_NEAR(c4.lambda_max_ratio, ff.lmax_ratio, 1e-10);
  EXPECT_NEAR(c4.condition_ratio, ff.cond_ratio, 1e-7 * ff.cond_ratio);
  const KernelComparison c2 = compare(a2, a2);
  EXPECT_EQ(c2.relative_frobenius, 0.0);
  EXPECT_NEAR(c2.lambda_max_ratio, 1.0, 1e-14);

  // Rectangular kernels: distances only.
  const Array<double> r1(Shape{2, 3}, {1, 2, 3, 4, 5, 6}), r2(Shape{2, 3}, {1, 2, 3, 4, 5, 7});
  const KernelComparison cr = compare(r1, r2);
  EXPECT_FALSE(cr.has_spectra);
  EXPECT_NEAR(cr.relative_frobenius, 1.0 / std::sqrt(1 + 4 + 9 + 16 + 25 + 49.0), 1e-14);
}

TEST(Compare, RefusesShapesThatCannotBeCompared) {
  EXPECT_THROW(compare(Array<double>(Shape{3, 3}), Array<double>(Shape{4, 4})), InvalidArgument);
  EXPECT_THROW(compare(Array<double>(Shape{3, 3, 2, 2}), Array<double>(Shape{3, 3, 4, 4})), InvalidArgument);
  EXPECT_THROW(compare(Array<double>(Shape{3, 3, 2}), Array<double>(Shape{3, 3, 2})), InvalidArgument);
  EXPECT_THROW(compare(Array<double>(Shape{3, 3}), Array<double>(Shape{2, 3, 2, 2})), InvalidArgument);
}

// x of (K + λI) x = y for small dense systems, Gaussian elimination with partial pivoting.
std::vector<double> gauss_solve(Matrix a, std::vector<double> y, index_t n) {
  for (index_t c = 0; c < n; ++c) {
    index_t p = c;
    for (index_t r = c + 1; r < n; ++r)
      if (std::abs(a[size_t(r * n + c)]) > std::abs(a[size_t(p * n + c)])) p = r;
    for (index_t j = 0; j < n; ++j) std::swap(a[size_t(c * n + j)], a[size_t(p * n + j)]);
    std::swap(y[size_t(c)], y[size_t(p)]);
    for (index_t r = c + 1; r < n; ++r) {
      const double f = a[size_t(r * n + c)] / a[size_t(c * n + c)];
      for (index_t j = c; j < n; ++j) a[size_t(r * n + j)] -= f * a[size_t(c * n + j)];
      y[size_t(r)] -= f * y[size_t(c)];
    }
  }
  std::vector<double> x(static_cast<size_t>(n));
  for (index_t r = n - 1; r >= 0; --r) {
    double s = y[size_t(r)];
    for (index_t j = r + 1; j < n; ++j) s -= a[size_t(r * n + j)] * x[size_t(j)];
    x[size_t(r)] = s / a[size_t(r * n + r)];
  }
  return x;
}

TEST(PntkReport, ErrorsAndPredictionsMatchDirectComputation) {
  const Network net("Dense(10, b_std=0.1), Relu, Dense(3)", Shape{4});
  const std::vector<double> theta = net.init<double>(3);
  const index_t n = 7, m = 5, o = 3;
  const Array<double> x = test::random_batch<double>(n, {4}, 4), xt = test::random_batch<double>(m, {4}, 5);
  Array<double> y(Shape{n, o}), yt(Shape{m, o});
  for (index_t i = 0; i < n; ++i) y[i * o + i % o] = 1;
  for (index_t i = 0; i < m; ++i) yt[i * o + (i + 1) % o] = 1;
  PntkReportOptions po;
  po.ridge = 0.01;
  const PntkReport r = pntk_report(net, theta, x, y, xt, yt, po);

  EntkOptions eo;
  eo.mode = parse_entk_mode("full");
  const Array<double> full = empirical_ntk(net, theta, x, nullptr, eo);
  const Array<double> full_t = empirical_ntk(net, theta, xt, &x, eo);
  // pNTK from its definition, (1/O)·Σ_ab of each block, independent of mode pntk.
  double num = 0, den = 0;
  for (index_t p = 0; p < n * n; ++p) {
    double s = 0;
    for (index_t e = 0; e < o * o; ++e) s += full[p * o * o + e];
    for (index_t a = 0; a < o; ++a)
      for (index_t b = 0; b < o; ++b) {
        const double f = full[(p * o + a) * o + b], d = (a == b ? s / double(o) : 0.0) - f;
        num += d * d;
        den += f * f;
      }
  }
  EXPECT_NEAR(r.train.relative_frobenius, std::sqrt(num / den), 1e-10);
  EXPECT_GT(r.train.relative_frobenius, 0.0);
  EXPECT_TRUE(r.train.kronecker && r.train.has_spectra);
  EXPECT_EQ(r.full_train.shape, (Shape{n, n, o, o}));
  EXPECT_EQ(r.pntk_test.shape, (Shape{m, n}));
  EXPECT_EQ(r.full_test.shape, (Shape{m, n, o, o}));

  // The full-kernel prediction by Gaussian elimination on the (N·O × N·O) system.
  const index_t d = n * o;
  Matrix km(size_t(d * d));
  double mean_diag = 0;
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j)
      for (index_t a = 0; a < o; ++a)
        for (index_t b = 0; b < o; ++b) km[size_t((i * o + a) * d + j * o + b)] = full[((i * n + j) * o + a) * o + b];
  for (index_t i = 0; i < d; ++i) mean_diag += km[size_t(i * d + i)] / double(d);
  for (index_t i = 0; i < d; ++i) km[size_t(i * d + i)] += 0.01 * mean_diag;
  const std::vector<double> alpha = gauss_solve(km, y.vector(), d);
  index_t correct = 0;
  double se = 0;
  for (index_t i = 0; i < m; ++i) {
    std::vector<double> pred(size_t(o), 0.0);
    for (index_t a = 0; a < o; ++a)
      for (index_t j = 0; j < n; ++j)
        for (index_t b = 0; b < o; ++b) pred[size_t(a)] += full_t[((i * n + j) * o + a) * o + b] * alpha[size_t(j * o + b)];
    for (index_t a = 0; a < o; ++a) se += (pred[size_t(a)] - yt[i * o + a]) * (pred[size_t(a)] - yt[i * o + a]);
    const auto best = std::max_element(pred.begin(), pred.end()) - pred.begin();
    correct += yt[i * o + best] == 1.0;
  }
  EXPECT_NEAR(r.mse_full, se / double(m * o), 1e-9);
  EXPECT_NEAR(r.accuracy_full, double(correct) / double(m), 1e-12);
  EXPECT_GE(r.accuracy_pntk, 0.0);
  EXPECT_LE(r.accuracy_pntk, 1.0);
  EXPECT_GT(r.full_train.estimated_bytes, 0u);

  EXPECT_THROW(pntk_report(net, theta, x, Array<double>(Shape{n, 2}), xt, yt, po), InvalidArgument);
}

}  // namespace
}  // namespace ntk
