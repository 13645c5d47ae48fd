// What the exact solvers (solve_ridge.cpp: kernel ridge; solve_dynamics.cpp: gradient-descent
// dynamics and GP inference) share, so that every one of them checks inputs, regularizes and falls
// back from Cholesky to an eigendecomposition the same way. Private to the library.
#pragma once
#include <string>
#include <vector>

#include "ntk/array.hpp"
#include "ntk/solve.hpp"

namespace ntk::detail {

template <class T>
void check_finite(const Array<T>& a, const char* what);

// O of targets (N,) (one output) or (N, O).
index_t outputs_of(const Array<double>& y);

// k (N, N) with N > 0, y (N,) or (N, O), both finite.
template <class T>
void check_train(const Array<T>& k, const Array<double>& y);

// trace(K) / N, the scale of a relative regularizer (neural-tangents' diag_reg).
template <class T>
double mean_diagonal(const Array<T>& k);

// K + λI in float64, row-major (symmetric, so also column-major).
template <class T>
std::vector<double> shifted_kernel(const Array<T>& k, double lambda);

// An eigendecomposition of K + λI: rows of `vecs` are the eigenvectors, `w` ascending.
struct Eigensystem {
  std::vector<double> vecs, w;
};
template <class T>
Eigensystem eigensystem(const Array<T>& k, double lambda);

// "%.3g": eigenvalues in messages (std::to_string would print -1e-17 as -0.000000).
std::string short_number(double v);

// Eigenvalues at or below this are treated as zero: the rounding level of the largest.
double eigen_tolerance(const std::vector<double>& w, index_t n);

// The validation MSE (mean over rows and outputs) of ridge regression at each λ = r·scale, r in
// `ridges`, from one eigendecomposition (eigenvalues w of a dim × dim training matrix): the validation
// predictions are P diag(1/(w + λ)) Q, P (v × dim) and Q (dim × o) formed by the caller; eigenvalues at
// or below eigen_tolerance are dropped. y_val (v × o). select_ridge's scheme, shared with the features'.
std::vector<double> validation_mses(const std::vector<double>& w, const std::vector<double>& p, const std::vector<double>& q,
                                    index_t v, index_t dim, index_t o, const double* y_val, const std::vector<double>& ridges,
                                    double scale);

// x (n × o) = V diag(g) Vᵀ y, V's eigenvectors the rows of `vecs` (row-major n × n).
void apply_spectral(const std::vector<double>& vecs, const std::vector<double>& g, index_t n, const double* y,
                    index_t o, double* x);

// X = (K + λI)⁻¹ B for B (n × o) row-major, every column from one factor: Cholesky when K + λI is
// numerically positive definite, else the pseudo-inverse on the eigen-directions above
// eigen_tolerance, with fit.cholesky = false and fit.warning, min_eigenvalue, dropped_directions
// set. `eig` (of the same K + λI) is reused by the fallback when the caller already has it.
template <class T>
Array<double> solve_shifted(const Array<T>& k, double lambda, const double* b, index_t o, RidgeFit& fit,
                            const Eigensystem* eig = nullptr);

}  // namespace ntk::detail
