// Sketch operators and random features over row batches: X (n, d) row-major float64 -> (n, m).
//
// Each operator is a fixed random linear (or, for the random features, non-linear) map drawn from
// the counter-based generator of rng.hpp under (seed, a purpose string of the operator, index): its
// random choices are made once, at construction, so `apply` is pure and a row's output depends only
// on the parameters and that row -- never on the thread count or on how rows are split into batches.
// `index` tells apart operators under one seed (e.g. the layers of NTKSketch).
//
// Expectations (over the seed) of the sketched inner products, all unbiased:
//   Srht, CountSketch:          E⟨S(x), S(y)⟩ = ⟨x, y⟩
//   TensorSrht, TensorSketch:   E⟨T(x, y), T(x', y')⟩ = ⟨x, x'⟩·⟨y, y'⟩
//   ArcCosineFeatures order 0:  E⟨f(x), f(y)⟩ = κ0(cos θ)          = (π − θ)/π
//   ArcCosineFeatures order 1:  E⟨f(x), f(y)⟩ = ‖x‖‖y‖·κ1(cos θ)   = ‖x‖‖y‖(sin θ + (π − θ) cos θ)/π
// (θ the angle between x and y; the c_σ = 2 convention of REFERENCE.md section 4.)
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "ntk/array.hpp"

namespace ntk {

namespace detail {
struct Fft;  // a forward complex FFT of one length (kissfft, double precision)
}

// One input, output dimension m.
// The orthogonal transform of the SRHTs. fourier: the complex FFT of any (padded) length, m/2 complex
// samples stored as [Re, Im] (m even). hadamard: the real Walsh-Hadamard transform of the input padded to
// a power of two, m real samples (any m); additions only, and several times faster (README, sketches).
enum class SketchTransform { fourier, hadamard };

struct SketchParams {
  index_t input_dim = 0;
  index_t output_dim = 0;
  std::uint64_t seed = 0;
  std::uint64_t index = 0;
  SketchTransform transform = SketchTransform::fourier;  // Srht only
};

// Two inputs (x of input_dim1, y of input_dim2), one sketch of x ⊗ y of dimension m.
struct TensorSketchParams {
  index_t input_dim1 = 0;
  index_t input_dim2 = 0;
  index_t output_dim = 0;
  std::uint64_t seed = 0;
  std::uint64_t index = 0;
  SketchTransform transform = SketchTransform::fourier;  // TensorSrht only
};

struct ArcCosineParams {
  index_t input_dim = 0;
  index_t output_dim = 0;
  int order = 1;  // 0 (step) or 1 (ReLU)
  std::uint64_t seed = 0;
  std::uint64_t index = 0;
  // Order 1 only: draw w from the density ∝ ‖w‖²·N(w; 0, I) (the order-1 features' leverage scores,
  // Zandieh et al. 2021) and weight each feature by √(d)/‖w‖ -- still unbiased, lower variance.
  bool leverage = false;
};

// Subsampled randomized transform of any input length d.
//   fourier:  z(x) = FFT_L(x ∘ D)[P] / √(m/2),  D i.i.d. ±1, P: m/2 indices uniform in [0, L) with
//             replacement, x zero-padded to L, the smallest 2^a 3^b 5^c ≥ d. Output [Re z, Im z] (m even).
//   hadamard: z(x) = H_L(x ∘ D)[P] / √m, H_L the ±1 Walsh-Hadamard matrix, L the smallest power of two
//             ≥ d, P: m indices uniform in [0, L). E_D[(H D x)_k (H D y)_k] = Σ_j H_kj² x_j y_j = ⟨x, y⟩.
class Srht {
 public:
  explicit Srht(const SketchParams& p);
  index_t input_dim() const { return d_; }
  index_t output_dim() const { return m_; }
  // x: (n, input_dim), out: (n, output_dim), both row-major. check_finite = false skips the per-row
  // NaN / Inf scan, for callers whose rows are already checked (a composite map's internal values).
  void apply(const double* x, index_t n, double* out, bool check_finite = true) const;

