// Spectra, diagnostics and comparisons of kernels: LAPACK eigenvalues (dsyevd, no eigenvectors) for
// kernels in memory, Spectra's implicitly restarted Lanczos over matrix-free products for kernels
// given by blocks or as NTK-vector products, and the pNTK report.
#include <Spectra/SymEigsSolver.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "blas.hpp"
#include "lapack.hpp"
#include "ntk/error.hpp"
#include "ntk/parallel.hpp"
#include "ntk/solve.hpp"
#include "ntk/spectrum.hpp"

namespace ntk {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

template <class T>
void check_finite(const T* p, index_t count, const std::string& what) {
  if (index_t bad = first_non_finite(p, count); bad >= 0)
    throw InvalidArgument(what + " has a non-finite value (NaN or Inf) at flat index " + std::to_string(bad) +
                          "; recompute it (in float64 if it overflowed)");
}

template <class T>
void check_square(const Array<T>& k, const std::string& what) {
  if (k.ndim() != 2 || k.dim(0) != k.dim(1) || k.dim(0) == 0)
    throw InvalidArgument(what + " must be a square (N, N) kernel with N > 0, got shape " + shape_string(k.shape()));
}

index_t outputs_of(const Array<double>& y) { return y.ndim() == 1 ? 1 : (y.ndim() == 2 ? y.dim(1) : 0); }

void check_targets(const Array<double>& y, index_t n) {
  if (y.ndim() < 1 || y.ndim() > 2 || y.dim(0) != n)
    throw InvalidArgument("the targets must be (N,) or (N, O) with N = " + std::to_string(n) +
                          " (the kernel's rows), got shape " + shape_string(y.shape()));
  check_finite(y.data(), y.size(), "the targets");
}

// ‖YYᵀ‖_F = ‖YᵀY‖_F (both are √tr((YᵀY)²)), so the N × N target kernel is never formed.
double target_gram_norm(const Array<double>& y) {
  const index_t n = y.dim(0), o = outputs_of(y);
  std::vector<double> g(size_t(o * o));
  detail::gemm(true, false, o, o, n, 1.0, y.data(), o, y.data(), o, 0.0, g.data(), o);
  double s = 0;
  for (double v : g) s += v * v;
  return std::sqrt(s);
}

// ⟨K, YYᵀ⟩_F = tr(Yᵀ K Y) accumulated from rows [r0, r0 + rows) of K (float64, rows × n).
double alignment_numerator(const double* k_rows, index_t r0, index_t rows, index_t n, const Array<double>& y) {
  const index_t o = outputs_of(y);
  std::vector<double> ky(size_t(rows * o));
  detail::gemm(false, false, rows, o, n, 1.0, k_rows, n, y.data(), o, 0.0, ky.data(), o);
  double s = 0;
  for (index_t i = 0; i < rows; ++i)
    for (index_t c = 0; c < o; ++c) s += y[(r0 + i) * o + c] * ky[size_t(i * o + c)];
  return s;
}

double alignment_from(double numerator, double frobenius, const Array<double>& y) {
  const double denominator = frobenius * target_gram_norm(y);
  // A zero kernel or zero targets align with nothing; 0 rather than NaN.
  return denominator > 0 ? numerator / denominator : 0.0;
}

// λmax / λmin, or +inf when the kernel is not positive definite.
double condition_of(double lambda_max, double lambda_min) { return lambda_min > 0 ? lambda_max / lambda_min : kInf; }

void fill_from_eigenvalues(KernelSpectrum& s, const std::vector<double>& w) {
  s.lambda_min = w.front();
  s.lambda_max = w.back();
  s.positive_definite = s.lambda_min > 0;
  s.condition = condition_of(s.lambda_max, s.lambda_min);
  s.trace_over_lambda_max = s.lambda_max > 0 ? s.trace / s.lambda_max : 0.0;
  double positive_sum = 0;
  for (double v : w) positive_sum += v > 0 ? v : 0.0;
  double entropy = 0;
  if (positive_sum > 0)
    for (double v : w)
      if (v > 0) {
        const double p = v / positive_sum;
        entropy -= p * std::log(p);
      }
  s.effective_rank = positive_sum > 0 ? std::exp(entropy) : 0.0;
}

// ---------------------------------------------------------------------------------------------
// Lanczos operators: Spectra asks for `Scalar`, rows(), cols() and perform_op(x, y) = A·x.

// K·x from blocks of rows: each block (rows × n) is produced, multiplied and dropped, so at most one
// block of K is ever held.
class BlocksOp {
 public:
  using Scalar = double;
  BlocksOp(const KernelBlocks& k, index_t block_rows, int threads) : k_(k), n_(k.rows()), threads_(threads) {
    block_rows_ = block_rows > 0 ? block_rows : std::max<index_t>(1, (index_t(64) << 20) / (8 * std::max<index_t>(n_, 1)));
    block_rows_ = std::min(block_rows_, n_);
    cols_.resize(size_t(n_));
    for (index_t j = 0; j < n_; ++j) cols_[size_t(j)] = j;
    buffer_.resize(size_t(block_rows_ * n_));
  }
  Eigen::Index rows() const { return n_; }
  Eigen::Index cols() const { return n_; }
  void perform_op(const double* x, double* y) const {
    std::vector<index_t> ri;
    for (index_t r0 = 0; r0 < n_; r0 += block_rows_) {
      const index_t rows = std::min(block_rows_, n_ - r0);
      ri.resize(size_t(rows));
      for (index_t i = 0; i < rows; ++i) ri[size_t(i)] = r0 + i;
      k_.block(ri, cols_, buffer_.data(), threads_);
      detail::gemm(false, false, rows, 1, n_, 1.0, buffer_.data(), n_, x, 1, 0.0, y + r0, 1);
    }
    ++products_;
  }
  index_t products() const { return products_; }

