// The KernelBlocks factories: arrays in memory, memory-mapped .npy files, feature inner products,
// infinite-width and empirical kernels computed on the rows a block asks for.
#include "ntk/kernel_block.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <type_traits>
#include <vector>

#include "blas.hpp"
#include "check.hpp"
#include "entk_detail.hpp"
#include "io_detail.hpp"
#include "ntk/error.hpp"
#include "ntk/parallel.hpp"

namespace ntk {
namespace {

std::string dims(index_t r, index_t c) { return std::to_string(r) + " x " + std::to_string(c); }

void check_indices(std::span<const index_t> idx, index_t bound, const char* axis, const KernelBlocks& k) {
  for (index_t i : idx)
    if (i < 0 || i >= bound)
      throw InvalidArgument(std::string(axis) + " index " + std::to_string(i) + " is outside [0, " +
                            std::to_string(bound) + ") of the " + k.describe());
}

void check_block_finite(const double* out, index_t count, const KernelBlocks& k) {
  if (const index_t bad = first_non_finite(out, count); bad >= 0)
    throw NumericalError("a block of the " + k.describe() + " has a non-finite entry (NaN or Inf) at flat index " +
                         std::to_string(bad) + "; the kernel overflowed or its inputs are not finite");
}

bool same_indices(std::span<const index_t> a, std::span<const index_t> b) {
  return a.size() == b.size() && (a.data() == b.data() || std::equal(a.begin(), a.end(), b.begin()));
}

// The shared part of every factory's class: sizes, the symmetric flag, argument checks around the
// kernel-specific fill() and the finiteness check after it.
class BlocksBase : public KernelBlocks {
 public:
  BlocksBase(index_t rows, index_t cols, bool symmetric) : rows_(rows), cols_(cols), symmetric_(symmetric) {}
  index_t rows() const override { return rows_; }
  index_t cols() const override { return cols_; }
  bool symmetric() const override { return symmetric_; }
  void block(std::span<const index_t> ri, std::span<const index_t> ci, double* out, int threads = 0) const final {
    check_indices(ri, rows_, "row", *this);
    check_indices(ci, cols_, "column", *this);
    if (ri.empty() || ci.empty()) return;
    ThreadScope scope(threads);
    fill(ri, ci, out, threads);
    check_block_finite(out, index_t(ri.size() * ci.size()), *this);
  }

 protected:
  // threads: block()'s argument (0: the caller's num_threads(), already in scope).
  virtual void fill(std::span<const index_t> ri, std::span<const index_t> ci, double* out, int threads) const = 0;
  index_t rows_, cols_;
  bool symmetric_;
};

// ---------------------------------------------------------------------------------------------
// Arrays in memory and in .npy files

template <class T>
class ArrayBlocks final : public BlocksBase {
 public:
  ArrayBlocks(const Array<T>& k, bool symmetric) : BlocksBase(k.dim(0), k.dim(1), symmetric), k_(k) {}
  void diagonal(std::span<const index_t> idx, double* out, int threads) const override {
    if (!symmetric_) KernelBlocks::diagonal(idx, out, threads);  // throws
    check_indices(idx, rows_, "row", *this);
    for (size_t a = 0; a < idx.size(); ++a) out[a] = double(k_[idx[a] * cols_ + idx[a]]);
    check_block_finite(out, index_t(idx.size()), *this);
  }
  std::string describe() const override {
    return std::string(std::is_same_v<T, float> ? "float32" : "float64") + " kernel array " + dims(rows_, cols_);
  }

 private:
  void fill(std::span<const index_t> ri, std::span<const index_t> ci, double* out, int) const override {
    const index_t nc = index_t(ci.size());
    parallel_for(index_t(ri.size()), [&](index_t begin, index_t end) {
      for (index_t a = begin; a < end; ++a) {
        const T* row = k_.data() + ri[size_t(a)] * cols_;
        for (index_t b = 0; b < nc; ++b) out[a * nc + b] = double(row[ci[size_t(b)]]);
      }
    });
  }
  const Array<T>& k_;
};

class NpyBlocks final : public BlocksBase {
 public:
  NpyBlocks(std::unique_ptr<detail::MappedNpyReader> file, bool symmetric)
      : BlocksBase(file->shape()[0], file->shape()[1], symmetric), file_(std::move(file)) {}
  void diagonal(std::span<const index_t> idx, double* out, int threads) const override {
    if (!symmetric_) KernelBlocks::diagonal(idx, out, threads);  // throws
    check_indices(idx, rows_, "row", *this);
    for (size_t a = 0; a < idx.size(); ++a) out[a] = at(idx[a], idx[a]);
    check_block_finite(out, index_t(idx.size()), *this);
  }
  std::string describe() const override {
    return std::string(dtype_name(file_->dtype())) + " kernel file '" + file_->path() + "' " + dims(rows_, cols_);
  }

