// ntk: the command-line face of ntkit. Deliberately thin: it parses flags, calls the library and
// turns every failure into one "error: ..." line on stderr with the exit status of DESIGN.md
// (0 success, 2 usage error, 1 anything else). Outputs are written only after the computation
// succeeded, through the library's atomic writers, so a failed command leaves no file behind.
#include <cblas.h>
#include <malloc.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <array>
#include <cerrno>
#include <cmath>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <type_traits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "ntk/array.hpp"
#include "ntk/empirical.hpp"
#include "ntk/error.hpp"
#include "ntk/infinite.hpp"
#include "ntk/io.hpp"
#include "ntk/layer.hpp"
#include "ntk/network.hpp"
#include "ntk/parallel.hpp"
#include "ntk/spec.hpp"

namespace {

// ---------------------------------------------------------------------------------------------
// Help text. CLI11 shows a subcommand's description both in `ntk --help` (where it must stay one
// short line) and at the top of `ntk SUB --help` (where a paragraph helps), so the paragraphs live
// here and a formatter puts them in place of the short line.

const char* const kSpecHelp =
    "SPEC is a comma-separated list of layers, `Name` or `Name(args)`, e.g. "
    "'Conv(32, 3), Relu, GlobalAvgPool, Dense(10)'. Layers: Dense(out), Conv(out_channels, kernel, "
    "stride=1, padding=VALID|SAME), Relu, LeakyRelu(alpha), Abs, Erf, Gelu, Tanh, Sigmoid, Identity, "
    "AvgPool(window), GlobalAvgPool, Flatten, LayerNorm, Residual(layers...). Dense and Conv also take "
    "W_std, b_std (none = no bias) and parameterization=ntk|standard; --W-std, --b-std and "
    "--parameterization set these for the whole network and a layer's own argument wins.";

const std::map<std::string, std::string>& long_descriptions() {
  static const std::map<std::string, std::string> d = {
      {"",
       "ntk computes with neural networks given as a one-line spec: it initializes their parameters, "
       "applies them to data and computes their empirical neural tangent kernels. Arrays are NumPy .npy files (float32 or float64, examples "
       "along the first axis, images NHWC); parameters are .npz files with one array per parameter "
       "('<layer index>.W', '<layer index>.b'). Exit status: 0 success, 1 failure, 2 usage error; "
       "errors are one line on stderr starting with 'error:'. Run 'ntk SUBCOMMAND --help' for details.\n\n"
       "Example:\n"
       "  ntk init --net 'Dense(512), Relu, Dense(10)' --input-shape 784 -o params.npz\n"
       "  ntk apply --net 'Dense(512), Relu, Dense(10)' --params params.npz -x X.npy -o Y.npy"},
      {"init",
       std::string("Draws the parameters of the network SPEC for examples of shape --input-shape "
                   "(per example, without the batch axis: 784 for vectors, H,W,C for images) and writes "
                   "them to an .npz file. Values come from a counter-based generator keyed by --seed, so "
                   "the same seed gives the same parameters on every machine and thread count; float32 "
                   "parameters are the float64 ones rounded. Under NTK parameterization the stored "
                   "values are N(0,1) and the layer scales them; under standard parameterization they "
                   "are stored already scaled.\n\n") +
           kSpecHelp +
           "\n\nExample:\n"
           "  ntk init --net 'Conv(32, 3), Relu, GlobalAvgPool, Dense(10)' --input-shape 28,28,1 "
           "--seed 1 -o params.npz"},
      {"apply",
       std::string("Applies the network SPEC with the parameters in --params to the inputs -x and "
                   "writes the outputs (N, output shape...) as .npy. The per-example input shape is the "
                   "shape of X without its first axis, and must be the one the parameters were made "
                   "for. -x is a .npy file, or an IDX file (MNIST / Fashion-MNIST style, gzipped or "
                   "not, detected by content): IDX integers are converted to floating point as they "
                   "are (no rescaling) and a 3-D IDX stack (N, H, W) gets a channel axis (N, H, W, 1). "
                   "The computation runs in --dtype, by default the dtype of X when it is float32 or "
                   "float64 and float32 otherwise. The same --W-std, --b-std and --parameterization as "
                   "at 'ntk init' must be given.\n\n") +
           kSpecHelp +
           "\n\nExample:\n"
           "  ntk apply --net 'Conv(32, 3), Relu, GlobalAvgPool, Dense(10)' --params params.npz "
           "-x images.npy -o logits.npy"},
      {"kernel",
       std::string("Computes the infinite-width kernel of the network SPEC in neural-tangents' conventions: "
                   "the NTK (--get ntk) or the NNGP (--get nngp), (N1, N2) for inputs x1 and x2, vectors (N, d) or "
                   "NHWC images (the kernel of the outputs is this times the identity over outputs). Computed "
                   "in float64 (--dtype float32: the offset path below in float32). Networks of stride-1 Conv and "
                   "pointwise layers up to a GlobalAvgPool or Flatten readout take the offset path (pairs in SIMD "
                   "lanes, one pixel offset at a time, in cache); others keep each pair's full pixel-pair "
                   "covariance when a pooling layer needs it, otherwise its diagonal. Networks without an exact "
                   "kernel (a nonlinearity whose input is not Gaussian, a Residual block not ending in "
                   "Dense/Conv, a spatial output) are refused with an error that says why. --max-memory bounds "
                   "the working memory and the kernel; a kernel that does not fit is written out of core. Arora "
                   "et al.'s CNTK as a spec: docs/cntk.md.\n\n") +
           kSpecHelp +
           "\n\nExample:\n"
           "  ntk kernel --net 'Dense(512, W_std=1.4), Relu, Dense(1)' --x1 X.npy --get ntk -o K.npy\n"
           "  ntk kernel --net 'Conv(1, 3, padding=SAME), Relu, Conv(1, 3, padding=SAME), Relu, GlobalAvgPool, Dense(1)' "
           "--x1 images.npy -o cntk.npy"},
      {"entk",
       std::string("Computes the empirical neural tangent kernel Θ(x1, x2) = J(x1) J(x2)ᵀ of the network "
                   "SPEC at the parameters in --params (or drawn with --seed) and writes it as .npy. "
                   "--mode names what is kept of each O×O block: full (N1, N2, O, O); trace, the mean "
                   "over outputs (neural-tangents' default); trace-sum, the sum (PyTorch tutorial); "
                   "pntk, the sum-of-logits kernel of Mohamadi et al. = (1/O)·Σ_ab Θ_ab; logit=K, one "
                   "output; diagonal (N1, N2, O). --method: jc (Jacobian contraction), vp (NTK-vector "
                   "products), sd (structured derivatives), auto (sd). Without --x2 the kernel of x1 "
                   "with itself is computed on the symmetric path. Work is tiled over examples; "
                   "--max-memory bounds the kernel plus working memory and sets the tile size.\n\n") +
           kSpecHelp +
           "\n\nExample:\n"
           "  ntk entk --net 'Dense(512), Relu, Dense(10)' --seed 0 --x1 X.npy --mode pntk -o K.npy"},
  };
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

class Formatter : public CLI::Formatter {
 public:
  std::string make_description(const CLI::App* app) const override {
    const std::string key = app->get_parent() ? app->get_name() : "";
    auto it = long_descriptions().find(key);
    if (it == long_descriptions().end()) return CLI::Formatter::make_description(app);
    return wrap(it->second, 96) + "\n";
  }
};

// ---------------------------------------------------------------------------------------------
// Small helpers.

// Messages must fit the one-line contract whatever produced them.
std::string one_line(std::string s) {
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

std::optional<double> parse_finite(const std::string& s) {
  if (s.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || errno == ERANGE || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::optional<ntk::Shape> parse_shape(const std::string& s) {
  ntk::Shape shape;
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

// The network-wide defaults every subcommand with --net takes.
struct NetworkFlags {
  std::string spec;
  std::string W_std = "1";
  std::string b_std = "none";
  std::string parameterization = "ntk";

  ntk::NetworkDefaults defaults() const {
    ntk::NetworkDefaults d;
    d.W_std = *parse_finite(W_std);
    if (b_std != "none" && b_std != "None") d.b_std = *parse_finite(b_std);
    d.parameterization = ntk::parse_parameterization(parameterization);
    return d;
  }
};

void add_network_flags(CLI::App* sub, NetworkFlags& f) {
  sub->add_option("--net", f.spec, "Network spec, e.g. 'Dense(512), Relu, Dense(10)' (quote it)")
      ->required()
      ->type_name("SPEC");
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

// Fails before any long computation if the output could not be written anyway.
void check_output_path(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path p(path);
  std::error_code ec;
  if (fs::is_directory(p, ec))
    throw ntk::IoError("output '" + path + "' is a directory; give a file name to -o");
  fs::path dir = p.parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::is_directory(dir, ec))
    throw ntk::IoError("output directory '" + dir.string() + "' does not exist; create it or choose another -o path");
}

// Adds context to the library's value errors (whose type decides the exit status) without
// changing their type.
template <class F>
auto with_context(const std::string& context, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const ntk::ParseError&) {
    throw;
  } catch (const ntk::InvalidArgument& e) {
    throw ntk::InvalidArgument(context + e.what());
  }
}

// Reads -x: .npy when the file starts with the npy magic, IDX otherwise (the library detects gzip).
ntk::RawArray read_input(const std::string& path) {
  std::array<char, 6> head{};
  {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw ntk::IoError("cannot open input file '" + path + "': " + std::strerror(errno) + "; check the path");
    f.read(head.data(), head.size());
  }
  const std::string magic(head.data(), head.size());
  if (magic == std::string("\x93NUMPY", 6)) return ntk::read_npy(path);
  if (magic.compare(0, 4, std::string("PK\x03\x04", 4)) == 0)
    throw ntk::IoError("input file '" + path + "' is a zip (.npz) archive; -x takes one array, a .npy or IDX file");
  ntk::RawArray raw = ntk::read_idx(path);
  // An IDX image stack (N, H, W) becomes NHWC with one channel.
  if (raw.shape.size() == 3) raw.shape.push_back(1);
  return raw;
}

// The input as T, checked: examples along the first axis and every value finite. The file's bytes
// are released once converted.
template <class T>
ntk::Array<T> input_as(ntk::RawArray&& raw, const std::string& path) {
  if (raw.shape.size() < 2)
    throw ntk::InvalidArgument("input '" + path + "' has shape " + ntk::shape_string(raw.shape) +
                               "; -x needs examples along the first axis, (N, d) or (N, H, W, C) (reshape a "
                               "single example to (1, ...))");
  ntk::Array<T> x = raw.as<T>();
  raw = ntk::RawArray{};
  if (ntk::index_t bad = ntk::first_non_finite(x); bad >= 0) {
    const ntk::index_t per_example = x.size() / x.dim(0);
    throw ntk::InvalidArgument("input '" + path + "' has a non-finite value (NaN or Inf) in example " +
                               std::to_string(bad / per_example) + " (flat index " + std::to_string(bad) +
                               "); remove or impute it");
  }
  return x;
}

bool is_float64(const std::string& dtype) { return dtype == "float64"; }

void add_dtype_flag(CLI::App* sub, std::string& dtype, const std::string& what) {
  sub->add_option("--dtype", dtype, what)
      ->check(CLI::IsMember({"float32", "float64"}).description(""))
      ->type_name("float32|float64");
}

void add_threads_flag(CLI::App* sub, int& threads) {
  sub->add_option("--threads", threads,
                  "Threads (default: all cores)")
      ->check(CLI::Range(1, 4096).description(""))
      ->type_name("T");
}

void set_threads(int threads) {
  if (threads > 0) ntk::set_num_threads(threads);
}

// "4G", "512M", "1.5GiB", "1000000" (bytes) -> bytes.
std::optional<std::uint64_t> parse_bytes(std::string s) {
  if (s.empty()) return std::nullopt;
  double scale = 1;
  for (const char* suffix : {"iB", "B"})
    if (s.size() > std::strlen(suffix) && s.ends_with(suffix)) {
      s.resize(s.size() - std::strlen(suffix));
      break;
    }
  switch (s.back()) {
    case 'K': case 'k': scale = 1024.0; break;
    case 'M': case 'm': scale = 1024.0 * 1024; break;
    case 'G': case 'g': scale = 1024.0 * 1024 * 1024; break;
    case 'T': case 't': scale = 1024.0 * 1024 * 1024 * 1024; break;
    default: break;
  }
  if (scale != 1) s.pop_back();
  auto v = parse_finite(s);
  if (!v || *v <= 0 || *v * scale > 1.8e19) return std::nullopt;
  return static_cast<std::uint64_t>(*v * scale);
}

const CLI::Validator kBytes(
    [](std::string& s) -> std::string {
      return parse_bytes(s) ? "" : "must be a size such as 4G, 512M or a number of bytes, got '" + s + "'";
    },
    "", "size");

// ---------------------------------------------------------------------------------------------
// ntk init

struct InitArgs {
  NetworkFlags net;
  std::string input_shape;
  std::uint64_t seed = 0;
  std::string dtype = "float32";
  std::string out;
  bool quiet = false;
  bool verbose = false;
};

template <class T>
void run_init(const InitArgs& a) {
  check_output_path(a.out);
  ntk::Network net(a.net.spec, *parse_shape(a.input_shape), a.net.defaults());
  std::vector<T> theta = net.init<T>(a.seed);
  ntk::write_npz(a.out, net.params_to_npz(theta));
  if (a.verbose) std::cout << net.summary() << "\n";
  if (!a.quiet)
    std::cout << "wrote " << a.out << ": " << net.num_params() << " parameters (" << a.dtype << ", seed " << a.seed
              << "), input " << ntk::shape_string(net.input_shape()) << " -> output "
              << ntk::shape_string(net.output_shape()) << ", spec " << net.describe() << "\n";
}

// ---------------------------------------------------------------------------------------------
// ntk apply

struct ApplyArgs {
  NetworkFlags net;
  std::string params;
  std::string x;
  std::string out;
  std::string dtype;  // empty: from X
  int threads = 0;
  bool quiet = false;
  bool verbose = false;
};

template <class T>
void run_apply(const ApplyArgs& a, ntk::RawArray&& raw) {
  ntk::Array<T> x = input_as<T>(std::move(raw), a.x);
  const ntk::Shape input_shape = ntk::drop_first(x.shape());
  ntk::Network net = with_context("input '" + a.x + "' (per-example shape " + ntk::shape_string(input_shape) + "): ",
                                  [&] { return ntk::Network(a.net.spec, input_shape, a.net.defaults()); });
  const auto arrays = ntk::read_npz(a.params);
  std::vector<T> theta = with_context("--params '" + a.params + "' for input shape " + ntk::shape_string(input_shape) + ": ",
                                      [&] { return net.params_from_npz<T>(arrays); });
  ntk::Array<T> y = net.apply(theta, x);
  ntk::write_npy(a.out, y);
  if (a.verbose) std::cout << net.summary() << "\n";
  if (!a.quiet)
    std::cout << "wrote " << a.out << ": " << ntk::shape_string(y.shape()) << " "
              << (sizeof(T) == 8 ? "float64" : "float32") << "\n";
}

void apply_command(const ApplyArgs& a) {
  check_output_path(a.out);
  set_threads(a.threads);
  // Syntax errors in the spec are reported before any file is read.
  ntk::parse_spec(a.net.spec);
  ntk::RawArray x = read_input(a.x);
  std::string dtype = a.dtype;
  if (dtype.empty()) dtype = x.dtype == ntk::DType::float64 ? "float64" : "float32";
  if (is_float64(dtype))
    run_apply<double>(a, std::move(x));
  else
    run_apply<float>(a, std::move(x));
}

// ---------------------------------------------------------------------------------------------
// ntk entk

// What every kernel subcommand starts from: --x1, the optional --x2, and the network for x1's
// per-example shape.
template <class T>
struct KernelInputs {
  ntk::Array<T> x1;
  std::optional<ntk::Array<T>> x2;
  ntk::Network net;
};

template <class T>
KernelInputs<T> kernel_inputs(const NetworkFlags& flags, const std::string& x1_path, ntk::RawArray&& raw1,
                              const std::string& x2_path) {
  ntk::Array<T> x1 = input_as<T>(std::move(raw1), x1_path);
  std::optional<ntk::Array<T>> x2;
  if (!x2_path.empty()) x2 = input_as<T>(read_input(x2_path), x2_path);
  const ntk::Shape input_shape = ntk::drop_first(x1.shape());
  ntk::Network net = with_context("--x1 '" + x1_path + "' (per-example shape " + ntk::shape_string(input_shape) + "): ",
                                  [&] { return ntk::Network(flags.spec, input_shape, flags.defaults()); });
  return {std::move(x1), std::move(x2), std::move(net)};
}

void add_get_flag(CLI::App* sub, std::string& get, const std::string& what) {
  sub->add_option("--get", get, what)
      ->check(CLI::IsMember({"ntk", "nngp"}).description(""))
      ->type_name("ntk|nngp")
      ->capture_default_str();
}

struct EntkArgs {
  NetworkFlags net;
  std::string params;
  std::optional<std::uint64_t> seed;
  std::string x1, x2, out;
  std::string mode = "trace";
  std::string method = "auto";
  std::string dtype;  // empty: from X1
  std::string max_memory;
  ntk::index_t tile = 0;
  int threads = 0;
  bool quiet = false;
  bool explain = false;
  bool out_of_core = false;
  std::string get = "ntk";
  std::string accumulate;  // "float64": float32 inputs and output, float64 arithmetic
};

// T is the compute type; Out the type written (float32 output with float64 accumulation: T =
// double, Out = float).
template <class T, class Out = T>
void run_entk(const EntkArgs& a, ntk::RawArray&& raw1) {
  KernelInputs<T> in = kernel_inputs<T>(a.net, a.x1, std::move(raw1), a.x2);
  const ntk::Array<T>& x1 = in.x1;
  const std::optional<ntk::Array<T>>& x2 = in.x2;
  const ntk::Network& net = in.net;
  std::vector<T> theta;
  if (!a.params.empty()) {
    const auto arrays = ntk::read_npz(a.params);
    theta = with_context("--params '" + a.params + "': ", [&] { return net.params_from_npz<T>(arrays); });
  } else {
    theta = net.init<T>(*a.seed);
  }
  ntk::EntkOptions o;
  o.mode = ntk::parse_entk_mode(a.mode);
  o.method = ntk::parse_entk_method(a.method);
  o.tile = a.tile;
  if (!a.max_memory.empty()) o.max_memory = *parse_bytes(a.max_memory);
  if (a.explain) {
    const ntk::index_t n2 = x2 ? x2->dim(0) : x1.dim(0);
    std::cout << "eNTK of " << x1.dim(0) << " x " << n2 << " examples, " << net.output_size() << " outputs, "
              << net.num_params() << " parameters, mode " << a.mode << (x2 ? "" : ", symmetric") << "\n";
    try {
      if (a.out_of_core) throw ntk::MemoryBudgetError("");
      std::cout << ntk::plan_empirical_ntk(net, x1.dim(0), n2, !x2, o, sizeof(T)).describe();
    } catch (const ntk::MemoryBudgetError&) {
      o.out_of_core = true;
      std::cout << "out of core: " << ntk::plan_empirical_ntk(net, x1.dim(0), n2, !x2, o, sizeof(T)).describe();
    }
    return;
  }
  if (isatty(STDERR_FILENO)) {
    o.progress = [](ntk::index_t done, ntk::index_t total) {
      std::fprintf(stderr, "\rentk: %lld/%lld tile pairs (%.0f%%)", static_cast<long long>(done),
                   static_cast<long long>(total), 100.0 * double(done) / double(total));
      if (done == total) std::fprintf(stderr, "\n");
    };
  }
  // In memory when the kernel fits the budget, otherwise straight into the memory-mapped file.
  const ntk::index_t n2 = x2 ? x2->dim(0) : x1.dim(0);
  bool out_of_core = a.out_of_core;
  if (!out_of_core && o.max_memory > 0) {
    try {
      ntk::plan_empirical_ntk(net, x1.dim(0), n2, !x2, o, sizeof(T));
    } catch (const ntk::MemoryBudgetError&) {
      out_of_core = true;
    }
  }
  const ntk::Shape shape = ntk::entk_output_shape(o.mode, x1.dim(0), n2, net.output_size());
  if (a.get == "nngp") {
    out_of_core = false;
    ntk::write_npy(a.out, ntk::cast<Out>(ntk::empirical_nngp(net, theta, x1, x2 ? &*x2 : nullptr, o.mode)));
  } else if (out_of_core) {
    if (!std::is_same_v<T, Out>)
      throw ntk::NotSupported("--accumulate float64 with a float32 kernel written out of core is not supported; use --dtype float64");
    ntk::empirical_ntk_to_file(net, theta, x1, x2 ? &*x2 : nullptr, o, a.out);
  } else if constexpr (std::is_same_v<T, Out>) {
    ntk::write_npy(a.out, ntk::empirical_ntk(net, theta, x1, x2 ? &*x2 : nullptr, o));
  } else {
    ntk::write_npy(a.out, ntk::cast<Out>(ntk::empirical_ntk(net, theta, x1, x2 ? &*x2 : nullptr, o)));
  }
  if (!a.quiet)
    std::cout << "wrote " << a.out << ": " << ntk::shape_string(shape) << " " << (sizeof(Out) == 8 ? "float64" : "float32")
              << (std::is_same_v<T, Out> ? "" : " (float64 accumulation)") << (a.get == "nngp" ? ", empirical NNGP" : "")
              << ", mode " << a.mode << (out_of_core ? ", out of core" : "") << "\n";
}

void entk_command(const EntkArgs& a) {
  if (!a.explain) {
    if (a.out.empty()) throw CLI::ValidationError("-o,--output is required (or give --explain)");
    check_output_path(a.out);
  }
  set_threads(a.threads);
  ntk::parse_spec(a.net.spec);
  if (a.params.empty() == !a.seed.has_value())
    throw CLI::ValidationError("give exactly one of --params FILE or --seed S");
  ntk::parse_entk_mode(a.mode);
  ntk::RawArray x1 = read_input(a.x1);
  std::string dtype = a.dtype;
  if (dtype.empty()) dtype = x1.dtype == ntk::DType::float64 ? "float64" : "float32";
  if (is_float64(dtype))
    run_entk<double>(a, std::move(x1));
  else if (a.accumulate == "float64")
    run_entk<double, float>(a, std::move(x1));
  else
    run_entk<float>(a, std::move(x1));
}

// ---------------------------------------------------------------------------------------------
// ntk kernel

struct KernelArgs {
  NetworkFlags net;
  std::string x1, x2, out;
  std::string get = "ntk";
  std::string dtype = "float64";
  std::string max_memory;
  int threads = 0;
  bool out_of_core = false;
  bool quiet = false;
};

template <class T>
void run_kernel(const KernelArgs& a) {
  KernelInputs<T> in = kernel_inputs<T>(a.net, a.x1, read_input(a.x1), a.x2);
  const ntk::Array<T>& x1 = in.x1;
  const std::optional<ntk::Array<T>>& x2 = in.x2;
  const ntk::Network& net = in.net;
  ntk::KernelOptions o;
  o.get = a.get == "nngp" ? ntk::KernelOptions::nngp : ntk::KernelOptions::ntk;
  if (!a.max_memory.empty()) o.max_memory = *parse_bytes(a.max_memory);
  if (isatty(STDERR_FILENO) && !a.quiet) {
    const auto start = std::chrono::steady_clock::now();
    o.progress = [start](ntk::index_t done, ntk::index_t total) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::fprintf(stderr, "\rkernel: %lld/%lld pairs (%.0f%%), %.0f s, about %.0f s left", static_cast<long long>(done),
                   static_cast<long long>(total), 100.0 * double(done) / double(total), s,
                   done > 0 ? s * double(total - done) / double(done) : 0.0);
      if (done == total) std::fprintf(stderr, "\n");
    };
  }
  // In memory when kernel and working memory fit the budget, otherwise straight into the
  // memory-mapped file (the plan throws, naming --max-memory, if the working memory alone does not fit).
  const ntk::index_t n1 = x1.dim(0), n2 = x2 ? x2->dim(0) : n1;
  const ntk::KernelPlan plan = ntk::plan_infinite_kernel(net, n1, n2, o, sizeof(T));
  const bool out_of_core =
      a.out_of_core || (o.max_memory > 0 && plan.result_bytes + plan.working_bytes > o.max_memory);
  if (out_of_core) {
    ntk::infinite_kernel_to_file(net, x1, x2 ? &*x2 : nullptr, o, a.out);
  } else {
    ntk::write_npy(a.out, ntk::infinite_kernel(net, x1, x2 ? &*x2 : nullptr, o));
  }
  if (!a.quiet)
    std::cout << "wrote " << a.out << ": " << ntk::shape_string(ntk::Shape{n1, n2}) << " " << a.dtype
              << ", infinite-width " << a.get << (out_of_core ? ", out of core" : "") << "\n";
}

void kernel_command(const KernelArgs& a) {
  check_output_path(a.out);
  set_threads(a.threads);
  ntk::parse_spec(a.net.spec);
  if (is_float64(a.dtype))
    run_kernel<double>(a);
  else
    run_kernel<float>(a);
}

// ---------------------------------------------------------------------------------------------

int fail(const std::string& message, int status) {
  std::cout.flush();
  std::cerr << "error: " << one_line(message) << std::endl;
  return status;
}

// The subcommand the user was in when CLI11 gave up, for the "run 'ntk SUB --help'" hint.
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
  // Kernel computations allocate and free the same large buffers (cotangents, Jacobian tiles) over
  // and over; glibc would return each to the OS and fault it in afresh, measured at 25% of the
  // CNN eNTK. Keep them in the heap instead; peak memory is still what --max-memory bounds.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  CLI::App app;
  app.name("ntk");
  app.formatter(std::make_shared<Formatter>());
  app.description("ntk: neural networks from a spec, and their tangent kernels");
  app.set_version_flag("--version", std::string("ntk ") + NTK_VERSION, "Print the version and exit");
  app.require_subcommand(1);

  InitArgs init_args;
  CLI::App* init_cmd = app.add_subcommand("init", "Draw a network's parameters and write them to an .npz file");
  add_network_flags(init_cmd, init_args.net);
  init_cmd->add_option("--input-shape", init_args.input_shape, "Per-example input shape: 784 for vectors, H,W,C for images")
      ->required()
      ->check(kShape)
      ->type_name("D1,D2,...");
  init_cmd->add_option("--seed", init_args.seed, "Random seed (integer, 0 to 2^64-1)")
      ->check(kUnsigned)
      ->type_name("S")
      ->capture_default_str();
  add_dtype_flag(init_cmd, init_args.dtype, "Element type of the parameter file");
  init_cmd->get_option("--dtype")->capture_default_str();
  init_cmd->add_option("-o,--output", init_args.out, "Parameter file to write (.npz)")->required()->type_name("FILE");
  init_cmd->add_flag("-q,--quiet", init_args.quiet, "Print nothing on success");
  init_cmd->add_flag("-v,--verbose", init_args.verbose, "Also print the network, one layer a line");

  ApplyArgs apply_args;
  CLI::App* apply_cmd = app.add_subcommand("apply", "Apply a network with given parameters to inputs");
  add_network_flags(apply_cmd, apply_args.net);
  apply_cmd->add_option("--params", apply_args.params, "Parameter file (.npz, from 'ntk init' or converted)")
      ->required()
      ->type_name("FILE");
  apply_cmd->add_option("-x,--input", apply_args.x, "Inputs: .npy (N, ...) or IDX file")->required()->type_name("FILE");
  apply_cmd->add_option("-o,--output", apply_args.out, "Outputs to write (.npy)")->required()->type_name("FILE");
  add_dtype_flag(apply_cmd, apply_args.dtype, "Compute type (default: X's dtype if float32/float64, else float32)");
  add_threads_flag(apply_cmd, apply_args.threads);
  apply_cmd->add_flag("-q,--quiet", apply_args.quiet, "Print nothing on success");
  apply_cmd->add_flag("-v,--verbose", apply_args.verbose, "Also print the network, one layer a line");

  EntkArgs entk_args;
  CLI::App* entk_cmd = app.add_subcommand("entk", "Empirical NTK of a network at given or seeded parameters");
  add_network_flags(entk_cmd, entk_args.net);
  entk_cmd->add_option("--params", entk_args.params, "Parameter file (.npz); or give --seed")->type_name("FILE");
  entk_cmd->add_option("--seed", entk_args.seed, "Draw the parameters as 'ntk init --seed S' would")->check(kUnsigned)->type_name("S");
  entk_cmd->add_option("--x1", entk_args.x1, "Inputs (N1, ...): .npy or IDX")->required()->type_name("FILE");
  entk_cmd->add_option("--x2", entk_args.x2, "Second inputs (N2, ...); omitted: x2 = x1, symmetric path")->type_name("FILE");
  entk_cmd->add_option("--mode", entk_args.mode, "full (N1,N2,O,O) | trace (mean over outputs) | trace-sum | pntk | logit=K | diagonal (N1,N2,O)")
      ->type_name("MODE")
      ->capture_default_str();
  entk_cmd->add_option("--method", entk_args.method, "auto | jc (Jacobian contraction) | vp (NTK-vector products) | sd (structured derivatives)")
      ->check(CLI::IsMember({"auto", "jc", "vp", "sd"}).description(""))
      ->type_name("METHOD")
      ->capture_default_str();
  add_dtype_flag(entk_cmd, entk_args.dtype, "Compute type (default: X1's dtype if float32/float64, else float32)");
  add_threads_flag(entk_cmd, entk_args.threads);
  entk_cmd->add_option("--max-memory", entk_args.max_memory, "Memory budget for the kernel and working buffers, e.g. 4G")
      ->check(kBytes)
      ->type_name("SIZE");
  entk_cmd->add_option("--tile", entk_args.tile, "Examples per tile side (default: the largest that fits --max-memory)")
      ->check(CLI::Range(ntk::index_t(1), ntk::index_t(1) << 40).description(""))
      ->type_name("N");
  entk_cmd->add_option("-o,--output", entk_args.out, "Kernel to write (.npy)")->type_name("FILE");
  add_get_flag(entk_cmd, entk_args.get, "ntk (the empirical NTK) or nngp (the empirical NNGP f(x1) f(x2)ᵀ)");
  entk_cmd->add_option("--accumulate", entk_args.accumulate, "float64: compute a float32 kernel in float64 arithmetic")
      ->check(CLI::IsMember({"float32", "float64"}).description(""))
      ->type_name("float64");
  entk_cmd->add_flag("--out-of-core", entk_args.out_of_core,
                     "Write the kernel straight into the memory-mapped output file (automatic when it does not fit --max-memory)");
  entk_cmd->add_flag("--explain", entk_args.explain, "Print the plan (method, tile, estimated FLOPs and memory of each method) and exit");
  entk_cmd->add_flag("-q,--quiet", entk_args.quiet, "Print nothing on success");

  KernelArgs kernel_args;
  CLI::App* kernel_cmd = app.add_subcommand("kernel", "Infinite-width NTK or NNGP of a network (vectors or NHWC images)");
  add_network_flags(kernel_cmd, kernel_args.net);
  kernel_cmd->add_option("--x1", kernel_args.x1, "Inputs (N1, d): .npy")->required()->type_name("FILE");
  kernel_cmd->add_option("--x2", kernel_args.x2, "Second inputs (N2, d); omitted: x2 = x1")->type_name("FILE");
  add_get_flag(kernel_cmd, kernel_args.get, "ntk or nngp");
  kernel_cmd->add_option("--dtype", kernel_args.dtype,
                         "Output type; float32 also computes the offset path (conv/pointwise nets with a GlobalAvgPool "
                         "or Flatten readout) in float32, 2x faster, ~1e-7 relative")
      ->check(CLI::IsMember({"float32", "float64"}).description(""))
      ->type_name("float32|float64")
      ->capture_default_str();
  add_threads_flag(kernel_cmd, kernel_args.threads);
  kernel_cmd->add_option("--max-memory", kernel_args.max_memory,
                         "Memory budget for the kernel and working buffers, e.g. 4G; a kernel that does not fit is "
                         "written out of core")
      ->check(kBytes)
      ->type_name("SIZE");
  kernel_cmd->add_flag("--out-of-core", kernel_args.out_of_core,
                       "Write the kernel straight into the memory-mapped output file (automatic when it does not fit --max-memory)");
  kernel_cmd->add_option("-o,--output", kernel_args.out, "Kernel to write (.npy), (N1, N2)")->required()->type_name("FILE");
  kernel_cmd->add_flag("-q,--quiet", kernel_args.quiet, "Print nothing on success");

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

  try {
    if (*init_cmd) {
      if (is_float64(init_args.dtype))
        run_init<double>(init_args);
      else
        run_init<float>(init_args);
    } else if (*apply_cmd) {
      apply_command(apply_args);
    } else if (*entk_cmd) {
      entk_command(entk_args);
    } else if (*kernel_cmd) {
      kernel_command(kernel_args);
    }
  } catch (const CLI::ValidationError& e) {
    return fail(std::string(e.what()) + "; run 'ntk entk --help' for usage", 2);
  } catch (const ntk::ParseError& e) {
    return fail(std::string("--net: ") + e.what(), 2);
  } catch (const std::bad_alloc&) {
    return fail(*init_cmd ? "out of memory: the network's parameters do not fit; use a smaller network"
                          : "out of memory; use fewer examples per file, a smaller network or --dtype float32",
                1);
  } catch (const std::exception& e) {
    return fail(e.what(), 1);
  } catch (...) {
    return fail("unexpected internal failure; please report it with the command line that caused it", 1);
  }
  return 0;
}
