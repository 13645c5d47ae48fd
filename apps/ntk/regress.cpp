// ntk regress: flags -> RegressJob -> run_regress; prints one line per time (or JSON).
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>

#include "flags.hpp"
#include "ntk/regress.hpp"

namespace ntk::cli {

namespace {

struct RegressArgs {
  std::string k_train, k_test, y_train, y_test, out, train_out;
  std::string f_train, f_test;
  // A network's kernel instead of kernel files.
  NetworkFlags net;
  std::string x_train, x_test, get = "ntk", mode, params, dtype, idx_scale = "unit", max_memory;
  std::optional<std::uint64_t> seed;
  long long centers = 0, max_iterations = 100, batch_rows = 0;
  double tolerance = 1e-7;
  std::uint64_t center_seed = 0;
  std::string ridge = "0", time = "inf", learning_rate = "1";
  std::string k_test_test, covariance, nngp_train, nngp_test, nngp_test_test;
  long long classes = 0, validation = 0;
  bool ridge_absolute = false, json = false, quiet = false, resume = false;
  double checkpoint_seconds = 60;
  int threads = 0;
};

std::string num(double v, int digits = 6) {
  if (std::isinf(v)) return "inf";
  char b[64];
  std::snprintf(b, sizeof b, "%.*g", digits, v);
  return b;
}


std::vector<double> parse_times(const std::string& s) {
  std::vector<double> times;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ',')) {
    if (part == "inf" || part == "Inf" || part == "infinity") {
      times.push_back(kInfiniteTime);
      continue;
    }
    auto v = parse_finite(part);
    if (!v || *v < 0)
      throw CLI::ValidationError("--time", "times must be numbers >= 0 or inf, comma-separated, got '" + part + "'");
    times.push_back(*v);
  }
  if (times.empty()) throw CLI::ValidationError("--time", "give at least one time (a number >= 0 or inf)");
  return times;
}

void print(const RegressResult& r, const RegressJob& job, bool json) {
  if (json) {
    std::cout << regress_json(r, job) << "\n";
    return;
  }
  const std::string ridge = ", ridge " + num(r.ridge) + (r.ridge_absolute ? " absolute" : " relative") + " (lambda " +
                            num(r.lambda) +
                            (r.selection ? ", chosen on " + std::to_string(r.validation) + " held-out examples" : "") + ")";
  // Finite times always evolve in the eigenbasis; t = inf is a Cholesky solve unless it fell back.
  const std::string at_inf = r.solver == "cholesky"      ? "Cholesky"
                             : r.solver == "nystrom-pcg" ? "Nystrom, " + std::to_string(r.centers) + " centers, " +
                                                               std::to_string(r.iterations) + " CG iterations"
                                                         : "eigh fallback";
  if (!r.resumed_at.empty()) std::cout << "resumed at " << r.resumed_at << "\n";
  for (const RegressMetrics& m : r.metrics) {
    std::string line = "t=" + num(m.time) + ": train MSE " + num(m.train_mse);
    if (m.train_accuracy) line += ", train accuracy " + num(*m.train_accuracy);
    if (m.test_mse) line += ", test MSE " + num(*m.test_mse);
    if (m.test_accuracy) line += ", test accuracy " + num(*m.test_accuracy);
    std::cout << line << ridge << ", solver " << (std::isinf(m.time) ? at_inf : std::string("eigh")) << "\n";
  }
}

