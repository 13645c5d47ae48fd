// Infinite-width kernels: input kernel by GEMM, then every layer's kernel_rule in turn.
#include "ntk/infinite.hpp"

#include <map>
#include <optional>
#include <mutex>
#include <tuple>

#include "blas.hpp"
#include "ntk/empirical.hpp"
#include "ntk/error.hpp"
#include "ntk/io.hpp"
#include "ntk/parallel.hpp"
#include "tiles.hpp"

namespace ntk {

void Layer::kernel_rule(KernelState&) const {
  throw NotSupported("infinite-width kernels: layer " + describe() + " has no kernel rule (yet)");
}

void Layer::kernel_offset_rule(OffsetBlockT<double>&) const {
  throw std::logic_error("Layer::kernel_offset_rule: layer " + describe() + " has no offset rule");
}
void Layer::kernel_offset_rule(OffsetBlockT<float>&) const {
  throw std::logic_error("Layer::kernel_offset_rule: layer " + describe() + " has no offset rule");
}

namespace detail {

const GaussHermiteRule& gauss_hermite(int n) {
  static std::mutex mu;
  static std::map<int, GaussHermiteRule> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(n);
  if (it != cache.end()) return it->second;
  if (n < 1 || n > 200) throw InvalidArgument("Gauss-Hermite degree must be in [1, 200]");
  // Orthonormal Hermite recurrence p_j = t·√(2/j)·p_{j−1} − √((j−1)/j)·p_{j−2}, Newton on the
  // roots (Numerical Recipes' gauher); w = 2 / p'_n², the weight of e^{-t²}.
  GaussHermiteRule r;
  r.nodes.assign(size_t(n), 0.0);
  r.weights.assign(size_t(n), 0.0);
  const double pim4 = 0.7511255444649425;  // π^{-1/4}
  const int m = (n + 1) / 2;
  double z = 0;
  for (int i = 0; i < m; ++i) {
    if (i == 0)
      z = std::sqrt(double(2 * n + 1)) - 1.85575 * std::pow(double(2 * n + 1), -0.16667);
    else if (i == 1)
      z -= 1.14 * std::pow(double(n), 0.426) / z;
    else if (i == 2)
      z = 1.86 * z - 0.86 * r.nodes[0];
    else if (i == 3)
      z = 1.91 * z - 0.91 * r.nodes[1];
    else
      z = 2.0 * z - r.nodes[size_t(i - 2)];
    double pp = 0;
    for (int it2 = 0; it2 < 100; ++it2) {
      double p1 = pim4, p2 = 0;
      for (int j = 1; j <= n; ++j) {
        const double p3 = p2;
        p2 = p1;
        p1 = z * std::sqrt(2.0 / j) * p2 - std::sqrt(double(j - 1) / j) * p3;
      }
      pp = std::sqrt(2.0 * n) * p2;
      const double z1 = z;
      z = z1 - p1 / pp;
      if (std::abs(z - z1) <= 1e-15 * std::max(1.0, std::abs(z))) break;
    }
    r.nodes[size_t(i)] = z;  // temporarily descending from the largest
    r.weights[size_t(i)] = 2.0 / (pp * pp);
  }
  // Mirror: node i (largest first) and -node i.
  GaussHermiteRule out;
  out.nodes.resize(size_t(n));
  out.weights.resize(size_t(n));
  for (int i = 0; i < m; ++i) {
    out.nodes[size_t(i)] = -r.nodes[size_t(i)];
    out.weights[size_t(i)] = r.weights[size_t(i)];
    out.nodes[size_t(n - 1 - i)] = r.nodes[size_t(i)];
    out.weights[size_t(n - 1 - i)] = r.weights[size_t(i)];
  }
  if (n % 2 == 1) out.nodes[size_t(m - 1)] = 0.0;
  return cache.emplace(n, std::move(out)).first->second;
}

}  // namespace detail

namespace {

// Which kernel the program admits, checked before any work: every nonlinearity must see a
// Gaussian input, every Residual block must end in a zero-mean random layer (so the branches'
// kernels add), and the output must be a vector. Returns whether the full spatial covariance is
// needed (some layer pools) or only its diagonal.
bool check_program(const Network& net) {
  const auto& layers = net.layers();
  const auto& paths = net.layer_paths();
  std::vector<bool> gaussian(net.num_buffers(), false), fresh(net.num_buffers(), false);
  std::vector<std::string> made_by(net.num_buffers(), "the network input");
  bool full = false;
  for (const auto& st : net.steps()) {
    const size_t in = size_t(st.in), out = size_t(st.out);
    if (st.layer < 0) {
      if (!fresh[in])
        throw NotSupported("infinite-width kernels: a Residual block must end in a Dense or Conv layer (a zero-mean "
                           "random layer) for its kernel to be the sum of the two branches; this one ends in " +
                           made_by[in]);
      gaussian[out] = gaussian[in] && gaussian[size_t(st.skip)];
      fresh[out] = false;
      made_by[out] = "a Residual sum";
      continue;
    }
    const Layer& l = *layers[size_t(st.layer)];
    const std::string what = "layer " + paths[size_t(st.layer)] + " " + l.describe();
    if (l.kernel_needs_gaussian_input() && !gaussian[in])
      throw NotSupported("infinite-width kernels: " + what + " gets a non-Gaussian input (" + made_by[in] +
                         "), so its kernel has no exact rule; put a Dense or Conv layer before it");
    full = full || l.kernel_needs_full_covariance();
    gaussian[out] = l.kernel_output_gaussian(gaussian[in]);
    fresh[out] = l.kernel_output_gaussian(false) || (!l.kernel_needs_gaussian_input() && fresh[in]);
    made_by[out] = "the output of " + what;
  }
  if (net.output_shape().size() != 1)
    throw NotSupported("infinite-width kernels: the network's output " + shape_string(net.output_shape()) +
                       " is not a vector; end it with GlobalAvgPool or Flatten (then Dense)");
  return full;
}

// Spatial extent (h, w) of an activation shape: (H, W, C) images, (L, C) sequences, (d) vectors.
std::pair<index_t, index_t> spatial_of(const Shape& s) {
  if (s.size() >= 3) return {s[0], s[1]};
  if (s.size() == 2) return {s[0], 1};
  return {1, 1};
}

// Inputs in float64, as (N, P, C) with P pixels of C channels.
struct Inputs {
  std::vector<double> x;
  index_t n = 0, pixels = 1, channels = 1;
  const double* example(index_t i) const { return x.data() + i * pixels * channels; }
};

template <class T>
Inputs read_inputs(const Network& net, const Array<T>& a, const char* what) {
  net.check_inputs(a, what);
  Inputs in;
  in.x.assign(a.data(), a.data() + a.size());
  in.n = a.dim(0);
  const auto [h, w] = spatial_of(net.input_shape());
  in.pixels = h * w;
  in.channels = net.input_size() / in.pixels;
  return in;
}

// A batch of pairs (i of a, j of b): the grid [i0, i0 + c1) × [j0, j0 + c2), or, with `self`, the
// pairs (i, i) for i in [i0, i0 + c1) of a.
struct PairBatch {
  index_t i0 = 0, c1 = 0, j0 = 0, c2 = 0;
  bool self = false;
  index_t pairs() const { return self ? c1 : c1 * c2; }
  index_t first(index_t q) const { return self ? i0 + q : i0 + q / c2; }
  index_t second(index_t q) const { return self ? i0 + q : j0 + q % c2; }
};

// Σ⁰(p, p') = x(p)·x'(p')/C for every pair; Θ⁰ = 0. A GEMM over the grid for vectors, one per
// pair over its pixels for images.
KernelState input_state(const Inputs& a, const Inputs& b, const PairBatch& batch, bool diagonal, const Shape& in_shape,
                        bool want_ntk) {
  KernelState s;
  s.pairs = batch.pairs();
  std::tie(s.h, s.w) = spatial_of(in_shape);
  s.diagonal = diagonal && s.pixels() > 1;
  s.want_ntk = want_ntk;
  const index_t P = a.pixels, C = a.channels, E = s.entries();
  s.nngp.assign(size_t(s.pairs * E), 0.0);
  if (P == 1 && !batch.self) {
    detail::gemm(false, true, batch.c1, batch.c2, C, 1.0 / double(C), a.example(batch.i0), C, b.example(batch.j0), C,
                 0.0, s.nngp.data(), batch.c2);
  } else {
    parallel_for(s.pairs, [&](index_t begin, index_t end) {
      for (index_t q = begin; q < end; ++q) {
        const double* x = a.example(batch.first(q));
        const double* y = b.example(batch.second(q));
        double* dst = s.nngp.data() + q * E;
        if (s.diagonal || P == 1) {
          for (index_t p = 0; p < P; ++p) {
            double t = 0;
            for (index_t c = 0; c < C; ++c) t += x[p * C + c] * y[p * C + c];
            dst[p] = t / double(C);
          }
        } else {
          detail::gemm_serial(false, true, P, P, C, 1.0 / double(C), x, C, y, C, 0.0, dst, P);
        }
      }
    });
  }
  if (want_ntk) s.ntk.assign(s.nngp.size(), 0.0);
  return s;
}

// The diagonal Σ(p, p) of each pair of a state (its per-pixel variances when the pairs are (x, x)).
std::vector<double> state_diagonal(const KernelState& s) {
  const index_t P = s.pixels(), E = s.entries();
  std::vector<double> d(static_cast<size_t>(s.pairs * P));
  for (index_t q = 0; q < s.pairs; ++q)
    for (index_t p = 0; p < P; ++p) d[size_t(q * P + p)] = s.nngp[size_t(q * E + (s.diagonal ? p : p * P + p))];
  return d;
}

// Per layer with a variance-reading rule, per example, its input's variances Σ(x, x)(p, p).
using VarianceMaps = std::vector<std::vector<double>>;  // [layer] -> (n, pixels)

// Runs the program on a batch of pairs. Before each layer the variances are filled in: for pairs
// (x, x) from the state itself (so ρ = 1 exactly on them) and recorded into `record`; otherwise
// from the maps of x1 and x2.
// The program runs from step `first` on, `input` being the state of the buffer that step reads.
KernelState propagate(const Network& net, KernelState input, size_t first, const PairBatch& batch, bool symmetric,
                      const VarianceMaps* maps1, const VarianceMaps* maps2, VarianceMaps* record, index_t record_n) {
  const auto& steps = net.steps();
  if (first >= steps.size()) return input;
  std::vector<KernelState> buffers(net.num_buffers());
  buffers[size_t(steps[first].in)] = std::move(input);
  for (size_t k = first; k < steps.size(); ++k) {
    const auto& st = steps[k];
    // A buffer read by no later step can be moved from.
    const bool last_use = net.last_reader(size_t(st.in)) == int(k);
    KernelState s = last_use ? std::move(buffers[size_t(st.in)]) : buffers[size_t(st.in)];
    if (st.layer < 0) {
      const KernelState& skip = buffers[size_t(st.skip)];
      for (size_t e = 0; e < s.nngp.size(); ++e) s.nngp[e] += skip.nngp[e];
      for (size_t e = 0; e < s.ntk.size(); ++e) s.ntk[e] += skip.ntk[e];
    } else {
      const Layer& layer = *net.layers()[size_t(st.layer)];
      if (layer.kernel_needs_gaussian_input()) {
        const index_t P = s.pixels();
        std::vector<double> own = state_diagonal(s);
        s.var1.assign(own.size(), 0.0);
        s.var2.assign(own.size(), 0.0);
        for (index_t q = 0; q < s.pairs; ++q) {
          const index_t i = batch.first(q), j = batch.second(q);
          const bool self_pair = batch.self || (symmetric && i == j);
          for (index_t p = 0; p < P; ++p) {
            const size_t at = size_t(q * P + p);
            s.var1[at] = self_pair ? own[at] : (*maps1)[size_t(st.layer)][size_t(i * P + p)];
            s.var2[at] = self_pair ? own[at] : (*maps2)[size_t(st.layer)][size_t(j * P + p)];
          }
        }
        if (record) {
          auto& map = (*record)[size_t(st.layer)];
          map.resize(size_t(record_n * P));
          for (index_t q = 0; q < s.pairs; ++q)
            std::copy(own.begin() + q * P, own.begin() + (q + 1) * P, map.begin() + (batch.first(q)) * P);
        }
      }
      layer.kernel_rule(s);
    }
    buffers[size_t(st.out)] = std::move(s);
  }
  return std::move(buffers.back());
}

// ---- The offset path (see OffsetBlock) ----

// The step of the readout layer (GlobalAvgPool, Flatten) that ends the offset path, when every
// step before it has an offset rule (stride-1 Conv, pointwise layers, Residual sums) and nothing
// computed before it is read after it; otherwise none, and the layer-by-layer path runs.
std::optional<size_t> offset_readout(const Network& net) {
  const auto& steps = net.steps();
  for (size_t k = 0; k < steps.size(); ++k) {
    if (steps[k].layer < 0) continue;
    const Layer& l = *net.layers()[size_t(steps[k].layer)];
    if (l.kernel_pixel_readout() != PixelReadout::none) {
      for (size_t j = 0; j <= k; ++j)
        for (int b : {steps[j].in, steps[j].layer < 0 ? steps[j].skip : -1})
          if (b >= 0 && net.last_reader(size_t(b)) > int(k)) return std::nullopt;
      return k;
    }
    if (!l.kernel_has_offset_rule()) return std::nullopt;
  }
  return std::nullopt;
}

// One thread's buffers for the offset path: per program buffer a block's Σ and Θ, the pairs'
// inputs and, per step that reads them, the variances (and their square roots and inverses)
// transposed to [pixel][lane].
template <class T>
struct OffsetWorkspace {
  std::vector<std::vector<T>> nngp, ntk;  // [buffer]
  std::vector<T> x1, x2, scratch;         // inputs (P × C × lanes)
  struct Variances {
    std::vector<T> var, sd, isd;
  };
  std::vector<Variances> v1, v2;  // [step]
};

// The offset path, computing in T (float64, or float32 for float32 kernels).
template <class T>
class OffsetPath {
 public:
  OffsetPath(const Network& net, size_t readout) : net_(net), readout_(readout) {
    const auto& steps = net.steps();
    std::tie(h_, w_) = spatial_of(net.input_shape());
    const Layer& r = *net.layers()[size_t(steps[readout].layer)];
    kind_ = r.kernel_pixel_readout();
    const auto [rh, rw] = spatial_of(net.buffer_shape(size_t(steps[readout].in)));
    readout_pixels_ = rh * rw;
    // Offset (0, 0) first: in the pass over pairs (x, x) it yields the variances the others read.
    offsets_.emplace_back(0, 0);
    if (kind_ == PixelReadout::all_pairs)
      for (index_t dy = -(h_ - 1); dy < h_; ++dy)
        for (index_t dx = -(w_ - 1); dx < w_; ++dx)
          if (dy != 0 || dx != 0) offsets_.emplace_back(dy, dx);
    for (size_t k = 0; k < readout; ++k)
      if (steps[k].layer >= 0 && net.layers()[size_t(steps[k].layer)]->kernel_needs_gaussian_input())
        var_steps_.push_back(k);
  }

