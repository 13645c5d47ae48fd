// ntk spectrum: flags -> SpectrumJob -> run_spectrum; prints the diagnostics as text or JSON.
#include <iostream>
#include <memory>

#include "flags.hpp"
#include "ntk/jobs_spectrum.hpp"

namespace ntk::cli {

namespace {

struct SpectrumArgs {
  std::string k, y, out;
  ntk::index_t top = 0, bottom = 0, ncv = 0, max_iterations = 1000;
  int threads = 0;
  bool json = false;
};

void run(const SpectrumArgs& a) {
  SpectrumJob job;
  job.k = JobInput::file(a.k, "--k '" + a.k + "'");
  if (!a.y.empty()) job.y = JobInput::file(a.y, "--y '" + a.y + "'");
  job.top = a.top;
  job.bottom = a.bottom;
  job.ncv = a.ncv;
  job.max_iterations = a.max_iterations;
  job.threads = a.threads;
  job.output_path = a.out;
  const SpectrumJobResult r = run_spectrum(job);
  std::cout << (a.json ? r.json() + "\n" : r.text());
}

}  // namespace

Subcommand add_spectrum(CLI::App& app) {
  auto a = std::make_shared<SpectrumArgs>();
  CLI::App* sub = app.add_subcommand("spectrum", "Eigenvalues and diagnostics of a kernel");
  set_long_description(
      sub, "Reads a symmetric (N, N) kernel (.npy, float32 or float64) and prints λmax, λmin, the condition number "
           "λmax/λmin (inf when λmin <= 0), the effective rank exp(entropy of λ/Σλ over the positive eigenvalues), "
           "trace/λmax, the trace, the Frobenius norm and, with --y, the kernel-target alignment "
           "<K, YYᵀ>_F / (‖K‖_F ‖YYᵀ‖_F) (uncentered; integer class labels become one-hot rows). Without --top / "
           "--bottom every eigenvalue is computed by LAPACK in float64 (the kernel must fit in memory twice over). "
           "With --top K and/or --bottom K only that many largest / smallest eigenvalues are computed by Lanczos "
           "over the memory-mapped file, one block of rows at a time, so kernels larger than memory work; then the "
           "effective rank is not available. -o writes the eigenvalues computed (ascending, float64).\n\n"
           "Example:\n"
           "  ntk spectrum --k K.npy --y labels.npy --json\n"
           "  ntk spectrum --k K60k.npy --top 10 -o top10.npy");
  sub->add_option("--k", a->k, "Kernel (N, N): .npy")->required()->type_name("FILE");
  sub->add_option("--y", a->y, "Targets (N,) / (N, O), or integer class labels (N,), for the alignment")->type_name("FILE");
  sub->add_option("--top", a->top, "Only the K largest eigenvalues, by Lanczos on the memory-mapped kernel")
      ->check(CLI::Range(ntk::index_t(1), ntk::index_t(1) << 40).description(""))
      ->type_name("K");
  sub->add_option("--bottom", a->bottom, "Only the K smallest eigenvalues, by Lanczos (slower to converge)")
      ->check(CLI::Range(ntk::index_t(1), ntk::index_t(1) << 40).description(""))
      ->type_name("K");
  sub->add_option("--ncv", a->ncv, "Lanczos basis size (default max(2K+1, 20)); raise it if Lanczos does not converge")
      ->check(CLI::Range(ntk::index_t(2), ntk::index_t(1) << 40).description(""))
      ->type_name("M");
  sub->add_option("--max-iterations", a->max_iterations, "Lanczos restarts")
      ->check(CLI::Range(ntk::index_t(1), ntk::index_t(1) << 40).description(""))
      ->type_name("N")
      ->capture_default_str();
  add_threads_flag(sub, a->threads);
  sub->add_flag("--json", a->json, "Print one JSON object instead of text");
  sub->add_option("-o,--output", a->out, "Eigenvalues to write (.npy, ascending)")->type_name("FILE");
  return {sub, [a] { run(*a); }};
}

}  // namespace ntk::cli
