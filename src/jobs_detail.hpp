// What the job entry points of jobs.cpp (init, apply, inputs) and jobs_kernels.cpp (entk, kernel)
// share: inputs read but not yet converted, parameters from their source, the network of an input.
#pragma once
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ntk/error.hpp"
#include "ntk/jobs.hpp"
#include "ntk/network.hpp"

namespace ntk::detail {

// An input read but not yet converted to the compute type, which may depend on its dtype.
class LoadedInput {
 public:
  LoadedInput(const JobInput& input, const InputOptions& options);
  DType dtype() const { return view_ ? view_->dtype : file_.dtype; }
  const std::string& name() const { return name_; }
  // The values as T, checked to have examples along the first axis; a file's bytes are released.
  template <class T>
  Array<T> take();

 private:
  RawArray file_;
  std::optional<ArrayView> view_;
  std::string name_;
};

// How messages name an input: its label, else "'<path>'", or array_name for an array in memory.
std::string input_name(const JobInput& in, const std::string& array_name = "input array");

// An input's stored array, unconverted and never rescaled (labels and kernels are numbers already):
// a file read by content (.npy or IDX), or a copy of an array in memory.
RawArray raw_input(const JobInput& in);

inline bool is_float(DType d) { return d == DType::float32 || d == DType::float64; }

// float64 when asked, or when not asked and the input is float64; float32 otherwise.
inline bool computes_in_float64(const std::optional<DType>& asked, DType input) {
  return asked ? *asked == DType::float64 : input == DType::float64;
}


// Fails before any long computation if the output could not be written anyway.
void check_output_path(const std::string& path);

// The network for inputs of per-example shape input_shape; value errors name the input.
Network make_network(const NetworkRequest& request, const Shape& input_shape, const std::string& input_name);

// A job's parameters as the network's flat vector: owned, or borrowed when arrays in memory
// (ParamSource::views) already lie in place as that vector, as the Python package's init() hands
// them out (named slices of one buffer); then nothing is copied. `values` stays valid when moved.
template <class T>
struct ResolvedParams {
  std::vector<T> owned;
  std::span<const T> values;
  ResolvedParams() = default;
  // Moves only: a copy's `values` would point into the source's `owned`.
  ResolvedParams(const ResolvedParams&) = delete;
  ResolvedParams& operator=(const ResolvedParams&) = delete;
  ResolvedParams(ResolvedParams&&) noexcept = default;
  ResolvedParams& operator=(ResolvedParams&&) noexcept = default;
  explicit ResolvedParams(std::vector<T> v) : owned(std::move(v)), values(owned) {}
  explicit ResolvedParams(std::span<const T> borrowed) : values(borrowed) {}
  // An owned vector: this one, or a copy of the borrowed values.
  std::vector<T> take() { return owned.empty() ? std::vector<T>(values.begin(), values.end()) : std::move(owned); }
};

// The parameters from exactly one of file, arrays or seed, checked against the network.
template <class T>
ResolvedParams<T> resolve_params(const Network& net, const ParamSource& source, int threads);

// "wrote PATH: " when written, "" when returned in memory.
std::string written_prefix(const std::string& output_path);

// Puts a result computed in memory where the job wants it: written to output_path, or into r.array.
template <class T>
void deliver(Array<T>&& result, const std::string& output_path, JobResult& r) {
  r.output_path = output_path;
  if (output_path.empty())
    r.array = std::move(result);
  else
    write_npy(output_path, result);
}

// Out of core, the kernel lives in its output file; a job returning arrays cannot have it, nor
// resume one.
void check_out_of_core_has_output(bool out_of_core, const std::string& output_path, bool resume = false);

// Adds context to the library's value errors (whose type decides the CLI's exit status) without
// changing their type.
template <class F>
auto with_context(const std::string& context, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const ParseError&) {
    throw;
  } catch (const InvalidArgument& e) {
    throw InvalidArgument(context + e.what());
  }
}

}  // namespace ntk::detail