  size_t readout() const { return readout_; }

  // Σ (and Θ with want_ntk) at the readout's output for the pairs (a_i, b_j) of a batch (with
  // `symmetric`, only those with j ≥ i). With `record`, the pairs are (x, x): the variances come
  // from offset 0 itself and are stored into record (sized here).
  KernelState run(const Inputs& a, const Inputs& b, const PairBatch& batch, bool symmetric, bool want_ntk,
                  const VarianceMaps* maps1, const VarianceMaps* maps2, VarianceMaps* record, index_t record_n) const {
    KernelState s;
    s.pairs = batch.pairs();
    s.want_ntk = want_ntk;
    s.nngp.assign(size_t(s.pairs), 0.0);
    if (want_ntk) s.ntk.assign(size_t(s.pairs), 0.0);
    std::vector<index_t> todo;
    for (index_t q = 0; q < s.pairs; ++q)
      if (!symmetric || batch.second(q) >= batch.first(q)) todo.push_back(q);
    if (record)
      for (size_t k : var_steps_) {
        const auto [vh, vw] = spatial_of(net_.buffer_shape(size_t(net_.steps()[k].in)));
        (*record)[size_t(net_.steps()[k].layer)].resize(size_t(3 * record_n * vh * vw));
      }
    const index_t L = OffsetBlockT<T>::lanes, groups = (index_t(todo.size()) + L - 1) / L;
    parallel_for(groups, [&](index_t begin, index_t end) {
      OffsetWorkspace<T> ws;
      index_t i[L], j[L];
      double nngp[L], ntk[L];
      for (index_t g = begin; g < end; ++g) {
        const index_t count = std::min(L, index_t(todo.size()) - g * L);
        for (index_t k = 0; k < L; ++k) {
          const index_t q = todo[size_t(g * L + std::min(k, count - 1))];  // spare lanes repeat the last pair
          i[k] = batch.first(q), j[k] = batch.second(q);
        }
        lanes(a, b, i, j, count, want_ntk, maps1, maps2, record, ws, nngp, ntk);
        for (index_t k = 0; k < count; ++k) {
          const index_t q = todo[size_t(g * L + k)];
          s.nngp[size_t(q)] = nngp[k];
          if (want_ntk) s.ntk[size_t(q)] = ntk[k];
        }
      }
    });
    return s;
  }

