// The layer interface: everything about one layer lives behind it (shape rule, parameters and
// their initialization, forward, VJP, JVP), in float32 and float64.
//
// Batched layout. Activations are (n, size) row-major, one row per example. Tangents and
// cotangents carry k directions per example, laid out (n, k, size): direction kk of example i is
// row i*k + kk. This is the layout of O output cotangents for a batch, which is what Jacobian
// contraction and structured derivatives need.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ntk/array.hpp"
#include "ntk/spec.hpp"

namespace ntk {

enum class Parameterization { ntk, standard };
Parameterization parse_parameterization(const std::string& s);  // "ntk" | "standard"
const char* to_string(Parameterization p);

// Network-wide defaults for W_std, b_std and parameterization; a layer's own argument wins.
struct NetworkDefaults {
  double W_std = 1.0;
  std::optional<double> b_std;  // nullopt: no bias
  Parameterization parameterization = Parameterization::ntk;
};

// One parameter tensor of a layer. Values are drawn N(init_mean, init_std^2); under NTK parameterization
// init_std is 1 and the layer scales in forward, under standard parameterization it is the scale.
struct ParamSpec {
  std::string name;  // "W" or "b"
  Shape shape;
  double init_std = 1.0;
  // Drawn init_mean + init_std·N(0, 1): constants when init_std is 0 (BatchNorm's γ = 1).
  double init_mean = 0.0;
  // Frozen parameters (BatchNorm's running statistics) are stored and read like the others but have
  // no derivative: the layer writes no cotangent for them and ignores their tangents, so the eNTK,
  // whatever its method, is over the trainable parameters only.
  bool trainable = true;
};

// Where a VJP accumulates parameter cotangents. Row r starts at data + r*stride, where r = kk
// (summed over examples) or r = i*k + kk (per example, i.e. Jacobian rows). data points at this
// layer's slice of the row, so stride is the length of a whole parameter row.
template <class T>
struct ParamCotangent {
  T* data = nullptr;  // nullptr: parameter cotangents are not needed
  index_t stride = 0;
  bool per_example = false;
  T* row(index_t example, index_t direction, index_t k) const {
    return data + (per_example ? example * k + direction : direction) * stride;
  }
};

// Infinite-width kernel state of a batch of pairs (x, x') (neural-tangents conventions,
// REFERENCE.md section 4), always in float64. Each pair carries its NNGP Σ and NTK Θ over pixel
// pairs: for image-shaped activations (h, w, C) the full covariance Σ(p, p') (p of x, p' of x',
// P² entries, row-major in p), or only p = p' (P entries) when no pooling needs the rest
// (`diagonal`); vectors have one entry (h = w = 1). var1 / var2 hold, per pair and pixel, the
// variances Σ(x, x)(p, p) and Σ(x', x')(p', p') at the layer's input; the driver fills them before
// every rule (from a pass over the pairs (x, x)), so rules only read them.
struct KernelState {
  index_t pairs = 0;
  index_t h = 1, w = 1;
  bool diagonal = false;
  std::vector<double> nngp, ntk;   // pairs × entries()
  std::vector<double> var1, var2;  // pairs × pixels()
  bool want_ntk = true;            // false: ntk is left alone (empty)
  index_t pixels() const { return h * w; }
  index_t entries() const { return diagonal ? pixels() : pixels() * pixels(); }
  // The variances of entry e of pair q.
  double v1(index_t q, index_t e) const { return var1[size_t(q * pixels() + (diagonal ? e : e / pixels()))]; }
  double v2(index_t q, index_t e) const { return var2[size_t(q * pixels() + (diagonal ? e : e % pixels()))]; }
};

// The kernel of `lanes` pairs at one pixel offset d = p' − p, for the offset path of the
// infinite-width driver. Stride-1 convolutions shift both pixels of a pair by the same tap and
// pointwise rules act entry by entry, so the entries Σ(p, p + d) of one offset d only ever mix
// among themselves: a pair's P² entries split into independent grids, one per offset, each small
// enough to stay in cache through the whole network. Grid cell (gy, gx) is pixel
// (gy + max(0, −dy), gx + max(0, −dx)) of x and that pixel + d of x'; values are stored
// [gy][gx][lane], so every rule runs over runs of grid_w()·lanes contiguous values. T is float64,
// or float32 when float32 kernels are asked for (twice the lanes per SIMD register).
template <class T>
struct OffsetBlockT {
  static constexpr index_t lanes = 64 / sizeof(T);  // one AVX-512 register
  index_t h = 1, w = 1;    // image extent at this point of the network
  index_t dy = 0, dx = 0;  // the offset d
  T* nngp = nullptr;       // grid_h() × grid_w() × lanes
  T* ntk = nullptr;        // the same, or null for the NNGP only
  // Per pixel of x and of x' (h·w × lanes), at the layer's input: the variances Σ(x, x)(p, p), their
  // square roots and inverse square roots (0 where the variance is 0); set by the driver before
  // rules that read them.
  const T *var1 = nullptr, *var2 = nullptr, *sd1 = nullptr, *sd2 = nullptr, *isd1 = nullptr, *isd2 = nullptr;
  std::vector<T>* scratch = nullptr;  // work space a rule may resize
  index_t grid_h() const { return h - (dy < 0 ? -dy : dy); }
  index_t grid_w() const { return w - (dx < 0 ? -dx : dx); }
  bool empty() const { return grid_h() <= 0 || grid_w() <= 0; }
  // First pixel of grid row gy in x and in x'.
  index_t pixel1(index_t gy) const { return (gy + (dy < 0 ? -dy : 0)) * w + (dx < 0 ? -dx : 0); }
  index_t pixel2(index_t gy) const { return (gy + (dy > 0 ? dy : 0)) * w + (dx > 0 ? dx : 0); }
};
using OffsetBlock = OffsetBlockT<double>;

// How a readout layer turns the pixel-pair kernel into a vector kernel: GlobalAvgPool takes the
// mean over all pixel pairs, Flatten the mean over the diagonal p = p'.
enum class PixelReadout { none, all_pairs, diagonal };

class Layer {
 public:
  virtual ~Layer() = default;

