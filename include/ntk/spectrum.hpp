// Spectra and comparisons of kernels (REFERENCE.md section 6): every eigenvalue of a kernel that
// fits in memory (LAPACK), the top or bottom few of one that does not, or of the eNTK as an
// operator that is never formed (Lanczos, Spectra); the diagnostics users compute from them; the
// distance between two kernels, including a pNTK against the full eNTK it approximates; and the
// pNTK report of Mohamadi et al. (how far pNTK ⊗ I_O is from the eNTK, and what each costs and
// predicts).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ntk/array.hpp"
#include "ntk/empirical.hpp"
#include "ntk/kernel_block.hpp"
#include "ntk/network.hpp"

namespace ntk {

// ---------------------------------------------------------------------------------------------
// Diagnostics of a kernel that fits in memory

struct SpectrumOptions {
  bool keep_eigenvalues = true;  // false: only the diagnostics are returned
  int threads = 0;               // 0 = num_threads()
};

// What the eigenvalues of a symmetric kernel K (N × N) say about it.
struct KernelSpectrum {
  index_t n = 0;
  std::vector<double> eigenvalues;  // ascending (empty unless keep_eigenvalues)
  double lambda_max = 0, lambda_min = 0;
  // λmax / λmin; +inf when λmin ≤ 0 (the kernel is singular or indefinite in float64), with
  // positive_definite false.
  double condition = 0;
  bool positive_definite = false;
  // exp(H(p)), p_i = λ_i / Σ_j λ_j over the positive eigenvalues, H the Shannon entropy (Roy &
  // Vetterli 2007): 1 for a rank-one kernel, N for a multiple of the identity. Negative eigenvalues
  // (rounding of a PSD kernel) are left out.
  double effective_rank = 0;
  // trace / λmax ("intrinsic dimension", Tropp): cheaper and cruder, needs no full spectrum.
  double trace_over_lambda_max = 0;
  double trace = 0, frobenius = 0;
  // Kernel-target alignment ⟨K, YYᵀ⟩_F / (‖K‖_F ‖YYᵀ‖_F) (Cristianini et al. 2002, uncentered),
  // when targets Y (N, O) were given; YYᵀ is never formed.
  std::optional<double> alignment;
};

// k (N, N) float32 / float64, symmetric (only the lower triangle is read by LAPACK; asymmetry is
// not checked beyond the shape). y: nullptr, or targets (N,) / (N, O). Throws InvalidArgument on a
// non-square kernel or non-finite values, NumericalError if LAPACK does not converge.
template <class T>
KernelSpectrum spectrum(const Array<T>& k, const Array<double>* y = nullptr, const SpectrumOptions& options = {});

// The diagnostics that need no eigenvalues (trace, Frobenius norm, alignment), from the kernel's
// blocks of rows: for kernels too large for spectrum(); the other fields stay 0. Reads K once.
KernelSpectrum kernel_statistics(const KernelBlocks& k, const Array<double>* y = nullptr, index_t block_rows = 0,
                                 int threads = 0);

// ⟨K, YYᵀ⟩_F / (‖K‖_F ‖YYᵀ‖_F) for k (N, N), y (N,) or (N, O).
template <class T>
double kernel_alignment(const Array<T>& k, const Array<double>& y);

// ---------------------------------------------------------------------------------------------
// A few eigenvalues by Lanczos (Spectra's implicitly restarted Lanczos, SymEigsSolver)

struct LanczosOptions {
  index_t count = 6;                              // how many eigenvalues
  enum Which { largest, smallest } which = largest;  // algebraically
  index_t ncv = 0;              // Lanczos basis size, count < ncv ≤ n; 0: max(2·count + 1, 20), at most n
  index_t max_iterations = 1000;  // restarts
  double tolerance = 1e-10;       // relative, Spectra's convergence test
  // Kernel blocks only: rows per block of the product K·v (a block of rows × all columns is the
  // only part of K held at a time); 0: the rows that fit in 64 MiB of float64.
  index_t block_rows = 0;
  int threads = 0;
};

struct LanczosResult {
  std::vector<double> eigenvalues;  // ascending
  index_t iterations = 0;           // restarts used
  index_t products = 0;             // operator-vector products
};

// The `count` largest or smallest eigenvalues of a symmetric kernel given by blocks, K·v formed one
// block of rows at a time (never the whole matrix). Throws InvalidArgument if k is not symmetric or
// count is out of range, NumericalError (saying to raise max_iterations or ncv) if Lanczos does not
// converge.
LanczosResult lanczos_eigenvalues(const KernelBlocks& k, const LanczosOptions& options);

// The same for the eNTK Θ of dimension N·O given only as NTK-vector products, index (n, a) = n·O + a
// (the full eNTK (N, N, O, O) read as (N·O × N·O)): e.g. λmax of an eNTK too large to form.
template <class T>
LanczosResult lanczos_eigenvalues(const NtkOperator<T>& op, const LanczosOptions& options);

// ---------------------------------------------------------------------------------------------
// Comparing two kernels

struct CompareOptions {
  bool spectra = true;  // eigenvalues of both (needs square kernels); false: distances only
  int threads = 0;
};

// A compared with B (B the reference). Shapes: both (N, M); both full (N, M, O, O); or one (N, M)
// and the other full (N, M, O, O), when the 2-D one is read as K ⊗ I_O (a pNTK, or an
// infinite-width kernel, against a full eNTK; DESIGN.md's layout: index (n, a)), without forming
// the Kronecker product. Full kernels are read as (N·O × M·O) matrices with index (n, a).
struct KernelComparison {
  Shape a_shape, b_shape;
  bool kronecker = false;  // one side was expanded as K ⊗ I_O
  index_t outputs = 1;     // O of the Kronecker expansion (1 otherwise)
  double frobenius_a = 0, frobenius_b = 0;  // of the matrices compared (A ⊗ I_O if expanded)
  double relative_frobenius = 0;            // ‖A − B‖_F / ‖B‖_F
  bool has_spectra = false;                 // square kernels and options.spectra
  // λ(K ⊗ I_O) = λ(K) (each O times), so the expanded side's spectrum is that of the 2-D kernel.
  double lambda_max_a = 0, lambda_max_b = 0, lambda_max_ratio = 0;  // ratio A / B
  double lambda_min_a = 0, lambda_min_b = 0;
  double condition_a = 0, condition_b = 0, condition_ratio = 0;  // +inf condition: λmin ≤ 0
};

// The spectra assume symmetric kernels (LAPACK reads one triangle); rectangular kernels (test by
// train) get distances only. Throws InvalidArgument on shapes that cannot be compared or
// non-finite values.
template <class T>
KernelComparison compare(const Array<T>& a, const Array<T>& b, const CompareOptions& options = {});

// ---------------------------------------------------------------------------------------------
// The pNTK report (Mohamadi et al. 2023): the full eNTK against the pNTK at the same parameters.

struct PntkReportOptions {
  double ridge = 1e-4;            // relative to the mean of each train kernel's diagonal, both kernels
  EntkMethod method = EntkMethod::automatic;
  std::uint64_t max_memory = 0;   // per eNTK call; 0: no limit
  int threads = 0;
};

// One kernel computation: wall time, the planner's memory estimate (kernel + working memory), and
// the measured growth of the process's peak resident memory during the call (Linux: VmHWM after
// resetting it; 0 where that is not available). The measurement is a lower bound: memory that an
// earlier call freed and the allocator kept resident (keep_freed_memory_for_reuse) is reused
// without growth, so a pNTK computed after the full eNTK often shows 0.
struct KernelCost {
  Shape shape;
  double seconds = 0;
  std::uint64_t estimated_bytes = 0;
  std::uint64_t measured_peak_bytes = 0;
};

struct PntkReport {
  index_t n_train = 0, n_test = 0, outputs = 0, num_params = 0;
  std::string method;  // the eNTK method the planner chose for the full kernel
  KernelCost full_train, full_test, pntk_train, pntk_test;
  KernelComparison train;  // pNTK ⊗ I_O against the full train eNTK, with spectra
  KernelComparison test;   // the same for test-by-train (distances only)
  double ridge = 0;        // relative, as given
  // Kernel regression, (K + λI) α = Y: full eNTK on the (N·O × N·O) system with the targets
  // flattened to (N·O,), the pNTK on N × N with O columns.
  double accuracy_full = 0, accuracy_pntk = 0;  // argmax of predictions vs argmax of y_test
  double mse_full = 0, mse_pntk = 0;            // test mean squared error over examples and outputs
  double solve_seconds_full = 0, solve_seconds_pntk = 0;  // factor + predict
  std::string warnings;  // from the ridge solver's fallback, if any ran
};

// x_train (N, ...), y_train (N, O) targets (e.g. one-hot), x_test (M, ...), y_test (M, O).
// Throws InvalidArgument on shapes that do not match (O must equal the network's outputs).
template <class T>
PntkReport pntk_report(const Network& net, ThetaSpan<T> theta, const Array<T>& x_train,
                       const Array<double>& y_train, const Array<T>& x_test, const Array<double>& y_test,
                       const PntkReportOptions& options = {});

}  // namespace ntk