 private:
  // One group of lanes: every offset through every step up to the readout, summed there.
  void lanes(const Inputs& a, const Inputs& b, const index_t* i, const index_t* j, index_t count, bool want_ntk,
             const VarianceMaps* maps1, const VarianceMaps* maps2, VarianceMaps* record, OffsetWorkspace<T>& ws,
             double* out_nngp, double* out_ntk) const {
    constexpr index_t L = OffsetBlockT<T>::lanes;
    const auto& steps = net_.steps();
    const index_t P = h_ * w_, C = a.channels;
    transpose_inputs(a, i, ws.x1);
    transpose_inputs(b, j, ws.x2);
    ws.nngp.resize(net_.num_buffers());
    ws.ntk.resize(net_.num_buffers());
    ws.v1.resize(steps.size());
    ws.v2.resize(steps.size());
    for (size_t k : var_steps_) {
      const auto [vh, vw] = spatial_of(net_.buffer_shape(size_t(steps[k].in)));
      const index_t Pk = vh * vw;
      for (auto* v : {&ws.v1[k], &ws.v2[k]}) {
        v->var.resize(size_t(Pk * L));
        v->sd.resize(size_t(Pk * L));
        v->isd.resize(size_t(Pk * L));
      }
      if (record) continue;  // filled from offset 0 below, x' = x
      gather((*maps1)[size_t(steps[k].layer)], Pk, i, ws.v1[k]);
      gather((*maps2)[size_t(steps[k].layer)], Pk, j, ws.v2[k]);
    }
    double acc_nngp[L] = {}, acc_ntk[L] = {};
    for (const auto& [dy, dx] : offsets_) {
      // Σ⁰(p, p + d) = x(p)·x'(p + d)/C on the offset's grid; Θ⁰ = 0.
      OffsetBlockT<T> blk;
      blk.h = h_, blk.w = w_, blk.dy = dy, blk.dx = dx, blk.scratch = &ws.scratch;
      const index_t gh = blk.grid_h(), gw = blk.grid_w();
      auto& n0 = ws.nngp[0];
      n0.resize(size_t(P * L));
      for (index_t gy = 0; gy < gh; ++gy) {
        T* dst = n0.data() + gy * gw * L;
        for (index_t c = 0; c < C; ++c) {
          const T* x = ws.x1.data() + (c * P + blk.pixel1(gy)) * L;
          const T* y = ws.x2.data() + (c * P + blk.pixel2(gy)) * L;
          if (c == 0)
            for (index_t e = 0; e < gw * L; ++e) dst[e] = x[e] * y[e];
          else
            for (index_t e = 0; e < gw * L; ++e) dst[e] += x[e] * y[e];
        }
        if (C > 1)
          for (index_t e = 0; e < gw * L; ++e) dst[e] /= T(C);
      }
      if (want_ntk) {  // only this offset's cells: most grids are much smaller than the image
        ws.ntk[0].resize(size_t(P * L));
        std::fill(ws.ntk[0].begin(), ws.ntk[0].begin() + gh * gw * L, T(0));
      }
      for (size_t k = 0; k < readout_; ++k) {
        const auto& st = steps[k];
        const size_t in = size_t(st.in), out = size_t(st.out);
        const auto [ih, iw] = spatial_of(net_.buffer_shape(in));
        blk.h = ih, blk.w = iw;
        const size_t cells = size_t(std::max<index_t>(blk.grid_h(), 0) * std::max<index_t>(blk.grid_w(), 0) * L);
        // A buffer read by no later step is handed on; otherwise copied.
        auto take = [&](std::vector<std::vector<T>>& bufs) {
          if (net_.last_reader(in) == int(k)) {
            bufs[out].swap(bufs[in]);
          } else {
            bufs[out].resize(std::max(bufs[out].size(), cells));
            std::copy(bufs[in].begin(), bufs[in].begin() + cells, bufs[out].begin());
          }
        };
        take(ws.nngp);
        if (want_ntk) take(ws.ntk);
        if (st.layer < 0) {
          const size_t skip = size_t(st.skip);
          for (size_t e = 0; e < cells; ++e) ws.nngp[out][e] += ws.nngp[skip][e];
          if (want_ntk)
            for (size_t e = 0; e < cells; ++e) ws.ntk[out][e] += ws.ntk[skip][e];
          continue;
        }
        blk.nngp = ws.nngp[out].data();
        blk.ntk = want_ntk ? ws.ntk[out].data() : nullptr;
        if (!ws.v1[k].var.empty()) {
          if (record && dy == 0 && dx == 0) record_variances(blk.nngp, i, count, ws.v1[k], (*record)[size_t(st.layer)]);
          const auto& v2 = record ? ws.v1[k] : ws.v2[k];
          blk.var1 = ws.v1[k].var.data(), blk.sd1 = ws.v1[k].sd.data(), blk.isd1 = ws.v1[k].isd.data();
          blk.var2 = v2.var.data(), blk.sd2 = v2.sd.data(), blk.isd2 = v2.isd.data();
        }
        net_.layers()[size_t(st.layer)]->kernel_offset_rule(blk);
      }
      // The readout's input.
      const size_t in = size_t(steps[readout_].in);
      const auto [rh, rw] = spatial_of(net_.buffer_shape(in));
      blk.h = rh, blk.w = rw;
      if (blk.empty()) continue;
      // Row sums in T (vectorized over lanes), their total in float64.
      const index_t rw_cells = blk.grid_w();
      for (index_t gy = 0; gy < blk.grid_h(); ++gy) {
        T row_nngp[L] = {}, row_ntk[L] = {};
        const T* sn = ws.nngp[in].data() + gy * rw_cells * L;
        const T* st = want_ntk ? ws.ntk[in].data() + gy * rw_cells * L : nullptr;
        for (index_t gx = 0; gx < rw_cells; ++gx)
          for (index_t lane = 0; lane < L; ++lane) row_nngp[lane] += sn[gx * L + lane];
        if (st)
          for (index_t gx = 0; gx < rw_cells; ++gx)
            for (index_t lane = 0; lane < L; ++lane) row_ntk[lane] += st[gx * L + lane];
        for (index_t lane = 0; lane < L; ++lane) acc_nngp[lane] += double(row_nngp[lane]), acc_ntk[lane] += double(row_ntk[lane]);
      }
    }
    const double scale = 1.0 / double(kind_ == PixelReadout::all_pairs ? readout_pixels_ * readout_pixels_ : readout_pixels_);
    for (index_t lane = 0; lane < L; ++lane) out_nngp[lane] = acc_nngp[lane] * scale, out_ntk[lane] = acc_ntk[lane] * scale;
  }

