// What the subcommands of ntk share: flag validators, the flags every subcommand with --net takes,
// the dtype / threads / memory / input flags, the help formatter, and progress on a terminal. Each
// subcommand (init.cpp, apply.cpp, entk.cpp, kernel.cpp) maps its flags onto a job of
// ntk/jobs.hpp and prints the job's one-line result.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "ntk/array.hpp"
#include "ntk/io.hpp"
#include "ntk/jobs.hpp"

namespace ntk::cli {

// A subcommand as main() sees it: its CLI11 app and what to run once its flags are parsed.
struct Subcommand {
  CLI::App* app = nullptr;
  std::function<void()> run;
};
Subcommand add_init(CLI::App& app);
Subcommand add_apply(CLI::App& app);
Subcommand add_entk(CLI::App& app);
Subcommand add_kernel(CLI::App& app);
Subcommand add_regress(CLI::App& app);
Subcommand add_spectrum(CLI::App& app);
Subcommand add_compare(CLI::App& app);
Subcommand add_pntk_report(CLI::App& app);
Subcommand add_features(CLI::App& app);
Subcommand add_demo(CLI::App& app);

// ---------------------------------------------------------------------------------------------
// Help. CLI11 shows a subcommand's description both in `ntk --help` (where it must stay one short
// line) and at the top of `ntk SUB --help` (where a paragraph helps); the formatter puts the
// paragraph registered here in place of the short line.

// Registers the paragraph `ntk SUB --help` shows for the subcommand (or, for the top-level app, `ntk --help`).
void set_long_description(const CLI::App* app, std::string text);
// The spec grammar, with the layer names read from the registry.
std::string spec_help();

class Formatter : public CLI::Formatter {
 public:
  std::string make_description(const CLI::App* app) const override;
};

// ---------------------------------------------------------------------------------------------
// Validators and parsing.

std::optional<double> parse_finite(const std::string& s);
std::optional<Shape> parse_shape(const std::string& s);

extern const CLI::Validator kFiniteNumber, kNumberOrNone, kUnsigned, kShape, kBytes;

// ---------------------------------------------------------------------------------------------
// Flags.

// The network-wide defaults every subcommand with --net takes.
struct NetworkFlags {
  std::string spec;
  std::string W_std = "1";
  std::string b_std = "none";
  std::string parameterization = "ntk";

  NetworkRequest request() const;
};
// --net (required unless said otherwise) and the network-wide defaults.
void add_network_flags(CLI::App* sub, NetworkFlags& f, bool required = true);

// --dtype float32|float64; an empty string means the subcommand's default.
void add_dtype_flag(CLI::App* sub, std::string& dtype, const std::string& what);
std::optional<DType> dtype_or_default(const std::string& dtype);

void add_threads_flag(CLI::App* sub, int& threads);
// --resume: continue an interrupted run from the checkpoint beside its output.
void add_resume_flag(CLI::App* sub, bool& resume);
void add_get_flag(CLI::App* sub, std::string& get, const std::string& what);
void add_max_memory_flag(CLI::App* sub, std::string& max_memory, const std::string& what);
std::uint64_t max_memory_bytes(const std::string& max_memory);  // "" -> 0, no limit

// --idx-scale unit|raw for subcommands that read inputs.
void add_idx_scale_flag(CLI::App* sub, std::string& idx_scale);

// (done, total) on stderr when it is a terminal, else nothing: "\rLABEL: done/total UNIT (P%)",
// with elapsed and remaining seconds when with_time.
ProgressFn terminal_progress(const std::string& label, const std::string& unit, bool with_time);

// Prints the network when verbose, then the job's one-line result unless quiet.
void report(const JobResult& result, bool quiet, bool verbose = false);

}  // namespace ntk::cli
