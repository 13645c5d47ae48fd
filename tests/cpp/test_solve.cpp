// Kernel ridge regression against an independent solve written here (Gaussian elimination with
// partial pivoting, sharing no code with the library's LAPACK path), the eigendecomposition
// fallback on kernels that are not positive definite, and the validation choice of the ridge
// against a brute-force refit per candidate.
#include <gtest/gtest.h>

#include <cmath>

#include "harness.hpp"
#include "linear_oracle.hpp"
#include "ntk/error.hpp"
#include "ntk/solve.hpp"

namespace ntk {
namespace {

using test::gauss_solve;

// A Gram matrix of n random d-vectors (positive definite for d >= n), and targets.
Array<double> gram(index_t n, index_t d, std::uint64_t seed) {
  const std::vector<double> x = test::random_vector<double>(n * d, seed);
  Array<double> k(Shape{n, n});
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) {
      double s = 0;
      for (index_t c = 0; c < d; ++c) s += x[size_t(i * d + c)] * x[size_t(j * d + c)];
      k[i * n + j] = s / double(d);
    }
  return k;
}

Array<double> targets(index_t n, index_t o, std::uint64_t seed) {
  return Array<double>(Shape{n, o}, test::random_vector<double>(n * o, seed));
}

double rel(const std::vector<double>& a, const std::vector<double>& b) {
  return test::max_abs_diff(a, b) / test::max_abs(b);
}

TEST(KernelRidge, MatchesAnIndependentSolve) {
  const index_t n = 40, o = 3;
  const Array<double> k = gram(n, 60, 1), y = targets(n, o, 2);
  double mean_diag = 0;
  for (index_t i = 0; i < n; ++i) mean_diag += k[i * n + i] / double(n);
  for (const bool relative : {true, false}) {
    RidgeOptions opt;
    opt.ridge = relative ? 0.01 : 0.5;
    opt.relative = relative;
    const RidgeFit fit = kernel_ridge(k, y, opt);
    ASSERT_TRUE(fit.cholesky);
    EXPECT_TRUE(fit.warning.empty());
    const double lambda = relative ? 0.01 * mean_diag : 0.5;
    EXPECT_DOUBLE_EQ(fit.lambda, lambda);
    std::vector<double> a(k.data(), k.data() + k.size());
    for (index_t i = 0; i < n; ++i) a[size_t(i * n + i)] += lambda;
    const std::vector<double> want = gauss_solve(a, y.vector(), n, o);
    EXPECT_LT(rel(fit.alpha.vector(), want), 1e-8);
    // A float32 kernel is solved in float64: the same as its float64 copy.
    Array<float> k32(k.shape());
    for (index_t e = 0; e < k.size(); ++e) k32[e] = float(k[e]);
    Array<double> k32_as_64(k.shape());
    for (index_t e = 0; e < k.size(); ++e) k32_as_64[e] = double(k32[e]);
    EXPECT_LT(rel(kernel_ridge(k32, y, opt).alpha.vector(), kernel_ridge(k32_as_64, y, opt).alpha.vector()), 1e-12);
  }
  // Ridge 0 interpolates: the predictions on the training kernel are the targets.
  const Array<double> pred = kernel_ridge_predict(k, kernel_ridge(k, y, {}).alpha);
  EXPECT_LT(rel(pred.vector(), y.vector()), 1e-8);
}

TEST(KernelRidge, KernelsThatAreNotPositiveDefiniteWarnAndStayFinite) {
  const index_t n = 12, o = 2;
  // Rank deficient: example 5 is zero, so its row and column of the kernel are zero.
  Array<double> k = gram(n, 20, 3);
  for (index_t j = 0; j < n; ++j) k[5 * n + j] = k[j * n + 5] = 0.0;
  const Array<double> y = targets(n, o, 4);
  RidgeFit fit = kernel_ridge(k, y, {});
  EXPECT_FALSE(fit.cholesky);
  EXPECT_FALSE(fit.warning.empty());
  EXPECT_GE(fit.dropped_directions, 1);
  for (index_t e = 0; e < fit.alpha.size(); ++e) ASSERT_TRUE(std::isfinite(fit.alpha[e]));
  // The least-squares condition: K (K α − Y) = 0 (the residual has no part K can reach).
  const Array<double> r = kernel_ridge_predict(k, fit.alpha);
  std::vector<double> res(size_t(n * o)), kr(size_t(n * o), 0.0);
  for (index_t e = 0; e < n * o; ++e) res[size_t(e)] = r[e] - y[e];
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j)
      for (index_t c = 0; c < o; ++c) kr[size_t(i * o + c)] += k[i * n + j] * res[size_t(j * o + c)];
  EXPECT_LT(test::max_abs(kr), 1e-8 * test::max_abs(y.vector()));
  // A negative eigenvalue: K − 0.5·I for a kernel whose smallest eigenvalue is below 0.5.
  Array<double> neg = gram(n, 6, 5);
  for (index_t i = 0; i < n; ++i) neg[i * n + i] -= 0.5;
  fit = kernel_ridge(neg, y, {});
  EXPECT_FALSE(fit.cholesky);
  EXPECT_LT(fit.min_eigenvalue, 0.0);
  for (index_t e = 0; e < fit.alpha.size(); ++e) ASSERT_TRUE(std::isfinite(fit.alpha[e]));
}