  // Pairs (x, x): the offset-0 grid `grid` ([pixel][lane]) holds each lane's variances. Sets them,
  // with their roots, as the lanes' variances v and stores the first `count` lanes' into `map`.
  static void record_variances(const T* grid, const index_t* idx, index_t count, typename OffsetWorkspace<T>::Variances& v,
                               std::vector<double>& map) {
    constexpr index_t L = OffsetBlockT<T>::lanes;
    const index_t Pk = index_t(v.var.size()) / L, n = index_t(map.size()) / (3 * Pk);
    for (index_t p = 0; p < Pk; ++p)
      for (index_t lane = 0; lane < L; ++lane) {
        const size_t at = size_t(p * L + lane);
        const double var = double(grid[at]), sd = std::sqrt(std::max(var, 0.0)), isd = sd > 0 ? 1.0 / sd : 0.0;
        v.var[at] = T(var), v.sd[at] = T(sd), v.isd[at] = T(isd);
        if (lane >= count) continue;  // spare lanes repeat a pair
        const size_t row = size_t(idx[lane] * Pk + p);
        map[row] = var, map[row + size_t(n * Pk)] = sd, map[row + size_t(2 * n * Pk)] = isd;
      }
  }

  // Variance maps of the offset path hold, per layer, three (n, pixels) blocks: Σ(x, x)(p, p) (what
  // the layer-by-layer path reads), its square root and inverse square root, so that groups of
  // lanes gather them instead of recomputing them (which costs as much as a Flatten readout's work).
  static void gather(const std::vector<double>& map, index_t Pk, const index_t* idx, typename OffsetWorkspace<T>::Variances& v) {
    constexpr index_t L = OffsetBlockT<T>::lanes;
    const index_t n = index_t(map.size()) / (3 * Pk);
    for (index_t p = 0; p < Pk; ++p)
      for (index_t lane = 0; lane < L; ++lane) {
        const size_t at = size_t(p * L + lane), row = size_t(idx[lane] * Pk + p);
        v.var[at] = T(map[row]);
        v.sd[at] = T(map[row + size_t(n * Pk)]);
        v.isd[at] = T(map[row + size_t(2 * n * Pk)]);
      }
  }

