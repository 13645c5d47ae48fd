// Pooling and reshaping, parameter-free: the linear layers AvgPool, GlobalAvgPool and Flatten (their
// tangent rule is the layer itself and their cotangent rule its transpose, so each supplies just
// those two maps), and MaxPool, whose derivatives route through each window's argmax.
#include <cmath>

#include "layers.hpp"
#include "ntk/error.hpp"
#include "ntk/parallel.hpp"

namespace ntk::detail {
namespace {

// CRTP base: Derived provides apply(const T* in, T* out, rows) and apply_transpose(...).
template <class Derived>
class LinearLayer : public LayerImpl<Derived> {
 public:
  template <class T>
  void forward_t(const T*, const T* x, T* y, index_t n) const {
    self().apply(x, y, n);
  }
  template <class T>
  void vjp_t(const T*, const T*, const T*, index_t n, index_t k, const T* g_out, T* g_in, ParamCotangent<T>) const {
    if (g_in) self().apply_transpose(g_out, g_in, n * k);
  }
  template <class T>
  void jvp_t(const T*, const T*, const T*, index_t n, index_t k, const T* t_in, const T*, index_t, T* t_out) const {
    if (t_in)
      self().apply(t_in, t_out, n * k);
    else
      std::fill(t_out, t_out + n * k * this->out_size(), T(0));
  }

 private:
  const Derived& self() const { return static_cast<const Derived&>(*this); }
};

Shape require_image(const std::string& layer, const Shape& in) {
  if (in.size() != 3) throw InvalidArgument(layer + " needs image inputs (H, W, C) per example, got " + shape_string(in));
  return in;
}

// Reduces each pair's spatial kernel to one entry: the mean over all pixel pairs, or over p = p'
// only (diagonal_only). The state becomes that of vectors.
void reduce_spatial(KernelState& s, bool diagonal_only) {
  const index_t P = s.pixels(), per_pair = s.entries();
  auto reduce = [&](std::vector<double>& m) {
    std::vector<double> out(static_cast<size_t>(s.pairs));
    parallel_for(s.pairs, [&](index_t begin, index_t end) {
      for (index_t q = begin; q < end; ++q) {
        const double* in = m.data() + q * per_pair;
        double t = 0;
        if (s.diagonal)
          for (index_t p = 0; p < P; ++p) t += in[p];
        else if (diagonal_only)
          for (index_t p = 0; p < P; ++p) t += in[p * P + p];
        else
          for (index_t e = 0; e < per_pair; ++e) t += in[e];
        out[size_t(q)] = t / double(s.diagonal || diagonal_only ? P : per_pair);
      }
    });
    m.swap(out);
  };
  reduce(s.nngp);
  if (s.want_ntk) reduce(s.ntk);
  s.h = s.w = 1;
  s.diagonal = false;
}

// The windows of AvgPool and MaxPool over an H x W x C image, with VALID / SAME / integer padding.
class PoolWindows {
 public:
  PoolWindows(std::string layer, std::pair<long long, long long> window, std::pair<long long, long long> stride,
              Padding2d padding)
      : layer_(std::move(layer)), kh_(window.first), kw_(window.second), sh_(stride.first), sw_(stride.second),
        padding_(padding) {}

  std::string describe() const {
    return layer_ + "(" + std::to_string(kh_) + "x" + std::to_string(kw_) + ", stride=" + std::to_string(sh_) + "x" +
           std::to_string(sw_) + ", padding=" + padding_.to_string() + ")";
  }

  Shape infer(const Shape& shape) {
    Shape in = require_image(layer_, shape);
    h_ = in[0], w_ = in[1], c_ = in[2];
    const Window2d g = window_geometry(h_, w_, kh_, kw_, sh_, sw_, padding_, layer_ + " window");
    ho_ = g.out_h, wo_ = g.out_w, pad_top_ = g.pad_top, pad_left_ = g.pad_left;
    return {ho_, wo_, c_};
  }

  // Calls f(output pixel, input pixel) for every in-bounds tap, windows in output order and taps
  // row by row within each window (the order in which MaxPool breaks ties, as PyTorch does).
  template <class F>
  void for_each_tap(F&& f) const {
    for (index_t oy = 0; oy < ho_; ++oy)
      for (index_t ox = 0; ox < wo_; ++ox)
        for (index_t dy = 0; dy < kh_; ++dy)
          for (index_t dx = 0; dx < kw_; ++dx) {
            index_t iy = oy * sh_ + dy - pad_top_, ix = ox * sw_ + dx - pad_left_;
            if (iy >= 0 && iy < h_ && ix >= 0 && ix < w_) f(oy * wo_ + ox, iy * w_ + ix);
          }
  }

