// Kernel methods on a computed kernel (REFERENCE.md section 6): exact kernel ridge regression in
// float64, with neural-tangents' relative regularizer (diag_reg) or an absolute one, and the
// choice of the regularizer on a validation split. Never NaN: a kernel that is not numerically
// positive definite is solved by eigendecomposition instead of Cholesky, with a warning.
#pragma once
#include <string>
#include <vector>

#include "ntk/array.hpp"

namespace ntk {

struct RidgeOptions {
  // The regularizer: λ = ridge · mean(diag K) when relative (neural-tangents' diag_reg), else
  // λ = ridge. (K + λI) α = Y.
  double ridge = 0.0;
  bool relative = true;
  int threads = 0;  // threads for this call; 0 = num_threads()
};

// α for every output column of Y, from one factorization of K + λI.
struct RidgeFit {
  Array<double> alpha;            // (N, O)
  double lambda = 0.0;            // the absolute regularizer applied
  bool cholesky = true;           // false: K + λI was not numerically positive definite
  double min_eigenvalue = 0.0;    // of K + λI, when the eigendecomposition ran
  index_t dropped_directions = 0; // eigen-directions treated as zero (eigenvalue ≤ tolerance)
  std::string warning;            // non-empty when the fallback ran: what was found and done
};

// k_train (N, N) symmetric, y_train (N, O) (or (N,) for one output). Throws InvalidArgument on
// shapes that do not match, non-finite values or a negative ridge. Solves in float64 whatever T.
template <class T>
RidgeFit kernel_ridge(const Array<T>& k_train, const Array<double>& y_train, const RidgeOptions& options = {});

// Predictions k_test (M, N) · α (N, O) -> (M, O) in float64.
template <class T>
Array<double> kernel_ridge_predict(const Array<T>& k_test, const Array<double>& alpha, int threads = 0);

// The choice of the relative ridge on a validation split: the last `validation` examples of
// k (N, N) / y (N, O) are held out; one eigendecomposition of the training block prices every
// candidate, and the one with the least validation mean squared error wins.
struct RidgeSelection {
  std::vector<double> ridges;          // the candidates, relative
  std::vector<double> validation_mse;  // per candidate, mean over examples and outputs
  double best_ridge = 0.0;
};
template <class T>
RidgeSelection select_ridge(const Array<T>& k, const Array<double>& y, index_t validation,
                            const std::vector<double>& ridges, int threads = 0);

}  // namespace ntk
