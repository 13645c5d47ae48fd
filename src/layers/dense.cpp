// Dense: y = s·x·W + c·b over the last axis (applied at every position of image-shaped inputs),
// with s = W_std/√fan_in, c = b_std under NTK parameterization and s = c = 1 under standard.
#include <cmath>

#include "../blas.hpp"
#include "layers.hpp"
#include "ntk/error.hpp"
#include "ntk/parallel.hpp"

namespace ntk::detail {
namespace {

class Dense final : public LayerImpl<Dense> {
 public:
  Dense(index_t out, AffineOptions o) : out_(out), o_(o) {}

  std::string name() const override { return "Dense"; }
  bool output_channel_params() const override { return true; }
  std::string describe() const override { return "Dense(" + std::to_string(out_) + ", " + describe_affine(o_) + ")"; }

  std::vector<ParamSpec> param_specs() const override {
    bool standard = o_.parameterization == Parameterization::standard;
    std::vector<ParamSpec> p{{"W", {fan_in_, out_}, standard ? o_.W_std / std::sqrt(double(fan_in_)) : 1.0}};
    if (o_.b_std) p.push_back({"b", {out_}, standard ? *o_.b_std : 1.0});
    return p;
  }

  template <class T>
  void forward_t(const T* th, const T* x, T* y, index_t n) const {
    index_t rows = n * positions();
    gemm(false, false, rows, out_, fan_in_, w_scale<T>(), x, fan_in_, th, out_, T(0), y, out_);
    if (o_.b_std) add_bias(th + fan_in_ * out_, y, rows);
  }

  template <class T>
  void vjp_t(const T* th, const T* x, const T*, index_t n, index_t k, const T* g_out, T* g_in,
             ParamCotangent<T> g_th) const {
    const T s = w_scale<T>();
    const index_t pos = positions();
    if (g_in) gemm(false, true, n * k * pos, fan_in_, out_, s, g_out, out_, th, out_, T(0), g_in, fan_in_);
    if (!g_th.data) return;
    if (!g_th.per_example && pos == 1) {
      // All examples at once: dW_kk = s·Xᵀ·G[:, kk, :], the G rows strided by k.
      for (index_t kk = 0; kk < k; ++kk)
        gemm(true, false, fan_in_, out_, n, s, x, fan_in_, g_out + kk * out_, k * out_, T(1), g_th.row(0, kk, k), out_);
    } else {
      for (index_t i = 0; i < n; ++i)
        for (index_t kk = 0; kk < k; ++kk)
          gemm(true, false, fan_in_, out_, pos, s, x + i * pos * fan_in_, fan_in_, g_out + (i * k + kk) * pos * out_,
               out_, T(1), g_th.row(i, kk, k), out_);
    }
    if (!o_.b_std) return;
    const T c = b_scale<T>();
    for (index_t i = 0; i < n; ++i)
      for (index_t kk = 0; kk < k; ++kk) {
        T* db = g_th.row(i, kk, k) + fan_in_ * out_;
        const T* g = g_out + (i * k + kk) * pos * out_;
        for (index_t p = 0; p < pos; ++p)
          for (index_t o = 0; o < out_; ++o) db[o] += c * g[p * out_ + o];
      }
  }

  template <class T>
  void jvp_t(const T* th, const T* x, const T*, index_t n, index_t k, const T* t_in, const T* t_th,
             index_t stride, T* t_out) const {
    const T s = w_scale<T>();
    const index_t pos = positions();
    const index_t rows = n * k * pos;
    if (t_in)
      gemm(false, false, rows, out_, fan_in_, s, t_in, fan_in_, th, out_, T(0), t_out, out_);
    else
      std::fill(t_out, t_out + rows * out_, T(0));
    if (!t_th) return;
    for (index_t kk = 0; kk < k; ++kk) {
      const T* dW = t_th + kk * stride;
      if (pos == 1) {
        gemm(false, false, n, out_, fan_in_, s, x, fan_in_, dW, out_, T(1), t_out + kk * out_, k * out_);
      } else {
        for (index_t i = 0; i < n; ++i)
          gemm(false, false, pos, out_, fan_in_, s, x + i * pos * fan_in_, fan_in_, dW, out_, T(1),
               t_out + (i * k + kk) * pos * out_, out_);
      }
      if (o_.b_std)
        for (index_t i = 0; i < n; ++i) add_bias(dW + fan_in_ * out_, t_out + (i * k + kk) * pos * out_, pos);
    }
  }

  // Structured derivative (Novak et al. 2022): the contribution factorizes into an input Gram and
  // a cotangent Gram, Θ_l[(i,a),(j,b)] = (s²·x_i·x_j + c²)·(g_ia·g_jb), costing N²·in + N²K²·out
  // instead of N²K²·in·out, and needs nothing of a tile beyond x and g. On image-shaped inputs
  // (several positions) the positions couple, and the generic per-example route is used.
  template <class T>
  std::vector<T> ntk_side_t(const T* th, const T* x, const T* y, const T* g, index_t n, index_t k) const {
    if (positions() != 1) return LayerImpl<Dense>::ntk_side_t(th, x, y, g, n, k);
    return {};
  }

