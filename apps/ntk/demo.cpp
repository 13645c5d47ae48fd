// ntk demo: the main job, written in Python (ntkit.demo: PyTorch, neural-tangents and matplotlib
// live there), started from here so that `ntk demo` is the one command a newcomer types. This file
// only finds a Python that has the package and replaces this process with it; every argument after
// `demo`, --help included, is the demo's own.
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "flags.hpp"
#include "ntk/error.hpp"

namespace ntk::cli {

namespace {

// Imports the demo, or says in one line how to get it.
constexpr const char* kLauncher =
    "import sys\n"
    "try:\n"
    "    from ntkit.demo import main\n"
    "except ImportError as e:\n"
    "    sys.exit(f\"error: ntk demo runs the Python package ntkit, which {sys.executable} cannot import ({e}); \"\n"
    "             \"install it with 'pip install .' from the source tree (scripts/run.sh does) or set NTKIT_PYTHON \"\n"
    "             \"to a Python that has it\")\n"
    "sys.exit(main(sys.argv[1:]))\n";

// NTKIT_PYTHON; else the python3 beside this executable (pip installs ntk into the environment's
// bin/, next to its Python); else python3 on PATH.
std::string find_python() {
  if (const char* env = std::getenv("NTKIT_PYTHON"); env && *env) return env;
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const std::filesystem::path beside = self.parent_path() / "python3";
    if (::access(beside.c_str(), X_OK) == 0) return beside.string();
  }
  return "python3";
}

}  // namespace

Subcommand add_demo(CLI::App& app) {
  auto args = std::make_shared<std::vector<std::string>>();
  CLI::App* sub = app.add_subcommand(
      "demo", "The three papers' claims on Fashion-MNIST, measured live: a report with JSON and plots");
  set_long_description(
      sub, "Runs ntkit.demo (the Python package): the empirical NTK's methods beside PyTorch functorch and JAX "
           "neural-tangents, the pNTK against the full eNTK over readout widths and after training, and exact "
           "NTK / CNTK kernel ridge against the sketches as the feature dimension grows. Writes report.md, "
           "results.json and PNG plots. 'ntk demo --help' lists the demo's own options (--out, --quick, --full, "
           "--threads, --nt-python). The Python is $NTKIT_PYTHON, else the python3 beside this ntk, else python3 on "
           "PATH.");
  sub->set_help_flag();  // --help goes to the demo's own parser
  sub->prefix_command();
  sub->allow_extras();
  return {sub, [sub, args] {
            const std::string python = find_python();
            std::vector<std::string> argv = {python, "-c", kLauncher};
            for (const std::string& a : sub->remaining()) argv.push_back(a);
            std::vector<char*> c_argv;
            for (std::string& a : argv) c_argv.push_back(a.data());
            c_argv.push_back(nullptr);
            ::execvp(c_argv[0], c_argv.data());
            throw Error("ntk demo: cannot start " + python + " (" + std::strerror(errno) +
                        "); it needs Python 3 with the package ntkit: run scripts/run.sh, or 'pip install .' and set "
                        "NTKIT_PYTHON to that environment's python");
          }};
}

}  // namespace ntk::cli
