// Jobs for spectra, comparisons and the pNTK report (ntk spectrum, ntk compare, ntk pntk-report):
// the same run policy as ntk/jobs.hpp (inputs from files or memory, dtype, threads, atomic outputs)
// over the library calls of ntk/spectrum.hpp, and the text / JSON renderings the CLI prints, so
// that every front end reports the same fields under the same names.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "ntk/jobs.hpp"
#include "ntk/regress.hpp"
#include "ntk/spectrum.hpp"

namespace ntk {

struct SpectrumJob {
  JobInput k;                  // (N, N) kernel, .npy (memory-mapped when top / bottom are given) or memory
  std::optional<JobInput> y;   // targets for the kernel-target alignment
  // > 0: only this many largest / smallest eigenvalues, by Lanczos over blocks of rows of the
  // memory-mapped file (the kernel is never loaded whole); both 0: every eigenvalue by LAPACK.
  index_t top = 0, bottom = 0;
  index_t ncv = 0, max_iterations = 1000;  // Lanczos settings (0: default basis size)
  int threads = 0;
  std::string output_path;  // eigenvalues (ascending, float64 .npy); empty: none written
};

struct SpectrumJobResult {
  KernelSpectrum spectrum;  // all fields when LAPACK ran; with Lanczos: trace, frobenius, alignment
  bool lanczos = false;
  std::vector<double> top, bottom;  // ascending, Lanczos only
  LanczosResult top_run, bottom_run;
  std::string output_path;
  std::string text() const;  // "key: value" lines
  std::string json() const;  // one JSON object (non-finite numbers as null)
};
SpectrumJobResult run_spectrum(const SpectrumJob& job);

struct CompareJob {
  JobInput a, b;  // A compared with the reference B (ntk/spectrum.hpp's compare for the shapes)
  bool spectra = true;
  int threads = 0;
};

struct CompareJobResult {
  KernelComparison comparison;
  std::string text() const;
  std::string json() const;
};
CompareJobResult run_compare(const CompareJob& job);

struct PntkReportJob {
  NetworkRequest net;
  ParamSource params;
  JobInput x_train, y_train, x_test, y_test;  // y: class labels (one-hot over the outputs) or (N, O) targets
  PntkReportOptions options;
  std::optional<DType> dtype;  // nullopt: float64 if x_train is float64, else float32
  InputOptions input;
  std::string output_path;  // the report as JSON; empty: none written
};

struct PntkReportJobResult {
  PntkReport report;
  std::string spec;  // the network as parsed
  std::string dtype;
  std::string output_path;
  std::string text() const;
  std::string json() const;
};
PntkReportJobResult run_pntk_report(const PntkReportJob& job);

}  // namespace ntk
