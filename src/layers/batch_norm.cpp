// BatchNorm in inference mode, as a trained PyTorch network runs it: per channel (the last axis),
// y = γ·(x − μ)/√(σ² + eps) + β with the running statistics μ and σ² fixed. γ and β are trainable
// parameters and enter the eNTK; μ and σ² are frozen parameters: stored and read with the others
// ('<path>.mean', '<path>.var'), but without derivative (the VJP writes no cotangent for them, the
// JVP ignores their tangents), so every eNTK method leaves them out. Initialized as PyTorch does:
// γ = 1, β = 0, μ = 0, σ² = 1 (the identity). No infinite-width rule with fixed statistics.
#include <cmath>

#include "layers.hpp"
#include "ntk/error.hpp"
#include "ntk/parallel.hpp"

namespace ntk::detail {
namespace {

class BatchNorm final : public LayerImpl<BatchNorm> {
 public:
  explicit BatchNorm(double eps) : eps_(eps) {}
  std::string name() const override { return "BatchNorm"; }
  std::string describe() const override { return "BatchNorm(eps=" + format_number(eps_) + ")"; }
  std::vector<ParamSpec> param_specs() const override {
    // name, shape, init_std, init_mean, trainable
    return {{"gamma", {c_}, 0.0, 1.0, true},
            {"beta", {c_}, 0.0, 0.0, true},
            {"mean", {c_}, 0.0, 0.0, false},
            {"var", {c_}, 0.0, 1.0, false}};
  }
  bool output_channel_params() const override { return true; }
  double forward_flops() const override { return 2.0 * double(out_size()); }

  void kernel_rule(KernelState&) const override {
    throw NotSupported("infinite-width kernels: " + describe() +
                       " has no exact kernel with fixed statistics; use the empirical NTK (ntk entk) of this network");
  }

  template <class T>
  void forward_t(const T* theta, const T* x, T* y, index_t n) const {
    const Affine<T> a = affine(theta);
    const index_t rows = n * in_size() / c_;
    parallel_for(rows, [&](index_t begin, index_t end) {
      for (index_t r = begin; r < end; ++r)
        for (index_t c = 0; c < c_; ++c) y[r * c_ + c] = a.scale[size_t(c)] * x[r * c_ + c] + a.shift[size_t(c)];
    });
  }

  // g_in = g_out·s per channel; γ's cotangent Σ g_out·x̂, β's Σ g_out, over the positions of each
  // example (per_example) or of all examples.
  template <class T>
  void vjp_t(const T* theta, const T* x, const T*, index_t n, index_t k, const T* g_out, T* g_in,
             ParamCotangent<T> g_theta) const {
    const Affine<T> a = affine(theta);
    const index_t pos = in_size() / c_;
    for (index_t i = 0; i < n; ++i)
      for (index_t kk = 0; kk < k; ++kk) {
        const T* g = g_out + (i * k + kk) * out_size();
        if (g_in) {
          T* gi = g_in + (i * k + kk) * in_size();
          for (index_t p = 0; p < pos; ++p)
            for (index_t c = 0; c < c_; ++c) gi[p * c_ + c] = a.scale[size_t(c)] * g[p * c_ + c];
        }
        if (g_theta.data) {
          T* row = g_theta.row(i, kk, k);  // [γ, β, μ, σ²]: μ and σ² get nothing
          const T* xi = x + i * in_size();
          for (index_t p = 0; p < pos; ++p)
            for (index_t c = 0; c < c_; ++c) {
              row[c] += g[p * c_ + c] * normalized(a, xi[p * c_ + c], c);
              row[c_ + c] += g[p * c_ + c];
            }
        }
      }
  }

  // t_out = s·t_in + x̂·t_γ + t_β; tangents of μ and σ² are ignored (frozen).
  template <class T>
  void jvp_t(const T* theta, const T* x, const T*, index_t n, index_t k, const T* t_in, const T* t_theta,
             index_t t_theta_stride, T* t_out) const {
    const Affine<T> a = affine(theta);
    const index_t pos = in_size() / c_;
    for (index_t i = 0; i < n; ++i)
      for (index_t kk = 0; kk < k; ++kk) {
        T* o = t_out + (i * k + kk) * out_size();
        const T* t = t_in ? t_in + (i * k + kk) * in_size() : nullptr;
        const T* tt = t_theta ? t_theta + kk * t_theta_stride : nullptr;
        const T* xi = x + i * in_size();
        for (index_t p = 0; p < pos; ++p)
          for (index_t c = 0; c < c_; ++c) {
            T v = t ? a.scale[size_t(c)] * t[p * c_ + c] : T(0);
            if (tt) v += tt[c] * normalized(a, xi[p * c_ + c], c) + tt[c_ + c];
            o[p * c_ + c] = v;
          }
      }
  }

 protected:
  Shape infer_shape(const Shape& in) override {
    if (in.empty() || in.back() < 1) throw InvalidArgument("BatchNorm needs a non-empty channel axis, got " + shape_string(in));
    c_ = in.back();
    return in;
  }

 private:
  // Per channel: y = scale·x + shift, and 1/√(σ² + eps) and μ for x̂ = (x − μ)/√(σ² + eps).
  template <class T>
  struct Affine {
    std::vector<T> scale, shift, inv_std, mean;
  };

  template <class T>
  Affine<T> affine(const T* theta) const {
    const T *gamma = theta, *beta = theta + c_, *mean = theta + 2 * c_, *var = theta + 3 * c_;
    Affine<T> a;
    a.scale.resize(size_t(c_)), a.shift.resize(size_t(c_)), a.inv_std.resize(size_t(c_)), a.mean.resize(size_t(c_));
    for (index_t c = 0; c < c_; ++c) {
      if (!(double(var[c]) >= 0) || !(double(var[c]) + eps_ > 0))
        throw InvalidArgument(describe() + ": the running variance of channel " + std::to_string(c) + " is " +
                              format_number(double(var[c])) + "; it must be >= 0 (with eps > 0 if it is 0)");
      const double inv = 1.0 / std::sqrt(double(var[c]) + eps_);
      a.inv_std[size_t(c)] = T(inv);
      a.mean[size_t(c)] = mean[c];
      a.scale[size_t(c)] = T(double(gamma[c]) * inv);
      a.shift[size_t(c)] = T(double(beta[c]) - double(gamma[c]) * double(mean[c]) * inv);
    }
    return a;
  }

  template <class T>
  static T normalized(const Affine<T>& a, T x, index_t c) {
    return (x - a.mean[size_t(c)]) * a.inv_std[size_t(c)];
  }

  double eps_;
  index_t c_ = 0;
};

}  // namespace

std::unique_ptr<Layer> make_batch_norm(const LayerSpec& spec) {
  ArgReader args(spec, {"eps"});
  double eps = args.get_double("eps", 1e-5);
  if (!(eps >= 0)) throw ParseError("spec: BatchNorm at position " + std::to_string(spec.pos) + ": eps must be >= 0");
  return std::make_unique<BatchNorm>(eps);
}

}  // namespace ntk::detail
