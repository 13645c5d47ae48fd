// The regression job behind `ntk regress` (and the Python bindings): targets or class labels from
// files or memory, a solver on a computed kernel, predictions at gradient-descent times, metrics.
// Like every job (jobs.hpp) it holds the run policy and is dtype-erased: kernels are read as
// float32 or float64 and solved in float64.
#pragma once
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "ntk/dynamics.hpp"
#include "ntk/empirical.hpp"
#include "ntk/infinite.hpp"
#include "ntk/jobs.hpp"
#include "ntk/solve.hpp"

namespace ntk {

// ---------------------------------------------------------------------------------------------
// Targets

// What a targets file held: float targets, or integer class labels (to become one-hot targets once
// the number of classes is known from every split).
struct Targets {
  bool is_labels = false;
  Array<double> values;               // (N, O) float targets (an (N,) file is one output); empty for labels
  std::vector<std::int64_t> labels;   // (N) class labels, each >= 0
  index_t rows() const { return is_labels ? index_t(labels.size()) : (values.ndim() ? values.dim(0) : 0); }
};

// Reads targets by content, as load_input reads inputs: a float .npy (N,) or (N, O) is targets; an
// integer .npy (N,) or an IDX file of one dimension (any element type, e.g. Fashion-MNIST's
// *-labels-idx1-ubyte[.gz]) is class labels. Throws InvalidArgument on negative or non-integer
// labels, non-finite targets, integer arrays of more than one dimension, or an empty file.
Targets load_targets(const JobInput& input);

// One-hot targets (N, classes): 1 at the label's column, 0 elsewhere (neural-tangents' examples
// subtract 0.1 from these; with a kernel method that shift changes predictions only by a constant
// that argmax ignores). Throws InvalidArgument if a label is >= classes.
Array<double> one_hot(const std::vector<std::int64_t>& labels, index_t classes);

// Targets as a matrix (N, O): float targets as they are ((N,) as one column), class labels one-hot
// over `classes` columns (0: the largest label + 1).
Array<double> targets_matrix(const JobInput& input, index_t classes = 0);

// The class with the largest prediction, first on ties, per row of predictions (N, O).
std::vector<std::int64_t> argmax_rows(const Array<double>& predictions);

// ---------------------------------------------------------------------------------------------
// RegressJob

constexpr double kInfiniteTime = std::numeric_limits<double>::infinity();

// The NTK posterior covariance needs the NNGP on the same examples (nt.predict.gp_inference).
struct NngpInputs {
  JobInput train;      // (N, N)
  JobInput test;       // (M, N)
  JobInput test_test;  // (M, M)
};

// A kernel computed from a network, block by block (kernel_block.hpp), instead of read from files:
// the infinite-width NTK / NNGP, or an empirical kernel in a scalar mode at given parameters.
struct NetworkKernel {
  NetworkRequest net;
  JobInput x_train;
  std::optional<JobInput> x_test;
  bool empirical = false;                       // false: the infinite-width kernel `get`
  KernelOptions::Get get = KernelOptions::ntk;  // infinite width
  EntkMode mode{EntkMode::pntk};                // empirical: every mode but full and diagonal
  ParamSource params;                           // empirical
  // The compute type; nullopt: float64 for the infinite-width kernel; for the empirical one float64
  // if x_train is float64, else float32 (as `ntk kernel` / `ntk entk` decide).
  std::optional<DType> dtype;
  InputOptions input;
};

struct RegressJob {
  // The solver's inputs, exactly one of:
  //   - k_train (N, N) and k_test (M, N) kernel files (no test predictions without k_test);
  //   - network: the kernel computed from a network on x_train / x_test;
  //   - f_train (N, m) and f_test (M, m) features: ridge regression on features, never the N × N
  //     kernel (t = ∞, a fixed ridge).
  // With centers > 0 the kernel (files memory-mapped, or the network's) is solved by Nyström on that
  // many centers with Falkon's preconditioned CG (t = ∞, a fixed ridge); only K(X, C), K(C, C) and
  // K(X_test, C) are formed. Without, a network's kernel is formed whole and solved exactly.
  // Everything else (targets, times, metrics, outputs) is shared.
  std::optional<JobInput> k_train;
  std::optional<JobInput> k_test;
  std::optional<NetworkKernel> network;
  std::optional<JobInput> f_train;
  std::optional<JobInput> f_test;
  index_t centers = 0;
  std::uint64_t center_seed = 0;
  std::vector<index_t> center_indices;  // non-empty: these examples are the centers (centers = their number)
  index_t batch_rows = 0;        // features: rows of F per accumulation step; 0: about 64 MiB
  index_t max_iterations = 100;  // Nyström's conjugate gradient
  double tolerance = 1e-7;       // its relative residual
  // Bytes for the kernels and the solver's matrices; 0 = no limit. Exact solves that do not fit are
  // refused (naming Nyström's centers); Nyström recomputes K(X, C) per iteration when it does not fit.
  std::uint64_t max_memory = 0;
  ProgressFn progress;  // Nyström: (iteration, maximum iterations)