 private:
  const KernelBlocks& k_;
  index_t n_, block_rows_ = 0;
  int threads_;
  std::vector<index_t> cols_;
  mutable std::vector<double> buffer_;
  mutable index_t products_ = 0;
};

template <class T>
class NtkOp {
 public:
  using Scalar = double;
  explicit NtkOp(const NtkOperator<T>& op) : op_(op), in_(size_t(op.dim())), out_(size_t(op.dim())) {}
  Eigen::Index rows() const { return op_.dim(); }
  Eigen::Index cols() const { return op_.dim(); }
  void perform_op(const double* x, double* y) const {
    std::transform(x, x + op_.dim(), in_.begin(), [](double v) { return static_cast<T>(v); });
    op_.apply(in_.data(), out_.data(), 1);
    std::transform(out_.begin(), out_.end(), y, [](T v) { return static_cast<double>(v); });
    ++products_;
  }
  index_t products() const { return products_; }

 private:
  const NtkOperator<T>& op_;
  mutable std::vector<T> in_, out_;
  mutable index_t products_ = 0;
};

template <class Op>
LanczosResult run_lanczos(Op& op, index_t n, const LanczosOptions& o, const std::string& what) {
  if (o.count < 1 || o.count >= n)
    throw InvalidArgument("Lanczos computes 1 to N - 1 = " + std::to_string(n - 1) + " eigenvalues of " + what +
                          ", asked for " + std::to_string(o.count) + "; compute all of them by LAPACK instead");
  if (o.max_iterations < 1 || !(o.tolerance > 0))
    throw InvalidArgument("Lanczos needs max_iterations >= 1 and a tolerance > 0");
  index_t ncv = o.ncv > 0 ? o.ncv : std::max<index_t>(2 * o.count + 1, 20);
  ncv = std::min(ncv, n);
  if (ncv <= o.count)
    throw InvalidArgument("the Lanczos basis size ncv = " + std::to_string(ncv) + " must exceed the count " +
                          std::to_string(o.count) + " and be at most N = " + std::to_string(n));
  ThreadScope threads(o.threads);
  Spectra::SymEigsSolver<Op> solver(op, Eigen::Index(o.count), Eigen::Index(ncv));
  solver.init();  // Spectra's fixed-seed start vector: the same answer every run
  const auto rule = o.which == LanczosOptions::largest ? Spectra::SortRule::LargestAlge : Spectra::SortRule::SmallestAlge;
  try {
    solver.compute(rule, Eigen::Index(o.max_iterations), o.tolerance, Spectra::SortRule::SmallestAlge);
  } catch (const std::exception& e) {
    // Spectra throws std::logic_error / std::invalid_argument from inside its factorization.
    throw NumericalError("Lanczos failed on " + what + ": " + e.what());
  }
  if (solver.info() != Spectra::CompInfo::Successful)
    throw NumericalError("Lanczos did not converge to the " + std::to_string(o.count) + " " +
                         (o.which == LanczosOptions::largest ? "largest" : "smallest") + " eigenvalues of " + what +
                         " in " + std::to_string(o.max_iterations) + " restarts (basis size ncv = " +
                         std::to_string(ncv) + "); raise the iterations or ncv" +
                         (o.which == LanczosOptions::smallest ? " (the smallest eigenvalues of a kernel cluster near "
                                                                "0 and converge slowly)"
                                                              : ""));
  LanczosResult r;
  const Eigen::VectorXd w = solver.eigenvalues();
  r.eigenvalues.assign(w.data(), w.data() + w.size());
  std::sort(r.eigenvalues.begin(), r.eigenvalues.end());
  r.iterations = index_t(solver.num_iterations());
  r.products = op.products();
  return r;
}

// ---------------------------------------------------------------------------------------------
// Comparisons

// A kernel as a matrix: (N, M) itself, or full (N, M, O, O) read as (N·O × M·O) with index (n, a).
struct KernelShape {
  index_t n = 0, m = 0, o = 1;
  bool full = false;
};

template <class T>
KernelShape kernel_shape(const Array<T>& k, const char* what) {
  if (k.ndim() == 2) return {k.dim(0), k.dim(1), 1, false};
  if (k.ndim() == 4 && k.dim(2) == k.dim(3)) return {k.dim(0), k.dim(1), k.dim(2), true};
  throw InvalidArgument(std::string(what) + " has shape " + shape_string(k.shape()) +
                        "; a kernel to compare is (N, M) or a full eNTK (N, M, O, O)");
}

// Eigenvalues (ascending) of a square kernel as a matrix, in float64.
template <class T>
std::vector<double> matrix_eigenvalues(const Array<T>& k, const KernelShape& s) {
  const index_t d = s.n * s.o;
  std::vector<double> a(size_t(d * d));
  if (!s.full) {
    for (index_t e = 0; e < k.size(); ++e) a[size_t(e)] = double(k[e]);
  } else {
    // (n, m, a, b) -> row n·O + a, column m·O + b.
    const index_t o = s.o;
    for (index_t n = 0; n < s.n; ++n)
      for (index_t m = 0; m < s.m; ++m)
        for (index_t i = 0; i < o; ++i)
          for (index_t j = 0; j < o; ++j)
            a[size_t((n * o + i) * d + m * o + j)] = double(k[((n * s.m + m) * o + i) * o + j]);
  }
  std::vector<double> w;
  detail::eigvalsh(a, d, w);
  return w;
}

// (N, M, O, O) -> (N·O, M·O) with index (n, a), as Array<T>.
template <class T>
Array<T> full_as_matrix(const Array<T>& k) {
  const index_t n = k.dim(0), m = k.dim(1), o = k.dim(2);
  Array<T> out(Shape{n * o, m * o});
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < m; ++j)
      for (index_t a = 0; a < o; ++a)
        for (index_t b = 0; b < o; ++b) out[(i * o + a) * (m * o) + j * o + b] = k[((i * m + j) * o + a) * o + b];
  return out;
}