 private:
  double at(index_t r, index_t c) const {
    const size_t flat = size_t(r * cols_ + c);
    if (file_->dtype() == DType::float32) {
      float v;
      std::memcpy(&v, file_->data() + flat * sizeof v, sizeof v);
      return double(v);
    }
    double v;
    std::memcpy(&v, file_->data() + flat * sizeof v, sizeof v);
    return v;
  }
  void fill(std::span<const index_t> ri, std::span<const index_t> ci, double* out, int) const override {
    const index_t nc = index_t(ci.size());
    parallel_for(index_t(ri.size()), [&](index_t begin, index_t end) {
      for (index_t a = begin; a < end; ++a)
        for (index_t b = 0; b < nc; ++b) out[a * nc + b] = at(ri[size_t(a)], ci[size_t(b)]);
    });
  }
  std::unique_ptr<detail::MappedNpyReader> file_;
};

// ---------------------------------------------------------------------------------------------
// Features

// rows idx of f (n, m) into out (idx.size(), m) as float64.
template <class T>
void gather_rows_f64(const Array<T>& f, std::span<const index_t> idx, double* out) {
  const index_t m = f.dim(1);
  parallel_for(index_t(idx.size()), [&](index_t begin, index_t end) {
    for (index_t a = begin; a < end; ++a) {
      const T* src = f.data() + idx[size_t(a)] * m;
      std::copy(src, src + m, out + a * m);
    }
  });
}

template <class T>
class FeatureBlocks final : public BlocksBase {
 public:
  FeatureBlocks(const Array<T>& f_rows, const Array<T>& f_cols, bool symmetric)
      : BlocksBase(f_rows.dim(0), f_cols.dim(0), symmetric), f_rows_(f_rows), f_cols_(f_cols) {}
  void diagonal(std::span<const index_t> idx, double* out, int threads) const override {
    if (!symmetric_) KernelBlocks::diagonal(idx, out, threads);  // throws
    check_indices(idx, rows_, "row", *this);
    const index_t m = f_rows_.dim(1);
    for (size_t a = 0; a < idx.size(); ++a) {
      const T* f = f_rows_.data() + idx[a] * m;
      double s = 0;
      for (index_t j = 0; j < m; ++j) s += double(f[j]) * double(f[j]);
      out[a] = s;
    }
    check_block_finite(out, index_t(idx.size()), *this);
  }
  std::string describe() const override {
    return "kernel of " + std::to_string(f_rows_.dim(1)) + " features (inner products) " + dims(rows_, cols_);
  }