  // x[(c·P + p)·lanes + lane] = example idx[lane] at pixel p, channel c.
  void transpose_inputs(const Inputs& in, const index_t* idx, std::vector<T>& x) const {
    constexpr index_t L = OffsetBlockT<T>::lanes;
    const index_t P = in.pixels, C = in.channels;
    x.resize(size_t(P * C * L));
    for (index_t lane = 0; lane < L; ++lane) {
      const double* src = in.example(idx[lane]);
      for (index_t p = 0; p < P; ++p)
        for (index_t c = 0; c < C; ++c) x[size_t((c * P + p) * L + lane)] = T(src[p * C + c]);
    }
  }

  const Network& net_;
  size_t readout_;
  PixelReadout kind_ = PixelReadout::none;
  index_t h_ = 1, w_ = 1, readout_pixels_ = 1;
  std::vector<std::pair<index_t, index_t>> offsets_;
  std::vector<size_t> var_steps_;
};

// Pairs per batch: the grid of vectors is cheap per pair; image pairs hold P² (or P) entries in
// every live buffer, so batches stay near 256 MiB.
index_t batch_pairs(const Network& net, bool diagonal) {
  index_t widest = 1;
  for (size_t b = 0; b < net.num_buffers(); ++b) {
    const auto [h, w] = spatial_of(net.buffer_shape(b));
    widest = std::max(widest, diagonal ? h * w : h * w * h * w);
  }
  const index_t bytes_per_pair = widest * 8 * 2 * 4;  // Σ and Θ, a few live buffers
  return std::max<index_t>(1, (index_t(256) << 20) / bytes_per_pair);
}

// Pairs per tile of the offset path: its state is one entry per pair, so tiles are for progress.
constexpr index_t offset_tile_pairs = index_t(1) << 16;

// Variance maps: per variance-reading layer, per example, the pixels of its input.
std::uint64_t variance_map_bytes(const Network& net, index_t n) {
  std::uint64_t bytes = 0;
  for (const auto& st : net.steps())
    if (st.layer >= 0 && net.layers()[size_t(st.layer)]->kernel_needs_gaussian_input()) {
      const auto [h, w] = spatial_of(net.buffer_shape(size_t(st.in)));
      bytes += std::uint64_t(n) * std::uint64_t(h * w) * 8 * 3;  // the offset path keeps √ and 1/√ too
    }
  return bytes;
}

// The infinite-width kernel as a producer of tiles for the tile engine. Construction runs the pass
// over the pairs (x, x) of every example, recording the variances each rule reads; a tile is then a
// batch of pairs through the program (the symmetric path computes only pairs j ≥ i of a diagonal tile).
template <class T>
class KernelProducer final : public detail::TileProducer<T> {
 public:
  KernelProducer(const Network& net, const Array<T>& x1, const Array<T>* x2, const KernelOptions& options)
      : net_(net), diagonal_(!check_program(net)), a_(read_inputs(net, x1, "x1")), symmetric_(x2 == nullptr || x2 == &x1),
        b_(symmetric_ ? Inputs() : read_inputs(net, *x2, "x2")), want_ntk_(options.get == KernelOptions::ntk) {
    if (const std::optional<size_t> readout = options.offset_path ? offset_readout(net) : std::nullopt)
      offsets_.emplace(net, *readout);  // float32 kernels: the offset path computes in float32
    self_pass(a_, maps1_);
    if (!symmetric_) self_pass(b_, maps2_);
  }

