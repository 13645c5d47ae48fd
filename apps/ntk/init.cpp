// ntk init: flags -> InitJob -> run_init.
#include <memory>

#include "flags.hpp"

namespace ntk::cli {

namespace {

struct InitArgs {
  NetworkFlags net;
  std::string input_shape;
  std::uint64_t seed = 0;
  std::string dtype = "float32";
  std::string out;
  bool quiet = false;
  bool verbose = false;
};

void run(const InitArgs& a) {
  InitJob job;
  job.net = a.net.request();
  job.input_shape = *parse_shape(a.input_shape);
  job.seed = a.seed;
  job.dtype = parse_float_dtype(a.dtype);
  job.output_path = a.out;
  report(run_init(job), a.quiet, a.verbose);
}

}  // namespace

Subcommand add_init(CLI::App& app) {
  auto a = std::make_shared<InitArgs>();
  CLI::App* sub = app.add_subcommand("init", "Draw a network's parameters and write them to an .npz file");
  set_long_description(
      sub, "Draws the parameters of the network SPEC for examples of shape --input-shape (per example, without the "
           "batch axis: 784 for vectors, H,W,C for images) and writes them to an .npz file. Values come from a "
           "counter-based generator keyed by --seed, so the same seed gives the same parameters on every machine and "
           "thread count; float32 parameters are the float64 ones rounded. Under NTK parameterization the stored "
           "values are N(0,1) and the layer scales them; under standard parameterization they are stored already "
           "scaled.\n\n" +
               spec_help() +
               "\n\nExample:\n"
               "  ntk init --net 'Conv(32, 3), Relu, GlobalAvgPool, Dense(10)' --input-shape 28,28,1 --seed 1 -o params.npz");
  add_network_flags(sub, a->net);
  sub->add_option("--input-shape", a->input_shape, "Per-example input shape: 784 for vectors, H,W,C for images")
      ->required()
      ->check(kShape)
      ->type_name("D1,D2,...");
  sub->add_option("--seed", a->seed, "Random seed (integer, 0 to 2^64-1)")
      ->check(kUnsigned)
      ->type_name("S")
      ->capture_default_str();
  add_dtype_flag(sub, a->dtype, "Element type of the parameter file");
  sub->get_option("--dtype")->capture_default_str();
  sub->add_option("-o,--output", a->out, "Parameter file to write (.npz)")->required()->type_name("FILE");
  sub->add_flag("-q,--quiet", a->quiet, "Print nothing on success");
  sub->add_flag("-v,--verbose", a->verbose, "Also print the network, one layer a line");
  return {sub, [a] { run(*a); }};
}

}  // namespace ntk::cli