  virtual std::string name() const = 0;
  // The layer with every argument spelled out, e.g. "Dense(512, W_std=1, b_std=none, parameterization=ntk)".
  virtual std::string describe() const = 0;

  // Fixes the per-example input shape; throws InvalidArgument if the layer cannot take it.
  void build(const Shape& in_shape);
  const Shape& in_shape() const { return in_shape_; }
  const Shape& out_shape() const { return out_shape_; }
  index_t in_size() const { return in_size_; }
  index_t out_size() const { return out_size_; }

  // Parameter tensors, valid after build; stored contiguously in this order.
  virtual std::vector<ParamSpec> param_specs() const { return {}; }
  index_t num_params() const;

  // y (n, out) = f(theta, x (n, in)).
  virtual void forward(const float* theta, const float* x, float* y, index_t n) const = 0;
  virtual void forward(const double* theta, const double* x, double* y, index_t n) const = 0;

  // Reverse mode at (theta, x) with y = forward(theta, x): g_in (n, k, in) = J_xᵀ g_out, written
  // (skipped if g_in is null); parameter cotangents J_thetaᵀ g_out accumulated into g_theta.
  virtual void vjp(const float* theta, const float* x, const float* y, index_t n, index_t k,
                   const float* g_out, float* g_in, ParamCotangent<float> g_theta) const = 0;
  virtual void vjp(const double* theta, const double* x, const double* y, index_t n, index_t k,
                   const double* g_out, double* g_in, ParamCotangent<double> g_theta) const = 0;

  // Forward mode: t_out (n, k, out) = J_x t_in + J_theta t_theta[kk], written. t_in (n, k, in)
  // may be null (zero input tangent); t_theta row kk starts at t_theta + kk*t_theta_stride and
  // may be null (zero parameter tangent).
  virtual void jvp(const float* theta, const float* x, const float* y, index_t n, index_t k,
                   const float* t_in, const float* t_theta, index_t t_theta_stride, float* t_out) const = 0;
  virtual void jvp(const double* theta, const double* x, const double* y, index_t n, index_t k,
                   const double* t_in, const double* t_theta, index_t t_theta_stride, double* t_out) const = 0;