void run(const RegressArgs& a) {
  RegressJob job;
  const int sources = int(!a.k_train.empty()) + int(!a.f_train.empty()) + int(!a.net.spec.empty());
  if (sources != 1)
    throw CLI::ValidationError("--k-train", "give exactly one of --k-train K.npy, --f-train F.npy or --net SPEC with --x-train");
  if (!a.net.spec.empty()) {
    if (a.x_train.empty()) throw CLI::ValidationError("--x-train", "--net needs the training inputs --x-train");
    NetworkKernel nk;
    nk.net = a.net.request();
    nk.x_train = JobInput::file(a.x_train, "--x-train '" + a.x_train + "'");
    if (!a.x_test.empty()) nk.x_test = JobInput::file(a.x_test, "--x-test '" + a.x_test + "'");
    nk.empirical = !a.mode.empty();
    if (nk.empirical) {
      nk.mode = parse_entk_mode(a.mode);
      if (a.params.empty() == !a.seed.has_value())
        throw CLI::ValidationError("--mode", "the empirical kernel needs exactly one of --params FILE or --seed S");
      nk.params.path = a.params;
      nk.params.seed = a.seed;
    } else if (!a.params.empty() || a.seed) {
      throw CLI::ValidationError("--params", "parameters are for the empirical kernel: give its --mode (e.g. pntk)");
    }
    nk.get = a.get == "nngp" ? KernelOptions::nngp : KernelOptions::ntk;
    nk.dtype = dtype_or_default(a.dtype);
    nk.input.idx_scale = parse_idx_scale(a.idx_scale);
    job.network = std::move(nk);
  } else if (!a.x_train.empty() || !a.x_test.empty()) {
    throw CLI::ValidationError("--x-train", "inputs are for a network's kernel: give --net SPEC");
  }
  if (!a.k_train.empty()) job.k_train = JobInput::file(a.k_train, "--k-train '" + a.k_train + "'");
  if (!a.f_train.empty()) job.f_train = JobInput::file(a.f_train, "--f-train '" + a.f_train + "'");
  if (!a.f_test.empty()) job.f_test = JobInput::file(a.f_test, "--f-test '" + a.f_test + "'");
  job.centers = index_t(a.centers);
  job.center_seed = a.center_seed;
  job.max_iterations = index_t(a.max_iterations);
  job.batch_rows = index_t(a.batch_rows);
  job.tolerance = a.tolerance;
  job.max_memory = max_memory_bytes(a.max_memory);
  if (!a.quiet && job.centers) job.progress = terminal_progress("nystrom", "iterations", true);
  if (!a.k_test.empty()) job.k_test = JobInput::file(a.k_test, "--k-test '" + a.k_test + "'");
  job.y_train = JobInput::file(a.y_train, "--y-train '" + a.y_train + "'");
  if (!a.y_test.empty()) job.y_test = JobInput::file(a.y_test, "--y-test '" + a.y_test + "'");
  job.classes = index_t(a.classes);
  if (a.ridge == "auto") {
    job.ridge_auto = true;
  } else {
    auto r = parse_finite(a.ridge);
    if (!r || *r < 0) throw CLI::ValidationError("--ridge", "must be a finite number >= 0 or auto, got '" + a.ridge + "'");
    job.ridge = *r;
  }
  job.ridge_absolute = a.ridge_absolute;
  job.validation = index_t(a.validation);
  job.times = parse_times(a.time);
  auto eta = parse_finite(a.learning_rate);
  if (!eta || *eta <= 0)
    throw CLI::ValidationError("--learning-rate", "must be a finite number > 0, got '" + a.learning_rate + "'");
  job.learning_rate = *eta;
  if (!a.k_test_test.empty()) job.k_test_test = JobInput::file(a.k_test_test, "--k-test-test '" + a.k_test_test + "'");
  const int nngp_given = int(!a.nngp_train.empty()) + int(!a.nngp_test.empty()) + int(!a.nngp_test_test.empty());
  if (nngp_given != 0 && nngp_given != 3)
    throw CLI::ValidationError("--nngp-train", "the NTK posterior covariance needs all of --nngp-train, --nngp-test and --nngp-test-test");
  if (nngp_given)
    job.nngp = NngpInputs{JobInput::file(a.nngp_train, "--nngp-train '" + a.nngp_train + "'"),
                          JobInput::file(a.nngp_test, "--nngp-test '" + a.nngp_test + "'"),
                          JobInput::file(a.nngp_test_test, "--nngp-test-test '" + a.nngp_test_test + "'")};
  if ((job.k_test_test || job.nngp) && a.covariance.empty())
    throw CLI::ValidationError("--covariance", "test-test kernels are for the posterior covariance; give --covariance COV.npy");
  if (!a.covariance.empty() && !job.k_test_test && !job.nngp)
    throw CLI::ValidationError("--covariance",
                               "needs --k-test-test (NNGP posterior) or --nngp-train/--nngp-test/--nngp-test-test (NTK posterior)");
  job.covariance_path = a.covariance;
  job.threads = a.threads;
  job.output_path = a.out;
  job.train_output_path = a.train_out;
  job.resume = a.resume;
  job.checkpoint_seconds = a.checkpoint_seconds;
  const RegressResult r = run_regress(job);
  if (!r.warning.empty()) std::cerr << "warning: " << r.warning << "\n";
  if (!a.quiet) print(r, job, a.json);
}

}  // namespace

