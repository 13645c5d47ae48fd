// Sketch operators and random features (see ntk/sketch.hpp for the contracts).
//
// Scaling of the complex SRHT: with F = FFT_L (unnormalized) and D i.i.d. ±1,
//   E_D[F(x∘D)_k · conj F(y∘D)_k] = Σ_{j,j'} x_j y_j' E[D_j D_j'] ω^{(j−j')k} = Σ_j x_j y_j = ⟨x, y⟩
// for every frequency k (zero padding adds nothing). So with s = m/2 samples k ∈ P and z = F[P]/√s,
// E Σ_k z_k(x) conj z_k(y) = ⟨x, y⟩, and the real features [Re z, Im z] have
// ⟨S(x), S(y)⟩ = Re Σ_k z_k(x) conj z_k(y), unbiased for the real ⟨x, y⟩. TensorSRHT multiplies two
// independent such transforms, whence ⟨x, x'⟩⟨y, y'⟩.
#include "ntk/sketch.hpp"

#include <kissfft.hh>

#include <algorithm>
#include <cmath>
#include <complex>
#include <optional>
#include <string>

#include "blas.hpp"
#include "sketch_detail.hpp"
#include "ntk/error.hpp"
#include "ntk/parallel.hpp"
#include "ntk/rng.hpp"