 private:
  void fill(std::span<const index_t> ri, std::span<const index_t> ci, double* out, int) const override {
    const index_t m = f_rows_.dim(1), nr = index_t(ri.size()), nc = index_t(ci.size());
    std::vector<double> a(size_t(nr * m));
    gather_rows_f64(f_rows_, ri, a.data());
    if (symmetric_ && same_indices(ri, ci)) {
      detail::gemm(false, true, nr, nr, m, 1.0, a.data(), m, a.data(), m, 0.0, out, nr);
      return;
    }
    std::vector<double> b(size_t(nc * m));
    gather_rows_f64(f_cols_, ci, b.data());
    detail::gemm(false, true, nr, nc, m, 1.0, a.data(), m, b.data(), m, 0.0, out, nc);
  }
  const Array<T>& f_rows_;
  const Array<T>& f_cols_;
};

// ---------------------------------------------------------------------------------------------
// Kernels of a network on gathered inputs

template <class T>
Array<T> gather_examples(const Array<T>& x, std::span<const index_t> idx) {
  Shape shape = x.shape();
  shape[0] = index_t(idx.size());
  Array<T> out(shape);
  const index_t per = x.dim(0) ? x.size() / x.dim(0) : 0;
  parallel_for(index_t(idx.size()), [&](index_t begin, index_t end) {
    for (index_t a = begin; a < end; ++a)
      std::copy(x.data() + idx[size_t(a)] * per, x.data() + (idx[size_t(a)] + 1) * per, out.data() + a * per);
  });
  return out;
}

// The one loop both network kernels share: gather the examples, call compute (x2 == nullptr on the
// symmetric path), copy out in float64.
template <class T, class Compute>
void network_block(const Array<T>& x_rows, const Array<T>& x_cols, bool symmetric, std::span<const index_t> ri,
                   std::span<const index_t> ci, double* out, const Compute& compute) {
  const Array<T> xr = gather_examples(x_rows, ri);
  Array<T> k;
  if (symmetric && same_indices(ri, ci)) {
    k = compute(xr, nullptr);
  } else {
    const Array<T> xc = gather_examples(x_cols, ci);
    k = compute(xr, &xc);
  }
  NTK_ASSERT(k.size() == index_t(ri.size() * ci.size()), "a network kernel block has the requested shape");
  std::copy(k.data(), k.data() + k.size(), out);
}

template <class T>
class InfiniteBlocks final : public BlocksBase {
 public:
  InfiniteBlocks(const Network& net, const Array<T>& x_rows, const Array<T>& x_cols, bool symmetric,
                 const KernelOptions& options)
      : BlocksBase(x_rows.dim(0), x_cols.dim(0), symmetric), net_(net), x_rows_(x_rows), x_cols_(x_cols),
        options_(options) {
    options_.progress = nullptr;
  }
  std::string describe() const override {
    return std::string("infinite-width ") + (options_.get == KernelOptions::ntk ? "NTK" : "NNGP") + " of '" +
           net_.describe() + "' on " + dims(rows_, cols_);
  }

 private:
  void fill(std::span<const index_t> ri, std::span<const index_t> ci, double* out, int threads) const override {
    KernelOptions options = options_;
    if (threads > 0) options.threads = threads;  // else the factory's options decide
    network_block(x_rows_, x_cols_, symmetric_, ri, ci, out, [&](const Array<T>& a, const Array<T>* b) {
      return infinite_kernel(net_, a, b, options);
    });
  }
  const Network& net_;
  const Array<T>& x_rows_;
  const Array<T>& x_cols_;
  KernelOptions options_;
};

template <class T>
class EmpiricalBlocks final : public BlocksBase {
 public:
  EmpiricalBlocks(const Network& net, ThetaSpan<T> theta, const Array<T>& x_rows, const Array<T>& x_cols,
                  bool symmetric, const EntkOptions& options)
      : BlocksBase(x_rows.dim(0), x_cols.dim(0), symmetric), net_(net), theta_(theta), x_rows_(x_rows),
        x_cols_(x_cols), options_(options) {
    options_.progress = nullptr;
  }
  std::string describe() const override {
    return "empirical NTK (" + to_string(options_.mode) + ") of '" + net_.describe() + "' on " + dims(rows_, cols_);
  }

 private:
  void fill(std::span<const index_t> ri, std::span<const index_t> ci, double* out, int threads) const override {
    EntkOptions options = options_;
    if (threads > 0) options.threads = threads;
    network_block(x_rows_, x_cols_, symmetric_, ri, ci, out, [&](const Array<T>& a, const Array<T>* b) {
      return empirical_ntk(net_, theta_, a, b, options);
    });
  }
  const Network& net_;
  ThetaSpan<T> theta_;
  const Array<T>& x_rows_;
  const Array<T>& x_cols_;
  EntkOptions options_;
};


// Modes with one output direction per example (pntk: Σ_a f_a / √O; logit=k: f_k) are inner products
// of per-example gradients g(x) = J(x)ᵀc: K[i, j] = g(x_i)·g(x_j). A solver asks for the same
// columns over and over (Nyström: every row block against the centers), so the columns' gradients
// are kept from one call to the next (max_memory bounds them and a call's chunks), and
// each row's gradient is computed once per call; the generic path would recompute both sides per
// tile of the eNTK.
template <class T>
class GradientBlocks final : public BlocksBase {
 public:
  GradientBlocks(const Network& net, ThetaSpan<T> theta, const Array<T>& x_rows, const Array<T>& x_cols,
                 bool symmetric, const EntkOptions& options)
      : BlocksBase(x_rows.dim(0), x_cols.dim(0), symmetric), net_(net), theta_(theta), x_rows_(x_rows),
        x_cols_(x_cols), options_(options), dirs_(detail::directions_for<T>(options.mode, net.output_size())) {}
  std::string describe() const override {
    return "empirical NTK (" + to_string(options_.mode) + ") of '" + net_.describe() + "' on " + dims(rows_, cols_);
  }
  void diagonal(std::span<const index_t> idx, double* out, int threads) const override {
    if (!symmetric_) KernelBlocks::diagonal(idx, out, threads);  // throws
    check_indices(idx, rows_, "row", *this);
    ThreadScope scope(threads);
    const index_t P = net_.num_params();
    for_each_chunk(idx, [&](size_t begin, const T* g, index_t n) {
      for (index_t i = 0; i < n; ++i) {
        double s = 0;
        for (index_t p = 0; p < P; ++p) s += double(g[size_t(i * P + p)]) * double(g[size_t(i * P + p)]);
        out[begin + size_t(i)] = s;
      }
    });
    check_block_finite(out, index_t(idx.size()), *this);
  }