Subcommand add_regress(CLI::App& app) {
  auto a = std::make_shared<RegressArgs>();
  CLI::App* sub = app.add_subcommand("regress", "Kernel regression / gradient-descent predictions from a computed kernel");
  set_long_description(
      sub,
      "Predicts test targets from a computed kernel in neural-tangents' predict conventions (float64 throughout; "
      "float32 kernels are converted). K is the train kernel (N, N), KT the test-by-train kernel (M, N). Targets Y "
      "are a float .npy (N,) or (N, O), or class labels: an integer .npy (N,) or an IDX labels file such as "
      "Fashion-MNIST's train-labels-idx1-ubyte.gz; labels become one-hot targets (1 for the class, 0 elsewhere) over "
      "--classes C classes (default: the largest label in train and test + 1), and accuracy (argmax) is reported "
      "beside the MSE (mean over examples and outputs).\n\n"
      "--time T[,T2,...] gives the linearized network trained by gradient flow on the MSE loss 1/(2|y|) sum (f - y)^2 "
      "for time T at --learning-rate ETA from zero outputs: f(t) = f0 + expm1(-ETA t K / |y|) (f0 - y), test "
      "predictions through K^-1 KT (nt.predict.gradient_descent_mse); inf (the default) is the converged solution, "
      "kernel ridge regression, by a Cholesky factor. --ridge R adds R * mean(diag K) to K's diagonal "
      "(neural-tangents' diag_reg; --ridge-absolute: R itself); --ridge auto chooses R on the last 10% of the training "
      "examples (--validation N) among 0 and 1e-8..10, then refits on all. A kernel plus ridge that is not positive "
      "definite is solved on its positive eigen-directions (eigh fallback) with a warning on stderr, never NaN. Train "
      "predictions (and the train MSE) are the model's outputs on the training examples, the test formula with "
      "KT = K (neural-tangents' regularized train predictions), so a ridge shows as a train error.\n\n"
      "GP inference (nt.predict.gp_inference, t = inf): --covariance COV.npy writes the posterior covariance (M, M) "
      "of the test outputs (the same for each output). With --k-test-test KTT.npy, K / KT / KTT are the NNGP and this "
      "is the Bayesian posterior; with --nngp-train/--nngp-test/--nngp-test-test, K / KT are the NTK and this is the "
      "covariance of the infinite ensemble of networks trained to convergence. The predictions are the posterior "
      "mean.\n\n"
      "Beyond memory: --f-train F.npy / --f-test FT.npy are feature matrices (N, m) / (M, m) (e.g. 'ntk features'): "
      "ridge regression on features through F^T F (m x m, accumulated over row batches of the memory-mapped file), "
      "never the N x N kernel, with the ridge relative to mean ||f_i||^2 (--ridge auto chooses it as for kernels). --centers M solves the kernel by Nystrom "
      "kernel ridge on M centers drawn uniformly (--center-seed), (K_nM^T K_nM + lambda K_MM) a = K_nM^T Y, by "
      "Falkon's preconditioned conjugate gradient: the kernel files are memory-mapped and only their centers' columns "
      "read. --net SPEC --x-train X [--x-test XT] computes the kernel from the network instead of files, block by "
      "block: the infinite-width --get ntk|nngp, or with --mode (pntk, trace, ...) the empirical kernel at --params / "
      "--seed; without --centers it is formed whole and solved exactly. --max-memory bounds kernels and solver.\n\n"
      "Output: -o PRED.npy the test predictions (M, O), or (T, M, O) for several times; --train-predictions likewise "
      "(N, O) / (T, N, O). One line per time on stdout, or one JSON object with --json.\n\n"
      "Example:\n"
      "  ntk kernel --net 'Dense(512), Relu, Dense(1)' --x1 X.npy -o K.npy\n"
      "  ntk kernel --net 'Dense(512), Relu, Dense(1)' --x1 XT.npy --x2 X.npy -o KT.npy\n"
      "  ntk regress --k-train K.npy --k-test KT.npy --y-train train-labels-idx1-ubyte.gz --y-test "
      "t10k-labels-idx1-ubyte.gz --ridge auto -o PRED.npy\n"
      "  ntk regress --net 'Dense(512, W_std=1.41, b_std=0.05), Relu, Dense(1)' --x-train train-images-idx3-ubyte.gz "
      "--x-test t10k-images-idx3-ubyte.gz --y-train train-labels-idx1-ubyte.gz --y-test t10k-labels-idx1-ubyte.gz "
      "--centers 10000 --ridge 1e-3 --max-memory 8G");
  sub->add_option("--k-train", a->k_train, "Train kernel (N, N), .npy")->type_name("FILE");
  sub->add_option("--k-test", a->k_test, "Test-by-train kernel (M, N), .npy")->type_name("FILE");
  sub->add_option("--f-train", a->f_train, "Training features (N, m), .npy: ridge on features, never N x N")->type_name("FILE");
  sub->add_option("--f-test", a->f_test, "Test features (M, m), .npy")->type_name("FILE");
  add_network_flags(sub, a->net, false);
  sub->add_option("--x-train", a->x_train, "With --net: training inputs (N, ...), .npy or IDX")->type_name("FILE");
  sub->add_option("--x-test", a->x_test, "With --net: test inputs (M, ...)")->type_name("FILE");
  add_get_flag(sub, a->get, "With --net: the infinite-width ntk or nngp (unless --mode)");
  sub->add_option("--mode", a->mode, "With --net: the empirical kernel in this mode (pntk, trace, trace-sum, logit=K) "
                                     "at --params or --seed, instead of the infinite-width one")
      ->type_name("MODE");
  sub->add_option("--params", a->params, "With --mode: parameter file (.npz)")->type_name("FILE");
  sub->add_option("--seed", a->seed, "With --mode: draw the parameters as 'ntk init --seed S'")->check(kUnsigned)->type_name("S");
  add_dtype_flag(sub, a->dtype, "With --net: the kernel's compute type (default: float64 for the infinite-width kernel, "
                                "the inputs' for the empirical one)");
  add_idx_scale_flag(sub, a->idx_scale);
  sub->add_option("--centers", a->centers, "Nyström on M centers with Falkon's preconditioned CG (t = inf, fixed ridge): "
                                           "only K(X, C), K(C, C) and K(X_test, C) are formed")
      ->check(CLI::Range(1LL, 1LL << 40).description(""))
      ->type_name("M");
  sub->add_option("--center-seed", a->center_seed, "Seed of the centers' choice")->check(kUnsigned)->type_name("S");
  sub->add_option("--max-iterations", a->max_iterations, "Nyström: most conjugate-gradient iterations")
      ->check(CLI::Range(1LL, 1LL << 30).description(""))
      ->type_name("N")
      ->capture_default_str();
  sub->add_option("--batch-rows", a->batch_rows,
                  "Features: rows of F per FtF accumulation step (default: about 64 MiB of rows)")
      ->check(CLI::Range(1LL, 1LL << 40).description(""))
      ->type_name("B");
  sub->add_option("--tolerance", a->tolerance, "Nyström: relative residual at which CG stops")
      ->check(CLI::Range(0.0, 1.0).description(""))
      ->type_name("TOL")
      ->capture_default_str();
  add_max_memory_flag(sub, a->max_memory,
                      "Memory budget for kernels and solver, e.g. 8G; an exact solve that does not fit is refused "
                      "(use --centers), Nyström recomputes K(X, C) per iteration when it does not fit");
  sub->add_option("--y-train", a->y_train, "Train targets (N,) / (N, O) float .npy, or class labels (int .npy, IDX)")
      ->required()
      ->type_name("FILE");
  sub->add_option("--y-test", a->y_test, "Test targets or labels, as --y-train, for the test MSE / accuracy")->type_name("FILE");
  sub->add_option("--classes", a->classes, "Number of classes for labels (default: largest label + 1)")
      ->check(CLI::Range(1LL, 1LL << 31).description(""))
      ->type_name("C");
  sub->add_option("--ridge", a->ridge, "Ridge relative to mean(diag K), or auto")->type_name("R|auto")->capture_default_str();
  sub->add_flag("--ridge-absolute", a->ridge_absolute, "--ridge is added to the diagonal as is");
  sub->add_option("--validation", a->validation, "Held-out training examples for --ridge auto (default: N/10)")
      ->check(CLI::Range(1LL, 1LL << 40).description(""))
      ->type_name("N");
  sub->add_option("--time", a->time, "Training time(s), comma-separated, or inf")->type_name("T[,T2,...]|inf")->capture_default_str();
  sub->add_option("--learning-rate", a->learning_rate, "Learning rate (scales time)")->type_name("ETA")->capture_default_str();
  sub->add_option("--k-test-test", a->k_test_test, "Test-test kernel (M, M) for the NNGP posterior covariance")->type_name("FILE");
  sub->add_option("--nngp-train", a->nngp_train, "NNGP train kernel (N, N) for the NTK posterior covariance")->type_name("FILE");
  sub->add_option("--nngp-test", a->nngp_test, "NNGP test-by-train kernel (M, N)")->type_name("FILE");
  sub->add_option("--nngp-test-test", a->nngp_test_test, "NNGP test-test kernel (M, M)")->type_name("FILE");
  sub->add_option("--covariance", a->covariance, "Posterior covariance to write (.npy), (M, M)")->type_name("FILE");
  add_threads_flag(sub, a->threads);
  sub->add_option("-o,--output", a->out, "Test predictions to write (.npy)")->type_name("FILE");
  sub->add_option("--train-predictions", a->train_out, "Train predictions to write (.npy)")->type_name("FILE");
  sub->add_flag("--json", a->json, "Print the results as one JSON object");
  sub->add_flag("-q,--quiet", a->quiet, "Print nothing on success (warnings still go to stderr)");
  sub->add_flag("--resume", a->resume,
                "Nystrom / features: continue an interrupted run of this same command from the solver state kept "
                "beside its first output (OUTPUT.ntk-state)");
  sub->add_option("--checkpoint-seconds", a->checkpoint_seconds,
                  "Nystrom / features: save the solver state at most this often (0: after every block of rows)")
      ->check(CLI::Range(0.0, 1e9).description(""))
      ->type_name("S")
      ->capture_default_str();
  return {sub, [a] { run(*a); }};
}

}  // namespace ntk::cli