  index_t window_size() const { return kh_ * kw_; }
  index_t channels() const { return c_; }
  index_t in_pixels() const { return h_ * w_; }
  index_t out_pixels() const { return ho_ * wo_; }
  index_t out_h() const { return ho_; }
  index_t out_w() const { return wo_; }

 private:
  std::string layer_;
  index_t kh_, kw_, sh_, sw_;
  Padding2d padding_;
  index_t h_ = 0, w_ = 0, c_ = 0, ho_ = 0, wo_ = 0, pad_top_ = 0, pad_left_ = 0;
};

// Average over windows, with VALID / SAME / integer padding (Padding2d); the divisor is always the
// full window (padding counts as zeros), as in neural-tangents and PyTorch's default
// count_include_pad=True, so padding=1 matches torch.nn.AvgPool2d(k, s, padding=1).
class AvgPool final : public LinearLayer<AvgPool> {
 public:
  AvgPool(std::pair<long long, long long> window, std::pair<long long, long long> stride, Padding2d padding)
      : win_("AvgPool", window, stride, padding) {}
  std::string name() const override { return "AvgPool"; }
  bool channelwise() const override { return true; }
  std::string describe() const override { return win_.describe(); }

  template <class T>
  void apply(const T* in, T* out, index_t rows) const {
    const T inv = T(1) / T(win_.window_size());
    const index_t c_ = win_.channels();
    for (index_t r = 0; r < rows; ++r) {
      const T* img = in + r * in_size();
      T* o = out + r * out_size();
      std::fill(o, o + out_size(), T(0));
      win_.for_each_tap([&](index_t dst, index_t src) {
        for (index_t c = 0; c < c_; ++c) o[dst * c_ + c] += inv * img[src * c_ + c];
      });
    }
  }
  template <class T>
  void apply_transpose(const T* in, T* out, index_t rows) const {
    const T inv = T(1) / T(win_.window_size());
    const index_t c_ = win_.channels();
    for (index_t r = 0; r < rows; ++r) {
      const T* g = in + r * out_size();
      T* img = out + r * in_size();
      std::fill(img, img + in_size(), T(0));
      win_.for_each_tap([&](index_t dst, index_t src) {
        for (index_t c = 0; c < c_; ++c) img[src * c_ + c] += inv * g[dst * c_ + c];
      });
    }
  }

  // Infinite width: Σ'(q, q') = Σ over taps a of q and b of q' of Σ(a, b) / (kh·kw)², the same
  // for Θ; separable, first over the taps of q' then of q. Needs the full spatial covariance.
  void kernel_rule(KernelState& s) const override {
    if (s.diagonal) throw NotSupported("infinite-width kernels: AvgPool needs the full spatial covariance");
    std::vector<std::pair<index_t, index_t>> taps;
    win_.for_each_tap([&](index_t dst, index_t src) { taps.emplace_back(dst, src); });
    const index_t P = win_.in_pixels(), Po = win_.out_pixels();
    const double inv = 1.0 / double(win_.window_size());
    auto pool = [&](std::vector<double>& m) {
      std::vector<double> out(static_cast<size_t>(s.pairs * Po * Po), 0.0);
      parallel_for(s.pairs, [&](index_t begin, index_t end) {
        std::vector<double> half(static_cast<size_t>(P * Po));
        for (index_t q = begin; q < end; ++q) {
          const double* in = m.data() + q * P * P;
          std::fill(half.begin(), half.end(), 0.0);
          for (index_t a = 0; a < P; ++a)
            for (const auto& [dst, src] : taps) half[size_t(a * Po + dst)] += inv * in[a * P + src];
          double* o = out.data() + q * Po * Po;
          for (const auto& [dst, src] : taps)
            for (index_t b = 0; b < Po; ++b) o[dst * Po + b] += inv * half[size_t(src * Po + b)];
        }
      });
      m.swap(out);
    };
    pool(s.nngp);
    if (s.want_ntk) pool(s.ntk);
    s.h = win_.out_h(), s.w = win_.out_w();
  }
  bool kernel_needs_full_covariance() const override { return true; }

 protected:
  Shape infer_shape(const Shape& shape) override { return win_.infer(shape); }

 private:
  PoolWindows win_;
};

// Maximum over windows (padding never wins: a window's max is over its in-bounds pixels, as with
// PyTorch's -inf padding). The derivatives pass through each window's argmax, the first maximum in
// row-by-row order within the window (PyTorch's tie rule), which depends on the input x only: the
// VJP and JVP recompute it from x. No infinite-width rule: the max of correlated Gaussians has no
// closed-form kernel, so infinite-width kernels refuse networks with it, naming it.
class MaxPool final : public LayerImpl<MaxPool> {
 public:
  MaxPool(std::pair<long long, long long> window, std::pair<long long, long long> stride, Padding2d padding)
      : win_("MaxPool", window, stride, padding) {}
  std::string name() const override { return "MaxPool"; }
  bool channelwise() const override { return true; }
  std::string describe() const override { return win_.describe(); }
  double forward_flops() const override { return double(out_size()) * double(win_.window_size()); }

