// Jobs: the public, dtype-erased entry points that hold ntkit's run policy, so that the command
// line and the Python bindings are both a thin mapping of flags / keyword arguments onto the same
// calls. The policy held here and nowhere else:
//   - inputs: .npy or IDX detected by content; an IDX image stack (N, H, W) becomes NHWC with one
//     channel; IDX unsigned bytes scaled to [0, 1] by default (InputOptions);
//   - the compute dtype: float64 when the input is float64, float32 otherwise, unless given;
//     float64 accumulation of a float32 eNTK;
//   - parameters from a file, arrays in memory, or a seed;
//   - in memory or out of core, decided from the plans' byte estimates against max_memory before
//     anything large is allocated;
//   - threads per call (the options' `threads`, never the process-wide setting).
// A job with an output_path writes its result there (atomically: nothing is left on failure); one
// without returns it in JobResult::array, so arrays in and arrays out need no file at all.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <variant>

#include "ntk/array.hpp"
#include "ntk/empirical.hpp"
#include "ntk/infinite.hpp"
#include "ntk/io.hpp"
#include "ntk/layer.hpp"

namespace ntk {

// ---------------------------------------------------------------------------------------------
// Inputs

// How IDX unsigned-byte images (MNIST, Fashion-MNIST) become numbers. unit divides by 255 into
// [0, 1] in float32, exactly as torchvision's ToTensor, which is what models and published kernels
// of these data sets assume; raw keeps the stored 0..255 (what ntk read before this choice was
// explicit). Other IDX element types and .npy files are never rescaled.
enum class IdxScale { unit, raw };
IdxScale parse_idx_scale(const std::string& s);  // "unit" | "raw"
const char* to_string(IdxScale s);

struct InputOptions {
  IdxScale idx_scale = IdxScale::unit;
};

// Reads an input array: .npy when the file starts with NumPy's magic, IDX (gzipped or not)
// otherwise; a zip (.npz) is refused. IDX stacks (N, H, W) get a channel axis, (N, H, W, 1).
RawArray load_input(const std::string& path, const InputOptions& options = {});

// One input of a job: a file or an array in memory, and how messages name it.
struct JobInput {
  std::string path;                // .npy or IDX file
  std::optional<ArrayView> array;  // or an array in memory (not rescaled: it is already numbers)
  std::string label;               // e.g. "--x1 'a.npy'"; empty: "input '<path>'" or "input array"