namespace ntk {

using cplx = std::complex<double>;

namespace detail {
struct Fft {
  Fft(index_t n, bool inverse)
      : length(n), plan(static_cast<std::size_t>(n), inverse) {
    if (n % 2 == 0 && !inverse) half.emplace(static_cast<std::size_t>(n / 2), false);
  }
  index_t length;
  kissfft<double> plan;  // transform() is const and, for radices 2..5 only, touches no shared state
  // For real inputs of even length: kissfft's transform_real, an n/2-point complex FFT and one twiddle
  // pass, about half the work of `plan`. None for odd lengths and inverse transforms.
  std::optional<kissfft<double>> half;
  bool real() const { return half.has_value(); }
};
}  // namespace detail

namespace {

// The smallest even 2^a 3^b 5^c ≥ n (a ≥ 1; 1 for n = 1). kissfft handles any length, but a prime
// factor > 5 goes through its generic butterfly, which is O(p²) and writes a scratch buffer inside the
// (shared) plan, so it is neither fast nor thread-safe: padding to these lengths avoids it, and zero
// padding keeps the SRHT unbiased (see above). Even, so that real inputs take the half-length real
// transform (16385 → 17280 real is about half the work of 16875 complex).
index_t fft_length(index_t n) {
  if (n <= 1) return 1;
  index_t best = 2;
  while (best < n) best *= 2;  // a power of two always works; look for a smaller 5-smooth one
  for (index_t p5 = 1; p5 < best; p5 *= 5)
    for (index_t p35 = p5; p35 < best; p35 *= 3) {
      index_t v = 2 * p35;
      while (v < n) v *= 2;
      if (v < best) best = v;
    }
  return best;
}

std::shared_ptr<const detail::Fft> make_fft(index_t n, bool inverse = false) {
  return std::make_shared<const detail::Fft>(n, inverse);
}

// The random stream of one purpose ("srht.D") of operator `index`.
std::uint64_t stream(const char* purpose, std::uint64_t index) {
  return stream_id((std::string(purpose) + "." + std::to_string(index)).c_str());
}

std::vector<double> random_signs(std::uint64_t seed, std::uint64_t s, index_t count) {
  std::vector<double> v(static_cast<size_t>(count));
  for (index_t j = 0; j < count; ++j) v[size_t(j)] = uniform(seed, s, std::uint64_t(j)) < 0.5 ? -1.0 : 1.0;
  return v;
}

// `count` indices uniform in [0, range), with replacement.
std::vector<index_t> random_indices(std::uint64_t seed, std::uint64_t s, index_t count, index_t range) {
  std::vector<index_t> v(static_cast<size_t>(count));
  for (index_t k = 0; k < count; ++k) {
    const auto i = static_cast<index_t>(uniform(seed, s, std::uint64_t(k)) * double(range));
    v[size_t(k)] = i < range ? i : range - 1;  // uniform() < 1, but guard the rounding of the product
  }
  return v;
}

void check_dims(const char* what, index_t d, index_t m, bool even) {
  if (d < 1) throw InvalidArgument(std::string(what) + ": input dimension must be >= 1, got " + std::to_string(d));
  if (m < 1) throw InvalidArgument(std::string(what) + ": output dimension must be >= 1, got " + std::to_string(m));
  if (even && m % 2 != 0)
    throw InvalidArgument(std::string(what) + ": output dimension must be even (real and imaginary parts of m/2 complex samples), got " +
                          std::to_string(m));
}

void check_batch(const char* what, index_t n) {
  if (n < 0) throw InvalidArgument(std::string(what) + ": negative row count " + std::to_string(n));
}

// The DFT of x ∘ sign, x zero-padded to the FFT length L, in the layout dft_at reads: by the real
// transform when L is even (out[0] = (X_0, X_{L/2}), both real; out[k] = X_k for 0 < k < L/2; the rest
// X_{L−k} = conj X_k, as the input is real), else by the complex one (out[k] = X_k). buf: L scratch values.
void signed_fft(const detail::Fft& fft, const double* x, const std::vector<double>& sign, cplx* buf, cplx* out) {
  const auto d = static_cast<index_t>(sign.size());
  if (fft.real()) {
    auto* r = reinterpret_cast<double*>(buf);  // L reals in the first half of buf
    for (index_t j = 0; j < d; ++j) r[j] = x[j] * sign[size_t(j)];
    std::fill(r + d, r + fft.length, 0.0);
    fft.half->transform_real(r, out);
    return;
  }
  for (index_t j = 0; j < d; ++j) buf[j] = cplx(x[j] * sign[size_t(j)], 0.0);
  for (index_t j = d; j < fft.length; ++j) buf[j] = 0.0;
  fft.plan.transform(buf, out);
}

// X_k from signed_fft's output.
inline cplx dft_at(const detail::Fft& fft, const cplx* f, index_t k) {
  if (!fft.real()) return f[k];
  const index_t h = fft.length / 2;
  if (k == 0) return f[0].real();
  if (k == h) return f[0].imag();
  return k < h ? f[k] : std::conj(f[fft.length - k]);
}

// The smallest power of two ≥ n.
index_t pow2_length(index_t n) {
  index_t l = 1;
  while (l < n) l *= 2;
  return l;
}

// In-place unnormalized Walsh-Hadamard transform of a power-of-two length: log2 L passes of butterflies
// (a + b, a − b); the inner loop runs over contiguous halves, which the compiler vectorizes. Compiled
// for AVX-512, AVX2 and the baseline, chosen at run time (GCC's target_clones), so the binary stays
// portable while the transform runs at the machine's vector width. In float32: twice the values per
// vector and half the bytes (a 4096-point transform fits in L1); its rounding, ~1e-7 relative after
// log2 L passes, is far below any sketch's Monte Carlo error, as for the random features' SGEMM.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void fwht(float* a, index_t n) {
  index_t h = 1;
  if (n >= 4) {  // levels 1 and 2 as one radix-4 pass: the inner loops below vectorize from h = 4 on
    for (index_t i = 0; i < n; i += 4) {
      const float a0 = a[i], a1 = a[i + 1], a2 = a[i + 2], a3 = a[i + 3];
      const float s01 = a0 + a1, d01 = a0 - a1, s23 = a2 + a3, d23 = a2 - a3;
      a[i] = s01 + s23;
      a[i + 1] = d01 + d23;
      a[i + 2] = s01 - s23;
      a[i + 3] = d01 - d23;
    }
    h = 4;
  }
  // Two levels (h and 2h) per pass, radix 4: half the loads and stores of one level at a time, which
  // bound the transform (its data sit in L1 / L2 and it does one add per value loaded).
  for (; 4 * h <= n; h *= 4)
    for (index_t i = 0; i < n; i += 4 * h)
      for (index_t j = i; j < i + h; ++j) {
        const float a0 = a[j], a1 = a[j + h], a2 = a[j + 2 * h], a3 = a[j + 3 * h];
        const float s01 = a0 + a1, d01 = a0 - a1, s23 = a2 + a3, d23 = a2 - a3;
        a[j] = s01 + s23;
        a[j + h] = d01 + d23;
        a[j + 2 * h] = s01 - s23;
        a[j + 3 * h] = d01 - d23;
      }
  if (h < n)  // an odd number of levels left: the last one alone
    for (index_t j = 0; j < h; ++j) {
      const float u = a[j], v = a[j + h];
      a[j] = u + v;
      a[j + h] = u - v;
    }
}

// buf = H(x ∘ sign), x zero-padded to the length of buf.
void signed_fwht(const double* x, const std::vector<double>& sign, std::vector<float>& buf) {
  const auto d = static_cast<index_t>(sign.size());
  for (index_t j = 0; j < d; ++j) buf[size_t(j)] = static_cast<float>(x[j] * sign[size_t(j)]);
  std::fill(buf.begin() + d, buf.end(), 0.0f);
  fwht(buf.data(), static_cast<index_t>(buf.size()));
}

// The SRHTs' one sampled transform: x ∘ sign, zero-padded, transformed and read at `pick`, unscaled,
// into out: hadamard (fft null), one real value per pick from the Walsh-Hadamard transform of length
// `hadamard_length`; fourier, (re, im) per pick of the DFT. Srht and TensorSrht both go through it.
void sampled_transform(const detail::Fft* fft, index_t hadamard_length, const std::vector<double>& sign,
                       const std::vector<index_t>& pick, const double* x, double* out, TensorSrht::Buffers& b) {
  const auto count = static_cast<index_t>(pick.size());
  if (!fft) {
    b.real.resize(static_cast<size_t>(hadamard_length));
    signed_fwht(x, sign, b.real);
    for (index_t k = 0; k < count; ++k) out[k] = double(b.real[size_t(pick[size_t(k)])]);
    return;
  }
  b.buf.resize(static_cast<size_t>(2 * fft->length));
  b.spectrum.resize(static_cast<size_t>(2 * fft->length));
  auto* buf = reinterpret_cast<cplx*>(b.buf.data());
  auto* f = reinterpret_cast<cplx*>(b.spectrum.data());
  signed_fft(*fft, x, sign, buf, f);
  for (index_t k = 0; k < count; ++k) {
    const cplx z = dft_at(*fft, f, pick[size_t(k)]);
    out[2 * k] = z.real();
    out[2 * k + 1] = z.imag();
  }
}

}  // namespace