  JobInput y_train;                // targets or class labels (load_targets)
  std::optional<JobInput> y_test;  // for the test metrics
  index_t classes = 0;             // labels: number of classes; 0 = max label over train and test + 1

  // The regularizer: relative to trace(K)/N (neural-tangents' diag_reg) unless ridge_absolute.
  double ridge = 0.0;
  bool ridge_absolute = false;
  // Chooses the relative ridge on a validation split (select_ridge over ridge_grid), then refits on
  // every training example with it.
  bool ridge_auto = false;
  index_t validation = 0;          // held-out training rows (the last ones); 0 = N / 10, at least 1
  std::vector<double> ridge_grid;  // empty = default_ridge_grid()

  // Gradient-descent times (kInfiniteTime = converged, the ridge solution); one result per time.
  std::vector<double> times{kInfiniteTime};
  double learning_rate = 1.0;

  // GP posterior covariance (t = ∞ only), written to covariance_path, (M, M): with `nngp` unset,
  // k_train / k_test are the NNGP and k_test_test its test-test kernel; with `nngp` set they are
  // the NTK (mean of the trained infinite ensemble) and the covariance comes from the NNGP inputs.
  std::optional<JobInput> k_test_test;
  std::optional<NngpInputs> nngp;
  std::string covariance_path;

  // Resumable solves (Nyström, features): the solver's state is kept beside the first output
  // (output_path, else train_output_path) as OUTPUT.ntk-state, saved at most every
  // checkpoint_seconds (0: after every block of rows or batch); resume continues an interrupted run
  // of the same job from it, to the same bytes. Without resume, a state left by another run is
  // refused rather than overwritten.
  bool resume = false;
  double checkpoint_seconds = 60;

  int threads = 0;
  std::string output_path;        // test predictions .npy, (M, O) or (T, M, O) for several times
  std::string train_output_path;  // train predictions .npy, (N, O) or (T, N, O): the in-sample
                                  // outputs (test formula with the train kernel), which a ridge
                                  // keeps from the targets at t = ∞

};

// The relative ridges `ridge_auto` tries: 0 and 10^k for k = -8, -7.5, ..., 1.
std::vector<double> default_ridge_grid();

struct RegressMetrics {
  double time = kInfiniteTime;
  double train_mse = 0.0;                       // mean over examples and outputs
  std::optional<double> test_mse;               // with test targets
  std::optional<double> train_accuracy;         // with class labels
  std::optional<double> test_accuracy;          // with class labels for the test set
};

struct RegressResult {
  index_t n_train = 0, n_test = 0, outputs = 0;
  index_t classes = 0;              // 0: float targets
  // "cholesky" or "eigh" (the eigendecomposition fallback) for exact kernels and features;
  // "nystrom-pcg" for Nyström.
  std::string solver;
  index_t centers = 0, iterations = 0;  // Nyström
  bool kernel_cached = false;           // Nyström: K(X, C) held in memory
  double ridge = 0.0;               // as applied: relative unless ridge_absolute
  bool ridge_absolute = false;
  double lambda = 0.0;              // the absolute value added to the diagonal
  std::optional<RidgeSelection> selection;  // with ridge_auto
  index_t validation = 0;                   // with ridge_auto
  std::vector<RegressMetrics> metrics;      // one per time
  std::string warning;              // non-empty when the solver fell back or clipped
  std::string resumed_at;           // a resumed solve: where it continued
  // Also kept in memory when written: (M, O) / (N, O), with a leading time axis for several times.
  Array<double> test_predictions;
  Array<double> train_predictions;
  Array<double> covariance;         // (M, M) with the GP inputs
};

// Checks every input before solving; writes the outputs only when everything succeeded. Throws
// InvalidArgument (a message naming the flag / input) on inputs that do not fit together.
RegressResult run_regress(const RegressJob& job);

// The result as one JSON object (`ntk regress --json`, and the Python bindings' report): sizes, solver,
// ridge (and its selection), metrics per time (an infinite time as the string "inf"), output paths.
std::string regress_json(const RegressResult& r, const RegressJob& job);

}  // namespace ntk
