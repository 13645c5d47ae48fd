// Gradient-descent dynamics, GP inference and the maximal learning rate (ntk/dynamics.hpp) against
// oracles written here: explicit small-step gradient descent on the linearized model, an
// independent Gaussian-elimination solve for the closed forms, and kernel_ridge at t = ∞.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "harness.hpp"
#include "linear_oracle.hpp"
#include "ntk/dynamics.hpp"
#include "ntk/error.hpp"
#include "ntk/solve.hpp"

namespace ntk {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

using test::gauss_solve;

// C (r × c) = A (r × k) B (k × c), row-major.
std::vector<double> matmul(const double* a, const double* b, index_t r, index_t k, index_t c) {
  std::vector<double> out(size_t(r * c), 0.0);
  for (index_t i = 0; i < r; ++i)
    for (index_t l = 0; l < k; ++l)
      for (index_t j = 0; j < c; ++j) out[size_t(i * c + j)] += a[i * k + l] * b[l * c + j];
  return out;
}

std::vector<double> transpose(const double* a, index_t r, index_t c) {
  std::vector<double> t(size_t(r * c));
  for (index_t i = 0; i < r; ++i)
    for (index_t j = 0; j < c; ++j) t[size_t(j * r + i)] = a[i * c + j];
  return t;
}

// The Gram matrix of n + m random d-vectors split into train (n × n), test-train (m × n) and
// test-test (m × m) kernels, as a kernel function on train and test inputs would give them.
struct Kernels {
  Array<double> train, test, test_test;
};
Kernels gram(index_t n, index_t m, index_t d, std::uint64_t seed) {
  const std::vector<double> x = test::random_vector<double>((n + m) * d, seed);
  auto dot = [&](index_t i, index_t j) {
    double s = 0;
    for (index_t c = 0; c < d; ++c) s += x[size_t(i * d + c)] * x[size_t(j * d + c)];
    return s / double(d);
  };
  Kernels k{Array<double>(Shape{n, n}), Array<double>(Shape{m, n}), Array<double>(Shape{m, m})};
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) k.train[i * n + j] = dot(i, j);
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) k.test[i * n + j] = dot(n + i, j);
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < m; ++j) k.test_test[i * m + j] = dot(n + i, n + j);
  return k;
}

Array<double> random(const Shape& s, std::uint64_t seed) { return Array<double>(s, test::random_vector<double>(numel(s), seed)); }

double max_rel(const double* a, const double* b, index_t count) {
  double d = 0, top = 0;
  for (index_t i = 0; i < count; ++i) {
    d = std::max(d, std::abs(a[i] - b[i]));
    top = std::max(top, std::abs(b[i]));
  }
  return d / std::max(top, 1e-300);
}

TEST(GradientDescentMse, ClosedFormMatchesSmallStepGradientDescent) {
  const index_t n = 6, m = 4, o = 2, d = 10;
  const Kernels k = gram(n, m, d, 1);
  const Array<double> y = random(Shape{n, o}, 2), f0 = random(Shape{n, o}, 3), ft0 = random(Shape{m, o}, 4);
  GdMseOptions opt;
  opt.learning_rate = 0.7;
  opt.diag_reg = 0.1;  // relative: λ = 0.1 · trace(K) / n
  const std::vector<double> times{0.5, 3.0};
  const GdMsePredictions p = gradient_descent_mse(k.train, y, times, opt, &k.test, &f0, &ft0);
  double trace = 0;
  for (index_t i = 0; i < n; ++i) trace += k.train[i * n + i];
  EXPECT_NEAR(p.lambda, 0.1 * trace / double(n), 1e-15);
  EXPECT_TRUE(p.warning.empty()) << p.warning;
  // Explicit Euler steps of the gradient flow of 1/(2|y|) Σ (f − y)² with kernel K + λI; the test
  // outputs move by the test-train kernel times the same residual.
  const double dt = 1e-5, size = double(n * o);
  std::vector<double> f(f0.data(), f0.data() + f0.size()), ft(ft0.data(), ft0.data() + ft0.size());
  double t = 0;
  for (size_t ti = 0; ti < times.size(); ++ti) {
    const long steps = std::lround((times[ti] - t) / dt);
    for (long s = 0; s < steps; ++s) {
      std::vector<double> r(f.size());
      for (size_t e = 0; e < f.size(); ++e) r[e] = f[e] - y[index_t(e)];
      const std::vector<double> kr = matmul(k.train.data(), r.data(), n, n, o);
      const std::vector<double> tr = matmul(k.test.data(), r.data(), m, n, o);
      for (size_t e = 0; e < f.size(); ++e) f[e] -= opt.learning_rate * dt / size * (kr[e] + p.lambda * r[e]);
      for (size_t e = 0; e < ft.size(); ++e) ft[e] -= opt.learning_rate * dt / size * tr[e];
    }
    t = times[ti];
    EXPECT_LE(max_rel(p.train.data() + index_t(ti) * n * o, f.data(), n * o), 1e-6) << "train, t = " << t;
    EXPECT_LE(max_rel(p.test.data() + index_t(ti) * m * o, ft.data(), m * o), 1e-6) << "test, t = " << t;
  }
}