// ---- Srht ----

Srht::Srht(const SketchParams& p)
    : d_(p.input_dim), m_(p.output_dim), hadamard_(p.transform == SketchTransform::hadamard), length_(0) {
  check_dims("SRHT", d_, m_, !hadamard_);
  sign_ = random_signs(p.seed, stream("srht.D", p.index), d_);
  if (hadamard_) {
    length_ = pow2_length(d_);
    pick_ = random_indices(p.seed, stream("srht.P", p.index), m_, length_);
    return;
  }
  fft_ = make_fft(fft_length(d_));
  length_ = fft_->length;
  pick_ = random_indices(p.seed, stream("srht.P", p.index), m_ / 2, length_);
}

void Srht::apply(const double* x, index_t n, double* out, bool check_finite) const {
  check_batch("SRHT", n);
  if (check_finite)
    for (index_t i = 0; i < n; ++i) detail::check_finite_row("SRHT", x + i * d_, d_, i);
  // hadamard: m real samples, out = sample/√m; fourier: m/2 complex samples, out = [Re, Im]/√(m/2).
  const index_t s = hadamard_ ? m_ : m_ / 2;
  const double scale = 1.0 / std::sqrt(double(s));
  parallel_for(n, [&](std::int64_t begin, std::int64_t end) {
    TensorSrht::Buffers buffers;
    std::vector<double> z(static_cast<size_t>(m_));
    for (index_t i = begin; i < end; ++i) {
      sampled_transform(fft_.get(), length_, sign_, pick_, x + i * d_, z.data(), buffers);
      double* o = out + i * m_;
      if (hadamard_) {
        for (index_t k = 0; k < m_; ++k) o[k] = scale * z[size_t(k)];
        continue;
      }
      for (index_t k = 0; k < s; ++k) {
        o[k] = scale * z[size_t(2 * k)];
        o[s + k] = scale * z[size_t(2 * k + 1)];
      }
    }
  });
}

// ---- TensorSrht ----

