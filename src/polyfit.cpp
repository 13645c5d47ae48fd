// Constrained polynomial fits of the arc-cosine kernel functions (see ntk/polyfit.hpp).
#include "ntk/polyfit.hpp"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "ntk/error.hpp"

namespace ntk {

namespace {
constexpr double kPi = 3.14159265358979323846;
double clamp_unit(double t) { return std::min(1.0, std::max(-1.0, t)); }
using Mat = Eigen::MatrixXd;
using Vec = Eigen::VectorXd;
}  // namespace

double arccos_kappa0(double t) { return (kPi - std::acos(clamp_unit(t))) / kPi; }

double arccos_kappa1(double t) {
  t = clamp_unit(t);
  return (std::sqrt(std::max(0.0, 1.0 - t * t)) + t * (kPi - std::acos(t))) / kPi;
}

double relu_ntk_unit(double t, int depth) {
  if (depth < 1) throw InvalidArgument("relu_ntk_unit: depth must be >= 1, got " + std::to_string(depth));
  double sigma = clamp_unit(t), theta = sigma;
  for (int h = 0; h < depth; ++h) {
    const double next = arccos_kappa1(sigma);
    theta = theta * arccos_kappa0(sigma) + next;
    sigma = next;
  }
  return theta;
}

namespace {
// b_i = (2i)! / (4^i (i!)²), the central binomial coefficient over 4^i.
std::vector<double> half_binomials(int count) {
  std::vector<double> b(static_cast<size_t>(std::max(count, 1)), 1.0);
  for (int i = 1; i < count; ++i) b[size_t(i)] = b[size_t(i - 1)] * double(2 * i - 1) / double(2 * i);
  return b;
}

void check_degree(const char* what, int q) {
  if (q < 0 || q > 64) throw InvalidArgument(std::string(what) + ": degree must be in [0, 64], got " + std::to_string(q));
}
}  // namespace

std::vector<double> kappa0_taylor(int degree) {
  // κ0(t) = 1/2 + arcsin(t)/π = 1/2 + (1/π) Σ_i b_i t^(2i+1)/(2i+1).
  check_degree("kappa0_taylor", degree);
  std::vector<double> c(size_t(degree + 1), 0.0);
  c[0] = 0.5;
  const auto b = half_binomials(degree);
  for (int i = 0; 2 * i + 1 <= degree; ++i) c[size_t(2 * i + 1)] = b[size_t(i)] / (double(2 * i + 1) * kPi);
  return c;
}

std::vector<double> kappa1_taylor(int degree) {
  // κ1 is the antiderivative of κ0 with κ1(0) = 1/π: 1/π + t/2 + (1/π) Σ_i b_i t^(2i+2)/((2i+1)(2i+2)).
  check_degree("kappa1_taylor", degree);
  std::vector<double> c(size_t(degree + 1), 0.0);
  c[0] = 1.0 / kPi;
  if (degree >= 1) c[1] = 0.5;
  const auto b = half_binomials(degree);
  for (int i = 0; 2 * i + 2 <= degree; ++i)
    c[size_t(2 * i + 2)] = b[size_t(i)] / (double(2 * i + 1) * double(2 * i + 2) * kPi);
  return c;
}

double eval_polynomial(const std::vector<double>& c, double t) {
  double v = 0.0;
  for (auto it = c.rbegin(); it != c.rend(); ++it) v = v * t + *it;
  return v;
}

std::vector<double> nnls(const std::vector<double>& a_rows, int rows, int cols, const std::vector<double>& b_in) {
  if (rows < 1 || cols < 1 || a_rows.size() != size_t(rows) * size_t(cols) || b_in.size() != size_t(rows))
    throw InvalidArgument("nnls: inconsistent sizes");
  const Mat a = Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(a_rows.data(), rows, cols);
  const Vec b = Eigen::Map<const Vec>(b_in.data(), rows);
  const double tol = 10.0 * std::numeric_limits<double>::epsilon() * a.cwiseAbs().maxCoeff() * double(std::max(rows, cols));
  Vec x = Vec::Zero(cols);
  std::vector<bool> passive(size_t(cols), false);
  // The least-squares solution on the passive columns, zero elsewhere.
  auto solve_passive = [&]() {
    std::vector<int> idx;
    for (int j = 0; j < cols; ++j)
      if (passive[size_t(j)]) idx.push_back(j);
    Vec z = Vec::Zero(cols);
    if (idx.empty()) return z;  // every column left the passive set: the solution on it is 0
    Mat ap(rows, Eigen::Index(idx.size()));
    for (size_t k = 0; k < idx.size(); ++k) ap.col(Eigen::Index(k)) = a.col(idx[k]);
    const Vec zp = ap.colPivHouseholderQr().solve(b);
    for (size_t k = 0; k < idx.size(); ++k) z[idx[k]] = zp[Eigen::Index(k)];
    return z;
  };
  for (int outer = 0; outer < 3 * cols + 10; ++outer) {
    const Vec w = a.transpose() * (b - a * x);
    int best = -1;
    for (int j = 0; j < cols; ++j)
      if (!passive[size_t(j)] && w[j] > tol && (best < 0 || w[j] > w[best])) best = j;
    if (best < 0) break;
    passive[size_t(best)] = true;
    for (int inner = 0; inner < 3 * cols + 10; ++inner) {
      const Vec z = solve_passive();
      bool feasible = true;
      double alpha = 1.0;
      for (int j = 0; j < cols; ++j)
        if (passive[size_t(j)] && z[j] <= 0.0) {
          feasible = false;
          alpha = std::min(alpha, x[j] / (x[j] - z[j]));
        }
      if (feasible) {
        x = z;
        break;
      }
      x += alpha * (z - x);
      for (int j = 0; j < cols; ++j)
        if (passive[size_t(j)] && x[j] <= tol) {
          passive[size_t(j)] = false;
          x[j] = 0.0;
        }
    }
  }
  return {x.data(), x.data() + cols};
}

std::vector<double> fit_polynomial(const std::function<double(double)>& f, int degree, const PolyFitOptions& o) {
  check_degree("fit_polynomial", degree);
  if (!(o.lo < o.hi) || o.lo < -1.0 || o.hi > 1.0)
    throw InvalidArgument("fit_polynomial: the interval must satisfy -1 <= lo < hi <= 1");
  if (o.samples < 2 * (degree + 1)) throw InvalidArgument("fit_polynomial: too few samples for the degree");
  const int n = degree + 1, s = o.samples;
  // Chebyshev points of [lo, hi] (they include neither end, so the endpoints' kinks of κ0 and κ1 at
  // t = ±1 do not dominate), weighted toward hi.
  Mat e(s, n), g(n + s, n);
  Vec rhs(s);
  g.setZero();
  g.topRows(n).setIdentity();  // c_j ≥ 0
  for (int k = 0; k < s; ++k) {
    const double u = std::cos(kPi * (double(k) + 0.5) / double(s));  // in (−1, 1)
    const double t = 0.5 * (o.lo + o.hi) + 0.5 * (o.hi - o.lo) * u;
    const double w = std::sqrt(1.0 + o.toward_hi * (t - o.lo) / (o.hi - o.lo));
    double p = 1.0;
    for (int j = 0; j < n; ++j) {
      e(k, j) = w * p;
      if (j + 1 < n) g(n + k, j + 1) = double(j + 1) * p;  // p'(t) ≥ 0
      p *= t;
    }
    rhs[k] = w * f(t);
  }
  // On [lo, hi] with lo ≥ 0 every monomial is non-negative and non-decreasing, so c ≥ 0 already makes p
  // monotone: plain NNLS on the weighted design matrix, which stays accurate where the monomials are
  // nearly collinear (a short interval near 1, as deep layers fit) and the LDP route below loses digits.
  if (o.lo >= 0.0) {
    std::vector<double> a(static_cast<size_t>(s) * size_t(n)), b(static_cast<size_t>(s));
    for (int k = 0; k < s; ++k) {
      for (int j = 0; j < n; ++j) a[size_t(k) * size_t(n) + size_t(j)] = e(k, j);
      b[size_t(k)] = rhs[k];
    }
    return nnls(a, s, n, b);
  }
  // LSI → LDP: with E = QR, z = Rc − Qᵀf turns min ‖Ec − f‖ s.t. Gc ≥ 0 into min ‖z‖ s.t. Ĝz ≥ ĥ, where
  // Ĝ = GR⁻¹ and ĥ = −Ĝ Qᵀf. The LDP's solution is z = −r_{1..n}/r_{n+1}, r the residual of the NNLS
  // problem min ‖[Ĝᵀ; ĥᵀ]u − e_{n+1}‖, u ≥ 0 (Lawson and Hanson, Solving Least Squares Problems, ch. 23).
  Eigen::HouseholderQR<Mat> qr(e);
  const Mat r = qr.matrixQR().topRows(n).triangularView<Eigen::Upper>();
  const Vec f1 = (qr.householderQ().transpose() * rhs).head(n);
  const Mat ghat = r.transpose().triangularView<Eigen::Lower>().solve(g.transpose()).transpose();  // G R⁻¹
  const Vec hhat = -ghat * f1;
  const int mc = int(ghat.rows());
  std::vector<double> a(size_t(n + 1) * size_t(mc)), b(size_t(n + 1), 0.0);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < mc; ++j) a[size_t(i) * size_t(mc) + size_t(j)] = ghat(j, i);
  for (int j = 0; j < mc; ++j) a[size_t(n) * size_t(mc) + size_t(j)] = hhat[j];
  b[size_t(n)] = 1.0;
  const std::vector<double> u = nnls(a, n + 1, mc, b);
  Vec resid = -Eigen::Map<const Vec>(b.data(), n + 1);
  for (int j = 0; j < mc; ++j)
    for (int i = 0; i <= n; ++i) resid[i] += a[size_t(i) * size_t(mc) + size_t(j)] * u[size_t(j)];
  if (std::abs(resid[n]) < 1e-300) throw Error("fit_polynomial: constraints infeasible");  // c = 0 is feasible: cannot happen
  const Vec z = -resid.head(n) / resid[n];
  Vec c = r.triangularView<Eigen::Upper>().solve(z + f1);
  // The LDP solution satisfies the constraints up to rounding; make c ≥ 0 exact, which PolySketch needs.
  std::vector<double> out(static_cast<size_t>(n));
  for (int j = 0; j < n; ++j) out[size_t(j)] = std::max(0.0, c[j]);
  return out;
}

}  // namespace ntk
