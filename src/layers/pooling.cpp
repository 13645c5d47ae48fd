// Parameter-free linear layers: AvgPool, GlobalAvgPool, Flatten. Their tangent rule is the layer
// itself and their cotangent rule its transpose, so each supplies just those two maps.
#include "layers.hpp"
#include "ntk/error.hpp"

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

// Average over windows; the divisor is always the full window (padding counts as zeros), as in
// neural-tangents and PyTorch's default count_include_pad=True.
class AvgPool final : public LinearLayer<AvgPool> {
 public:
  AvgPool(std::pair<long long, long long> window, std::pair<long long, long long> stride, bool same)
      : kh_(window.first), kw_(window.second), sh_(stride.first), sw_(stride.second), same_(same) {}
  std::string name() const override { return "AvgPool"; }
  bool channelwise() const override { return true; }
  std::string describe() const override {
    return "AvgPool(" + std::to_string(kh_) + "x" + std::to_string(kw_) + ", stride=" + std::to_string(sh_) + "x" +
           std::to_string(sw_) + ", padding=" + (same_ ? "SAME" : "VALID") + ")";
  }

  template <class T>
  void apply(const T* in, T* out, index_t rows) const {
    const T inv = T(1) / T(kh_ * kw_);
    for (index_t r = 0; r < rows; ++r) {
      const T* img = in + r * in_size();
      T* o = out + r * out_size();
      std::fill(o, o + out_size(), T(0));
      for_each_tap([&](index_t dst, index_t src) {
        for (index_t c = 0; c < c_; ++c) o[dst * c_ + c] += inv * img[src * c_ + c];
      });
    }
  }
  template <class T>
  void apply_transpose(const T* in, T* out, index_t rows) const {
    const T inv = T(1) / T(kh_ * kw_);
    for (index_t r = 0; r < rows; ++r) {
      const T* g = in + r * out_size();
      T* img = out + r * in_size();
      std::fill(img, img + in_size(), T(0));
      for_each_tap([&](index_t dst, index_t src) {
        for (index_t c = 0; c < c_; ++c) img[src * c_ + c] += inv * g[dst * c_ + c];
      });
    }
  }

 protected:
  Shape infer_shape(const Shape& shape) override {
    Shape in = require_image("AvgPool", shape);
    h_ = in[0], w_ = in[1], c_ = in[2];
    const Window2d g = window_geometry(h_, w_, kh_, kw_, sh_, sw_, same_, "AvgPool window");
    ho_ = g.out_h, wo_ = g.out_w, pad_top_ = g.pad_top, pad_left_ = g.pad_left;
    return {ho_, wo_, c_};
  }

 private:
  // Calls f(output pixel, input pixel) for every in-bounds tap.
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

  index_t kh_, kw_, sh_, sw_;
  bool same_;
  index_t h_ = 0, w_ = 0, c_ = 0, ho_ = 0, wo_ = 0, pad_top_ = 0, pad_left_ = 0;
};

class GlobalAvgPool final : public LinearLayer<GlobalAvgPool> {
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

 protected:
  Shape infer_shape(const Shape& in) override {
    if (in.size() < 2) throw InvalidArgument("GlobalAvgPool needs inputs with spatial axes, got " + shape_string(in));
    return {in.back()};
  }
};

class Flatten final : public LinearLayer<Flatten> {
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

 protected:
  Shape infer_shape(const Shape& in) override { return {numel(in)}; }
};

}  // namespace

std::unique_ptr<Layer> make_avg_pool(const LayerSpec& spec) {
  ArgReader args(spec, {"window", "stride", "padding"});
  auto window = args.get_size2("window", std::nullopt);
  auto stride = args.get_size2("stride", window);
  bool same = args.get_choice("padding", {"VALID", "SAME"}, "VALID") == "SAME";
  return std::make_unique<AvgPool>(window, stride, same);
}

std::unique_ptr<Layer> make_global_avg_pool(const LayerSpec& spec) {
  ArgReader args(spec, {});
  return std::make_unique<GlobalAvgPool>();
}

std::unique_ptr<Layer> make_flatten(const LayerSpec& spec) {
  ArgReader args(spec, {});
  return std::make_unique<Flatten>();
}

}  // namespace ntk::detail