TensorSrht::TensorSrht(const TensorSketchParams& p)
    : d1_(p.input_dim1), d2_(p.input_dim2), m_(p.output_dim), hadamard_(p.transform == SketchTransform::hadamard) {
  check_dims("TensorSRHT", d1_, m_, !hadamard_);
  check_dims("TensorSRHT", d2_, m_, !hadamard_);
  sign1_ = random_signs(p.seed, stream("tensor_srht.D1", p.index), d1_);
  sign2_ = random_signs(p.seed, stream("tensor_srht.D2", p.index), d2_);
  if (hadamard_) {
    length1_ = pow2_length(d1_);
    length2_ = pow2_length(d2_);
  } else {
    fft1_ = make_fft(fft_length(d1_));
    fft2_ = d2_ == d1_ ? fft1_ : make_fft(fft_length(d2_));
    length1_ = fft1_->length;
    length2_ = fft2_->length;
  }
  const index_t samples = hadamard_ ? m_ : m_ / 2;
  pick1_ = random_indices(p.seed, stream("tensor_srht.P1", p.index), samples, length1_);
  pick2_ = random_indices(p.seed, stream("tensor_srht.P2", p.index), samples, length2_);
}

void TensorSrht::sample(int side, const double* v, double* out, Buffers& b) const {
  if (side == 1)
    sampled_transform(fft1_.get(), length1_, sign1_, pick1_, v, out, b);
  else
    sampled_transform(fft2_.get(), length2_, sign2_, pick2_, v, out, b);
}

void TensorSrht::combine(const double* a, const double* b, double* out) const {
  if (hadamard_) {
    const double scale = 1.0 / std::sqrt(double(m_));
    for (index_t k = 0; k < m_; ++k) out[k] = scale * a[k] * b[k];
    return;
  }
  const index_t s = m_ / 2;
  const double scale = 1.0 / std::sqrt(double(s));
  for (index_t k = 0; k < s; ++k) {
    const cplx z = cplx(a[2 * k], a[2 * k + 1]) * cplx(b[2 * k], b[2 * k + 1]);
    out[k] = scale * z.real();
    out[s + k] = scale * z.imag();
  }
}

void TensorSrht::apply(const double* x, const double* y, index_t n, double* out, bool check_finite) const {
  check_batch("TensorSRHT", n);
  if (check_finite)
    for (index_t i = 0; i < n; ++i) {
      detail::check_finite_row("TensorSRHT (first input)", x + i * d1_, d1_, i);
      detail::check_finite_row("TensorSRHT (second input)", y + i * d2_, d2_, i);
    }
  parallel_for(n, [&](std::int64_t begin, std::int64_t end) {
    Buffers buffers;
    std::vector<double> a(static_cast<size_t>(m_)), b(static_cast<size_t>(m_));
    for (index_t i = begin; i < end; ++i) {
      sample(1, x + i * d1_, a.data(), buffers);
      sample(2, y + i * d2_, b.data(), buffers);
      combine(a.data(), b.data(), out + i * m_);
    }
  });
}

// ---- PolySketch ----

