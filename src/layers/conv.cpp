// Conv: 2-D convolution over NHWC inputs with HWIO filters, stride and VALID / SAME padding (SAME
// as in TensorFlow and neural-tangents: the extra pixel of odd padding goes after). Computed per
// example as im2col patches (Ho·Wo × kh·kw·C) times W reshaped (kh·kw·C × O), a GEMM.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../blas.hpp"
#include "layers.hpp"
#include "ntk/error.hpp"
#include "ntk/parallel.hpp"

namespace ntk::detail {
namespace {

constexpr index_t kPatchBytes = index_t(32) << 20;

class Conv final : public LayerImpl<Conv> {
 public:
  Conv(index_t out, std::pair<long long, long long> kernel, std::pair<long long, long long> stride, bool same,
       AffineOptions o)
      : out_(out), kh_(kernel.first), kw_(kernel.second), sh_(stride.first), sw_(stride.second), same_(same), o_(o) {}

  std::string name() const override { return "Conv"; }
  std::string describe() const override {
    return "Conv(" + std::to_string(out_) + ", " + std::to_string(kh_) + "x" + std::to_string(kw_) +
           ", stride=" + std::to_string(sh_) + "x" + std::to_string(sw_) + ", padding=" + (same_ ? "SAME" : "VALID") +
           ", " + describe_affine(o_) + ")";
  }

  std::vector<ParamSpec> param_specs() const override {
    bool standard = o_.parameterization == Parameterization::standard;
    std::vector<ParamSpec> p{{"W", {kh_, kw_, c_, out_}, standard ? o_.W_std / std::sqrt(double(taps())) : 1.0}};
    if (o_.b_std) p.push_back({"b", {out_}, standard ? *o_.b_std : 1.0});
    return p;
  }

  template <class T>
  void forward_t(const T* th, const T* x, T* y, index_t n) const {
    // Patches of several examples form one tall GEMM, which BLAS runs far faster than many small
    // ones; the chunk keeps the patch buffer near kPatchBytes.
    const index_t per_example = pixels_out() * taps();
    const index_t chunk = std::clamp<index_t>(kPatchBytes / (per_example * index_t(sizeof(T))), 1, n);
    std::vector<T> patches(static_cast<size_t>(chunk * per_example));
    for (index_t start = 0; start < n; start += chunk) {
      const index_t count = std::min(chunk, n - start);
      for (index_t i = 0; i < count; ++i) im2col(x + (start + i) * in_size(), patches.data() + i * per_example);
      T* ys = y + start * out_size();
      gemm(false, false, count * pixels_out(), out_, taps(), w_scale<T>(), patches.data(), taps(), th, out_, T(0), ys,
           out_);
      if (o_.b_std)
        for (index_t i = 0; i < count; ++i) add_bias(th + taps() * out_, ys + i * out_size());
    }
  }

  template <class T>
  void vjp_t(const T* th, const T* x, const T*, index_t n, index_t k, const T* g_out, T* g_in,
             ParamCotangent<T> g_th) const {
    const T s = w_scale<T>();
    const index_t P = pixels_out(), F = taps();
    // Examples run in parallel when their parameter cotangents go to separate rows (or nowhere).
    const bool parallel = !g_th.data || g_th.per_example;
    parallel_for(n, [&](index_t i_begin, index_t i_end) {
      std::vector<T> patches(static_cast<size_t>(P * F));
      std::vector<T> grad_patches(g_in ? static_cast<size_t>(k * P * F) : 0);
      std::vector<T> side_by_side(g_th.data ? static_cast<size_t>(P * k * out_) : 0);
      std::vector<T> grads(g_th.data ? static_cast<size_t>(F * k * out_) : 0);
      for (index_t i = i_begin; i < i_end; ++i) {
        const T* gi = g_out + i * k * out_size();
        if (g_in) {
          // All k directions of example i at once: (k·P × O)·Wᵀ, then scatter-add back to pixels.
          gemm(false, true, k * P, F, out_, s, gi, out_, th, out_, T(0), grad_patches.data(), F);
          for (index_t kk = 0; kk < k; ++kk) col2im(grad_patches.data() + kk * P * F, g_in + (i * k + kk) * in_size());
        }
        if (!g_th.data) continue;
        im2col(x + i * in_size(), patches.data());
        // All k directions in one GEMM: patchesᵀ (F × P) times the cotangents laid side by side
        // (P × k·O), then each direction's F × O block goes to its row.
        for (index_t kk = 0; kk < k; ++kk)
          for (index_t p = 0; p < P; ++p)
            std::copy(gi + kk * out_size() + p * out_, gi + kk * out_size() + (p + 1) * out_,
                      side_by_side.data() + p * k * out_ + kk * out_);
        gemm(true, false, F, k * out_, P, s, patches.data(), F, side_by_side.data(), k * out_, T(0), grads.data(), k * out_);
        for (index_t kk = 0; kk < k; ++kk) {
          T* dst = g_th.row(i, kk, k);
          for (index_t f = 0; f < F; ++f) {
            const T* src = grads.data() + f * k * out_ + kk * out_;
            T* d = dst + f * out_;
            for (index_t o = 0; o < out_; ++o) d[o] += src[o];
          }
          if (o_.b_std) {
            T* db = dst + F * out_;
            const T* g = gi + kk * out_size();
            const T c = b_scale<T>();
            for (index_t p = 0; p < P; ++p)
              for (index_t o = 0; o < out_; ++o) db[o] += c * g[p * out_ + o];
          }
        }
      }
    }, parallel ? 0 : 1);
  }