  static JobInput file(std::string path, std::string label = {});
  static JobInput memory(ArrayView array, std::string label = {});
};

// "4G", "512M", "1.5GiB", "1000000" (bytes) -> bytes; nullopt if malformed, zero or too large.
std::optional<std::uint64_t> parse_bytes(std::string s);

// DType from "float32" | "float64" (the compute and output types a job takes).
DType parse_float_dtype(const std::string& s);

// ---------------------------------------------------------------------------------------------
// Jobs

// A network as a job names it: the spec and its network-wide defaults. The per-example input
// shape comes from the inputs (or InitJob::input_shape).
struct NetworkRequest {
  std::string spec;
  NetworkDefaults defaults;
};

// Where parameters come from: exactly one of a .npz file, arrays in memory (keys '<path>.W' /
// '<path>.b', as in the file; owned, or borrowed views such as NumPy arrays, read once into the
// network's parameter vector) or a seed (drawn as `ntk init --seed` would).
struct ParamSource {
  std::string path;
  std::map<std::string, RawArray> arrays;
  std::map<std::string, ArrayView> views;
  std::optional<std::uint64_t> seed;
};

// Work that runs longer than a moment reports (done, total) through this.
using ProgressFn = std::function<void(index_t, index_t)>;

// A result in memory: float32 or float64.
using AnyArray = std::variant<Array<float>, Array<double>>;

struct JobResult {
  std::string output_path;       // where it was written; empty: the result is `array` / `params`
  Shape shape;                   // of the array result
  DType dtype = DType::float32;  // of the array result
  bool out_of_core = false;
  std::optional<AnyArray> array;               // apply, entk, kernel without output_path
  std::map<std::string, RawArray> params;      // init without output_path
  std::string network_summary;                 // Network::summary(), for verbose displays
  std::string summary;                         // one line: what was computed (and written where)
};

struct InitJob {
  NetworkRequest net;
  Shape input_shape;  // per example: {784} or {H, W, C}
  std::uint64_t seed = 0;
  DType dtype = DType::float32;
  int threads = 0;  // 0: num_threads()
  std::string output_path;  // .npz; empty: JobResult::params
  // Without output_path: the flat parameter vector (num_params,) in JobResult::array instead of
  // JobResult::params (the Python package hands out its named slices, which jobs then read in place).
  bool flat = false;
};
JobResult run_init(const InitJob& job);

struct ApplyJob {
  NetworkRequest net;
  ParamSource params;
  JobInput x;
  std::optional<DType> dtype;  // nullopt: float64 if x is float64, else float32
  InputOptions input;
  int threads = 0;
  std::string output_path;  // .npy; empty: JobResult::array
};
JobResult run_apply(const ApplyJob& job);

// What every kernel job (empirical or infinite-width) takes beside its own options.
struct KernelJobCommon {
  NetworkRequest net;
  JobInput x1;
  std::optional<JobInput> x2;    // nullopt: x2 = x1 on the symmetric path
  std::uint64_t max_memory = 0;  // kernel plus working memory; 0: no limit
  bool out_of_core = false;      // force writing straight into the output file, band by band
  // Continue an interrupted run of this job from its checkpoint (<output>.ntk-checkpoint); implies
  // out_of_core. Out-of-core runs always keep a checkpoint while they run; without resume, one
  // left by an interrupted run is refused rather than overwritten.
  bool resume = false;
  int threads = 0;
  ProgressFn progress;
  InputOptions input;
  std::string output_path;  // .npy; empty: JobResult::array (must fit max_memory)
};

struct EntkJob : KernelJobCommon {
  ParamSource params;
  EntkMode mode{};
  EntkMethod method = EntkMethod::automatic;
  bool nngp = false;                // the empirical NNGP f(x1) f(x2)ᵀ instead of the eNTK
  std::optional<DType> dtype;       // nullopt: float64 if x1 is float64, else float32
  bool accumulate_float64 = false;  // a float32 kernel computed in float64 arithmetic
  index_t tile = 0;                 // examples per tile side; 0: the largest that fits
};
JobResult run_entk(const EntkJob& job);

struct KernelJob : KernelJobCommon {
  KernelOptions::Get get = KernelOptions::ntk;
  DType dtype = DType::float64;  // float32 also computes the offset path in float32
};
JobResult run_kernel(const KernelJob& job);

// What run_entk would do, without computing: sizes, the placement (in memory or out of core) and
// the chosen method, tile and per-method estimates. Reads the inputs but no parameters.
struct EntkJobPlan {
  index_t n1 = 0, n2 = 0, outputs = 0, num_params = 0;
  EntkMode mode{};
  bool symmetric = false;
  bool out_of_core = false;
  EntkPlan plan;
  std::string describe() const;  // the text of `ntk entk --explain`
};
EntkJobPlan plan_entk(const EntkJob& job);

// Kernel work allocates and frees the same large buffers (cotangents, Jacobian tiles) over and
// over; glibc would return each to the OS and fault it in afresh, measured at 25% of the CNN eNTK.
// This keeps freed blocks below 1 GiB in the heap (process-wide mallopt, glibc only). Peak memory
// is still what max_memory bounds. Programs that own their process (the CLI) call it at start; the
// Python package at import (measured: without it, eNTK calls from Python took up to 1.67x the
// library's time), with ntkit.keep_freed_memory(False) to give glibc's defaults back.
void keep_freed_memory_for_reuse(bool keep = true);

}  // namespace ntk