PolySketch::PolySketch(const PolySketchParams& p) : d_(p.input_dim), m_(p.output_dim), q_(p.degree), levels_(0) {
  if (q_ < 1 || (q_ & (q_ - 1)) != 0)
    throw InvalidArgument("PolySketch: degree must be a power of two (1, 2, 4, ...), got " + std::to_string(q_));
  check_dims("PolySketch", d_, m_, p.transform == SketchTransform::fourier);
  while ((1 << levels_) < q_) ++levels_;
  // Children get indices hashed from this sketch's index, so their streams differ from those of any
  // stand-alone SRHT / TensorSRHT under the same seed.
  auto child = [&](const char* kind, int i) {
    return stream_id(("polysketch." + std::to_string(p.index) + "." + kind + "." + std::to_string(i)).c_str());
  };
  std::vector<double> e1(static_cast<size_t>(d_), 0.0);
  e1[0] = 1.0;
  if (q_ == 1) {
    single_ = std::make_unique<Srht>(SketchParams{d_, m_, p.seed, child("leaf", 0), p.transform});
    std::vector<double> v(static_cast<size_t>(m_));
    single_->apply(e1.data(), 1, v.data());
    node_e1_ = {e1, v};
    return;
  }
  for (int l = 1, i = 0; l <= levels_; ++l)
    for (int k = 0; k < (q_ >> l); ++k, ++i) {
      const index_t in = l == 1 ? d_ : m_;
      nodes_.emplace_back(TensorSketchParams{in, in, m_, p.seed, child("node", i), p.transform});
    }
  std::vector<double> leaves;
  for (int k = 0; k < q_; ++k) leaves.insert(leaves.end(), e1.begin(), e1.end());
  node_e1_.push_back(std::move(leaves));
  size_t node = 0;
  TensorSrht::Buffers buffers;
  for (int l = 1; l <= levels_; ++l) {
    const index_t in = l == 1 ? d_ : m_;
    const std::vector<double>& below = node_e1_.back();
    std::vector<double> level(static_cast<size_t>((q_ >> l) * m_));
    for (int k = 0; k < (q_ >> l); ++k, ++node) {
      for (int side = 1; side <= 2; ++side) {
        e1_samples_.emplace_back(static_cast<size_t>(m_));
        nodes_[node].sample(side, below.data() + (2 * k + side - 1) * in, e1_samples_.back().data(), buffers);
      }
      nodes_[node].combine(e1_samples_[2 * node].data(), e1_samples_[2 * node + 1].data(), level.data() + k * m_);
    }
    node_e1_.push_back(std::move(level));
  }
}

void PolySketch::row_degrees(const double* x, int lo, int hi, double* out, Scratch& sc) const {
  // Degree j feeds x to leaves 0..j−1 and e1 to the rest, so a node is "all x" (the same for every j
  // that covers it), "all e1" (a constant) or mixed; each level has at most one mixed node per degree.
  // The all-x tree is computed once and only the mixed nodes per degree: (q − 1) + Σ_j #mixed(j)
  // TensorSRHTs instead of (q + 1)(q − 1).
  if (q_ == 1) {
    for (int j = lo; j <= hi; ++j) {
      double* o = out + (j - lo) * m_;
      if (j == 1)
        single_->apply(x, 1, o, false);
      else
        std::copy(node_e1_[1].begin(), node_e1_[1].end(), o);
    }
    return;
  }
  // xs[l]: level l's all-x nodes (level 0: the leaves, all x). Only the nodes some degree needs are
  // computed: node k of level l is all x for degree j when (k + 1)·2^l ≤ j. Every input of a node is
  // transformed once per row: an all-x input's samples serve the all-x node and every mixed node that
  // shares it, an all-e1 input's samples are constants, and only a mixed input is transformed anew
  // (about half the transforms of applying each node to its two inputs).
  const size_t n_nodes = nodes_.size();
  auto& xs = sc.xs;
  xs.resize(static_cast<size_t>(levels_ + 1));
  sc.x_samples.resize(n_nodes * 2 * static_cast<size_t>(m_));
  sc.have_x.assign(n_nodes * 2, 0);
  sc.mixed.resize(static_cast<size_t>(m_));
  sc.side_a.resize(static_cast<size_t>(m_));
  sc.side_b.resize(static_cast<size_t>(m_));
  // The samples of node `node`'s input `side` when that input is all x (its value at `v`).
  auto x_sample = [&](size_t node, int side, const double* v) -> const double* {
    double* s = sc.x_samples.data() + (2 * node + size_t(side - 1)) * size_t(m_);
    if (!sc.have_x[2 * node + size_t(side - 1)]) {
      nodes_[node].sample(side, v, s, sc.buffers);
      sc.have_x[2 * node + size_t(side - 1)] = 1;
    }
    return s;
  };
  size_t first = 0;  // index in nodes_ of the first node of level l
  for (int l = 1; l <= levels_; ++l) {
    const index_t in = l == 1 ? d_ : m_;
    const int needed = hi >> l;  // all-x nodes 0..needed−1 of this level are used
    xs[size_t(l)].resize(static_cast<size_t>(std::max(needed, 0) * m_));
    for (int k = 0; k < needed; ++k) {
      const size_t node = first + size_t(k);
      const double* a = x_sample(node, 1, l == 1 ? x : xs[size_t(l - 1)].data() + 2 * k * in);
      const double* b = x_sample(node, 2, l == 1 ? x : xs[size_t(l - 1)].data() + (2 * k + 1) * in);
      nodes_[node].combine(a, b, xs[size_t(l)].data() + k * m_);
    }
    first += size_t(q_ >> l);
  }
  for (int j = lo; j <= hi; ++j) {
    double* o = out + (j - lo) * m_;
    if (j == 0 || j == q_) {
      const double* src = j == 0 ? node_e1_[size_t(levels_)].data() : xs[size_t(levels_)].data();
      std::copy(src, src + m_, o);
      continue;
    }
    bool have = false;  // whether level l − 1 has a mixed node (then it is node j >> (l − 1))
    first = 0;
    for (int l = 1; l <= levels_; ++l) {
      const index_t in = l == 1 ? d_ : m_;
      if ((j & ((1 << l) - 1)) != 0) {  // node j >> l of level l is mixed
        const int k = j >> l, boundary = j >> (l - 1);
        const size_t node = first + size_t(k);
        // The samples of child c (side 1 or 2): all x, the previous mixed value, or all e1.
        auto child = [&](int c, double* fresh) -> const double* {
          const int side = c - 2 * k + 1;
          if (c < boundary) return x_sample(node, side, l == 1 ? x : xs[size_t(l - 1)].data() + c * in);
          if (c == boundary && have) {
            nodes_[node].sample(side, sc.mixed.data(), fresh, sc.buffers);
            return fresh;
          }
          return e1_samples_[2 * node + size_t(side - 1)].data();
        };
        const double* a = child(2 * k, sc.side_a.data());
        const double* b = child(2 * k + 1, sc.side_b.data());
        nodes_[node].combine(a, b, sc.mixed.data());  // the previous mixed value is no longer needed
        have = true;
      }
      first += size_t(q_ >> l);
    }
    std::copy(sc.mixed.begin(), sc.mixed.end(), o);
  }
}

