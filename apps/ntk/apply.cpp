// ntk apply: flags -> ApplyJob -> run_apply.
#include <memory>

#include "flags.hpp"

namespace ntk::cli {

namespace {

struct ApplyArgs {
  NetworkFlags net;
  std::string params;
  std::string x;
  std::string out;
  std::string dtype;  // empty: from X
  std::string idx_scale = "unit";
  int threads = 0;
  bool quiet = false;
  bool verbose = false;
};

void run(const ApplyArgs& a) {
  ApplyJob job;
  job.net = a.net.request();
  job.params.path = a.params;
  job.x = JobInput::file(a.x);
  job.dtype = dtype_or_default(a.dtype);
  job.input.idx_scale = parse_idx_scale(a.idx_scale);
  job.threads = a.threads;
  job.output_path = a.out;
  report(run_apply(job), a.quiet, a.verbose);
}

}  // namespace

Subcommand add_apply(CLI::App& app) {
  auto a = std::make_shared<ApplyArgs>();
  CLI::App* sub = app.add_subcommand("apply", "Apply a network with given parameters to inputs");
  set_long_description(
      sub, "Applies the network SPEC with the parameters in --params to the inputs -x and writes the outputs (N, output "
           "shape...) as .npy. The per-example input shape is the shape of X without its first axis, and must be the "
           "one the parameters were made for. -x is a .npy file, or an IDX file (MNIST / Fashion-MNIST style, gzipped "
           "or not, detected by content): a 3-D IDX stack (N, H, W) gets a channel axis (N, H, W, 1), and its unsigned "
           "bytes are scaled to [0, 1] (value/255, as torchvision's ToTensor; --idx-scale raw keeps 0..255). The "
           "computation runs in --dtype, by default the dtype of X when it is float32 or float64 and float32 "
           "otherwise. The same --W-std, --b-std and --parameterization as at 'ntk init' must be given.\n\n" +
               spec_help() +
               "\n\nExample:\n"
               "  ntk apply --net 'Conv(32, 3), Relu, GlobalAvgPool, Dense(10)' --params params.npz -x images.npy "
               "-o logits.npy");
  add_network_flags(sub, a->net);
  sub->add_option("--params", a->params, "Parameter file (.npz, from 'ntk init' or converted)")
      ->required()
      ->type_name("FILE");
  sub->add_option("-x,--input", a->x, "Inputs: .npy (N, ...) or IDX file")->required()->type_name("FILE");
  sub->add_option("-o,--output", a->out, "Outputs to write (.npy)")->required()->type_name("FILE");
  add_dtype_flag(sub, a->dtype, "Compute type (default: X's dtype if float32/float64, else float32)");
  add_idx_scale_flag(sub, a->idx_scale);
  add_threads_flag(sub, a->threads);
  sub->add_flag("-q,--quiet", a->quiet, "Print nothing on success");
  sub->add_flag("-v,--verbose", a->verbose, "Also print the network, one layer a line");
  return {sub, [a] { run(*a); }};
}

}  // namespace ntk::cli
