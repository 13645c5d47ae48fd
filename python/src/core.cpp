// ntkit._core: the Python bindings, a thin mapping of arguments onto the jobs of ntk/jobs.hpp (the
// same calls the command line makes), so that Python and `ntk` share every default, check and
// message. The public, documented API is the pure-Python package around this module (ntkit/*.py).
//
// Arrays in: a NumPy array that is C-contiguous and float32 / float64 is borrowed (JobInput::memory,
// read in place by the job, never copied when its dtype is the compute type); a str is a file path
// (.npy or IDX), read or memory-mapped as the CLI would. Arrays out: the job's own buffer, handed to
// NumPy with a capsule that frees it (no copy). Every job runs with the GIL released; progress and
// Ctrl-C are checked by re-acquiring it between tiles.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <string>
#include <utility>
#include <variant>

#include "ntk/error.hpp"
#include "ntk/jobs.hpp"
#include "ntk/jobs_features.hpp"
#include "ntk/jobs_spectrum.hpp"
#include "ntk/dynamics.hpp"
#include "ntk/network.hpp"
#include "ntk/parallel.hpp"
#include "ntk/regress.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using ntk::DType;
using ntk::index_t;
using ntk::JobInput;

// A C-contiguous array on the CPU, read only; the Python layer makes other layouts contiguous.
using InArray = nb::ndarray<nb::ro, nb::c_contig, nb::device::cpu>;

DType dtype_of(const InArray& a) {
  if (a.dtype() == nb::dtype<float>()) return DType::float32;
  if (a.dtype() == nb::dtype<double>()) return DType::float64;
  if (a.dtype() == nb::dtype<std::uint8_t>()) return DType::uint8;
  if (a.dtype() == nb::dtype<std::int8_t>()) return DType::int8;
  if (a.dtype() == nb::dtype<std::int16_t>()) return DType::int16;
  if (a.dtype() == nb::dtype<std::int32_t>()) return DType::int32;
  if (a.dtype() == nb::dtype<std::int64_t>()) return DType::int64;
  throw ntk::InvalidArgument("arrays must be float32, float64 or integer (int8..int64, uint8)");
}

ntk::Shape shape_of(const InArray& a) {
  ntk::Shape s(a.ndim());
  for (size_t i = 0; i < a.ndim(); ++i) s[i] = index_t(a.shape(i));
  return s;
}

ntk::ArrayView view_of(const InArray& a) { return {dtype_of(a), shape_of(a), a.data()}; }

// A job input from Python: a str is a file, anything else an array (kept alive by the caller's
// argument for the duration of the call). `name` is how messages call it, e.g. "x1".
JobInput job_input(const nb::handle& obj, const std::string& name) {
  if (nb::isinstance<nb::str>(obj)) {
    const std::string path = nb::cast<std::string>(obj);
    return JobInput::file(path, name + " '" + path + "'");
  }
  return JobInput::memory(view_of(nb::cast<InArray>(obj, false)), name);
}

std::optional<JobInput> optional_input(const nb::handle& obj, const std::string& name) {
  if (obj.is_none()) return std::nullopt;
  return job_input(obj, name);
}