  template <class T>
  void ntk_block_t(const T* th, const T* x1, const T* g1, const std::vector<T>& s1, index_t n1, const T* x2,
                   const T* g2, const std::vector<T>& s2, index_t n2, index_t k, bool paired, T* block) const {
    if (positions() != 1) {
      LayerImpl<Dense>::ntk_block_t(th, x1, g1, s1, n1, x2, g2, s2, n2, k, paired, block);
      return;
    }
    const T s = w_scale<T>();
    const T c2 = o_.b_std ? b_scale<T>() * b_scale<T>() : T(0);
    std::vector<T> factor(static_cast<size_t>(n1 * n2));  // s²·x_i·x_j + c²
    gemm(false, true, n1, n2, fan_in_, s * s, x1, fan_in_, x2, fan_in_, T(0), factor.data(), n2);
    for (T& f : factor) f += c2;
    if (paired) {
      accumulate_paired(g1, n1, g2, n2, k, out_, factor.data(), block);
      return;
    }
    std::vector<T> gram(static_cast<size_t>(n1 * n2));
    for (index_t kk = 0; kk < k; ++kk) {
      gemm(false, true, n1, n2, out_, T(1), g1 + kk * out_, k * out_, g2 + kk * out_, k * out_, T(0), gram.data(), n2);
      T* dst = block + kk * n1 * n2;
      parallel_for(n1 * n2, [&](index_t begin, index_t end) {
        for (index_t e = begin; e < end; ++e) dst[e] += factor[size_t(e)] * gram[size_t(e)];
      });
    }
  }

  // Infinite width (REFERENCE.md section 4): Σ ← W_std²·Σ + b_std²; NTK param Θ ← Σ_new + W_std²·Θ,
  // standard param Θ ← fan_in·Σ_old + (1 if bias) + W_std²·Θ (the actual fan-in of this layer).
  // On image-shaped inputs Dense acts on the channels of each pixel, so the rule is the same for
  // every pixel pair.
  void kernel_rule(KernelState& s) const override {
    parallel_for(index_t(s.nngp.size()), [&](index_t begin, index_t end) {
      affine_kernel_rows(o_, double(fan_in_), end - begin, s.nngp.data() + begin,
                         s.want_ntk ? s.ntk.data() + begin : nullptr);
    });
  }
  // Dense acts on each pixel's channels, so its rule is pointwise over pixel pairs.
  bool kernel_has_offset_rule() const override { return true; }
  void kernel_offset_rule(OffsetBlockT<double>& b) const override { offset_rule(b); }
  void kernel_offset_rule(OffsetBlockT<float>& b) const override { offset_rule(b); }
  template <class T>
  void offset_rule(OffsetBlockT<T>& b) const {
    if (!b.empty()) affine_kernel_rows(o_, double(fan_in_), b.grid_h() * b.grid_w() * OffsetBlockT<T>::lanes, b.nngp, b.ntk);
  }
  bool kernel_output_gaussian(bool) const override { return true; }

  double forward_flops() const override { return double(in_size()) * double(out_); }
  double ntk_side_flops(index_t n, index_t k) const override {
    return positions() != 1 ? Layer::ntk_side_flops(n, k) : 0.0;
  }
  double ntk_side_elements(index_t n, index_t k) const override {
    return positions() != 1 ? Layer::ntk_side_elements(n, k) : 0.0;
  }
  double ntk_block_flops(index_t n1, index_t n2, index_t k, bool paired) const override {
    if (positions() != 1) return Layer::ntk_block_flops(n1, n2, k, paired);
    const double pairs = double(n1) * double(n2);
    return pairs * double(fan_in_) + pairs * (paired ? double(k) * double(k) : double(k)) * double(out_);
  }

 protected:
  Shape infer_shape(const Shape& in) override {
    if (in.empty()) throw InvalidArgument("Dense needs at least one input axis");
    fan_in_ = in.back();
    if (fan_in_ < 1) throw InvalidArgument("Dense input has an empty last axis " + shape_string(in));
    Shape out = in;
    out.back() = out_;
    return out;
  }

 private:
  index_t positions() const { return in_size() / fan_in_; }
  template <class T>
  T w_scale() const {
    return o_.parameterization == Parameterization::ntk ? T(o_.W_std / std::sqrt(double(fan_in_))) : T(1);
  }
  template <class T>
  T b_scale() const {
    return o_.parameterization == Parameterization::ntk ? T(*o_.b_std) : T(1);
  }
  template <class T>
  void add_bias(const T* b, T* y, index_t rows) const {
    const T c = b_scale<T>();
    for (index_t r = 0; r < rows; ++r)
      for (index_t o = 0; o < out_; ++o) y[r * out_ + o] += c * b[o];
  }

  index_t out_;
  AffineOptions o_;
  index_t fan_in_ = 0;
};

}  // namespace

std::unique_ptr<Layer> make_dense(const LayerSpec& spec, const NetworkDefaults& defaults) {
  ArgReader args(spec, {"out", "W_std", "b_std", "parameterization"});
  index_t out = args.get_int("out");
  return std::make_unique<Dense>(out, read_affine_options(args, defaults));
}

}  // namespace ntk::detail
