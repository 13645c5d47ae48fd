// The regression job: targets and class labels, the exact-kernel solver (kernel ridge as the t = ∞
// limit of gradient-descent dynamics, GP posterior covariance), metrics, outputs.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "jobs_detail.hpp"
#include "ntk/error.hpp"
#include "ntk/regress.hpp"
#include "ntk/solve.hpp"

namespace ntk {
namespace {

std::string name_of(const JobInput& in) {
  if (!in.label.empty()) return in.label;
  return in.array ? std::string("input array") : "'" + in.path + "'";
}

// The stored array of a file or a view, unconverted (IDX values never rescaled: labels and kernels
// are numbers already).
RawArray raw_of(const JobInput& in) {
  if (!in.array) return load_input(in.path, InputOptions{IdxScale::raw});
  RawArray r{in.array->dtype, in.array->shape, {}};
  const auto* bytes = static_cast<const std::byte*>(in.array->data);
  r.bytes.assign(bytes, bytes + numel(r.shape) * index_t(dtype_size(r.dtype)));
  return r;
}

bool is_float(DType d) { return d == DType::float32 || d == DType::float64; }

// A kernel as float64, (rows, cols) checked by the caller; non-finite values refused here, with
// the input's name (the solvers would refuse them too, but without saying which file).
Array<double> load_kernel(const JobInput& in) {
  const std::string name = name_of(in);
  RawArray raw = raw_of(in);
  if (raw.shape.size() != 2)
    throw InvalidArgument(name + " has shape " + shape_string(raw.shape) + "; a kernel is a matrix (rows, columns)");
  Array<double> k = raw.as<double>();
  if (index_t bad = first_non_finite(k); bad >= 0)
    throw InvalidArgument(name + " has a non-finite value (NaN or Inf) at row " + std::to_string(bad / k.dim(1)) +
                          ", column " + std::to_string(bad % k.dim(1)) + "; recompute the kernel");
  return k;
}

void check_rows(const Array<double>& k, index_t rows, index_t cols, const JobInput& in, const std::string& why) {
  if (k.dim(0) != rows || k.dim(1) != cols)
    throw InvalidArgument(name_of(in) + " is " + shape_string(k.shape()) + " but must be (" + std::to_string(rows) +
                          ", " + std::to_string(cols) + ")" + why);
}

double mse(const double* pred, const Array<double>& y) {
  double s = 0;
  for (index_t e = 0; e < y.size(); ++e) s += (pred[e] - y[e]) * (pred[e] - y[e]);
  return s / double(std::max<index_t>(y.size(), 1));
}

double accuracy(const double* pred, index_t rows, index_t o, const std::vector<std::int64_t>& labels) {
  index_t right = 0;
  for (index_t i = 0; i < rows; ++i) {
    const double* r = pred + i * o;
    right += std::int64_t(std::max_element(r, r + o) - r) == labels[size_t(i)];
  }
  return double(right) / double(std::max<index_t>(rows, 1));
}

// (T, R, O) -> (R, O) when there is one time.
Array<double> squeeze_time(Array<double> a, index_t times) {
  if (times != 1 || a.ndim() != 3) return a;
  Array<double> b(Shape{a.dim(1), a.dim(2)});
  std::copy(a.data(), a.data() + a.size(), b.data());
  return b;
}

// What a solver hands back: predictions at every time and how it got them.
struct SolveOutcome {
  Array<double> train, test;  // (T, N, O), (T, M, O)
  Array<double> covariance;   // (M, M) when asked
  double lambda = 0;
  bool cholesky = true;
  std::string warning;
};

// Train predictions are the in-sample outputs K_train (K_train + λI)⁻¹ ... of the model, i.e. the
// test formula applied to the training examples (neural-tangents' advice for regularized train
// predictions: pass k_test_train = k_train_train). Its own train outputs follow the flow of K + λI
// and reach the targets at t = ∞ whatever the ridge, which would report a train MSE of 0.
SolveOutcome solve_exact_kernel(const RegressJob& job, const Array<double>& k_train, const Array<double>* k_test,
                                const Array<double>& y, const PredictOptions& reg) {
  SolveOutcome s;
  const index_t n = k_train.dim(0), m = k_test ? k_test->dim(0) : 0, o = y.dim(1);
  GdMseOptions o_gd;
  static_cast<PredictOptions&>(o_gd) = reg;
  o_gd.learning_rate = job.learning_rate;
  if (job.covariance_path.empty() && !job.k_test_test && !job.nngp) {
    // One call for both: the test rows, then the train rows, against the one eigendecomposition.
    Array<double> both(Shape{m + n, n});
    if (k_test) std::copy(k_test->data(), k_test->data() + m * n, both.data());
    std::copy(k_train.data(), k_train.data() + n * n, both.data() + m * n);
    GdMsePredictions p = gradient_descent_mse(k_train, y, job.times, o_gd, &both);
    const index_t nt = index_t(job.times.size());
    s.train = Array<double>(Shape{nt, n, o});
    s.test = Array<double>(Shape{nt, m, o});
    for (index_t ti = 0; ti < nt; ++ti) {
      const double* src = p.test.data() + ti * (m + n) * o;
      std::copy(src, src + m * o, s.test.data() + ti * m * o);
      std::copy(src + m * o, src + (m + n) * o, s.train.data() + ti * n * o);
    }
    s.lambda = p.lambda;
    s.cholesky = p.cholesky;
    s.warning = std::move(p.warning);
    return s;
  }
  // GP inference: the mean is the t = ∞ prediction; the covariance needs the test-test kernel.
  GpKernels<double> nngp, ntk;
  Array<double> ktt, nngp_train, nngp_test;
  GpGet get = GpGet::nngp;
  if (job.nngp) {
    get = GpGet::ntk;
    ntk = {&k_train, k_test, nullptr};
    nngp_train = load_kernel(job.nngp->train);
    check_rows(nngp_train, n, n, job.nngp->train, " (the NNGP on the training examples of the train kernel)");
    nngp_test = load_kernel(job.nngp->test);
    check_rows(nngp_test, m, n, job.nngp->test, " (the NNGP between the test kernel's examples and the training ones)");
    ktt = load_kernel(job.nngp->test_test);
    check_rows(ktt, m, m, job.nngp->test_test, " (the NNGP among the test kernel's examples)");
    nngp = {&nngp_train, &nngp_test, &ktt};
  } else {
    ktt = load_kernel(*job.k_test_test);
    check_rows(ktt, m, m, *job.k_test_test, " (the kernel among the test kernel's examples)");
    nngp = {&k_train, k_test, &ktt};
  }
  GpPosterior post = gp_inference(get, y, nngp, ntk, reg);
  s.train = gradient_descent_mse(k_train, y, {kInfiniteTime}, o_gd, &k_train).test;  // the in-sample mean
  s.test = Array<double>(Shape{1, m, o});
  std::copy(post.mean.data(), post.mean.data() + post.mean.size(), s.test.data());
  s.covariance = std::move(post.covariance);
  s.lambda = post.lambda;
  s.cholesky = post.cholesky;
  s.warning = std::move(post.warning);
  return s;
}

}  // namespace

Targets load_targets(const JobInput& input) {
  const std::string name = name_of(input);
  // An IDX file is labels whatever its element type; load_input reads any file that is not .npy as IDX.
  const bool idx = !input.array && [&] {
    char head[6] = {};
    std::FILE* f = std::fopen(input.path.c_str(), "rb");
    if (!f) return false;
    const size_t got = std::fread(head, 1, sizeof head, f);
    std::fclose(f);
    return !(got == 6 && std::memcmp(head, "\x93NUMPY", 6) == 0);
  }();
  RawArray raw = raw_of(input);
  Targets t;
  if (numel(raw.shape) == 0 || raw.shape.empty() || raw.shape[0] == 0)
    throw InvalidArgument(name + " holds no targets (shape " + shape_string(raw.shape) + ")");
  if (!is_float(raw.dtype) || idx) {
    if (raw.shape.size() != 1)
      throw InvalidArgument(name + " is an integer array of shape " + shape_string(raw.shape) +
                            "; class labels are one dimension (N,), and multi-output targets must be a float array");
    const Array<double> v = raw.as<double>();
    t.is_labels = true;
    t.labels.resize(size_t(v.size()));
    for (index_t i = 0; i < v.size(); ++i) {
      if (!std::isfinite(v[i]) || v[i] != std::floor(v[i]) || v[i] < 0 || v[i] > 1e15)
        throw InvalidArgument(name + " has label " + std::to_string(v[i]) + " at index " + std::to_string(i) +
                              "; class labels must be integers >= 0");
      t.labels[size_t(i)] = std::int64_t(v[i]);
    }
    return t;
  }
  if (raw.shape.size() > 2)
    throw InvalidArgument(name + " has shape " + shape_string(raw.shape) + "; targets are (N,) or (N, O)");
  t.values = raw.as<double>();
  if (t.values.ndim() == 1) t.values.reshape(Shape{t.values.dim(0), 1});
  if (index_t bad = first_non_finite(t.values); bad >= 0)
    throw InvalidArgument(name + " has a non-finite target (NaN or Inf) at flat index " + std::to_string(bad));
  return t;
}

Array<double> one_hot(const std::vector<std::int64_t>& labels, index_t classes) {
  Array<double> y(Shape{index_t(labels.size()), classes});
  std::fill(y.data(), y.data() + y.size(), 0.0);
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= classes)
      throw InvalidArgument("label " + std::to_string(labels[i]) + " at index " + std::to_string(i) +
                            " is not one of the " + std::to_string(classes) + " classes 0.." +
                            std::to_string(classes - 1) + "; give a larger number of classes");
    y[index_t(i) * classes + labels[i]] = 1.0;
  }
  return y;
}

