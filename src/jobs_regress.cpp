// The regression job: targets and class labels, the exact-kernel solver (kernel ridge as the t = ∞
// limit of gradient-descent dynamics, GP posterior covariance), metrics, outputs.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <sstream>
#include <memory>
#include <utility>
#include <variant>

#include "blas.hpp"
#include "checkpoint.hpp"
#include "io_detail.hpp"
#include "jobs_detail.hpp"
#include "ntk/error.hpp"
#include "ntk/kernel_block.hpp"
#include "ntk/nystrom.hpp"
#include "ntk/parallel.hpp"
#include "ntk/regress.hpp"
#include "ntk/solve.hpp"

namespace ntk {
namespace {

using detail::input_name;
using detail::is_float;
using detail::raw_input;

// A kernel as float64, (rows, cols) checked by the caller; non-finite values refused here, with
// the input's name (the solvers would refuse them too, but without saying which file).
Array<double> load_kernel(const JobInput& in) {
  const std::string name = input_name(in);
  RawArray raw = raw_input(in);
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
    throw InvalidArgument(input_name(in) + " is " + shape_string(k.shape()) + " but must be (" + std::to_string(rows) +
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
  if (times == 1 && a.ndim() == 3) a.reshape(Shape{a.dim(1), a.dim(2)});
  return a;
}

// What a solver hands back: predictions at every time and how it got them.
struct SolveOutcome {
  Array<double> train, test;  // (T, N, O), (T, M, O)
  Array<double> covariance;   // (M, M) when asked
  double lambda = 0;
  bool cholesky = true;
  index_t centers = 0, iterations = 0;  // Nyström
  bool kernel_cached = false;
  std::string warning;
  std::string resumed_at;
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
  // The in-sample mean from the posterior's own solve: K (K + λI)⁻¹ y.
  s.train = Array<double>(Shape{1, n, o});
  detail::gemm(false, false, n, o, n, 1.0, k_train.data(), n, post.alpha.data(), o, 0.0, s.train.data(), o);
  s.test = Array<double>(Shape{1, m, o});
  std::copy(post.mean.data(), post.mean.data() + post.mean.size(), s.test.data());
  s.covariance = std::move(post.covariance);
  s.lambda = post.lambda;
  s.cholesky = post.cholesky;
  s.warning = std::move(post.warning);
  return s;
}


// ---------------------------------------------------------------------------------------------
// Kernels read block by block: a network's, or kernel files memory-mapped, for Nyström (and a
// network's kernel formed whole for the exact solver).

// How a budget is split for Nyström: what is already resident (the inputs) and the solver's
// matrices (K_MM, its factors, the CG state) first; then K_nM whole, in float64 or else in float32
// (always float32 for a kernel computed from float32 values, such as an eNTK of float32 gradients:
// its entries are only that accurate, and K_nM stays a Gram matrix whatever its rounding, so the
// solved system stays positive definite), if that leaves the kernel at
// least min(a quarter of the rest, 512 MiB) of working memory per block; else K_nM in blocks,
// recomputed every iteration.
struct NystromMemory {
  std::uint64_t solver_budget = 0, block_budget = 0;  // 0: no limit
  bool cache_float32 = false;
};

NystromMemory nystrom_memory(const RegressJob& job, index_t n, index_t o, std::uint64_t resident, bool kernel_float32) {
  NystromMemory mem;
  mem.cache_float32 = kernel_float32;
  const std::uint64_t budget = job.max_memory;
  if (!budget) return mem;
  const index_t centers = std::min(job.centers, n);
  // The program itself, targets and predictions: what no estimate below counts.
  const std::uint64_t overhead = std::max<std::uint64_t>(budget / 64, std::uint64_t{64} << 20);
  const std::uint64_t fixed = nystrom_fixed_bytes(n, centers, o) + resident + overhead;
  if (fixed >= budget)
    throw MemoryBudgetError("Nyström with " + std::to_string(centers) + " centers needs " + format_bytes(fixed) +
                            " for the inputs, K_MM and its preconditioner alone, more than --max-memory " +
                            format_bytes(budget) + "; use fewer centers or raise --max-memory");
  const std::uint64_t rest = budget - fixed, nm = std::uint64_t(n) * std::uint64_t(centers);
  const std::uint64_t reserve = std::min<std::uint64_t>(rest / 4, std::uint64_t{512} << 20);
  // The float32 cache converts a block of rows (the kernel's own row block, at most an eighth of
  // K_nM in float64) back to float64 for each product.
  const std::uint64_t knm64 = 8 * nm, knm32 = 4 * nm + 8 * nm / 8;
  if (!kernel_float32 && knm64 + reserve <= rest) {
    mem.block_budget = rest - knm64;
  } else if (knm32 + reserve <= rest) {
    mem.cache_float32 = true;
    mem.block_budget = rest - knm32;
  } else {
    mem.block_budget = rest / 2;
  }
  mem.solver_budget = budget - resident - overhead - mem.block_budget;
  return mem;
}

// What a network kernel's blocks borrow, kept at a stable address for as long as they live.
template <class T>
struct NetworkData {
  using value_type = T;
  std::optional<Network> net;
  detail::ResolvedParams<T> theta;
  Array<T> x_train;
  std::optional<Array<T>> x_test;
};

struct BlockSource {
  std::variant<std::monostate, std::unique_ptr<NetworkData<float>>, std::unique_ptr<NetworkData<double>>> owner;
  std::vector<std::unique_ptr<Array<double>>> arrays;  // kernels given in memory
  std::unique_ptr<KernelBlocks> train, test;
  // A network's kernel: its blocks recompute the column side per call, so few, large row blocks.
  bool network() const { return owner.index() != 0; }
  NystromMemory memory;  // how the budget was split (Nyström)
};

// The split of the budget for n training examples, given the bytes already resident (the inputs)
// and whether the kernel is computed in float32.
using BlockBudget = std::function<NystromMemory(index_t n, std::uint64_t resident, bool kernel_float32)>;

template <class T>
void open_network_blocks(const NetworkKernel& nk, detail::LoadedInput& x_in, int threads, const BlockBudget& budget,
                         BlockSource& src) {
  auto d = std::make_unique<NetworkData<T>>();
  d->x_train = x_in.take<T>();
  d->net.emplace(detail::make_network(nk.net, drop_first(d->x_train.shape()), x_in.name()));
  d->net->check_inputs(d->x_train, x_in.name().c_str());
  if (nk.x_test) {
    detail::LoadedInput t_in(*nk.x_test, nk.input);
    d->x_test = t_in.take<T>();
    d->net->check_inputs(*d->x_test, t_in.name().c_str());
  }
  const Array<T>* x_test = d->x_test ? &*d->x_test : nullptr;
  const std::uint64_t resident = std::uint64_t(d->x_train.size() + (x_test ? x_test->size() : 0)) * sizeof(T);
  src.memory = budget(d->x_train.dim(0), resident, nk.empirical && sizeof(T) == 4);
  const std::uint64_t block_budget = src.memory.block_budget;
  if (nk.empirical) {
    d->theta = detail::resolve_params<T>(*d->net, nk.params, threads);
    EntkOptions o;
    o.mode = nk.mode;
    o.threads = threads;
    o.max_memory = block_budget;
    src.train = empirical_kernel_blocks(*d->net, d->theta.values, d->x_train, nullptr, o);
    if (x_test) src.test = empirical_kernel_blocks(*d->net, d->theta.values, *x_test, &d->x_train, o);
  } else {
    KernelOptions o;
    o.get = nk.get;
    o.threads = threads;
    o.max_memory = block_budget;
    src.train = infinite_kernel_blocks(*d->net, d->x_train, nullptr, o);
    if (x_test) src.test = infinite_kernel_blocks(*d->net, *x_test, &d->x_train, o);
  }
  src.owner = std::move(d);
}

BlockSource open_blocks(const RegressJob& job, const BlockBudget& block_budget) {
  BlockSource src;
  if (job.network) {
    const NetworkKernel& nk = *job.network;
    detail::LoadedInput x_in(nk.x_train, nk.input);
    const bool f64 = nk.empirical ? detail::computes_in_float64(nk.dtype, x_in.dtype())
                                  : !nk.dtype || *nk.dtype == DType::float64;
    if (f64)
      open_network_blocks<double>(nk, x_in, job.threads, block_budget, src);
    else
      open_network_blocks<float>(nk, x_in, job.threads, block_budget, src);
    return src;
  }
  auto open = [&](const JobInput& in, bool symmetric) {
    if (!in.array) return detail::with_context(input_name(in) + ": ", [&] { return npy_kernel_blocks(in.path, symmetric); });
    src.arrays.push_back(std::make_unique<Array<double>>(load_kernel(in)));
    return array_kernel_blocks(*src.arrays.back(), symmetric);
  };
  src.train = open(*job.k_train, true);
  if (job.k_test) src.test = open(*job.k_test, false);
  std::uint64_t resident = 0;
  for (const auto& a : src.arrays) resident += std::uint64_t(a->size()) * 8;
  src.memory = block_budget(src.train->rows(), resident, false);
  return src;
}

// The whole (rows, cols) kernel of a block source, for the exact solver.
Array<double> whole(const KernelBlocks& k, int threads) {
  std::vector<index_t> ri(static_cast<size_t>(k.rows())), ci(static_cast<size_t>(k.cols()));
  std::iota(ri.begin(), ri.end(), index_t{0});
  std::iota(ci.begin(), ci.end(), index_t{0});
  Array<double> out(Shape{k.rows(), k.cols()});
  k.block(ri, ci, out.data(), threads);
  return out;
}

// What a solver's state belongs to: every input's content (kernel and feature files hashed, a
// network's description, parameters and inputs), the targets as solved, and every option the
// solve's bytes depend on (the budget decides K_nM's caching and its row blocks).
detail::JobIdentity regress_identity(const RegressJob& job, const Array<double>& y, const BlockSource& src,
                                     const RegressResult& r) {
  auto input = [](const JobInput& in) {
    if (!in.array) return "file " + detail::file_identity(in.path);
    const ArrayView& v = *in.array;
    return "array " + shape_string(v.shape) + " " + dtype_name(v.dtype) + " " +
           detail::content_hash(v.data, std::size_t(numel(v.shape)) * dtype_size(v.dtype));
  };
  detail::JobIdentity id{{"solver", job.f_train ? "ridge on features" : "Nystrom"}};
  if (job.f_train) id.emplace_back("f_train", input(*job.f_train));
  if (job.f_test) id.emplace_back("f_test", input(*job.f_test));
  if (job.k_train) id.emplace_back("k_train", input(*job.k_train));
  if (job.k_test) id.emplace_back("k_test", input(*job.k_test));
  std::visit(
      [&](const auto& d) {
        if constexpr (!std::is_same_v<std::decay_t<decltype(d)>, std::monostate>) {
          const NetworkKernel& nk = *job.network;
          const std::string kernel = nk.empirical ? "empirical, mode " + to_string(nk.mode)
                                                  : std::string("infinite width, ") + (nk.get == KernelOptions::ntk ? "ntk" : "nngp");
          using T = typename std::decay_t<decltype(*d)>::value_type;
          id.emplace_back("network", d->net->describe() + " on " + shape_string(d->net->input_shape()));
          id.emplace_back("kernel", kernel + ", " + dtype_name(dtype_of<T>()));
          if (nk.empirical)
            id.emplace_back("parameters", detail::content_hash(d->theta.values.data(), d->theta.values.size() * sizeof(T)));
          id.emplace_back("x_train", detail::array_identity(d->x_train));
          if (d->x_test) id.emplace_back("x_test", detail::array_identity(*d->x_test));
        }
      },
      src.owner);
  id.emplace_back("targets", detail::array_identity(y));
  std::ostringstream o;
  o.precision(17);
  o << "ridge " << job.ridge << (job.ridge_absolute ? " absolute" : " relative") << ", centers " << job.centers
    << ", center seed " << job.center_seed
    << ", center indices " << detail::content_hash(job.center_indices.data(), job.center_indices.size() * sizeof(index_t))
    << ", max iterations " << job.max_iterations << ", tolerance "
    << job.tolerance << ", max memory " << job.max_memory << ", batch rows " << job.batch_rows;
  if (r.selection) {
    o << ", validation " << r.validation << ", grid";
    for (const double g : r.selection->ridges) o << " " << g;
  }
  id.emplace_back("options", o.str());
  return id;
}

// Nyström on the block source: the centers' columns of the train kernel (cached when the budget
// allows) and of the test kernel.
SolveOutcome solve_nystrom(const RegressJob& job, const Array<double>& y, const BlockSource& src,
                           SolverCheckpoint* checkpoint) {
  const NystromMemory& mem = src.memory;
  const index_t n = src.train->rows(), m = src.test ? src.test->rows() : 0, o = y.dim(1);
  const index_t centers = std::min(job.centers, n);
  NystromOptions opt;
  opt.centers = job.centers;
  opt.seed = job.center_seed;
  opt.center_indices = job.center_indices;
  opt.max_iterations = job.max_iterations;
  opt.tolerance = job.tolerance;
  opt.ridge = job.ridge;
  opt.relative = !job.ridge_absolute;
  opt.max_memory = mem.solver_budget;
  opt.cache_float32 = mem.cache_float32;
  opt.threads = job.threads;
  opt.train_predictions = true;
  opt.test = src.test.get();
  opt.checkpoint = checkpoint;
  if (job.progress) opt.progress = [&](index_t it, index_t total, double) { job.progress(it, total); };
  index_t row_block = 0;
  if (src.network()) {
    // Every call recomputes the centers' side: blocks of an eighth of the rows, as memory allows
    // (the block's values in the compute type beside it).
    row_block = std::max<index_t>(1, (n + 7) / 8);
    if (mem.block_budget)
      row_block = std::clamp<index_t>(index_t(mem.block_budget / 4 / (8 * std::uint64_t(centers))), 1, row_block);
    opt.row_block = row_block;
  }
  SolveOutcome s;
  NystromFit fit;
  try {
    fit = nystrom_ridge(*src.train, y, opt);
    s.test = std::move(fit.test_predictions);
  } catch (const MemoryBudgetError& e) {
    if (!src.network() || !mem.block_budget) throw;
    // The kernel names --max-memory for the share it was given; say how that share came about.
    throw MemoryBudgetError("--max-memory " + format_bytes(job.max_memory) + " leaves " + format_bytes(mem.block_budget) +
                            " per kernel block beside Nyström's matrices, and " + e.what());
  }
  s.train = std::move(fit.train_predictions);
  s.train.reshape(Shape{1, n, o});
  if (src.test) s.test.reshape(Shape{1, m, o});
  s.lambda = fit.lambda;
  s.iterations = fit.iterations;
  s.centers = index_t(fit.centers.size());
  s.kernel_cached = fit.knm_cached;
  s.resumed_at = std::move(fit.resumed_at);
  for (const std::string& w : fit.warnings) s.warning += (s.warning.empty() ? "" : "; ") + w;
  return s;
}

// The exact solver holds the train kernel in float64 and a factor (three N × N for finite times:
// eigenvectors and the joined kernels), refused before any kernel is read or formed when that
// exceeds the budget.
void check_exact_memory(const RegressJob& job, index_t n, index_t m) {
  if (!job.max_memory) return;
  const bool finite_time = std::any_of(job.times.begin(), job.times.end(), [](double t) { return std::isfinite(t); });
  const std::uint64_t nn = 8 * std::uint64_t(n) * std::uint64_t(n);
  const std::uint64_t need = nn * (finite_time ? 4 : 2) + 8 * std::uint64_t(m) * std::uint64_t(n) * (finite_time ? 2 : 1);
  if (need > job.max_memory)
    throw MemoryBudgetError("the exact solve of N = " + std::to_string(n) + " training examples needs about " +
                            format_bytes(need) + " but --max-memory is " + format_bytes(job.max_memory) +
                            "; use Nyström (--centers M) or raise --max-memory");
}

// Ridge on features: W = (FᵀF + λI)⁻¹ FᵀY, F read from its file in row batches.
// selection: with --ridge auto, its candidates in, the validation MSEs and the choice out.
SolveOutcome solve_features(const RegressJob& job, const Array<double>& y, index_t n, index_t m, RidgeSelection* selection,
                            index_t validation, SolverCheckpoint* checkpoint) {
  FeatureRidgeOptions opt;
  opt.checkpoint = checkpoint;
  opt.batch_rows = job.batch_rows;
  opt.ridge = job.ridge;
  opt.relative = !job.ridge_absolute;
  opt.threads = job.threads;
  if (selection) {
    opt.ridge_grid = selection->ridges;
    opt.validation = validation;
  }
  // Files are read in row batches through a memory map, for the fit and the predictions alike;
  // arrays in memory are converted once. The widths were checked against each other already.
  std::optional<Array<double>> f_train;
  if (job.f_train->array) f_train = load_kernel(*job.f_train);
  const FeatureRidgeFit fit = detail::with_context(input_name(*job.f_train) + ": ", [&] {
    return f_train ? feature_ridge(*f_train, y, opt) : feature_ridge(job.f_train->path, y, opt);
  });
  auto predict = [&](const JobInput& in, const std::optional<Array<double>>& loaded) {
    return detail::with_context(input_name(in) + ": ", [&] {
      if (loaded) return feature_ridge_predict(*loaded, fit.weights, job.threads);
      if (in.array) return feature_ridge_predict(load_kernel(in), fit.weights, job.threads);
      return feature_ridge_predict(in.path, fit.weights, job.threads);
    });
  };
  const index_t o = y.dim(1);
  SolveOutcome s;
  s.train = predict(*job.f_train, f_train);
  s.train.reshape(Shape{1, n, o});
  if (job.f_test) {
    s.test = predict(*job.f_test, std::nullopt);
    s.test.reshape(Shape{1, m, o});
  }
  s.lambda = fit.lambda;
  s.cholesky = fit.cholesky;
  s.warning = fit.warning;
  s.resumed_at = fit.resumed_at;
  if (selection) {
    selection->validation_mse = fit.validation_mse;
    selection->best_ridge = fit.chosen_ridge;
  }
  return s;
}

// (rows, cols) of a 2-D .npy (or an array in memory) without reading its data.
std::pair<index_t, index_t> matrix_shape(const JobInput& in) {
  Shape shape;
  if (in.array) {
    shape = in.array->shape;
  } else {
    shape = detail::with_context(input_name(in) + ": ", [&] { return detail::MappedNpyReader(in.path).shape(); });
  }
  if (shape.size() != 2)
    throw InvalidArgument(input_name(in) + " has shape " + shape_string(shape) + "; expected a matrix (examples, features)");
  return {shape[0], shape[1]};
}

}  // namespace

Targets load_targets(const JobInput& input) {
  const std::string name = input_name(input);
  // An IDX file is labels whatever its element type; load_input reads any file that is not .npy as IDX.
  const bool idx = !input.array && [&] {
    char head[6] = {};
    std::FILE* f = std::fopen(input.path.c_str(), "rb");
    if (!f) return false;
    const size_t got = std::fread(head, 1, sizeof head, f);
    std::fclose(f);
    return !(got == 6 && std::memcmp(head, "\x93NUMPY", 6) == 0);
  }();
  RawArray raw = raw_input(input);
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

Array<double> targets_matrix(const JobInput& input, index_t classes) {
  Targets t = load_targets(input);
  if (!t.is_labels) return std::move(t.values);
  if (classes == 0) classes = index_t(*std::max_element(t.labels.begin(), t.labels.end())) + 1;
  return detail::with_context(input_name(input) + ": ", [&] { return one_hot(t.labels, classes); });
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

  // Targets, checked against the solver's examples once those are known.
  Targets train = load_targets(job.y_train);
  std::optional<Targets> test;
  if (job.y_test) {
    test = load_targets(*job.y_test);
    if (test->is_labels != train.is_labels)
      throw InvalidArgument(input_name(*job.y_test) + (test->is_labels ? " holds class labels" : " holds float targets") +
                            " but " + input_name(job.y_train) + (train.is_labels ? " class labels" : " float targets") +
                            "; give both in the same form");
  }
  const index_t train_rows = train.rows(), test_rows = test ? test->rows() : 0;
  RegressResult r;
  Array<double> y, y_test;
  if (train.is_labels) {
    index_t classes = job.classes;
    if (classes == 0) {
      std::int64_t top = *std::max_element(train.labels.begin(), train.labels.end());
      if (test) top = std::max(top, *std::max_element(test->labels.begin(), test->labels.end()));
      classes = index_t(top) + 1;
    }
    y = detail::with_context(input_name(job.y_train) + ": ", [&] { return one_hot(train.labels, classes); });
    if (test) y_test = detail::with_context(input_name(*job.y_test) + ": ", [&] { return one_hot(test->labels, classes); });
    r.classes = classes;
  } else {
    if (job.classes) throw InvalidArgument("a number of classes is for class labels, and the targets are floats");
    y = std::move(train.values);
    if (test) {
      if (test->values.dim(1) != y.dim(1))
        throw InvalidArgument(input_name(*job.y_test) + " has " + std::to_string(test->values.dim(1)) + " outputs but " +
                              input_name(job.y_train) + " has " + std::to_string(y.dim(1)));
      y_test = std::move(test->values);
    }
  }

  // The solver's inputs: exactly one source; features and Nyström give the converged solution at a
  // fixed ridge only.
  const int sources = int(job.k_train.has_value()) + int(job.network.has_value()) + int(job.f_train.has_value());
  if (sources != 1)
    throw InvalidArgument(sources ? "give one of: the train kernel, a network with its inputs, or features"
                                  : "give the train kernel, a network with its inputs, or features");
  if (job.k_test && !job.k_train) throw InvalidArgument("the test kernel goes with the train kernel");
  if (job.f_test && !job.f_train) throw InvalidArgument("the test features go with the training features");
  if (job.centers < 0) throw InvalidArgument("the number of Nyström centers must be >= 1, got " + std::to_string(job.centers));
  if (!job.center_indices.empty() && index_t(job.center_indices.size()) != job.centers)
    throw InvalidArgument("give as many center indices as centers (" + std::to_string(job.centers) + "), got " +
                          std::to_string(job.center_indices.size()));
  if (job.batch_rows < 0) throw InvalidArgument("the batch rows must be >= 1 (0: automatic)");
  if (job.batch_rows && !job.f_train) throw InvalidArgument("batch rows are for ridge on features (--f-train)");
  if (job.f_train && job.centers)
    throw InvalidArgument("Nyström centers are for kernels; features are solved exactly through FᵀF (drop the centers)");
  const bool iterative = job.f_train || job.centers > 0;
  const char* solver_name = job.f_train ? "ridge regression on features" : "Nyström";
  if (iterative && gp) throw InvalidArgument(std::string(solver_name) + " gives no posterior covariance; solve the kernel exactly");
  if (job.centers > 0 && job.ridge_auto)
    throw InvalidArgument(std::string(solver_name) + " takes a fixed ridge; choose it with an exact solve on a subset");
  if (iterative && (job.times.size() != 1 || !std::isinf(job.times[0])))
    throw InvalidArgument(std::string(solver_name) + " gives the converged solution (t = inf) only; drop the finite times");
  const bool has_test = job.k_test || job.f_test || (job.network && job.network->x_test);
  if (!job.output_path.empty() && !has_test)
    throw InvalidArgument("test predictions need the test examples (the test kernel, test features or test inputs)");

  index_t n = 0, m = 0;
  std::string source;  // how messages name the training side
  std::optional<Array<double>> k_train, k_test;
  BlockSource blocks;
  if (job.k_train && !job.centers) {
    if (job.max_memory)  // refused from the headers, before the kernels are read
      check_exact_memory(job, matrix_shape(*job.k_train).first, job.k_test ? matrix_shape(*job.k_test).first : 0);
    k_train = load_kernel(*job.k_train);
    if (k_train->dim(0) != k_train->dim(1) || k_train->dim(0) == 0)
      throw InvalidArgument(input_name(*job.k_train) + " is " + shape_string(k_train->shape()) +
                            "; the train kernel must be square (N, N), training examples by training examples");
    n = k_train->dim(0);
    if (job.k_test) {
      k_test = load_kernel(*job.k_test);
      if (k_test->dim(1) != n)
        throw InvalidArgument(input_name(*job.k_test) + " is " + shape_string(k_test->shape()) + " but must have " +
                              std::to_string(n) + " columns, one per training example (test × train)");
      m = k_test->dim(0);
    }
    source = "the train kernel " + input_name(*job.k_train);
  } else if (job.f_train) {
    const auto [rows, width] = matrix_shape(*job.f_train);
    n = rows;
    if (job.f_test) {
      const auto [test_rows, test_width] = matrix_shape(*job.f_test);
      if (test_width != width)
        throw InvalidArgument(input_name(*job.f_test) + " has " + std::to_string(test_width) + " features per example but " +
                              input_name(*job.f_train) + " has " + std::to_string(width) +
                              "; compute both with the same feature map");
      m = test_rows;
    }
    source = "the training features " + input_name(*job.f_train);
  } else {
    // Block by block: memory-mapped kernel files or a network's kernel.
    const index_t o_guess = y.dim(1);
    blocks = open_blocks(job, [&](index_t rows, std::uint64_t resident, bool kernel_float32) {
      return job.centers ? nystrom_memory(job, rows, o_guess, resident, kernel_float32) : NystromMemory{};
    });
    n = blocks.train->rows();
    if (n == 0 || blocks.train->cols() != n)
      throw InvalidArgument("the " + blocks.train->describe() + " must be square (N, N) with N > 0");
    if (blocks.test) {
      if (blocks.test->cols() != n)
        throw InvalidArgument("the " + blocks.test->describe() + " must have " + std::to_string(n) +
                              " columns, one per training example (test × train)");
      m = blocks.test->rows();
    }
    source = job.network ? "the training inputs " + input_name(job.network->x_train) : "the train kernel " + input_name(*job.k_train);
    if (!job.centers) {  // a network's kernel, formed whole for the exact solver
      check_exact_memory(job, n, m);
      k_train = whole(*blocks.train, job.threads);
      if (blocks.test) k_test = whole(*blocks.test, job.threads);
    }
  }
  if (train_rows != n)
    throw InvalidArgument(input_name(job.y_train) + " has " + std::to_string(train_rows) + " targets but " + source +
                          " has " + std::to_string(n) + " rows; give one target per training example");
  if (test && !has_test) throw InvalidArgument("test targets need the test examples (the test kernel, test features or test inputs)");
  if (test && test_rows != m)
    throw InvalidArgument(input_name(*job.y_test) + " has " + std::to_string(test_rows) + " targets but there are " +
                          std::to_string(m) + " test examples; give one per test example");
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
    const std::vector<double> grid = job.ridge_grid.empty() ? default_ridge_grid() : job.ridge_grid;
    r.validation = v;
    if (job.f_train) {  // chosen inside the features' solve, which sees FᵀF
      r.selection = RidgeSelection{grid, {}, 0.0};
    } else {
      r.selection = select_ridge(*k_train, y, v, grid, job.threads);
      reg.diag_reg = r.selection->best_ridge;
    }
  }

  // The iterative solvers keep their state beside the first output, to resume from.
  std::unique_ptr<detail::StateCheckpoint> state;
  const std::string& first_output = job.output_path.empty() ? job.train_output_path : job.output_path;
  if (job.resume && (!iterative || first_output.empty()))
    throw InvalidArgument(iterative ? "--resume continues from the solver state kept beside the predictions: give the "
                                      "output (--output or --train-predictions) of the interrupted run"
                                    : "only Nyström (--centers) and ridge on features keep a state to resume from; the "
                                      "exact solve starts over (drop --resume)");
  if (!(job.checkpoint_seconds >= 0) || !std::isfinite(job.checkpoint_seconds))
    throw InvalidArgument("the checkpoint interval must be a finite number of seconds >= 0");
  if (job.resume)  // outputs an interrupted run was writing when it was killed
    for (const std::string* p : {&job.output_path, &job.train_output_path})
      if (!p->empty()) detail::remove_stale_temps(*p);
  if (iterative && !first_output.empty())
    state = std::make_unique<detail::StateCheckpoint>(first_output, regress_identity(job, y, blocks, r), job.resume,
                                                      job.checkpoint_seconds);

  SolveOutcome s;
  if (job.f_train) {
    s = solve_features(job, y, n, m, r.selection ? &*r.selection : nullptr, r.validation, state.get());
    if (r.selection) reg.diag_reg = r.selection->best_ridge;
  } else if (job.centers) {
    s = solve_nystrom(job, y, blocks, state.get());
  } else {
    s = solve_exact_kernel(job, *k_train, k_test ? &*k_test : nullptr, y, reg);
  }
  r.ridge = reg.diag_reg;
  r.ridge_absolute = reg.diag_reg_absolute_scale;
  r.centers = s.centers;
  r.iterations = s.iterations;
  r.kernel_cached = s.kernel_cached;
  r.solver = job.centers ? "nystrom-pcg" : s.cholesky ? "cholesky" : "eigh";
  r.lambda = s.lambda;
  r.warning = std::move(s.warning);
  r.resumed_at = std::move(s.resumed_at);

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
  if (has_test) r.test_predictions = squeeze_time(std::move(s.test), nt);
  r.covariance = std::move(s.covariance);
  // Written last, each atomically, so a failure above leaves no file; the solver's state goes once
  // they are all in place (a rerun with --resume after a kill in between writes them again).
  detail::fault_point("before-rename");
  if (!job.output_path.empty()) write_npy(job.output_path, r.test_predictions);
  if (!job.train_output_path.empty()) write_npy(job.train_output_path, r.train_predictions);
  if (!job.covariance_path.empty()) write_npy(job.covariance_path, r.covariance);
  if (state) {
    detail::fault_point("after-rename");
    state->finish();
  }
  return r;
}


namespace {

std::string json_number(double v) {
  if (!std::isfinite(v)) return std::isnan(v) ? "\"nan\"" : v > 0 ? "\"inf\"" : "\"-inf\"";
  char b[64];
  std::snprintf(b, sizeof b, "%.17g", v);
  return b;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      out += b;
      continue;
    }
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::string regress_json(const RegressResult& r, const RegressJob& job) {
  std::ostringstream o;
  o << "{\"n_train\": " << r.n_train << ", \"n_test\": " << r.n_test << ", \"outputs\": " << r.outputs
    << ", \"classes\": " << r.classes << ", \"solver\": " << json_string(r.solver) << ", \"ridge\": " << json_number(r.ridge)
    << ", \"ridge_absolute\": " << (r.ridge_absolute ? "true" : "false") << ", \"lambda\": " << json_number(r.lambda);
  if (r.centers)
    o << ", \"centers\": " << r.centers << ", \"iterations\": " << r.iterations
      << ", \"kernel_cached\": " << (r.kernel_cached ? "true" : "false");
  if (r.selection) {
    o << ", \"ridge_selection\": {\"validation\": " << r.validation << ", \"ridges\": [";
    for (size_t i = 0; i < r.selection->ridges.size(); ++i) o << (i ? ", " : "") << json_number(r.selection->ridges[i]);
    o << "], \"validation_mse\": [";
    for (size_t i = 0; i < r.selection->validation_mse.size(); ++i)
      o << (i ? ", " : "") << json_number(r.selection->validation_mse[i]);
    o << "]}";
  }
  o << ", \"warning\": " << json_string(r.warning);
  if (!r.resumed_at.empty()) o << ", \"resumed_at\": " << json_string(r.resumed_at);
  o << ", \"results\": [";
  for (size_t i = 0; i < r.metrics.size(); ++i) {
    const RegressMetrics& m = r.metrics[i];
    o << (i ? ", " : "") << "{\"time\": " << json_number(m.time) << ", \"train_mse\": " << json_number(m.train_mse);
    if (m.test_mse) o << ", \"test_mse\": " << json_number(*m.test_mse);
    if (m.train_accuracy) o << ", \"train_accuracy\": " << json_number(*m.train_accuracy);
    if (m.test_accuracy) o << ", \"test_accuracy\": " << json_number(*m.test_accuracy);
    o << "}";
  }
  o << "], \"predictions\": " << json_string(job.output_path) << ", \"train_predictions\": "
    << json_string(job.train_output_path) << ", \"covariance\": " << json_string(job.covariance_path) << "}";
  return o.str();
}

}  // namespace ntk