  // Structured derivatives (Novak et al. 2022), in two steps so that a tile's share is computed once
  // and reused for every tile it is paired with. ntk_side: what the layer needs of one tile beyond
  // its inputs x, outputs y and output cotangents g (n, k, out); by default the per-example
  // parameter gradients (n·k × P). ntk_block: adds Σ_θ∈layer (J_θ(x1_i)ᵀ g1_ia)·(J_θ(x2_j)ᵀ g2_jb)
  // to the block: paired, (n1·k) × (n2·k) over all (a, b); otherwise k matched blocks n1 × n2.
  // Layers with cheaper Gram forms override both.
  virtual std::vector<float> ntk_side(const float* theta, const float* x, const float* y, const float* g, index_t n,
                                      index_t k) const = 0;
  virtual std::vector<double> ntk_side(const double* theta, const double* x, const double* y, const double* g,
                                       index_t n, index_t k) const = 0;
  virtual void ntk_block(const float* theta, const float* x1, const float* g1, const std::vector<float>& side1,
                         index_t n1, const float* x2, const float* g2, const std::vector<float>& side2, index_t n2,
                         index_t k, bool paired, float* block) const = 0;
  virtual void ntk_block(const double* theta, const double* x1, const double* g1, const std::vector<double>& side1,
                         index_t n1, const double* x2, const double* g2, const std::vector<double>& side2, index_t n2,
                         index_t k, bool paired, double* block) const = 0;
  // Cost model: multiply-adds of ntk_side for n examples and of ntk_block for n1 × n2, and the
  // elements a side holds.
  // The generic side repeats work the network's backward pass has done (im2col, reading the
  // cotangents), so it is charged 1.5 parameter-gradient passes: measured on the peer's CNN, JC's
  // fused pass is ~1.2x faster than sd's generic route, and auto should then choose JC.
  virtual double ntk_side_flops(index_t n, index_t k) const { return 1.5 * double(n) * double(k) * forward_flops(); }
  virtual double ntk_block_flops(index_t n1, index_t n2, index_t k, bool paired) const {
    return double(n1) * double(n2) * double(k) * (paired ? double(k) : 1.0) * double(num_params());
  }
  virtual double ntk_side_elements(index_t n, index_t k) const { return double(n) * double(k) * double(num_params()); }
  // Multiply-adds of the forward pass per example (for the cost model); elementwise layers count
  // one per output.
  virtual double forward_flops() const { return double(out_size()); }

  // Channel structure, which lets structured derivatives factor cotangents (see empirical.cpp):
  // channelwise: no parameters, the last axis is the channel and output channel c depends only on
  // input channel c (activations, pooling), so the VJP commutes with scaling the channels.
  virtual bool channelwise() const { return false; }
  // output_channel_params: the last axis of the output and of every parameter tensor is the output
  // channel, and output channel c depends only on the parameters at c (Conv), so scaling the output
  // cotangent's channels scales the parameter gradient's last axis the same way.
  virtual bool output_channel_params() const { return false; }
  // Input cotangents (n, k, in) for factored output cotangents G_ia = M_i ⊙ (1 u_iaᵀ), M (n, out)
  // and u (n, k, C) over the output channels, without forming every direction's G: structured
  // derivatives pass the factored chain's cotangents on to the layers before it this way, where
  // has_vjp_factored (otherwise they form G and run vjp).
  virtual bool has_vjp_factored() const { return false; }
  virtual void vjp_factored(const float* theta, const float* mask, const float* u, index_t n, index_t k,
                            float* g_in) const;
  virtual void vjp_factored(const double* theta, const double* mask, const double* u, index_t n, index_t k,
                            double* g_in) const;

