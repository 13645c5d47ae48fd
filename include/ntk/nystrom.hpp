// Kernel ridge regression without the N × N kernel (REFERENCE.md section 6):
//   - Nyström kernel ridge on M centers, solved by Falkon's preconditioned conjugate gradient
//     (Rudi, Carratino, Rosasco 2017; Meanti et al. 2020) over any KernelBlocks: memory O(N·M)
//     with K_nM cached, O(row block · M + M²) when it is recomputed every iteration;
//   - ridge regression on explicit features F (n, m), through FᵀF (m × m), never F Fᵀ.
// Both use kernel_ridge's regularizer convention: λ = ridge · mean(diag K) when relative, so the
// same ridge means the same model as the exact solver.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ntk/array.hpp"
#include "ntk/kernel_block.hpp"

namespace ntk {

// How the M centers are chosen among the N training examples (all of them when M >= N).
//   uniform:    M of N uniformly without replacement. Kernel work: the solve's own, K_nM (N·M
//               entries, once when cached) and K_MM (M²).
//   rpcholesky: randomized pivoted Cholesky (Chen, Epperly, Tropp, Webber 2023, "Randomly pivoted
//               Cholesky"; blocked by rejection sampling as in Epperly, Tropp, Webber 2024,
//               "Embrace rejection"): each center is drawn with probability proportional to the
//               residual diagonal K_ii − k_iSᵀ K_SS⁻¹ k_iS of the kernel given the centers S so far,
//               i.e. to how badly the current Nyström approximation misses example i (D² sampling
//               in the kernel's feature space). Each round draws `selection_block` candidates
//               i.i.d. from the round's residual diagonal, accepts them one by one with probability
//               (residual given the centers accepted so far, this round's included) / (residual at
//               the round's start) — which decides from the candidates' small block K_BB alone, and
//               gives sequential RPCholesky's distribution (but for a candidate drawn twice in a
//               round, which is tried once) — and only then computes
//               the accepted centers' columns K(X, accepted) and updates the residual diagonal.
//               Those columns are the columns of K_nM, reused by the solver (never recomputed when
//               K_nM is cached). Kernel work: diag K (N entries, also needed for λ), K_nM (N·M, the
//               solve's own; K_MM is read from it), plus |B|² per round (about M·selection_block
//               in all; measured 1.014·N·M in all for N = 10000, M = 2000, against uniform's
//               1.2·N·M). Extra arithmetic:
//               about 3·N·M² flops (the factor's updates, N·M², and K_nM = F F_Sᵀ rebuilt from the
//               factor F, 2·N·M²): on a cheap kernel such as the FCN NTK this, not the kernel,
//               dominates and the fit takes about 1.5-2x uniform's time. Extra
//               memory: none beyond the cached K_nM (the factor is built in its place) plus
//               N·selection_block for one round's columns. Near-duplicates of a chosen center have
//               residual ~0 and are not drawn again, so M centers span more of the kernel (smaller
//               trace of K − K̂) than M uniform ones, and a kernel of rank r is spanned by r centers.
//               Measured on Fashion-MNIST with the README FCN NTK (N = 10000, M = 2000, relative
//               ridge 1e-3 and 1e-4; bench/tools/nystrom_fmnist.cpp): no better than uniform in test
//               accuracy or in distance to the exact solve's predictions (it favours unusual
//               images, of large residual), so it is not the default.
//   greedy:     deterministic pivoted Cholesky: always the example of largest residual diagonal
//               (ties to the lower index), blocked so that each round takes the largest candidates
//               while they still beat every residual outside the round (exactly the sequential
//               greedy order). Same costs as rpcholesky; the seed is not used. Favours outliers
//               (largest residual) even more: worse than uniform on Fashion-MNIST; kept for
//               comparison and for kernels of low exact rank.
// When the kernel is numerically exhausted (every residual ≤ 1e-10 · max K_ii) before M centers
// are found, the pivoted selections stop there: fewer centers, with a warning (the kernel restricted
// to the examples has numerical rank < M, and Nyström on those centers is then exact kernel ridge).
// Pivoted selection keeps the N × M factor in memory: when K_nM would not be cached under
// max_memory, they fall back to uniform with a warning.
enum class CenterSelection { uniform, rpcholesky, greedy };
// "uniform", "rpcholesky", "greedy"; parse: InvalidArgument naming the choices for anything else.
const char* center_selection_name(CenterSelection selection);
CenterSelection parse_center_selection(const std::string& name);

// Resumable solves (`ntk regress --resume`; the file is src/checkpoint.hpp's StateCheckpoint). A
// solver offers its state after each unit of work (a block of K_nM's rows, a batch of features);
// the checkpoint saves it when due, and hands a rerun of the same job the last state saved, from
// which the solver continues to the same bits as an uninterrupted run. The solver names and shapes
// its arrays (float64).
struct StateArray {
  std::string name;
  Shape shape;
  const double* data = nullptr;
};

struct SolverState {
  bool empty() const { return arrays.empty(); }  // nothing saved: a fresh solve
  std::map<std::string, Array<double>> arrays;
};

class SolverCheckpoint {
 public:
  virtual ~SolverCheckpoint() = default;
  virtual const SolverState& saved() const = 0;  // the state to continue from (empty: none)
  virtual bool due() const = 0;                  // whether an offered state would be saved now
  virtual void save(const std::vector<StateArray>& arrays) = 0;
};

struct NystromOptions {
  index_t centers = 1000;  // M; more than N uses all N training examples (with a warning)
  // How the centers are chosen (above); all random draws are Philox streams of `seed`, so the
  // centers depend on the seed and the kernel only, never on the thread count.
  CenterSelection selection = CenterSelection::uniform;
  // Non-empty: these training examples are the centers (distinct; taken in ascending order), in
  // place of `centers` and `selection`: for solvers elsewhere (ntkit.dask) to agree on them.
  std::vector<index_t> center_indices;
  std::uint64_t seed = 0;
  index_t selection_block = 0;  // pivoted selections: candidates per round; 0: 128
  // λ = ridge · mean(diag K over all N training examples) when relative, else ridge; the solved
  // problem is (K_nMᵀ K_nM + λ K_MM) α = K_nMᵀ Y, which for M = N is exact kernel ridge.
  double ridge = 0.0;
  bool relative = true;
  index_t max_iterations = 100;
  // Every output column stops when its preconditioned residual, relative to its right-hand side,
  // is at most this.
  double tolerance = 1e-7;
  // Bytes for the solver's matrices; 0 = no limit. K_nM (N × M float64) is cached when it fits
  // beside K_MM and the preconditioner, else recomputed in row blocks every iteration.
  std::uint64_t max_memory = 0;
  // Rows of K_nM per kernel call; 0: blocks of about 64 MiB. Network kernels recompute the centers'
  // side in every call (their Jacobians, say), so for them fewer, larger blocks pay.
  index_t row_block = 0;
  // Also K_nM α, the fit's outputs on the training examples (from the cache, else one more pass).
  bool train_predictions = false;
  // Keep K_nM in float32: half the memory, and nothing lost for a kernel computed in float32 (an
  // eNTK of float32 parameters); the CG products convert it back to float64 a block of rows at a time.
  bool cache_float32 = false;
  int threads = 0;        // threads for this call; 0 = num_threads()
  // After every iteration: (iteration, max_iterations, largest relative residual over outputs).
  std::function<void(index_t, index_t, double)> progress;
  // Also the test predictions K(X_test, centers) α (rows: test examples, columns the N training
  // examples), in blocks of row_block rows, as nystrom_predict computes them (here so that a
  // resumable solve resumes them too).
  const KernelBlocks* test = nullptr;
  // Resumable: the state is offered after every block of rows of every pass (the right-hand side,
  // each CG iteration, the train and test predictions). The centers, K_MM, the preconditioner and
  // a cached K_nM are recomputed on resume (deterministically); passes are not.
  SolverCheckpoint* checkpoint = nullptr;
};

struct NystromFit {
  std::vector<index_t> centers;         // M training indices, ascending
  CenterSelection selection = CenterSelection::uniform;  // the one used (uniform after a fallback)
  index_t selection_rounds = 0;         // pivoted selections: rounds of candidates drawn
  // Kernel entries asked of k_train during the fit: diagonal, selection blocks, K_MM, K_nM (every
  // pass when it is recomputed per iteration).
  std::uint64_t kernel_evaluations = 0;
  Array<double> alpha;                  // (M, O): f(x) = Σ_j K(x, x_centers[j]) α_j
  index_t n_train = 0;                  // N, the kernel's columns at prediction
  double lambda = 0.0;                  // the absolute regularizer applied
  index_t iterations = 0;
  std::vector<double> residual_history; // per iteration, largest relative residual over outputs
  bool knm_cached = false;              // K_nM held in memory (else recomputed per iteration)
  double kmm_jitter = 0.0;              // added to K_MM's diagonal for the preconditioner only
  std::vector<std::string> warnings;
  Array<double> train_predictions;      // (N, O) with options.train_predictions
  Array<double> test_predictions;       // (N_test, O) with options.test
  std::string resumed_at;               // resumed: where ("CG iteration 4, row 1200 of 6000")
};

// Bytes nystrom_ridge holds beside K_nM (whole, 8·N·M, or one block of rows): K_MM and its two
// factors, the CG state, K_nM z, the sampling state. For callers that split a budget.
std::uint64_t nystrom_fixed_bytes(index_t n, index_t m, index_t o);

// k_train: the (N, N) symmetric train kernel; y_train (N, O) or (N,). Throws InvalidArgument on
// shapes that do not match, non-finite targets, a negative ridge or M < 1; MemoryBudgetError
// (naming --max-memory) when K_MM, the preconditioner and one row block of K_nM do not fit.
NystromFit nystrom_ridge(const KernelBlocks& k_train, const Array<double>& y_train, const NystromOptions& options = {});

// k_test: rows the test examples, columns the N training examples -> (N_test, O) predictions in
// float64, K_test[:, centers] · α computed in blocks of row_block rows (0: about 64 MiB).
Array<double> nystrom_predict(const KernelBlocks& k_test, const NystromFit& fit, int threads = 0, index_t row_block = 0);

// ---------------------------------------------------------------------------------------------
// Ridge regression on features: W = (FᵀF + λI)⁻¹ FᵀY, which predicts exactly what kernel ridge
// with K = F Fᵀ does (F_test W = K_test (K + λI)⁻¹ Y) at O(n·m²) time and O(m²) memory.

struct FeatureRidgeOptions {
  // λ = ridge · mean ‖f_i‖² (= mean(diag F Fᵀ)) when relative, else ridge.
  double ridge = 0.0;
  bool relative = true;
  index_t batch_rows = 0;  // rows of F per accumulation step; 0: batches of about 64 MiB
  int threads = 0;         // threads for this call; 0 = num_threads()
  // Non-empty: choose the relative ridge among these instead (`ridge` unused), as select_ridge does
  // for kernels: fit on all rows but the last `validation`, keep the candidate with the least
  // validation MSE (one eigendecomposition of the fit rows' FᵀF prices them all), refit on all rows.
  std::vector<double> ridge_grid;
  index_t validation = 0;
  // Resumable: FᵀF and FᵀY (and the validation rows' own) are offered after every batch.
  SolverCheckpoint* checkpoint = nullptr;
};

struct FeatureRidgeFit {
  Array<double> weights;           // (m, O)
  double lambda = 0.0;             // the absolute regularizer applied
  bool cholesky = true;            // false: FᵀF + λI was not numerically positive definite
  index_t dropped_directions = 0;  // of the eigendecomposition fallback
  std::string warning;             // non-empty when the fallback ran
  std::vector<double> validation_mse;  // with ridge_grid: per candidate
  double chosen_ridge = 0.0;           // with ridge_grid: the relative ridge chosen
  std::string resumed_at;              // resumed: where ("row 4096 of 70000")
};

// features (n, m) in memory, y (n, O) or (n,). InvalidArgument on shapes that do not match,
// non-finite values or a negative ridge.
template <class T>
FeatureRidgeFit feature_ridge(const Array<T>& features, const Array<double>& y, const FeatureRidgeOptions& options = {});
// The same from a 2-D float32 / float64 .npy file, memory-mapped and read in row batches.
FeatureRidgeFit feature_ridge(const std::string& features_npy, const Array<double>& y,
                              const FeatureRidgeOptions& options = {});

// features (n_test, m) · weights (m, O) -> (n_test, O) in float64.
template <class T>
Array<double> feature_ridge_predict(const Array<T>& features, const Array<double>& weights, int threads = 0);
// The same from a 2-D float32 / float64 .npy file, memory-mapped and read in row batches.
Array<double> feature_ridge_predict(const std::string& features_npy, const Array<double>& weights, int threads = 0);

}  // namespace ntk
