// Ridge regression on features: FᵀF and FᵀY accumulated in float64 over row batches of F (SYRK and
// GEMM), then (FᵀF + λI) W = FᵀY solved by kernel_ridge on the m × m Gram matrix of the features,
// which brings its Cholesky factor and eigendecomposition fallback.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "blas.hpp"
#include "checkpoint.hpp"
#include "io_detail.hpp"
#include "lapack.hpp"
#include "solve_detail.hpp"
#include "ntk/error.hpp"
#include "ntk/nystrom.hpp"
#include "ntk/parallel.hpp"
#include "ntk/solve.hpp"

namespace ntk {
namespace {

using detail::outputs_of;

// Rows [begin, begin + count) of the features, as float64, into out (count × m).
using RowReader = std::function<void(index_t begin, index_t count, double* out)>;

FeatureRidgeFit solve_features(index_t n, index_t m, const RowReader& read_rows, const Array<double>& y,
                               const FeatureRidgeOptions& options, const std::string& what) {
  ThreadScope scope(options.threads);
  if (n < 1 || m < 1)
    throw InvalidArgument(what + " must have at least one row and one column, got (" + std::to_string(n) + ", " +
                          std::to_string(m) + ")");
  if (y.ndim() < 1 || y.ndim() > 2 || y.dim(0) != n)
    throw InvalidArgument("the targets must be (n,) or (n, O) with n = " + std::to_string(n) + " (the rows of " + what +
                          "), got " + shape_string(y.shape()));
  if (const index_t bad = first_non_finite(y); bad >= 0)
    throw InvalidArgument("the targets have a non-finite value (NaN or Inf) at flat index " + std::to_string(bad));
  if (!(options.ridge >= 0) || !std::isfinite(options.ridge))
    throw InvalidArgument("the ridge must be a finite number >= 0, got " + std::to_string(options.ridge));
  if (options.batch_rows < 0) throw InvalidArgument("batch_rows must be >= 0 (0: automatic)");
  const index_t o = outputs_of(y);
  const index_t batch = std::clamp<index_t>(
      options.batch_rows > 0 ? options.batch_rows : index_t((std::uint64_t{64} << 20) / (8 * std::uint64_t(m))), 1, n);

  const bool select = !options.ridge_grid.empty();
  const index_t v = select ? options.validation : 0, n_fit = n - v;
  if (select) {
    if (v < 1 || n_fit < 1)
      throw InvalidArgument("the validation split must hold between 1 and N - 1 examples, got " + std::to_string(v) + " of " +
                            std::to_string(n));
    for (double r : options.ridge_grid)
      if (!(r >= 0) || !std::isfinite(r)) throw InvalidArgument("candidate ridges must be finite and >= 0");
  }

  // FᵀF and FᵀY of rows [lo, hi) added into gram (upper triangle) and fty, in batches of `batch` rows
  // from lo; keep: the rows themselves. Resumable after any batch (options.checkpoint): a state is
  // the rows done over [0, n) and the sums so far; a resumed accumulation starts at `from`, only
  // reading the kept rows before it again.
  std::vector<double> f(size_t(batch * m));
  Array<double> gram(Shape{m, m}), fty(Shape{m, o}), gram_v, fty_v;
  if (select) gram_v = Array<double>(Shape{m, m}), fty_v = Array<double>(Shape{m, o});
  SolverCheckpoint* const checkpoint = options.checkpoint;
  index_t rows_done = 0;
  auto offer = [&](index_t rows) {
    rows_done = rows;
    if (!checkpoint || !checkpoint->due()) return;
    const double meta[1] = {double(rows)};
    std::vector<StateArray> state{{"meta", Shape{1}, meta}, {"gram", Shape{m, m}, gram.data()}, {"fty", Shape{m, o}, fty.data()}};
    if (rows > n_fit) {
      state.push_back({"gram_v", Shape{m, m}, gram_v.data()});
      state.push_back({"fty_v", Shape{m, o}, fty_v.data()});
    }
    checkpoint->save(state);
  };
  FeatureRidgeFit fit;
  if (checkpoint && !checkpoint->saved().empty()) {
    double meta[1];
    detail::load_state_array(checkpoint->saved(), "meta", meta, 1);
    rows_done = index_t(meta[0]);
    const bool aligned = rows_done <= n_fit ? rows_done % batch == 0 || rows_done == n_fit
                                            : (rows_done - n_fit) % batch == 0 || rows_done == n;
    if (rows_done < 0 || rows_done > n || !aligned)
      throw IoError("the saved solver state (row " + std::to_string(rows_done) + " of " + std::to_string(n) +
                    ") is not this solve's; delete it to start over");
    detail::load_state_array(checkpoint->saved(), "gram", gram.data(), m * m);
    detail::load_state_array(checkpoint->saved(), "fty", fty.data(), m * o);
    if (rows_done > n_fit) {
      detail::load_state_array(checkpoint->saved(), "gram_v", gram_v.data(), m * m);
      detail::load_state_array(checkpoint->saved(), "fty_v", fty_v.data(), m * o);
    }
    fit.resumed_at = "row " + std::to_string(rows_done) + " of " + std::to_string(n);
  }
  auto accumulate = [&](index_t lo, index_t hi, Array<double>& gram, Array<double>& fty, std::vector<double>* keep) {
    const index_t from = std::clamp(rows_done, lo, hi);
    for (index_t begin = lo; keep && begin < from; begin += batch) {
      const index_t rows = std::min(batch, from - begin);
      read_rows(begin, rows, f.data());
      keep->insert(keep->end(), f.begin(), f.begin() + rows * m);
    }
    // SYRK has no split over ntkit's threads (detail::gemm's): it runs on OpenBLAS's, as LAPACK does.
    detail::LapackThreads blas_threads;
    for (index_t begin = from; begin < hi; begin += batch) {
      const index_t rows = std::min(batch, hi - begin);
      read_rows(begin, rows, f.data());
      if (const index_t bad = first_non_finite(f.data(), rows * m); bad >= 0)
        throw InvalidArgument(what + " has a non-finite value (NaN or Inf) in row " + std::to_string(begin + bad / m) +
                              ", column " + std::to_string(bad % m));
      cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, blasint(m), blasint(rows), 1.0, f.data(), blasint(m), 1.0,
                  gram.data(), blasint(m));
      detail::gemm_serial(true, false, m, o, rows, 1.0, f.data(), m, y.data() + begin * o, o, 1.0, fty.data(), o);
      if (keep) keep->insert(keep->end(), f.begin(), f.begin() + rows * m);
      offer(begin + rows);
    }
  };
  auto symmetrize = [m](Array<double>& g) {
    double trace = 0;
    for (index_t i = 0; i < m; ++i) {
      trace += g[i * m + i];
      for (index_t j = 0; j < i; ++j) g[i * m + j] = g[j * m + i];
    }
    return trace;
  };
  accumulate(0, n_fit, gram, fty, nullptr);
  double trace = symmetrize(gram);
  double chosen = options.ridge;
  if (select) {
    // The last v rows validate: with FᵀF = V Λ Vᵀ over the fit rows, the validation predictions at λ
    // are P diag(1/(Λ + λ)) Q, P = F_v V and Q = Vᵀ FᵀY, formed once (select_ridge's scheme on K = FFᵀ).
    std::vector<double> f_val;
    f_val.reserve(size_t(v * m));
    accumulate(n_fit, n, gram_v, fty_v, &f_val);
    std::vector<double> a(gram.data(), gram.data() + m * m), w;
    detail::eigh(a, m, w);  // rows of a: eigenvectors
    std::vector<double> p(size_t(v * m)), q(size_t(m * o));
    detail::gemm(false, true, v, m, m, 1.0, f_val.data(), m, a.data(), m, 0.0, p.data(), m);
    detail::gemm(false, false, m, o, m, 1.0, a.data(), m, fty.data(), o, 0.0, q.data(), o);
    fit.validation_mse = detail::validation_mses(w, p, q, v, m, o, y.data() + n_fit * o, options.ridge_grid,
                                                 options.relative ? trace / double(n_fit) : 1.0);
    chosen = options.ridge_grid[size_t(std::min_element(fit.validation_mse.begin(), fit.validation_mse.end()) -
                                       fit.validation_mse.begin())];
    fit.chosen_ridge = chosen;
    // The refit on all rows: the validation rows' FᵀF and FᵀY join the fit rows'.
    const double trace_v = symmetrize(gram_v);
    for (index_t e = 0; e < m * m; ++e) gram[e] += gram_v[e];
    for (index_t e = 0; e < m * o; ++e) fty[e] += fty_v[e];
    trace += trace_v;
  }
  // mean(diag F Fᵀ) = mean ‖f_i‖² = trace(FᵀF) / n: kernel_ridge's relative ridge on K = F Fᵀ.
  fit.lambda = options.relative ? chosen * trace / double(n) : chosen;
  RidgeOptions ridge;
  ridge.ridge = fit.lambda;
  ridge.relative = false;
  RidgeFit solved = kernel_ridge(gram, fty, ridge);
  fit.weights = std::move(solved.alpha);
  fit.cholesky = solved.cholesky;
  fit.dropped_directions = solved.dropped_directions;
  if (!solved.warning.empty()) {
    const size_t verb = solved.warning.find("is not");
    fit.warning = "ridge on features: FᵀF + λI (" + std::to_string(m) + " x " + std::to_string(m) + ") " +
                  (verb == std::string::npos ? solved.warning : solved.warning.substr(verb));
  }
  return fit;
}

}  // namespace

