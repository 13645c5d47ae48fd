// CNTKSketch (see ntk/features.hpp for the kernel it approximates and the recursion).
#include <algorithm>
#include <cmath>
#include <string>

#include "ntk/error.hpp"
#include "ntk/features.hpp"
#include "ntk/parallel.hpp"
#include "ntk/polyfit.hpp"
#include "ntk/rng.hpp"
#include "sketch_detail.hpp"

namespace ntk {

namespace {

std::uint64_t part(const char* what, int layer) {
  return stream_id(("cntk_sketch." + std::string(what) + "." + std::to_string(layer)).c_str());
}

// Fits of κ1 and κ0 on [lo, 1]: past the first layer every correlation is ≥ 0 (the covariances are
// window sums of post-ReLU covariances), so the polynomial is spent where the data are.
std::vector<double> fit(double (*f)(double), int q, double lo) {
  PolyFitOptions o;
  o.lo = lo;
  return fit_polynomial(f, q, o);
}

// out[k] += scale·s[k]·u[(k + r) mod n]: two contiguous multiply-adds, compiled for AVX-512, AVX2 and
// the baseline (chosen at run time, as the Walsh-Hadamard transform in sketch.cpp).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void rotated_signed_add(const double* __restrict s, const float* __restrict u, index_t r, index_t n, double scale,
                        double* __restrict out) {
  const index_t head = n - r;
  for (index_t k = 0; k < head; ++k) out[k] += scale * s[k] * double(u[k + r]);
  for (index_t k = head; k < n; ++k) out[k] += scale * s[k] * double(u[k - head]);
}

// Output pixels carried through a layer's whole pipeline at once: their intermediate values (the
// stacked taps, the degree sketches, the κ0 features) stay in cache instead of streaming every
// stage over all pixels through memory.
constexpr index_t kPixelChunk = 16;

}  // namespace

// The convolution's sketch of the stacked taps [u_δ]_δ (F blocks of `block` values) to `width`, added tap
// by tap from where each tap's values live. When a block is as long as the sketch (every layer past
// the first): v[k] = Σ_δ s_δ[k]·u_δ[(k + r_δ) mod width], i.i.d. random signs s_δ and distinct random
// cyclic shifts r_δ -- a CountSketch whose hash is a rotation within each tap. Within a tap ⟨v, v'⟩ is
// then exact (no collisions), across taps its terms have mean zero (E[s_δ s_δ'] = 0), so it is unbiased,
// and the sum is a contiguous multiply-add instead of a scatter. The shifts matter: neighbouring
// pixels' features are close, and without them coordinate k of one tap would always meet coordinate k
// of another, whose product φ_k² has three times the variance of a product of distinct coordinates.
// Otherwise (a first layer whose taps are wider or narrower than the sketch) a CountSketch.
class CntkSketch::TapSketch {
 public:
  TapSketch(index_t taps, index_t block, index_t width, std::uint64_t seed, std::uint64_t index) : block_(block) {
    if (block != width) {
      count_ = std::make_unique<CountSketch>(SketchParams{taps * block, width, seed, index});
      return;
    }
    sign_.resize(static_cast<size_t>(taps * block));
    for (index_t j = 0; j < taps * block; ++j) sign_[size_t(j)] = uniform(seed, index, std::uint64_t(j)) < 0.5 ? -1.0 : 1.0;
    std::uint64_t draw = std::uint64_t(taps * block);
    for (index_t t = 0; t < taps; ++t) {
      index_t r;
      do {  // distinct shifts while there are enough of them
        r = std::min(block - 1, static_cast<index_t>(uniform(seed, index, draw++) * double(block)));
      } while (taps <= block && std::find(shift_.begin(), shift_.end(), r) != shift_.end());
      shift_.push_back(r);
    }
  }
  // out (width) += scale × the sketch of tap `tap`'s values u (block).
  void add(index_t tap, const float* u, double scale, double* out) const {
    if (count_) return count_->add_block(tap * block_, u, block_, scale, out);
    const index_t r = shift_[size_t(tap)];
    rotated_signed_add(sign_.data() + tap * block_, u, r, block_, scale, out);
  }

 private:
  index_t block_;
  std::vector<double> sign_;    // (taps, block) when block == width
  std::vector<index_t> shift_;  // r_δ
  std::unique_ptr<CountSketch> count_;
};

// One thread's buffers, reused across its images: the layer's inputs and outputs for every pixel, and
// one chunk of pixels' intermediates. φ and τ of every pixel are kept in float32: each is read by F
// output pixels, so these reads are the layer's memory traffic, and their rounding (~1e-7) is far below
// the sketches' error.
struct CntkSketch::Workspace {
  std::vector<float> phi, tau, next_phi, next_tau;
  std::vector<double> diag, next_diag;
  std::vector<double> t, unit, norm, degrees, dot, chunk_phi, chunk_tau;
};