 private:
  index_t d_, m_;
  bool hadamard_;
  index_t length_;             // L
  std::vector<double> sign_;   // D, length d
  std::vector<index_t> pick_;  // P, length m/2 (fourier) or m (hadamard)
  std::shared_ptr<const detail::Fft> fft_;
};

// fourier:  TS(x, y) = FFT(x ∘ D1)[P1] ⊙ FFT(y ∘ D2)[P2] / √(m/2) (complex products), output [Re, Im].
// hadamard: TS(x, y) = H(x ∘ D1)[P1] ⊙ H(y ∘ D2)[P2] / √m (real).
class TensorSrht {
 public:
  explicit TensorSrht(const TensorSketchParams& p);
  index_t input_dim1() const { return d1_; }
  index_t input_dim2() const { return d2_; }
  index_t output_dim() const { return m_; }
  // x: (n, input_dim1), y: (n, input_dim2), out: (n, output_dim); row i sketches x_i ⊗ y_i.
  void apply(const double* x, const double* y, index_t n, double* out, bool check_finite = true) const;

  // apply's two halves, for callers that meet one input in several pairs (PolySketch's tree) and
  // transform it once. sample: the sampled transform of one input v of side 1 (x: D1, P1) or 2 (y: D2,
  // P2) into out (m values: fourier, m/2 complex samples as (re, im) pairs; hadamard, m reals);
  // combine: the sketch of the pair whose samples are a (side 1) and b (side 2).
  struct Buffers {
    std::vector<double> buf, spectrum;  // complex values as (re, im) pairs
    std::vector<float> real;
  };
  void sample(int side, const double* v, double* out, Buffers& b) const;
  void combine(const double* a, const double* b, double* out) const;

 private:
  index_t d1_, d2_, m_;
  bool hadamard_;
  index_t length1_, length2_;
  std::vector<double> sign1_, sign2_;
  std::vector<index_t> pick1_, pick2_;
  std::shared_ptr<const detail::Fft> fft1_, fft2_;
};

// PolySketch (Ahle et al. 2020) of x^⊗q, q a power of two: a binary tree of TensorSRHTs of depth log2 q
// whose q leaves are the input itself (level 1: TensorSRHT(x, x), d, d -> m; above: m, m -> m); for q = 1
// one SRHT. E⟨P(x), P(y)⟩ = ⟨x, y⟩^q. Lower degrees j < q reuse the same tree with leaves j..q−1 fed
// e1 = (1, 0, ..., 0) instead of x, so E⟨P_j(x), P_j(y)⟩ = ⟨x, y⟩^j (P_0 is one fixed vector with
// E‖P_0‖² = 1). Nodes whose leaves are all e1 are constants, computed once.
struct PolySketchParams {
  index_t input_dim = 0;
  index_t output_dim = 0;  // even for fourier
  int degree = 2;          // q, a power of two ≥ 1
  std::uint64_t seed = 0;
  std::uint64_t index = 0;
  SketchTransform transform = SketchTransform::fourier;
};

class PolySketch {
 public:
  explicit PolySketch(const PolySketchParams& p);
  index_t input_dim() const { return d_; }
  index_t output_dim() const { return m_; }
  int degree() const { return q_; }
  // out (n, m): the sketch of x^⊗q.
  void apply(const double* x, index_t n, double* out) const;
  // out (n, q + 1, m): the sketches of x^⊗j for j = 0..q, from the one tree.
  void apply_degrees(const double* x, index_t n, double* out, bool check_finite = true) const;

