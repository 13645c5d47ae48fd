// NTKSketch and NTKRF feature maps (see ntk/features.hpp).
#include "ntk/features.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "entk_detail.hpp"
#include "sketch_detail.hpp"
#include "ntk/error.hpp"
#include "ntk/parallel.hpp"
#include "ntk/polyfit.hpp"
#include "ntk/rng.hpp"

namespace ntk {

namespace {

// Rows per internal batch: the intermediate sketches of a batch are (batch, (q + 1)·poly_dim), so this
// bounds the working memory whatever n is, and still gives every thread rows to work on.
constexpr index_t kBatch = 256;
// NTKRF's batches are larger: each thread's SGEMM packs the whole (m, d) weight matrix once per call, so
// its rows must be many for the packing to cost little beside the product (128 rows per thread
// spent 14% of the time packing at m = 8192).
constexpr index_t kRfBatch = 1024;

std::uint64_t child(const char* map, const char* part, std::uint64_t seed_index) {
  return stream_id((std::string(map) + "." + part + "." + std::to_string(seed_index)).c_str());
}

void check_common(const char* what, index_t d, index_t m, int depth) {
  if (d < 1) throw InvalidArgument(std::string(what) + ": input dimension must be >= 1, got " + std::to_string(d));
  if (depth < 1) throw InvalidArgument(std::string(what) + ": depth must be >= 1, got " + std::to_string(depth));
  if (m < 2 || m % 2 != 0)
    throw InvalidArgument(std::string(what) + ": feature dimension must be even and >= 2, got " + std::to_string(m));
}

index_t poly_width(const NtkSketchParams& p) {
  if (p.poly_dim < 0 || p.poly_dim % 2 != 0)
    throw InvalidArgument("NTKSketch: the PolySketch width must be even, got " + std::to_string(p.poly_dim));
  if (p.poly_dim > 0) return p.poly_dim;
  const index_t w = (p.output_dim / 4 + 1) / 2 * 2;
  return std::max<index_t>(2, w);
}

}  // namespace

// ---- NtkSketch ----

NtkSketch::NtkSketch(const NtkSketchParams& p)
    : d_(p.input_dim),
      m_(p.output_dim),
      mp_((check_common("NTKSketch", p.input_dim, p.output_dim, p.depth), poly_width(p))),
      q_(detail::checked_poly_degree("NTKSketch", p.degree)),
      coef_(fit_polynomial([depth = p.depth](double t) { return relu_ntk_unit(t, depth); }, q_)),
      poly_(PolySketchParams{d_, mp_, q_, p.seed, child("ntk_sketch", "poly", 0), p.transform}),
      combine_(std::make_unique<detail::PolyCombiner>(q_, mp_, m_, p.seed, child("ntk_sketch", "combine", 0), p.transform)) {}

NtkSketch::~NtkSketch() = default;

std::uint64_t NtkSketch::memory_bytes(const NtkSketchParams& p, int threads) {
  const auto d = std::uint64_t(std::max<index_t>(p.input_dim, 1)), m = std::uint64_t(std::max<index_t>(p.output_dim, 2));
  const std::uint64_t mp = std::uint64_t(poly_width(p)), q = std::uint64_t(std::max(p.degree, 1));
  // The tree's random signs, picks and constant samples; a batch's unit rows, degree sketches and
  // combined rows; each thread's transform buffers and cached samples (2 per node).
  const std::uint64_t tree = q * (4 * d + 6 * mp) * 8, batch = std::uint64_t(kBatch) * (d + (2 * q + 1) * mp + 2 * m) * 8;
  const std::uint64_t per_thread = (8 * std::max(d, q * mp) + 2 * q * mp) * 8;
  return tree + batch + std::uint64_t(std::max(threads, 1)) * per_thread;
}
NtkSketch::NtkSketch(NtkSketch&&) noexcept = default;

void NtkSketch::transform(const double* x, index_t n, double* out) const {
  detail::check_finite_rows("NTKSketch", x, n, d_);
  std::vector<double> unit, degrees;
  std::vector<double> norms;
  for (index_t b0 = 0; b0 < n; b0 += kBatch) {
    const index_t nb = std::min(kBatch, n - b0);
    unit.assign(size_t(nb * d_), 0.0);
    norms.assign(size_t(nb), 0.0);
    for (index_t i = 0; i < nb; ++i) {
      const double* xi = x + (b0 + i) * d_;
      double s = 0.0;
      for (index_t j = 0; j < d_; ++j) s += xi[j] * xi[j];
      s = std::sqrt(s);
      norms[size_t(i)] = s;
      if (s > 0.0)
        for (index_t j = 0; j < d_; ++j) unit[size_t(i * d_ + j)] = xi[j] / s;
    }
    degrees.resize(size_t(nb * (q_ + 1) * mp_));
    poly_.apply_degrees(unit.data(), nb, degrees.data(), false);
    double* o = out + b0 * m_;
    combine_->apply(coef_, degrees.data(), nb, o);
    // The kernel is homogeneous of degree one in each argument: scale back by ‖x‖, and by 1/√d for
    // neural-tangents' convention. A zero row has zero features (its kernel with anything is 0).
    for (index_t i = 0; i < nb; ++i) {
      const double s = norms[size_t(i)] / std::sqrt(double(d_));
      for (index_t k = 0; k < m_; ++k) o[i * m_ + k] *= s;
    }
  }
}

// ---- NtkRandomFeatures ----

std::uint64_t NtkRandomFeatures::memory_bytes(const NtkRandomFeaturesParams& p, int threads) {
  const auto d = std::uint64_t(std::max<index_t>(p.input_dim, 1)), m = std::uint64_t(std::max<index_t>(p.output_dim, 2));
  const std::uint64_t m1 = p.relu_dim > 0 ? std::uint64_t(p.relu_dim) : m / 2, m0 = p.step_dim > 0 ? std::uint64_t(p.step_dim) : m1;
  // The float32 weights of both feature kinds per layer, a batch's z, ψ, step, next z and mixed rows,
  // each thread's SGEMM rows and the TensorSRHTs' transform buffers.
  std::uint64_t weights = 0, z = d;
  const std::uint64_t projected = p.shared_projection ? m1 : m0 + m1;  // rows of the layers' weights
  for (int h = 0; h < std::max(p.depth, 1); ++h, z = m1) weights += projected * z * 4 + projected * 8;
  const std::uint64_t batch = std::uint64_t(kRfBatch) * (std::max(d, m1) + m + m0 + m1 + m) * 8;
  const std::uint64_t rows = std::uint64_t(kRfBatch) / std::uint64_t(std::max(threads, 1)) + 1;
  const std::uint64_t per_thread = rows * (std::max(d, m1) + std::max(m0, m1)) * 4 + 12 * std::max(m, d) * 8;
  return weights + batch + std::uint64_t(std::max(threads, 1)) * per_thread;
}

NtkRandomFeatures::NtkRandomFeatures(const NtkRandomFeaturesParams& p) : d_(p.input_dim), shared_(p.shared_projection) {
  check_common("NTKRF", p.input_dim, p.output_dim, p.depth);
  m1_ = p.relu_dim > 0 ? p.relu_dim : p.output_dim / 2;
  ms_ = p.output_dim - m1_;
  m0_ = p.step_dim > 0 ? p.step_dim : m1_;
  if (shared_ && m0_ != m1_)
    throw InvalidArgument("NTKRF: shared projections give as many step features as ReLU features (" + std::to_string(m1_) +
                          "), not " + std::to_string(m0_) + "; separate projections (--separate-projections) allow other counts");
  if (m1_ < 1 || ms_ < 2 || ms_ % 2 != 0)
    throw InvalidArgument("NTKRF: the feature dimension " + std::to_string(p.output_dim) + " minus the ReLU features " +
                          std::to_string(m1_) + " must leave an even number >= 2 for the tensor sketch");
  index_t z_dim = d_, psi_dim = d_;
  for (int h = 0; h < p.depth; ++h) {
    const auto layer = std::uint64_t(h);
    if (!shared_) step_.emplace_back(ArcCosineParams{z_dim, m0_, 0, p.seed, child("ntkrf", "step", layer)});
    relu_.emplace_back(ArcCosineParams{z_dim, m1_, 1, p.seed, child("ntkrf", "relu", layer), p.leverage});
    mix_.emplace_back(TensorSketchParams{psi_dim, m0_, ms_, p.seed, child("ntkrf", "mix", layer), p.transform});
    z_dim = m1_;
    psi_dim = m1_ + ms_;
  }
}

void NtkRandomFeatures::transform(const double* x, index_t n, double* out) const {
  detail::check_finite_rows("NTKRF", x, n, d_);
  const index_t m = m1_ + ms_;
  std::vector<double> z, psi, step, next_z, mixed;
  for (index_t b0 = 0; b0 < n; b0 += kRfBatch) {
    const index_t nb = std::min(kRfBatch, n - b0);
    z.assign(x + b0 * d_, x + (b0 + nb) * d_);
    psi = z;
    for (size_t h = 0; h < relu_.size(); ++h) {
      step.resize(size_t(nb * m0_));
      next_z.resize(size_t(nb * m1_));
      if (shared_) {
        relu_[h].apply_pair(z.data(), nb, next_z.data(), step.data());
      } else {
        step_[h].apply(z.data(), nb, step.data(), false);
        relu_[h].apply(z.data(), nb, next_z.data(), false);
      }
      mixed.resize(size_t(nb * ms_));
      mix_[h].apply(psi.data(), step.data(), nb, mixed.data(), false);
      psi.resize(size_t(nb * m));
      for (index_t i = 0; i < nb; ++i) {
        std::copy(next_z.begin() + i * m1_, next_z.begin() + (i + 1) * m1_, psi.begin() + i * m);
        std::copy(mixed.begin() + i * ms_, mixed.begin() + (i + 1) * ms_, psi.begin() + i * m + m1_);
      }
      std::swap(z, next_z);
    }
    const double s = 1.0 / std::sqrt(double(d_));
    for (index_t k = 0; k < nb * m; ++k) out[b0 * m + k] = s * psi[size_t(k)];
  }
}

// ---- GradientSketch ----

std::uint64_t GradientSketch::memory_bytes(const Network& net, const GradientSketchParams& p, int threads) {
  const auto P = std::uint64_t(net.num_params()), m = std::uint64_t(std::max<index_t>(p.output_dim, 2));
  const std::uint64_t K = p.mode.kind == EntkMode::full ? std::uint64_t(net.output_size()) : 1;
  // A copy of the parameters, the projection's signs and picks (or hashes), and per thread one group's
  // gradients (8 examples x K directions x P), the backward pass's activations (bounded by the same
  // order) and the transform buffers (the FFT of a P-vector padded, complex).
  const std::uint64_t per_thread = 2 * 8 * K * P * 8 + 6 * P * 8;
  return P * 8 + P * 16 + m * 8 + std::uint64_t(std::max(threads, 1)) * per_thread;
}

GradientSketch::GradientSketch(const Network& net, std::vector<double> params, const GradientSketchParams& p)
    : net_(net), theta_(std::move(params)), m_(p.output_dim), directions_(0), mode_(p.mode) {
  if (mode_.kind != EntkMode::pntk && mode_.kind != EntkMode::logit && mode_.kind != EntkMode::full)
    throw InvalidArgument("gradient sketch: mode must be pntk, logit=K or full (each a Gram matrix of gradients), got " +
                          to_string(mode_));
  if (index_t(theta_.size()) != net.num_params())
    throw InvalidArgument("gradient sketch: " + std::to_string(theta_.size()) + " parameters for a network of " +
                          std::to_string(net.num_params()));
  if (mode_.kind == EntkMode::logit && (mode_.logit_index < 0 || mode_.logit_index >= net.output_size()))
    throw InvalidArgument("gradient sketch: logit=" + std::to_string(mode_.logit_index) + " is outside the network's " +
                          std::to_string(net.output_size()) + " outputs");
  directions_ = mode_.kind == EntkMode::full ? net.output_size() : 1;
  const index_t P = net.num_params();
  const std::uint64_t index = stream_id("gradient_sketch");
  if (p.projection == GradientProjection::countsketch)
    count_ = std::make_unique<CountSketch>(SketchParams{P, m_, p.seed, index});
  else
    srht_ = std::make_unique<Srht>(SketchParams{P, m_, p.seed, index,
                                                p.projection == GradientProjection::hadamard ? SketchTransform::hadamard
                                                                                             : SketchTransform::fourier});
}

void GradientSketch::transform(const double* x, index_t n, double* out) const {
  const index_t d = net_.input_size(), P = net_.num_params(), K = directions_;
  detail::check_finite_rows("gradient sketch", x, n, d);
  const auto dirs = detail::directions_for<double>(mode_, net_.output_size());
  // Groups of examples share one backward pass (jacobian_rows); each thread projects its own rows, so a
  // row's features depend only on that row.
  constexpr index_t kGroup = 8;
  parallel_for((n + kGroup - 1) / kGroup, [&](index_t b, index_t e) {
    std::vector<double> g;
    for (index_t grp = b; grp < e; ++grp) {
      const index_t lo = grp * kGroup, cnt = std::min(kGroup, n - lo);
      g.resize(size_t(cnt * K * P));
      detail::jacobian_rows(net_, theta_.data(), x + lo * d, cnt, dirs, g.data());
      if (count_) count_->apply(g.data(), cnt * K, out + lo * K * m_);
      else srht_->apply(g.data(), cnt * K, out + lo * K * m_, false);
    }
  });
}

}  // namespace ntk