  std::string what() const override { return want_ntk_ ? "the infinite-width NTK" : "the infinite-width NNGP kernel"; }

  // The offset path keeps one vector entry per pair; the layer-by-layer path whole pixel-pair states.
  index_t batch() const { return offsets_ ? offset_tile_pairs : batch_pairs(net_, diagonal_); }

  void tile(index_t i0, index_t c1, index_t j0, index_t c2, T* tile) override {
    const PairBatch batch{i0, c1, j0, c2, false};
    const KernelState s = run(a_, second(), batch, symmetric_, want_ntk_, &maps1_, symmetric_ ? &maps1_ : &maps2_, nullptr, 0);
    const std::vector<double>& k = want_ntk_ ? s.ntk : s.nngp;
    for (index_t q = 0; q < batch.pairs(); ++q) {
      const index_t i = batch.first(q), j = batch.second(q);
      if (symmetric_ && j < i) continue;  // the engine mirrors (j, i)
      tile[(i - i0) * c2 + (j - j0)] = static_cast<T>(k[size_t(q)]);
    }
  }

  bool symmetric() const { return symmetric_; }
  index_t n1() const { return a_.n; }
  index_t n2() const { return second().n; }

 private:
  const Inputs& second() const { return symmetric_ ? a_ : b_; }