TEST(KernelRidge, ValidationChoiceEqualsARefitPerCandidate) {
  const index_t n = 50, v = 15, o = 2, nt = n - v;
  const Array<double> k = gram(n, 8, 6);  // rank 8: small ridges overfit
  Array<double> y = targets(n, o, 7);
  const std::vector<double> ridges = {1e-6, 1e-3, 1e-2, 1e-1, 1.0, 10.0};
  const RidgeSelection s = select_ridge(k, y, v, ridges);
  ASSERT_EQ(s.validation_mse.size(), ridges.size());
  Array<double> ktt(Shape{nt, nt}), kvt(Shape{v, nt}), yt(Shape{nt, o});
  for (index_t i = 0; i < nt; ++i)
    for (index_t j = 0; j < nt; ++j) ktt[i * nt + j] = k[i * n + j];
  for (index_t i = 0; i < v; ++i)
    for (index_t j = 0; j < nt; ++j) kvt[i * nt + j] = k[(nt + i) * n + j];
  for (index_t e = 0; e < nt * o; ++e) yt[e] = y[e];
  for (size_t c = 0; c < ridges.size(); ++c) {
    RidgeOptions opt;
    opt.ridge = ridges[c];
    const Array<double> pred = kernel_ridge_predict(kvt, kernel_ridge(ktt, yt, opt).alpha);
    double mse = 0;
    for (index_t e = 0; e < v * o; ++e) mse += std::pow(pred[e] - y[nt * o + e], 2) / double(v * o);
    EXPECT_NEAR(s.validation_mse[c], mse, 1e-8 * mse) << ridges[c];
  }
  EXPECT_EQ(s.best_ridge, ridges[size_t(std::min_element(s.validation_mse.begin(), s.validation_mse.end()) -
                                        s.validation_mse.begin())]);
}

TEST(KernelRidge, BadInputsAreClearErrors) {
  const Array<double> k = gram(6, 8, 1), y = targets(6, 2, 2);
  EXPECT_THROW(kernel_ridge(Array<double>(Shape{6, 5}), y), InvalidArgument);
  EXPECT_THROW(kernel_ridge(k, targets(5, 2, 2)), InvalidArgument);
  Array<double> bad = k;
  bad[7] = std::nan("");
  EXPECT_THROW(kernel_ridge(bad, y), InvalidArgument);
  RidgeOptions neg;
  neg.ridge = -1;
  EXPECT_THROW(kernel_ridge(k, y, neg), InvalidArgument);
  EXPECT_THROW(kernel_ridge_predict(Array<double>(Shape{3, 5}), kernel_ridge(k, y).alpha), InvalidArgument);
  EXPECT_THROW(select_ridge(k, y, 6, {0.1}), InvalidArgument);
}

}  // namespace
}  // namespace ntk
