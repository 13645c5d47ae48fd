// Nyström kernel ridge by Falkon's preconditioned conjugate gradient (Rudi et al. 2017, Meanti et
// al. 2020). With H = K_nMᵀK_nM + λ K_MM, Falkon approximates K_nMᵀK_nM by (N/M) K_MM² (exact when
// the centers are all N examples) and so H by
//   P = (N/M) K_MM² + λ K_MM = N Tᵀ (T Tᵀ/M + (λ/N) I) T = N Tᵀ AᵀA T,   K_MM = TᵀT,
// and runs CG on Bᵀ H B β = Bᵀ K_nMᵀ Y with B = T⁻¹A⁻¹/√N (so BBᵀ = P⁻¹), α = Bβ. Falkon's own
// λ is per example: its T Tᵀ/M + λ I is our T Tᵀ/M + (λ/N) I. For M = N, BᵀHB = I up to the jitter
// and CG stops after one iteration at exact kernel ridge.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <span>
#include <vector>

#include "blas.hpp"
#include "check.hpp"
#include "checkpoint.hpp"
#include "lapack.hpp"
#include "solve_detail.hpp"
#include "ntk/empirical.hpp"
#include "ntk/error.hpp"
#include "ntk/nystrom.hpp"
#include "ntk/parallel.hpp"
#include "ntk/rng.hpp"

namespace ntk {

std::uint64_t nystrom_fixed_bytes(index_t n, index_t m, index_t o) {
  return 8 * (3 * std::uint64_t(m * m) + 8 * std::uint64_t(m * o) + std::uint64_t(n * o) + std::uint64_t(n) +
              std::uint64_t(m));
}

namespace {

constexpr std::uint64_t kAutoBlockBytes = std::uint64_t{64} << 20;

index_t rows_per_block(index_t requested, index_t width, index_t n) {
  const index_t auto_rows = std::max<index_t>(1, index_t(kAutoBlockBytes / (8 * std::uint64_t(std::max<index_t>(width, 1)))));
  return std::clamp<index_t>(requested > 0 ? requested : auto_rows, 1, std::max<index_t>(n, 1));
}

// M of n indices uniformly without replacement (a partial Fisher-Yates shuffle on the counter-based
// generator, so the centers depend on the seed only), ascending so that memory-mapped kernels are
// read in file order.
std::vector<index_t> sample_centers(index_t n, index_t m, std::uint64_t seed) {
  std::vector<index_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), index_t{0});
  if (m < n) {
    const std::uint64_t stream = stream_id("nystrom.centers");
    for (index_t i = 0; i < m; ++i) {
      const auto offset = index_t(uniform(seed, stream, std::uint64_t(i)) * double(n - i));
      std::swap(perm[size_t(i)], perm[size_t(i + std::min(offset, n - i - 1))]);
    }
    perm.resize(size_t(m));
    std::sort(perm.begin(), perm.end());
  }
  return perm;
}

// Pivoted Cholesky selection (nystrom.hpp, CenterSelection): the centers in ascending order and
// K(X, centers) (N × M', row-major, columns in the order of the centers), M' <= m when the kernel
// is exhausted first.
struct PivotedCenters {
  std::vector<index_t> centers;
  std::vector<double> knm;
  index_t rounds = 0;
};

