// ntk compare: flags -> CompareJob -> run_compare; prints the comparison as text or JSON.
#include <iostream>
#include <memory>

#include "flags.hpp"
#include "ntk/jobs_spectrum.hpp"

namespace ntk::cli {

namespace {

struct CompareArgs {
  std::string a, b;
  int threads = 0;
  bool json = false;
  bool no_spectra = false;
};

void run(const CompareArgs& a) {
  CompareJob job;
  job.a = JobInput::file(a.a, "--k '" + a.a + "'");
  job.b = JobInput::file(a.b, "--ref '" + a.b + "'");
  job.spectra = !a.no_spectra;
  job.threads = a.threads;
  const CompareJobResult r = run_compare(job);
  std::cout << (a.json ? r.json() + "\n" : r.text());
}

}  // namespace

Subcommand add_compare(CLI::App& app) {
  auto a = std::make_shared<CompareArgs>();
  CLI::App* sub = app.add_subcommand("compare", "Distance between two kernels, and their λmax and condition ratios");
  set_long_description(
      sub, "Compares the kernel --k A with the reference --ref B (.npy, float32 or float64): the relative Frobenius "
           "distance ‖A−B‖_F/‖B‖_F and, for square kernels, λmax, λmin and condition numbers with the ratios A/B. "
           "Both kernels are (N, M), or both full eNTKs (N, M, O, O) (read as (N·O × M·O) matrices with index "
           "(n, a)), or one is (N, M) and the other full: then the 2-D one is read as K ⊗ I_O, e.g. a pNTK "
           "(ntk entk --mode pntk) against the full eNTK (--mode full) of Mohamadi et al., without forming the "
           "Kronecker product.\n\n"
           "Example:\n"
           "  ntk compare --k K_pntk.npy --ref K_full.npy --json");
  sub->add_option("--k", a->a, "Kernel A: (N, M) or (N, M, O, O) .npy")->required()->type_name("FILE");
  sub->add_option("--ref", a->b, "Reference kernel B: (N, M) or (N, M, O, O) .npy")->required()->type_name("FILE");
  sub->add_flag("--no-spectra", a->no_spectra, "Distances only (no eigenvalues)");
  add_threads_flag(sub, a->threads);
  sub->add_flag("--json", a->json, "Print one JSON object instead of text");
  return {sub, [a] { run(*a); }};
}

}  // namespace ntk::cli
