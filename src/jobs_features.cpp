// ntk features: NTKSketch / NTKRF over row batches (see ntk/jobs_features.hpp).
#include "ntk/jobs_features.hpp"

#include <algorithm>
#include <functional>
#include <memory>
#include <sstream>
#include <variant>

#include "checkpoint.hpp"
#include "io_detail.hpp"
#include "jobs_detail.hpp"
#include "ntk/error.hpp"
#include "ntk/features.hpp"
#include "ntk/io.hpp"
#include "ntk/parallel.hpp"

namespace ntk {

namespace {

// Rows per batch handed to the map: large enough to keep both threads busy, NTKRF's matrix products
// large and the progress calls rare, small enough that the batch's float64 features are ~128 MB.
index_t batch_rows(index_t dim) { return std::clamp<index_t>((index_t(16) << 20) / std::max<index_t>(dim, 1), 64, 4096); }

struct AnyMap {
  std::unique_ptr<NtkSketch> sketch;
  std::unique_ptr<NtkRandomFeatures> rf;
  std::unique_ptr<CntkSketch> cntk;
  std::unique_ptr<Network> net;  // outlives grad, which refers to it
  std::unique_ptr<GradientSketch> grad;
  std::string name;
  index_t directions = 1;
  void transform(const double* x, index_t n, double* out) const {
    if (sketch) sketch->transform(x, n, out);
    else if (rf) rf->transform(x, n, out);
    else if (cntk) cntk->transform(x, n, out);
    else grad->transform(x, n, out);
  }
};

// The map's own memory (estimated from its parameters) and its values per example, told to `budget`
// before the map is built, so that a budget too small is refused before anything large is allocated.
using BudgetCheck = std::function<void(std::uint64_t map_bytes, index_t directions)>;

AnyMap make_map(const FeaturesJob& job, const Shape& example, const std::string& input, const BudgetCheck& budget) {
  AnyMap m;
  const SketchTransform dense_transform = job.transform.value_or(SketchTransform::fourier);
  const index_t d = numel(example);
  const int threads = num_threads();
  if (job.sketch == "ntk" && job.layerwise) {
    // A dense network is a CNTK of 1 × 1 images of d channels with 1 × 1 filters (ntk/features.hpp).
    const CntkSketchParams p{1, 1, d, job.dim, job.depth, 1, true, job.degree > 0 ? job.degree : 2, job.poly_dim, job.seed,
                             dense_transform};
    budget(CntkSketch::memory_bytes(p, threads), 1);
    m.cntk = std::make_unique<CntkSketch>(p);
    m.name = "NTKSketch (layer-wise)";
  } else if (job.sketch == "ntk") {
    const NtkSketchParams p{d, job.dim, job.depth, job.degree > 0 ? job.degree : 8, job.poly_dim, job.seed, dense_transform};
    budget(NtkSketch::memory_bytes(p, threads), 1);
    m.sketch = std::make_unique<NtkSketch>(p);
    m.name = "NTKSketch";
  } else if (job.sketch == "ntkrf") {
    const NtkRandomFeaturesParams p{d,           job.dim,  job.depth,
                                    job.relu_dim, job.step_dim, job.leverage,
                                    job.seed,     job.transform.value_or(SketchTransform::hadamard),
                                    job.shared_projection};
    budget(NtkRandomFeatures::memory_bytes(p, threads), 1);
    m.rf = std::make_unique<NtkRandomFeatures>(p);
    m.name = "NTKRF";
  } else if (job.sketch == "cntk") {
    if (example.size() != 3)
      throw InvalidArgument("--sketch cntk takes images (N, H, W, C), got examples of shape " + shape_string(example));
    const CntkSketchParams p{example[0], example[1], example[2], job.dim, job.depth, job.filter, job.same,
                             job.degree > 0 ? job.degree : 2, job.poly_dim, job.seed,
                             job.transform.value_or(SketchTransform::hadamard)};
    budget(CntkSketch::memory_bytes(p, threads), 1);
    m.cntk = std::make_unique<CntkSketch>(p);
    m.name = "CNTKSketch";
  } else if (job.sketch == "gradient") {
    m.net = std::make_unique<Network>(detail::make_network(job.net, example, input));
    const GradientSketchParams p{job.dim, job.mode, job.projection, job.seed};
    budget(GradientSketch::memory_bytes(*m.net, p, threads) + std::uint64_t(m.net->num_params()) * 8,
           p.mode.kind == EntkMode::full ? m.net->output_size() : 1);
    m.grad = std::make_unique<GradientSketch>(*m.net, detail::resolve_params<double>(*m.net, job.params, threads).take(), p);
    m.directions = m.grad->directions();
    m.name = "gradient sketch (" + to_string(job.mode) + ")";
  } else {
    throw InvalidArgument("unknown sketch '" + job.sketch + "': ntk (NTKSketch), ntkrf (NTKRF), cntk (CNTKSketch) or gradient");
  }
  return m;
}

}  // namespace

// Parameters in an identity: a seed, or the hashes of the file's or the arrays' bytes.
std::string params_identity(const ParamSource& p) {
  if (p.seed) return "seed " + std::to_string(*p.seed);
  if (!p.path.empty()) {
    const std::vector<std::byte> bytes = detail::read_file(p.path, "cannot read '" + p.path + "': ");
    return "file " + detail::content_hash(bytes.data(), bytes.size());
  }
  std::string out;
  for (const auto& [key, a] : p.arrays) out += key + " " + detail::content_hash(a.bytes.data(), a.bytes.size()) + " ";
  for (const auto& [key, v] : p.views)
    out += key + " " + detail::content_hash(v.data, std::size_t(numel(v.shape)) * dtype_size(v.dtype)) + " ";
  return out;
}

// What a features file's checkpoint belongs to: the inputs, every setting of the map (a field
// that does not apply to this sketch is recorded all the same, harmlessly) and the batch rows.
detail::JobIdentity features_identity(const FeaturesJob& job, const std::string& map_name, const Array<double>& x,
                                      index_t batch) {
  std::ostringstream settings;
  settings << "depth " << job.depth << ", dim " << job.dim << ", degree " << job.degree << ", layerwise "
           << job.layerwise << ", filter " << job.filter << ", same " << job.same << ", poly_dim " << job.poly_dim
           << ", relu_dim " << job.relu_dim << ", step_dim " << job.step_dim << ", leverage " << job.leverage
           << ", shared_projection " << job.shared_projection << ", transform "
           << (job.transform ? int(*job.transform) : -1) << ", flatten " << job.flatten << ", mode "
           << to_string(job.mode) << ", projection " << int(job.projection);
  detail::JobIdentity id{{"features", map_name + " (" + job.sketch + ")"},
                         {"settings", settings.str()},
                         {"seed", std::to_string(job.seed)},
                         {"x", detail::array_identity(x)},
                         {"dtype", dtype_name(job.dtype)},
                         {"batch", std::to_string(batch) + " rows"}};
  if (job.sketch == "gradient") {
    id.emplace_back("network", job.net.spec);
    id.emplace_back("parameters", params_identity(job.params));
  }
  return id;
}

JobResult run_features(const FeaturesJob& job) {
  if (job.dtype != DType::float32 && job.dtype != DType::float64)
    throw InvalidArgument("features are written as float32 or float64");
  if (!job.output_path.empty()) detail::check_output_path(job.output_path);
  ThreadScope threads(job.threads > 0 ? job.threads : num_threads());
  detail::LoadedInput loaded(job.x, job.input);
  const std::string name = loaded.name();
  const Array<double> x = loaded.take<double>();  // const: a borrowed float64 input is read in place
  if (x.ndim() < 2 || x.dim(0) == 0)
    throw InvalidArgument(name + " has shape " + shape_string(x.shape()) + "; expected a non-empty (N, d) array of examples");
  const bool dense = job.sketch == "ntk" || job.sketch == "ntkrf";
  if (dense && x.ndim() > 2 && !job.flatten)
    throw InvalidArgument(name + " holds images " + shape_string(x.shape()) + "; --sketch " + job.sketch +
                          " is a sketch of vectors (N, d): pass --flatten to use each image as one vector");
  const index_t n = x.dim(0), d = x.size() / n;
  const Shape example = dense ? Shape{d} : Shape(x.shape().begin() + 1, x.shape().end());
  if (const index_t bad = first_non_finite(x); bad >= 0)
    throw InvalidArgument(name + ": row " + std::to_string(bad / d) + " has a NaN or infinite entry");

  // Inputs in float64, the map (its random matrices and working buffers), one batch of features in
  // float64 and float32, and the features themselves when kept in memory: checked before the map exists.
  const std::uint64_t in_bytes = std::uint64_t(x.size()) * 8;
  const BudgetCheck budget = [&](std::uint64_t map_bytes, index_t directions) {
    const index_t width = directions * job.dim, rows = std::min(n, batch_rows(width));
    const std::uint64_t batch_bytes = std::uint64_t(rows) * std::uint64_t(width) * 12;
    const std::uint64_t out_bytes =
        job.output_path.empty() ? std::uint64_t(n) * std::uint64_t(width) * dtype_size(job.dtype) : 0;
    const std::uint64_t total = in_bytes + map_bytes + batch_bytes + out_bytes;
    if (job.max_memory == 0 || total <= job.max_memory) return;
    std::ostringstream msg;
    msg << "the features need " << (total >> 20) << " MiB (inputs in float64 " << (in_bytes >> 20) << " MiB, the "
        << job.sketch << " map and its buffers " << (map_bytes >> 20) << " MiB, a batch of features "
        << (batch_bytes >> 20) << " MiB" << (out_bytes ? ", features in memory " + std::to_string(out_bytes >> 20) + " MiB" : "")
        << "), over --max-memory " << (job.max_memory >> 20) << " MiB: raise --max-memory, or lower --dim"
        << (out_bytes ? " or write the features to a file" : "");
    throw MemoryBudgetError(msg.str());
  };
  const AnyMap map = detail::with_context(name + ": ", [&] { return make_map(job, example, name, budget); });
  const index_t width = map.directions * job.dim;  // values per example
  const Shape out_shape = map.directions == 1 ? Shape{n, job.dim} : Shape{n, map.directions, job.dim};
  const index_t rows = std::min(n, batch_rows(width));

  // A file is written resumably (src/checkpoint.hpp): after each batch it is synced and the rows
  // so far recorded, so an interrupted run continues (resume) at its first unfinished batch. Every
  // setting the features depend on is in the identity, and the batch size too: batches start at
  // multiples of it.
  std::unique_ptr<NpyFileWriter> file;
  std::unique_ptr<detail::Checkpoint> checkpoint;
  std::optional<AnyArray> memory;
  if (!job.output_path.empty()) {
    checkpoint = std::make_unique<detail::Checkpoint>(job.output_path, features_identity(job, map.name, x, rows), n,
                                                      job.resume);
    if (checkpoint->already_complete()) {
      checkpoint->finish();
    } else {
      file = std::make_unique<NpyFileWriter>(job.output_path, job.dtype, out_shape, checkpoint->partial_path(),
                                             checkpoint->reopen());
    }
  } else if (job.dtype == DType::float64) {
    memory = Array<double>(out_shape);
  } else {
    memory = Array<float>(out_shape);
  }
  const index_t start = checkpoint && file ? checkpoint->start_row() : checkpoint ? n : 0;

  // As run_tiles_to_file: a killed run, or an IoError after a recorded batch, leaves the partial
  // file and its record for --resume; any other exception leaves nothing, unless this run
  // continued an earlier one.
  try {
    std::vector<double> batch(static_cast<size_t>(rows * width));
    std::vector<float> narrow(job.dtype == DType::float32 ? batch.size() : 0);
    for (index_t r0 = start; r0 < n; r0 += rows) {
      const index_t nb = std::min(rows, n - r0);
      const size_t count = size_t(nb * width);
      map.transform(x.data() + r0 * d, nb, batch.data());
      const void* bytes = batch.data();
      if (job.dtype == DType::float32) {
        std::copy(batch.begin(), batch.begin() + std::ptrdiff_t(count), narrow.begin());
        bytes = narrow.data();
      }
      // Features that overflowed (in the map, or in float32) are an error, never saved.
      const index_t bad = job.dtype == DType::float32 ? first_non_finite(narrow.data(), index_t(count))
                                                      : first_non_finite(batch.data(), index_t(count));
      if (bad >= 0)
        throw NumericalError(map.name + " features of row " + std::to_string(r0 + bad / width) + " are not finite " +
                             "(the inputs' scale overflowed " + dtype_name(job.dtype) + "): rescale the inputs" +
                             (job.dtype == DType::float32 ? ", or use --dtype float64" : ""));
      const size_t elem = dtype_size(job.dtype), offset = size_t(r0 * width) * elem;
      if (file) {
        file->write(offset, bytes, count * elem);
        checkpoint->record_synced(*file, r0 + nb);
      } else if (auto* a = std::get_if<Array<double>>(&*memory)) std::copy_n(batch.data(), count, a->data() + r0 * width);
      else std::copy_n(narrow.data(), count, std::get<Array<float>>(*memory).data() + r0 * width);
      if (job.progress) job.progress(r0 + nb, n);
    }
  } catch (const IoError& e) {
    if (!checkpoint) throw;
    throw checkpoint->kept_error(e);
  } catch (...) {
    if (file && start == 0) {
      file->keep_partial_on_failure(false);
      checkpoint->finish();
    }
    throw;
  }

  JobResult r;
  r.shape = out_shape;
  r.dtype = job.dtype;
  r.output_path = job.output_path;
  if (file) {
    detail::fault_point("before-rename");
    file->commit();
    detail::fault_point("after-rename");
  }
  if (checkpoint) checkpoint->finish();
  if (memory) r.array = std::move(memory);
  std::ostringstream s;
  s << detail::written_prefix(job.output_path) << map.name << " features " << shape_string(out_shape) << " " << dtype_name(job.dtype)
    << " of " << name << (start > 0 ? " (resumed at row " + std::to_string(start) + " of " + std::to_string(n) + ")" : "")
    << " (seed " << job.seed;
  if (job.sketch == "gradient") {
    s << "); F·Fᵀ ≈ the empirical NTK (" << to_string(job.mode) << ") of the network at its parameters";
  } else if (job.sketch == "cntk") {
    s << ", depth " << job.depth << "); F·Fᵀ ≈ the CNTK of " << job.depth << " x [Conv(" << job.filter
      << ", padding=" << (job.same ? "SAME" : "VALID")
      << ", W_std=√2, no bias), Relu], GlobalAvgPool, Dense(no bias) in neural-tangents' convention";
  } else {
    s << ", depth " << job.depth;
    if (job.sketch == "ntk") s << ", degree " << (job.degree > 0 ? job.degree : job.layerwise ? 2 : 8);
    s << "); F·Fᵀ ≈ the NTK of " << job.depth
      << " x [Dense(W_std=√2, no bias), Relu], Dense(no bias) in neural-tangents' convention";
  }
  r.summary = s.str();
  return r;
}

}  // namespace ntk