PivotedCenters pivoted_centers(const KernelBlocks& k, const std::vector<double>& diag, index_t m, bool randomized,
                               std::uint64_t seed, index_t block, index_t row_block, std::uint64_t& evaluations) {
  const index_t n = k.rows();
  const double tol = 1e-10 * *std::max_element(diag.begin(), diag.end());
  // d: the residual diagonal, 0 where it is numerically exhausted (and at the centers).
  std::vector<double> d(diag);
  for (double& v : d) v = v > tol ? v : 0.0;
  // F (N × m, row-major, leading dimension m): the pivoted Cholesky factor, K ≈ F Fᵀ; its first
  // `have` columns are filled, and its rows at the pivots form a lower triangle in pivot order.
  std::vector<double> f(size_t(n * m), 0.0);
  std::vector<index_t> pivots;
  pivots.reserve(size_t(m));
  std::vector<double> cdf(randomized ? size_t(n) : 0), g, r, fb;
  std::vector<index_t> candidates, order;
  const std::uint64_t draw_stream = stream_id("nystrom.rpcholesky.draw"),
                      accept_stream = stream_id("nystrom.rpcholesky.accept");
  std::uint64_t draws = 0, accept_draws = 0;
  index_t have = 0, rounds = 0;
  while (have < m) {
    const index_t want = std::min(block, m - have);
    candidates.clear();
    double outside_max = 0;  // greedy: the largest residual outside this round's candidates
    if (randomized) {
      double total = 0;
      for (index_t i = 0; i < n; ++i) cdf[size_t(i)] = total += d[size_t(i)];
      if (!(total > 0)) break;
      for (index_t t = 0; t < want; ++t) {
        const double x = uniform(seed, draw_stream, draws++) * total;
        auto i = index_t(std::upper_bound(cdf.begin(), cdf.end(), x) - cdf.begin());
        if (i >= n) {  // x rounded up to total: the last example with a residual
          i = n - 1;
          while (d[size_t(i)] == 0) --i;
        }
        if (std::find(candidates.begin(), candidates.end(), i) == candidates.end()) candidates.push_back(i);
      }
    } else {
      order.clear();
      for (index_t i = 0; i < n; ++i)
        if (d[size_t(i)] > 0) order.push_back(i);
      if (order.empty()) break;
      const auto larger = [&](index_t a, index_t b) { return d[size_t(a)] > d[size_t(b)] || (d[size_t(a)] == d[size_t(b)] && a < b); };
      const auto take = std::min<index_t>(want, index_t(order.size()));
      if (take < index_t(order.size())) {
        std::nth_element(order.begin(), order.begin() + take, order.end(), larger);
        outside_max = d[size_t(order[size_t(take)])];
        for (size_t j = size_t(take) + 1; j < order.size(); ++j) outside_max = std::max(outside_max, d[size_t(order[j])]);
      }
      candidates.assign(order.begin(), order.begin() + take);
      std::sort(candidates.begin(), candidates.end(), larger);
    }
    ++rounds;

    // The candidates' residual block R = K_BB − F_B F_Bᵀ, eliminated one accepted candidate at a time.
    const auto b = index_t(candidates.size());
    r.resize(size_t(b * b));
    k.block(candidates, candidates, r.data());
    evaluations += std::uint64_t(b * b);
    if (have > 0) {
      fb.resize(size_t(b * m));
      for (index_t j = 0; j < b; ++j)
        std::copy_n(f.data() + candidates[size_t(j)] * m, m, fb.data() + j * m);
      detail::gemm(false, true, b, b, have, -1.0, fb.data(), m, fb.data(), m, 1.0, r.data(), b);
    }
    std::vector<double> start(static_cast<size_t>(b));
    for (index_t j = 0; j < b; ++j) start[size_t(j)] = r[size_t(j * b + j)];
    std::vector<char> done(static_cast<size_t>(b), 0);
    std::vector<index_t> accepted;  // positions in candidates
    auto eliminate = [&](index_t j) {
      done[size_t(j)] = 1;
      const double p = r[size_t(j * b + j)];
      for (index_t l = 0; l < b; ++l) {
        if (done[size_t(l)]) continue;
        const double c = r[size_t(l * b + j)] / p;
        for (index_t q = 0; q < b; ++q)
          if (!done[size_t(q)]) r[size_t(l * b + q)] -= c * r[size_t(j * b + q)];
      }
    };
    if (randomized) {
      // Rejection: candidate j stands with probability (its residual given the centers accepted so
      // far) / (its residual when it was drawn), as if drawn after them.
      for (index_t j = 0; j < b; ++j) {
        const double now = r[size_t(j * b + j)];
        if (!(now > tol)) {
          done[size_t(j)] = 1;
          if (accepted.empty()) d[size_t(candidates[size_t(j)])] = 0;  // exhausted: never draw it again
          continue;
        }
        if (uniform(seed, accept_stream, accept_draws++) * start[size_t(j)] < now) {
          accepted.push_back(j);
          eliminate(j);
        }
      }
    } else {
      for (;;) {
        index_t best = -1;
        for (index_t j = 0; j < b; ++j)
          if (!done[size_t(j)] && (best < 0 || r[size_t(j * b + j)] > r[size_t(best * b + best)])) best = j;
        if (best < 0) break;
        const double now = r[size_t(best * b + best)];
        if (!(now > tol)) {
          if (accepted.empty()) d[size_t(candidates[size_t(best)])] = 0;
          done[size_t(best)] = 1;
          continue;
        }
        if (!accepted.empty() && now < outside_max) break;  // no longer the largest residual of all
        accepted.push_back(best);
        eliminate(best);
      }
    }
    if (accepted.empty()) continue;

    // Their columns, G = K(X, A) − F Fᵀ_A, in row blocks of the kernel.
    const auto a = index_t(accepted.size());
    std::vector<index_t> cols(static_cast<size_t>(a));
    for (index_t j = 0; j < a; ++j) cols[size_t(j)] = candidates[size_t(accepted[size_t(j)])];
    g.resize(size_t(n * a));
    const index_t step = rows_per_block(row_block, a, n);
    std::vector<index_t> idx;
    for (index_t begin = 0; begin < n; begin += step) {
      const index_t rows = std::min(step, n - begin);
      idx.resize(size_t(rows));
      std::iota(idx.begin(), idx.end(), begin);
      k.block(idx, cols, g.data() + begin * a);
    }
    evaluations += std::uint64_t(n * a);
    if (have > 0) {
      fb.resize(size_t(a * m));
      for (index_t j = 0; j < a; ++j) std::copy_n(f.data() + cols[size_t(j)] * m, m, fb.data() + j * m);
      detail::gemm(false, true, n, a, have, -1.0, f.data(), m, fb.data(), m, 1.0, g.data(), a);
    }
    // L: the Cholesky factor (lower, a × a) of G's rows at A, dropping a column whose pivot rounds
    // to nothing; then each row of the new factor columns solves L x = g_i[kept].
    std::vector<double> l(size_t(a * a), 0.0);
    for (index_t j = 0; j < a; ++j)
      for (index_t q = 0; q < a; ++q) l[size_t(j * a + q)] = g[size_t(cols[size_t(j)] * a + q)];
    std::vector<index_t> kept;
    for (index_t j = 0; j < a; ++j) {
      // Row j of L against the kept columns so far, then its pivot.
      for (size_t c = 0; c < kept.size(); ++c) {
        const index_t q = kept[c];
        double s = l[size_t(j * a + q)];
        for (size_t e = 0; e < c; ++e) s -= l[size_t(j * a + kept[e])] * l[size_t(q * a + kept[e])];
        l[size_t(j * a + q)] = s / l[size_t(q * a + q)];
      }
      double p = l[size_t(j * a + j)];
      for (const index_t q : kept) p -= l[size_t(j * a + q)] * l[size_t(j * a + q)];
      if (!(p > tol)) {
        d[size_t(cols[size_t(j)])] = 0;
        continue;
      }
      l[size_t(j * a + j)] = std::sqrt(p);
      kept.push_back(j);
    }
    const auto kk = index_t(kept.size());
    parallel_for(n, [&](std::int64_t begin, std::int64_t end) {
      for (index_t i = begin; i < end; ++i) {
        double* fi = f.data() + i * m + have;
        const double* gi = g.data() + i * a;
        double sum = 0;
        for (index_t c = 0; c < kk; ++c) {
          const index_t q = kept[size_t(c)];
          double s = gi[q];
          for (index_t e = 0; e < c; ++e) s -= l[size_t(q * a + kept[size_t(e)])] * fi[e];
          fi[c] = s / l[size_t(q * a + q)];
          sum += fi[c] * fi[c];
        }
        const double left = d[size_t(i)] - sum;
        d[size_t(i)] = left > tol ? left : 0.0;
      }
    });
    for (const index_t q : kept) {
      d[size_t(cols[size_t(q)])] = 0;
      pivots.push_back(cols[size_t(q)]);
    }
    have += kk;
  }

  // K(X, S) = F F_Sᵀ, with S in ascending order, built over F's rows in place.
  PivotedCenters out;
  out.rounds = rounds;
  out.centers = pivots;
  std::sort(out.centers.begin(), out.centers.end());
  std::vector<double> fs(size_t(have * have));
  for (index_t s = 0; s < have; ++s) std::copy_n(f.data() + out.centers[size_t(s)] * m, have, fs.data() + s * have);
  const index_t step = std::clamp<index_t>(index_t((8 << 20) / (8 * std::max<index_t>(m, 1))), 1, std::max<index_t>(n, 1));
  std::vector<double> tmp(size_t(std::min(step, n) * have));
  for (index_t begin = 0; begin < n; begin += step) {
    const index_t rows = std::min(step, n - begin);
    for (index_t i = 0; i < rows; ++i) std::copy_n(f.data() + (begin + i) * m, have, tmp.data() + i * have);
    // Rows [begin, begin + rows) of the result overwrite F's rows no later than these, read above.
    detail::gemm(false, true, rows, have, have, 1.0, tmp.data(), have, fs.data(), have, 0.0, f.data() + begin * have, have);
  }
  f.resize(size_t(n * have));
  f.shrink_to_fit();
  out.knm = std::move(f);
  return out;
}

