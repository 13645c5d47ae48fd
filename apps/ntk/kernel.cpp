// ntk kernel: flags -> KernelJob -> run_kernel.
#include <memory>

#include "flags.hpp"

namespace ntk::cli {

namespace {

struct KernelArgs {
  NetworkFlags net;
  std::string x1, x2, out;
  std::string get = "ntk";
  std::string dtype = "float64";
  std::string max_memory;
  std::string idx_scale = "unit";
  int threads = 0;
  bool out_of_core = false;
  bool resume = false;
  bool quiet = false;
};

void run(const KernelArgs& a) {
  KernelJob job;
  job.net = a.net.request();
  job.x1 = JobInput::file(a.x1, "--x1 '" + a.x1 + "'");
  if (!a.x2.empty()) job.x2 = JobInput::file(a.x2, "--x2 '" + a.x2 + "'");
  job.get = a.get == "nngp" ? KernelOptions::nngp : KernelOptions::ntk;
  job.dtype = parse_float_dtype(a.dtype);
  job.max_memory = max_memory_bytes(a.max_memory);
  job.out_of_core = a.out_of_core;
  job.resume = a.resume;
  job.threads = a.threads;
  if (!a.quiet) job.progress = terminal_progress("kernel", "pairs", true);
  job.input.idx_scale = parse_idx_scale(a.idx_scale);
  job.output_path = a.out;
  report(run_kernel(job), a.quiet);
}

}  // namespace

Subcommand add_kernel(CLI::App& app) {
  auto a = std::make_shared<KernelArgs>();
  CLI::App* sub = app.add_subcommand("kernel", "Infinite-width NTK or NNGP of a network (vectors or NHWC images)");
  set_long_description(
      sub, "Computes the infinite-width kernel of the network SPEC in neural-tangents' conventions: the NTK (--get ntk) "
           "or the NNGP (--get nngp), (N1, N2) for inputs x1 and x2, vectors (N, d) or NHWC images (the kernel of the "
           "outputs is this times the identity over outputs). Computed in float64 (--dtype float32: the offset path "
           "below in float32). Networks of stride-1 Conv and pointwise layers up to a GlobalAvgPool or Flatten readout "
           "take the offset path (pairs in SIMD lanes, one pixel offset at a time, in cache); others keep each pair's "
           "full pixel-pair covariance when a pooling layer needs it, otherwise its diagonal. Networks without an "
           "exact kernel (a nonlinearity whose input is not Gaussian, a Residual whose block and shortcut both lack a "
           "Dense/Conv layer of their own at their end, a "
           "spatial output) are refused with an error that says why. --max-memory bounds the working memory and the "
           "kernel; a kernel that does not fit is written out of core. Inputs are .npy or IDX files as for 'ntk "
           "apply' (IDX bytes scaled to [0, 1] unless --idx-scale raw). Arora et al.'s CNTK as a spec: "
           "docs/cntk.md.\n\n" +
               spec_help() +
               "\n\nExample:\n"
               "  ntk kernel --net 'Dense(512, W_std=1.4), Relu, Dense(1)' --x1 X.npy --get ntk -o K.npy\n"
               "  ntk kernel --net 'Conv(1, 3, padding=SAME), Relu, Conv(1, 3, padding=SAME), Relu, GlobalAvgPool, "
               "Dense(1)' --x1 images.npy -o cntk.npy");
  add_network_flags(sub, a->net);
  sub->add_option("--x1", a->x1, "Inputs (N1, d) or (N1, H, W, C): .npy or IDX")->required()->type_name("FILE");
  sub->add_option("--x2", a->x2, "Second inputs (N2, ...); omitted: x2 = x1")->type_name("FILE");
  add_get_flag(sub, a->get, "ntk or nngp");
  sub->add_option("--dtype", a->dtype,
                  "Output type; float32 also computes the offset path (conv/pointwise nets with a GlobalAvgPool "
                  "or Flatten readout) in float32, 2x faster, ~1e-7 relative")
      ->check(CLI::IsMember({"float32", "float64"}).description(""))
      ->type_name("float32|float64")
      ->capture_default_str();
  add_idx_scale_flag(sub, a->idx_scale);
  add_threads_flag(sub, a->threads);
  add_max_memory_flag(sub, a->max_memory,
                      "Memory budget for the kernel and working buffers, e.g. 4G; a kernel that does not fit is "
                      "written out of core");
  sub->add_flag("--out-of-core", a->out_of_core,
                "Write the kernel straight into the output file, band by band (automatic when it does not fit --max-memory)");
  add_resume_flag(sub, a->resume);
  sub->add_option("-o,--output", a->out, "Kernel to write (.npy), (N1, N2)")->required()->type_name("FILE");
  sub->add_flag("-q,--quiet", a->quiet, "Print nothing on success");
  return {sub, [a] { run(*a); }};
}

}  // namespace ntk::cli
