#include "flags.hpp"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>

#include "ntk/layer.hpp"

namespace ntk::cli {

// ---------------------------------------------------------------------------------------------
// Help

namespace {

std::map<const CLI::App*, std::string>& long_descriptions() {
  static std::map<const CLI::App*, std::string> d;
  return d;
}

// Wraps prose lines at `width` columns; indented lines (examples) stay as they are.
std::string wrap(const std::string& text, size_t width) {
  std::string out, line;
  std::istringstream lines(text);
  while (std::getline(lines, line)) {
    if (line.starts_with(" ") || line.size() <= width) {
      out += line + "\n";
      continue;
    }
    std::istringstream words(line);
    std::string word, current;
    while (words >> word) {
      if (!current.empty() && current.size() + 1 + word.size() > width) {
        out += current + "\n";
        current.clear();
      }
      current += (current.empty() ? "" : " ") + word;
    }
    out += current + "\n";
  }
  return out;
}

}  // namespace

void set_long_description(const CLI::App* app, std::string text) { long_descriptions()[app] = std::move(text); }

std::string Formatter::make_description(const CLI::App* app) const {
  auto it = long_descriptions().find(app);
  if (it == long_descriptions().end()) return CLI::Formatter::make_description(app);
  return wrap(it->second, 96) + "\n";
}

std::string spec_help() {
  std::string names;
  for (const std::string& name : layer_names()) names += (names.empty() ? "" : ", ") + name;
  return "SPEC is a comma-separated list of layers, `Name` or `Name(args)`, e.g. "
         "'Conv(32, 3), Relu, GlobalAvgPool, Dense(10)'. Layers: " +
         names +
         ". Arguments: Dense(out), Conv(out_channels, kernel, stride=1, padding=VALID|SAME|p|pHxpW), LeakyRelu(alpha), "
         "AvgPool(window, stride=window, padding=VALID|SAME|p|pHxpW) (an integer padding p is PyTorch's: p zeros "
         "on each side, at most half the window), Residual(layers..., shortcut=[layers...]) (block(x) + shortcut(x), the identity when "
         "no shortcut is given); Dense and Conv also take W_std, b_std (none = no bias) and "
         "parameterization=ntk|standard; --W-std, --b-std and --parameterization set these for the whole network "
         "and a layer's own argument wins.";
}

// ---------------------------------------------------------------------------------------------
// Validators

std::optional<double> parse_finite(const std::string& s) {
  if (s.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || errno == ERANGE || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::optional<Shape> parse_shape(const std::string& s) {
  Shape shape;
  size_t start = 0;
  while (true) {
    size_t comma = s.find(',', start);
    std::string part = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    while (!part.empty() && part.front() == ' ') part.erase(part.begin());
    while (!part.empty() && part.back() == ' ') part.pop_back();
    if (part.empty() || part.find_first_not_of("0123456789") != std::string::npos || part.size() > 12) return std::nullopt;
    long long d = std::stoll(part);
    if (d < 1) return std::nullopt;
    shape.push_back(d);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return shape;
}

const CLI::Validator kFiniteNumber(
    [](std::string& s) -> std::string { return parse_finite(s) ? "" : "must be a finite number, got '" + s + "'"; },
    "", "finite number");
const CLI::Validator kNumberOrNone(
    [](std::string& s) -> std::string {
      if (s == "none" || s == "None" || parse_finite(s)) return "";
      return "must be a finite number or 'none', got '" + s + "'";
    },
    "", "number or none");
const CLI::Validator kUnsigned(
    [](std::string& s) -> std::string {
      if (s.empty() || s.size() > 20 || s.find_first_not_of("0123456789") != std::string::npos ||
          (s.size() == 20 && s > "18446744073709551615"))
        return "must be an integer from 0 to 18446744073709551615, got '" + s + "'";
      return "";
    },
    "", "unsigned");
const CLI::Validator kShape(
    [](std::string& s) -> std::string {
      return parse_shape(s) ? "" : "must be positive integers separated by commas (e.g. 784 or 28,28,1), got '" + s + "'";
    },
    "", "shape");
const CLI::Validator kBytes(
    [](std::string& s) -> std::string {
      return parse_bytes(s) ? "" : "must be a size such as 4G, 512M or a number of bytes, got '" + s + "'";
    },
    "", "size");

// ---------------------------------------------------------------------------------------------
// Flags

NetworkRequest NetworkFlags::request() const {
  NetworkRequest r;
  r.spec = spec;
  r.defaults.W_std = *parse_finite(W_std);
  if (b_std != "none" && b_std != "None") r.defaults.b_std = *parse_finite(b_std);
  r.defaults.parameterization = parse_parameterization(parameterization);
  return r;
}

void add_network_flags(CLI::App* sub, NetworkFlags& f, bool required) {
  CLI::Option* net = sub->add_option("--net", f.spec, "Network spec, e.g. 'Dense(512), Relu, Dense(10)' (quote it)")
                         ->type_name("SPEC");
  if (required) net->required();
  sub->add_option("--W-std", f.W_std, "Default weight standard deviation of Dense/Conv layers")
      ->check(kFiniteNumber)
      ->type_name("NUMBER")
      ->capture_default_str();
  sub->add_option("--b-std", f.b_std, "Default bias standard deviation; 'none' = no bias")
      ->check(kNumberOrNone)
      ->type_name("NUMBER|none")
      ->capture_default_str();
  sub->add_option("--parameterization", f.parameterization, "Default parameterization of Dense/Conv layers")
      ->check(CLI::IsMember({"ntk", "standard"}).description(""))
      ->type_name("ntk|standard")
      ->capture_default_str();
}

void add_dtype_flag(CLI::App* sub, std::string& dtype, const std::string& what) {
  sub->add_option("--dtype", dtype, what)
      ->check(CLI::IsMember({"float32", "float64"}).description(""))
      ->type_name("float32|float64");
}

std::optional<DType> dtype_or_default(const std::string& dtype) {
  if (dtype.empty()) return std::nullopt;
  return parse_float_dtype(dtype);
}

void add_threads_flag(CLI::App* sub, int& threads) {
  sub->add_option("--threads", threads, "Threads (default: all cores)")
      ->check(CLI::Range(1, 4096).description(""))
      ->type_name("T");
}

void add_resume_flag(CLI::App* sub, bool& resume) {
  sub->add_flag("--resume", resume,
                "Continue an interrupted run of this same command from the checkpoint beside its output "
                "(OUTPUT.ntk-checkpoint, kept while a run writes its output band by band); implies --out-of-core "
                "where the command has it");
}

void add_get_flag(CLI::App* sub, std::string& get, const std::string& what) {
  sub->add_option("--get", get, what)
      ->check(CLI::IsMember({"ntk", "nngp"}).description(""))
      ->type_name("ntk|nngp")
      ->capture_default_str();
}

void add_max_memory_flag(CLI::App* sub, std::string& max_memory, const std::string& what) {
  sub->add_option("--max-memory", max_memory, what)->check(kBytes)->type_name("SIZE");
}

std::uint64_t max_memory_bytes(const std::string& max_memory) {
  return max_memory.empty() ? 0 : *parse_bytes(max_memory);
}

void add_idx_scale_flag(CLI::App* sub, std::string& idx_scale) {
  sub->add_option("--idx-scale", idx_scale,
                  "IDX unsigned-byte images (MNIST pixels): unit = value/255 in [0, 1] as torchvision's ToTensor, "
                  "raw = 0..255 as stored; .npy inputs are never rescaled")
      ->check(CLI::IsMember({"unit", "raw"}).description(""))
      ->type_name("unit|raw")
      ->capture_default_str();
}

ProgressFn terminal_progress(const std::string& label, const std::string& unit, bool with_time) {
  if (!isatty(STDERR_FILENO)) return {};
  const auto start = std::chrono::steady_clock::now();
  return [label, unit, with_time, start](index_t done, index_t total) {
    std::fprintf(stderr, "\r%s: %lld/%lld %s (%.0f%%)", label.c_str(), static_cast<long long>(done),
                 static_cast<long long>(total), unit.c_str(), 100.0 * double(done) / double(total));
    if (with_time) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::fprintf(stderr, ", %.0f s, about %.0f s left", s, done > 0 ? s * double(total - done) / double(done) : 0.0);
    }
    if (done == total) std::fprintf(stderr, "\n");
  };
}

void report(const JobResult& result, bool quiet, bool verbose) {
  if (verbose) std::cout << result.network_summary << "\n";
  if (!quiet) std::cout << result.summary << "\n";
}

}  // namespace ntk::cli
