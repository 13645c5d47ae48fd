// LayerNorm over the channel (last) axis without learned scale or shift, as neural-tangents'
// stax.LayerNorm: y = (x − mean(x)) / √(var(x) + eps) at every position.
#include <cmath>

#include "layers.hpp"
#include "ntk/error.hpp"
#include "ntk/parallel.hpp"

namespace ntk::detail {
namespace {

class LayerNorm final : public LayerImpl<LayerNorm> {
 public:
  explicit LayerNorm(double eps) : eps_(eps) {}
  std::string name() const override { return "LayerNorm"; }
  std::string describe() const override { return "LayerNorm(eps=" + format_number(eps_) + ")"; }

  // Infinite width: the input is a zero-mean Gaussian process, so its mean over channels vanishes
  // and its variance over channels is Σ(x, x)(p, p): Σ(p, p') and Θ(p, p') are divided by
  // √(Σ(x, x)(p, p)·Σ(x', x')(p', p')) (eps is negligible against them and ignored).
  void kernel_rule(KernelState& s) const override {
    const index_t per_pair = s.entries();
    parallel_for(s.pairs * per_pair, [&](index_t begin, index_t end) {
      for (index_t e = begin; e < end; ++e) {
        const index_t q = e / per_pair, entry = e % per_pair;
        const double prod = s.v1(q, entry) * s.v2(q, entry);
        const double inv = prod > 0 ? 1.0 / std::sqrt(prod) : 0.0;
        s.nngp[size_t(e)] *= inv;
        if (s.want_ntk) s.ntk[size_t(e)] *= inv;
      }
    });
  }
  bool kernel_needs_gaussian_input() const override { return true; }

  template <class T>
  void forward_t(const T*, const T* x, T* y, index_t n) const {
    const index_t rows = n * in_size() / c_;
    for (index_t r = 0; r < rows; ++r) {
      const T* xr = x + r * c_;
      T mean, inv_sigma;
      moments(xr, mean, inv_sigma);
      for (index_t j = 0; j < c_; ++j) y[r * c_ + j] = (xr[j] - mean) * inv_sigma;
    }
  }

  // The Jacobian at each position is (I − 11ᵀ/C − y yᵀ/C)/σ: symmetric, so VJP and JVP are the
  // same map applied to the k rows of each example.
  template <class T>
  void apply_jacobian(const T* x, const T* y, index_t n, index_t k, const T* in, T* out) const {
    const index_t pos = in_size() / c_;
    for (index_t i = 0; i < n; ++i)
      for (index_t p = 0; p < pos; ++p) {
        const T* xr = x + (i * pos + p) * c_;
        const T* yr = y + (i * pos + p) * c_;
        T mean, inv_sigma;
        moments(xr, mean, inv_sigma);
        for (index_t kk = 0; kk < k; ++kk) {
          const T* v = in + ((i * k + kk) * pos + p) * c_;
          T* o = out + ((i * k + kk) * pos + p) * c_;
          T mean_v = 0, mean_yv = 0;
          for (index_t j = 0; j < c_; ++j) {
            mean_v += v[j];
            mean_yv += yr[j] * v[j];
          }
          mean_v /= T(c_);
          mean_yv /= T(c_);
          for (index_t j = 0; j < c_; ++j) o[j] = (v[j] - mean_v - yr[j] * mean_yv) * inv_sigma;
        }
      }
  }

  template <class T>
  void vjp_t(const T*, const T* x, const T* y, index_t n, index_t k, const T* g_out, T* g_in, ParamCotangent<T>) const {
    if (g_in) apply_jacobian(x, y, n, k, g_out, g_in);
  }
  template <class T>
  void jvp_t(const T*, const T* x, const T* y, index_t n, index_t k, const T* t_in, const T*, index_t, T* t_out) const {
    if (t_in)
      apply_jacobian(x, y, n, k, t_in, t_out);
    else
      std::fill(t_out, t_out + n * k * out_size(), T(0));
  }

 protected:
  Shape infer_shape(const Shape& in) override {
    if (in.empty() || in.back() < 1) throw InvalidArgument("LayerNorm needs a non-empty channel axis, got " + shape_string(in));
    c_ = in.back();
    return in;
  }

 private:
  // Mean and 1/σ of one position, accumulated in double so float32 keeps its accuracy for wide C.
  template <class T>
  void moments(const T* x, T& mean, T& inv_sigma) const {
    double m = 0, v = 0;
    for (index_t j = 0; j < c_; ++j) m += x[j];
    m /= double(c_);
    for (index_t j = 0; j < c_; ++j) v += (x[j] - m) * (x[j] - m);
    v /= double(c_);
    mean = T(m);
    inv_sigma = T(1.0 / std::sqrt(v + eps_));
  }

  double eps_;
  index_t c_ = 0;
};

}  // namespace

std::unique_ptr<Layer> make_layer_norm(const LayerSpec& spec) {
  ArgReader args(spec, {"eps"});
  double eps = args.get_double("eps", 1e-12);
  if (eps < 0) throw ParseError("spec: LayerNorm at position " + std::to_string(spec.pos) + ": eps must be >= 0");
  return std::make_unique<LayerNorm>(eps);
}

}  // namespace ntk::detail
