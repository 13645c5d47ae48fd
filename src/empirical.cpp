// The empirical NTK's driver: the producer of tiles that combines the methods (entk_methods.cpp)
// under the plan (entk_plan.cpp) for the tile engine (tiles.hpp), and the public entry points.
#include "ntk/empirical.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include <fcntl.h>
#include <unistd.h>

#include "check.hpp"
#include "entk_detail.hpp"
#include "ntk/error.hpp"
#include "ntk/io.hpp"
#include "ntk/parallel.hpp"
#include "tiles.hpp"

namespace ntk {

using namespace detail;

namespace {

// A temporary file for spilled intermediate results, unlinked at once so nothing outlives the
// process; read and written with pread / pwrite so it never counts toward resident memory.
class ScratchFile {
 public:
  explicit ScratchFile(const std::string& path) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd_ < 0) throw IoError("cannot create scratch file '" + path + "': " + std::strerror(errno));
    ::unlink(path.c_str());
  }
  ~ScratchFile() { ::close(fd_); }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;
  void write(const void* data, std::size_t bytes, std::uint64_t offset) {
    for (std::size_t done = 0; done < bytes;) {
      ssize_t n = ::pwrite(fd_, static_cast<const char*>(data) + done, bytes - done, off_t(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw IoError(std::string("cannot write the Jacobian scratch file: ") + std::strerror(errno) + " (is the disk full?)");
      done += std::size_t(n);
    }
  }
  void read(void* data, std::size_t bytes, std::uint64_t offset) const {
    for (std::size_t done = 0; done < bytes;) {
      ssize_t n = ::pread(fd_, static_cast<char*>(data) + done, bytes - done, off_t(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw IoError(std::string("cannot read the Jacobian scratch file: ") + std::strerror(errno));
      done += std::size_t(n);
    }
  }

 private:
  int fd_ = -1;
};

// The eNTK as a producer of tiles for the tile engine: a tile row prepares its x1 side once (the
// Jacobian rows, or the trace, cotangents and layer sides of structured derivatives), every tile of
// the row prepares its x2 side and contracts the two into the tile in the output layout.
template <class T>
class EntkProducer final : public detail::TileProducer<T> {
 public:
  EntkProducer(const Network& net, ThetaSpan<T> theta, const Array<T>& x1, const Array<T>* x2_in,
               const EntkOptions& options, const EntkPlan& plan, const std::string& spill_path)
      : net_(net), theta_(theta), x1_(x1), x2_(x2_in ? *x2_in : x1), symmetric_(x2_in == nullptr), mode_(options.mode),
        dirs_(directions_for<T>(options.mode, net.output_size())), method_(plan.method), t_(plan.tile) {
    const index_t L = index_t(net.layers().size());
    // Layers whose parameters enter the kernel (all, unless per-layer contributions were asked for).
    included_.assign(size_t(L), false);
    for (index_t l = 0; l < L; ++l) included_[size_t(l)] = net.layers()[size_t(l)]->num_params() > 0 && options.layers.empty();
    for (int l : options.layers) {
      if (l < 0 || l >= static_cast<int>(L))
        throw InvalidArgument("layer index " + std::to_string(l) + " is out of range (the network has " +
                              std::to_string(L) + " layers)");
      included_[size_t(l)] = net.layers()[size_t(l)]->num_params() > 0;
    }
    NTK_ASSERT(options.layers.empty() || method_ == EntkMethod::sd,
               "EntkProducer: per-layer contributions with a plan other than sd (plan_empirical_ntk refuses those)");
    // Structured derivatives factor a layer's cotangents where the network allows it; the chain
    // end's cotangents are then kept as well.
    chain_end_.assign(size_t(L), -1);
    keep_cotangents_ = included_;
    for (index_t l = 0; l < L; ++l)
      if (included_[size_t(l)] && method_ == EntkMethod::sd && (chain_end_[size_t(l)] = net.channel_chain_end(int(l))) >= 0) {
        keep_cotangents_[size_t(l)] = false;
        keep_cotangents_[size_t(chain_end_[size_t(l)])] = true;
      }
    const index_t K = dirs_.K, P = net.num_params(), n2 = x2_.dim(0);
    block_.resize(static_cast<size_t>(dirs_.paired ? 0 : K * t_ * t_));
    // Out of core with Jacobian contraction, the x2 side's Jacobian rows are computed once and kept
    // in a scratch file beside the output instead of being recomputed for every tile row.
    if (method_ == EntkMethod::jc && !spill_path.empty() && (n2 + t_ - 1) / t_ > 1) {
      spilled_ = std::make_unique<ScratchFile>(spill_path);
      std::vector<T> rows;
      for (index_t j0 = 0; j0 < n2; j0 += t_) {
        const index_t c2 = std::min(t_, n2 - j0);
        rows.resize(static_cast<size_t>(c2 * K * P));
        jacobian_rows(net, theta.data(), x2_.data() + j0 * net.input_size(), c2, dirs_, rows.data());
        spilled_->write(rows.data(), rows.size() * sizeof(T), std::uint64_t(j0 * K * P) * sizeof(T));
      }
    }
  }

  std::string what() const override { return "the empirical NTK"; }

  void begin_row(index_t i0, index_t c1) override { prepare(x1_, i0, c1, false, s1_); }

  void tile(index_t i0, index_t c1, index_t j0, index_t c2, T* tile) override {
    const index_t K = dirs_.K, P = net_.num_params(), O = net_.output_size();
    const bool diagonal_tile = symmetric_ && j0 == i0;
    // The symmetric diagonal tile reuses side 1, except for VP whose x2 side differs in kind.
    const Side& b = diagonal_tile && method_ != EntkMethod::vp ? s1_ : (prepare(x2_, j0, c2, true, s2_), s2_);
    // Full mode: blocks are (c1, c2, K, K), the tile's own layout, so they accumulate in place.
    T* block = dirs_.paired ? tile : block_.data();
    std::fill(block, block + (dirs_.paired ? c1 * c2 * K * K : K * c1 * c2), T(0));
    if (method_ == EntkMethod::jc) {
      contract_rows(s1_.rows.data(), c1, b.rows.data(), c2, K, P, dirs_.paired, block);
    } else if (method_ == EntkMethod::sd) {
      for (int l = 0; l < static_cast<int>(net_.layers().size()); ++l) {
        const Layer& layer = *net_.layers()[size_t(l)];
        if (!included_[size_t(l)]) continue;
        if (const int end = chain_end_[size_t(l)]; end >= 0) {
          factored_block(s1_.layer_sides[size_t(l)], s1_.cotangents[size_t(end)].data(), c1, b.layer_sides[size_t(l)],
                         b.cotangents[size_t(end)].data(), c2, K, layer.out_shape().back(), dirs_.paired, block);
          continue;
        }
        layer.ntk_block(theta_.data() + net_.param_offset(l), net_.layer_input(s1_.trace, l), s1_.cotangents[size_t(l)].data(),
                        s1_.layer_sides[size_t(l)], c1, net_.layer_input(b.trace, l), b.cotangents[size_t(l)].data(),
                        b.layer_sides[size_t(l)], c2, K, dirs_.paired, block);
      }
    } else {
      vp_block(net_, theta_.data(), s1_.rows.data(), c1, b.trace, c2, dirs_, block);
    }
    if (!dirs_.paired)
      for (index_t kk = 0; kk < K; ++kk) reduce_matched(block + kk * c1 * c2, kk, mode_, O, c1, c2, tile);
  }

 private:
  // One side of a tile pair: what each method needs of its examples.
  struct Side {
    std::vector<T> rows;                      // jc, vp (x1 side): Jacobian rows (count·K × P)
    Trace<T> trace;                           // sd, vp (x2 side)
    std::vector<std::vector<T>> cotangents;   // sd: per layer, (count, K, out)
    std::vector<std::vector<T>> layer_sides;  // sd: per layer, what its ntk_side keeps
  };

  void prepare(const Array<T>& x, index_t start, index_t count, bool x2_side, Side& side) {
    const index_t K = dirs_.K, P = net_.num_params(), O = net_.output_size();
    const T* xs = x.data() + start * net_.input_size();
    if (spilled_ && (x2_side || symmetric_)) {
      side.rows.resize(static_cast<size_t>(count * K * P));
      spilled_->read(side.rows.data(), side.rows.size() * sizeof(T), std::uint64_t(start * K * P) * sizeof(T));
      return;
    }
    if (method_ == EntkMethod::jc || (method_ == EntkMethod::vp && !x2_side)) {
      side.rows.resize(static_cast<size_t>(count * K * P));
      jacobian_rows(net_, theta_.data(), xs, count, dirs_, side.rows.data());
      return;
    }
    // The side's previous tile goes first: its layer sides and cotangents would otherwise live on
    // beside the new ones until replaced (gigabytes for a ResNet tile of 1,000 examples).
    side.cotangents.clear();
    side.layer_sides.clear();
    net_.forward(theta_.data(), xs, count, side.trace);
    if (method_ == EntkMethod::vp) return;
    side.cotangents.assign(net_.layers().size(), {});
    // A factored layer's mask (Network::channel_mask) serves its side and, through
    // Layer::vjp_factored, the input cotangents the layers before it receive.
    std::vector<std::vector<T>> masks(net_.layers().size());
    auto mask_of = [&](int l) -> const std::vector<T>& {
      std::vector<T>& m = masks[size_t(l)];
      if (m.empty()) {
        m.resize(static_cast<size_t>(count * net_.layers()[size_t(l)]->out_size()));
        net_.channel_mask(theta_.data(), side.trace, l, chain_end_[size_t(l)], m.data());
      }
      return m;
    };
    std::vector<T> g(static_cast<size_t>(count * K * O));
    for (index_t i = 0; i < count; ++i) std::copy(dirs_.rows.begin(), dirs_.rows.end(), g.begin() + i * K * O);
    // A factored layer whose input cotangent has a factored route hands the layers before it their
    // cotangents straight from the chain end's (u) and its mask: the backward pass skips the chain.
    std::vector<Network::Shortcut<T>> shortcuts;
    for (int l = 0; l < static_cast<int>(net_.layers().size()); ++l) {
      const int end = chain_end_[size_t(l)];
      if (end < 0 || !net_.layers()[size_t(l)]->has_vjp_factored()) continue;
      shortcuts.push_back({l, end, [&, l, end](T* g_in) {
                             net_.layers()[size_t(l)]->vjp_factored(theta_.data() + net_.param_offset(l),
                                                                    mask_of(l).data(),
                                                                    side.cotangents[size_t(end)].data(), count, K, g_in);
                           }});
    }
    net_.vjp(
        theta_.data(), side.trace, K, g.data(), nullptr, ParamCotangent<T>{},
        [&](int layer, const T* g_layer) {
          if (!keep_cotangents_[size_t(layer)]) return;
          const index_t size = count * K * net_.layers()[size_t(layer)]->out_size();
          side.cotangents[size_t(layer)].assign(g_layer, g_layer + size);
        },
        shortcuts);
    side.layer_sides.assign(net_.layers().size(), {});
    for (int l = 0; l < static_cast<int>(net_.layers().size()); ++l) {
      const Layer& layer = *net_.layers()[size_t(l)];
      if (!included_[size_t(l)]) continue;
      if (chain_end_[size_t(l)] >= 0) {
        side.layer_sides[size_t(l)] = factored_side(net_, theta_.data(), side.trace, l, mask_of(l));
        continue;
      }
      side.layer_sides[size_t(l)] =
          layer.ntk_side(theta_.data() + net_.param_offset(l), net_.layer_input(side.trace, l),
                         net_.layer_output(side.trace, l), side.cotangents[size_t(l)].data(), count, K);
    }
  }

  const Network& net_;
  ThetaSpan<T> theta_;
  const Array<T>& x1_;
  const Array<T>& x2_;
  const bool symmetric_;
  const EntkMode mode_;
  const Directions<T> dirs_;
  const EntkMethod method_;
  const index_t t_;
  std::vector<bool> included_, keep_cotangents_;
  std::vector<int> chain_end_;
  std::unique_ptr<ScratchFile> spilled_;
  std::vector<T> block_;  // matched modes: K planes of c1 × c2
  Side s1_, s2_;
};

// The tile layout of an eNTK: square tiles of plan.tile examples; out of core, bands of one tile row
// (the plan budgets two tile rows of the kernel: the band and the mirror read back into it).
detail::TileGrid entk_grid(const Network& net, index_t n1, index_t n2, bool symmetric, const EntkMode& mode,
                           const EntkPlan& plan, bool out_of_core) {
  const index_t O = net.output_size();
  detail::TileGrid g;
  g.n1 = n1, g.n2 = n2, g.symmetric = symmetric;
  g.values = numel(entk_output_shape(mode, 1, 1, O));
  g.block_dim = mode.kind == EntkMode::full ? O : 0;
  g.tile1 = g.tile2 = plan.tile;
  g.band = out_of_core ? plan.tile : 0;
  return g;
}

template <class T>
void validate(const Network& net, ThetaSpan<T> theta, const Array<T>& x1, const Array<T>* x2,
              const EntkOptions& options) {
  if (static_cast<index_t>(theta.size()) != net.num_params())
    throw InvalidArgument("got " + std::to_string(theta.size()) + " parameters, the network has " + std::to_string(net.num_params()));
  net.check_inputs(x1, "x1");
  if (x2) net.check_inputs(*x2, "x2");
  const index_t O = net.output_size();
  if (options.mode.kind == EntkMode::logit && options.mode.logit_index >= O)
    throw InvalidArgument("mode logit=" + std::to_string(options.mode.logit_index) +
                          " asks for an output the network does not have (it has " + std::to_string(O) + " outputs: 0.." +
                          std::to_string(O - 1) + ")");
}

}  // namespace

template <class T>
Array<T> empirical_ntk(const Network& net, ThetaSpan<T> theta, const Array<T>& x1,
                       const std::type_identity_t<Array<T>>* x2, const EntkOptions& options) {
  ThreadScope threads(options.threads);
  validate(net, theta, x1, x2, options);
  const index_t n1 = x1.dim(0), n2 = x2 ? x2->dim(0) : n1;
  const EntkPlan plan = plan_empirical_ntk(net, n1, n2, x2 == nullptr, options, sizeof(T));  // before allocating
  Array<T> out(entk_output_shape(options.mode, n1, n2, net.output_size()));
  const detail::TileGrid grid = entk_grid(net, n1, n2, x2 == nullptr, options.mode, plan, false);
  EntkProducer<T> producer(net, theta, x1, x2, options, plan, "");
  detail::ArraySink<T> sink(out.data(), out.size() / std::max<index_t>(n1, 1), grid.values);
  detail::run_tiles(grid, producer, sink, options.progress);
  return out;
}

// "all", or the indices of the layers whose parameters enter the kernel.
std::string layer_list(const std::vector<int>& layers) {
  if (layers.empty()) return "all";
  std::string out = std::to_string(layers[0]);
  for (size_t i = 1; i < layers.size(); ++i) out.append(" ").append(std::to_string(layers[i]));
  return out;
}

template <class T>
index_t empirical_ntk_to_file(const Network& net, ThetaSpan<T> theta, const Array<T>& x1,
                           const std::type_identity_t<Array<T>>* x2, const EntkOptions& options, const std::string& path) {
  ThreadScope threads(options.threads);
  validate(net, theta, x1, x2, options);
  const index_t n1 = x1.dim(0), n2 = x2 ? x2->dim(0) : n1;
  EntkOptions o = options;
  o.out_of_core = true;
  const EntkPlan plan = plan_empirical_ntk(net, n1, n2, x2 == nullptr, o, sizeof(T));
  const Shape shape = entk_output_shape(o.mode, n1, n2, net.output_size());
  const detail::TileGrid grid = entk_grid(net, n1, n2, x2 == nullptr, o.mode, plan, true);
  // Everything the bytes depend on: a checkpoint of another job is never resumed into this file.
  const detail::JobIdentity identity{
      {"kernel", "empirical NTK"},
      {"network", net.describe() + " on " + shape_string(net.input_shape())},
      {"parameters", detail::content_hash(theta.data(), theta.size() * sizeof(T))},
      {"x1", detail::array_identity(x1)},
      {"x2", x2 ? detail::array_identity(*x2) : "x1 (symmetric)"},
      {"mode", to_string(o.mode)},
      {"layers", layer_list(o.layers)},
      {"method", to_string(plan.method)},
      {"dtype", dtype_name(dtype_of<T>())},
      {"tile", std::to_string(grid.tile1) + " examples, bands of " + std::to_string(grid.band) + " rows"}};
  EntkProducer<T> producer(net, theta, x1, x2, o, plan, path + ".jacobian");
  return detail::run_tiles_to_file(grid, producer, path, shape, identity, o.resume, options.progress);
}

template <class T>
Array<T> empirical_nngp(const Network& net, ThetaSpan<T> theta, const Array<T>& x1,
                        const std::type_identity_t<Array<T>>* x2, const EntkMode& mode) {
  EntkOptions o;
  o.mode = mode;
  validate(net, theta, x1, x2, o);
  const Array<T> f1 = net.apply(theta, x1);
  const Array<T> f2 = x2 ? net.apply(theta, *x2) : f1;
  const index_t n1 = x1.dim(0), n2 = f2.dim(0), O = net.output_size();
  Array<T> out(entk_output_shape(mode, n1, n2, O));
  for (index_t i = 0; i < n1; ++i)
    for (index_t j = 0; j < n2; ++j) {
      const T* a = f1.data() + i * O;
      const T* b = f2.data() + j * O;
      switch (mode.kind) {
        case EntkMode::full:
          for (index_t p = 0; p < O; ++p)
            for (index_t q = 0; q < O; ++q) out[((i * n2 + j) * O + p) * O + q] = a[p] * b[q];
          break;
        case EntkMode::diagonal:
          for (index_t p = 0; p < O; ++p) out[(i * n2 + j) * O + p] = a[p] * b[p];
          break;
        case EntkMode::logit: out[i * n2 + j] = a[mode.logit_index] * b[mode.logit_index]; break;
        default: {
          T diag = 0, sum_a = 0, sum_b = 0;
          for (index_t p = 0; p < O; ++p) {
            diag += a[p] * b[p];
            sum_a += a[p];
            sum_b += b[p];
          }
          out[i * n2 + j] = mode.kind == EntkMode::trace       ? diag / T(O)
                            : mode.kind == EntkMode::trace_sum ? diag
                                                               : sum_a * sum_b / T(O);
        }
      }
    }
  return out;
}

template Array<float> empirical_nngp<float>(const Network&, ThetaSpan<float>, const Array<float>&,
                                            const Array<float>*, const EntkMode&);
template Array<double> empirical_nngp<double>(const Network&, ThetaSpan<double>, const Array<double>&,
                                              const Array<double>*, const EntkMode&);

template <class T>
NtkOperator<T>::NtkOperator(const Network& net, std::vector<T> theta, const Array<T>& x)
    : net_(net), theta_(std::move(theta)), n_(x.ndim() ? x.dim(0) : 0) {
  if (static_cast<index_t>(theta_.size()) != net.num_params())
    throw InvalidArgument("got " + std::to_string(theta_.size()) + " parameters, the network has " + std::to_string(net.num_params()));
  net.check_inputs(x, "x");
  net.forward(theta_.data(), x.data(), n_, trace_);
}

template <class T>
void NtkOperator<T>::apply(const T* v, T* out, index_t count) const {
  const index_t O = net_.output_size(), P = net_.num_params();
  // (count, N, O) <-> the (N, count, O) layout of directions per example.
  std::vector<T> g(static_cast<size_t>(n_ * count * O)), t(g.size());
  for (index_t c = 0; c < count; ++c)
    for (index_t i = 0; i < n_; ++i) std::copy(v + (c * n_ + i) * O, v + (c * n_ + i + 1) * O, g.begin() + (i * count + c) * O);
  std::vector<T> jtv(static_cast<size_t>(count * P), T(0));
  net_.vjp(theta_.data(), trace_, count, g.data(), nullptr, ParamCotangent<T>{jtv.data(), P, false});
  net_.jvp(theta_.data(), trace_, count, nullptr, jtv.data(), P, t.data());
  for (index_t c = 0; c < count; ++c)
    for (index_t i = 0; i < n_; ++i) std::copy(t.begin() + (i * count + c) * O, t.begin() + (i * count + c + 1) * O, out + (c * n_ + i) * O);
}

template class NtkOperator<float>;
template class NtkOperator<double>;

template index_t empirical_ntk_to_file<float>(const Network&, ThetaSpan<float>, const Array<float>&,
                                           const Array<float>*, const EntkOptions&, const std::string&);
template index_t empirical_ntk_to_file<double>(const Network&, ThetaSpan<double>, const Array<double>&,
                                            const Array<double>*, const EntkOptions&, const std::string&);
template Array<float> empirical_ntk<float>(const Network&, ThetaSpan<float>, const Array<float>&, const Array<float>*,
                                           const EntkOptions&);
template Array<double> empirical_ntk<double>(const Network&, ThetaSpan<double>, const Array<double>&,
                                             const Array<double>*, const EntkOptions&);

}  // namespace ntk