// Kernel blocks: one interface for anything that can produce entries K[i, j] of a (rows × cols)
// kernel matrix on demand, a block of row indices by a block of column indices at a time: an
// infinite-width NTK / NNGP, an eNTK in a scalar mode (trace, pntk, logit=k, ...), inner products of
// feature rows, an array in memory or a memory-mapped .npy file. Solvers (Nyström with
// preconditioned CG, Lanczos) and diagnostics take a KernelBlocks and never ask for the whole matrix.
//
// Rows and columns index two sets of examples: for a train kernel both are the training set (and
// symmetric() is true); for prediction the rows are the test examples and the columns the training
// examples, as in `ntk regress --k-test` (N_test, N).
#pragma once
#include <memory>
#include <span>
#include <string>
#include <type_traits>

#include "ntk/array.hpp"
#include "ntk/empirical.hpp"
#include "ntk/infinite.hpp"

namespace ntk {

class KernelBlocks {
 public:
  virtual ~KernelBlocks() = default;
  virtual index_t rows() const = 0;
  virtual index_t cols() const = 0;
  // True when rows and columns are the same examples and K is symmetric.
  virtual bool symmetric() const = 0;
  // out (ri.size(), ci.size()), C order, float64 = K[ri, ci]. Indices in range, in any order,
  // repeats allowed. threads = 0: num_threads(). Throws NumericalError if an entry is not finite.
  virtual void block(std::span<const index_t> ri, std::span<const index_t> ci, double* out, int threads = 0) const = 0;
  // K[i, i] for every i of idx into out (idx.size()), for a kernel whose rows and columns are the
  // same examples (symmetric()); InvalidArgument otherwise. The default takes the diagonals of small
  // diagonal blocks; kernels with a cheaper way (arrays, feature norms) override it.
  virtual void diagonal(std::span<const index_t> idx, double* out, int threads = 0) const;
  // One line: what the kernel is, e.g. "infinite-width NTK of 'Dense(512), Relu, Dense(1)' on 1000 x 1000".
  virtual std::string describe() const = 0;
};

// A kernel already in memory, borrowed (k must outlive the result): (rows, cols), float32 or float64.
template <class T>
std::unique_ptr<KernelBlocks> array_kernel_blocks(const Array<T>& k, bool symmetric);

// A 2-D float32 / float64 .npy file, memory-mapped read-only: kernels larger than memory (written
// by `ntk entk` / `ntk kernel` out of core) are read block by block.
std::unique_ptr<KernelBlocks> npy_kernel_blocks(const std::string& path, bool symmetric);

// F_rows · F_colsᵀ for feature matrices (n_rows, m) and (n_cols, m), borrowed; f_cols == nullptr:
// F_rows itself (symmetric).
template <class T>
std::unique_ptr<KernelBlocks> feature_kernel_blocks(const Array<T>& f_rows, const std::type_identity_t<Array<T>>* f_cols = nullptr);

// The infinite-width kernel of net between x_rows and x_cols (nullptr: x_rows, symmetric), both
// borrowed, computed block by block with options (get, threads, offset path, max_memory per block;
// progress is not forwarded: a solver reports its own). A block whose row and column index lists
// are identical takes the symmetric path.
template <class T>
std::unique_ptr<KernelBlocks> infinite_kernel_blocks(const Network& net, const Array<T>& x_rows,
                                                     const std::type_identity_t<Array<T>>* x_cols, const KernelOptions& options = {});

// The empirical kernel of net at theta in a scalar mode (every mode but full and diagonal), between
// x_rows and x_cols (nullptr: symmetric); net, theta and the inputs borrowed. InvalidArgument for
// the full and diagonal modes, whose entries are blocks, not numbers.
template <class T>
std::unique_ptr<KernelBlocks> empirical_kernel_blocks(const Network& net, ThetaSpan<T> theta,
                                                      const Array<T>& x_rows, const std::type_identity_t<Array<T>>* x_cols,
                                                      const EntkOptions& options);

}  // namespace ntk