// Peak resident memory of the process, for the report: VmHWM is reset by writing 5 to
// /proc/self/clear_refs (Linux 4.0+), so the growth over a call is what that call needed.
std::uint64_t proc_status_kib(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string k = std::string(key) + ":";
  while (std::getline(f, line))
    if (line.rfind(k, 0) == 0) return std::strtoull(line.c_str() + k.size(), nullptr, 10);
  return 0;
}

class PeakMemory {
 public:
  PeakMemory() {
    std::ofstream f("/proc/self/clear_refs");
    f << "5";
    f.flush();
    reset_ = bool(f);
    base_ = proc_status_kib("VmRSS");
  }
  std::uint64_t growth_bytes() const {
    if (!reset_) return 0;
    const std::uint64_t hwm = proc_status_kib("VmHWM");
    return hwm > base_ ? (hwm - base_) * 1024 : 0;
  }

 private:
  bool reset_ = false;
  std::uint64_t base_ = 0;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void score(const Array<double>& pred, const Array<double>& y, double& accuracy, double& mse) {
  const index_t m = y.dim(0), o = outputs_of(y);
  index_t correct = 0;
  double se = 0;
  for (index_t i = 0; i < m; ++i) {
    index_t best_p = 0, best_y = 0;
    for (index_t c = 0; c < o; ++c) {
      const double p = pred[i * o + c], t = y[i * o + c];
      se += (p - t) * (p - t);
      if (p > pred[i * o + best_p]) best_p = c;
      if (t > y[i * o + best_y]) best_y = c;
    }
    correct += best_p == best_y;
  }
  accuracy = m > 0 ? double(correct) / double(m) : 0.0;
  mse = m * o > 0 ? se / double(m * o) : 0.0;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

template <class T>
KernelSpectrum spectrum(const Array<T>& k, const Array<double>* y, const SpectrumOptions& options) {
  ThreadScope threads(options.threads);
  check_square(k, "the kernel");
  check_finite(k.data(), k.size(), "the kernel");
  const index_t n = k.dim(0);
  if (y) check_targets(*y, n);
  KernelSpectrum s;
  s.n = n;
  std::vector<double> a(size_t(n * n));
  double frob2 = 0;
  for (index_t e = 0; e < n * n; ++e) {
    a[size_t(e)] = double(k[e]);
    frob2 += a[size_t(e)] * a[size_t(e)];
  }
  for (index_t i = 0; i < n; ++i) s.trace += a[size_t(i * n + i)];
  s.frobenius = std::sqrt(frob2);
  if (y) s.alignment = alignment_from(alignment_numerator(a.data(), 0, n, n, *y), s.frobenius, *y);
  std::vector<double> w;
  detail::eigvalsh(a, n, w);  // destroys a
  fill_from_eigenvalues(s, w);
  if (options.keep_eigenvalues) s.eigenvalues = std::move(w);
  return s;
}

KernelSpectrum kernel_statistics(const KernelBlocks& k, const Array<double>* y, index_t block_rows, int threads) {
  if (!k.symmetric() || k.rows() != k.cols() || k.rows() == 0)
    throw InvalidArgument("the kernel must be square and symmetric, got " + k.describe());
  const index_t n = k.rows();
  if (y) check_targets(*y, n);
  ThreadScope scope(threads);
  const index_t b = std::min(n, block_rows > 0 ? block_rows : std::max<index_t>(1, (index_t(64) << 20) / (8 * n)));
  std::vector<index_t> cols(static_cast<size_t>(n)), ri;
  for (index_t j = 0; j < n; ++j) cols[size_t(j)] = j;
  std::vector<double> buf(size_t(b * n));
  KernelSpectrum s;
  s.n = n;
  double frob2 = 0, numerator = 0;
  for (index_t r0 = 0; r0 < n; r0 += b) {
    const index_t rows = std::min(b, n - r0);
    ri.resize(size_t(rows));
    for (index_t i = 0; i < rows; ++i) ri[size_t(i)] = r0 + i;
    k.block(ri, cols, buf.data(), threads);
    for (index_t e = 0; e < rows * n; ++e) frob2 += buf[size_t(e)] * buf[size_t(e)];
    for (index_t i = 0; i < rows; ++i) s.trace += buf[size_t(i * n + r0 + i)];
    if (y) numerator += alignment_numerator(buf.data(), r0, rows, n, *y);
  }
  s.frobenius = std::sqrt(frob2);
  if (y) s.alignment = alignment_from(numerator, s.frobenius, *y);
  return s;
}

template <class T>
double kernel_alignment(const Array<T>& k, const Array<double>& y) {
  check_square(k, "the kernel");
  check_finite(k.data(), k.size(), "the kernel");
  const index_t n = k.dim(0);
  check_targets(y, n);
  std::vector<double> a(size_t(n * n));
  double frob2 = 0;
  for (index_t e = 0; e < n * n; ++e) {
    a[size_t(e)] = double(k[e]);
    frob2 += a[size_t(e)] * a[size_t(e)];
  }
  return alignment_from(alignment_numerator(a.data(), 0, n, n, y), std::sqrt(frob2), y);
}

LanczosResult lanczos_eigenvalues(const KernelBlocks& k, const LanczosOptions& options) {
  if (!k.symmetric() || k.rows() != k.cols())
    throw InvalidArgument("Lanczos needs a square symmetric kernel, got " + k.describe());
  BlocksOp op(k, options.block_rows, options.threads);
  return run_lanczos(op, k.rows(), options, k.describe());
}

template <class T>
LanczosResult lanczos_eigenvalues(const NtkOperator<T>& op, const LanczosOptions& options) {
  NtkOp<T> wrapped(op);
  return run_lanczos(wrapped, op.dim(), options, "the eNTK operator (dimension N·O = " + std::to_string(op.dim()) + ")");
}

template <class T>
KernelComparison compare(const Array<T>& a, const Array<T>& b, const CompareOptions& options) {
  ThreadScope threads(options.threads);
  const KernelShape sa = kernel_shape(a, "the kernel A"), sb = kernel_shape(b, "the reference kernel B");
  KernelComparison c;
  c.a_shape = a.shape();
  c.b_shape = b.shape();
  const auto mismatch = [&](const std::string& why) {
    return InvalidArgument("cannot compare A " + shape_string(a.shape()) + " with B " + shape_string(b.shape()) +
                           ": " + why);
  };
  if (sa.n != sb.n || sa.m != sb.m) throw mismatch("they are kernels of different numbers of examples");
  if (sa.full && sb.full && sa.o != sb.o) throw mismatch("different numbers of outputs");
  check_finite(a.data(), a.size(), "the kernel A");
  check_finite(b.data(), b.size(), "the reference kernel B");
  c.kronecker = sa.full != sb.full;
  c.outputs = std::max(sa.o, sb.o);
  double diff2 = 0, a2 = 0, b2 = 0;
  if (!c.kronecker) {
    for (index_t e = 0; e < a.size(); ++e) {
      const double x = double(a[e]), y = double(b[e]), d = x - y;
      diff2 += d * d;
      a2 += x * x;
      b2 += y * y;
    }
  } else {
    // The 2-D side K is K ⊗ I_O: entry ((n, i), (m, j)) = K[n, m]·δ_ij against full[n, m, i, j].
    const bool a_small = !sa.full;
    const Array<T>& small = a_small ? a : b;
    const Array<T>& full = a_small ? b : a;
    const index_t o = c.outputs;
    double small2 = 0, full2 = 0;
    for (index_t p = 0; p < small.size(); ++p) {
      const double s = double(small[p]);
      small2 += s * s;
      const T* block = full.data() + p * o * o;
      for (index_t i = 0; i < o; ++i)
        for (index_t j = 0; j < o; ++j) {
          const double f = double(block[i * o + j]), d = (i == j ? s : 0.0) - f;
          diff2 += d * d;
          full2 += f * f;
        }
    }
    small2 *= double(o);
    a2 = a_small ? small2 : full2;
    b2 = a_small ? full2 : small2;
  }
  c.frobenius_a = std::sqrt(a2);
  c.frobenius_b = std::sqrt(b2);
  c.relative_frobenius = b2 > 0 ? std::sqrt(diff2 / b2) : (diff2 > 0 ? kInf : 0.0);
  if (options.spectra && sa.n == sa.m) {
    const std::vector<double> wa = matrix_eigenvalues(a, sa), wb = matrix_eigenvalues(b, sb);
    c.has_spectra = true;
    c.lambda_max_a = wa.back();
    c.lambda_min_a = wa.front();
    c.lambda_max_b = wb.back();
    c.lambda_min_b = wb.front();
    c.lambda_max_ratio = c.lambda_max_a / c.lambda_max_b;
    c.condition_a = condition_of(c.lambda_max_a, c.lambda_min_a);
    c.condition_b = condition_of(c.lambda_max_b, c.lambda_min_b);
    c.condition_ratio = c.condition_a / c.condition_b;  // inf/inf: NaN, "not defined"
  }
  return c;
}

template <class T>
PntkReport pntk_report(const Network& net, ThetaSpan<T> theta, const Array<T>& x_train,
                       const Array<double>& y_train, const Array<T>& x_test, const Array<double>& y_test,
                       const PntkReportOptions& options) {
  ThreadScope threads(options.threads);
  net.check_inputs(x_train, "the training inputs");
  net.check_inputs(x_test, "the test inputs");
  const index_t n = x_train.dim(0), m = x_test.dim(0), o = net.output_size();
  if (y_train.ndim() != 2 || y_train.dim(0) != n || y_train.dim(1) != o)
    throw InvalidArgument("the training targets must be (N, O) = (" + std::to_string(n) + ", " + std::to_string(o) +
                          "), got " + shape_string(y_train.shape()));
  if (y_test.ndim() != 2 || y_test.dim(0) != m || y_test.dim(1) != o)
    throw InvalidArgument("the test targets must be (M, O) = (" + std::to_string(m) + ", " + std::to_string(o) +
                          "), got " + shape_string(y_test.shape()));
  check_finite(y_train.data(), y_train.size(), "the training targets");
  check_finite(y_test.data(), y_test.size(), "the test targets");
  PntkReport r;
  r.n_train = n;
  r.n_test = m;
  r.outputs = o;
  r.num_params = net.num_params();
  r.ridge = options.ridge;

  EntkOptions eo;
  eo.method = options.method;
  eo.max_memory = options.max_memory;
  eo.threads = options.threads;
  auto timed_kernel = [&](EntkMode::Kind kind, const Array<T>* x2, KernelCost& cost) {
    eo.mode = EntkMode{kind, 0};
    const EntkPlan plan = plan_empirical_ntk(net, n, x2 ? m : n, !x2, eo, sizeof(T));
    if (kind == EntkMode::full && !x2) r.method = to_string(plan.method);
    cost.estimated_bytes = plan.output_bytes + plan.working_bytes;
    PeakMemory peak;
    const auto t0 = std::chrono::steady_clock::now();
    // Test-by-train: rows are the test examples, as `ntk regress --k-test` expects.
    Array<T> k = x2 ? empirical_ntk(net, theta, *x2, &x_train, eo) : empirical_ntk(net, theta, x_train, nullptr, eo);
    cost.seconds = seconds_since(t0);
    cost.measured_peak_bytes = peak.growth_bytes();
    cost.shape = k.shape();
    return k;
  };
  const Array<T> full_train = timed_kernel(EntkMode::full, nullptr, r.full_train);
  const Array<T> full_test = timed_kernel(EntkMode::full, &x_test, r.full_test);
  const Array<T> pntk_train = timed_kernel(EntkMode::pntk, nullptr, r.pntk_train);
  const Array<T> pntk_test = timed_kernel(EntkMode::pntk, &x_test, r.pntk_test);

  r.train = compare(pntk_train, full_train, CompareOptions{true, options.threads});
  r.test = compare(pntk_test, full_test, CompareOptions{false, options.threads});

  const RidgeOptions ro{options.ridge, true, options.threads};
  auto add_warning = [&](const std::string& which, const RidgeFit& fit) {
    if (!fit.warning.empty()) r.warnings += (r.warnings.empty() ? "" : "; ") + which + ": " + fit.warning;
  };
  {
    // Full: one (N·O × N·O) system, the targets flattened with index (n, a).
    const auto t0 = std::chrono::steady_clock::now();
    const Array<T> k = full_as_matrix(full_train), kt = full_as_matrix(full_test);
    const Array<double> y(Shape{n * o, 1}, std::vector<double>(y_train.data(), y_train.data() + y_train.size()));
    const RidgeFit fit = kernel_ridge(k, y, ro);
    Array<double> pred = kernel_ridge_predict(kt, fit.alpha, options.threads);
    r.solve_seconds_full = seconds_since(t0);
    pred.reshape(Shape{m, o});
    score(pred, y_test, r.accuracy_full, r.mse_full);
    add_warning("full eNTK", fit);
  }
  {
    const auto t0 = std::chrono::steady_clock::now();
    const RidgeFit fit = kernel_ridge(pntk_train, y_train, ro);
    const Array<double> pred = kernel_ridge_predict(pntk_test, fit.alpha, options.threads);
    r.solve_seconds_pntk = seconds_since(t0);
    score(pred, y_test, r.accuracy_pntk, r.mse_pntk);
    add_warning("pNTK", fit);
  }
  return r;
}

#define NTK_INSTANTIATE(T)                                                                                           \
  template KernelSpectrum spectrum<T>(const Array<T>&, const Array<double>*, const SpectrumOptions&);              \
  template double kernel_alignment<T>(const Array<T>&, const Array<double>&);                                       \
  template LanczosResult lanczos_eigenvalues<T>(const NtkOperator<T>&, const LanczosOptions&);                      \
  template KernelComparison compare<T>(const Array<T>&, const Array<T>&, const CompareOptions&);                     \
  template PntkReport pntk_report<T>(const Network&, ThetaSpan<T>, const Array<T>&, const Array<double>&, \
                                     const Array<T>&, const Array<double>&, const PntkReportOptions&);
NTK_INSTANTIATE(float)
NTK_INSTANTIATE(double)
#undef NTK_INSTANTIATE

}  // namespace ntk