  // The kernel of a batch of pairs at the network's output.
  KernelState run(const Inputs& x, const Inputs& y, const PairBatch& batch, bool sym, bool ntk, const VarianceMaps* m1,
                  const VarianceMaps* m2, VarianceMaps* record, index_t record_n) const {
    if (offsets_) {
      KernelState s = offsets_->run(x, y, batch, sym, ntk, m1, m2, record, record_n);
      return propagate(net_, std::move(s), offsets_->readout() + 1, batch, sym, m1, m2, record, record_n);
    }
    return propagate(net_, input_state(x, y, batch, diagonal_, net_.input_shape(), ntk), 0, batch, sym, m1, m2, record,
                     record_n);
  }

  // The pairs (x, x) of every example, recording the variances each rule reads.
  void self_pass(const Inputs& in, VarianceMaps& maps) const {
    maps.assign(net_.layers().size(), {});
    const index_t per_batch = batch();
    for (index_t i0 = 0; i0 < in.n; i0 += per_batch) {
      const PairBatch batch{i0, std::min(per_batch, in.n - i0), i0, 0, true};
      run(in, in, batch, false, false, nullptr, nullptr, &maps, in.n);
    }
  }

  const Network& net_;
  const bool diagonal_;
  const Inputs a_;
  const bool symmetric_;
  const Inputs b_;
  const bool want_ntk_;
  std::optional<OffsetPath<T>> offsets_;
  VarianceMaps maps1_, maps2_;
};

// Square tiles near the producer's batch of pairs on the symmetric path; otherwise rows of the
// batch's square root by as many columns as fill it.
template <class T>
detail::TileGrid kernel_grid(const KernelProducer<T>& p) {
  const index_t per_batch = p.batch();
  const index_t side = std::max<index_t>(1, static_cast<index_t>(std::sqrt(double(per_batch))));
  detail::TileGrid g;
  g.n1 = p.n1(), g.n2 = p.n2(), g.symmetric = p.symmetric();
  g.tile1 = std::min(g.n1, side);
  g.tile2 = g.symmetric ? g.tile1 : std::min(g.n2, std::max<index_t>(1, per_batch / g.tile1));
  g.producer_fills_diagonal_tiles = false;
  return g;
}

}  // namespace

std::string KernelPlan::describe() const {
  return std::string("path ") + (offset_path ? "offset (pairs in SIMD lanes, one pixel offset at a time)" : "layer by layer") +
         ", kernel " + format_bytes(result_bytes) + " + working " + format_bytes(working_bytes) + "\n";
}

KernelPlan plan_infinite_kernel(const Network& net, index_t n1, index_t n2, const KernelOptions& options,
                                std::size_t element_bytes) {
  ThreadScope threads(options.threads);
  const bool diagonal = !check_program(net);
  KernelPlan plan;
  plan.offset_path = options.offset_path && offset_readout(net).has_value();
  plan.result_bytes = std::uint64_t(n1) * std::uint64_t(n2) * element_bytes;
  const std::uint64_t inputs = std::uint64_t(n1 + n2) * std::uint64_t(net.input_size()) * 8;
  std::uint64_t tile;
  if (plan.offset_path) {
    // Per pair a few vector states; per thread one block per buffer, the transposed inputs and variances.
    std::uint64_t widest = 1;
    for (size_t b = 0; b < net.num_buffers(); ++b) widest = std::max<std::uint64_t>(widest, std::uint64_t(net.buffer_size(b)));
    tile = std::uint64_t(offset_tile_pairs) * 8 * 8 + std::uint64_t(num_threads()) * 64 * widest * 2 * (net.num_buffers() + 4);
  } else {
    index_t widest = 1;
    for (size_t b = 0; b < net.num_buffers(); ++b) {
      const auto [h, w] = spatial_of(net.buffer_shape(b));
      widest = std::max(widest, diagonal ? h * w : h * w * h * w);
    }
    tile = std::uint64_t(batch_pairs(net, diagonal)) * std::uint64_t(widest) * 8 * 2 * 4;
  }
  plan.working_bytes = inputs + variance_map_bytes(net, n1 + n2) + tile;
  if (options.max_memory > 0 && plan.working_bytes > options.max_memory)
    throw MemoryBudgetError("the infinite-width kernel needs " + format_bytes(plan.working_bytes) +
                            " of working memory (inputs in float64, variance maps, one tile of pairs), more than "
                            "--max-memory " + format_bytes(options.max_memory) + "; raise --max-memory");
  return plan;
}

template <class T>
Array<T> infinite_kernel(const Network& net, const Array<T>& x1, const std::type_identity_t<Array<T>>* x2,
                         KernelOptions options) {
  ThreadScope threads(options.threads);
  const index_t n1 = x1.ndim() > 0 ? x1.dim(0) : 0, n2 = x2 ? (x2->ndim() > 0 ? x2->dim(0) : 0) : n1;
  const KernelPlan plan = plan_infinite_kernel(net, n1, n2, options, sizeof(T));  // before allocating
  if (options.max_memory > 0 && plan.result_bytes + plan.working_bytes > options.max_memory)
    throw MemoryBudgetError("the kernel takes " + format_bytes(plan.result_bytes) + " plus " +
                            format_bytes(plan.working_bytes) + " working memory, more than --max-memory " +
                            format_bytes(options.max_memory) + "; raise --max-memory or write it out of core");
  KernelProducer<T> producer(net, x1, x2, options);
  Array<T> out(Shape{n1, n2});
  detail::ArraySink<T> sink(out.data(), n2, 1);
  detail::run_tiles(kernel_grid(producer), producer, sink, options.progress);
  return out;
}

template <class T>
void infinite_kernel_to_file(const Network& net, const Array<T>& x1, const std::type_identity_t<Array<T>>* x2,
                             const KernelOptions& options, const std::string& path) {
  ThreadScope threads(options.threads);
  const index_t n1 = x1.ndim() > 0 ? x1.dim(0) : 0, n2 = x2 ? (x2->ndim() > 0 ? x2->dim(0) : 0) : n1;
  const KernelPlan plan = plan_infinite_kernel(net, n1, n2, options, sizeof(T));
  KernelProducer<T> producer(net, x1, x2, options);  // checks the inputs before the file is created
  NpyFileWriter file(path, sizeof(T) == 8 ? DType::float64 : DType::float32, Shape{n1, n2});
  detail::TileGrid grid = kernel_grid(producer);
  // Bands as large as the budget left beside the working memory allows.
  const std::uint64_t spare = options.max_memory > plan.working_bytes ? options.max_memory - plan.working_bytes : 0;
  grid.band = detail::band_rows(n1, grid.tile1, std::uint64_t(n2) * sizeof(T), spare);
  detail::FileSink<T> sink(file, n2, 1);
  detail::run_tiles(grid, producer, sink, options.progress);
  file.commit();
}

template <class T>
Array<T> monte_carlo_kernel(const Network& net, const Array<T>& x1, const std::type_identity_t<Array<T>>* x2,
                            KernelOptions options, int samples, std::uint64_t seed) {
  if (samples < 1) throw InvalidArgument("Monte Carlo kernel: samples must be >= 1, got " + std::to_string(samples));
  const EntkMode trace = parse_entk_mode("trace");
  EntkOptions o;
  o.mode = trace;
  Array<T> mean;
  for (int s = 0; s < samples; ++s) {
    const std::vector<T> theta = net.init<T>(seed + std::uint64_t(s));
    Array<T> k = options.get == KernelOptions::ntk ? empirical_ntk(net, theta, x1, x2, o)
                                                   : empirical_nngp(net, theta, x1, x2, trace);
    if (s == 0) mean = Array<T>(k.shape());
    for (index_t e = 0; e < k.size(); ++e) mean[e] += k[e] / T(samples);
  }
  return mean;
}

template Array<float> monte_carlo_kernel(const Network&, const Array<float>&, const Array<float>*, KernelOptions, int,
                                         std::uint64_t);
template Array<double> monte_carlo_kernel(const Network&, const Array<double>&, const Array<double>*, KernelOptions,
                                          int, std::uint64_t);
template Array<float> infinite_kernel(const Network&, const Array<float>&, const Array<float>*, KernelOptions);
template Array<double> infinite_kernel(const Network&, const Array<double>&, const Array<double>*, KernelOptions);
template void infinite_kernel_to_file(const Network&, const Array<float>&, const Array<float>*, const KernelOptions&,
                                      const std::string&);
template void infinite_kernel_to_file(const Network&, const Array<double>&, const Array<double>*, const KernelOptions&,
                                      const std::string&);

}  // namespace ntk
