// Feature maps whose inner products approximate the infinite-width NTK of a ReLU network (Zandieh et al.,
// NeurIPS 2021), built from the operators of sketch.hpp.
//
// Kernel and scale: both maps approximate, in neural-tangents' convention, the NTK of
//     [Dense(k, W_std=√2, no bias), Relu] × L, Dense(k, no bias)      (NTK parameterization, k → ∞)
// which equals the arc-cosine NTK of the papers over the input dimension, Θᴸ(x, y)/d, with
// Θᴸ(x, y) = ‖x‖‖y‖·K_L(cos θ) (polyfit.hpp, REFERENCE.md section 4). Features F satisfy F·Fᵀ ≈ that
// kernel with no extra factor.
//
// Both are fixed random maps drawn at construction from (seed, their parameters): a row's features
// depend only on that row and the parameters, never on threads or on how rows are batched.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "ntk/array.hpp"
#include "ntk/empirical.hpp"
#include "ntk/network.hpp"
#include "ntk/sketch.hpp"

namespace ntk {

namespace detail {
class PolyCombiner;  // src/sketch_detail.hpp
}

struct NtkSketchParams {
  index_t input_dim = 0;
  index_t output_dim = 0;  // m, even
  int depth = 1;           // L ≥ 1 hidden ReLU layers
  int degree = 8;          // q: the degree of the polynomial fitted to K_L, a power of two
  index_t poly_dim = 0;    // width of the PolySketch tree; 0: m/4 rounded up to even (as the papers' code)
  std::uint64_t seed = 0;
  SketchTransform transform = SketchTransform::fourier;  // of every SRHT / TensorSRHT inside
};

// NTKSketch, the one-pass variant: K_L ≈ Σ_j c_j t^j (fit_polynomial: c_j ≥ 0, monotone, weighted toward
// t = 1), PolySketch of x/‖x‖ for every degree from one tree, features
//     ‖x‖/√d · SRHT_m([√c_0, √c_1·P_1(x̂), ..., √c_q·P_q(x̂)]),
// so E[F(x)·F(y)] = ‖x‖‖y‖·p(cos θ)/d: unbiased for the polynomial, whose fit error is the only bias.
class NtkSketch {
 public:
  explicit NtkSketch(const NtkSketchParams& p);
  // Bytes the map and one transform call on `threads` threads hold, at most (estimated before
  // constructing it, for memory budgets; the inputs and outputs are the caller's).
  static std::uint64_t memory_bytes(const NtkSketchParams& p, int threads);
  ~NtkSketch();
  NtkSketch(NtkSketch&&) noexcept;
  index_t input_dim() const { return d_; }
  index_t output_dim() const { return m_; }
  const std::vector<double>& coefficients() const { return coef_; }
  // x (n, input_dim) -> out (n, output_dim), row-major.
  void transform(const double* x, index_t n, double* out) const;

 private:
  index_t d_, m_, mp_;
  int q_;
  std::vector<double> coef_;
  PolySketch poly_;
  std::unique_ptr<detail::PolyCombiner> combine_;
};

struct NtkRandomFeaturesParams {
  index_t input_dim = 0;
  index_t output_dim = 0;  // m = m1 + ms
  int depth = 1;
  // The split of m: the matrix products cost (m0 + m1)·m1 per row and layer past the first. A smaller
  // m1 is much faster (m1 = m/4, m0 = m/2: 2.7x at m = 8192) but has more variance at depth 3 (README).
  index_t relu_dim = 0;    // m1, order-1 (NNGP) features per layer; 0: m/2
  index_t step_dim = 0;    // m0, order-0 (derivative) features per layer; 0: m1
  bool leverage = true;    // order-1 features by leverage-score sampling (lower variance)
  std::uint64_t seed = 0;
  // Of the TensorSRHTs: Hadamard, measured faster (25 against 32 s for 70,000 images at m = 8192) at
  // a small cost in error (README, sketches).
  SketchTransform transform = SketchTransform::hadamard;
  // The step features from the ReLU features' projections (ArcCosineFeatures::apply_pair; m0 = m1):
  // one matrix product per layer instead of two (1.56x less time at m = 8192), correlating the two
  // kinds; beyond the paper, and as accurate on Fashion-MNIST and in the tests (README, sketches).
  bool shared_projection = true;
};

// NTKRF (the paper's Algorithm 2): z⁰ = ψ⁰ = x; per layer h, φ̇ = ArcCos₀(zʰ⁻¹) (m0), zʰ = ArcCos₁(zʰ⁻¹)
// (m1), ψʰ = [zʰ, TensorSRHT(ψʰ⁻¹, φ̇)] (m1 + ms); features ψᴸ/√d. By default φ̇ and zʰ share their
// projections (shared_projection). ⟨zʰ, z'ʰ⟩ ≈ Σʰ and ⟨ψʰ, ψ'ʰ⟩ ≈
// Σʰ + Θʰ⁻¹·Σ̇ʰ = Θʰ; exact in expectation at depth 1, consistent (bias O(1/m1)) deeper.
class NtkRandomFeatures {
 public:
  explicit NtkRandomFeatures(const NtkRandomFeaturesParams& p);
  static std::uint64_t memory_bytes(const NtkRandomFeaturesParams& p, int threads);  // as NtkSketch's
  index_t input_dim() const { return d_; }
  index_t output_dim() const { return m1_ + ms_; }
  void transform(const double* x, index_t n, double* out) const;

