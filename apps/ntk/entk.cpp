// ntk entk: flags -> EntkJob -> run_entk (or plan_entk for --explain).
#include <iostream>
#include <memory>
#include <optional>

#include "flags.hpp"

namespace ntk::cli {

namespace {

struct EntkArgs {
  NetworkFlags net;
  std::string params;
  std::optional<std::uint64_t> seed;
  std::string x1, x2, out;
  std::string mode = "trace";
  std::string method = "auto";
  std::string dtype;  // empty: from X1
  std::string max_memory;
  std::string idx_scale = "unit";
  ntk::index_t tile = 0;
  int threads = 0;
  bool quiet = false;
  bool explain = false;
  bool out_of_core = false;
  bool resume = false;
  std::string get = "ntk";
  std::string accumulate;  // "float64": float32 inputs and output, float64 arithmetic
};

EntkJob make_job(const EntkArgs& a) {
  EntkJob job;
  job.net = a.net.request();
  job.params.path = a.params;
  job.params.seed = a.seed;
  job.x1 = JobInput::file(a.x1, "--x1 '" + a.x1 + "'");
  if (!a.x2.empty()) job.x2 = JobInput::file(a.x2, "--x2 '" + a.x2 + "'");
  job.mode = parse_entk_mode(a.mode);
  job.method = parse_entk_method(a.method);
  job.nngp = a.get == "nngp";
  job.dtype = dtype_or_default(a.dtype);
  job.accumulate_float64 = a.accumulate == "float64";
  job.max_memory = max_memory_bytes(a.max_memory);
  job.tile = a.tile;
  job.out_of_core = a.out_of_core;
  job.resume = a.resume;
  job.threads = a.threads;
  job.input.idx_scale = parse_idx_scale(a.idx_scale);
  job.output_path = a.out;
  return job;
}

void run(const EntkArgs& a) {
  if (!a.explain && a.out.empty()) throw CLI::ValidationError("-o,--output is required (or give --explain)");
  if (a.params.empty() == !a.seed.has_value()) throw CLI::ValidationError("give exactly one of --params FILE or --seed S");
  EntkJob job = make_job(a);
  if (a.explain) {
    job.output_path.clear();  // --explain writes nothing
    std::cout << plan_entk(job).describe();
    return;
  }
  job.progress = terminal_progress("entk", "pairs", false);
  report(run_entk(job), a.quiet);
}

}  // namespace

Subcommand add_entk(CLI::App& app) {
  auto a = std::make_shared<EntkArgs>();
  CLI::App* sub = app.add_subcommand("entk", "Empirical NTK of a network at given or seeded parameters");
  set_long_description(
      sub, "Computes the empirical neural tangent kernel Θ(x1, x2) = J(x1) J(x2)ᵀ of the network SPEC at the "
           "parameters in --params (or drawn with --seed) and writes it as .npy. --mode names what is kept of each "
           "O×O block: full (N1, N2, O, O); trace, the mean over outputs (neural-tangents' default); trace-sum, the "
           "sum (PyTorch tutorial); pntk, the sum-of-logits kernel of Mohamadi et al. = (1/O)·Σ_ab Θ_ab; logit=K, one "
           "output; diagonal (N1, N2, O). --method: jc (Jacobian contraction), vp (NTK-vector products), sd "
           "(structured derivatives), auto (sd). Without --x2 the kernel of x1 with itself is computed on the "
           "symmetric path. Work is tiled over examples; --max-memory bounds the kernel plus working memory and sets "
           "the tile size. Inputs are .npy or IDX files as for 'ntk apply' (IDX bytes scaled to [0, 1] unless "
           "--idx-scale raw).\n\n" +
               spec_help() +
               "\n\nExample:\n"
               "  ntk entk --net 'Dense(512), Relu, Dense(10)' --seed 0 --x1 X.npy --mode pntk -o K.npy");
  add_network_flags(sub, a->net);
  sub->add_option("--params", a->params, "Parameter file (.npz); or give --seed")->type_name("FILE");
  sub->add_option("--seed", a->seed, "Draw the parameters as 'ntk init --seed S' would")->check(kUnsigned)->type_name("S");
  sub->add_option("--x1", a->x1, "Inputs (N1, ...): .npy or IDX")->required()->type_name("FILE");
  sub->add_option("--x2", a->x2, "Second inputs (N2, ...); omitted: x2 = x1, symmetric path")->type_name("FILE");
  sub->add_option("--mode", a->mode, "full (N1,N2,O,O) | trace (mean over outputs) | trace-sum | pntk | logit=K | diagonal (N1,N2,O)")
      ->type_name("MODE")
      ->capture_default_str();
  sub->add_option("--method", a->method, "auto | jc (Jacobian contraction) | vp (NTK-vector products) | sd (structured derivatives)")
      ->check(CLI::IsMember({"auto", "jc", "vp", "sd"}).description(""))
      ->type_name("METHOD")
      ->capture_default_str();
  add_dtype_flag(sub, a->dtype, "Compute type (default: X1's dtype if float32/float64, else float32)");
  add_idx_scale_flag(sub, a->idx_scale);
  add_threads_flag(sub, a->threads);
  add_max_memory_flag(sub, a->max_memory, "Memory budget for the kernel and working buffers, e.g. 4G");
  sub->add_option("--tile", a->tile, "Examples per tile side (default: the largest that fits --max-memory)")
      ->check(CLI::Range(ntk::index_t(1), ntk::index_t(1) << 40).description(""))
      ->type_name("N");
  sub->add_option("-o,--output", a->out, "Kernel to write (.npy)")->type_name("FILE");
  add_get_flag(sub, a->get, "ntk (the empirical NTK) or nngp (the empirical NNGP f(x1) f(x2)ᵀ)");
  sub->add_option("--accumulate", a->accumulate, "float64: compute a float32 kernel in float64 arithmetic")
      ->check(CLI::IsMember({"float32", "float64"}).description(""))
      ->type_name("float64");
  sub->add_flag("--out-of-core", a->out_of_core,
                "Write the kernel straight into the output file, band by band (automatic when it does not fit --max-memory)");
  add_resume_flag(sub, a->resume);
  sub->add_flag("--explain", a->explain, "Print the plan (method, tile, estimated FLOPs and memory of each method) and exit");
  sub->add_flag("-q,--quiet", a->quiet, "Print nothing on success");
  return {sub, [a] { run(*a); }};
}

}  // namespace ntk::cli
