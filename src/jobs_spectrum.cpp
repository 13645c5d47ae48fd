// Jobs, part three: spectra, comparisons and the pNTK report. Kernels are read as float64 (the
// diagnostics are computed in float64 whatever the file holds), except for Lanczos, which reads a
// memory-mapped file block of rows by block of rows so that kernels larger than memory work.
#include "ntk/jobs_spectrum.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "io_detail.hpp"
#include "jobs_detail.hpp"
#include "ntk/error.hpp"
#include "ntk/kernel_block.hpp"
#include "ntk/parallel.hpp"
#include "ntk/spec.hpp"

namespace ntk {
namespace {

using detail::input_name;
using detail::raw_input;

// A kernel input as float64, refused unless stored as float32 / float64 (what: how messages call
// it). The stored bytes are gone on return, so the caller holds the kernel once.
Array<double> load_float_kernel(const JobInput& in, const std::string& what) {
  const RawArray raw = raw_input(in);
  if (!detail::is_float(raw.dtype))
    throw InvalidArgument(what + " " + input_name(in, "array") + " is " + dtype_name(raw.dtype) + "; a kernel is float32 or float64");
  return raw.as<double>();
}

// ---------------------------------------------------------------------------------------------
// Rendering

std::string num(double v) {
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

// JSON has no Infinity or NaN; null stands for "not defined" (a condition number of a singular kernel).
std::string jnum(double v) { return std::isfinite(v) ? num(v) : "null"; }

std::string jstr(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += c;
    else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else out += c;
  }
  return out + "\"";
}

std::string jlist(const std::vector<double>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + jnum(v[i]);
  return s + "]";
}

std::string jshape(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Builds {"k": v, ...} in insertion order.
class JsonObject {
 public:
  JsonObject& raw(const std::string& key, const std::string& value) {
    body_ += (body_.empty() ? "" : ", ") + jstr(key) + ": " + value;
    return *this;
  }
  JsonObject& number(const std::string& key, double v) { return raw(key, jnum(v)); }
  JsonObject& integer(const std::string& key, index_t v) { return raw(key, std::to_string(v)); }
  JsonObject& boolean(const std::string& key, bool v) { return raw(key, v ? "true" : "false"); }
  JsonObject& string(const std::string& key, const std::string& v) { return raw(key, jstr(v)); }
  std::string str() const { return "{" + body_ + "}"; }

 private:
  std::string body_;
};

void write_text_atomic(const std::string& path, const std::string& text) {
  const auto* p = reinterpret_cast<const std::byte*>(text.data());
  write_file_atomic(path, std::vector<std::byte>(p, p + text.size()));
}

JsonObject comparison_json(const KernelComparison& c) {
  JsonObject o;
  o.raw("a_shape", jshape(c.a_shape)).raw("b_shape", jshape(c.b_shape)).boolean("kronecker", c.kronecker);
  o.integer("outputs", c.outputs).number("relative_frobenius", c.relative_frobenius);
  o.number("frobenius_a", c.frobenius_a).number("frobenius_b", c.frobenius_b);
  if (c.has_spectra) {
    o.number("lambda_max_a", c.lambda_max_a).number("lambda_max_b", c.lambda_max_b);
    o.number("lambda_max_ratio", c.lambda_max_ratio);
    o.number("lambda_min_a", c.lambda_min_a).number("lambda_min_b", c.lambda_min_b);
    o.number("condition_a", c.condition_a).number("condition_b", c.condition_b);
    o.number("condition_ratio", c.condition_ratio);
  }
  return o;
}

std::string comparison_text(const KernelComparison& c, const std::string& indent = "") {
  std::ostringstream s;
  s << indent << "A " << shape_string(c.a_shape) << " vs reference B " << shape_string(c.b_shape)
    << (c.kronecker ? " (2-D side read as K ⊗ I_" + std::to_string(c.outputs) + ")" : "") << "\n";
  s << indent << "relative Frobenius distance ‖A−B‖/‖B‖: " << num(c.relative_frobenius) << "\n";
  s << indent << "Frobenius norms: A " << num(c.frobenius_a) << ", B " << num(c.frobenius_b) << "\n";
  if (c.has_spectra) {
    s << indent << "λmax: A " << num(c.lambda_max_a) << ", B " << num(c.lambda_max_b) << ", ratio A/B "
      << num(c.lambda_max_ratio) << "\n";
    s << indent << "λmin: A " << num(c.lambda_min_a) << ", B " << num(c.lambda_min_b) << "\n";
    s << indent << "condition: A " << num(c.condition_a) << ", B " << num(c.condition_b) << ", ratio A/B "
      << num(c.condition_ratio) << "\n";
  }
  return s.str();
}

}  // namespace

std::string SpectrumJobResult::text() const {
  std::ostringstream s;
  const KernelSpectrum& k = spectrum;
  s << "N: " << k.n << "\n";
  if (!lanczos) {
    s << "λmax: " << num(k.lambda_max) << "\nλmin: " << num(k.lambda_min) << "\n";
    s << "condition number: " << num(k.condition) << (k.positive_definite ? "" : " (not positive definite)") << "\n";
    s << "effective rank (exp entropy): " << num(k.effective_rank) << "\n";
    s << "trace / λmax: " << num(k.trace_over_lambda_max) << "\n";
  } else {
    if (!top.empty()) s << "top " << top.size() << " eigenvalues (Lanczos, " << top_run.products << " products): " << jlist(top) << "\n";
    if (!bottom.empty())
      s << "bottom " << bottom.size() << " eigenvalues (Lanczos, " << bottom_run.products << " products): " << jlist(bottom) << "\n";
    if (!top.empty()) s << "λmax: " << num(top.back()) << "\ntrace / λmax: " << num(k.trace / top.back()) << "\n";
    if (!bottom.empty()) s << "λmin: " << num(bottom.front()) << "\n";
    if (!top.empty() && !bottom.empty())
      s << "condition number: " << num(bottom.front() > 0 ? top.back() / bottom.front() : INFINITY) << "\n";
  }
  s << "trace: " << num(k.trace) << "\nFrobenius norm: " << num(k.frobenius) << "\n";
  if (k.alignment) s << "kernel-target alignment: " << num(*k.alignment) << "\n";
  if (!output_path.empty()) s << "wrote " << output_path << ": eigenvalues, ascending\n";
  return s.str();
}

std::string SpectrumJobResult::json() const {
  const KernelSpectrum& k = spectrum;
  JsonObject o;
  o.integer("n", k.n).string("method", lanczos ? "lanczos" : "lapack");
  if (!lanczos) {
    o.number("lambda_max", k.lambda_max).number("lambda_min", k.lambda_min).number("condition", k.condition);
    o.boolean("positive_definite", k.positive_definite).number("effective_rank", k.effective_rank);
    o.number("trace_over_lambda_max", k.trace_over_lambda_max);
  } else {
    if (!top.empty()) {
      o.raw("top", jlist(top)).number("lambda_max", top.back()).number("trace_over_lambda_max", k.trace / top.back());
      o.integer("top_products", top_run.products);
    }
    if (!bottom.empty()) o.raw("bottom", jlist(bottom)).number("lambda_min", bottom.front()).integer("bottom_products", bottom_run.products);
    if (!top.empty() && !bottom.empty())
      o.number("condition", bottom.front() > 0 ? top.back() / bottom.front() : INFINITY)
          .boolean("positive_definite", bottom.front() > 0);
  }
  o.number("trace", k.trace).number("frobenius", k.frobenius);
  if (k.alignment) o.number("alignment", *k.alignment);
  if (!output_path.empty()) o.string("output", output_path);
  return o.str();
}

SpectrumJobResult run_spectrum(const SpectrumJob& job) {
  if (!job.output_path.empty()) detail::check_output_path(job.output_path);
  if (job.top < 0 || job.bottom < 0) throw InvalidArgument("--top and --bottom count eigenvalues; give a number >= 1");
  ThreadScope threads(job.threads);
  SpectrumJobResult r;
  std::optional<Array<double>> y;
  if (job.y) y = targets_matrix(*job.y);
  std::vector<double> written;
  if (job.top == 0 && job.bottom == 0) {
    const Array<double> k = load_float_kernel(job.k, "kernel");
    r.spectrum = detail::with_context(input_name(job.k, "the kernel") + ": ",
                                      [&] { return spectrum(k, y ? &*y : nullptr); });
    written = r.spectrum.eigenvalues;
  } else {
    if (job.k.array) throw NotSupported("Lanczos (top / bottom) reads a kernel file; give the kernel as a .npy path");
    const std::unique_ptr<KernelBlocks> blocks = npy_kernel_blocks(job.k.path, true);
    if (blocks->rows() != blocks->cols() || blocks->rows() == 0)
      throw InvalidArgument("kernel '" + job.k.path + "' is " + std::to_string(blocks->rows()) + " x " +
                            std::to_string(blocks->cols()) + "; the spectrum needs a square (N, N) kernel with N > 0");
    const KernelBlocks& k = *blocks;
    r.lanczos = true;
    LanczosOptions lo;
    lo.ncv = job.ncv;
    lo.max_iterations = job.max_iterations;
    lo.threads = job.threads;
    if (job.top > 0) {
      lo.count = job.top;
      lo.which = LanczosOptions::largest;
      r.top_run = lanczos_eigenvalues(k, lo);
      r.top = r.top_run.eigenvalues;
    }
    if (job.bottom > 0) {
      lo.count = job.bottom;
      lo.which = LanczosOptions::smallest;
      r.bottom_run = lanczos_eigenvalues(k, lo);
      r.bottom = r.bottom_run.eigenvalues;
    }
    r.spectrum = kernel_statistics(k, y ? &*y : nullptr, 0, job.threads);
    written = r.bottom;
    written.insert(written.end(), r.top.begin(), r.top.end());
  }
  if (!job.output_path.empty()) {
    write_npy(job.output_path, Array<double>(Shape{index_t(written.size())}, written));
    r.output_path = job.output_path;
  }
  return r;
}

std::string CompareJobResult::text() const { return comparison_text(comparison); }
std::string CompareJobResult::json() const { return comparison_json(comparison).str(); }

CompareJobResult run_compare(const CompareJob& job) {
  ThreadScope threads(job.threads);
  const Array<double> a = load_float_kernel(job.a, "kernel"), b = load_float_kernel(job.b, "reference kernel");
  CompareJobResult r;
  r.comparison = detail::with_context(input_name(job.a, "kernel A") + " vs " + input_name(job.b, "reference B") + ": ",
                                      [&] { return compare(a, b, CompareOptions{job.spectra, job.threads}); });
  return r;
}

namespace {

std::string cost_text(const char* what, const KernelCost& c) {
  std::ostringstream s;
  s << "  " << what << " " << shape_string(c.shape) << ": " << num(c.seconds) << " s, memory estimate "
    << format_bytes(c.estimated_bytes) << ", measured peak growth " << format_bytes(c.measured_peak_bytes) << "\n";
  return s.str();
}

std::string cost_json(const KernelCost& c) {
  return JsonObject()
      .raw("shape", jshape(c.shape))
      .number("seconds", c.seconds)
      .integer("estimated_bytes", index_t(c.estimated_bytes))
      .integer("measured_peak_bytes", index_t(c.measured_peak_bytes))
      .str();
}

template <class T>
PntkReportJobResult run_pntk_report_as(const PntkReportJob& job, detail::LoadedInput& x_train_input) {
  Array<T> x_train = x_train_input.take<T>();
  detail::LoadedInput x_test_input(job.x_test, job.input);
  Array<T> x_test = x_test_input.take<T>();
  const Network net = detail::make_network(job.net, drop_first(x_train.shape()), x_train_input.name());
  net.check_inputs(x_train, x_train_input.name().c_str());
  net.check_inputs(x_test, x_test_input.name().c_str());
  const index_t o = net.output_size();
  const Array<double> y_train = targets_matrix(job.y_train, o), y_test = targets_matrix(job.y_test, o);
  auto check_y = [&](const Array<double>& y, index_t n, const JobInput& in, const char* what) {
    if (y.ndim() != 2 || y.dim(0) != n || y.dim(1) != o)
      throw InvalidArgument(std::string(what) + " " + input_name(in, "array") + " has shape " + shape_string(y.shape()) +
                            "; it needs " + std::to_string(n) + " rows (one per example) of " + std::to_string(o) +
                            " targets (the network's outputs), or " + std::to_string(n) + " integer class labels");
  };
  check_y(y_train, x_train.dim(0), job.y_train, "the training targets");
  check_y(y_test, x_test.dim(0), job.y_test, "the test targets");
  const detail::ResolvedParams<T> theta = detail::resolve_params<T>(net, job.params, job.options.threads);
  PntkReportJobResult r;
  r.report = pntk_report(net, theta.values, x_train, y_train, x_test, y_test, job.options);
  r.spec = net.describe();
  r.dtype = dtype_name(dtype_of<T>());
  return r;
}

}  // namespace

std::string PntkReportJobResult::text() const {
  const PntkReport& p = report;
  std::ostringstream s;
  s << "pNTK report: " << p.n_train << " train, " << p.n_test << " test examples, " << p.outputs << " outputs, "
    << p.num_params << " parameters, " << dtype << ", eNTK method " << p.method << "\n";
  s << "kernels:\n"
    << cost_text("full eNTK train", p.full_train) << cost_text("full eNTK test ", p.full_test)
    << cost_text("pNTK train     ", p.pntk_train) << cost_text("pNTK test      ", p.pntk_test);
  s << "train kernel, pNTK ⊗ I vs full eNTK:\n" << comparison_text(p.train, "  ");
  s << "test-by-train kernel: relative Frobenius distance " << num(p.test.relative_frobenius) << "\n";
  s << "kernel regression (relative ridge " << num(p.ridge) << "):\n";
  s << "  full eNTK: test accuracy " << num(p.accuracy_full) << ", MSE " << num(p.mse_full) << ", solve "
    << num(p.solve_seconds_full) << " s\n";
  s << "  pNTK:      test accuracy " << num(p.accuracy_pntk) << ", MSE " << num(p.mse_pntk) << ", solve "
    << num(p.solve_seconds_pntk) << " s\n";
  if (!p.warnings.empty()) s << "warning: " << p.warnings << "\n";
  if (!output_path.empty()) s << "wrote " << output_path << "\n";
  return s.str();
}

std::string PntkReportJobResult::json() const {
  const PntkReport& p = report;
  JsonObject o;
  o.string("spec", spec).string("dtype", dtype).string("method", p.method);
  o.integer("n_train", p.n_train).integer("n_test", p.n_test).integer("outputs", p.outputs);
  o.integer("num_params", p.num_params);
  o.raw("full_train", cost_json(p.full_train)).raw("full_test", cost_json(p.full_test));
  o.raw("pntk_train", cost_json(p.pntk_train)).raw("pntk_test", cost_json(p.pntk_test));
  o.raw("train", comparison_json(p.train).str()).raw("test", comparison_json(p.test).str());
  o.number("ridge", p.ridge);
  o.number("accuracy_full", p.accuracy_full).number("accuracy_pntk", p.accuracy_pntk);
  o.number("mse_full", p.mse_full).number("mse_pntk", p.mse_pntk);
  o.number("solve_seconds_full", p.solve_seconds_full).number("solve_seconds_pntk", p.solve_seconds_pntk);
  o.string("warnings", p.warnings);
  return o.str();
}

PntkReportJobResult run_pntk_report(const PntkReportJob& job) {
  if (!job.output_path.empty()) detail::check_output_path(job.output_path);
  ThreadScope threads(job.options.threads);
  parse_spec(job.net.spec);
  detail::LoadedInput x_train(job.x_train, job.input);
  PntkReportJobResult r = detail::computes_in_float64(job.dtype, x_train.dtype())
                              ? run_pntk_report_as<double>(job, x_train)
                              : run_pntk_report_as<float>(job, x_train);
  if (!job.output_path.empty()) {
    write_text_atomic(job.output_path, r.json() + "\n");
    r.output_path = job.output_path;
  }
  return r;
}

}  // namespace ntk
