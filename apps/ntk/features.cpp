// ntk features: flags -> FeaturesJob -> run_features.
#include <memory>
#include <optional>

#include "flags.hpp"
#include "ntk/jobs_features.hpp"

namespace ntk::cli {

namespace {

struct FeaturesArgs {
  NetworkFlags net;
  std::string params, mode = "pntk", projection = "srht";
  std::optional<std::uint64_t> init_seed;
  std::string sketch = "ntk", transform, padding = "SAME", x, out, dtype = "float32", max_memory, idx_scale = "unit";
  int depth = 1, degree = 0, filter = 3, threads = 0;
  ntk::index_t dim = 4096, poly_dim = 0, relu_dim = 0, step_dim = 0;
  std::uint64_t seed = 0;
  bool plain = false, separate = false, flatten = false, layerwise = false, quiet = false, resume = false;
};

void run(const FeaturesArgs& a) {
  FeaturesJob job;
  job.sketch = a.sketch;
  job.depth = a.depth;
  job.dim = a.dim;
  job.degree = a.degree;
  job.filter = a.filter;
  job.layerwise = a.layerwise;
  job.same = a.padding == "SAME";
  job.poly_dim = a.poly_dim;
  job.relu_dim = a.relu_dim;
  job.step_dim = a.step_dim;
  job.leverage = !a.plain;
  job.shared_projection = !a.separate;
  job.seed = a.seed;
  if (!a.transform.empty())
    job.transform = a.transform == "hadamard" ? SketchTransform::hadamard : SketchTransform::fourier;
  job.flatten = a.flatten;
  if (a.sketch == "gradient") {
    if (a.net.spec.empty()) throw CLI::ValidationError("--sketch gradient needs --net SPEC");
    if (a.params.empty() == !a.init_seed.has_value())
      throw CLI::ValidationError("--sketch gradient needs exactly one of --params FILE or --init-seed S");
    job.net = a.net.request();
    job.params.path = a.params;
    job.params.seed = a.init_seed;
    job.mode = parse_entk_mode(a.mode);
    job.projection = a.projection == "countsketch" ? GradientProjection::countsketch
                     : a.projection == "hadamard"  ? GradientProjection::hadamard
                                                   : GradientProjection::srht;
  } else if (!a.net.spec.empty() || !a.params.empty() || a.init_seed) {
    throw CLI::ValidationError("--net, --params and --init-seed are for --sketch gradient");
  }
  job.x = JobInput::file(a.x, "-x '" + a.x + "'");
  job.input.idx_scale = parse_idx_scale(a.idx_scale);
  job.dtype = parse_float_dtype(a.dtype);
  job.threads = a.threads;
  job.max_memory = max_memory_bytes(a.max_memory);
  if (!a.quiet) job.progress = terminal_progress("features", "rows", true);
  job.output_path = a.out;
  job.resume = a.resume;
  report(run_features(job), a.quiet);
}

}  // namespace

Subcommand add_features(CLI::App& app) {
  auto a = std::make_shared<FeaturesArgs>();
  CLI::App* sub = app.add_subcommand("features", "Random features / sketches of the infinite-width ReLU NTK");
  set_long_description(
      sub, "Writes features F (N, M) with F·Fᵀ ≈ the infinite-width NTK, in neural-tangents' convention, of "
           "[Dense(k, W_std=√2, no bias), Relu] repeated --depth times then Dense(k, no bias) -- the arc-cosine NTK of "
           "Zandieh et al. divided by the input dimension, with no extra factor. --sketch ntk: NTKSketch (one pass): a "
           "non-negative, monotone polynomial of degree --degree fitted to the depth-L NTK function, PolySketch of the "
           "normalized input for every degree, combined by an SRHT (its only bias is the fit's error). --sketch ntkrf: "
           "NTKRF, arc-cosine random features per layer (order 1 by leverage-score sampling unless --plain-sampling) "
           "joined by TensorSRHTs. Features depend only on --seed and the input row, not on threads or batches; "
           "train and test features must come from the same seed. Inputs are vectors (N, d), .npy or IDX; images "
           "need --flatten. --sketch cntk: CNTKSketch of images (N, H, W, C), F·Fᵀ ≈ the CNTK with global average "
           "pooling of [Conv(k, --filter, padding=--padding, W_std=√2, no bias), Relu] x --depth, GlobalAvgPool, "
           "Dense(k, no bias) in neural-tangents' convention (ntk kernel computes it exactly); M/2 features for the NNGP "
           "part and M/2 for the NTK part. --sketch gradient: per-example gradients of the network --net at --params or --init-seed, "
           "for the empirical kernel of --mode (pntk: of Σ_a f_a/√O, so F·Fᵀ ≈ the pNTK; logit=K; full: one row per "
           "output, F[i, a]·F[j, b] ≈ eNTK[i, j, a, b]), projected to M by --projection; inputs keep their shape (images "
           "NHWC). Use the features with 'ntk regress --f-train F.npy --f-test FT.npy'.\n\n"
           "Example:\n"
           "  ntk features --sketch ntk --depth 2 --dim 8192 --seed 0 -x X.npy -o F.npy\n"
           "  ntk features --sketch ntkrf --depth 2 --dim 8192 --flatten -x train-images-idx3-ubyte.gz -o F.npy\n"
           "  ntk features --sketch cntk --depth 3 --dim 4096 -x train-images-idx3-ubyte.gz -o F.npy\n"
           "  ntk features --sketch gradient --net 'Conv(64, 3, padding=SAME), Relu, GlobalAvgPool, Dense(10)' "
           "--init-seed 0 --dim 16384 -x images.npy -o G.npy");
  sub->add_option("--sketch", a->sketch,
                  "ntk (NTKSketch), ntkrf (NTKRF), cntk (CNTKSketch of images) or gradient (a network's per-example gradients)")
      ->check(CLI::IsMember({"ntk", "ntkrf", "cntk", "gradient"}).description(""))
      ->type_name("ntk|ntkrf|cntk|gradient")
      ->capture_default_str();
  sub->add_option("--depth", a->depth, "Hidden ReLU layers L")
      ->check(CLI::Range(1, 64).description(""))
      ->type_name("L")
      ->capture_default_str();
  sub->add_option("--dim", a->dim, "Features per example M (even)")
      ->check(CLI::Range(ntk::index_t(2), ntk::index_t(1) << 30).description(""))
      ->type_name("M")
      ->capture_default_str();
  sub->add_option("--degree", a->degree, "ntk / cntk: degree of the fitted polynomials, a power of two (default 8 / 2)")
      ->type_name("Q");
  sub->add_flag("--layerwise", a->layerwise,
                "ntk: the layer-wise NTKSketch (the paper's Algorithm 1: per layer a PolySketch of the NNGP features "
                "with κ1 / κ0 fits on shrinking intervals; default degree 2) instead of the one-pass variant");
  sub->add_option("--filter", a->filter, "cntk: filter size f (f x f)")->type_name("F")->capture_default_str();
  sub->add_option("--padding", a->padding, "cntk: SAME or VALID")
      ->check(CLI::IsMember({"SAME", "VALID"}).description(""))
      ->type_name("SAME|VALID")
      ->capture_default_str();
  sub->add_option("--poly-dim", a->poly_dim, "NTKSketch: width of the PolySketch tree (default M/4)")->type_name("P");
  sub->add_option("--relu-dim", a->relu_dim, "NTKRF: order-1 features per layer (default M/2; the rest are the tensor sketch)")
      ->type_name("M1");
  sub->add_option("--step-dim", a->step_dim, "NTKRF: order-0 (ReLU derivative) features per layer (default: --relu-dim)")
      ->type_name("M0");
  sub->add_flag("--plain-sampling", a->plain, "NTKRF: Gaussian order-1 features instead of leverage-score sampling");
  sub->add_flag("--separate-projections", a->separate,
                "NTKRF: draw the step features' projections apart from the ReLU features' (the paper's map; by default "
                "they share them: one matrix product per layer instead of two, as accurate in our measurements)");
  sub->add_option("--transform", a->transform,
                  "Transform of the SRHTs: fourier (complex FFT, kissfft) or hadamard (real Walsh-Hadamard, faster); "
                  "default fourier for ntk, hadamard for ntkrf and cntk (measured faster there; README)")
      ->check(CLI::IsMember({"fourier", "hadamard"}).description(""))
      ->type_name("fourier|hadamard");
  sub->add_option("--seed", a->seed, "Seed of the random map")->type_name("S")->capture_default_str();
  add_network_flags(sub, a->net, false);
  sub->add_option("--params", a->params, "gradient: the network's parameters (.npz)")->type_name("FILE");
  sub->add_option("--init-seed", a->init_seed, "gradient: draw the parameters as 'ntk init --seed S' would")->type_name("S");
  sub->add_option("--mode", a->mode, "gradient: pntk, logit=K, or full (features (N, O, M), one per output)")
      ->type_name("pntk|logit=K|full")
      ->capture_default_str();
  sub->add_option("--projection", a->projection, "gradient: srht (Fourier), hadamard or countsketch, P -> M")
      ->check(CLI::IsMember({"srht", "hadamard", "countsketch"}).description(""))
      ->type_name("srht|hadamard|countsketch")
      ->capture_default_str();
  sub->add_flag("--flatten", a->flatten, "Use images (N, H, W, C) as vectors of H·W·C");
  sub->add_option("-x", a->x, "Inputs (N, d): .npy or IDX")->required()->type_name("FILE");
  sub->add_option("--dtype", a->dtype, "Output type (features are computed in float64)")
      ->check(CLI::IsMember({"float32", "float64"}).description(""))
      ->type_name("float32|float64")
      ->capture_default_str();
  add_idx_scale_flag(sub, a->idx_scale);
  add_threads_flag(sub, a->threads);
  add_max_memory_flag(sub, a->max_memory, "Memory budget for the inputs and working buffers, e.g. 4G");
  sub->add_option("-o,--output", a->out, "Features to write (.npy), (N, M)")->required()->type_name("FILE");
  add_resume_flag(sub, a->resume);
  sub->add_flag("-q,--quiet", a->quiet, "Print nothing on success");
  return {sub, [a] { run(*a); }};
}

}  // namespace ntk::cli