  template <class T>
  void jvp_t(const T* th, const T* x, const T*, index_t n, index_t k, const T* t_in, const T* t_th, index_t stride,
             T* t_out) const {
    const T s = w_scale<T>();
    const index_t P = pixels_out(), F = taps();
    std::vector<T> patches(static_cast<size_t>(P * F));
    for (index_t i = 0; i < n; ++i) {
      for (index_t kk = 0; kk < k; ++kk) {
        T* dst = t_out + (i * k + kk) * out_size();
        if (t_in) {
          im2col(t_in + (i * k + kk) * in_size(), patches.data());
          gemm(false, false, P, out_, F, s, patches.data(), F, th, out_, T(0), dst, out_);
        } else {
          std::fill(dst, dst + out_size(), T(0));
        }
      }
      if (!t_th) continue;
      im2col(x + i * in_size(), patches.data());
      for (index_t kk = 0; kk < k; ++kk) {
        T* dst = t_out + (i * k + kk) * out_size();
        const T* dW = t_th + kk * stride;
        gemm(false, false, P, out_, F, s, patches.data(), F, dW, out_, T(1), dst, out_);
        if (o_.b_std) add_bias(dW + F * out_, dst);
      }
    }
  }

  double forward_flops() const override { return double(pixels_out()) * double(taps()) * double(out_); }

 protected:
  Shape infer_shape(const Shape& in) override {
    if (in.size() != 3)
      throw InvalidArgument("Conv needs image inputs (H, W, C) per example, got " + shape_string(in));
    h_ = in[0], w_ = in[1], c_ = in[2];
    const Window2d g = window_geometry(h_, w_, kh_, kw_, sh_, sw_, same_, "Conv kernel");
    ho_ = g.out_h, wo_ = g.out_w, pad_top_ = g.pad_top, pad_left_ = g.pad_left;
    return {ho_, wo_, out_};
  }

 private:
  index_t taps() const { return kh_ * kw_ * c_; }
  index_t pixels_out() const { return ho_ * wo_; }
  template <class T>
  T w_scale() const {
    return o_.parameterization == Parameterization::ntk ? T(o_.W_std / std::sqrt(double(taps()))) : T(1);
  }
  template <class T>
  T b_scale() const {
    return o_.parameterization == Parameterization::ntk ? T(*o_.b_std) : T(1);
  }
  template <class T>
  void add_bias(const T* b, T* y) const {
    const T c = b_scale<T>();
    for (index_t p = 0; p < pixels_out(); ++p)
      for (index_t o = 0; o < out_; ++o) y[p * out_ + o] += c * b[o];
  }

  // Input pixel feeding output (oy, ox) at tap (dy, dx), or -1 if it falls in the padding.
  index_t source(index_t oy, index_t ox, index_t dy, index_t dx) const {
    index_t iy = oy * sh_ + dy - pad_top_, ix = ox * sw_ + dx - pad_left_;
    return (iy < 0 || iy >= h_ || ix < 0 || ix >= w_) ? -1 : iy * w_ + ix;
  }

  template <class T>
  void im2col(const T* img, T* patches) const {
    for (index_t oy = 0; oy < ho_; ++oy)
      for (index_t ox = 0; ox < wo_; ++ox) {
        T* row = patches + (oy * wo_ + ox) * taps();
        for (index_t dy = 0; dy < kh_; ++dy)
          for (index_t dx = 0; dx < kw_; ++dx) {
            T* dst = row + (dy * kw_ + dx) * c_;
            index_t src = source(oy, ox, dy, dx);
            if (src < 0)
              std::fill(dst, dst + c_, T(0));
            else
              std::copy(img + src * c_, img + (src + 1) * c_, dst);
          }
      }
  }

  // Adjoint of im2col: img = Σ over patches of their taps (img is overwritten).
  template <class T>
  void col2im(const T* patches, T* img) const {
    std::fill(img, img + in_size(), T(0));
    for (index_t oy = 0; oy < ho_; ++oy)
      for (index_t ox = 0; ox < wo_; ++ox) {
        const T* row = patches + (oy * wo_ + ox) * taps();
        for (index_t dy = 0; dy < kh_; ++dy)
          for (index_t dx = 0; dx < kw_; ++dx) {
            index_t src = source(oy, ox, dy, dx);
            if (src < 0) continue;
            const T* from = row + (dy * kw_ + dx) * c_;
            T* to = img + src * c_;
            for (index_t c = 0; c < c_; ++c) to[c] += from[c];
          }
      }
  }

  index_t out_, kh_, kw_, sh_, sw_;
  bool same_;
  AffineOptions o_;
  index_t h_ = 0, w_ = 0, c_ = 0, ho_ = 0, wo_ = 0, pad_top_ = 0, pad_left_ = 0;
};

}  // namespace

std::unique_ptr<Layer> make_conv(const LayerSpec& spec, const NetworkDefaults& defaults) {
  ArgReader args(spec, {"out_channels", "kernel", "stride", "padding", "W_std", "b_std", "parameterization"});
  index_t out = args.get_int("out_channels");
  auto kernel = args.get_size2("kernel", std::nullopt);
  auto stride = args.get_size2("stride", std::make_pair(1LL, 1LL));
  bool same = args.get_choice("padding", {"VALID", "SAME"}, "VALID") == "SAME";
  return std::make_unique<Conv>(out, kernel, stride, same, read_affine_options(args, defaults));
}

}  // namespace ntk::detail
