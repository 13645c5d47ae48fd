// Gradient-descent dynamics, GP inference and the maximal learning rate on a computed kernel,
// number for number as neural-tangents' predict.py (v0.6.5: gradient_descent_mse, gp_inference,
// max_learning_rate, _add_diagonal_regularizer, _make_expm1_fn / _make_inv_expm1_fn), with the
// factorizations and the eigendecomposition fallback of kernel ridge (solve_detail.hpp).
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "blas.hpp"
#include "lapack.hpp"
#include "ntk/dynamics.hpp"
#include "ntk/error.hpp"
#include "ntk/parallel.hpp"
#include "solve_detail.hpp"

namespace ntk {
namespace {

using detail::check_finite;
using detail::outputs_of;

void check_regularizer(const PredictOptions& o) {
  if (!(o.diag_reg >= 0) || !std::isfinite(o.diag_reg))
    throw InvalidArgument("the regularizer (diag_reg / ridge) must be a finite number >= 0, got " +
                          std::to_string(o.diag_reg));
}

template <class T>
double lambda_of(const Array<T>& k, const PredictOptions& o) {
  return o.diag_reg_absolute_scale ? o.diag_reg : o.diag_reg * detail::mean_diagonal(k);
}

// The test kernel must pair M test examples with the N training ones.
template <class T>
void check_test(const Array<T>& k_test, index_t n, const char* what) {
  if (k_test.ndim() != 2 || k_test.dim(1) != n)
    throw InvalidArgument(std::string(what) + " must be (M, N) with N = " + std::to_string(n) +
                          " (the train kernel's size), got " + shape_string(k_test.shape()));
  check_finite(k_test, what);
}

// A float64 row-major copy, for GEMM with float64 operands (none when T is double).
template <class T>
const double* as_double(const Array<T>& a, std::vector<double>& storage) {
  if constexpr (std::is_same_v<T, double>) {
    return a.data();
  } else {
    storage.assign(a.data(), a.data() + a.size());
    return storage.data();
  }
}

void append_warning(std::string& to, const std::string& w) {
  if (!w.empty()) to += (to.empty() ? "" : "; ") + w;
}

}  // namespace

template <class T>
GdMsePredictions gradient_descent_mse(const Array<T>& k_train, const Array<double>& y_train,
                                      const std::vector<double>& times, const GdMseOptions& options,
                                      const Array<T>* k_test, const Array<double>* f0_train,
                                      const Array<double>* f0_test) {
  ThreadScope scope(options.threads);
  detail::check_train(k_train, y_train);
  check_regularizer(options);
  if (!(options.learning_rate >= 0) || !std::isfinite(options.learning_rate))
    throw InvalidArgument("the learning rate must be a finite number >= 0, got " + std::to_string(options.learning_rate));
  for (double t : times)
    if (!(t >= 0)) throw InvalidArgument("times must be >= 0 (or inf), got " + std::to_string(t));
  const index_t n = k_train.dim(0), o = outputs_of(y_train), nt = index_t(times.size());
  const double size = double(y_train.size());  // |y|, which scales time as the loss's 1/|y| does
  index_t m = 0;
  if (k_test) {
    check_test(*k_test, n, "the test kernel");
    m = k_test->dim(0);
  }
  if (f0_train) {
    if (f0_train->size() != y_train.size())
      throw InvalidArgument("the initial train outputs must have the targets' shape " + shape_string(y_train.shape()) +
                            ", got " + shape_string(f0_train->shape()));
    check_finite(*f0_train, "the initial train outputs");
  }
  if (f0_test) {
    if (!k_test) throw InvalidArgument("initial test outputs need a test kernel");
    if (f0_test->size() != m * o || f0_test->dim(0) != m)
      throw InvalidArgument("the initial test outputs must be (" + std::to_string(m) + ", " + std::to_string(o) +
                            "), got " + shape_string(f0_test->shape()));
    check_finite(*f0_test, "the initial test outputs");
  }

  GdMsePredictions p;
  p.times = times;
  p.lambda = lambda_of(k_train, options);
  p.train = Array<double>(Shape{nt, n, o});
  if (k_test) p.test = Array<double>(Shape{nt, m, o});
  // rhs = f0 − y, as neural-tangents' finite-time branch (the infinite one solves for −rhs).
  std::vector<double> rhs(size_t(n * o));
  for (index_t e = 0; e < n * o; ++e) rhs[size_t(e)] = (f0_train ? (*f0_train)[e] : 0.0) - y_train[e];
  std::vector<double> kd_storage;
  const double* kd = k_test ? as_double(*k_test, kd_storage) : nullptr;
  auto add_test = [&](index_t ti, const std::vector<double>& u) {  // f_test = f_test0 + K_td u
    double* out = p.test.data() + ti * m * o;
    detail::gemm(false, false, m, o, n, 1.0, kd, n, u.data(), o, 0.0, out, o);
    if (f0_test)
      for (index_t e = 0; e < m * o; ++e) out[e] += (*f0_test)[e];
  };

  const bool any_finite = std::any_of(times.begin(), times.end(), [](double t) { return std::isfinite(t); });
  detail::Eigensystem eig;
  if (any_finite) {
    eig = detail::eigensystem(k_train, p.lambda);
    const double tol = detail::eigen_tolerance(eig.w, n);
    if (eig.w.front() < -tol)
      append_warning(p.warning, "the kernel plus ridge has negative eigenvalues (smallest " +
                                    detail::short_number(eig.w.front()) +
                                    "); clipped at 0 for finite times, as neural-tangents: those directions do not train");
    std::vector<double> z(size_t(n * o)), gz(size_t(n * o)), u(size_t(n * o));
    detail::gemm(false, false, n, o, n, 1.0, eig.vecs.data(), n, rhs.data(), o, 0.0, z.data(), o);  // Vᵀ rhs
    for (index_t ti = 0; ti < nt; ++ti) {
      const double t = times[size_t(ti)] * options.learning_rate;
      if (!std::isfinite(times[size_t(ti)])) continue;
      std::vector<double> g(static_cast<size_t>(n)), h(static_cast<size_t>(n));
      for (index_t i = 0; i < n; ++i) {
        const double w = eig.w[size_t(i)];
        g[size_t(i)] = std::expm1(-std::max(w, 0.0) * t / size);
        h[size_t(i)] = w != 0 ? g[size_t(i)] / std::abs(w) : -t / size;  // nt: 0/0 = NaN; its limit
      }
      // train: f0 + V diag(g) Vᵀ rhs
      for (index_t i = 0; i < n; ++i)
        for (index_t c = 0; c < o; ++c) gz[size_t(i * o + c)] = g[size_t(i)] * z[size_t(i * o + c)];
      double* tr = p.train.data() + ti * n * o;
      detail::gemm(true, false, n, o, n, 1.0, eig.vecs.data(), n, gz.data(), o, 0.0, tr, o);
      for (index_t e = 0; e < n * o; ++e) tr[e] += f0_train ? (*f0_train)[e] : 0.0;
      if (k_test) {  // test: f_test0 + K_td V diag(h) Vᵀ rhs
        for (index_t i = 0; i < n; ++i)
          for (index_t c = 0; c < o; ++c) gz[size_t(i * o + c)] = h[size_t(i)] * z[size_t(i * o + c)];
        detail::gemm(true, false, n, o, n, 1.0, eig.vecs.data(), n, gz.data(), o, 0.0, u.data(), o);
        add_test(ti, u);
      }
    }
  }
  if (std::any_of(times.begin(), times.end(), [](double t) { return std::isinf(t); })) {
    std::vector<double> u;
    if (k_test) {
      std::vector<double> b(rhs.size());
      for (size_t e = 0; e < rhs.size(); ++e) b[e] = -rhs[e];  // y − f0
      RidgeFit fit;
      Array<double> x = detail::solve_shifted(k_train, p.lambda, b.data(), o, fit, any_finite ? &eig : nullptr);
      p.cholesky = fit.cholesky;
      append_warning(p.warning, fit.warning);
      u.assign(x.data(), x.data() + x.size());
    }
    for (index_t ti = 0; ti < nt; ++ti) {
      if (!std::isinf(times[size_t(ti)])) continue;
      std::copy(y_train.data(), y_train.data() + n * o, p.train.data() + ti * n * o);
      if (k_test) add_test(ti, u);
    }
  }
  return p;
}

GpGet parse_gp_get(const std::string& s) {
  if (s == "nngp") return GpGet::nngp;
  if (s == "ntk") return GpGet::ntk;
  throw InvalidArgument("unknown GP kernel '" + s + "' (use nngp or ntk)");
}

template <class T>
GpPosterior gp_inference(GpGet get, const Array<double>& y_train, const GpKernels<T>& nngp, const GpKernels<T>& ntk,
                         const PredictOptions& options) {
  ThreadScope scope(options.threads);
  check_regularizer(options);
  const GpKernels<T>& solved = get == GpGet::nngp ? nngp : ntk;
  const char* name = get == GpGet::nngp ? "NNGP" : "NTK";
  if (!solved.train_train || !solved.test_train)
    throw InvalidArgument(std::string("GP inference with the ") + name + " needs its train and test-train kernels");
  const bool covariance = nngp.test_test != nullptr;
  if (covariance && get == GpGet::ntk && (!nngp.train_train || !nngp.test_train))
    throw InvalidArgument("the NTK posterior covariance needs the NNGP train, test-train and test-test kernels");
  const Array<T>& kdd = *solved.train_train;
  detail::check_train(kdd, y_train);
  const index_t n = kdd.dim(0), o = outputs_of(y_train);
  check_test(*solved.test_train, n, "the test kernel");
  const index_t m = solved.test_train->dim(0);
  if (covariance) {
    if (get == GpGet::ntk) {
      if (nngp.train_train->shape() != kdd.shape())
        throw InvalidArgument("the NNGP train kernel must be " + shape_string(kdd.shape()) + " as the NTK's, got " +
                              shape_string(nngp.train_train->shape()));
      check_finite(*nngp.train_train, "the NNGP train kernel");
      check_test(*nngp.test_train, n, "the NNGP test kernel");
      if (nngp.test_train->dim(0) != m)
        throw InvalidArgument("the NNGP test kernel must have " + std::to_string(m) + " rows as the NTK's, got " +
                              shape_string(nngp.test_train->shape()));
    }
    const Array<T>& ktt = *nngp.test_test;
    if (ktt.ndim() != 2 || ktt.dim(0) != m || ktt.dim(1) != m)
      throw InvalidArgument("the test-test kernel must be (M, M) with M = " + std::to_string(m) +
                            " (the test kernel's rows), got " + shape_string(ktt.shape()));
    check_finite(ktt, "the test-test kernel");
  }

  GpPosterior post;
  post.lambda = lambda_of(kdd, options);
  // One factor for every right-hand side: B = [y | Θ_dt | K_dt] (columns), the last two only for
  // the covariance (for nngp Θ = K and the middle block is skipped).
  std::vector<double> td_storage, kt_storage;
  const double* td = as_double(*solved.test_train, td_storage);            // (M, N) of the solved kernel
  const double* kt = covariance ? as_double(*nngp.test_train, kt_storage) : nullptr;  // (M, N) NNGP
  const index_t blocks = covariance ? (get == GpGet::ntk ? 2 : 1) : 0, width = o + blocks * m;
  std::vector<double> b(size_t(n * width));
  for (index_t i = 0; i < n; ++i) {
    double* row = b.data() + i * width;
    for (index_t c = 0; c < o; ++c) row[c] = y_train[i * o + c];
    if (blocks == 2)
      for (index_t j = 0; j < m; ++j) row[o + j] = td[j * n + i];
    if (blocks >= 1)
      for (index_t j = 0; j < m; ++j) row[o + (blocks - 1) * m + j] = kt[j * n + i];
  }
  RidgeFit fit;
  const Array<double> x = detail::solve_shifted(kdd, post.lambda, b.data(), width, fit);
  post.cholesky = fit.cholesky;
  post.warning = fit.warning;
  // mean = K_td X_y: GEMM on the first o columns of X (leading dimension `width`).
  post.mean = Array<double>(Shape{m, o});
  detail::gemm(false, false, m, o, n, 1.0, td, n, x.data(), width, 0.0, post.mean.data(), o);
  post.alpha = Array<double>(Shape{n, o});
  for (index_t i = 0; i < n; ++i) std::copy(x.data() + i * width, x.data() + i * width + o, post.alpha.data() + i * o);
  if (!covariance) return post;
  std::vector<double> ktt_storage;
  const double* ktt = as_double(*nngp.test_test, ktt_storage);
  const double* x_k = x.data() + o + (blocks - 1) * m;  // (Θ or K)⁻¹ K_dt, (N, M) with stride width
  post.covariance = Array<double>(Shape{m, m});
  double* cov = post.covariance.data();
  // term = K_td(of the solved kernel) · solve(K_dt of the NNGP), (M, M)
  std::vector<double> term(size_t(m * m));
  detail::gemm(false, false, m, m, n, 1.0, td, n, x_k, width, 0.0, term.data(), m);
  if (get == GpGet::nngp) {
    for (index_t e = 0; e < m * m; ++e) cov[e] = ktt[e] - term[size_t(e)];
    return post;
  }
  // ntk: term_1 = Θ⁻¹ Θ_dt (N, M); cov = term_1ᵀ K_dd term_1 − (term + termᵀ) + K_tt.
  const double* t1 = x.data() + o;
  std::vector<double> kdd_storage, kt1(size_t(n * m)), quad(size_t(m * m));
  const double* kdd_nngp = as_double(*nngp.train_train, kdd_storage);
  detail::gemm(false, false, n, m, n, 1.0, kdd_nngp, n, t1, width, 0.0, kt1.data(), m);
  detail::gemm(true, false, m, m, n, 1.0, t1, width, kt1.data(), m, 0.0, quad.data(), m);
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < m; ++j)
      cov[i * m + j] = (quad[size_t(i * m + j)] - (term[size_t(i * m + j)] + term[size_t(j * m + i)])) + ktt[i * m + j];
  return post;
}

