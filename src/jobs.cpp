// Jobs, part one: inputs (formats, IDX scaling, arrays in memory), parameters, init and apply, and
// the allocator setting. The kernel jobs are in jobs_kernels.cpp.
#include "ntk/jobs.hpp"

#include <malloc.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <type_traits>

#include "jobs_detail.hpp"
#include "ntk/parallel.hpp"
#include "ntk/spec.hpp"

namespace ntk {

IdxScale parse_idx_scale(const std::string& s) {
  if (s == "unit") return IdxScale::unit;
  if (s == "raw") return IdxScale::raw;
  throw InvalidArgument("unknown IDX scaling '" + s + "' (use unit for [0, 1] or raw for 0..255)");
}

const char* to_string(IdxScale s) { return s == IdxScale::unit ? "unit" : "raw"; }

DType parse_float_dtype(const std::string& s) {
  if (s == "float32") return DType::float32;
  if (s == "float64") return DType::float64;
  throw InvalidArgument("unknown dtype '" + s + "' (use float32 or float64)");
}

RawArray load_input(const std::string& path, const InputOptions& options) {
  std::array<char, 6> head{};
  {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw IoError("cannot open input file '" + path + "': " + std::strerror(errno) + "; check the path");
    f.read(head.data(), head.size());
  }
  const std::string magic(head.data(), head.size());
  if (magic == std::string("\x93NUMPY", 6)) return read_npy(path);
  if (magic.compare(0, 4, std::string("PK\x03\x04", 4)) == 0)
    throw IoError("input file '" + path + "' is a zip (.npz) archive; an input is one array, a .npy or IDX file");
  RawArray raw = read_idx(path);  // detects gzip itself
  if (raw.shape.size() == 3) raw.shape.push_back(1);  // an image stack (N, H, W) becomes NHWC
  if (raw.dtype == DType::uint8 && options.idx_scale == IdxScale::unit) {
    // float32 division, as torchvision's ToTensor (img.float().div(255)), so values agree bit for bit.
    Array<float> x = raw.as<float>();
    for (index_t i = 0; i < x.size(); ++i) x[i] /= 255.0f;
    raw = RawArray::from(x);
  }
  return raw;
}

JobInput JobInput::file(std::string path, std::string label) {
  JobInput in;
  in.path = std::move(path);
  in.label = std::move(label);
  return in;
}

JobInput JobInput::memory(ArrayView array, std::string label) {
  JobInput in;
  in.array = std::move(array);
  in.label = std::move(label);
  return in;
}

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
  if (s.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || errno == ERANGE || !std::isfinite(v) || v <= 0 || v * scale > 1.8e19)
    return std::nullopt;
  return static_cast<std::uint64_t>(v * scale);
}

void keep_freed_memory_for_reuse(bool keep) {
  // glibc's defaults (128 KiB) when not keeping; its dynamic mmap threshold stays off either way.
  const int threshold = keep ? 1 << 30 : 128 * 1024;
  mallopt(M_MMAP_THRESHOLD, threshold);
  mallopt(M_TRIM_THRESHOLD, threshold);
}

namespace detail {

std::string input_name(const JobInput& in, const std::string& array_name) {
  if (!in.label.empty()) return in.label;
  return in.array ? array_name : "'" + in.path + "'";
}

RawArray raw_input(const JobInput& in) {
  if (!in.array) return load_input(in.path, InputOptions{IdxScale::raw});
  RawArray r{in.array->dtype, in.array->shape, {}};
  const auto* bytes = static_cast<const std::byte*>(in.array->data);
  r.bytes.assign(bytes, bytes + numel(r.shape) * index_t(dtype_size(r.dtype)));
  return r;
}

LoadedInput::LoadedInput(const JobInput& input, const InputOptions& options) : view_(input.array), name_(input.label) {
  if (name_.empty()) name_ = view_ ? std::string("input array") : "input '" + input.path + "'";
  if (!view_) file_ = load_input(input.path, options);
}

template <class T>
Array<T> LoadedInput::take() {
  const Shape& shape = view_ ? view_->shape : file_.shape;
  if (shape.size() < 2)
    throw InvalidArgument(name_ + " has shape " + shape_string(shape) +
                          "; inputs need examples along the first axis, (N, d) or (N, H, W, C) (reshape a single "
                          "example to (1, ...))");
  if (!view_) {
    Array<T> x = file_.as<T>();
    file_ = RawArray{};
    return x;
  }
  // The compute type's own values are read in place (a NumPy array is not copied); any other type
  // is converted.
  if (view_->dtype == dtype_of<T>()) return Array<T>::borrow(view_->shape, static_cast<const T*>(view_->data));
  Array<T> x(view_->shape);
  convert_values(*view_, x.data());
  return x;
}

template Array<float> LoadedInput::take<float>();
template Array<double> LoadedInput::take<double>();

void check_output_path(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path p(path);
  std::error_code ec;
  if (fs::is_directory(p, ec)) throw IoError("output '" + path + "' is a directory; give a file name to -o");
  fs::path dir = p.parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::is_directory(dir, ec))
    throw IoError("output directory '" + dir.string() + "' does not exist; create it or choose another -o path");
}

Network make_network(const NetworkRequest& request, const Shape& input_shape, const std::string& input_name) {
  return with_context(input_name + " (per-example shape " + shape_string(input_shape) + "): ",
                      [&] { return Network(request.spec, input_shape, request.defaults); });
}