TEST(GradientDescentMse, TimeZeroGivesTheInitialOutputs) {
  const index_t n = 5, m = 3, o = 3;
  const Kernels k = gram(n, m, 9, 5);
  const Array<double> y = random(Shape{n, o}, 6), f0 = random(Shape{n, o}, 7), ft0 = random(Shape{m, o}, 8);
  const GdMsePredictions p = gradient_descent_mse(k.train, y, {0.0}, {}, &k.test, &f0, &ft0);
  for (index_t e = 0; e < n * o; ++e) EXPECT_EQ(p.train[e], f0[e]);
  for (index_t e = 0; e < m * o; ++e) EXPECT_EQ(p.test[e], ft0[e]);
  // Default initial outputs are zeros.
  const GdMsePredictions z = gradient_descent_mse(k.train, y, {0.0}, {}, &k.test);
  for (index_t e = 0; e < n * o; ++e) EXPECT_EQ(z.train[e], 0.0);
  for (index_t e = 0; e < m * o; ++e) EXPECT_EQ(z.test[e], 0.0);
}

TEST(GradientDescentMse, InfinityIsKernelRidgeAndTheLimitOfLargeTimes) {
  const index_t n = 7, m = 4, o = 2;
  const Kernels k = gram(n, m, 12, 9);
  const Array<double> y = random(Shape{n, o}, 10);
  GdMseOptions opt;
  opt.diag_reg = 1e-2;
  const GdMsePredictions p = gradient_descent_mse(k.train, y, {1e7, kInf}, opt, &k.test);
  EXPECT_TRUE(p.cholesky);
  RidgeOptions ro;
  ro.ridge = 1e-2;
  const Array<double> want = kernel_ridge_predict(k.test, kernel_ridge(k.train, y, ro).alpha);
  EXPECT_LE(max_rel(p.test.data() + m * o, want.data(), m * o), 1e-12);
  EXPECT_LE(max_rel(p.test.data(), want.data(), m * o), 1e-10);  // t = 1e7 has converged
  for (index_t e = 0; e < n * o; ++e) EXPECT_EQ(p.train[n * o + e], y[e]);  // nt: f_train(∞) = y
  // With initial outputs: f_test0 + K_td (K + λI)⁻¹ (y − f0).
  const Array<double> f0 = random(Shape{n, o}, 11), ft0 = random(Shape{m, o}, 12);
  const GdMsePredictions q = gradient_descent_mse(k.train, y, {kInf}, opt, &k.test, &f0, &ft0);
  Array<double> r(Shape{n, o});
  for (index_t e = 0; e < n * o; ++e) r[e] = y[e] - f0[e];
  const Array<double> dq = kernel_ridge_predict(k.test, kernel_ridge(k.train, r, ro).alpha);
  for (index_t e = 0; e < m * o; ++e) EXPECT_NEAR(q.test[e], ft0[e] + dq[e], 1e-12 * (1 + std::abs(dq[e])));
}

TEST(GradientDescentMse, FloatKernelsAreSolvedInFloat64) {
  const Kernels k = gram(5, 2, 8, 13);
  Array<float> kf(k.train.shape()), tf(k.test.shape());
  Array<double> kd(k.train.shape()), td(k.test.shape());
  for (index_t e = 0; e < kf.size(); ++e) kd[e] = kf[e] = float(k.train[e]);
  for (index_t e = 0; e < tf.size(); ++e) td[e] = tf[e] = float(k.test[e]);
  const Array<double> y = random(Shape{5, 1}, 14);
  const GdMsePredictions a = gradient_descent_mse(kf, y, {2.0, kInf}, {}, &tf);
  const GdMsePredictions b = gradient_descent_mse(kd, y, {2.0, kInf}, {}, &td);
  EXPECT_LE(max_rel(a.test.data(), b.test.data(), b.test.size()), 1e-14);
}