struct CntkSketch::Layer {
  index_t in_h = 0, in_w = 0, out_h = 0, out_w = 0, pad_top = 0, pad_left = 0;
  index_t phi_in = 0;  // width of φ_{h−1}: C, then m/2
  index_t v_dim = 0;   // F·phi_in when kept exact, else the sketch width
  index_t t_dim = 0;
  std::unique_ptr<TapSketch> conv_v, conv_t;  // conv_v null: v exact; conv_t null: first layer
  std::unique_ptr<PolySketch> poly;
  std::unique_ptr<detail::PolyCombiner> comb1, comb0;
  std::unique_ptr<TensorSrht> mix;
  const std::vector<double>* c1 = nullptr;
  const std::vector<double>* c0 = nullptr;
};

CntkSketch::~CntkSketch() = default;

CntkSketch::CntkSketch(const CntkSketchParams& p) : p_(p) {
  if (p.height < 1 || p.width < 1 || p.channels < 1)
    throw InvalidArgument("CNTKSketch: images must have positive height, width and channels");
  if (p.depth < 1) throw InvalidArgument("CNTKSketch: depth must be >= 1, got " + std::to_string(p.depth));
  if (p.filter < 1) throw InvalidArgument("CNTKSketch: filter size must be >= 1, got " + std::to_string(p.filter));
  detail::checked_poly_degree("CNTKSketch", p.degree);
  if (p.output_dim < 8 || p.output_dim % 4 != 0)
    throw InvalidArgument("CNTKSketch: feature dimension must be a multiple of 4, at least 8, got " +
                          std::to_string(p.output_dim));
  half_ = p.output_dim / 2;
  sketch_dim_ = half_;
  poly_dim_ = p.poly_dim > 0 ? p.poly_dim : std::max<index_t>(2, (p.output_dim / 4 + 1) / 2 * 2);
  if (poly_dim_ % 2 != 0) throw InvalidArgument("CNTKSketch: the PolySketch width must be even");
  // The interval of the correlations entering layer l's ReLU: [−1, 1] at the first layer, then
  // [0, 1] (window sums of post-ReLU covariances are ≥ 0). With one pixel and 1 × 1 filters (a dense
  // network: the layer-wise NTKSketch) they are correlations of the previous layer's outputs, so at
  // least α_l = κ1(α_{l−1}), α_0 = −1: the intervals shrink with depth, as the paper's Algorithm 1 fits.
  const bool dense = p.height == 1 && p.width == 1 && p.filter == 1;
  double lo = -1.0;
  for (int l = 0; l < p.depth; ++l) {
    kappa1_.push_back(fit(arccos_kappa1, p.degree, lo));
    kappa0_.push_back(fit(arccos_kappa0, p.degree, lo));
    lo = dense ? arccos_kappa1(lo) : 0.0;
  }

  const index_t F = index_t(p.filter) * p.filter;
  index_t h = p.height, w = p.width;
  for (int l = 0; l < p.depth; ++l) {
    auto L = std::make_unique<Layer>();
    L->in_h = h;
    L->in_w = w;
    if (p.same) {
      L->out_h = h;
      L->out_w = w;
      L->pad_top = (p.filter - 1) / 2;
      L->pad_left = (p.filter - 1) / 2;
    } else {
      L->out_h = h - p.filter + 1;
      L->out_w = w - p.filter + 1;
      if (L->out_h < 1 || L->out_w < 1)
        throw InvalidArgument("CNTKSketch: " + std::to_string(p.depth) + " VALID " + std::to_string(p.filter) + "x" +
                              std::to_string(p.filter) + " convolutions do not fit " + std::to_string(p.height) + "x" +
                              std::to_string(p.width) + " images");
    }
    L->phi_in = l == 0 ? p.channels : half_;
    const index_t cat = F * L->phi_in;
    if (cat <= sketch_dim_) {
      L->v_dim = cat;
    } else {
      L->v_dim = sketch_dim_;
      L->conv_v = std::make_unique<TapSketch>(F, L->phi_in, sketch_dim_, p.seed, part("conv_v", l));
    }
    L->t_dim = L->v_dim;
    if (l > 0) {
      L->conv_t = std::make_unique<TapSketch>(F, half_, sketch_dim_, p.seed, part("conv_t", l));
      L->t_dim += sketch_dim_;
    }
    L->poly = std::make_unique<PolySketch>(PolySketchParams{L->v_dim, poly_dim_, p.degree, p.seed, part("poly", l), p.transform});
    L->comb1 = std::make_unique<detail::PolyCombiner>(p.degree, poly_dim_, half_, p.seed, part("comb1", l), p.transform);
    L->comb0 = std::make_unique<detail::PolyCombiner>(p.degree, poly_dim_, half_, p.seed, part("comb0", l), p.transform);
    L->mix = std::make_unique<TensorSrht>(TensorSketchParams{L->t_dim, half_, half_, p.seed, part("mix", l), p.transform});
    L->c1 = &kappa1_[size_t(l)];
    L->c0 = &kappa0_[size_t(l)];
    h = L->out_h;
    w = L->out_w;
    layers_.push_back(std::move(L));
  }
}

