// ntk regress: flags -> RegressJob -> run_regress; prints one line per time (or JSON).
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <sstream>

#include "flags.hpp"
#include "ntk/regress.hpp"

namespace ntk::cli {

namespace {

struct RegressArgs {
  std::string k_train, k_test, y_train, y_test, out, train_out;
  std::string ridge = "0", time = "inf", learning_rate = "1";
  std::string k_test_test, covariance, nngp_train, nngp_test, nngp_test_test;
  long long classes = 0, validation = 0;
  bool ridge_absolute = false, json = false, quiet = false;
  int threads = 0;
};

std::string num(double v, int digits = 6) {
  if (std::isinf(v)) return "inf";
  char b[64];
  std::snprintf(b, sizeof b, "%.*g", digits, v);
  return b;
}

std::string json_num(double v) { return std::isfinite(v) ? num(v, 17) : "\"" + num(v) + "\""; }

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
    std::ostringstream o;
    o << "{\"n_train\": " << r.n_train << ", \"n_test\": " << r.n_test << ", \"outputs\": " << r.outputs
      << ", \"classes\": " << r.classes << ", \"solver\": " << json_string(r.solver) << ", \"ridge\": " << json_num(r.ridge)
      << ", \"ridge_absolute\": " << (r.ridge_absolute ? "true" : "false") << ", \"lambda\": " << json_num(r.lambda);
    if (r.selection) {
      o << ", \"ridge_selection\": {\"validation\": " << r.validation << ", \"ridges\": [";
      for (size_t i = 0; i < r.selection->ridges.size(); ++i) o << (i ? ", " : "") << json_num(r.selection->ridges[i]);
      o << "], \"validation_mse\": [";
      for (size_t i = 0; i < r.selection->validation_mse.size(); ++i)
        o << (i ? ", " : "") << json_num(r.selection->validation_mse[i]);
      o << "]}";
    }
    o << ", \"warning\": " << json_string(r.warning) << ", \"results\": [";
    for (size_t i = 0; i < r.metrics.size(); ++i) {
      const RegressMetrics& m = r.metrics[i];
      o << (i ? ", " : "") << "{\"time\": " << json_num(m.time) << ", \"train_mse\": " << json_num(m.train_mse);
      if (m.test_mse) o << ", \"test_mse\": " << json_num(*m.test_mse);
      if (m.train_accuracy) o << ", \"train_accuracy\": " << json_num(*m.train_accuracy);
      if (m.test_accuracy) o << ", \"test_accuracy\": " << json_num(*m.test_accuracy);
      o << "}";
    }
    o << "], \"predictions\": " << json_string(job.output_path) << ", \"train_predictions\": "
      << json_string(job.train_output_path) << ", \"covariance\": " << json_string(job.covariance_path) << "}";
    std::cout << o.str() << "\n";
    return;
  }
  const std::string ridge = ", ridge " + num(r.ridge) + (r.ridge_absolute ? " absolute" : " relative") + " (lambda " +
                            num(r.lambda) +
                            (r.selection ? ", chosen on " + std::to_string(r.validation) + " held-out examples" : "") + ")";
  // Finite times always evolve in the eigenbasis; t = inf is a Cholesky solve unless it fell back.
  const std::string at_inf = r.solver == "cholesky" ? "Cholesky" : "eigh fallback";
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
  job.k_train = JobInput::file(a.k_train, "--k-train '" + a.k_train + "'");
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
      "Output: -o PRED.npy the test predictions (M, O), or (T, M, O) for several times; --train-predictions likewise "
      "(N, O) / (T, N, O). One line per time on stdout, or one JSON object with --json.\n\n"
      "Example:\n"
      "  ntk kernel --net 'Dense(512), Relu, Dense(1)' --x1 X.npy -o K.npy\n"
      "  ntk kernel --net 'Dense(512), Relu, Dense(1)' --x1 XT.npy --x2 X.npy -o KT.npy\n"
      "  ntk regress --k-train K.npy --k-test KT.npy --y-train train-labels-idx1-ubyte.gz --y-test "
      "t10k-labels-idx1-ubyte.gz --ridge auto -o PRED.npy");
  sub->add_option("--k-train", a->k_train, "Train kernel (N, N), .npy")->required()->type_name("FILE");
  sub->add_option("--k-test", a->k_test, "Test-by-train kernel (M, N), .npy")->type_name("FILE");
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
  return {sub, [a] { run(*a); }};
}

}  // namespace ntk::cli