template <class T>
FeatureRidgeFit feature_ridge(const Array<T>& features, const Array<double>& y, const FeatureRidgeOptions& options) {
  if (features.ndim() != 2)
    throw InvalidArgument("the features must be 2-D (examples, features), got " + shape_string(features.shape()));
  const index_t m = features.dim(1);
  const RowReader read = [&](index_t begin, index_t count, double* out) {
    std::copy(features.data() + begin * m, features.data() + (begin + count) * m, out);
  };
  return solve_features(features.dim(0), m, read, y, options, "the features");
}

// Rows of a 2-D float32 / float64 .npy file, memory-mapped, as float64.
RowReader mapped_rows(const detail::MappedNpyReader& file, const std::string& what) {
  if (file.shape().size() != 2)
    throw InvalidArgument(what + " must be 2-D (examples, features), got shape " + shape_string(file.shape()));
  if (file.dtype() != DType::float32 && file.dtype() != DType::float64)
    throw InvalidArgument(what + " must be float32 or float64, got " + dtype_name(file.dtype()));
  const index_t m = file.shape()[1];
  return [&file, m](index_t begin, index_t count, double* out) {
    const size_t first = size_t(begin * m), len = size_t(count * m);
    if (file.dtype() == DType::float64) {
      std::memcpy(out, file.data() + first * sizeof(double), len * sizeof(double));
      return;
    }
    std::vector<float> rows(len);
    std::memcpy(rows.data(), file.data() + first * sizeof(float), len * sizeof(float));
    std::copy(rows.begin(), rows.end(), out);
  };
}

