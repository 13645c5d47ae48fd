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

}  // namespace

struct CntkSketch::Layer {
  index_t in_h = 0, in_w = 0, out_h = 0, out_w = 0, pad_top = 0, pad_left = 0;
  index_t phi_in = 0;  // width of φ_{h−1}: C, then m/2
  index_t v_dim = 0;   // F·phi_in when kept exact, else the sketch width
  index_t t_dim = 0;
  std::unique_ptr<CountSketch> conv_v, conv_t;  // conv_v null: v exact; conv_t null: first layer
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
      L->conv_v = std::make_unique<CountSketch>(SketchParams{cat, sketch_dim_, p.seed, part("conv_v", l)});
    }
    L->t_dim = L->v_dim;
    if (l > 0) {
      L->conv_t = std::make_unique<CountSketch>(SketchParams{F * half_, sketch_dim_, p.seed, part("conv_t", l)});
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

void CntkSketch::transform(const double* x, index_t n, double* out) const {
  const index_t d = p_.height * p_.width * p_.channels;
  detail::check_finite_rows("CNTKSketch", x, n, d);
  // One image at a time, its pixels on all threads: every pixel's features are a pure function of the
  // image, so the output does not depend on the thread count.
  for (index_t i = 0; i < n; ++i) image(x + i * d, out + i * output_dim());
}

void CntkSketch::image(const double* x, double* out) const {
  const index_t F = index_t(p_.filter) * p_.filter, C = p_.channels, q = p_.degree, mp = poly_dim_;
  const double conv_scale = std::sqrt(2.0 / double(F));
  // φ_{h−1} and its squared norms' exact counterparts (the diagonal of the NNGP feeding layer h), and
  // τ_{h−1} (absent before the first layer).
  index_t pixels = p_.height * p_.width, phi_dim = C;
  std::vector<double> phi(static_cast<size_t>(pixels * C)), diag(static_cast<size_t>(pixels)), tau;
  for (index_t k = 0; k < pixels; ++k) {
    double s = 0;
    for (index_t c = 0; c < C; ++c) {
      phi[size_t(k * C + c)] = x[k * C + c] / std::sqrt(double(C));
      s += x[k * C + c] * x[k * C + c];
    }
    diag[size_t(k)] = s / double(C);  // Σ⁰(p, p) = ‖x_p‖²/C
  }
  for (const auto& Lp : layers_) {
    const Layer& L = *Lp;
    const index_t out_pixels = L.out_h * L.out_w;
    std::vector<double> unit(static_cast<size_t>(out_pixels * L.v_dim)), norm(static_cast<size_t>(out_pixels));
    std::vector<double> t(static_cast<size_t>(out_pixels * L.t_dim));
    // Pre-activations: the taps' features stacked (and sketched), the exact diagonal, the NTK input.
    parallel_for(out_pixels, [&](index_t begin, index_t end) {
      for (index_t o = begin; o < end; ++o) {
        const index_t oy = o / L.out_w, ox = o % L.out_w;
        double* v = t.data() + o * L.t_dim;  // v_h(p) is the first part of t_h(p)
        std::fill(v, v + L.t_dim, 0.0);
        double a2 = 0;
        // The stacked taps [√(2/F)·φ(p + δ)]_δ go straight into their CountSketch block by block (it is
        // linear and separable by coordinate), or are copied when kept exact; taps outside add nothing.
        for (index_t dy = 0; dy < p_.filter; ++dy)
          for (index_t dx = 0; dx < p_.filter; ++dx) {
            const index_t iy = oy + dy - L.pad_top, ix = ox + dx - L.pad_left, tap = dy * p_.filter + dx;
            if (iy < 0 || iy >= L.in_h || ix < 0 || ix >= L.in_w) continue;
            const index_t src = iy * L.in_w + ix;
            a2 += diag[size_t(src)];
            const double* ph = phi.data() + src * phi_dim;
            if (L.conv_v)
              L.conv_v->add_block(tap * phi_dim, ph, phi_dim, conv_scale, v);
            else
              for (index_t c = 0; c < phi_dim; ++c) v[tap * phi_dim + c] = conv_scale * ph[c];
            if (L.conv_t) L.conv_t->add_block(tap * half_, tau.data() + src * half_, half_, conv_scale, v + L.v_dim);
          }
        a2 *= 2.0 / double(F);  // A_h(p, p) = (2/F) Σ_taps diag
        const double a = std::sqrt(a2);
        norm[size_t(o)] = a;
        for (index_t c = 0; c < L.v_dim; ++c) unit[size_t(o * L.v_dim + c)] = a > 0 ? v[c] / a : 0.0;
      }
    });
    // The ReLU by polynomial sketches of the normalized pre-activations: one tree, two coefficient sets.
    std::vector<double> degrees(static_cast<size_t>(out_pixels * (q + 1) * mp));
    L.poly->apply_degrees(unit.data(), out_pixels, degrees.data(), false);
    unit = {};
    std::vector<double> next_phi(static_cast<size_t>(out_pixels * half_)), dot(next_phi.size());
    L.comb1->apply(*L.c1, degrees.data(), out_pixels, next_phi.data());
    L.comb0->apply(*L.c0, degrees.data(), out_pixels, dot.data());
    degrees = {};
    // φ_h = a/√2 · Poly_κ1, φ̇_h = Poly_κ0/√2 (nt's ReLU: Σ' = √(Σ11Σ22)·κ1/2, Θ' = Θ·κ0/2).
    for (index_t o = 0; o < out_pixels; ++o)
      for (index_t k = 0; k < half_; ++k) {
        next_phi[size_t(o * half_ + k)] *= norm[size_t(o)] / std::sqrt(2.0);
        dot[size_t(o * half_ + k)] /= std::sqrt(2.0);
      }
    std::vector<double> next_tau(static_cast<size_t>(out_pixels * half_));
    L.mix->apply(t.data(), dot.data(), out_pixels, next_tau.data(), false);
    phi = std::move(next_phi);
    tau = std::move(next_tau);
    phi_dim = half_;
    diag.resize(size_t(out_pixels));
    for (index_t o = 0; o < out_pixels; ++o) diag[size_t(o)] = norm[size_t(o)] * norm[size_t(o)] / 2.0;  // B_h(p, p)
    pixels = out_pixels;
  }
  // Global average pooling of both parts; the readout Dense(k) adds them (Θ = Σ_GAP + Θ_GAP).
  for (index_t k = 0; k < 2 * half_; ++k) out[k] = 0.0;
  for (index_t o = 0; o < pixels; ++o)
    for (index_t k = 0; k < half_; ++k) {
      out[k] += phi[size_t(o * half_ + k)] / double(pixels);
      out[half_ + k] += tau[size_t(o * half_ + k)] / double(pixels);
    }
}

}  // namespace ntk