// Cholesky factor U (row-major upper, strict lower zeroed) of S + jitter·I, S formed by build, for
// the first jitter of first, then start, 10·start, 100·start, ... that factors; returns it.
// NumericalError past limit.
double factor_with_jitter(const std::function<void(std::vector<double>&)>& build, index_t m, double first, double start,
                          double limit, std::vector<double>& u, const char* what) {
  double jitter = first;
  for (;;) {
    build(u);  // formed afresh for every try, so that no second M × M copy is held
    for (index_t i = 0; i < m; ++i) u[size_t(i * m + i)] += jitter;
    if (detail::cholesky_upper(u.data(), m) == 0) break;
    if (jitter >= limit)
      throw NumericalError(std::string("the Nyström preconditioner could not factor ") + what +
                           " even with a jitter of " + std::to_string(jitter) +
                           " on its diagonal; the kernel is not positive semi-definite on the centers (check it, or "
                           "use fewer centers)");
    jitter = jitter > 0 ? jitter * 10 : start;
  }
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < i; ++j) u[size_t(i * m + j)] = 0;
  return jitter;
}

// Applies K_nM or K_nMᵀK_nM from a cache of K_nM or from row blocks computed on demand.
class KnmOperator {
 public:
  // prebuilt: K_nM already computed (N × M), taken over; else computed here when cached.
  // cache_float32: cached in float32, converted back a block of rows at a time for the products.
  KnmOperator(const KernelBlocks& k, const std::vector<index_t>& centers, bool cached, bool cache_float32,
              index_t block_rows, std::vector<double>&& prebuilt, std::uint64_t& evaluations)
      : k_(k), centers_(centers), n_(k.rows()), m_(index_t(centers.size())), block_rows_(block_rows),
        evaluations_(evaluations) {
    if (!prebuilt.empty()) {
      cache_ = std::move(prebuilt);
    } else if (cached && cache_float32) {
      cache32_.resize(size_t(n_ * m_));
      block_.resize(size_t(std::min(block_rows_, n_) * m_));
      for (index_t begin = 0; begin < n_; begin += block_rows_) {
        const index_t rows = std::min(block_rows_, n_ - begin);
        kernel_rows(begin, rows, block_.data());
        std::copy(block_.begin(), block_.begin() + rows * m_, cache32_.begin() + begin * m_);
      }
    } else if (cached) {
      cache_.resize(size_t(n_ * m_));
      // In row blocks, so that one kernel call never holds more than a block of working memory.
      for (index_t begin = 0; begin < n_; begin += block_rows_)
        kernel_rows(begin, std::min(block_rows_, n_ - begin), cache_.data() + begin * m_);
    } else {
      block_.resize(size_t(block_rows_ * m_));
    }
  }
  bool cached() const { return !cache_.empty() || !cache32_.empty(); }