TEST(GradientDescentMse, NotPositiveDefiniteGivesFiniteOutputAndAWarning) {
  const index_t n = 6, m = 3, o = 2;
  // Symmetric and indefinite: the Cholesky factor of K fails.
  Array<double> a = random(Shape{n, n}, 15), kt = random(Shape{m, n}, 16);
  Array<double> k(Shape{n, n});
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) k[i * n + j] = a[i * n + j] + a[j * n + i];
  const Array<double> y = random(Shape{n, o}, 17);
  const GdMsePredictions p = gradient_descent_mse(k, y, {0.5, kInf}, {}, &kt);
  EXPECT_FALSE(p.cholesky);
  EXPECT_NE(p.warning.find("not numerically positive definite"), std::string::npos) << p.warning;
  EXPECT_NE(p.warning.find("clipped"), std::string::npos) << p.warning;
  EXPECT_EQ(first_non_finite(p.train), -1);
  EXPECT_EQ(first_non_finite(p.test), -1);
  // Rank-deficient (PSD, singular) too: zero eigenvalues take the limit instead of 0/0.
  const Kernels r = gram(6, 2, 2, 18);
  const GdMsePredictions q = gradient_descent_mse(r.train, y, {0.0, 1.0, kInf}, {}, &r.test);
  EXPECT_EQ(first_non_finite(q.train), -1);
  EXPECT_EQ(first_non_finite(q.test), -1);
}

TEST(GradientDescentMse, RefusesBadInput) {
  const Kernels k = gram(4, 2, 6, 19);
  const Array<double> y = random(Shape{4, 1}, 20);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(gradient_descent_mse(k.train, y, {-1.0}), InvalidArgument);
  EXPECT_THROW(gradient_descent_mse(k.train, y, {nan}), InvalidArgument);
  GdMseOptions bad;
  bad.diag_reg = -1;
  EXPECT_THROW(gradient_descent_mse(k.train, y, {1.0}, bad), InvalidArgument);
  bad.diag_reg = 0;
  bad.learning_rate = kInf;
  EXPECT_THROW(gradient_descent_mse(k.train, y, {1.0}, bad), InvalidArgument);
  EXPECT_THROW(gradient_descent_mse(k.test, random(Shape{2, 1}, 1), {1.0}), InvalidArgument);  // not square
  EXPECT_THROW(gradient_descent_mse(k.train, random(Shape{3, 1}, 1), {1.0}), InvalidArgument);
  const Array<double> wrong_test = random(Shape{2, 3}, 21);
  EXPECT_THROW(gradient_descent_mse(k.train, y, {1.0}, {}, &wrong_test), InvalidArgument);
  Array<double> nan_k = k.train;
  nan_k[5] = nan;
  EXPECT_THROW(gradient_descent_mse(nan_k, y, {1.0}), InvalidArgument);
}

TEST(GpInference, NngpMatchesTheClosedForm) {
  const index_t n = 6, m = 3, o = 2;
  const Kernels k = gram(n, m, 11, 22);
  const Array<double> y = random(Shape{n, o}, 23);
  PredictOptions opt;
  opt.diag_reg = 0.05;
  const GpPosterior post = gp_inference(GpGet::nngp, y, GpKernels<double>{&k.train, &k.test, &k.test_test}, {}, opt);
  std::vector<double> a(k.train.data(), k.train.data() + n * n);
  double trace = 0;
  for (index_t i = 0; i < n; ++i) trace += k.train[i * n + i];
  for (index_t i = 0; i < n; ++i) a[size_t(i * n + i)] += 0.05 * trace / double(n);
  const std::vector<double> mean = matmul(k.test.data(), gauss_solve(a, {y.data(), y.data() + n * o}, n, o).data(), m, n, o);
  const std::vector<double> kinv_kdt = gauss_solve(a, transpose(k.test.data(), m, n), n, m);
  std::vector<double> cov = matmul(k.test.data(), kinv_kdt.data(), m, n, m);
  for (index_t e = 0; e < m * m; ++e) cov[size_t(e)] = k.test_test[e] - cov[size_t(e)];
  EXPECT_LE(max_rel(post.mean.data(), mean.data(), m * o), 1e-12);
  ASSERT_EQ(post.covariance.shape(), (Shape{m, m}));
  EXPECT_LE(max_rel(post.covariance.data(), cov.data(), m * m), 1e-10);
  // Without the test-test kernel: the mean only, equal to the t = ∞ dynamics.
  const GpPosterior mean_only = gp_inference(GpGet::nngp, y, GpKernels<double>{&k.train, &k.test, nullptr}, {}, opt);
  EXPECT_EQ(mean_only.covariance.size(), 0);
  GdMseOptions g;
  g.diag_reg = 0.05;
  const GdMsePredictions inf = gradient_descent_mse(k.train, y, {kInf}, g, &k.test);
  EXPECT_LE(max_rel(mean_only.mean.data(), inf.test.data(), m * o), 1e-14);
}