  // The layer's infinite-width kernel rule: maps the kernel state of its inputs to that of its
  // outputs, in place; the default throws NotSupported naming the layer. Rules that hold only for
  // Gaussian inputs (nonlinearities, LayerNorm) say so, and which layers output Gaussians (random
  // affine layers, and linear maps of Gaussians), so a network without an exact kernel is refused.
  virtual void kernel_rule(KernelState& s) const;
  virtual bool kernel_needs_gaussian_input() const { return false; }
  virtual bool kernel_output_gaussian(bool input_gaussian) const { return input_gaussian; }
  // Pooling mixes pixel pairs p ≠ p', so the full spatial covariance must be kept before it.
  virtual bool kernel_needs_full_covariance() const { return false; }
  // The offset path (OffsetBlock): layers whose rule maps each offset's grid to itself (stride-1
  // convolutions, pointwise rules) implement it; the driver takes the path only when every layer
  // before the readout does. The default is an internal error (NTK_ASSERT in src/check.hpp).
  virtual bool kernel_has_offset_rule() const { return false; }
  virtual void kernel_offset_rule(OffsetBlockT<double>& b) const;
  virtual void kernel_offset_rule(OffsetBlockT<float>& b) const;
  virtual PixelReadout kernel_pixel_readout() const { return PixelReadout::none; }
  // Readouts end the offset path: b holds the readout's input at one offset; its grid's sum is added
  // to each lane's accumulators (`lanes` of them), which end scaled by kernel_offset_readout_scale.
  virtual void kernel_offset_readout(const OffsetBlockT<double>& b, double* nngp, double* ntk) const;
  virtual void kernel_offset_readout(const OffsetBlockT<float>& b, double* nngp, double* ntk) const;
  virtual double kernel_offset_readout_scale() const;

 protected:
  // Returns the output shape for in_shape and records what the layer derives from it (fan-in...).
  virtual Shape infer_shape(const Shape& in_shape) = 0;

 private:
  Shape in_shape_, out_shape_;
  index_t in_size_ = 0, out_size_ = 0;
};

// Layout of eNTK blocks between tiles of n1 and n2 examples with k output directions: paired
// blocks are (n1, n2, k, k), the output layout of full mode, so a tile row lands in the kernel as
// one contiguous copy; matched blocks are k planes of n1 × n2.
//
// block += rows1 · rows2ᵀ for per-example rows (n·k × P). Shared by the generic structured
// derivative and Jacobian contraction.
void contract_rows(const float* rows1, index_t n1, const float* rows2, index_t n2, index_t k, index_t P, bool paired,
                   float* block);
void contract_rows(const double* rows1, index_t n1, const double* rows2, index_t n2, index_t k, index_t P, bool paired,
                   double* block);

// Paired blocks from two factors: block[i, j, a, b] += w_ij · (u_ia · v_jb), where u is (n1·k × d)
// and v is (n2·k × d) row-major and w (n1 × n2) is optional (null: 1). Runs as GEMMs over chunks of
// rows of u, each followed by a threaded reordering into the block, so no (n1·k) × (n2·k)
// temporary is formed. If u and v are the same pointer and n1 == n2 (a symmetric diagonal tile),
// w must be symmetric, and only about half of the products are computed (SYRK-style).
void accumulate_paired(const float* u, index_t n1, const float* v, index_t n2, index_t k, index_t d, const float* w,
                       float* block);
void accumulate_paired(const double* u, index_t n1, const double* v, index_t n2, index_t k, index_t d, const double* w,
                       double* block);

// Implements the float and double virtuals of Layer by forwarding to the derived class's member
// templates forward_t, vjp_t and jvp_t, so each layer writes its math once.
template <class Derived>
class LayerImpl : public Layer {
 public:
  void forward(const float* th, const float* x, float* y, index_t n) const override { self().forward_t(th, x, y, n); }
  void forward(const double* th, const double* x, double* y, index_t n) const override { self().forward_t(th, x, y, n); }
  void vjp(const float* th, const float* x, const float* y, index_t n, index_t k, const float* g_out, float* g_in,
           ParamCotangent<float> g_th) const override {
    self().vjp_t(th, x, y, n, k, g_out, g_in, g_th);
  }
  void vjp(const double* th, const double* x, const double* y, index_t n, index_t k, const double* g_out,
           double* g_in, ParamCotangent<double> g_th) const override {
    self().vjp_t(th, x, y, n, k, g_out, g_in, g_th);
  }
  void jvp(const float* th, const float* x, const float* y, index_t n, index_t k, const float* t_in,
           const float* t_th, index_t stride, float* t_out) const override {
    self().jvp_t(th, x, y, n, k, t_in, t_th, stride, t_out);
  }
  void jvp(const double* th, const double* x, const double* y, index_t n, index_t k, const double* t_in,
           const double* t_th, index_t stride, double* t_out) const override {
    self().jvp_t(th, x, y, n, k, t_in, t_th, stride, t_out);
  }
  std::vector<float> ntk_side(const float* th, const float* x, const float* y, const float* g, index_t n,
                              index_t k) const override {
    return self().ntk_side_t(th, x, y, g, n, k);
  }
  std::vector<double> ntk_side(const double* th, const double* x, const double* y, const double* g, index_t n,
                               index_t k) const override {
    return self().ntk_side_t(th, x, y, g, n, k);
  }
  void ntk_block(const float* th, const float* x1, const float* g1, const std::vector<float>& s1, index_t n1,
                 const float* x2, const float* g2, const std::vector<float>& s2, index_t n2, index_t k, bool paired,
                 float* block) const override {
    self().ntk_block_t(th, x1, g1, s1, n1, x2, g2, s2, n2, k, paired, block);
  }
  void ntk_block(const double* th, const double* x1, const double* g1, const std::vector<double>& s1, index_t n1,
                 const double* x2, const double* g2, const std::vector<double>& s2, index_t n2, index_t k, bool paired,
                 double* block) const override {
    self().ntk_block_t(th, x1, g1, s1, n1, x2, g2, s2, n2, k, paired, block);
  }