index_t CntkSketch::output_dim() const { return 2 * half_; }

std::uint64_t CntkSketch::memory_bytes(const CntkSketchParams& p, int threads) {
  const auto m = std::uint64_t(std::max<index_t>(p.output_dim, 8)), half = m / 2;
  const std::uint64_t mp = p.poly_dim > 0 ? std::uint64_t(p.poly_dim) : std::max<std::uint64_t>(2, (m / 4 + 1) / 2 * 2);
  const std::uint64_t F = std::uint64_t(std::max(p.filter, 1)) * std::uint64_t(std::max(p.filter, 1));
  const std::uint64_t C = std::uint64_t(std::max<index_t>(p.channels, 1)), q = std::uint64_t(std::max(p.degree, 1));
  const std::uint64_t pixels = std::uint64_t(std::max<index_t>(p.height, 1)) * std::uint64_t(std::max<index_t>(p.width, 1));
  const std::uint64_t L = std::uint64_t(std::max(p.depth, 1));
  // Per layer: the taps' signs and rotations (or a first layer's CountSketch), the PolySketch tree and
  // the SRHTs' signs and picks. Per thread: φ, τ and their successors for every pixel (float32), the
  // diagonal, and one chunk's stacked taps, degree sketches and κ0 features, plus transform buffers.
  const std::uint64_t layers = L * (2 * F * std::max(half, C) * 16 + q * 12 * mp * 8 + 8 * m * 8);
  const std::uint64_t image = 4 * pixels * std::max(half, C) * 4 + 2 * pixels * 8;
  const std::uint64_t chunk = std::uint64_t(kPixelChunk) * (2 * half + half + (2 * q + 2) * mp + 4 * half) * 8;
  return layers + std::uint64_t(std::max(threads, 1)) * (image + chunk + 16 * m * 8);
}

void CntkSketch::transform(const double* x, index_t n, double* out) const {
  const index_t d = p_.height * p_.width * p_.channels;
  detail::check_finite_rows("CNTKSketch", x, n, d);
  // Images on all threads, each image on one: an image's features are a pure function of it, so the
  // output does not depend on the thread count or the batch.
  parallel_for(n, [&](index_t begin, index_t end) {
    Workspace ws;
    for (index_t i = begin; i < end; ++i) image(x + i * d, out + i * output_dim(), ws);
  });
}

