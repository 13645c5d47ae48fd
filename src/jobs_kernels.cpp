// Jobs, part two: the kernels. run_entk and run_kernel read their inputs, decide from the plans'
// byte estimates whether the kernel is computed in memory or straight into the output file, and
// run the library's entry point with the job's threads.
#include <optional>
#include <string>
#include <utility>

#include "jobs_detail.hpp"
#include "ntk/jobs.hpp"
#include "ntk/parallel.hpp"
#include "ntk/spec.hpp"

namespace ntk {

namespace {

// x1, the optional x2, and the network for x1's per-example shape, checked.
template <class T>
struct KernelInputs {
  Array<T> x1;
  std::optional<Array<T>> x2;
  Network net;
};

template <class T>
KernelInputs<T> kernel_inputs(const NetworkRequest& request, detail::LoadedInput& x1_input,
                              const std::optional<JobInput>& x2_job, const InputOptions& options) {
  Array<T> x1 = x1_input.take<T>();
  std::optional<Array<T>> x2;
  std::string x2_name;
  if (x2_job) {
    detail::LoadedInput x2_input(*x2_job, options);
    x2_name = x2_input.name();
    x2 = x2_input.take<T>();
  }
  Network net = detail::make_network(request, drop_first(x1.shape()), x1_input.name());
  net.check_inputs(x1, x1_input.name().c_str());
  if (x2) net.check_inputs(*x2, x2_name.c_str());
  return {std::move(x1), std::move(x2), std::move(net)};
}

EntkOptions entk_options(const EntkJob& job) {
  EntkOptions o;
  o.mode = job.mode;
  o.method = job.method;
  o.tile = job.tile;
  o.max_memory = job.max_memory;
  o.threads = job.threads;
  o.progress = job.progress;
  o.resume = job.resume;
  return o;
}

// ", resumed at row R of N" when an interrupted run's finished rows were kept.
std::string resumed_text(index_t row, index_t rows) {
  return row > 0 ? ", resumed at row " + std::to_string(row) + " of " + std::to_string(rows) : "";
}

// Whether the whole kernel fits max_memory beside the working memory of at least a one-example
// tile (or of the tile asked for) for the method asked for, or for any method under auto: exactly
// when the in-memory plan can choose a tile. The plan's estimates are taken without a budget, so
// nothing is thrown to find out.
bool entk_fits_in_memory(const Network& net, index_t n1, index_t n2, bool symmetric, const EntkOptions& o,
                         std::size_t element_bytes) {
  if (o.max_memory == 0) return true;
  EntkOptions probe = o;
  probe.max_memory = 0;
  probe.tile = o.tile > 0 ? o.tile : 1;
  const EntkPlan p = plan_empirical_ntk(net, n1, n2, symmetric, probe, element_bytes);
  if (p.output_bytes >= o.max_memory) return false;
  for (const auto& c : p.candidates)
    if ((o.method == EntkMethod::automatic || c.method == o.method) && p.output_bytes + c.working_bytes <= o.max_memory)
      return true;
  return false;
}

// The compute type's size: float64 when asked or when x1 is float64 (dtype) or for float64
// accumulation; float32 otherwise.
std::size_t entk_element_bytes(const EntkJob& job, DType x1_dtype) {
  return detail::computes_in_float64(job.dtype, x1_dtype) || job.accumulate_float64 ? 8 : 4;
}

template <class T>
EntkJobPlan plan_entk_as(const EntkJob& job, const KernelInputs<T>& in) {
  EntkJobPlan jp;
  jp.n1 = in.x1.dim(0);
  jp.n2 = in.x2 ? in.x2->dim(0) : jp.n1;
  jp.symmetric = !in.x2;
  jp.outputs = in.net.output_size();
  jp.num_params = in.net.num_params();
  EntkOptions o = entk_options(job);
  jp.out_of_core =
      job.out_of_core || !entk_fits_in_memory(in.net, jp.n1, jp.n2, jp.symmetric, o, sizeof(T));
  o.out_of_core = jp.out_of_core;
  jp.plan = plan_empirical_ntk(in.net, jp.n1, jp.n2, jp.symmetric, o, sizeof(T));
  return jp;
}

// T is the compute type, Out the type of the result (float32 with float64 accumulation: T =
// double, Out = float).
template <class T, class Out = T>
JobResult run_entk_as(const EntkJob& job, detail::LoadedInput& x1_input) {
  const KernelInputs<T> in = kernel_inputs<T>(job.net, x1_input, job.x2, job.input);
  const Array<T>* x2 = in.x2 ? &*in.x2 : nullptr;
  const detail::ResolvedParams<T> params = detail::resolve_params<T>(in.net, job.params, job.threads);
  const ThetaSpan<T> theta = params.values;
  const EntkOptions o = entk_options(job);
  const index_t n1 = in.x1.dim(0), n2 = x2 ? x2->dim(0) : n1;
  JobResult r;
  r.shape = entk_output_shape(o.mode, n1, n2, in.net.output_size());
  r.dtype = dtype_of<Out>();
  // The NNGP is as small as its outputs (N·O values); no budget applies.
  detail::check_out_of_core_has_output(job.out_of_core, job.output_path, job.resume);
  if (job.resume && job.nngp)
    throw NotSupported("--resume applies to kernels written out of core; the empirical NNGP is computed in memory");
  r.out_of_core = !job.nngp && !job.output_path.empty() &&
                  (job.out_of_core || job.resume || !entk_fits_in_memory(in.net, n1, n2, !x2, o, sizeof(T)));
  index_t resumed_at = 0;
  if (r.out_of_core) {
    if constexpr (!std::is_same_v<T, Out>)
      throw NotSupported("--accumulate float64 with a float32 kernel written out of core is not supported; use --dtype float64");
    else
      resumed_at = empirical_ntk_to_file(in.net, theta, in.x1, x2, o, job.output_path);
  } else {
    Array<T> k = job.nngp ? empirical_nngp(in.net, theta, in.x1, x2, o.mode) : empirical_ntk(in.net, theta, in.x1, x2, o);
    if constexpr (std::is_same_v<T, Out>)
      detail::deliver(std::move(k), job.output_path, r);
    else
      detail::deliver(cast<Out>(k), job.output_path, r);
  }
  r.output_path = job.output_path;
  r.summary = detail::written_prefix(job.output_path) + shape_string(r.shape) + " " + dtype_name(r.dtype) +
              (std::is_same_v<T, Out> ? "" : " (float64 accumulation)") + (job.nngp ? ", empirical NNGP" : "") +
              ", mode " + to_string(o.mode) + (r.out_of_core ? ", out of core" : "") + resumed_text(resumed_at, n1);
  return r;
}

template <class T>
JobResult run_kernel_as(const KernelJob& job, detail::LoadedInput& x1_input) {
  const KernelInputs<T> in = kernel_inputs<T>(job.net, x1_input, job.x2, job.input);
  const Array<T>* x2 = in.x2 ? &*in.x2 : nullptr;
  KernelOptions o;
  o.get = job.get;
  o.max_memory = job.max_memory;
  o.threads = job.threads;
  o.progress = job.progress;
  o.resume = job.resume;
  const index_t n1 = in.x1.dim(0), n2 = x2 ? x2->dim(0) : n1;
  // Throws, naming --max-memory, when the working memory alone does not fit; the kernel may.
  const KernelPlan plan = plan_infinite_kernel(in.net, n1, n2, o, sizeof(T));
  JobResult r;
  r.shape = {n1, n2};
  r.dtype = job.dtype;
  detail::check_out_of_core_has_output(job.out_of_core, job.output_path, job.resume);
  r.out_of_core = !job.output_path.empty() &&
                  (job.out_of_core || job.resume ||
                   (o.max_memory > 0 && plan.result_bytes + plan.working_bytes > o.max_memory));
  index_t resumed_at = 0;
  if (r.out_of_core) {
    resumed_at = infinite_kernel_to_file(in.net, in.x1, x2, o, job.output_path);
  } else {
    detail::deliver(infinite_kernel(in.net, in.x1, x2, o), job.output_path, r);
  }
  r.output_path = job.output_path;
  r.summary = detail::written_prefix(job.output_path) + shape_string(r.shape) + " " + dtype_name(r.dtype) +
              ", infinite-width " + (job.get == KernelOptions::nngp ? "nngp" : "ntk") +
              (r.out_of_core ? ", out of core" : "") + resumed_text(resumed_at, n1);
  return r;
}

}  // namespace

std::string EntkJobPlan::describe() const {
  return "eNTK of " + std::to_string(n1) + " x " + std::to_string(n2) + " examples, " + std::to_string(outputs) +
         " outputs, " + std::to_string(num_params) + " parameters, mode " + to_string(mode) +
         (symmetric ? ", symmetric" : "") + "\n" + (out_of_core ? "out of core: " : "") + plan.describe();
}

EntkJobPlan plan_entk(const EntkJob& job) {
  parse_spec(job.net.spec);
  detail::LoadedInput x1(job.x1, job.input);
  EntkJobPlan jp;
  if (entk_element_bytes(job, x1.dtype()) == 8)
    jp = plan_entk_as<double>(job, kernel_inputs<double>(job.net, x1, job.x2, job.input));
  else
    jp = plan_entk_as<float>(job, kernel_inputs<float>(job.net, x1, job.x2, job.input));
  jp.mode = job.mode;
  return jp;
}

JobResult run_entk(const EntkJob& job) {
  if (!job.output_path.empty()) detail::check_output_path(job.output_path);
  // The options carry the threads to the library's entry points; the scope also covers what runs
  // outside them (the empirical NNGP's forward passes).
  ThreadScope threads(job.threads);
  parse_spec(job.net.spec);  // syntax errors before any file is read
  detail::LoadedInput x1(job.x1, job.input);
  if (detail::computes_in_float64(job.dtype, x1.dtype())) return run_entk_as<double>(job, x1);
  if (job.accumulate_float64) return run_entk_as<double, float>(job, x1);
  return run_entk_as<float>(job, x1);
}

JobResult run_kernel(const KernelJob& job) {
  if (!job.output_path.empty()) detail::check_output_path(job.output_path);
  parse_spec(job.net.spec);
  detail::LoadedInput x1(job.x1, job.input);
  return job.dtype == DType::float64 ? run_kernel_as<double>(job, x1) : run_kernel_as<float>(job, x1);
}

}  // namespace ntk