namespace {

// The borrowed arrays as the network's flat vector, when each lies at its offset from one base
// address with the compute type and its shape; nullopt otherwise (they are then copied).
template <class T>
std::optional<std::span<const T>> in_place(const Network& net, const std::map<std::string, ArrayView>& views) {
  const auto& pv = net.param_views();
  if (views.size() != pv.size() || pv.empty()) return std::nullopt;
  const T* base = nullptr;
  for (const ParamView& v : pv) {
    const auto it = views.find(v.name);
    if (it == views.end() || it->second.dtype != dtype_of<T>() || it->second.shape != v.shape) return std::nullopt;
    const T* at = static_cast<const T*>(it->second.data) - v.offset;
    if (base && at != base) return std::nullopt;
    base = at;
  }
  return std::span<const T>(base, size_t(net.num_params()));
}

}  // namespace

template <class T>
ResolvedParams<T> resolve_params(const Network& net, const ParamSource& source, int threads) {
  const int given = int(!source.path.empty()) + int(!source.arrays.empty()) + int(!source.views.empty()) +
                    int(source.seed.has_value());
  if (given != 1) throw InvalidArgument("give exactly one of a parameter file, parameter arrays or a seed");
  if (source.seed) return ResolvedParams<T>(net.init<T>(*source.seed, threads));
  const std::string name = source.path.empty() ? std::string("parameters") : "--params '" + source.path + "'";
  const std::string context = name + " for input shape " + shape_string(net.input_shape()) + ": ";
  if (!source.path.empty()) {
    const auto arrays = read_npz(source.path);
    return ResolvedParams<T>(with_context(context, [&] { return net.params_from_npz<T>(arrays); }));
  }
  if (!source.views.empty()) {
    if (const auto flat = in_place<T>(net, source.views)) {
      with_context(context, [&] { net.check_finite_params<T>(*flat); return 0; });
      return ResolvedParams<T>(*flat);
    }
    return ResolvedParams<T>(with_context(context, [&] { return net.params_from_views<T>(source.views); }));
  }
  return ResolvedParams<T>(with_context(context, [&] { return net.params_from_npz<T>(source.arrays); }));
}

template ResolvedParams<float> resolve_params(const Network&, const ParamSource&, int);
template ResolvedParams<double> resolve_params(const Network&, const ParamSource&, int);

std::string written_prefix(const std::string& output_path) {
  return output_path.empty() ? std::string() : "wrote " + output_path + ": ";
}

void check_out_of_core_has_output(bool out_of_core, const std::string& output_path, bool resume) {
  if (resume && output_path.empty())
    throw InvalidArgument("resume continues the output file of an interrupted run; give its output path");
  if (out_of_core && output_path.empty())
    throw InvalidArgument("an out-of-core kernel is written into its output file; give an output path");
}

}  // namespace detail

namespace {

template <class T>
JobResult run_init_as(const InitJob& job) {
  Network net(job.net.spec, job.input_shape, job.net.defaults);
  std::vector<T> theta = net.init<T>(job.seed, job.threads);
  JobResult r;
  if (job.flat && job.output_path.empty()) {
    r.shape = {net.num_params()};
    r.dtype = dtype_of<T>();
    r.array = Array<T>(r.shape, std::move(theta));
  } else {
    r.params = net.params_to_npz<T>(theta);
  }
  if (!job.output_path.empty()) {
    write_npz(job.output_path, r.params);
    r.params.clear();
    r.output_path = job.output_path;
  }
  r.network_summary = net.summary();
  r.summary = detail::written_prefix(job.output_path) + std::to_string(net.num_params()) + " parameters (" +
              dtype_name(job.dtype) + ", seed " + std::to_string(job.seed) + "), input " +
              shape_string(net.input_shape()) + " -> output " + shape_string(net.output_shape()) + ", spec " +
              net.describe();
  return r;
}

template <class T>
JobResult run_apply_as(const ApplyJob& job, detail::LoadedInput& input) {
  Array<T> x = input.take<T>();
  const Network net = detail::make_network(job.net, drop_first(x.shape()), input.name());
  net.check_inputs(x, input.name().c_str());
  const detail::ResolvedParams<T> theta = detail::resolve_params<T>(net, job.params, job.threads);
  Array<T> y = net.apply(theta.values, x);
  JobResult r;
  r.shape = y.shape();
  r.dtype = dtype_of<T>();
  r.network_summary = net.summary();
  r.summary = detail::written_prefix(job.output_path) + shape_string(r.shape) + " " + dtype_name(r.dtype);
  detail::deliver(std::move(y), job.output_path, r);
  return r;
}

}  // namespace

JobResult run_init(const InitJob& job) {
  if (!job.output_path.empty()) detail::check_output_path(job.output_path);
  return job.dtype == DType::float64 ? run_init_as<double>(job) : run_init_as<float>(job);
}

JobResult run_apply(const ApplyJob& job) {
  if (!job.output_path.empty()) detail::check_output_path(job.output_path);
  // Network::apply takes no thread count; the scope gives it this job's.
  ThreadScope threads(job.threads);
  parse_spec(job.net.spec);  // syntax errors before any file is read
  detail::LoadedInput x(job.x, job.input);
  return detail::computes_in_float64(job.dtype, x.dtype()) ? run_apply_as<double>(job, x) : run_apply_as<float>(job, x);
}

}  // namespace ntk