 private:
  // Degrees [lo, hi] of one checked row into out (hi − lo + 1, m), with buffers reused across rows.
  struct Scratch {
    std::vector<std::vector<double>> xs;  // per level, its all-x nodes' values
    std::vector<double> x_samples;        // (nodes, 2, m): each node's samples of its all-x inputs
    std::vector<char> have_x;             // (nodes, 2): whether those are computed for this row
    std::vector<double> mixed, side_a, side_b;
    TensorSrht::Buffers buffers;
  };
  void row_degrees(const double* x, int lo, int hi, double* out, Scratch& scratch) const;
  index_t d_, m_;
  int q_, levels_;
  std::unique_ptr<Srht> single_;   // q = 1
  std::vector<TensorSrht> nodes_;  // q − 1, level by level from the leaves up
  // node_e1_[l]: the values of level l's nodes when fed only e1 (l = 0: the q leaves, e1 itself, each of
  // dimension d; l ≥ 1: q/2^l vectors of dimension m).
  std::vector<std::vector<double>> node_e1_;
  // e1_samples_[2·node + side]: the node's samples of its input when that input is all e1 (a constant).
  std::vector<std::vector<double>> e1_samples_;
};

// CountSketch (Charikar et al.): out[h(j)] += s(j)·x[j], h uniform in [0, m), s = ±1.
class CountSketch {
 public:
  explicit CountSketch(const SketchParams& p);
  index_t input_dim() const { return d_; }
  index_t output_dim() const { return m_; }
  void apply(const double* x, index_t n, double* out) const;
  // Linear and separable by coordinate: adds scale × the sketch of the vector whose coordinates
  // [first, first + count) are `values` (the rest zero) into out (m), so a long input can be sketched
  // piece by piece from where its parts live, without assembling it.
  void add_block(index_t first, const double* values, index_t count, double scale, double* out) const;
  void add_block(index_t first, const float* values, index_t count, double scale, double* out) const;

 private:
  friend class TensorSketch;
  void apply_row(const double* x, double* out) const;  // no checks; out zeroed here
  index_t d_, m_;
  std::vector<index_t> bucket_;
  std::vector<double> sign_;
};

// TensorSketch (Pham & Pagh 2013): the CountSketch of x ⊗ y with hash h1(i) + h2(j) mod m and sign
// s1(i)·s2(j), computed as the circular convolution of CountSketch1(x) and CountSketch2(y) by FFT.
class TensorSketch {
 public:
  explicit TensorSketch(const TensorSketchParams& p);
  index_t input_dim1() const { return cs1_.d_; }
  index_t input_dim2() const { return cs2_.d_; }
  index_t output_dim() const { return m_; }
  void apply(const double* x, const double* y, index_t n, double* out) const;

 private:
  index_t m_;
  CountSketch cs1_, cs2_;
  std::shared_ptr<const detail::Fft> fft_, ifft_;  // length ≥ 2m − 1: linear convolution, then folded
};

// Arc-cosine random features, W (m, d) with rows w_k:
//   plain sampling, w_k i.i.d. N(0, I):  order 0: √(2/m)·1[w_k·x > 0];   order 1: √(2/m)·max(w_k·x, 0);
//   leverage sampling (order 1): w_k = r·u, u uniform on the sphere, r ~ χ_{d+2} (exactly the density
//   ∝ ‖w‖²·N(w; 0, I)), feature √(2d/m)·max(w_k·x, 0)/‖w_k‖.
class ArcCosineFeatures {
 public:
  explicit ArcCosineFeatures(const ArcCosineParams& p);
  index_t input_dim() const { return d_; }
  index_t output_dim() const { return m_; }
  int order() const { return order_; }
  void apply(const double* x, index_t n, double* out, bool check_finite = true) const;
  // Order 1 only: the ReLU features into relu (n, m) and, from the same projections, step features into
  // step (n, m): step_k = scale_k·1[w_k·x > 0] with the ReLU features' scale. Unbiased for κ0 as well:
  // with leverage sampling that scale is √(2/m)·√(N/q)(w_k), the importance weight of order 0 too. One
  // SGEMM for both kinds; the two are then correlated (the same w_k), not independent.
  void apply_pair(const double* x, index_t n, double* relu, double* step) const;

 private:
  void project(const double* x, index_t n, double* relu, double* step) const;
  index_t d_, m_;
  int order_;
  std::vector<float> w_;       // (m, d) row-major, drawn in float64 and rounded
  std::vector<double> scale_;  // (m): the factor of each feature
};

}  // namespace ntk