FeatureRidgeFit feature_ridge(const std::string& features_npy, const Array<double>& y, const FeatureRidgeOptions& options) {
  const detail::MappedNpyReader file(features_npy);
  const std::string what = "the features in '" + features_npy + "'";
  const RowReader read = mapped_rows(file, what);
  return solve_features(file.shape()[0], file.shape()[1], read, y, options, what);
}

Array<double> feature_ridge_predict(const std::string& features_npy, const Array<double>& weights, int threads) {
  ThreadScope scope(threads);
  const detail::MappedNpyReader file(features_npy);
  const std::string what = "the features in '" + features_npy + "'";
  const RowReader read = mapped_rows(file, what);
  const index_t n = file.shape()[0], m = file.shape()[1];
  if (weights.ndim() != 2 || weights.dim(0) != m)
    throw InvalidArgument(what + " have " + std::to_string(m) + " features per example but the weights were fitted on " +
                          (weights.ndim() == 2 ? std::to_string(weights.dim(0)) : std::string("other")) + "; compute both with the same feature map");
  const index_t o = weights.dim(1);
  Array<double> out(Shape{n, o});
  // Batches of about 64 MiB of rows in float64, read from the mapping and multiplied in float64.
  const index_t batch = std::clamp<index_t>(index_t((std::uint64_t{64} << 20) / (8 * std::uint64_t(std::max<index_t>(m, 1)))), 1,
                                            std::max<index_t>(n, 1));
  std::vector<double> f(size_t(std::min(batch, n) * m));
  for (index_t begin = 0; begin < n; begin += batch) {
    const index_t rows = std::min(batch, n - begin);
    read(begin, rows, f.data());
    if (const index_t bad = first_non_finite(f.data(), rows * m); bad >= 0)
      throw InvalidArgument(what + " have a non-finite value (NaN or Inf) in row " + std::to_string(begin + bad / m));
    detail::gemm(false, false, rows, o, m, 1.0, f.data(), m, weights.data(), o, 0.0, out.data() + begin * o, o);
  }
  return out;
}