void PolySketch::apply(const double* x, index_t n, double* out) const {
  check_batch("PolySketch", n);
  parallel_for(n, [&](std::int64_t begin, std::int64_t end) {
    Scratch sc;  // reused by the rows of this chunk
    for (index_t i = begin; i < end; ++i) {
      detail::check_finite_row("PolySketch", x + i * d_, d_, i);
      row_degrees(x + i * d_, q_, q_, out + i * m_, sc);
    }
  });
}

void PolySketch::apply_degrees(const double* x, index_t n, double* out, bool check_finite) const {
  check_batch("PolySketch", n);
  parallel_for(n, [&](std::int64_t begin, std::int64_t end) {
    Scratch sc;  // reused by the rows of this chunk
    for (index_t i = begin; i < end; ++i) {
      if (check_finite) detail::check_finite_row("PolySketch", x + i * d_, d_, i);
      row_degrees(x + i * d_, 0, q_, out + i * (q_ + 1) * m_, sc);
    }
  });
}

// ---- CountSketch ----

CountSketch::CountSketch(const SketchParams& p) : d_(p.input_dim), m_(p.output_dim) {
  check_dims("CountSketch", d_, m_, false);
  bucket_ = random_indices(p.seed, stream("count_sketch.h", p.index), d_, m_);
  sign_ = random_signs(p.seed, stream("count_sketch.s", p.index), d_);
}

void CountSketch::apply_row(const double* x, double* out) const {
  for (index_t k = 0; k < m_; ++k) out[k] = 0.0;
  for (index_t j = 0; j < d_; ++j) out[bucket_[size_t(j)]] += sign_[size_t(j)] * x[j];
}

namespace {
template <class T>
void add_signed(const index_t* h, const double* sg, const T* values, index_t count, double scale, double* out) {
  for (index_t j = 0; j < count; ++j) out[h[j]] += scale * sg[j] * double(values[j]);
}
}  // namespace

void CountSketch::add_block(index_t first, const double* values, index_t count, double scale, double* out) const {
  if (first < 0 || count < 0 || first + count > d_) throw InvalidArgument("CountSketch: block outside the input");
  add_signed(bucket_.data() + first, sign_.data() + first, values, count, scale, out);
}

void CountSketch::add_block(index_t first, const float* values, index_t count, double scale, double* out) const {
  if (first < 0 || count < 0 || first + count > d_) throw InvalidArgument("CountSketch: block outside the input");
  add_signed(bucket_.data() + first, sign_.data() + first, values, count, scale, out);
}

