// The offset path of the infinite-width kernels (OffsetBlock in layer.hpp): pairs packed in SIMD
// lanes, every pixel offset's grid carried through the layers up to the readout in cache.
#pragma once
#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

#include "kernel_detail.hpp"
#include "ntk/parallel.hpp"

namespace ntk::detail {

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
    readout_layer_ = net.layers()[size_t(steps[readout].layer)].get();
    // Offset (0, 0) first: in the pass over pairs (x, x) it yields the variances the others read.
    offsets_.emplace_back(0, 0);
    if (readout_layer_->kernel_pixel_readout() == PixelReadout::all_pairs)
      for (index_t dy = -(h_ - 1); dy < h_; ++dy)
        for (index_t dx = -(w_ - 1); dx < w_; ++dx)
          if (dy != 0 || dx != 0) offsets_.emplace_back(dy, dx);
    for (size_t k = 0; k < readout; ++k)
      if (!steps[k].is_join() && net.layers()[size_t(steps[k].layer)]->kernel_needs_gaussian_input())
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
        if (st.is_join()) {
          const Combinator& join = net_.join_of(st);
          join.kernel_offset_rule(ws.nngp[out].data(), ws.nngp[size_t(st.skip)].data(), index_t(cells));
          if (want_ntk) join.kernel_offset_rule(ws.ntk[out].data(), ws.ntk[size_t(st.skip)].data(), index_t(cells));
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
      blk.nngp = ws.nngp[in].data();
      blk.ntk = want_ntk ? ws.ntk[in].data() : nullptr;
      readout_layer_->kernel_offset_readout(blk, acc_nngp, acc_ntk);
    }
    const double scale = readout_layer_->kernel_offset_readout_scale();
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
  const Layer* readout_layer_ = nullptr;
  index_t h_ = 1, w_ = 1;
  std::vector<std::pair<index_t, index_t>> offsets_;
  std::vector<size_t> var_steps_;
};

}  // namespace ntk::detail