  void kernel_rule(KernelState&) const override {
    throw NotSupported("infinite-width kernels: " + describe() +
                       " has no exact kernel (the maximum of correlated Gaussians has no closed form); use AvgPool "
                       "for an infinite-width kernel, or the empirical NTK (ntk entk) of this network");
  }

  template <class T>
  void forward_t(const T*, const T* x, T* y, index_t n) const {
    for_each_example(x, n, [&](index_t r, const index_t* arg) {
      for (index_t j = 0; j < out_size(); ++j) y[r * out_size() + j] = x[r * in_size() + arg[j]];
    });
  }

  template <class T>
  void vjp_t(const T*, const T* x, const T*, index_t n, index_t k, const T* g_out, T* g_in, ParamCotangent<T>) const {
    if (!g_in) return;
    for_each_example(x, n, [&](index_t r, const index_t* arg) {
      for (index_t kk = 0; kk < k; ++kk) {
        const T* g = g_out + (r * k + kk) * out_size();
        T* gi = g_in + (r * k + kk) * in_size();
        std::fill(gi, gi + in_size(), T(0));
        for (index_t j = 0; j < out_size(); ++j) gi[arg[j]] += g[j];
      }
    });
  }

  template <class T>
  void jvp_t(const T*, const T* x, const T*, index_t n, index_t k, const T* t_in, const T*, index_t, T* t_out) const {
    if (!t_in) {
      std::fill(t_out, t_out + n * k * out_size(), T(0));
      return;
    }
    for_each_example(x, n, [&](index_t r, const index_t* arg) {
      for (index_t kk = 0; kk < k; ++kk) {
        const T* t = t_in + (r * k + kk) * in_size();
        T* o = t_out + (r * k + kk) * out_size();
        for (index_t j = 0; j < out_size(); ++j) o[j] = t[arg[j]];
      }
    });
  }

 protected:
  Shape infer_shape(const Shape& shape) override { return win_.infer(shape); }

 private:
  // Calls f(r, arg) for each example r of x, in parallel, with arg its argmax (below).
  template <class T, class F>
  void for_each_example(const T* x, index_t n, F&& f) const {
    parallel_for(n, [&](index_t begin, index_t end) {
      std::vector<index_t> arg(static_cast<size_t>(out_size()));
      for (index_t r = begin; r < end; ++r) {
        argmax(x + r * in_size(), arg.data());
        f(r, arg.data());
      }
    });
  }

  // arg[j]: the index within one example's input of the maximum that output j takes (NaN wins, so
  // that a NaN input reaches the output and the engine's finiteness check, as in PyTorch).
  template <class T>
  void argmax(const T* img, index_t* arg) const {
    const index_t C = win_.channels();
    std::fill(arg, arg + out_size(), index_t(-1));
    win_.for_each_tap([&](index_t dst, index_t src) {
      for (index_t c = 0; c < C; ++c) {
        index_t& a = arg[dst * C + c];
        const T v = img[src * C + c];
        if (a < 0 || v > img[a] || (std::isnan(v) && !std::isnan(img[a]))) a = src * C + c;
      }
    });
  }

  PoolWindows win_;
};

// The readouts' offset rule: the sum of a grid over its cells, per lane; rows summed in T
// (vectorized over lanes), their total in float64.
template <class T>
void add_grid_sums(const OffsetBlockT<T>& b, double* acc_nngp, double* acc_ntk) {
  constexpr index_t L = OffsetBlockT<T>::lanes;
  const index_t rw_cells = b.grid_w();
  for (index_t gy = 0; gy < b.grid_h(); ++gy) {
    T row_nngp[L] = {}, row_ntk[L] = {};
    const T* sn = b.nngp + gy * rw_cells * L;
    const T* st = b.ntk ? b.ntk + gy * rw_cells * L : nullptr;
    for (index_t gx = 0; gx < rw_cells; ++gx)
      for (index_t lane = 0; lane < L; ++lane) row_nngp[lane] += sn[gx * L + lane];
    if (st)
      for (index_t gx = 0; gx < rw_cells; ++gx)
        for (index_t lane = 0; lane < L; ++lane) row_ntk[lane] += st[gx * L + lane];
    for (index_t lane = 0; lane < L; ++lane) acc_nngp[lane] += double(row_nngp[lane]), acc_ntk[lane] += double(row_ntk[lane]);
  }
}

// Shared by GlobalAvgPool and Flatten, which differ in the offsets they read and their scale.
template <class Derived>
class ReadoutLayer : public LinearLayer<Derived> {
 public:
  void kernel_offset_readout(const OffsetBlockT<double>& b, double* nngp, double* ntk) const override {
    add_grid_sums(b, nngp, ntk);
  }
  void kernel_offset_readout(const OffsetBlockT<float>& b, double* nngp, double* ntk) const override {
    add_grid_sums(b, nngp, ntk);
  }

