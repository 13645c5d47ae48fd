// Linearized gradient-descent dynamics and Gaussian-process inference on a computed kernel, in
// neural-tangents' `predict` conventions (REFERENCE.md section 6), in float64 (float32 kernels are
// converted). Names and formulas follow nt.predict.gradient_descent_mse, gp_inference and
// max_learning_rate with trace_axes=(-1,): a kernel (N, N) stands for K ⊗ I over the O outputs.
//
// Never NaN: where neural-tangents' Cholesky factor would fail (a kernel plus regularizer that is
// not numerically positive definite), the pseudo-inverse on the positive eigen-directions is used
// instead and a warning says so (the fallback of kernel_ridge, shared with it).
#pragma once
#include <string>
#include <vector>

#include "ntk/array.hpp"

namespace ntk {

// The diagonal regularizer as neural-tangents takes it: λ = diag_reg · trace(K) / N when relative,
// else diag_reg; K + λI is used everywhere K is (factorized, or decomposed, and evolved).
struct PredictOptions {
  double diag_reg = 0.0;
  bool diag_reg_absolute_scale = false;
  int threads = 0;  // 0 = num_threads()
};

// ---------------------------------------------------------------------------------------------
// Gradient descent on the MSE loss 1/(2|y|) Σ (f − y)², |y| = y_train.size() = N·O, of the model
// linearized in its parameters, in continuous time (gradient flow), with learning rate η:
//   f_train(t) = f0 + expm1(−η t K/|y|) (f0 − y)
//   f_test(t)  = f_test0 + K_td K⁻¹ expm1(−η t K/|y|) (f0 − y)
// K = K_train + λI. Finite t: one eigendecomposition of K shared by every time; eigenvalues
// clipped at 0 inside the exponential and |λ_i| in K⁻¹ (as neural-tangents: a direction with a
// negative eigenvalue does not move); an eigenvalue exactly 0 takes the limit −η t/|y| where
// neural-tangents gives NaN. t = ∞ (infinity()): f_train = y, as neural-tangents (the flow of
// K + λI reaches the targets whatever λ; pass the train kernel as k_test for the ridge's
// in-sample fit), f_test = f_test0 + K_td K⁻¹ (y − f0) from a Cholesky factor (nt's t=None).
struct GdMseOptions : PredictOptions {
  double learning_rate = 1.0;
};

struct GdMsePredictions {
  std::vector<double> times;  // as asked
  Array<double> train;        // (T, N, O)
  Array<double> test;         // (T, M, O); empty without a test kernel
  double lambda = 0.0;        // the absolute regularizer added to the diagonal
  bool cholesky = true;       // false: t = ∞ took the eigendecomposition fallback
  std::string warning;        // non-empty when something was clipped or a fallback ran
};

// k_train (N, N) symmetric; y_train (N,) or (N, O); times ≥ 0 (finite or infinity()); k_test
// (M, N) or nullptr for train predictions only; f0_train / f0_test the outputs at t = 0 with
// y_train's / (M, O) shape, nullptr meaning zeros. Throws InvalidArgument on shapes that do not
// match, non-finite values, a negative or non-finite regularizer or learning rate, a negative or
// NaN time.
template <class T>
GdMsePredictions gradient_descent_mse(const Array<T>& k_train, const Array<double>& y_train,
                                      const std::vector<double>& times, const GdMseOptions& options = {},
                                      const Array<T>* k_test = nullptr, const Array<double>* f0_train = nullptr,
                                      const Array<double>* f0_test = nullptr);

// ---------------------------------------------------------------------------------------------
// Gaussian-process inference (nt.predict.gp_inference): the posterior on the test set of
//   nngp: the Bayesian infinitely wide network, mean K_td K⁻¹ y, covariance K_tt − K_td K⁻¹ K_dt
//         (K the NNGP, regularized);
//   ntk:  the infinite ensemble of infinitely wide networks trained to convergence, mean
//         Θ_td Θ⁻¹ y (Θ the NTK, regularized), covariance
//         K_tt + Θ_td Θ⁻¹ K_dd Θ⁻¹ Θ_dt − (Θ_td Θ⁻¹ K_dt + its transpose) (K the NNGP, unregularized
//         except inside Θ⁻¹).
// Each regularizer is relative to its own kernel's trace.
enum class GpGet { nngp, ntk };
GpGet parse_gp_get(const std::string& s);  // "nngp" | "ntk"

// One kernel on the train and test sets; the covariance is computed when test_test is given.
template <class T>
struct GpKernels {
  const Array<T>* train_train = nullptr;  // (N, N)
  const Array<T>* test_train = nullptr;   // (M, N)
  const Array<T>* test_test = nullptr;    // (M, M)
};

struct GpPosterior {
  Array<double> mean;        // (M, O)
  Array<double> alpha;       // (N, O) = (K + λI)⁻¹ y: the mean at other examples x is K(x, X)·alpha
  Array<double> covariance;  // (M, M), the same for every output; empty when not asked
  double lambda = 0.0;       // the absolute regularizer of the solved kernel
  bool cholesky = true;      // false: the eigendecomposition fallback ran
  std::string warning;
};

// get = nngp uses `nngp` only; get = ntk takes its mean from `ntk` and, for the covariance, needs
// nngp.train_train, nngp.test_train and nngp.test_test (ntk.test_test is not used).
template <class T>
GpPosterior gp_inference(GpGet get, const Array<double>& y_train, const GpKernels<T>& nngp, const GpKernels<T>& ntk,
                         const PredictOptions& options = {});

// The largest learning rate at which full-batch gradient descent (with momentum) on the MSE loss
// above converges: 2 (1 + momentum) · y_size / (λmax + 1e-12), as neural-tangents (y_size 0: N).
template <class T>
double max_learning_rate(const Array<T>& k_train, index_t y_size = 0, double momentum = 0.0, int threads = 0);

}  // namespace ntk