  // Every product is a pass over row blocks that can start at a block boundary `start` (a resumed
  // pass: out then holds the blocks before it) and calls after(rows done) after each block.
  using AfterBlock = std::function<void(index_t rows_done)>;
  // The rows of a block: all of them when cached (the GEMMs then split over all rows at once).
  index_t block_step() const { return cache_.empty() ? block_rows_ : n_; }

  // out (M × o) = K_nMᵀ y, y (n × o).
  void transpose_times(const double* y, index_t o, double* out, index_t start = 0, const AfterBlock& after = {}) {
    if (start == 0) std::fill(out, out + m_ * o, 0.0);
    for_each_block(start, after, [&](index_t begin, index_t rows) {
      detail::gemm(true, false, m_, o, rows, 1.0, rows_of(begin, rows), m_, y + begin * o, o, 1.0, out, o);
    });
  }
  // out (n × o) = K_nM z, z (M × o).
  void times(const double* z, index_t o, double* out, index_t start = 0, const AfterBlock& after = {}) {
    for_each_block(start, after, [&](index_t begin, index_t rows) {
      detail::gemm(false, false, rows, o, m_, 1.0, rows_of(begin, rows), m_, z, o, 0.0, out + begin * o, o);
    });
  }
  // out (M × o) = K_nMᵀ K_nM z, z (M × o); u: scratch of n × o.
  void gram_times(const double* z, index_t o, double* out, std::vector<double>& u, index_t start = 0,
                  const AfterBlock& after = {}) {
    u.resize(size_t(n_ * o));
    if (start == 0) std::fill(out, out + m_ * o, 0.0);
    for_each_block(start, after, [&](index_t begin, index_t rows) {
      const double* kb = rows_of(begin, rows);
      double* ub = u.data() + begin * o;
      detail::gemm(false, false, rows, o, m_, 1.0, kb, m_, z, o, 0.0, ub, o);
      detail::gemm(true, false, m_, o, rows, 1.0, kb, m_, ub, o, 1.0, out, o);
    });
  }

 private:
  template <class F>
  void for_each_block(index_t start, const AfterBlock& after, const F& f) {
    const index_t step = block_step();
    for (index_t begin = start; begin < n_; begin += step) {
      f(begin, std::min(step, n_ - begin));
      if (after) after(std::min(begin + step, n_));
    }
  }
  void kernel_rows(index_t begin, index_t rows, double* out) {
    std::vector<index_t> idx(static_cast<size_t>(rows));
    std::iota(idx.begin(), idx.end(), begin);
    k_.block(idx, centers_, out);
    evaluations_ += std::uint64_t(rows * m_);
  }
  const double* rows_of(index_t begin, index_t rows) {
    if (!cache_.empty()) return cache_.data() + begin * m_;
    if (!cache32_.empty()) {
      std::copy(cache32_.begin() + begin * m_, cache32_.begin() + (begin + rows) * m_, block_.begin());
      return block_.data();
    }
    kernel_rows(begin, rows, block_.data());
    return block_.data();
  }

  const KernelBlocks& k_;
  const std::vector<index_t>& centers_;
  index_t n_, m_, block_rows_;
  std::uint64_t& evaluations_;
  std::vector<double> cache_, block_;
  std::vector<float> cache32_;
};

using detail::outputs_of;

// out (rows of k_test, o) = K(rows, centers) α from row `start` on, in blocks of `step` rows,
// after(rows done) after each.
void predict_rows(const KernelBlocks& k_test, const std::vector<index_t>& centers, const double* alpha, index_t o,
                  index_t step, double* out, index_t start, const std::function<void(index_t)>& after) {
  const index_t nt = k_test.rows(), m = index_t(centers.size());
  std::vector<double> kb(size_t(std::min(step, nt) * m));
  std::vector<index_t> idx;
  for (index_t begin = start; begin < nt; begin += step) {
    const index_t rows = std::min(step, nt - begin);
    idx.resize(size_t(rows));
    std::iota(idx.begin(), idx.end(), begin);
    k_test.block(idx, centers, kb.data());
    detail::gemm(false, false, rows, o, m, 1.0, kb.data(), m, alpha, o, 0.0, out + begin * o, o);
    if (after) after(begin + rows);
  }
}

std::vector<double> kernel_diagonal(const KernelBlocks& k) {
  const index_t n = k.rows(), chunk = 4096;
  std::vector<index_t> idx;
  std::vector<double> d(static_cast<size_t>(n));
  for (index_t begin = 0; begin < n; begin += chunk) {
    const index_t len = std::min(chunk, n - begin);
    idx.resize(size_t(len));
    std::iota(idx.begin(), idx.end(), begin);
    k.diagonal(idx, d.data() + begin);
  }
  return d;
}

}  // namespace

const char* center_selection_name(CenterSelection selection) {
  switch (selection) {
    case CenterSelection::uniform: return "uniform";
    case CenterSelection::rpcholesky: return "rpcholesky";
    case CenterSelection::greedy: return "greedy";
  }
  return "?";
}

