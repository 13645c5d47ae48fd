// ntk pntk-report: flags -> PntkReportJob -> run_pntk_report; prints the report as text or JSON.
#include <iostream>
#include <memory>
#include <optional>

#include "flags.hpp"
#include "ntk/jobs_spectrum.hpp"

namespace ntk::cli {

namespace {

struct ReportArgs {
  NetworkFlags net;
  std::string params;
  std::optional<std::uint64_t> seed;
  std::string x_train, y_train, x_test, y_test, out;
  std::string method = "auto";
  std::string dtype;
  std::string max_memory;
  std::string idx_scale = "unit";
  double ridge = 1e-4;
  int threads = 0;
  bool json = false;
};

void run(const ReportArgs& a) {
  if (a.params.empty() == !a.seed.has_value()) throw CLI::ValidationError("give exactly one of --params FILE or --seed S");
  PntkReportJob job;
  job.net = a.net.request();
  job.params.path = a.params;
  job.params.seed = a.seed;
  job.x_train = JobInput::file(a.x_train, "--x-train '" + a.x_train + "'");
  job.y_train = JobInput::file(a.y_train, "--y-train '" + a.y_train + "'");
  job.x_test = JobInput::file(a.x_test, "--x-test '" + a.x_test + "'");
  job.y_test = JobInput::file(a.y_test, "--y-test '" + a.y_test + "'");
  job.options.ridge = a.ridge;
  job.options.method = parse_entk_method(a.method);
  job.options.max_memory = max_memory_bytes(a.max_memory);
  job.options.threads = a.threads;
  job.dtype = dtype_or_default(a.dtype);
  job.input.idx_scale = parse_idx_scale(a.idx_scale);
  job.output_path = a.out;
  const PntkReportJobResult r = run_pntk_report(job);
  std::cout << (a.json ? r.json() + "\n" : r.text());
}

}  // namespace

Subcommand add_pntk_report(CLI::App& app) {
  auto a = std::make_shared<ReportArgs>();
  CLI::App* sub = app.add_subcommand("pntk-report", "How well the pNTK approximates the full eNTK, and what each costs");
  set_long_description(
      sub, "At the parameters in --params (or drawn with --seed), computes the full eNTK (N, N, O, O) and the pNTK "
           "(N, N) of Mohamadi et al. on the training inputs and test-by-train, each timed with its memory estimate "
           "and measured peak growth; compares pNTK ⊗ I_O with the full train kernel (relative Frobenius distance, "
           "λmax and condition ratios); and runs kernel ridge regression with each: the full eNTK as one "
           "(N·O × N·O) system with the targets flattened, the pNTK as N × N with O columns, with the same ridge "
           "relative to the mean of each kernel's diagonal. Labels are integer class labels (N,) (.npy or IDX; "
           "one-hot over the network's outputs) or float targets (N, O). -o writes the report as JSON.\n\n" +
               spec_help() +
               "\n\nExample:\n"
               "  ntk pntk-report --net 'Dense(512), Relu, Dense(10)' --seed 0 --x-train X.npy --y-train y.npy "
               "--x-test XT.npy --y-test yt.npy --json");
  add_network_flags(sub, a->net);
  sub->add_option("--params", a->params, "Parameter file (.npz); or give --seed")->type_name("FILE");
  sub->add_option("--seed", a->seed, "Draw the parameters as 'ntk init --seed S' would")->check(kUnsigned)->type_name("S");
  sub->add_option("--x-train", a->x_train, "Training inputs (N, ...): .npy or IDX")->required()->type_name("FILE");
  sub->add_option("--y-train", a->y_train, "Training labels (N,) or targets (N, O)")->required()->type_name("FILE");
  sub->add_option("--x-test", a->x_test, "Test inputs (M, ...): .npy or IDX")->required()->type_name("FILE");
  sub->add_option("--y-test", a->y_test, "Test labels (M,) or targets (M, O)")->required()->type_name("FILE");
  sub->add_option("--ridge", a->ridge, "Ridge relative to the mean of the train kernel's diagonal")
      ->check(CLI::Range(0.0, 1e300).description(""))
      ->type_name("R")
      ->capture_default_str();
  sub->add_option("--method", a->method, "eNTK method: auto | jc | vp | sd")
      ->check(CLI::IsMember({"auto", "jc", "vp", "sd"}).description(""))
      ->type_name("METHOD")
      ->capture_default_str();
  add_dtype_flag(sub, a->dtype, "Compute type (default: X_TRAIN's dtype if float32/float64, else float32)");
  add_idx_scale_flag(sub, a->idx_scale);
  add_threads_flag(sub, a->threads);
  add_max_memory_flag(sub, a->max_memory, "Memory budget of each eNTK computation, e.g. 4G");
  sub->add_flag("--json", a->json, "Print one JSON object instead of text");
  sub->add_option("-o,--output", a->out, "Report to write (JSON)")->type_name("FILE");
  return {sub, [a] { run(*a); }};
}

}  // namespace ntk::cli