 private:
  index_t d_, m1_, m0_, ms_;
  bool shared_;
  std::vector<ArcCosineFeatures> step_, relu_;  // step_ empty when shared
  std::vector<TensorSrht> mix_;
};

// How a gradient sketch projects a P-vector to m: an SRHT (complex Fourier, or real Hadamard) or a
// CountSketch; none forms a dense P × m matrix, and each is unbiased, E⟨Πg, Πg'⟩ = ⟨g, g'⟩.
enum class GradientProjection { srht, hadamard, countsketch };

struct GradientSketchParams {
  index_t output_dim = 0;  // m
  EntkMode mode{EntkMode::pntk};  // pntk, logit=k (one direction) or full (one per output)
  GradientProjection projection = GradientProjection::srht;
  std::uint64_t seed = 0;
};

// Features of an empirical kernel (beyond the papers): per-example gradients g(x) = J(x)ᵀc of the network
// at fixed parameters, c the mode's output direction (pntk: all ones / √O, logit=k: e_k; full: each e_a),
// projected to m by one random map Π. ⟨Πg(x), Πg(x')⟩ is unbiased for the pNTK / logit eNTK entry (for
// full, row (i, a) against (j, b) for eNTK[i, j, a, b]); memory linear in N, one backward pass per example
// and direction.
class GradientSketch {
 public:
  GradientSketch(const Network& net, std::vector<double> params, const GradientSketchParams& p);
  // As NtkSketch's; the Network and the caller's parameter vector not included.
  static std::uint64_t memory_bytes(const Network& net, const GradientSketchParams& p, int threads);
  index_t output_dim() const { return m_; }
  index_t directions() const { return directions_; }  // K: 1, or O for full
  // x (n, input shape...) -> out (n, K, m).
  void transform(const double* x, index_t n, double* out) const;

 private:
  const Network& net_;
  std::vector<double> theta_;
  index_t m_, directions_;
  EntkMode mode_;
  std::unique_ptr<Srht> srht_;
  std::unique_ptr<CountSketch> count_;
};

// CNTKSketch (Zandieh et al. 2021, Algorithm 3): features of images whose inner products approximate the
// infinite-width CNTK with global average pooling of, in neural-tangents' convention (NTK
// parameterization), the spec
//     [Conv(k, f, padding=SAME|VALID, W_std=√2, b_std=none), Relu] × L, GlobalAvgPool, Dense(k, b_std=none)
// (Arora et al.'s CNTK-GAP for f = 3, SAME; the released code's variant for VALID). Per pixel p and layer h:
//   v_h(p) = √(2/F)·[φ_{h−1}(p + δ)]_δ (F = f² taps, zeros outside; φ_0 = x/√C), so ⟨v_h(p), v_h(p')⟩ is the
//     layer's pre-activation covariance A_h(p, p') exactly, then sketched down to the sketch width (past
//     the first layer Σ_δ s_δ ∘ rotate(φ(p + δ), r_δ) with random signs and distinct random rotations per
//     tap: a CountSketch with no collisions within a tap; a plain CountSketch for a first layer);
//   a_h(p) = √A_h(p, p) from the exact diagonal recursion (no sketch);
//   φ_h(p) = a_h(p)/√2 · Poly_κ1(v_h(p)/a_h(p)),  φ̇_h(p) = Poly_κ0(v_h(p)/a_h(p))/√2 (PolySketch of one tree,
//     two sets of fitted coefficients), so ⟨φ_h, φ_h'⟩ ≈ the post-ReLU NNGP and ⟨φ̇_h, φ̇_h'⟩ ≈ κ0(ρ)/2;
//   t_h(p) = [v_h(p), √(2/F)·[τ_{h−1}(p + δ)]_δ] (t_1 = v_1): ⟨t, t'⟩ ≈ the pre-activation NTK;
//   τ_h(p) = TensorSRHT(t_h(p), φ̇_h(p)): ⟨τ, τ'⟩ ≈ the post-ReLU NTK;
// features [mean_p φ_L(p), mean_p τ_L(p)]. Consistent (the error falls as the widths grow), not unbiased: the
// polynomial sketches act on sketched inputs. Cost per image linear in the pixels, O(L·D·m log m); images
// run in parallel, one per thread.
// A 1 × 1 image of C = d channels with 1 × 1 filters is the dense network of NtkSketch's kernel, and this
// is then the paper's layer-wise NTKSketch (Algorithm 1), with per-layer fit intervals [α_l, 1].
struct CntkSketchParams {
  index_t height = 0, width = 0, channels = 0;
  index_t output_dim = 0;  // m: m/2 for the NNGP part, m/2 for the NTK part
  int depth = 3;           // L
  int filter = 3;          // f
  bool same = true;        // SAME (zero padding, TensorFlow's split) or VALID
  int degree = 4;          // q of the κ0 / κ1 polynomials, a power of two
  index_t poly_dim = 0;    // PolySketch width; 0: m/4
  std::uint64_t seed = 0;
  SketchTransform transform = SketchTransform::fourier;
};

class CntkSketch {
 public:
  explicit CntkSketch(const CntkSketchParams& p);
  static std::uint64_t memory_bytes(const CntkSketchParams& p, int threads);  // as NtkSketch's
  ~CntkSketch();
  index_t output_dim() const;
  // x (n, H, W, C) NHWC -> out (n, output_dim).
  void transform(const double* x, index_t n, double* out) const;

 private:
  struct Layer;
  class TapSketch;
  struct Workspace;
  CntkSketchParams p_;
  index_t half_, sketch_dim_, poly_dim_;
  std::vector<std::vector<double>> kappa1_, kappa0_;  // fitted coefficients per layer
  std::vector<std::unique_ptr<Layer>> layers_;
  void image(const double* x, double* out, Workspace& ws) const;
};

}  // namespace ntk