std::vector<std::int64_t> argmax_rows(const Array<double>& p) {
  const index_t rows = p.ndim() ? p.dim(0) : 0, o = rows ? p.size() / rows : 0;
  std::vector<std::int64_t> out(static_cast<size_t>(rows));
  for (index_t i = 0; i < rows; ++i) out[size_t(i)] = std::max_element(p.data() + i * o, p.data() + (i + 1) * o) - (p.data() + i * o);
  return out;
}

std::vector<double> default_ridge_grid() {
  std::vector<double> g{0.0};
  for (int k = -16; k <= 2; ++k) g.push_back(std::pow(10.0, k / 2.0));
  return g;
}

RegressResult run_regress(const RegressJob& job) {
  // Everything a user can get wrong is checked before the kernels are read.
  if (!(job.ridge >= 0) || !std::isfinite(job.ridge))
    throw InvalidArgument("the ridge must be a finite number >= 0 (or auto), got " + std::to_string(job.ridge));
  if (job.ridge_auto && job.ridge_absolute)
    throw InvalidArgument("an automatic ridge is chosen relative to the kernel's mean diagonal; drop the absolute ridge");
  if (!(job.learning_rate > 0) || !std::isfinite(job.learning_rate))
    throw InvalidArgument("the learning rate must be a finite number > 0, got " + std::to_string(job.learning_rate));
  if (job.times.empty()) throw InvalidArgument("give at least one time");
  for (double t : job.times)
    if (!(t >= 0)) throw InvalidArgument("times must be >= 0 or inf, got " + std::to_string(t));
  const bool gp = !job.covariance_path.empty() || job.k_test_test || job.nngp;
  if (gp) {
    if (!job.k_test) throw InvalidArgument("the posterior covariance is over test examples; give the test kernel");
    if (job.nngp && job.k_test_test)
      throw InvalidArgument("with the NNGP inputs (NTK posterior) the covariance uses the NNGP test-test kernel; drop "
                            "the test-test kernel of the NTK");
    if (!job.nngp && !job.k_test_test)
      throw InvalidArgument("the posterior covariance needs the test-test kernel (or the three NNGP kernels for the NTK posterior)");
    if (job.times.size() != 1 || !std::isinf(job.times[0]))
      throw InvalidArgument("the posterior covariance is that of t = inf; drop the finite times");
  }
  for (const std::string* p : {&job.output_path, &job.train_output_path, &job.covariance_path})
    if (!p->empty()) detail::check_output_path(*p);
  if (!job.output_path.empty() && !job.k_test)
    throw InvalidArgument("test predictions need the test kernel (test examples × training examples)");

  // The solver's inputs. Exact kernel; a features or Nyström solver is another branch here and
  // below, producing the same SolveOutcome.
  if (!job.k_train) throw InvalidArgument("give the train kernel");
  const Array<double> k_train = load_kernel(*job.k_train);
  if (k_train.dim(0) != k_train.dim(1) || k_train.dim(0) == 0)
    throw InvalidArgument(name_of(*job.k_train) + " is " + shape_string(k_train.shape()) +
                          "; the train kernel must be square (N, N), training examples by training examples");
  const index_t n = k_train.dim(0);
  std::optional<Array<double>> k_test;
  if (job.k_test) {
    k_test = load_kernel(*job.k_test);
    if (k_test->dim(1) != n)
      throw InvalidArgument(name_of(*job.k_test) + " is " + shape_string(k_test->shape()) + " but must have " +
                            std::to_string(n) + " columns, one per training example (test × train)");
  }
  const index_t m = k_test ? k_test->dim(0) : 0;

  // Targets.
  Targets train = load_targets(job.y_train);
  if (train.rows() != n)
    throw InvalidArgument(name_of(job.y_train) + " has " + std::to_string(train.rows()) + " targets but the train kernel " +
                          name_of(*job.k_train) + " has " + std::to_string(n) + " rows; give one target per training example");
  std::optional<Targets> test;
  if (job.y_test) {
    if (!job.k_test) throw InvalidArgument("test targets need the test kernel");
    test = load_targets(*job.y_test);
    if (test->rows() != m)
      throw InvalidArgument(name_of(*job.y_test) + " has " + std::to_string(test->rows()) + " targets but the test kernel " +
                            name_of(*job.k_test) + " has " + std::to_string(m) + " rows; give one per test example");
    if (test->is_labels != train.is_labels)
      throw InvalidArgument(name_of(*job.y_test) + (test->is_labels ? " holds class labels" : " holds float targets") +
                            " but " + name_of(job.y_train) + (train.is_labels ? " class labels" : " float targets") +
                            "; give both in the same form");
  }
  RegressResult r;
  Array<double> y, y_test;
  if (train.is_labels) {
    index_t classes = job.classes;
    if (classes == 0) {
      std::int64_t top = *std::max_element(train.labels.begin(), train.labels.end());
      if (test) top = std::max(top, *std::max_element(test->labels.begin(), test->labels.end()));
      classes = index_t(top) + 1;
    }
    y = detail::with_context(name_of(job.y_train) + ": ", [&] { return one_hot(train.labels, classes); });
    if (test) y_test = detail::with_context(name_of(*job.y_test) + ": ", [&] { return one_hot(test->labels, classes); });
    r.classes = classes;
  } else {
    if (job.classes) throw InvalidArgument("a number of classes is for class labels, and the targets are floats");
    y = std::move(train.values);
    if (test) {
      if (test->values.dim(1) != y.dim(1))
        throw InvalidArgument(name_of(*job.y_test) + " has " + std::to_string(test->values.dim(1)) + " outputs but " +
                              name_of(job.y_train) + " has " + std::to_string(y.dim(1)));
      y_test = std::move(test->values);
    }
  }
  const index_t o = y.dim(1);
  r.n_train = n;
  r.n_test = m;
  r.outputs = o;

  // The regularizer.
  PredictOptions reg;
  reg.threads = job.threads;
  reg.diag_reg = job.ridge;
  reg.diag_reg_absolute_scale = job.ridge_absolute;
  if (job.ridge_auto) {
    const index_t v = job.validation ? job.validation : std::max<index_t>(1, n / 10);
    if (n < 2 || v >= n)
      throw InvalidArgument("choosing the ridge holds out " + std::to_string(v) + " of the " + std::to_string(n) +
                            " training examples; give a smaller validation split or a fixed ridge");
    r.selection = select_ridge(k_train, y, v, job.ridge_grid.empty() ? default_ridge_grid() : job.ridge_grid, job.threads);
    r.validation = v;
    reg.diag_reg = r.selection->best_ridge;
  }
  r.ridge = reg.diag_reg;
  r.ridge_absolute = reg.diag_reg_absolute_scale;

  SolveOutcome s = solve_exact_kernel(job, k_train, k_test ? &*k_test : nullptr, y, reg);
  r.solver = s.cholesky ? "cholesky" : "eigh";
  r.lambda = s.lambda;
  r.warning = std::move(s.warning);

  // Metrics per time.
  const index_t nt = index_t(gp ? 1 : job.times.size());
  for (index_t ti = 0; ti < nt; ++ti) {
    RegressMetrics mt;
    mt.time = gp ? kInfiniteTime : job.times[size_t(ti)];
    const double* tr = s.train.data() + ti * n * o;
    mt.train_mse = mse(tr, y);
    if (train.is_labels) mt.train_accuracy = accuracy(tr, n, o, train.labels);
    if (test) {
      const double* te = s.test.data() + ti * m * o;
      mt.test_mse = mse(te, y_test);
      if (test->is_labels) mt.test_accuracy = accuracy(te, m, o, test->labels);
    }
    r.metrics.push_back(mt);
  }

  r.train_predictions = squeeze_time(std::move(s.train), nt);
  if (k_test) r.test_predictions = squeeze_time(std::move(s.test), nt);
  r.covariance = std::move(s.covariance);
  // Written last, each atomically, so a failure above leaves no file.
  if (!job.output_path.empty()) write_npy(job.output_path, r.test_predictions);
  if (!job.train_output_path.empty()) write_npy(job.train_output_path, r.train_predictions);
  if (!job.covariance_path.empty()) write_npy(job.covariance_path, r.covariance);
  return r;
}

}  // namespace ntk
