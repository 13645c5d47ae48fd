// Polynomial approximations of the arc-cosine kernel functions, for the sketches that turn a dot-product
// kernel Σ_j c_j ⟨x, y⟩^j into features (PolySketch needs every c_j ≥ 0).
//
// The functions, in the c_σ = 2 convention of REFERENCE.md section 4 (t = cos θ ∈ [−1, 1]):
//   κ0(t) = (π − arccos t)/π,   κ1(t) = (√(1 − t²) + t(π − arccos t))/π,
//   K_L(t): the depth-L ReLU NTK of unit vectors, Σ⁰ = Θ⁰ = t, Σʰ = κ1(Σʰ⁻¹), Θʰ = Θʰ⁻¹·κ0(Σʰ⁻¹) + Σʰ,
//           K_L(1) = L + 1; for any x, y: Θᴸ(x, y) = ‖x‖‖y‖·K_L(cos θ).
#pragma once
#include <functional>
#include <vector>

namespace ntk {

double arccos_kappa0(double t);
double arccos_kappa1(double t);
double relu_ntk_unit(double t, int depth);  // K_L(t), depth L ≥ 1

// Coefficients c_0..c_q of the Taylor series of κ0 resp. κ1 truncated at degree q (all ≥ 0).
std::vector<double> kappa0_taylor(int degree);
std::vector<double> kappa1_taylor(int degree);

struct PolyFitOptions {
  double lo = -1.0, hi = 1.0;  // the interval fitted
  int samples = 400;           // Chebyshev points of [lo, hi] at which the fit is weighted least squares
  // Weight of a sample at t: 1 + toward_hi·(t − lo)/(hi − lo). The sketches' inputs are unit vectors
  // and every kernel's diagonal sits at t = 1, so the upper end is worth more.
  double toward_hi = 1.0;
};

// The degree-q polynomial p minimizing Σ w(t)(p(t) − f(t))² over the samples subject to every coefficient
// ≥ 0 and p' ≥ 0 at every sample (p non-decreasing on [lo, hi]); exact least squares with these linear
// inequality constraints (Lawson and Hanson's LSI → LDP → NNLS reduction; for lo ≥ 0, where c ≥ 0 implies
// monotone, NNLS alone). Returns c_0..c_q.
std::vector<double> fit_polynomial(const std::function<double(double)>& f, int degree, const PolyFitOptions& o = {});

double eval_polynomial(const std::vector<double>& c, double t);

// Non-negative least squares, min ‖A u − b‖ subject to u ≥ 0 (Lawson-Hanson active set). A is rows × cols,
// row-major. Exposed for its tests.
std::vector<double> nnls(const std::vector<double>& a, int rows, int cols, const std::vector<double>& b);

}  // namespace ntk
