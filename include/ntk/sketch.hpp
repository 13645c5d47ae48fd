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
struct SketchParams {
  index_t input_dim = 0;
  index_t output_dim = 0;
  std::uint64_t seed = 0;
  std::uint64_t index = 0;
};

// Two inputs (x of input_dim1, y of input_dim2), one sketch of x ⊗ y of dimension m.
struct TensorSketchParams {
  index_t input_dim1 = 0;
  index_t input_dim2 = 0;
  index_t output_dim = 0;
  std::uint64_t seed = 0;
  std::uint64_t index = 0;
};

struct ArcCosineParams {
  index_t input_dim = 0;
  index_t output_dim = 0;
  int order = 1;  // 0 (step) or 1 (ReLU)
  std::uint64_t seed = 0;
  std::uint64_t index = 0;
};

// Complex subsampled randomized Fourier transform of any input length d:
//   z(x) = FFT_L(x ∘ D)[P] / √(m/2),  D i.i.d. ±1, P: m/2 indices uniform in [0, L) with replacement,
// x zero-padded to L, the smallest 2^a 3^b 5^c ≥ d. Output [Re z, Im z] (m even).
class Srht {
 public:
  explicit Srht(const SketchParams& p);
  index_t input_dim() const { return d_; }
  index_t output_dim() const { return m_; }
  // x: (n, input_dim), out: (n, output_dim), both row-major.
  void apply(const double* x, index_t n, double* out) const;

 private:
  index_t d_, m_;
  std::vector<double> sign_;   // D, length d
  std::vector<index_t> pick_;  // P, length m/2
  std::shared_ptr<const detail::Fft> fft_;
};

// TS(x, y) = FFT(x ∘ D1)[P1] ⊙ FFT(y ∘ D2)[P2] / √(m/2) (complex products), output [Re, Im].
class TensorSrht {
 public:
  explicit TensorSrht(const TensorSketchParams& p);
  index_t input_dim1() const { return d1_; }
  index_t input_dim2() const { return d2_; }
  index_t output_dim() const { return m_; }
  // x: (n, input_dim1), y: (n, input_dim2), out: (n, output_dim); row i sketches x_i ⊗ y_i.
  void apply(const double* x, const double* y, index_t n, double* out) const;

 private:
  index_t d1_, d2_, m_;
  std::vector<double> sign1_, sign2_;
  std::vector<index_t> pick1_, pick2_;
  std::shared_ptr<const detail::Fft> fft1_, fft2_;
};

// PolySketch (Ahle et al. 2020) of x^⊗q, q a power of two: q leaf SRHTs (d -> m) combined pairwise by
// a binary tree of TensorSRHTs (m, m -> m) of depth log2 q; E⟨P(x), P(y)⟩ = ⟨x, y⟩^q. Lower degrees
// j < q reuse the same tree with leaves j..q−1 fed the sketch of e1 = (1, 0, ..., 0) instead of x,
// so E⟨P_j(x), P_j(y)⟩ = ⟨x, y⟩^j (and P_0 is one fixed vector with E‖P_0‖² = 1).
struct PolySketchParams {
  index_t input_dim = 0;
  index_t output_dim = 0;  // even
  int degree = 2;          // q, a power of two ≥ 1
  std::uint64_t seed = 0;
  std::uint64_t index = 0;
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
  void apply_degrees(const double* x, index_t n, double* out) const;

 private:
  void row(const double* x, int j, double* out) const;  // degree j of one checked row
  index_t d_, m_;
  int q_;
  std::vector<Srht> leaves_;        // q
  std::vector<double> leaf_e1_;     // (q, m): leaf i applied to e1
  std::vector<TensorSrht> nodes_;   // q − 1, level by level from the leaves up
};

// CountSketch (Charikar et al.): out[h(j)] += s(j)·x[j], h uniform in [0, m), s = ±1.
class CountSketch {
 public:
  explicit CountSketch(const SketchParams& p);
  index_t input_dim() const { return d_; }
  index_t output_dim() const { return m_; }
  void apply(const double* x, index_t n, double* out) const;

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

// Arc-cosine random features with plain Gaussian sampling, W (m, d) i.i.d. N(0, 1):
//   order 0: √(2/m)·1[Wx > 0];   order 1: √(2/m)·max(Wx, 0).
class ArcCosineFeatures {
 public:
  explicit ArcCosineFeatures(const ArcCosineParams& p);
  index_t input_dim() const { return d_; }
  index_t output_dim() const { return m_; }
  int order() const { return order_; }
  void apply(const double* x, index_t n, double* out) const;

 private:
  index_t d_, m_;
  int order_;
  std::vector<double> w_;  // (m, d) row-major
};

}  // namespace ntk
