// What the feature maps (features.cpp, cntk_sketch.cpp) share. Private to the library.
//
// Row checks and the polynomial degree, checked once here with one message.
//
// PolyCombiner: features of a dot-product kernel Σ_j c_j ⟨x, y⟩^j (all c_j ≥ 0) from the degree sketches P_j(x),
// j = 0..q, of one PolySketch tree: the blocks √c_j·P_j(x) joined and mapped to m by one SRHT, so
// E⟨F(x), F(y)⟩ = Σ_j c_j ⟨x, y⟩^j.
//   fourier:  F = SRHT_m([√c_0, √c_1·P_1, ..., √c_q·P_q])
//   hadamard: F = [√c_0, SRHT_{m−1}(√c_1·P_1 ⊕ ... ⊕ √c_q·P_q)]: the constant term is exact, and the
//             transform's length q·poly_dim stays a power of two when poly_dim is one (a leading
//             constant would double it).
#pragma once
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ntk/error.hpp"
#include "ntk/sketch.hpp"

namespace ntk::detail {

// Throws InvalidArgument when row `row` (x, d values) has a NaN or infinite entry, naming both.
inline void check_finite_row(const char* what, const double* x, index_t d, index_t row) {
  if (const index_t j = first_non_finite(x, d); j >= 0)
    throw InvalidArgument(std::string(what) + ": row " + std::to_string(row) + " has a NaN or infinite entry (column " +
                          std::to_string(j) + ")");
}

// Throws InvalidArgument naming the first row (0-based within x) with a NaN or infinite entry.
inline void check_finite_rows(const char* what, const double* x, index_t n, index_t d) {
  if (n < 0) throw InvalidArgument(std::string(what) + ": negative row count");
  for (index_t i = 0; i < n; ++i) check_finite_row(what, x + i * d, d, i);
}

// The degree of a fitted polynomial fed to PolySketch: a power of two (the tree) up to fit_polynomial's 64.
inline int checked_poly_degree(const char* what, int q) {
  if (q < 1 || q > 64 || (q & (q - 1)) != 0)
    throw InvalidArgument(std::string(what) + ": degree must be a power of two between 1 and 64, got " + std::to_string(q));
  return q;
}

class PolyCombiner {
 public:
  PolyCombiner(int degree, index_t poly_dim, index_t output_dim, std::uint64_t seed, std::uint64_t index,
               SketchTransform transform)
      : q_(degree), mp_(poly_dim), m_(output_dim), hadamard_(transform == SketchTransform::hadamard),
        srht_(SketchParams{(hadamard_ ? 0 : 1) + degree * poly_dim, hadamard_ ? output_dim - 1 : output_dim, seed, index,
                           transform}) {}

  index_t output_dim() const { return m_; }

  // degrees (n, q + 1, poly_dim) as PolySketch::apply_degrees writes them; c: q + 1 coefficients;
  // out (n, m). Rows already checked by the caller.
  void apply(const std::vector<double>& c, const double* degrees, index_t n, double* out) const {
    const index_t lead = hadamard_ ? 0 : 1, wide = lead + q_ * mp_, width = srht_.output_dim();
    std::vector<double> stacked(static_cast<size_t>(n * wide)), mapped(static_cast<size_t>(hadamard_ ? n * width : 0));
    for (index_t i = 0; i < n; ++i) {
      double* s = stacked.data() + i * wide;
      const double* dg = degrees + i * (q_ + 1) * mp_;
      if (!hadamard_) s[0] = std::sqrt(c[0]);
      for (index_t j = 1; j <= q_; ++j) {
        const double cj = std::sqrt(c[size_t(j)]);
        for (index_t k = 0; k < mp_; ++k) s[lead + (j - 1) * mp_ + k] = cj * dg[j * mp_ + k];
      }
    }
    if (!hadamard_) {
      srht_.apply(stacked.data(), n, out, false);
      return;
    }
    srht_.apply(stacked.data(), n, mapped.data(), false);
    for (index_t i = 0; i < n; ++i) {
      out[i * m_] = std::sqrt(c[0]);
      std::copy(mapped.begin() + i * width, mapped.begin() + (i + 1) * width, out + i * m_ + 1);
    }
  }

 private:
  index_t q_, mp_, m_;
  bool hadamard_;
  Srht srht_;
};

}  // namespace ntk::detail