  // Generic structured derivative: per-example parameter gradients of this layer alone (JC
  // restricted to one layer), contracted by GEMM. Derived layers may hide these with cheaper forms.
  template <class T>
  std::vector<T> ntk_side_t(const T* th, const T* x, const T* y, const T* g, index_t n, index_t k) const {
    const index_t P = num_params();
    std::vector<T> rows(static_cast<size_t>(n * k * P), T(0));
    if (P > 0) this->vjp(th, x, y, n, k, g, static_cast<T*>(nullptr), ParamCotangent<T>{rows.data(), P, true});
    return rows;
  }
  template <class T>
  void ntk_block_t(const T*, const T*, const T*, const std::vector<T>& s1, index_t n1, const T*, const T*,
                   const std::vector<T>& s2, index_t n2, index_t k, bool paired, T* block) const {
    if (num_params() > 0) contract_rows(s1.data(), n1, s2.data(), n2, k, num_params(), paired, block);
  }

 private:
  const Derived& self() const { return static_cast<const Derived&>(*this); }
};

// A node that joins the outputs of two branches into one, behind the same passes as layers: forward,
// VJP, JVP, the infinite-width kernel rule and the offset path. Residual compiles to its branches'
// layer steps and one such node (its sum). Sizes count the values of a whole batch; an `out` may
// alias `a`.
class Combinator {
 public:
  virtual ~Combinator() = default;
  virtual std::string name() const = 0;
  virtual void forward(const float* a, const float* b, float* out, index_t size) const = 0;
  virtual void forward(const double* a, const double* b, double* out, index_t size) const = 0;
  // The cotangents of the two inputs from the output's g (n, k, size).
  virtual void vjp(const float* g, float* g_a, float* g_b, index_t size) const = 0;
  virtual void vjp(const double* g, double* g_a, double* g_b, index_t size) const = 0;
  // The output's tangent from the inputs' (null: zero); returns false, writing nothing, when both
  // are zero.
  virtual bool jvp(const float* t_a, const float* t_b, float* t_out, index_t size) const = 0;
  virtual bool jvp(const double* t_a, const double* t_b, double* t_out, index_t size) const = 0;
  // Infinite width: the kernel state of the output from the branches' (a is updated in place).
  virtual void kernel_rule(KernelState& a, const KernelState& b) const = 0;
  // Whether that rule is exact, given which branches end in a zero-mean random layer of their own
  // (so that they are independent of each other given their input); if not, why.
  virtual std::string kernel_refusal(bool a_fresh, bool b_fresh) const = 0;
  // The offset path: a grid of `cells` values per branch, a updated in place.
  virtual void kernel_offset_rule(float* a, const float* b, index_t cells) const = 0;
  virtual void kernel_offset_rule(double* a, const double* b, index_t cells) const = 0;
};

// Residual's join: block(x) + shortcut(x) (src/layers/residual.cpp).
std::unique_ptr<Combinator> make_residual_sum();

// Builds a layer from its parsed spec (not Residual, which the Network handles). Throws
// ParseError for unknown layers or bad arguments, naming the token and position.
std::unique_ptr<Layer> make_layer(const LayerSpec& spec, const NetworkDefaults& defaults);
// Names make_layer accepts, plus "Residual".
std::vector<std::string> layer_names();

}  // namespace ntk