template <class T>
double max_learning_rate(const Array<T>& k_train, index_t y_size, double momentum, int threads) {
  ThreadScope scope(threads);
  if (k_train.ndim() != 2 || k_train.dim(0) != k_train.dim(1) || k_train.dim(0) == 0)
    throw InvalidArgument("the train kernel must be square (N, N) with N > 0, got " + shape_string(k_train.shape()));
  check_finite(k_train, "the train kernel");
  if (y_size < 0) throw InvalidArgument("the target size must be >= 0");
  const detail::Eigensystem e = detail::eigensystem(k_train, 0.0);
  const double size = y_size == 0 ? double(k_train.dim(0)) : double(y_size);
  return 2 * (1 + momentum) * size / (e.w.back() + 1e-12);
}

#define NTK_DYNAMICS(T)                                                                                           \
  template GdMsePredictions gradient_descent_mse(const Array<T>&, const Array<double>&, const std::vector<double>&, \
                                                 const GdMseOptions&, const Array<T>*, const Array<double>*,       \
                                                 const Array<double>*);                                            \
  template GpPosterior gp_inference(GpGet, const Array<double>&, const GpKernels<T>&, const GpKernels<T>&,         \
                                    const PredictOptions&);                                                       \
  template double max_learning_rate(const Array<T>&, index_t, double, int);
NTK_DYNAMICS(float)
NTK_DYNAMICS(double)
#undef NTK_DYNAMICS

}  // namespace ntk