 protected:
  index_t pixels() const { return this->in_size() / this->in_shape().back(); }
};

class GlobalAvgPool final : public ReadoutLayer<GlobalAvgPool> {
 public:
  std::string name() const override { return "GlobalAvgPool"; }
  std::string describe() const override { return "GlobalAvgPool"; }
  bool channelwise() const override { return true; }

  template <class T>
  void apply(const T* in, T* out, index_t rows) const {
    const index_t c = out_size(), pixels = in_size() / c;
    const T inv = T(1) / T(pixels);
    for (index_t r = 0; r < rows; ++r) {
      T* o = out + r * c;
      std::fill(o, o + c, T(0));
      for (index_t p = 0; p < pixels; ++p)
        for (index_t j = 0; j < c; ++j) o[j] += in[(r * pixels + p) * c + j];
      for (index_t j = 0; j < c; ++j) o[j] *= inv;
    }
  }
  template <class T>
  void apply_transpose(const T* in, T* out, index_t rows) const {
    const index_t c = out_size(), pixels = in_size() / c;
    const T inv = T(1) / T(pixels);
    for (index_t r = 0; r < rows; ++r)
      for (index_t p = 0; p < pixels; ++p)
        for (index_t j = 0; j < c; ++j) out[(r * pixels + p) * c + j] = inv * in[r * c + j];
  }

  // Infinite width: the mean of Σ(p, p') over all pixel pairs (and of Θ).
  void kernel_rule(KernelState& s) const override {
    if (s.diagonal) throw NotSupported("infinite-width kernels: GlobalAvgPool needs the full spatial covariance");
    reduce_spatial(s, false);
  }
  PixelReadout kernel_pixel_readout() const override { return PixelReadout::all_pairs; }
  double kernel_offset_readout_scale() const override { return 1.0 / double(pixels() * pixels()); }
  bool kernel_needs_full_covariance() const override { return true; }

 protected:
  Shape infer_shape(const Shape& in) override {
    if (in.size() < 2) throw InvalidArgument("GlobalAvgPool needs inputs with spatial axes, got " + shape_string(in));
    return {in.back()};
  }
};

class Flatten final : public ReadoutLayer<Flatten> {
 public:
  std::string name() const override { return "Flatten"; }
  std::string describe() const override { return "Flatten"; }
  template <class T>
  void apply(const T* in, T* out, index_t rows) const {
    std::copy(in, in + rows * in_size(), out);
  }
  template <class T>
  void apply_transpose(const T* in, T* out, index_t rows) const {
    std::copy(in, in + rows * in_size(), out);
  }

  // Infinite width: the flattened features' inner product over P·C is the mean over pixels of
  // Σ(p, p), so only the diagonal p = p' matters.
  void kernel_rule(KernelState& s) const override { reduce_spatial(s, true); }
  PixelReadout kernel_pixel_readout() const override { return PixelReadout::diagonal; }
  double kernel_offset_readout_scale() const override { return 1.0 / double(pixels()); }

 protected:
  Shape infer_shape(const Shape& in) override { return {numel(in)}; }
};

// AvgPool and MaxPool take the same arguments: window, stride (default: the window), padding.
template <class Pool>
std::unique_ptr<Layer> make_window_pool(const LayerSpec& spec) {
  ArgReader args(spec, {"window", "stride", "padding"});
  auto window = args.get_size2("window", std::nullopt);
  auto stride = args.get_size2("stride", window);
  const Padding2d padding = read_padding(args, window.first, window.second);
  return std::make_unique<Pool>(window, stride, padding);
}

}  // namespace

std::unique_ptr<Layer> make_avg_pool(const LayerSpec& spec) { return make_window_pool<AvgPool>(spec); }

std::unique_ptr<Layer> make_max_pool(const LayerSpec& spec) { return make_window_pool<MaxPool>(spec); }

std::unique_ptr<Layer> make_global_avg_pool(const LayerSpec& spec) {
  ArgReader args(spec, {});
  return std::make_unique<GlobalAvgPool>();
}

std::unique_ptr<Layer> make_flatten(const LayerSpec& spec) {
  ArgReader args(spec, {});
  return std::make_unique<Flatten>();
}

}  // namespace ntk::detail