template <class T>
Array<double> feature_ridge_predict(const Array<T>& features, const Array<double>& weights, int threads) {
  ThreadScope scope(threads);
  if (weights.ndim() != 2)
    throw InvalidArgument("the weights must be (m, O), got " + shape_string(weights.shape()));
  if (features.ndim() != 2 || features.dim(1) != weights.dim(0))
    throw InvalidArgument("the test features must be (n, " + std::to_string(weights.dim(0)) +
                          "), as wide as the features the weights were fitted on, got " + shape_string(features.shape()));
  if (const index_t bad = first_non_finite(features); bad >= 0)
    throw InvalidArgument("the test features have a non-finite value (NaN or Inf) at flat index " + std::to_string(bad));
  const index_t n = features.dim(0), m = features.dim(1), o = weights.dim(1);
  Array<double> out(Shape{n, o});
  if constexpr (std::is_same_v<T, double>) {
    detail::gemm(false, false, n, o, m, 1.0, features.data(), m, weights.data(), o, 0.0, out.data(), o);
  } else {  // float features are multiplied in float64, a batch of rows at a time
    const index_t batch = std::clamp<index_t>(index_t((std::uint64_t{64} << 20) / (8 * std::uint64_t(m))), 1, std::max<index_t>(n, 1));
    std::vector<double> f(size_t(std::min(batch, n) * m));
    for (index_t begin = 0; begin < n; begin += batch) {
      const index_t rows = std::min(batch, n - begin);
      std::copy(features.data() + begin * m, features.data() + (begin + rows) * m, f.begin());
      detail::gemm(false, false, rows, o, m, 1.0, f.data(), m, weights.data(), o, 0.0, out.data() + begin * o, o);
    }
  }
  return out;
}

template FeatureRidgeFit feature_ridge(const Array<float>&, const Array<double>&, const FeatureRidgeOptions&);
template FeatureRidgeFit feature_ridge(const Array<double>&, const Array<double>&, const FeatureRidgeOptions&);
template Array<double> feature_ridge_predict(const Array<float>&, const Array<double>&, int);
template Array<double> feature_ridge_predict(const Array<double>&, const Array<double>&, int);

}  // namespace ntk
