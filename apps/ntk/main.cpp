// ntk: the command-line face of ntkit. Deliberately thin: each subcommand (init.cpp, apply.cpp,
// entk.cpp, kernel.cpp, regress.cpp, spectrum.cpp, compare.cpp, pntk_report.cpp, features.cpp) maps its flags onto a job of
// ntk/jobs.hpp, which holds all run policy (demo.cpp starts the Python demo instead);
// this file dispatches and turns every failure into one "error: ..." line on stderr with the exit
// status of DESIGN.md (0 success, 2 usage error, 1 anything else). Outputs are written only after
// the computation succeeded, through the library's atomic writers, so a failed command leaves no
// file behind.
#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "flags.hpp"
#include "ntk/error.hpp"
#include "ntk/jobs.hpp"

namespace {

// Messages must fit the one-line contract whatever produced them.
std::string one_line(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\n' || c == '\r') {
      while (!out.empty() && out.back() == ' ') out.pop_back();
      if (!out.empty() && out.back() != ';' && out.back() != ':') out += ';';
      out += ' ';
    } else {
      out += c;
    }
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == ';')) out.pop_back();
  return out;
}

int fail(const std::string& message, int status) {
  std::cout.flush();
  std::cerr << "error: " << one_line(message) << std::endl;
  return status;
}

// The subcommand the user was in, for the "run 'ntk SUB --help'" hint.
std::string help_hint(const CLI::App& app) {
  for (const CLI::App* sub : app.get_subcommands({}))
    if (sub->parsed() > 0) return "run 'ntk " + sub->get_name() + " --help' for usage";
  return "run 'ntk --help' for usage";
}

int cli_error(const CLI::App& app, const CLI::ParseError& e) {
  std::string what = e.what();
  std::string names;
  bool in_sub = false;
  for (const CLI::App* sub : app.get_subcommands({})) {
    names += (names.empty() ? "" : ", ") + sub->get_name();
    in_sub = in_sub || sub->parsed() > 0;
  }
  if (dynamic_cast<const CLI::RequiredError*>(&e)) {
    // CLI11 checks required options before unexpected ones; a misspelt flag is the likelier
    // cause of both, so name it first.
    const std::vector<std::string> extra = app.remaining(true);
    if (!extra.empty()) {
      std::string list;
      for (const auto& x : extra) list += (list.empty() ? "'" : ", '") + x + "'";
      if (in_sub || extra.front().starts_with("-"))
        what = "unexpected argument" + std::string(extra.size() > 1 ? "s " : " ") + list;
      else
        what = "unknown subcommand '" + extra.front() + "' (known: " + names + ")";
    } else if (!in_sub) {
      what = "a subcommand is required (" + names + ")";
    }
  }
  return fail(what + "; " + help_hint(app), 2);
}

}  // namespace

int main(int argc, char** argv) {
  ntk::keep_freed_memory_for_reuse();
  CLI::App app;
  app.name("ntk");
  app.formatter(std::make_shared<ntk::cli::Formatter>());
  app.description("ntk: neural networks from a spec, and their tangent kernels");
  ntk::cli::set_long_description(
      &app,
      "ntk computes with neural networks given as a one-line spec: it initializes their parameters, applies them to "
      "data, computes their empirical and infinite-width neural tangent kernels, and uses kernels: regression and "
      "training dynamics (regress), spectra (spectrum), comparisons (compare, pntk-report), and computes feature maps "
      "that approximate kernels (features); 'ntk demo' shows the three papers' claims on Fashion-MNIST. Arrays are NumPy .npy files (float32 or float64, "
      "examples along the first axis, images NHWC) or IDX files (MNIST style; bytes scaled to [0, 1] unless "
      "--idx-scale raw); parameters are .npz files with one array per parameter ('<layer index>.W', "
      "'<layer index>.b'). Exit status: 0 success, 1 failure, 2 usage error; errors are one line on stderr starting "
      "with 'error:'. Run 'ntk SUBCOMMAND --help' for details.\n\n"
      "Example:\n"
      "  ntk init --net 'Dense(512), Relu, Dense(10)' --input-shape 784 -o params.npz\n"
      "  ntk apply --net 'Dense(512), Relu, Dense(10)' --params params.npz -x X.npy -o Y.npy");
  app.set_version_flag("--version", std::string("ntk ") + NTK_VERSION, "Print the version and exit");
  app.require_subcommand(1);
  const ntk::cli::Subcommand subcommands[] = {ntk::cli::add_init(app), ntk::cli::add_apply(app),
                                              ntk::cli::add_entk(app), ntk::cli::add_kernel(app),
                                              ntk::cli::add_regress(app),
                                              ntk::cli::add_spectrum(app), ntk::cli::add_compare(app),
                                              ntk::cli::add_pntk_report(app), ntk::cli::add_features(app),
                                              ntk::cli::add_demo(app)};

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    return cli_error(app, e);
  }

  bool init = false;
  try {
    for (const auto& sub : subcommands)
      if (*sub.app) {
        init = sub.app->get_name() == "init";
        sub.run();
      }
  } catch (const CLI::ValidationError& e) {
    return fail(std::string(e.what()) + "; " + help_hint(app), 2);
  } catch (const ntk::ParseError& e) {
    return fail(std::string("--net: ") + e.what(), 2);
  } catch (const std::bad_alloc&) {
    return fail(init ? "out of memory: the network's parameters do not fit; use a smaller network"
                     : "out of memory; use fewer examples per file, a smaller network or --dtype float32",
                1);
  } catch (const std::exception& e) {
    return fail(e.what(), 1);
  } catch (...) {
    return fail("unexpected internal failure; please report it with the command line that caused it", 1);
  }
  return 0;
}