TEST(GpInference, NtkMatchesTheClosedForm) {
  const index_t n = 6, m = 3, o = 1;
  const Kernels nngp = gram(n, m, 11, 24), ntk = gram(n, m, 13, 25);
  const Array<double> y = random(Shape{n, o}, 26);
  PredictOptions opt;
  opt.diag_reg = 1e-3;
  const GpPosterior post = gp_inference(GpGet::ntk, y, GpKernels<double>{&nngp.train, &nngp.test, &nngp.test_test},
                                        GpKernels<double>{&ntk.train, &ntk.test, nullptr}, opt);
  std::vector<double> th(ntk.train.data(), ntk.train.data() + n * n);
  double trace = 0;
  for (index_t i = 0; i < n; ++i) trace += ntk.train[i * n + i];
  for (index_t i = 0; i < n; ++i) th[size_t(i * n + i)] += 1e-3 * trace / double(n);  // the NTK's own trace
  const std::vector<double> mean = matmul(ntk.test.data(), gauss_solve(th, {y.data(), y.data() + n}, n, o).data(), m, n, o);
  // Σ = K_tt + Θ_td Θ⁻¹ K_dd Θ⁻¹ Θ_dt − (Θ_td Θ⁻¹ K_dt + K_td Θ⁻¹ Θ_dt)
  const std::vector<double> a = gauss_solve(th, transpose(ntk.test.data(), m, n), n, m);   // Θ⁻¹ Θ_dt
  const std::vector<double> b = gauss_solve(th, transpose(nngp.test.data(), m, n), n, m);  // Θ⁻¹ K_dt
  const std::vector<double> at = transpose(a.data(), n, m);
  const std::vector<double> kda = matmul(nngp.train.data(), a.data(), n, n, m);
  const std::vector<double> quad = matmul(at.data(), kda.data(), m, n, m);
  const std::vector<double> cross = matmul(ntk.test.data(), b.data(), m, n, m);
  std::vector<double> cov(size_t(m * m));
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < m; ++j)
      cov[size_t(i * m + j)] = nngp.test_test[i * m + j] + quad[size_t(i * m + j)] - cross[size_t(i * m + j)] -
                               cross[size_t(j * m + i)];
  EXPECT_LE(max_rel(post.mean.data(), mean.data(), m * o), 1e-12);
  EXPECT_LE(max_rel(post.covariance.data(), cov.data(), m * m), 1e-9);
  // The NTK covariance needs the NNGP kernels.
  EXPECT_THROW(gp_inference(GpGet::ntk, y, GpKernels<double>{nullptr, nullptr, &nngp.test_test},
                            GpKernels<double>{&ntk.train, &ntk.test, nullptr}, opt),
               InvalidArgument);
}

// Discrete full-batch gradient descent f <- f − η/|y| K (f − y): the error after `steps` steps
// relative to the start.
double gd_error_ratio(const Array<double>& k, const Array<double>& y, double eta, int steps) {
  const index_t n = k.dim(0), o = y.dim(1);
  std::vector<double> f(size_t(n * o), 0.0);
  auto err = [&] {
    double s = 0;
    for (index_t e = 0; e < n * o; ++e) s += (f[size_t(e)] - y[e]) * (f[size_t(e)] - y[e]);
    return std::sqrt(s);
  };
  const double e0 = err();
  for (int s = 0; s < steps; ++s) {
    std::vector<double> r(f.size());
    for (size_t e = 0; e < f.size(); ++e) r[e] = f[e] - y[index_t(e)];
    const std::vector<double> kr = matmul(k.data(), r.data(), n, n, o);
    for (size_t e = 0; e < f.size(); ++e) f[e] -= eta / double(n * o) * kr[e];
  }
  return err() / e0;
}

TEST(MaxLearningRate, SeparatesConvergenceFromDivergence) {
  const index_t n = 6, o = 2;
  const Kernels k = gram(n, 1, 40, 27);
  const Array<double> y = random(Shape{n, o}, 28);
  const double lr = max_learning_rate(k.train, n * o);
  EXPECT_LT(gd_error_ratio(k.train, y, 0.99 * lr, 3000), 1e-6);
  EXPECT_GT(gd_error_ratio(k.train, y, 1.01 * lr, 3000), 1e6);
  // Momentum scales it by 1 + momentum; y_size 0 means N.
  EXPECT_NEAR(max_learning_rate(k.train, n * o, 0.9), 1.9 * lr, 1e-12 * lr);
  EXPECT_NEAR(max_learning_rate(k.train), lr / double(o), 1e-12 * lr);
}

}  // namespace
}  // namespace ntk
