// Exact kernel ridge regression: LAPACK Cholesky (dpotrf / dpotrs) of K + λI with every output
// column solved from the one factor, and an eigendecomposition (dsyevd) fallback for kernels that
// are not numerically positive definite (neural-tangents' users hit NaN there: issues #128, #76).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <type_traits>
#include <vector>

#include "blas.hpp"
#include "lapack.hpp"
#include "ntk/error.hpp"
#include "ntk/parallel.hpp"
#include "ntk/solve.hpp"
#include "solve_detail.hpp"


namespace ntk {
namespace detail {

template <class T>
void check_finite(const Array<T>& a, const char* what) {
  if (index_t bad = first_non_finite(a); bad >= 0)
    throw InvalidArgument(std::string(what) + " has a non-finite value (NaN or Inf) at flat index " + std::to_string(bad));
}

index_t outputs_of(const Array<double>& y) { return y.ndim() == 1 ? 1 : y.size() / std::max<index_t>(y.dim(0), 1); }

template <class T>
void check_train(const Array<T>& k, const Array<double>& y) {
  if (k.ndim() != 2 || k.dim(0) != k.dim(1) || k.dim(0) == 0)
    throw InvalidArgument("the train kernel must be square (N, N) with N > 0, got " + shape_string(k.shape()));
  if (y.ndim() < 1 || y.ndim() > 2 || y.dim(0) != k.dim(0))
    throw InvalidArgument("the targets must be (N,) or (N, O) with N = " + std::to_string(k.dim(0)) +
                          " (the kernel's rows), got " + shape_string(y.shape()));
  check_finite(k, "the train kernel");
  check_finite(y, "the targets");
}

template <class T>
double mean_diagonal(const Array<T>& k) {
  const index_t n = k.dim(0);
  double trace = 0;
  for (index_t i = 0; i < n; ++i) trace += double(k[i * n + i]);
  return trace / double(n);
}

template <class T>
std::vector<double> shifted_kernel(const Array<T>& k, double lambda) {
  const index_t n = k.dim(0);
  std::vector<double> a(size_t(n * n));
  for (index_t e = 0; e < n * n; ++e) a[size_t(e)] = double(k[e]);
  for (index_t i = 0; i < n; ++i) a[size_t(i * n + i)] += lambda;
  return a;
}

template <class T>
Eigensystem eigensystem(const Array<T>& k, double lambda) {
  Eigensystem e;
  e.vecs = shifted_kernel(k, lambda);
  eigh(e.vecs, k.dim(0), e.w);
  return e;
}

void apply_spectral(const std::vector<double>& vecs, const std::vector<double>& g, index_t n, const double* y,
                    index_t o, double* x) {
  std::vector<double> z(size_t(n * o));
  gemm(false, false, n, o, n, 1.0, vecs.data(), n, y, o, 0.0, z.data(), o);  // Vᵀ y
  for (index_t i = 0; i < n; ++i)
    for (index_t c = 0; c < o; ++c) z[size_t(i * o + c)] *= g[size_t(i)];
  gemm(true, false, n, o, n, 1.0, vecs.data(), n, z.data(), o, 0.0, x, o);
}

std::string short_number(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3g", v);
  return b;
}

double eigen_tolerance(const std::vector<double>& w, index_t n) {
  double top = 0;
  for (double v : w) top = std::max(top, std::abs(v));
  return double(n) * std::numeric_limits<double>::epsilon() * top;
}

template <class T>
Array<double> solve_shifted(const Array<T>& k, double lambda, const double* b, index_t o, RidgeFit& fit,
                            const Eigensystem* eig) {
  const index_t n = k.dim(0);
  Array<double> x(Shape{n, o});
  std::vector<double> a = shifted_kernel(k, lambda);
  // Symmetric, so row-major is column-major; B (n × o) row-major is o × n column-major: solve the
  // transposed right-hand sides column by column of a column-major copy.
  const int N = int(n), O = int(o);
  int info = cholesky_upper(a.data(), n);
  fit.cholesky = info == 0;
  if (info == 0) {
    std::vector<double> bt(size_t(n * o));
    for (index_t i = 0; i < n; ++i)
      for (index_t c = 0; c < o; ++c) bt[size_t(c * n + i)] = b[i * o + c];
    dpotrs_("L", &N, &O, a.data(), &N, bt.data(), &N, &info);
    for (index_t i = 0; i < n; ++i)
      for (index_t c = 0; c < o; ++c) x[i * o + c] = bt[size_t(c * n + i)];
    return x;
  }
  // Not numerically positive definite: solve on the eigen-directions that are.
  a.clear();
  Eigensystem own;
  if (!eig) {
    own = eigensystem(k, lambda);
    eig = &own;
  }
  const std::vector<double>& w = eig->w;
  const double tol = eigen_tolerance(w, n);
  std::vector<double> g(static_cast<size_t>(n));
  fit.dropped_directions = 0;
  for (index_t i = 0; i < n; ++i) {
    const bool keep = w[size_t(i)] > tol;
    g[size_t(i)] = keep ? 1.0 / w[size_t(i)] : 0.0;
    fit.dropped_directions += keep ? 0 : 1;
  }
  apply_spectral(eig->vecs, g, n, b, o, x.data());
  fit.min_eigenvalue = w.front();
  fit.warning = "the kernel plus ridge is not numerically positive definite (smallest eigenvalue " +
                short_number(w.front()) + "); solved by eigendecomposition with " +
                std::to_string(fit.dropped_directions) + " of " + std::to_string(n) +
                " directions (eigenvalue <= " + short_number(tol) + ") left out; a larger ridge avoids this";
  return x;
}

#define NTK_SOLVE_DETAIL(T)                                                                        \
  template void check_finite(const Array<T>&, const char*);                                        \
  template void check_train(const Array<T>&, const Array<double>&);                                \
  template double mean_diagonal(const Array<T>&);                                                  \
  template std::vector<double> shifted_kernel(const Array<T>&, double);                            \
  template Eigensystem eigensystem(const Array<T>&, double);                                       \
  template Array<double> solve_shifted(const Array<T>&, double, const double*, index_t, RidgeFit&, \
                                       const Eigensystem*);
NTK_SOLVE_DETAIL(float)
NTK_SOLVE_DETAIL(double)
#undef NTK_SOLVE_DETAIL

}  // namespace detail

using detail::check_finite;
using detail::check_train;
using detail::outputs_of;

template <class T>
RidgeFit kernel_ridge(const Array<T>& k_train, const Array<double>& y_train, const RidgeOptions& options) {
  ThreadScope threads(options.threads);
  check_train(k_train, y_train);
  if (!(options.ridge >= 0) || !std::isfinite(options.ridge))
    throw InvalidArgument("the ridge must be a finite number >= 0, got " + std::to_string(options.ridge));
  RidgeFit fit;
  fit.lambda = options.relative ? options.ridge * detail::mean_diagonal(k_train) : options.ridge;
  fit.alpha = detail::solve_shifted(k_train, fit.lambda, y_train.data(), outputs_of(y_train), fit);
  return fit;
}

template <class T>
Array<double> kernel_ridge_predict(const Array<T>& k_test, const Array<double>& alpha, int threads) {
  ThreadScope scope(threads);
  if (k_test.ndim() != 2 || alpha.ndim() != 2 || k_test.dim(1) != alpha.dim(0))
    throw InvalidArgument("the test kernel must be (M, N) with N = " + std::to_string(alpha.ndim() ? alpha.dim(0) : 0) +
                          " (the train kernel's size), got " + shape_string(k_test.shape()));
  check_finite(k_test, "the test kernel");
  const index_t m = k_test.dim(0), n = k_test.dim(1), o = alpha.dim(1);
  Array<double> out(Shape{m, o});
  if constexpr (std::is_same_v<T, double>) {
    detail::gemm(false, false, m, o, n, 1.0, k_test.data(), n, alpha.data(), o, 0.0, out.data(), o);
  } else {  // float kernels are multiplied in float64
    std::vector<double> k(size_t(m * n));
    for (index_t e = 0; e < m * n; ++e) k[size_t(e)] = double(k_test[e]);
    detail::gemm(false, false, m, o, n, 1.0, k.data(), n, alpha.data(), o, 0.0, out.data(), o);
  }
  return out;
}

namespace detail {

std::vector<double> validation_mses(const std::vector<double>& w, const std::vector<double>& p, const std::vector<double>& q,
                                    index_t v, index_t dim, index_t o, const double* y_val, const std::vector<double>& ridges,
                                    double scale) {
  const double tol = eigen_tolerance(w, dim);
  std::vector<double> gq(q.size()), pred(size_t(v * o)), out;
  for (double r : ridges) {
    const double lambda = r * scale;
    for (index_t j = 0; j < dim; ++j) {
      const double e = w[size_t(j)] + lambda, g = e > tol ? 1.0 / e : 0.0;
      for (index_t c = 0; c < o; ++c) gq[size_t(j * o + c)] = g * q[size_t(j * o + c)];
    }
    gemm(false, false, v, o, dim, 1.0, p.data(), dim, gq.data(), o, 0.0, pred.data(), o);
    double mse = 0;
    for (index_t i = 0; i < v; ++i)
      for (index_t c = 0; c < o; ++c) {
        const double d = pred[size_t(i * o + c)] - y_val[i * o + c];
        mse += d * d / double(v * o);
      }
    out.push_back(mse);
  }
  return out;
}

}  // namespace detail

template <class T>
RidgeSelection select_ridge(const Array<T>& k, const Array<double>& y, index_t validation,
                            const std::vector<double>& ridges, int threads) {
  ThreadScope scope(threads);
  check_train(k, y);
  const index_t n = k.dim(0), o = outputs_of(y), nt = n - validation;
  if (validation < 1 || nt < 1)
    throw InvalidArgument("the validation split must hold between 1 and N - 1 examples, got " + std::to_string(validation) +
                          " of " + std::to_string(n));
  if (ridges.empty()) throw InvalidArgument("select_ridge needs at least one candidate ridge");
  for (double r : ridges)
    if (!(r >= 0) || !std::isfinite(r)) throw InvalidArgument("candidate ridges must be finite and >= 0");
  std::vector<double> a(size_t(nt * nt)), p(size_t(validation * nt));
  double mean_diag = 0;
  for (index_t i = 0; i < nt; ++i) {
    for (index_t j = 0; j < nt; ++j) a[size_t(i * nt + j)] = double(k[i * n + j]);
    mean_diag += double(k[i * n + i]) / double(nt);
  }
  std::vector<double> w;
  detail::eigh(a, nt, w);  // rows of a: eigenvectors of the training block
  // P = K_vt V (validation × nt) and Q = Vᵀ Y_t (nt × o), once; each candidate is P diag(g) Q.
  std::vector<double> kvt(size_t(validation * nt)), q(size_t(nt * o));
  for (index_t i = 0; i < validation; ++i)
    for (index_t j = 0; j < nt; ++j) kvt[size_t(i * nt + j)] = double(k[(nt + i) * n + j]);
  detail::gemm(false, true, validation, nt, nt, 1.0, kvt.data(), nt, a.data(), nt, 0.0, p.data(), nt);
  detail::gemm(false, false, nt, o, nt, 1.0, a.data(), nt, y.data(), o, 0.0, q.data(), o);
  RidgeSelection s;
  s.ridges = ridges;
  s.validation_mse = detail::validation_mses(w, p, q, validation, nt, o, y.data() + nt * o, ridges, mean_diag);
  s.best_ridge = ridges[size_t(std::min_element(s.validation_mse.begin(), s.validation_mse.end()) - s.validation_mse.begin())];
  return s;
}

template RidgeFit kernel_ridge(const Array<float>&, const Array<double>&, const RidgeOptions&);
template RidgeFit kernel_ridge(const Array<double>&, const Array<double>&, const RidgeOptions&);
template Array<double> kernel_ridge_predict(const Array<float>&, const Array<double>&, int);
template Array<double> kernel_ridge_predict(const Array<double>&, const Array<double>&, int);
template RidgeSelection select_ridge(const Array<float>&, const Array<double>&, index_t, const std::vector<double>&, int);
template RidgeSelection select_ridge(const Array<double>&, const Array<double>&, index_t, const std::vector<double>&, int);

}  // namespace ntk