void CntkSketch::image(const double* x, double* out, Workspace& ws) const {
  const index_t F = index_t(p_.filter) * p_.filter, C = p_.channels, q = p_.degree, mp = poly_dim_;
  const double conv_scale = std::sqrt(2.0 / double(F)), inv_sqrt2 = 1.0 / std::sqrt(2.0);
  // φ_{h−1} and its squared norms' exact counterparts (the diagonal of the NNGP feeding layer h), and
  // τ_{h−1} (absent before the first layer).
  index_t pixels = p_.height * p_.width, phi_dim = C;
  auto& phi = ws.phi;
  auto& tau = ws.tau;
  auto& diag = ws.diag;
  phi.resize(static_cast<size_t>(pixels * C));
  diag.resize(static_cast<size_t>(pixels));
  for (index_t k = 0; k < pixels; ++k) {
    double s = 0;
    for (index_t c = 0; c < C; ++c) {
      phi[size_t(k * C + c)] = static_cast<float>(x[k * C + c] / std::sqrt(double(C)));
      s += x[k * C + c] * x[k * C + c];
    }
    diag[size_t(k)] = s / double(C);  // Σ⁰(p, p) = ‖x_p‖²/C
  }
  for (const auto& Lp : layers_) {
    const Layer& L = *Lp;
    const index_t out_pixels = L.out_h * L.out_w;
    ws.next_phi.resize(static_cast<size_t>(out_pixels * half_));
    ws.next_tau.resize(static_cast<size_t>(out_pixels * half_));
    ws.next_diag.resize(static_cast<size_t>(out_pixels));
    for (index_t o0 = 0; o0 < out_pixels; o0 += kPixelChunk) {
      const index_t cn = std::min(kPixelChunk, out_pixels - o0);
      ws.t.assign(static_cast<size_t>(cn * L.t_dim), 0.0);
      ws.unit.resize(static_cast<size_t>(cn * L.v_dim));
      ws.norm.resize(static_cast<size_t>(cn));
      // Pre-activations: the taps' features stacked (and sketched), the exact diagonal, the NTK input.
      for (index_t r = 0; r < cn; ++r) {
        const index_t o = o0 + r, oy = o / L.out_w, ox = o % L.out_w;
        double* v = ws.t.data() + r * L.t_dim;  // v_h(p) is the first part of t_h(p)
        double a2 = 0;
        for (index_t dy = 0; dy < p_.filter; ++dy)
          for (index_t dx = 0; dx < p_.filter; ++dx) {
            const index_t iy = oy + dy - L.pad_top, ix = ox + dx - L.pad_left, tap = dy * p_.filter + dx;
            if (iy < 0 || iy >= L.in_h || ix < 0 || ix >= L.in_w) continue;  // zero padding adds nothing
            const index_t src = iy * L.in_w + ix;
            a2 += diag[size_t(src)];
            const float* ph = phi.data() + src * phi_dim;
            if (L.conv_v)
              L.conv_v->add(tap, ph, conv_scale, v);
            else
              for (index_t c = 0; c < phi_dim; ++c) v[tap * phi_dim + c] = conv_scale * double(ph[c]);
            if (L.conv_t) L.conv_t->add(tap, tau.data() + src * half_, conv_scale, v + L.v_dim);
          }
        a2 *= 2.0 / double(F);  // A_h(p, p) = (2/F) Σ_taps diag
        const double a = std::sqrt(a2), inv = a > 0 ? 1.0 / a : 0.0;
        ws.norm[size_t(r)] = a;
        for (index_t c = 0; c < L.v_dim; ++c) ws.unit[size_t(r * L.v_dim + c)] = v[c] * inv;
      }
      // The ReLU by polynomial sketches of the normalized pre-activations: one tree, two coefficient sets.
      ws.degrees.resize(static_cast<size_t>(cn * (q + 1) * mp));
      L.poly->apply_degrees(ws.unit.data(), cn, ws.degrees.data(), false);
      ws.chunk_phi.resize(static_cast<size_t>(cn * half_));
      ws.chunk_tau.resize(static_cast<size_t>(cn * half_));
      ws.dot.resize(static_cast<size_t>(cn * half_));
      L.comb1->apply(*L.c1, ws.degrees.data(), cn, ws.chunk_phi.data());
      L.comb0->apply(*L.c0, ws.degrees.data(), cn, ws.dot.data());
      // φ_h = a/√2 · Poly_κ1, φ̇_h = Poly_κ0/√2 (nt's ReLU: Σ' = √(Σ11Σ22)·κ1/2, Θ' = Θ·κ0/2).
      for (index_t r = 0; r < cn; ++r) {
        const double s = ws.norm[size_t(r)] * inv_sqrt2;
        float* nphi = ws.next_phi.data() + (o0 + r) * half_;
        for (index_t k = 0; k < half_; ++k) {
          nphi[k] = static_cast<float>(ws.chunk_phi[size_t(r * half_ + k)] * s);
          ws.dot[size_t(r * half_ + k)] *= inv_sqrt2;
        }
        ws.next_diag[size_t(o0 + r)] = ws.norm[size_t(r)] * ws.norm[size_t(r)] / 2.0;  // B_h(p, p)
      }
      L.mix->apply(ws.t.data(), ws.dot.data(), cn, ws.chunk_tau.data(), false);
      std::copy(ws.chunk_tau.begin(), ws.chunk_tau.end(), ws.next_tau.begin() + o0 * half_);
    }
    std::swap(phi, ws.next_phi);
    std::swap(tau, ws.next_tau);
    std::swap(diag, ws.next_diag);
    phi_dim = half_;
    pixels = out_pixels;
  }
  // Global average pooling of both parts; the readout Dense(k) adds them (Θ = Σ_GAP + Θ_GAP).
  for (index_t k = 0; k < 2 * half_; ++k) out[k] = 0.0;
  for (index_t o = 0; o < pixels; ++o)
    for (index_t k = 0; k < half_; ++k) {
      out[k] += double(phi[size_t(o * half_ + k)]) / double(pixels);
      out[half_ + k] += double(tau[size_t(o * half_ + k)]) / double(pixels);
    }
}

}  // namespace ntk