 private:
  // Examples per gradient chunk: about 128 MiB of gradients in float64, at least one.
  index_t chunk_rows() const {
    const std::uint64_t row = std::uint64_t(net_.num_params()) * 8;
    return std::max<index_t>(1, index_t((std::uint64_t{128} << 20) / std::max<std::uint64_t>(row, 1)));
  }
  // Gradients (n × P) of the examples idx of x, computed in parallel over small groups.
  std::vector<T> gradients(const Array<T>& x, std::span<const index_t> idx) const {
    const index_t n = index_t(idx.size()), P = net_.num_params(), d = net_.input_size();
    std::vector<T> g(size_t(n * P));
    constexpr index_t kGroup = 16;
    parallel_for((n + kGroup - 1) / kGroup, [&](index_t b, index_t e) {
      std::vector<T> xs;
      for (index_t grp = b; grp < e; ++grp) {
        const index_t lo = grp * kGroup, cnt = std::min(kGroup, n - lo);
        xs.resize(size_t(cnt * d));
        for (index_t i = 0; i < cnt; ++i)
          std::copy(x.data() + idx[size_t(lo + i)] * d, x.data() + (idx[size_t(lo + i)] + 1) * d, xs.data() + i * d);
        detail::jacobian_rows(net_, theta_.data(), xs.data(), cnt, dirs_, g.data() + lo * P);
      }
    });
    return g;
  }
  // f(begin, gradients of the rows idx[begin, begin + n), n), chunk by chunk; `known`: the
  // gradients of all of idx, already computed (a symmetric block's columns).
  template <class F>
  void for_each_chunk(std::span<const index_t> idx, const F& f, const T* known = nullptr) const {
    const index_t step = chunk_rows(), P = net_.num_params();
    for (size_t begin = 0; begin < idx.size(); begin += size_t(step)) {
      const index_t n = std::min<index_t>(step, index_t(idx.size() - begin));
      if (known) {
        f(begin, known + begin * size_t(P), n);
      } else {
        const std::vector<T> g = gradients(x_rows_, idx.subspan(begin, size_t(n)));
        f(begin, g.data(), n);
      }
    }
  }
  // The columns' gradients: the kept ones when ci is the kept column list.
  std::shared_ptr<const std::vector<T>> column_gradients(std::span<const index_t> ci) const {
    {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      if (cached_ && same_indices(ci, cached_columns_)) return cached_;
    }
    // Beside the columns' gradients a call holds a chunk of row gradients in T and in float64 and a
    // chunk of column gradients in float64.
    const std::uint64_t bytes = std::uint64_t(ci.size()) * std::uint64_t(net_.num_params()) * sizeof(T);
    const std::uint64_t working = 3 * (std::uint64_t{128} << 20);
    if (options_.max_memory && bytes + working > options_.max_memory)
      throw MemoryBudgetError("the per-example gradients of " + std::to_string(ci.size()) + " columns of the " +
                              describe() + " need " + format_bytes(bytes + working) + ", more than --max-memory " +
                              format_bytes(options_.max_memory) + " leaves for them; raise --max-memory or use fewer columns (centers)");
    auto g = std::make_shared<const std::vector<T>>(gradients(x_cols_, ci));
    std::lock_guard<std::mutex> lock(cache_mutex_);
    cached_columns_.assign(ci.begin(), ci.end());
    cached_ = g;
    return g;
  }
  // The products in float64 whatever T: then a block is the exact Gram matrix of the (rounded)
  // gradients, positive semi-definite to float64 rounding. A float32 GEMM's rounding, about √P·ε
  // relative, makes a large pNTK indefinite at the 1e-4 level of its mean diagonal, and Nyström's
  // conjugate gradient breaks down on that.
  void fill(std::span<const index_t> ri, std::span<const index_t> ci, double* out, int) const override {
    const index_t P = net_.num_params(), nc = index_t(ci.size());
    const auto gc = column_gradients(ci);
    const T* rows_known = symmetric_ && same_indices(ri, ci) ? gc->data() : nullptr;
    if constexpr (std::is_same_v<T, double>) {
      for_each_chunk(ri, [&](size_t begin, const T* gr, index_t n) {
        detail::gemm(false, true, n, nc, P, 1.0, gr, P, gc->data(), P, 0.0, out + begin * size_t(nc), nc);
      }, rows_known);
    } else {
      std::vector<double> r64, c64;
      const index_t col_step = chunk_rows();
      for_each_chunk(ri, [&](size_t begin, const T* gr, index_t n) {
        r64.assign(gr, gr + n * P);
        for (index_t c0 = 0; c0 < nc; c0 += col_step) {
          const index_t cols = std::min(col_step, nc - c0);
          c64.assign(gc->begin() + c0 * P, gc->begin() + (c0 + cols) * P);
          detail::gemm(false, true, n, cols, P, 1.0, r64.data(), P, c64.data(), P, 0.0, out + begin * size_t(nc) + c0, nc);
        }
      }, rows_known);
    }
  }
  const Network& net_;
  ThetaSpan<T> theta_;
  const Array<T>& x_rows_;
  const Array<T>& x_cols_;
  EntkOptions options_;
  detail::Directions<T> dirs_;
  mutable std::mutex cache_mutex_;
  mutable std::vector<index_t> cached_columns_;
  mutable std::shared_ptr<const std::vector<T>> cached_;
};

}  // namespace

void KernelBlocks::diagonal(std::span<const index_t> idx, double* out, int threads) const {
  if (!symmetric())
    throw InvalidArgument("the diagonal of the " + describe() +
                          " is not defined: its rows and columns are different examples");
  // Small blocks: a chunk's diagonal block costs chunk / 2 times the entries it is taken for.
  constexpr size_t kChunk = 32;
  std::vector<double> b(kChunk * kChunk);
  for (size_t begin = 0; begin < idx.size(); begin += kChunk) {
    const size_t n = std::min(kChunk, idx.size() - begin);
    const auto part = idx.subspan(begin, n);
    block(part, part, b.data(), threads);
    for (size_t a = 0; a < n; ++a) out[begin + a] = b[a * n + a];
  }
}

template <class T>
std::unique_ptr<KernelBlocks> array_kernel_blocks(const Array<T>& k, bool symmetric) {
  if (k.ndim() != 2)
    throw InvalidArgument("a kernel array must be 2-D (rows, cols), got " + shape_string(k.shape()));
  if (symmetric && k.dim(0) != k.dim(1))
    throw InvalidArgument("a symmetric kernel must be square, got " + shape_string(k.shape()));
  return std::make_unique<ArrayBlocks<T>>(k, symmetric);
}

std::unique_ptr<KernelBlocks> npy_kernel_blocks(const std::string& path, bool symmetric) {
  auto file = std::make_unique<detail::MappedNpyReader>(path);
  const std::string prefix = "kernel file '" + path + "' ";
  if (file->shape().size() != 2)
    throw InvalidArgument(prefix + "must hold a 2-D kernel (rows, cols), got shape " + shape_string(file->shape()));
  if (file->dtype() != DType::float32 && file->dtype() != DType::float64)
    throw InvalidArgument(prefix + "must be float32 or float64, got " + dtype_name(file->dtype()) +
                          "; convert it with .astype('float64')");
  if (symmetric && file->shape()[0] != file->shape()[1])
    throw InvalidArgument(prefix + "must be square for a train kernel, got shape " + shape_string(file->shape()));
  return std::make_unique<NpyBlocks>(std::move(file), symmetric);
}

template <class T>
std::unique_ptr<KernelBlocks> feature_kernel_blocks(const Array<T>& f_rows, const std::type_identity_t<Array<T>>* f_cols) {
  if (f_rows.ndim() != 2 || (f_cols && f_cols->ndim() != 2))
    throw InvalidArgument("features must be 2-D (examples, features), got " + shape_string(f_rows.shape()) +
                          (f_cols ? " and " + shape_string(f_cols->shape()) : std::string()));
  if (f_cols && f_cols->dim(1) != f_rows.dim(1))
    throw InvalidArgument("the row and column features have different widths: " + std::to_string(f_rows.dim(1)) +
                          " and " + std::to_string(f_cols->dim(1)) + "; both must come from the same feature map");
  if (const index_t bad = first_non_finite(f_rows); bad >= 0)
    throw InvalidArgument("the row features have a non-finite value at flat index " + std::to_string(bad));
  if (f_cols)
    if (const index_t bad = first_non_finite(*f_cols); bad >= 0)
      throw InvalidArgument("the column features have a non-finite value at flat index " + std::to_string(bad));
  return std::make_unique<FeatureBlocks<T>>(f_rows, f_cols ? *f_cols : f_rows, f_cols == nullptr);
}

template <class T>
std::unique_ptr<KernelBlocks> infinite_kernel_blocks(const Network& net, const Array<T>& x_rows, const std::type_identity_t<Array<T>>* x_cols,
                                                     const KernelOptions& options) {
  net.check_inputs(x_rows, "the row inputs");
  if (x_cols) net.check_inputs(*x_cols, "the column inputs");
  return std::make_unique<InfiniteBlocks<T>>(net, x_rows, x_cols ? *x_cols : x_rows, x_cols == nullptr, options);
}

template <class T>
std::unique_ptr<KernelBlocks> empirical_kernel_blocks(const Network& net, ThetaSpan<T> theta,
                                                      const Array<T>& x_rows, const std::type_identity_t<Array<T>>* x_cols,
                                                      const EntkOptions& options) {
  if (options.mode.kind == EntkMode::full || options.mode.kind == EntkMode::diagonal)
    throw InvalidArgument("kernel blocks need one number per pair of examples; the eNTK mode '" +
                          to_string(options.mode) + "' gives a block per pair: use trace, trace-sum, pntk or logit=K");
  if (options.out_of_core)
    throw InvalidArgument("kernel blocks are computed in memory; out_of_core is for empirical_ntk_to_file");
  if (index_t(theta.size()) != net.num_params())
    throw InvalidArgument("theta has " + std::to_string(theta.size()) + " values, the network has " +
                          std::to_string(net.num_params()) + " parameters");
  net.check_inputs(x_rows, "the row inputs");
  if (x_cols) net.check_inputs(*x_cols, "the column inputs");
  const bool one_direction = options.mode.kind == EntkMode::pntk || options.mode.kind == EntkMode::logit;
  if (one_direction && options.layers.empty() &&
      (options.method == EntkMethod::automatic || options.method == EntkMethod::jc))
    return std::make_unique<GradientBlocks<T>>(net, theta, x_rows, x_cols ? *x_cols : x_rows, x_cols == nullptr, options);
  return std::make_unique<EmpiricalBlocks<T>>(net, theta, x_rows, x_cols ? *x_cols : x_rows, x_cols == nullptr, options);
}

#define NTK_INSTANTIATE(T)                                                                                           \
  template std::unique_ptr<KernelBlocks> array_kernel_blocks(const Array<T>&, bool);                                 \
  template std::unique_ptr<KernelBlocks> feature_kernel_blocks(const Array<T>&, const Array<T>*);                    \
  template std::unique_ptr<KernelBlocks> infinite_kernel_blocks(const Network&, const Array<T>&, const Array<T>*,    \
                                                                const KernelOptions&);                               \
  template std::unique_ptr<KernelBlocks> empirical_kernel_blocks(const Network&, ThetaSpan<T>,              \
                                                                 const Array<T>&, const Array<T>*, const EntkOptions&);
NTK_INSTANTIATE(float)
NTK_INSTANTIATE(double)
#undef NTK_INSTANTIATE

}  // namespace ntk