void CountSketch::apply(const double* x, index_t n, double* out) const {
  check_batch("CountSketch", n);
  parallel_for(n, [&](std::int64_t begin, std::int64_t end) {
    for (index_t i = begin; i < end; ++i) {
      detail::check_finite_row("CountSketch", x + i * d_, d_, i);
      apply_row(x + i * d_, out + i * m_);
    }
  });
}

// ---- TensorSketch ----

namespace {
SketchParams half(const TensorSketchParams& p, int which) {
  // Two independent CountSketches under the same (seed, index): distinct purposes via the index.
  return SketchParams{which == 1 ? p.input_dim1 : p.input_dim2, p.output_dim, p.seed, 2 * p.index + std::uint64_t(which - 1)};
}
}  // namespace

TensorSketch::TensorSketch(const TensorSketchParams& p) : m_(p.output_dim), cs1_(half(p, 1)), cs2_(half(p, 2)) {
  // Linear convolution of two length-m vectors has 2m − 1 terms; a cyclic FFT at least that long
  // computes it exactly, and folding index k onto k mod m gives the circular convolution for any m.
  const index_t len = fft_length(2 * m_ - 1);
  fft_ = make_fft(len, false);
  ifft_ = make_fft(len, true);
}

void TensorSketch::apply(const double* x, const double* y, index_t n, double* out) const {
  check_batch("TensorSketch", n);
  const index_t d1 = cs1_.d_, d2 = cs2_.d_, len = fft_->length;
  parallel_for(n, [&](std::int64_t begin, std::int64_t end) {
    std::vector<double> a(static_cast<size_t>(m_)), b(static_cast<size_t>(m_));
    std::vector<cplx> buf(static_cast<size_t>(len)), fa(static_cast<size_t>(len)), fb(static_cast<size_t>(len));
    for (index_t i = begin; i < end; ++i) {
      detail::check_finite_row("TensorSketch (first input)", x + i * d1, d1, i);
      detail::check_finite_row("TensorSketch (second input)", y + i * d2, d2, i);
      cs1_.apply_row(x + i * d1, a.data());
      cs2_.apply_row(y + i * d2, b.data());
      for (index_t k = 0; k < len; ++k) buf[size_t(k)] = k < m_ ? cplx(a[size_t(k)], 0.0) : cplx(0.0);
      fft_->plan.transform(buf.data(), fa.data());
      for (index_t k = 0; k < len; ++k) buf[size_t(k)] = k < m_ ? cplx(b[size_t(k)], 0.0) : cplx(0.0);
      fft_->plan.transform(buf.data(), fb.data());
      for (index_t k = 0; k < len; ++k) fa[size_t(k)] *= fb[size_t(k)];
      ifft_->plan.transform(fa.data(), buf.data());  // unnormalized inverse: divide by len
      double* o = out + i * m_;
      for (index_t k = 0; k < m_; ++k) o[k] = 0.0;
      for (index_t k = 0; k < 2 * m_ - 1; ++k) o[k % m_] += buf[size_t(k)].real() / double(len);
    }
  });
}

// ---- ArcCosineFeatures ----