// The job's buffer becomes the NumPy array's: moved into a heap vector owned by a capsule.
template <class T>
nb::object to_numpy(ntk::Array<T>&& a) {
  auto* values = new std::vector<T>(std::move(a.vector()));  // vector() owns a borrowed result first
  nb::capsule owner(values, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  std::vector<size_t> shape(a.shape().begin(), a.shape().end());
  return nb::cast(nb::ndarray<nb::numpy, T>(values->data(), shape.size(), shape.data(), owner));
}

nb::object to_numpy(ntk::AnyArray&& a) {
  return std::visit([](auto& arr) { return to_numpy(std::move(arr)); }, a);
}

// A file's array in its stored type (IDX images as unsigned bytes, labels as integers).
nb::object raw_to_numpy(const ntk::RawArray& raw) {
  switch (raw.dtype) {
    case DType::float32: return to_numpy(raw.as<float>());
    case DType::float64: return to_numpy(raw.as<double>());
    default: break;
  }
  // Integer types: the stored bytes, copied once into an array NumPy owns.
  auto* bytes = new std::vector<std::byte>(raw.bytes);
  nb::capsule owner(bytes, [](void* p) noexcept { delete static_cast<std::vector<std::byte>*>(p); });
  std::vector<size_t> shape(raw.shape.begin(), raw.shape.end());
  nb::dlpack::dtype dt{};
  switch (raw.dtype) {
    case DType::uint8: dt = nb::dtype<std::uint8_t>(); break;
    case DType::int8: dt = nb::dtype<std::int8_t>(); break;
    case DType::int16: dt = nb::dtype<std::int16_t>(); break;
    case DType::int32: dt = nb::dtype<std::int32_t>(); break;
    default: dt = nb::dtype<std::int64_t>(); break;
  }
  return nb::cast(nb::ndarray<nb::numpy>(bytes->data(), shape.size(), shape.data(), owner, nullptr, dt));
}

// Parameters as a job takes them: a dict of arrays (keys '<path>.W' / '<path>.b'), a .npz path, or
// none when a seed is given.
ntk::ParamSource param_source(const nb::handle& params, std::optional<std::uint64_t> seed) {
  ntk::ParamSource src;
  src.seed = seed;
  if (params.is_none()) return src;
  if (nb::isinstance<nb::str>(params)) {
    src.path = nb::cast<std::string>(params);
    return src;
  }
  // Borrowed: the dict (the caller's argument) keeps every array alive for the call.
  for (auto [key, value] : nb::cast<nb::dict>(params))
    src.views.emplace(nb::cast<std::string>(key), view_of(nb::cast<InArray>(value, false)));
  return src;
}

ntk::NetworkRequest network_request(const std::string& spec, double W_std, std::optional<double> b_std,
                                    const std::string& parameterization) {
  ntk::NetworkRequest r;
  r.spec = spec;
  r.defaults.W_std = W_std;
  r.defaults.b_std = b_std;
  r.defaults.parameterization = ntk::parse_parameterization(parameterization);
  return r;
}

// Progress for long work: calls `callback(done, total)` under the GIL, and turns a pending signal
// (Ctrl-C) or an exception raised by the callback into a C++ exception that unwinds the job (which
// leaves no output file) and reaches Python as the original exception. The callable is held as a
// borrowed pointer (the caller's argument keeps it alive), so that copies of the std::function made
// without the GIL touch no reference count.
ntk::ProgressFn progress_fn(const nb::handle& callback) {
  PyObject* cb = callback.is_none() ? nullptr : callback.ptr();
  return [cb](index_t done, index_t total) {
    nb::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw nb::python_error();
    if (cb) nb::handle{cb}(done, total);
  };
}

std::optional<DType> optional_dtype(const std::optional<std::string>& s) {
  if (!s) return std::nullopt;
  return ntk::parse_float_dtype(*s);
}

nb::object job_array(ntk::JobResult&& r) {
  if (r.array) return to_numpy(std::move(*r.array));
  return nb::none();
}

// For the length of a call into ntkit: the GIL released (other Python threads run) and OpenBLAS
// single-threaded for ntkit, given back to NumPy / PyTorch afterwards (ntk::share_blas_with_host).
struct InNtkit {
  ntk::BlasForNtkit blas;
  nb::gil_scoped_release release;
};

// C++ work runs with the GIL released: jobs touch no Python object (progress_fn re-acquires it).
template <class F>
auto without_gil(F&& work) {
  InNtkit call;
  return work();
}

// ---------------------------------------------------------------------------------------------
// Jobs

nb::dict network_info(const std::string& spec, const std::vector<index_t>& input_shape, double W_std,
                      std::optional<double> b_std, const std::string& parameterization) {
  const ntk::NetworkRequest r = network_request(spec, W_std, b_std, parameterization);
  const ntk::Network net(r.spec, input_shape, r.defaults);
  nb::dict info;
  info["describe"] = net.describe();
  info["summary"] = net.summary();
  info["output_shape"] = std::vector<index_t>(net.output_shape());
  info["num_params"] = net.num_params();
  nb::list params;
  for (const ntk::ParamView& v : net.param_views()) params.append(nb::make_tuple(v.name, v.shape, v.offset));
  info["params"] = params;
  return info;
}

// The flat parameter vector (num_params,); the Python side hands out its named slices.
nb::object init(const std::string& spec, double W_std, std::optional<double> b_std, const std::string& parameterization,
                const std::vector<index_t>& input_shape, std::uint64_t seed, const std::string& dtype, int threads) {
  ntk::InitJob job;
  job.net = network_request(spec, W_std, b_std, parameterization);
  job.input_shape = input_shape;
  job.seed = seed;
  job.dtype = ntk::parse_float_dtype(dtype);
  job.threads = threads;
  job.flat = true;
  ntk::JobResult r = without_gil([&] { return ntk::run_init(job); });
  return job_array(std::move(r));
}

nb::object apply(const std::string& spec, double W_std, std::optional<double> b_std, const std::string& parameterization,
                 nb::handle params, std::optional<std::uint64_t> seed, nb::handle x, std::optional<std::string> dtype,
                 int threads) {
  ntk::ApplyJob job;
  job.net = network_request(spec, W_std, b_std, parameterization);
  job.params = param_source(params, seed);
  job.x = job_input(x, "x");
  job.dtype = optional_dtype(dtype);
  job.threads = threads;
  ntk::JobResult r = without_gil([&] { return ntk::run_apply(job); });
  return job_array(std::move(r));
}

void fill_common(ntk::KernelJobCommon& job, const std::string& spec, double W_std, std::optional<double> b_std,
                 const std::string& parameterization, nb::handle x1, nb::handle x2, std::uint64_t max_memory,
                 bool out_of_core, bool resume, int threads, nb::handle progress, const std::string& output) {
  job.net = network_request(spec, W_std, b_std, parameterization);
  job.x1 = job_input(x1, "x1");
  job.x2 = optional_input(x2, "x2");
  job.max_memory = max_memory;
  job.out_of_core = out_of_core;
  job.resume = resume;
  job.threads = threads;
  job.progress = progress_fn(progress);
  job.output_path = output;
}

ntk::EntkJob entk_job(const std::string& spec, double W_std, std::optional<double> b_std,
                      const std::string& parameterization, nb::handle params, std::optional<std::uint64_t> seed,
                      nb::handle x1, nb::handle x2, const std::string& mode, const std::string& method, bool nngp,
                      std::optional<std::string> dtype, bool accumulate_float64, index_t tile, std::uint64_t max_memory,
                      bool out_of_core, bool resume, int threads, nb::handle progress, const std::string& output) {
  ntk::EntkJob job;
  fill_common(job, spec, W_std, b_std, parameterization, x1, x2, max_memory, out_of_core, resume, threads, progress,
              output);
  job.params = param_source(params, seed);
  job.mode = ntk::parse_entk_mode(mode);
  job.method = ntk::parse_entk_method(method);
  job.nngp = nngp;
  job.dtype = optional_dtype(dtype);
  job.accumulate_float64 = accumulate_float64;
  job.tile = tile;
  return job;
}

// Returns (array or None, output path, summary): None when the kernel went to `output`.
nb::tuple entk(const std::string& spec, double W_std, std::optional<double> b_std, const std::string& parameterization,
               nb::handle params, std::optional<std::uint64_t> seed, nb::handle x1, nb::handle x2,
               const std::string& mode, const std::string& method, bool nngp, std::optional<std::string> dtype,
               bool accumulate_float64, index_t tile, std::uint64_t max_memory, bool out_of_core, bool resume,
               int threads, nb::handle progress, const std::string& output) {
  const ntk::EntkJob job = entk_job(spec, W_std, b_std, parameterization, params, seed, x1, x2, mode, method, nngp,
                                    dtype, accumulate_float64, tile, max_memory, out_of_core, resume, threads, progress,
                                    output);
  ntk::JobResult r = without_gil([&] { return ntk::run_entk(job); });
  std::string path = r.output_path, summary = r.summary;
  return nb::make_tuple(job_array(std::move(r)), path, summary);
}

// The planner's choice: (the --explain text, {method: estimated FLOPs}, the chosen method).
nb::tuple explain_entk(const std::string& spec, double W_std, std::optional<double> b_std,
                         const std::string& parameterization, nb::handle x1, nb::handle x2, const std::string& mode,
                         const std::string& method, std::optional<std::string> dtype, bool accumulate_float64,
                         index_t tile, std::uint64_t max_memory, bool out_of_core, int threads, const std::string& output) {
  const ntk::EntkJob job = entk_job(spec, W_std, b_std, parameterization, nb::none(), 0, x1, x2, mode, method, false,
                                    dtype, accumulate_float64, tile, max_memory, out_of_core, false, threads, nb::none(),
                                    output);
  const ntk::EntkJobPlan p = without_gil([&] { return ntk::plan_entk(job); });
  nb::dict flops;
  for (const ntk::EntkPlan::Candidate& c : p.plan.candidates) flops[ntk::to_string(c.method)] = c.flops;
  return nb::make_tuple(p.describe(), flops, std::string(ntk::to_string(p.plan.method)));
}

nb::tuple kernel(const std::string& spec, double W_std, std::optional<double> b_std, const std::string& parameterization,
                 nb::handle x1, nb::handle x2, const std::string& get, const std::string& dtype, std::uint64_t max_memory,
                 bool out_of_core, bool resume, int threads, nb::handle progress, const std::string& output) {
  ntk::KernelJob job;
  fill_common(job, spec, W_std, b_std, parameterization, x1, x2, max_memory, out_of_core, resume, threads, progress,
              output);
  if (get != "ntk" && get != "nngp") throw ntk::InvalidArgument("get must be 'ntk' or 'nngp', got '" + get + "'");
  job.get = get == "ntk" ? ntk::KernelOptions::ntk : ntk::KernelOptions::nngp;
  job.dtype = ntk::parse_float_dtype(dtype);
  ntk::JobResult r = without_gil([&] { return ntk::run_kernel(job); });
  std::string path = r.output_path, summary = r.summary;
  return nb::make_tuple(job_array(std::move(r)), path, summary);
}

ntk::SketchTransform parse_transform(const std::string& s) {
  if (s == "fourier") return ntk::SketchTransform::fourier;
  if (s == "hadamard") return ntk::SketchTransform::hadamard;
  throw ntk::InvalidArgument("transform must be 'fourier' or 'hadamard', got '" + s + "'");
}

ntk::GradientProjection parse_projection(const std::string& s) {
  if (s == "srht") return ntk::GradientProjection::srht;
  if (s == "hadamard") return ntk::GradientProjection::hadamard;
  if (s == "countsketch") return ntk::GradientProjection::countsketch;
  throw ntk::InvalidArgument("projection must be 'srht', 'hadamard' or 'countsketch', got '" + s + "'");
}

// The feature job; settings come as a dict of the FeaturesJob fields the Python classes hold (their
// constructor arguments), so the classes and this function do not list them twice.
nb::object features(const nb::dict& s, nb::handle x, nb::handle params, nb::handle progress, const std::string& output,
                    bool resume) {
  ntk::FeaturesJob job;
  auto get = [&](const char* key) { return s[key]; };
  job.sketch = nb::cast<std::string>(get("sketch"));
  job.depth = nb::cast<int>(get("depth"));
  job.dim = nb::cast<index_t>(get("dim"));
  job.degree = nb::cast<int>(get("degree"));
  job.layerwise = nb::cast<bool>(get("layerwise"));
  job.filter = nb::cast<int>(get("filter"));
  const std::string padding = nb::cast<std::string>(get("padding"));
  if (padding != "SAME" && padding != "VALID")
    throw ntk::InvalidArgument("padding must be 'SAME' or 'VALID', got '" + padding + "'");
  job.same = padding == "SAME";
  job.poly_dim = nb::cast<index_t>(get("poly_dim"));
  job.relu_dim = nb::cast<index_t>(get("relu_dim"));
  job.step_dim = nb::cast<index_t>(get("step_dim"));
  job.leverage = nb::cast<bool>(get("leverage"));
  job.shared_projection = nb::cast<bool>(get("shared_projection"));
  job.seed = nb::cast<std::uint64_t>(get("seed"));
  if (!get("transform").is_none()) job.transform = parse_transform(nb::cast<std::string>(get("transform")));
  job.flatten = nb::cast<bool>(get("flatten"));
  if (job.sketch == "gradient") {
    job.net = network_request(nb::cast<std::string>(get("spec")), nb::cast<double>(get("W_std")),
                              nb::cast<std::optional<double>>(get("b_std")), nb::cast<std::string>(get("parameterization")));
    job.params = param_source(params, nb::cast<std::optional<std::uint64_t>>(get("init_seed")));
    job.mode = ntk::parse_entk_mode(nb::cast<std::string>(get("mode")));
    job.projection = parse_projection(nb::cast<std::string>(get("projection")));
  }
  job.dtype = ntk::parse_float_dtype(nb::cast<std::string>(get("dtype")));
  job.threads = nb::cast<int>(get("threads"));
  job.max_memory = nb::cast<std::uint64_t>(get("max_memory"));
  job.x = job_input(x, "x");
  job.progress = progress_fn(progress);
  job.output_path = output;
  job.resume = resume;
  ntk::JobResult r = without_gil([&] { return ntk::run_features(job); });
  return job_array(std::move(r));
}

// Kernel regression (ntk regress): returns (report JSON, test predictions, train predictions).
nb::tuple regress(const nb::dict& s, nb::handle progress) {
  ntk::RegressJob job;
  auto get = [&](const char* key) { return s[key]; };
  job.k_train = optional_input(get("k_train"), "k_train");
  job.k_test = optional_input(get("k_test"), "k_test");
  job.f_train = optional_input(get("f_train"), "f_train");
  job.f_test = optional_input(get("f_test"), "f_test");
  job.y_train = job_input(get("y_train"), "y_train");
  job.y_test = optional_input(get("y_test"), "y_test");
  job.classes = nb::cast<index_t>(get("classes"));
  const nb::handle ridge = get("ridge");
  if (nb::isinstance<nb::str>(ridge)) {
    if (nb::cast<std::string>(ridge) != "auto")
      throw ntk::InvalidArgument("ridge must be a number >= 0 or 'auto', got '" + nb::cast<std::string>(ridge) + "'");
    job.ridge_auto = true;
  } else {
    job.ridge = nb::cast<double>(ridge);
  }
  job.ridge_absolute = nb::cast<bool>(get("ridge_absolute"));
  job.validation = nb::cast<index_t>(get("validation"));
  job.ridge_grid = nb::cast<std::vector<double>>(get("ridge_grid"));
  job.times = nb::cast<std::vector<double>>(get("times"));
  job.learning_rate = nb::cast<double>(get("learning_rate"));
  job.centers = nb::cast<index_t>(get("centers"));
  job.center_seed = nb::cast<std::uint64_t>(get("center_seed"));
  job.center_indices = nb::cast<std::vector<index_t>>(get("center_indices"));
  job.max_iterations = nb::cast<index_t>(get("max_iterations"));
  job.batch_rows = nb::cast<index_t>(get("batch_rows"));
  job.tolerance = nb::cast<double>(get("tolerance"));
  job.max_memory = nb::cast<std::uint64_t>(get("max_memory"));
  job.threads = nb::cast<int>(get("threads"));
  job.output_path = nb::cast<std::string>(get("output"));
  job.resume = nb::cast<bool>(get("resume"));
  job.checkpoint_seconds = nb::cast<double>(get("checkpoint_seconds"));
  job.progress = progress_fn(progress);
  ntk::RegressResult r = without_gil([&] { return ntk::run_regress(job); });
  const std::string report = ntk::regress_json(r, job);
  nb::object test = r.test_predictions.empty() ? nb::none() : to_numpy(std::move(r.test_predictions));
  nb::object train = r.train_predictions.empty() ? nb::none() : to_numpy(std::move(r.train_predictions));
  return nb::make_tuple(report, test, train);
}

std::string spectrum(nb::handle k, nb::handle y, index_t top, index_t bottom, int threads, const std::string& output) {
  ntk::SpectrumJob job;
  job.k = job_input(k, "k");
  job.y = optional_input(y, "y");
  job.top = top;
  job.bottom = bottom;
  job.threads = threads;
  job.output_path = output;
  InNtkit call;
  return ntk::run_spectrum(job).json();
}

std::string compare(nb::handle a, nb::handle ref, bool spectra, int threads) {
  ntk::CompareJob job;
  job.a = job_input(a, "k");
  job.b = job_input(ref, "ref");
  job.spectra = spectra;
  job.threads = threads;
  InNtkit call;
  return ntk::run_compare(job).json();
}

// A float64 matrix from NumPy, read in place (the solvers only read their inputs).
using Matrix = nb::ndarray<const double, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

ntk::Array<double> borrow_matrix(const Matrix& m) {
  return ntk::Array<double>::borrow({index_t(m.shape(0)), index_t(m.shape(1))}, m.data());
}

// An optional matrix argument: None, or a float64 C-contiguous matrix.
std::optional<ntk::Array<double>> borrow_optional(nb::handle h) {
  if (h.is_none()) return std::nullopt;
  return borrow_matrix(nb::cast<Matrix>(h, false));
}

// Linearized gradient-descent dynamics (nt.predict.gradient_descent_mse) in float64.
nb::tuple gradient_descent_mse(const Matrix& k_train, const Matrix& y_train,
                               const std::vector<double>& times, double learning_rate, double diag_reg,
                               bool diag_reg_absolute_scale, nb::handle k_test, nb::handle f0_train, nb::handle f0_test,
                               int threads) {
  const ntk::Array<double> kt = borrow_matrix(k_train), y = borrow_matrix(y_train);
  const std::optional<ntk::Array<double>> kx = borrow_optional(k_test), f0t = borrow_optional(f0_train),
                                          f0x = borrow_optional(f0_test);
  ntk::GdMseOptions o;
  o.learning_rate = learning_rate;
  o.diag_reg = diag_reg;
  o.diag_reg_absolute_scale = diag_reg_absolute_scale;
  o.threads = threads;
  ntk::GdMsePredictions p = without_gil([&] {
    return ntk::gradient_descent_mse(kt, y, times, o, kx ? &*kx : nullptr, f0t ? &*f0t : nullptr, f0x ? &*f0x : nullptr);
  });
  nb::object test = p.test.empty() ? nb::none() : to_numpy(std::move(p.test));
  return nb::make_tuple(to_numpy(std::move(p.train)), test, p.lambda, p.warning);
}

// GP inference (nt.predict.gp_inference) in float64: kernels as dicts {"train_train", "test_train",
// "test_test"} of arrays (absent keys: none).
nb::tuple gp_inference(const std::string& get, const Matrix& y_train,
                       const nb::dict& nngp, const nb::dict& ntk_kernels, double diag_reg, bool diag_reg_absolute_scale,
                       int threads) {
  struct Held {
    std::optional<ntk::Array<double>> tt, xt, xx;
    ntk::GpKernels<double> view() const {
      return {tt ? &*tt : nullptr, xt ? &*xt : nullptr, xx ? &*xx : nullptr};
    }
  };
  auto hold = [](const nb::dict& d) {
    Held h;
    auto one = [&](const char* key, std::optional<ntk::Array<double>>& slot) {
      if (d.contains(key)) slot = borrow_optional(d[key]);
    };
    one("train_train", h.tt);
    one("test_train", h.xt);
    one("test_test", h.xx);
    return h;
  };
  const Held a = hold(nngp), b = hold(ntk_kernels);
  const ntk::Array<double> y = borrow_matrix(y_train);
  ntk::PredictOptions o;
  o.diag_reg = diag_reg;
  o.diag_reg_absolute_scale = diag_reg_absolute_scale;
  o.threads = threads;
  ntk::GpPosterior p =
      without_gil([&] { return ntk::gp_inference(ntk::parse_gp_get(get), y, a.view(), b.view(), o); });
  nb::object cov = p.covariance.empty() ? nb::none() : to_numpy(std::move(p.covariance));
  return nb::make_tuple(to_numpy(std::move(p.mean)), cov, p.lambda, p.warning);
}

std::string pntk_report(const std::string& spec, double W_std, std::optional<double> b_std,
                        const std::string& parameterization, nb::handle params, std::optional<std::uint64_t> seed,
                        nb::handle x_train, nb::handle y_train, nb::handle x_test, nb::handle y_test, double ridge,
                        const std::string& method, std::optional<std::string> dtype, std::uint64_t max_memory, int threads) {
  ntk::PntkReportJob job;
  job.net = network_request(spec, W_std, b_std, parameterization);
  job.params = param_source(params, seed);
  job.x_train = job_input(x_train, "x_train");
  job.y_train = job_input(y_train, "y_train");
  job.x_test = job_input(x_test, "x_test");
  job.y_test = job_input(y_test, "y_test");
  job.options.ridge = ridge;
  job.options.method = ntk::parse_entk_method(method);
  job.options.max_memory = max_memory;
  job.options.threads = threads;
  job.dtype = optional_dtype(dtype);
  InNtkit call;
  return ntk::run_pntk_report(job).json();
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "ntkit's C++ core (private: use the ntkit package)";
  ntk::share_blas_with_host();  // NumPy's and PyTorch's BLAS keep their threads between ntkit's calls
  m.def("host_blas_threads", &ntk::host_blas_threads);
  m.def("set_host_blas_threads", &ntk::set_host_blas_threads, "threads"_a);
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const ntk::NotSupported& e) {
      PyErr_SetString(PyExc_NotImplementedError, e.what());
    } catch (const ntk::MemoryBudgetError& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    } catch (const ntk::InvalidArgument& e) {  // ParseError too
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const ntk::IoError& e) {
      PyErr_SetString(PyExc_OSError, e.what());
    } catch (const ntk::NumericalError& e) {
      PyErr_SetString(PyExc_FloatingPointError, e.what());
    } catch (const ntk::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });
  m.attr("__version__") = NTK_VERSION;
  m.def("keep_freed_memory", &ntk::keep_freed_memory_for_reuse, "keep"_a);
  m.def("network_info", &network_info, "spec"_a, "input_shape"_a, "W_std"_a, "b_std"_a.none(), "parameterization"_a);
  m.def("init", &init, "spec"_a, "W_std"_a, "b_std"_a.none(), "parameterization"_a, "input_shape"_a, "seed"_a,
        "dtype"_a, "threads"_a);
  m.def("apply", &apply, "spec"_a, "W_std"_a, "b_std"_a.none(), "parameterization"_a, "params"_a.none(),
        "seed"_a.none(), "x"_a, "dtype"_a.none(), "threads"_a);
  m.def("entk", &entk, "spec"_a, "W_std"_a, "b_std"_a.none(), "parameterization"_a, "params"_a.none(), "seed"_a.none(),
        "x1"_a, "x2"_a.none(), "mode"_a, "method"_a, "nngp"_a, "dtype"_a.none(), "accumulate_float64"_a, "tile"_a,
        "max_memory"_a, "out_of_core"_a, "resume"_a, "threads"_a, "progress"_a.none(), "output"_a);
  m.def("explain_entk", &explain_entk, "spec"_a, "W_std"_a, "b_std"_a.none(), "parameterization"_a, "x1"_a,
        "x2"_a.none(), "mode"_a, "method"_a, "dtype"_a.none(), "accumulate_float64"_a, "tile"_a, "max_memory"_a,
        "out_of_core"_a, "threads"_a, "output"_a);
  m.def("kernel", &kernel, "spec"_a, "W_std"_a, "b_std"_a.none(), "parameterization"_a, "x1"_a, "x2"_a.none(),
        "get"_a, "dtype"_a, "max_memory"_a, "out_of_core"_a, "resume"_a, "threads"_a, "progress"_a.none(), "output"_a);
  m.def("features", &features, "settings"_a, "x"_a, "params"_a.none(), "progress"_a.none(), "output"_a,
        "resume"_a = false);
  m.def("regress", &regress, "settings"_a, "progress"_a.none());
  m.def("spectrum", &spectrum, "k"_a, "y"_a.none(), "top"_a, "bottom"_a, "threads"_a, "output"_a);
  m.def("compare", &compare, "k"_a, "ref"_a, "spectra"_a, "threads"_a);
  m.def("gradient_descent_mse", &gradient_descent_mse, "k_train"_a, "y_train"_a, "times"_a, "learning_rate"_a,
        "diag_reg"_a, "diag_reg_absolute_scale"_a, "k_test"_a.none(), "f0_train"_a.none(), "f0_test"_a.none(),
        "threads"_a);
  m.def("gp_inference", &gp_inference, "get"_a, "y_train"_a, "nngp"_a, "ntk"_a, "diag_reg"_a,
        "diag_reg_absolute_scale"_a, "threads"_a);
  m.def("pntk_report", &pntk_report, "spec"_a, "W_std"_a, "b_std"_a.none(), "parameterization"_a, "params"_a.none(),
        "seed"_a.none(), "x_train"_a, "y_train"_a, "x_test"_a, "y_test"_a, "ridge"_a, "method"_a, "dtype"_a.none(),
        "max_memory"_a, "threads"_a);
  m.def("load_input", [](const std::string& path) {
    ntk::RawArray raw;
    {
      InNtkit call;
      raw = ntk::load_input(path, {ntk::IdxScale::raw});
    }
    return raw_to_numpy(raw);
  }, "path"_a);
  m.def("parse_bytes", [](const std::string& s) {
    const auto b = ntk::parse_bytes(s);
    if (!b) throw ntk::InvalidArgument("max_memory '" + s + "' is not a size such as 4G, 512M or 1000000 (bytes)");
    return *b;
  }, "text"_a);
  m.def("set_num_threads", &ntk::set_num_threads, "threads"_a);
  m.def("num_threads", &ntk::num_threads);
}