CenterSelection parse_center_selection(const std::string& name) {
  for (const auto s : {CenterSelection::uniform, CenterSelection::rpcholesky, CenterSelection::greedy})
    if (name == center_selection_name(s)) return s;
  throw InvalidArgument("unknown center selection '" + name + "': choose uniform, rpcholesky or greedy");
}

NystromFit nystrom_ridge(const KernelBlocks& k, const Array<double>& y, const NystromOptions& options) {
  ThreadScope scope(options.threads);
  const index_t n = k.rows();
  if (!k.symmetric() || k.cols() != n || n == 0)
    throw InvalidArgument("Nyström ridge needs the train kernel (rows and columns the N > 0 training examples), got the " +
                          k.describe());
  if (y.ndim() < 1 || y.ndim() > 2 || y.dim(0) != n)
    throw InvalidArgument("the targets must be (N,) or (N, O) with N = " + std::to_string(n) +
                          " (the kernel's rows), got " + shape_string(y.shape()));
  if (const index_t bad = first_non_finite(y); bad >= 0)
    throw InvalidArgument("the targets have a non-finite value (NaN or Inf) at flat index " + std::to_string(bad));
  if (!(options.ridge >= 0) || !std::isfinite(options.ridge))
    throw InvalidArgument("the ridge must be a finite number >= 0, got " + std::to_string(options.ridge));
  std::vector<index_t> given = options.center_indices;
  std::sort(given.begin(), given.end());
  if (!given.empty() && (given.front() < 0 || given.back() >= n || std::adjacent_find(given.begin(), given.end()) != given.end()))
    throw InvalidArgument("the center indices must be distinct training examples in [0, " + std::to_string(n) + ")");
  if (given.empty() && options.centers < 1)
    throw InvalidArgument("Nyström needs at least one center, got " + std::to_string(options.centers));
  if (options.max_iterations < 1)
    throw InvalidArgument("max_iterations must be at least 1, got " + std::to_string(options.max_iterations));
  if (!(options.tolerance >= 0) || !std::isfinite(options.tolerance))
    throw InvalidArgument("the tolerance must be a finite number >= 0, got " + std::to_string(options.tolerance));
  if (options.row_block < 0) throw InvalidArgument("the row block must be >= 0 (0: automatic)");
  if (options.selection_block < 0) throw InvalidArgument("the selection block must be >= 0 (0: automatic)");

  if (options.test && options.test->cols() != n)
    throw InvalidArgument("the test kernel's columns must be the " + std::to_string(n) +
                          " training examples, got the " + options.test->describe());
  NystromFit fit;
  fit.n_train = n;
  index_t m = given.empty() ? std::min(options.centers, n) : index_t(given.size());
  const index_t o = outputs_of(y);
  if (given.empty() && options.centers > n)
    fit.warnings.push_back(std::to_string(options.centers) + " centers asked for but there are " + std::to_string(n) +
                           " training examples: all of them are centers (exact kernel ridge)");

  // Memory, before anything large: K_MM and its two factors, the CG state (8 M × O), K_nM z (N × O),
  // the sampling permutation (N), then K_nM whole or one block of it.
  const std::uint64_t fixed = nystrom_fixed_bytes(n, m, o);
  const std::uint64_t row_bytes = 8 * std::uint64_t(m), budget = options.max_memory;
  if (budget && fixed + row_bytes > budget)
    throw MemoryBudgetError("Nyström with M = " + std::to_string(m) + " centers needs at least " + format_bytes(fixed + row_bytes) +
                            " (K_MM, its preconditioner and one row of K_nM) but --max-memory is " +
                            format_bytes(budget) + "; raise --max-memory or use fewer centers");
  index_t block_rows = rows_per_block(options.row_block, m, n);
  // A float32 cache also holds one float64 block of rows to convert into.
  const std::uint64_t cached_bytes = options.cache_float32
                                         ? 4 * std::uint64_t(m) * std::uint64_t(n) + row_bytes * std::uint64_t(block_rows)
                                         : row_bytes * std::uint64_t(n);
  const bool cache = !budget || fixed + cached_bytes <= budget;
  if (!cache) block_rows = std::min(block_rows, index_t((budget - fixed) / row_bytes));
  fit.knm_cached = cache;
  if (!cache)
    fit.warnings.push_back("K_nM (" + format_bytes(row_bytes * std::uint64_t(n)) + ") does not fit --max-memory " +
                           format_bytes(budget) + ": it is recomputed in blocks of " + std::to_string(block_rows) +
                           " rows every iteration");

  // The diagonal (N kernel entries: a full pass over the examples for a network kernel) only when
  // something reads it: the relative ridge or a pivoted selection.
  std::vector<double> diag;
  if (options.relative || (m < n && options.selection != CenterSelection::uniform)) {
    diag = kernel_diagonal(k);
    fit.kernel_evaluations += std::uint64_t(n);
  }
  double mean_diag = 0;
  for (const double v : diag) mean_diag += v;
  mean_diag /= double(n);
  fit.lambda = options.relative ? options.ridge * mean_diag : options.ridge;
  const double lambda = fit.lambda;

  // Centers; pivoted selections also give K_nM, built in the place of their Cholesky factor.
  fit.selection = m < n && given.empty() ? options.selection : CenterSelection::uniform;
  const index_t selection_block = std::min(options.selection_block > 0 ? options.selection_block : index_t{128}, m);
  std::vector<double> prebuilt;
  if (fit.selection != CenterSelection::uniform) {
    // The factor (N × M, in K_nM's place), one round's columns (N × block) and the sampling CDF.
    const std::uint64_t need = fixed + row_bytes * std::uint64_t(n) + 8 * std::uint64_t(n) * std::uint64_t(selection_block + 2);
    if (!cache || (budget && need > budget)) {
      fit.warnings.push_back(std::string(center_selection_name(fit.selection)) + " center selection needs " +
                             format_bytes(need) + " (the N x M Cholesky factor) but --max-memory is " +
                             format_bytes(budget) + ": the centers are uniform instead");
      fit.selection = CenterSelection::uniform;
    }
  }
  if (!given.empty()) {
    fit.centers = std::move(given);
  } else if (fit.selection == CenterSelection::uniform) {
    fit.centers = sample_centers(n, m, options.seed);
  } else {
    PivotedCenters picked = pivoted_centers(k, diag, m, fit.selection == CenterSelection::rpcholesky, options.seed,
                                            selection_block, options.row_block, fit.kernel_evaluations);
    fit.selection_rounds = picked.rounds;
    fit.centers = std::move(picked.centers);
    prebuilt = std::move(picked.knm);
    if (index_t(fit.centers.size()) < m)
      fit.warnings.push_back("the kernel is numerically exhausted after " + std::to_string(fit.centers.size()) +
                             " centers (every residual diagonal below 1e-10 of the largest K_ii): using those " +
                             std::to_string(fit.centers.size()) + " instead of " + std::to_string(m) +
                             "; they span the kernel, so this is kernel ridge on all N to that precision");
  }
  m = index_t(fit.centers.size());

  std::vector<double> kmm(size_t(m * m));
  if (!prebuilt.empty()) {  // K_MM: K_nM's rows at the centers, symmetrized
    for (index_t a = 0; a < m; ++a)
      for (index_t b = 0; b < m; ++b)
        kmm[size_t(a * m + b)] =
            0.5 * (prebuilt[size_t(fit.centers[size_t(a)] * m + b)] + prebuilt[size_t(fit.centers[size_t(b)] * m + a)]);
  } else {
    // In blocks of rows like K_nM: one call never holds more than a block's working memory (a
    // network kernel's own result array, say). One call, on the symmetric path, when it fits.
    const std::span<const index_t> centers(fit.centers);
    for (index_t begin = 0; begin < m; begin += block_rows)
      k.block(centers.subspan(size_t(begin), size_t(std::min(block_rows, m - begin))), centers, kmm.data() + begin * m);
    fit.kernel_evaluations += std::uint64_t(m * m);
  }
  double mean_diag_mm = 0;
  for (index_t i = 0; i < m; ++i) mean_diag_mm += kmm[size_t(i * m + i)] / double(m);
  if (!(mean_diag_mm > 0))
    throw NumericalError("the " + k.describe() + " is zero (or negative) on the diagonal at the centers; it cannot be a kernel");

  // Jitter on K_MM for its factor only (the solved problem keeps K_MM exact): Falkon's M·ε relative
  // to the diagonal covers rounding of a float64 kernel; it grows by 10× per try for kernels
  // rounded to float32 or not quite positive semi-definite.
  const double eps = std::numeric_limits<double>::epsilon();
  std::vector<double> t, a;
  const double base_jitter = double(m) * eps * mean_diag_mm;
  fit.kmm_jitter = factor_with_jitter([&](std::vector<double>& u) { u = kmm; }, m, base_jitter, base_jitter,
                                      1e-2 * mean_diag_mm, t, "K_MM");
  if (fit.kmm_jitter > base_jitter * 1.5)
    fit.warnings.push_back("K_MM is not numerically positive definite: its preconditioner factor needed a jitter of " +
                           std::to_string(fit.kmm_jitter / mean_diag_mm) +
                           " times its mean diagonal; CG may need more iterations");
  // A: T Tᵀ/M + (λ/N) I, formed in A's own storage.
  auto build_a = [&](std::vector<double>& u) {
    u.resize(size_t(m * m));
    detail::gemm(false, true, m, m, m, 1.0 / double(m), t.data(), m, t.data(), m, 0.0, u.data(), m);
    for (index_t i = 0; i < m; ++i) u[size_t(i * m + i)] += lambda / double(n);
  };
  build_a(a);
  double mean_diag_a = 0;
  for (index_t i = 0; i < m; ++i) mean_diag_a += a[size_t(i * m + i)] / double(m);
  // λ/N on the diagonal usually makes it positive definite as it is; λ = 0 needs the jitter.
  const double start_a = double(m) * eps * mean_diag_a;
  factor_with_jitter(build_a, m, lambda > 0 ? 0.0 : start_a, start_a, 1e-2 * mean_diag_a, a, "T Tᵀ/M + λ/N I");

  KnmOperator knm(k, fit.centers, cache, options.cache_float32, block_rows, std::move(prebuilt), fit.kernel_evaluations);
  const double scale = 1.0 / std::sqrt(double(n));
  auto apply_b = [&](std::vector<double>& v) {  // v <- B v
    detail::trsm_upper(false, m, o, a.data(), v.data());
    detail::trsm_upper(false, m, o, t.data(), v.data());
    for (double& e : v) e *= scale;
  };
  auto apply_bt = [&](std::vector<double>& v) {  // v <- Bᵀ v
    detail::trsm_upper(true, m, o, t.data(), v.data());
    detail::trsm_upper(true, m, o, a.data(), v.data());
    for (double& e : v) e *= scale;
  };
  std::vector<double> u;  // K_nM z, N × O

  // The solve is a sequence of passes over row blocks, resumable after any block: pass 0 the
  // right-hand side b = Bᵀ K_nMᵀ Y; pass i >= 1 the i-th CG iteration, q = Bᵀ H B p; then the
  // train predictions K_nM α and the test predictions K(X_test, C) α. A state is the pass, its rows
  // done and partial result ("partial"), and the CG vectors as of the pass's start ("x" holds β
  // during CG and α = Bβ after it).
  const index_t train_pass = options.max_iterations + 1, test_pass = options.max_iterations + 2;
  const index_t n_test = options.test ? options.test->rows() : 0;
  const index_t test_step = rows_per_block(options.row_block, m, std::max<index_t>(n_test, 1));
  index_t pass = 0, rows_done = 0;
  std::vector<double> x(size_t(m * o), 0.0), r(size_t(m * o)), p(size_t(m * o)), q(size_t(m * o));
  const auto outs = static_cast<size_t>(o);
  std::vector<double> rs(outs), b_norm(outs), rel(outs, 0.0), active(outs, 0.0);  // active: 1 or 0
  if (options.train_predictions) fit.train_predictions = Array<double>(Shape{n, o});
  if (options.test) fit.test_predictions = Array<double>(Shape{n_test, o});
  // The current pass's partial result: b, q, or the predictions being filled.
  auto partial = [&]() -> std::pair<double*, index_t> {
    if (pass < train_pass) return {q.data(), m};
    if (pass == train_pass) return {fit.train_predictions.data(), n};
    return {fit.test_predictions.data(), n_test};
  };
  const index_t step_rows = knm.block_step();
  auto describe = [&] {
    const std::string rows = ", row " + std::to_string(rows_done) + " of " + std::to_string(pass == test_pass ? n_test : n);
    if (pass == 0) return "the right-hand side" + rows;
    if (pass < train_pass) return "CG iteration " + std::to_string(pass) + rows;
    return (pass == train_pass ? std::string("the train predictions") : std::string("the test predictions")) + rows;
  };

  SolverCheckpoint* const checkpoint = options.checkpoint;
  if (checkpoint && !checkpoint->saved().empty()) {
    const SolverState& saved = checkpoint->saved();
    double meta[3];
    detail::load_state_array(saved, "meta", meta, 3);
    std::vector<double> centers(static_cast<size_t>(m), 0.0);
    detail::load_state_array(saved, "centers", centers.data(), m);
    pass = index_t(meta[0]), rows_done = index_t(meta[1]);
    const auto iterations = index_t(meta[2]);
    const index_t pass_rows = pass == test_pass ? n_test : n;
    const index_t pass_step = pass == test_pass ? test_step : step_rows;
    if (pass < 0 || pass > test_pass || (pass == train_pass && !options.train_predictions) ||
        (pass == test_pass && !options.test) || rows_done < 0 || rows_done > pass_rows ||
        (rows_done % pass_step != 0 && rows_done != pass_rows) || iterations < 0 || iterations > std::min(pass, options.max_iterations) ||
        !std::equal(centers.begin(), centers.end(), fit.centers.begin(), [](double a, index_t b) { return a == double(b); }))
      throw IoError("the saved solver state (" + describe() + ") is not this solve's; delete it to start over");
    for (auto [name, v] : {std::pair{"x", &x}, {"r", &r}, {"p", &p}, {"rs", &rs}, {"b_norm", &b_norm}, {"rel", &rel},
                           {"active", &active}})
      detail::load_state_array(saved, name, v->data(), index_t(v->size()));
    fit.iterations = iterations;
    fit.residual_history.resize(size_t(iterations));
    detail::load_state_array(saved, "history", fit.residual_history.data(), iterations);
    const auto [part, part_rows] = partial();
    detail::load_state_array(saved, "partial", part, part_rows * o);
    if (pass == test_pass && options.train_predictions)
      detail::load_state_array(saved, "train", fit.train_predictions.data(), n * o);
    fit.resumed_at = describe();
  }
  // After each block: the state, when the checkpoint would save it.
  const auto after_block = [&](index_t rows) {
    rows_done = rows;
    if (!checkpoint || !checkpoint->due()) return;
    const double meta[3] = {double(pass), double(rows_done), double(fit.iterations)};
    const std::vector<double> centers(fit.centers.begin(), fit.centers.end());
    const auto [part, part_rows] = partial();
    std::vector<StateArray> state{
        {"meta", Shape{3}, meta}, {"centers", Shape{m}, centers.data()}, {"x", Shape{m, o}, x.data()},
        {"r", Shape{m, o}, r.data()}, {"p", Shape{m, o}, p.data()}, {"rs", Shape{o}, rs.data()},
        {"b_norm", Shape{o}, b_norm.data()}, {"rel", Shape{o}, rel.data()}, {"active", Shape{o}, active.data()},
        {"history", Shape{fit.iterations}, fit.residual_history.data()}, {"partial", Shape{part_rows, o}, part}};
    if (pass == test_pass && options.train_predictions)
      state.push_back({"train", Shape{n, o}, fit.train_predictions.data()});
    checkpoint->save(state);
  };

  // CG on every output column at once: one pass over K_nM per iteration serves all of them, each
  // column with its own step sizes, stopping on its own residual.
  auto column_dot = [&](const std::vector<double>& v, const std::vector<double>& w, index_t c) {
    double s = 0;
    for (index_t i = 0; i < m; ++i) s += v[size_t(i * o + c)] * w[size_t(i * o + c)];
    return s;
  };
  auto any_active = [&] { return std::count(active.begin(), active.end(), 1.0) > 0; };
  // Whether this run takes part in CG (x then holds β, to become α below), rather than resuming
  // past it: the loop may end at pass train_pass itself, on the iteration limit.
  const bool in_cg = pass < train_pass;
  if (pass == 0) {
    knm.transpose_times(y.data(), o, q.data(), rows_done, after_block);
    apply_bt(q);
    r = q;
    p = q;
    for (index_t c = 0; c < o; ++c) {
      rs[size_t(c)] = column_dot(r, r, c);
      b_norm[size_t(c)] = std::sqrt(rs[size_t(c)]);
      rel[size_t(c)] = b_norm[size_t(c)] > 0 ? 1.0 : 0.0;
      active[size_t(c)] = b_norm[size_t(c)] > 0 && rel[size_t(c)] > options.tolerance;
    }
    pass = 1, rows_done = 0;
  }
  for (; pass <= options.max_iterations && any_active(); ++pass, rows_done = 0) {
    // q <- Bᵀ H B p
    std::vector<double> z = p;
    apply_b(z);
    knm.gram_times(z.data(), o, q.data(), u, rows_done, after_block);
    if (lambda != 0) detail::gemm(false, false, m, o, m, lambda, kmm.data(), m, z.data(), o, 1.0, q.data(), o);
    apply_bt(q);
    for (index_t c = 0; c < o; ++c) {
      if (!active[size_t(c)]) continue;
      const double pq = column_dot(p, q, c);
      if (!(pq > 0)) {  // the system is exactly solved in the directions left (or broke down)
        active[size_t(c)] = 0;
        continue;
      }
      const double step = rs[size_t(c)] / pq;
      for (index_t i = 0; i < m; ++i) {
        x[size_t(i * o + c)] += step * p[size_t(i * o + c)];
        r[size_t(i * o + c)] -= step * q[size_t(i * o + c)];
      }
      const double rs_new = column_dot(r, r, c);
      rel[size_t(c)] = std::sqrt(rs_new) / b_norm[size_t(c)];
      if (rel[size_t(c)] <= options.tolerance) {
        active[size_t(c)] = 0;
        continue;
      }
      const double beta = rs_new / rs[size_t(c)];
      rs[size_t(c)] = rs_new;
      for (index_t i = 0; i < m; ++i) p[size_t(i * o + c)] = r[size_t(i * o + c)] + beta * p[size_t(i * o + c)];
    }
    fit.iterations = pass;
    fit.residual_history.push_back(*std::max_element(rel.begin(), rel.end()));
    if (options.progress) options.progress(fit.iterations, options.max_iterations, fit.residual_history.back());
  }
  const double final_residual = *std::max_element(rel.begin(), rel.end());
  if (final_residual > options.tolerance)
    fit.warnings.push_back("conjugate gradient stopped after " + std::to_string(fit.iterations) +
                           " iterations at a relative residual of " + std::to_string(final_residual) + " (tolerance " +
                           std::to_string(options.tolerance) + "); raise max_iterations for a closer solution");
  if (in_cg) {  // β -> α
    apply_b(x);
    pass = train_pass, rows_done = 0;
  }
  if (const index_t bad = first_non_finite(x.data(), index_t(x.size())); bad >= 0)
    throw NumericalError("Nyström ridge produced a non-finite coefficient from the " + k.describe() +
                         "; use a larger ridge");
  if (pass == train_pass) {
    if (options.train_predictions) knm.times(x.data(), o, fit.train_predictions.data(), rows_done, after_block);
    pass = test_pass, rows_done = 0;
  }
  if (options.test)
    predict_rows(*options.test, fit.centers, x.data(), o, test_step, fit.test_predictions.data(), rows_done, after_block);
  fit.alpha = Array<double>(Shape{m, o}, std::move(x));
  return fit;
}

Array<double> nystrom_predict(const KernelBlocks& k_test, const NystromFit& fit, int threads, index_t row_block) {
  ThreadScope scope(threads);
  const index_t m = index_t(fit.centers.size());
  if (fit.alpha.ndim() != 2 || fit.alpha.dim(0) != m || m == 0)
    throw InvalidArgument("the Nyström fit is malformed: alpha " + shape_string(fit.alpha.shape()) + " for " +
                          std::to_string(m) + " centers");
  if (k_test.cols() != fit.n_train)
    throw InvalidArgument("the test kernel's columns must be the " + std::to_string(fit.n_train) +
                          " training examples of the fit, got the " + k_test.describe());
  const index_t nt = k_test.rows(), o = fit.alpha.dim(1);
  Array<double> out(Shape{nt, o});
  if (row_block < 0) throw InvalidArgument("the row block must be >= 0 (0: automatic)");
  predict_rows(k_test, fit.centers, fit.alpha.data(), o, rows_per_block(row_block, m, nt), out.data(), 0, {});
  return out;
}

}  // namespace ntk