ArcCosineFeatures::ArcCosineFeatures(const ArcCosineParams& p) : d_(p.input_dim), m_(p.output_dim), order_(p.order) {
  check_dims("arc-cosine features", d_, m_, false);
  if (order_ != 0 && order_ != 1)
    throw InvalidArgument("arc-cosine features: order must be 0 or 1, got " + std::to_string(order_));
  if (p.leverage && order_ != 1)
    throw InvalidArgument("arc-cosine features: leverage-score sampling is defined for order 1 only");
  const std::uint64_t s = stream("arccos.W", p.index);
  std::vector<double> w(static_cast<size_t>(m_ * d_));
  // Each draw is a function of (seed, stream, index) alone, so filling rows on several threads gives the
  // same W; at m = d = 8192 these are 67M draws.
  parallel_for(m_, [&](std::int64_t begin, std::int64_t end) {
    fill_normal(p.seed, s, std::uint64_t(begin * d_), std::uint64_t((end - begin) * d_), w.data() + begin * d_);
  });
  // E[1[w·x > 0] 1[w·y > 0]] = (π − θ)/(2π) and E[relu(w·x) relu(w·y)] = ‖x‖‖y‖(sin θ + (π − θ) cos θ)/(2π)
  // for w ~ N(0, I) (Cho & Saul 2009): the factor 2/m makes the mean of m features κ0 resp. ‖x‖‖y‖κ1.
  scale_.assign(size_t(m_), std::sqrt(2.0 / double(m_)));
  if (p.leverage) {
    // Importance sampling from q(w) = ‖w‖²·N(w; 0, I)/d: the weight N/q = d/‖w‖² splits as √d/‖w‖ on each
    // side of the product. Under q, w = r·u with u uniform on the sphere (the direction of the row
    // just drawn) and r² ~ χ²_{d+2}, a sum of d + 2 squared normals.
    const std::uint64_t sr = stream("arccos.radius", p.index);
    parallel_for(m_, [&](std::int64_t begin, std::int64_t end) {
    std::vector<double> g(static_cast<size_t>(d_ + 2));  // the radius's d + 2 normals, per row
    for (index_t k = begin; k < end; ++k) {
      double* wk = w.data() + k * d_;
      double norm2 = 0.0, r2 = 0.0;
      for (index_t j = 0; j < d_; ++j) norm2 += wk[j] * wk[j];
      fill_normal(p.seed, sr, std::uint64_t(k * (d_ + 2)), std::uint64_t(d_ + 2), g.data());
      for (double v : g) r2 += v * v;
      const double norm = std::sqrt(norm2), r = std::sqrt(r2);
      for (index_t j = 0; j < d_; ++j) wk[j] *= r / norm;
      scale_[size_t(k)] = std::sqrt(2.0 * double(d_) / double(m_)) / r;
    }
    });
  }
  w_.assign(w.begin(), w.end());  // float32 for the SGEMM in apply
}

void ArcCosineFeatures::apply(const double* x, index_t n, double* out, bool check_finite) const {
  check_batch("arc-cosine features", n);
  if (check_finite)
    for (index_t i = 0; i < n; ++i) detail::check_finite_row("arc-cosine features", x + i * d_, d_, i);
  if (order_ == 0)
    project(x, n, nullptr, out);
  else
    project(x, n, out, nullptr);
}

void ArcCosineFeatures::apply_pair(const double* x, index_t n, double* relu, double* step) const {
  check_batch("arc-cosine features", n);
  if (order_ != 1) throw InvalidArgument("arc-cosine features: paired ReLU and step features come from an order-1 map");
  project(x, n, relu, step);
}

void ArcCosineFeatures::project(const double* x, index_t n, double* relu, double* step) const {
  // Row blocks of one SGEMM each, XWᵀ in float32 (twice the GEMM rate of float64; its rounding, ~1e-7
  // relative, is far below the features' Monte Carlo error): every output is one dot product over the
  // full d whatever the block (see blas.hpp), and blocks have a fixed number of rows, so a row's
  // features depend neither on the batch split nor on the threads. The nonlinearity and scale are
  // applied in float64.
  constexpr index_t kRows = 256;
  parallel_for((n + kRows - 1) / kRows, [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t blk = b0; blk < b1; ++blk) {
      const index_t begin = blk * kRows, end = std::min<index_t>(n, begin + kRows), rows = end - begin;
      std::vector<float> xs(x + begin * d_, x + end * d_), prod(static_cast<size_t>(rows * m_));
      detail::gemm_serial(false, true, rows, m_, d_, 1.0f, xs.data(), d_, w_.data(), d_, 0.0f, prod.data(), m_);
      for (index_t i = 0; i < rows; ++i) {
        const float* p = prod.data() + i * m_;
        if (relu) {
          double* o = relu + (begin + i) * m_;
          for (index_t k = 0; k < m_; ++k) o[k] = p[k] > 0.0f ? scale_[size_t(k)] * double(p[k]) : 0.0;
        }
        if (step) {
          double* o = step + (begin + i) * m_;
          for (index_t k = 0; k < m_; ++k) o[k] = p[k] > 0.0f ? scale_[size_t(k)] : 0.0;
        }
      }
    }
  });
}

}  // namespace ntk
