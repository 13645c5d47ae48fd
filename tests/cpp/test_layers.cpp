// The layer harness: every layer (and residual / deep networks) registers a case here, and each
// case runs the same oracles: shapes and parameter counts written out by hand, the adjoint
// identity <JVP(v), u> = <v, VJP(u)> for input and parameter parts, JVP against central finite
// differences in float64, per-example VJP rows summing to the batched VJP, float32 vs float64,
// the three eNTK methods (JC = VP = SD) on the case and on the case embedded between random
// layers, and the infinite-width kernel rule against a Monte Carlo average of a wide variant.
// Adding a layer or combinator = one case line below; the wide variant is derived from it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <set>

#include "harness.hpp"
#include "ntk/empirical.hpp"
#include "ntk/error.hpp"
#include "ntk/infinite.hpp"
#include "ntk/network.hpp"

namespace ntk {
namespace {

struct LayerCase {
  std::string name;
  std::string spec;
  Shape input_shape;
  Shape output_shape;   // by hand
  index_t num_params;   // by hand
  NetworkDefaults defaults{};
};

void PrintTo(const LayerCase& c, std::ostream* os) { *os << c.spec; }

NetworkDefaults with_bias(double b_std, Parameterization p = Parameterization::ntk, double W_std = 1.0) {
  return {W_std, b_std, p};
}

const auto kStd = Parameterization::standard;

std::vector<LayerCase> layer_cases() {
  std::string deep = "Dense(12, b_std=0.1)";
  for (int i = 0; i < 8; ++i) deep += ", Tanh, Dense(12, W_std=1.5, b_std=0.1)";  // 17 layers
  std::string deep_conv = "Conv(3, 3, padding=SAME, b_std=0.1)";
  for (int i = 0; i < 8; ++i) deep_conv += ", Relu, Conv(3, 3, padding=SAME, W_std=1.4)";
  return {
      // Dense: (in*out + out) parameters.
      {"Dense", "Dense(5)", {7}, {5}, 35},
      {"DenseBias", "Dense(5, W_std=1.3, b_std=0.2)", {7}, {5}, 40},
      {"DenseStandard", "Dense(5, b_std=0.5, parameterization=standard)", {7}, {5}, 40},
      {"DenseZeroBias", "Dense(3, b_std=0)", {4}, {3}, 15},
      {"DenseOnImages", "Dense(4, b_std=0.1)", {3, 2, 5}, {3, 2, 4}, 24},
      {"DenseDefaults", "Dense(6)", {4}, {6}, 30, with_bias(0.3, kStd, 2.0)},
      // Conv: kh*kw*Cin*Cout (+ Cout).
      {"ConvValid", "Conv(4, 3)", {6, 5, 2}, {4, 3, 4}, 72},
      {"ConvSame", "Conv(3, 3, padding=SAME, b_std=0.1)", {5, 5, 2}, {5, 5, 3}, 57},
      {"ConvStride", "Conv(3, 3, stride=2, padding=SAME)", {7, 6, 2}, {4, 3, 3}, 54},
      {"ConvRect", "Conv(2, 3x5, stride=2x1, b_std=0.3, parameterization=standard)", {7, 8, 3}, {3, 4, 2}, 92},
      {"ConvSameEvenKernel", "Conv(2, 2x4, padding=SAME)", {5, 6, 1}, {5, 6, 2}, 16},
      // Integer padding as PyTorch writes it: p zeros on each side, floor((in + 2p − k)/s) + 1
      // outputs. 7x6, stride 2, padding=1: (7 + 2 − 3)/2 + 1 = 4, (6 + 2 − 3)/2 + 1 = 3, the sizes
      // of ConvStride's SAME, but with a leading zero column where SAME has none (its odd padding
      // pixel goes after), so the two place every window differently along the width.
      {"ConvPad1Stride2", "Conv(3, 3, stride=2, padding=1, b_std=0.1)", {7, 6, 2}, {4, 3, 3}, 57},
      // ResNet's stem filter on a small image: (5 + 6 − 7)/2 + 1 = 3, (6 + 6 − 7)/2 + 1 = 3.
      {"ConvPad3Kernel7", "Conv(2, 7, stride=2, padding=3)", {5, 6, 1}, {3, 3, 2}, 98},
      // Rows padded, columns not; stride 1 (the shifted-GEMM VJP with unequal margins, and the
      // offset path): (4 + 2 − 3) + 1 = 4, 5 − 3 + 1 = 3.
      {"ConvPad1x0", "Conv(2, 3, padding=1x0, b_std=0.2)", {4, 5, 2}, {4, 3, 2}, 38},
      // An even kernel with padding k/2 grows the image by one pixel: 3 + 2 − 2 + 1 = 4, 4 + 1 = 5
      // (more zero margin than SAME ever has; the offset path must stand aside for it).
      {"ConvPadEvenKernel", "Conv(2, 2, padding=1, b_std=0.1)", {3, 4, 1}, {4, 5, 2}, 10},
      // Activations: shape-preserving, no parameters.
      {"Relu", "Relu", {9}, {9}, 0},
      {"LeakyRelu", "LeakyRelu(0.2)", {9}, {9}, 0},
      {"Abs", "Abs", {9}, {9}, 0},
      {"Erf", "Erf", {9}, {9}, 0},
      {"Gelu", "Gelu", {9}, {9}, 0},
      {"Tanh", "Tanh", {9}, {9}, 0},
      {"Sigmoid", "Sigmoid", {9}, {9}, 0},
      {"Identity", "Identity", {2, 3, 2}, {2, 3, 2}, 0},
      // Pooling and reshaping.
      {"AvgPool", "AvgPool(2)", {6, 5, 3}, {3, 2, 3}, 0},
      {"AvgPoolSame", "AvgPool(3, stride=2, padding=SAME)", {5, 6, 2}, {3, 3, 2}, 0},
      {"AvgPoolRect", "AvgPool(2x3, stride=1)", {4, 5, 2}, {3, 3, 2}, 0},
      // Integer padding, the zeros counted in the mean (PyTorch's count_include_pad=True):
      // (5 + 2 − 3)/2 + 1 = 3, (6 + 2 − 3)/2 + 1 = 3; then rows only, growing: 3 + 2 − 2 + 1 = 4.
      {"AvgPoolPad", "AvgPool(3, stride=2, padding=1)", {5, 6, 2}, {3, 3, 2}, 0},
      {"AvgPoolPadRect", "AvgPool(2x3, stride=1, padding=1x0)", {3, 4, 2}, {4, 2, 2}, 0},
      // MaxPool: windows as AvgPool's; padding never wins the max. (6 − 2)/2 + 1 = 3, (5 − 2)/2 + 1 = 2;
      // ResNet's stem pool: (5 + 2 − 3)/2 + 1 = 3, (6 + 2 − 3)/2 + 1 = 3; SAME stride 1 keeps 4x5.
      {"MaxPool", "MaxPool(2)", {6, 5, 3}, {3, 2, 3}, 0},
      {"MaxPoolPad", "MaxPool(3, stride=2, padding=1)", {5, 6, 2}, {3, 3, 2}, 0},
      {"MaxPoolSameRect", "MaxPool(2x3, stride=1, padding=SAME)", {4, 5, 2}, {4, 5, 2}, 0},
      {"GlobalAvgPool", "GlobalAvgPool", {4, 3, 5}, {5}, 0},
      {"Flatten", "Flatten", {3, 2, 4}, {24}, 0},
      // BatchNorm (inference): γ, β trainable and μ, σ² frozen, C each.
      {"BatchNorm", "BatchNorm", {7}, {7}, 28},
      {"BatchNormImages", "BatchNorm(eps=0.001)", {3, 2, 5}, {3, 2, 5}, 20},
      {"LayerNorm", "LayerNorm", {6}, {6}, 0},
      {"LayerNormImages", "LayerNorm", {3, 2, 5}, {3, 2, 5}, 0},
      // Networks.
      {"Mlp", "Dense(8, b_std=0.1), Relu, Dense(8, b_std=0.1), Gelu, Dense(3, b_std=0.1)", {6}, {3}, 56 + 72 + 27},
      {"Cnn", "Conv(4, 3, padding=SAME, b_std=0), Relu, Conv(4, 3, b_std=0), Erf, GlobalAvgPool, Dense(3, b_std=0)",
       {6, 6, 1}, {3}, 40 + 148 + 15},
      {"CnnFlatten", "Conv(3, 3, stride=2), Sigmoid, AvgPool(2, padding=SAME), Flatten, Dense(2)", {9, 9, 2}, {2}, 54 + 12 * 2},
      {"Residual", "Dense(6, b_std=0.1), Residual(Relu, Dense(6, b_std=0.1)), Relu, Dense(2)", {4}, {2}, 30 + 42 + 12},
      // Residual with a projection shortcut: block(x) + shortcut(x). Dense(6) 4·6; block Dense(5)
      // 6·5; shortcut Dense(5) 6·5; readout 5·2 (no biases: the default b_std is none).
      {"ResidualShortcut", "Dense(6), Residual(Relu, Dense(5), shortcut=[Dense(5)]), Relu, Dense(2)", {4}, {2},
       24 + 30 + 30 + 10},
      // 5x5x2 -> Conv SAME 5x5x3 (3·3·2·3); block Conv stride 2 SAME: ceil(5/2) = 3, 3x3x4 (3·3·3·4);
      // shortcut 1x1 stride 2 VALID: (5 − 1)/2 + 1 = 3, 3x3x4 (3·4); GlobalAvgPool 4; Dense 4·2.
      {"ResidualShortcutConv",
       "Conv(3, 3, padding=SAME), Residual(Relu, Conv(4, 3, stride=2, padding=SAME), shortcut=[Conv(4, 1, stride=2)]), "
       "Relu, GlobalAvgPool, Dense(2)",
       {5, 5, 2}, {2}, 54 + 108 + 12 + 8},
      // A shortcut with a bias, a nonlinearity after its random layer, and standard parameterization
      // inside the block: Dense(6) 4·6 + 6; block Dense(6) 6·6 + 6; shortcut Dense(6) 6·6 + 6; 6·2 + 2.
      {"ResidualShortcutBias",
       "Dense(6, b_std=0.2), Residual(Erf, Dense(6, b_std=0.1, parameterization=standard), "
       "shortcut=[Dense(6, W_std=1.2, b_std=0.3), Tanh]), Dense(2, b_std=0.1)",
       {4}, {2}, 30 + 42 + 42 + 14},
      {"ResidualConv",
       "Conv(3, 3, padding=SAME), Residual(Relu, Conv(3, 3, padding=SAME, b_std=0.1), LayerNorm, Residual(Tanh)), "
       "AvgPool(2), Flatten, Dense(2, b_std=0)",
       {4, 4, 2}, {2}, 54 + 84 + 26},
      // A ResNet's stem and block in miniature, padded as PyTorch's: 9x9x1 -> Conv 7x7 stride 2
      // padding 3: 5x5x3 (49·3 + 3) -> AvgPool 3 stride 2 padding 1: 3x3x3 -> Conv 3x3 padding 1
      // (27·3; so that the block's Relu sees a Gaussian input and the case has an exact kernel)
      // -> Residual with Conv 3x3 padding 1: 3x3x3 (27·3) -> GlobalAvgPool 3 -> Dense 3·2.
      {"ResNetStem",
       "Conv(3, 7, stride=2, padding=3, b_std=0.1), Relu, AvgPool(3, stride=2, padding=1), Conv(3, 3, padding=1), "
       "Residual(Relu, Conv(3, 3, padding=1)), Relu, GlobalAvgPool, Dense(2)",
       {9, 9, 1}, {2}, 150 + 81 + 81 + 6},
      // torchvision's ResNet stem with its max pool: 9x9x1 -> Conv 7x7 stride 2 padding 3: 5x5x3 (49·3 + 3)
      // -> MaxPool 3 stride 2 padding 1: 3x3x3 -> Residual of Conv 3x3 padding 1 (27·3) -> GAP -> Dense 3·2.
      {"ResNetStemMaxPool",
       "Conv(3, 7, stride=2, padding=3, b_std=0.1), Relu, MaxPool(3, stride=2, padding=1), "
       "Residual(Conv(3, 3, padding=1), Relu), GlobalAvgPool, Dense(2)",
       {9, 9, 1}, {2}, 150 + 81 + 6},
      // torchvision's BasicBlock with a projection shortcut: 6x6x2 -> Conv 3x3 padding 1 (18·3), BatchNorm
      // (4·3), Relu -> Residual(Conv 3x3 stride 2 padding 1: 3x3x4 (27·4), BatchNorm (4·4), Relu,
      // Conv 3x3 padding 1 (36·4), BatchNorm (4·4); shortcut Conv 1x1 stride 2 (3·4), BatchNorm (4·4))
      // -> Relu, GAP, Dense 4·2.
      {"ResNetBasicBlock",
       "Conv(3, 3, padding=1), BatchNorm, Relu, Residual(Conv(4, 3, stride=2, padding=1), BatchNorm, Relu, "
       "Conv(4, 3, padding=1), BatchNorm, shortcut=[Conv(4, 1, stride=2), BatchNorm]), Relu, GlobalAvgPool, Dense(2)",
       {6, 6, 2}, {2}, 54 + 12 + 108 + 16 + 144 + 16 + 12 + 16 + 8},
      {"DeepTanh", deep, {5}, {12}, 72 + 8 * 156},
      {"DeepConv", deep_conv, {5, 5, 1}, {5, 5, 3}, 30 + 8 * 81},
      {"StandardMlp", "Dense(7), Relu, Dense(3)", {5}, {3}, 66, with_bias(0.0, kStd)},
  };
}

class LayerHarness : public ::testing::TestWithParam<LayerCase> {};

// The network's init(seed), with constant-initialized parameters (BatchNorm's γ = 1, β = 0, μ = 0,
// σ² = 1, which make it the identity) moved off their constants so that every term of the layer is
// exercised: a positive constant c becomes c·(1 + |d|) (σ² stays positive), zero becomes d.
template <class T>
std::vector<T> harness_theta(const Network& net, std::uint64_t seed) {
  std::vector<double> theta = net.init<double>(seed);
  const std::vector<double> r = test::random_vector<double>(net.num_params(), seed + 1000);
  for (const ParamView& v : net.param_views()) {
    if (v.init_std != 0) continue;
    for (index_t j = 0; j < numel(v.shape); ++j) {
      const double d = 0.4 * r[size_t(v.offset + j)];
      theta[size_t(v.offset + j)] = v.init_mean > 0 ? v.init_mean * (1 + std::abs(d)) : d;
    }
  }
  return std::vector<T>(theta.begin(), theta.end());
}

// Frozen parameters (ParamSpec::trainable) have no derivative: a tangent along them is zeroed.
void zero_frozen(const Network& net, std::vector<double>& t_theta) {
  for (const ParamView& v : net.param_views())
    if (!v.trainable) std::fill(t_theta.begin() + v.offset, t_theta.begin() + v.offset + numel(v.shape), 0.0);
}

constexpr index_t kN = 3, kK = 2;

TEST_P(LayerHarness, ShapesAndParameterCount) {
  const LayerCase& c = GetParam();
  Network net(c.spec, c.input_shape, c.defaults);
  EXPECT_EQ(net.output_shape(), c.output_shape) << net.summary();
  EXPECT_EQ(net.num_params(), c.num_params) << net.summary();
  index_t total = 0;
  std::set<std::string> names;
  for (const ParamView& v : net.param_views()) {
    EXPECT_EQ(v.offset, total) << v.name;
    total += numel(v.shape);
    EXPECT_TRUE(names.insert(v.name).second) << "duplicate parameter name " << v.name;
  }
  EXPECT_EQ(total, net.num_params());
  // The described spec builds the same network.
  Network again(net.describe(), c.input_shape);
  EXPECT_EQ(again.describe(), net.describe());
  EXPECT_EQ(again.num_params(), net.num_params());
}

template <class T>
void check_adjoint(const LayerCase& c, double tol) {
  Network net(c.spec, c.input_shape, c.defaults);
  const index_t P = net.num_params(), din = net.input_size(), dout = net.output_size();
  std::vector<T> theta = harness_theta<T>(net, 11);
  std::vector<T> x = test::random_vector<T>(kN * din, 12);
  Trace<T> trace;
  net.forward(theta.data(), x.data(), kN, trace);

  std::vector<T> t_in = test::random_vector<T>(kN * kK * din, 13);
  std::vector<T> t_theta = test::random_vector<T>(kK * P, 14);
  std::vector<T> u = test::random_vector<T>(kN * kK * dout, 15);

  std::vector<T> t_out(static_cast<size_t>(kN * kK * dout));
  net.jvp(theta.data(), trace, kK, t_in.data(), P ? t_theta.data() : nullptr, P, t_out.data());
  std::vector<T> g_in(static_cast<size_t>(kN * kK * din));
  std::vector<T> g_theta(static_cast<size_t>(kK * P), T(0));
  net.vjp(theta.data(), trace, kK, u.data(), g_in.data(), ParamCotangent<T>{P ? g_theta.data() : nullptr, P, false});

  double lhs = test::dot(t_out, u);
  double rhs_in = test::dot(t_in, g_in), rhs_theta = test::dot(t_theta, g_theta);
  double scale = std::abs(lhs) + std::abs(rhs_in) + std::abs(rhs_theta) + 1e-30;
  EXPECT_NEAR(lhs, rhs_in + rhs_theta, tol * scale) << c.spec;

  // Input and parameter parts separately.
  std::vector<T> t_only_in(t_out.size()), t_only_theta(t_out.size());
  net.jvp(theta.data(), trace, kK, t_in.data(), nullptr, P, t_only_in.data());
  EXPECT_NEAR(test::dot(t_only_in, u), rhs_in, tol * scale);
  if (P) {
    net.jvp(theta.data(), trace, kK, nullptr, t_theta.data(), P, t_only_theta.data());
    EXPECT_NEAR(test::dot(t_only_theta, u), rhs_theta, tol * scale);

    // Per-example rows (Jacobian rows) sum over examples to the batched parameter cotangent.
    std::vector<T> rows(static_cast<size_t>(kN * kK * P), T(0));
    net.vjp(theta.data(), trace, kK, u.data(), nullptr, ParamCotangent<T>{rows.data(), P, true});
    std::vector<T> summed(static_cast<size_t>(kK * P), T(0));
    for (index_t i = 0; i < kN; ++i)
      for (index_t kk = 0; kk < kK; ++kk)
        for (index_t p = 0; p < P; ++p) summed[kk * P + p] += rows[(i * kK + kk) * P + p];
    EXPECT_LE(test::max_abs_diff(summed, g_theta), tol * (test::max_abs(g_theta) + 1e-30));
  }
}

TEST_P(LayerHarness, AdjointIdentityFloat64) { check_adjoint<double>(GetParam(), 1e-12); }
TEST_P(LayerHarness, AdjointIdentityFloat32) { check_adjoint<float>(GetParam(), 2e-5); }

TEST_P(LayerHarness, JvpMatchesCentralDifferences) {
  const LayerCase& c = GetParam();
  Network net(c.spec, c.input_shape, c.defaults);
  const index_t P = net.num_params(), din = net.input_size(), dout = net.output_size();
  std::vector<double> theta = harness_theta<double>(net, 21);
  std::vector<double> x = test::random_vector<double>(kN * din, 22);
  std::vector<double> dx = test::random_vector<double>(kN * din, 23);
  std::vector<double> dtheta = test::random_vector<double>(P, 24);
  zero_frozen(net, dtheta);
  Trace<double> trace;
  net.forward(theta.data(), x.data(), kN, trace);
  std::vector<double> jvp(static_cast<size_t>(kN * dout));
  net.jvp(theta.data(), trace, 1, dx.data(), P ? dtheta.data() : nullptr, P, jvp.data());

  const double eps = 1e-6;
  auto shifted = [&](double s) {
    std::vector<double> th = theta, xs = x;
    for (size_t i = 0; i < th.size(); ++i) th[i] += s * dtheta[i];
    for (size_t i = 0; i < xs.size(); ++i) xs[i] += s * dx[i];
    Trace<double> t;
    net.forward(th.data(), xs.data(), kN, t);
    return t.buffers.back();
  };
  std::vector<double> plus = shifted(eps), minus = shifted(-eps), fd(plus.size());
  for (size_t i = 0; i < fd.size(); ++i) fd[i] = (plus[i] - minus[i]) / (2 * eps);
  EXPECT_LE(test::max_abs_diff(jvp, fd), 1e-6 * (test::max_abs(fd) + 1.0)) << c.spec;
}

TEST_P(LayerHarness, Float32AgreesWithFloat64) {
  const LayerCase& c = GetParam();
  Network net(c.spec, c.input_shape, c.defaults);
  const index_t P = net.num_params(), din = net.input_size(), dout = net.output_size();
  std::vector<double> theta64 = harness_theta<double>(net, 31);
  std::vector<float> theta32 = harness_theta<float>(net, 31);
  ASSERT_EQ(theta32.size(), theta64.size());
  for (size_t i = 0; i < theta32.size(); ++i) ASSERT_EQ(theta32[i], static_cast<float>(theta64[i]));
  std::vector<double> x64 = test::random_vector<double>(kN * din, 32);
  std::vector<float> x32(x64.begin(), x64.end());
  Trace<double> tr64;
  Trace<float> tr32;
  net.forward(theta64.data(), x64.data(), kN, tr64);
  net.forward(theta32.data(), x32.data(), kN, tr32);
  const auto& y64 = tr64.buffers.back();
  const auto& y32 = tr32.buffers.back();
  EXPECT_LE(test::max_abs_diff(y32, y64), 1e-4 * (test::max_abs(y64) + 1e-3)) << c.spec;

  std::vector<double> u64 = test::random_vector<double>(kN * dout, 33);
  std::vector<float> u32(u64.begin(), u64.end());
  std::vector<double> g64(static_cast<size_t>(P), 0.0), gi64(static_cast<size_t>(kN * din));
  std::vector<float> g32(static_cast<size_t>(P), 0.f), gi32(static_cast<size_t>(kN * din));
  net.vjp(theta64.data(), tr64, 1, u64.data(), gi64.data(), ParamCotangent<double>{P ? g64.data() : nullptr, P, false});
  net.vjp(theta32.data(), tr32, 1, u32.data(), gi32.data(), ParamCotangent<float>{P ? g32.data() : nullptr, P, false});
  EXPECT_LE(test::max_abs_diff(gi32, gi64), 1e-4 * (test::max_abs(gi64) + 1e-3)) << c.spec;
  if (P) EXPECT_LE(test::max_abs_diff(g32, g64), 1e-4 * (test::max_abs(g64) + 1e-3)) << c.spec;
}

TEST_P(LayerHarness, ZeroInputAndLargeScaleStayFinite) {
  const LayerCase& c = GetParam();
  Network net(c.spec, c.input_shape, c.defaults);
  std::vector<float> theta = harness_theta<float>(net, 41);
  for (double scale : {0.0, 100.0}) {
    Array<float> x({2, net.input_size()});
    std::vector<float> r = test::random_vector<float>(2 * net.input_size(), 42, scale);
    std::copy(r.begin(), r.end(), x.data());
    Shape s{2};
    s.insert(s.end(), c.input_shape.begin(), c.input_shape.end());
    x.reshape(s);
    Array<float> y = net.apply(theta, x);
    EXPECT_EQ(first_non_finite(y), -1) << c.spec << " at input scale " << scale;
  }
}

// ---- JC = VP = SD ---------------------------------------------------------------------------
//
// Each case runs twice: as written (when it has parameters; a network without parameters has an
// empty Jacobian, so its eNTK is exactly zero and all three methods must return exact zeros), and
// embedded as  random layer, case, random readout:  `Dense(d)` (vectors) or `Conv(C, 3, padding=SAME)`
// (images), both keeping the case's input shape, then `Dense(2)` on the last axis. The embedding
// is what gives a parameterless layer (an activation, a pooling) a kernel that depends on it: the
// random layer before it is reached only through the layer's VJP / JVP (jc, vp) and its
// structured cotangent routes (sd), and the readout's parameters see its forward output. Biases
// on both sides so that the bias paths are crossed too.

bool is_image(const Shape& s) { return s.size() == 3; }

std::string embedded_spec(const LayerCase& c) {
  const std::string width = std::to_string(c.input_shape.back());
  const std::string before = is_image(c.input_shape) ? "Conv(" + width + ", 3, padding=SAME, b_std=0.1)"
                                                     : "Dense(" + width + ", b_std=0.1)";
  return before + ", " + c.spec + ", Dense(2, b_std=0.1)";
}

EntkOptions entk_options(EntkMethod method, const char* mode, index_t tile) {
  EntkOptions o;
  o.method = method;
  o.mode = parse_entk_mode(mode);
  o.tile = tile;
  return o;
}

// vp and sd against jc, in modes full and trace, for x2 = x1 (the symmetric path, upper tiles)
// and a separate x2 (N2 ≠ N1). Tiles of 2 over 3 examples: a partial tile on every path.
void check_methods_agree(const Network& net, const std::string& what) {
  const index_t P = net.num_params();
  const std::vector<double> theta = harness_theta<double>(net, 51);
  const Array<double> x1 = test::random_batch<double>(3, net.input_shape(), 52);
  // (Seeds chosen so that no case's ReLUs are all dead at x2: the comparison must see a kernel.)
  const Array<double> x2 = test::random_batch<double>(2, net.input_shape(), 54);
  for (const char* mode : {"full", "trace"})
    for (const Array<double>* other : {static_cast<const Array<double>*>(nullptr), &x2}) {
      const std::string where = what + " mode " + mode + (other ? " x2" : " symmetric");
      const Array<double> jc = empirical_ntk(net, theta, x1, other, entk_options(EntkMethod::jc, mode, 0));
      const double scale = test::max_abs(jc.vector());
      for (EntkMethod m : {EntkMethod::vp, EntkMethod::sd}) {
        const Array<double> k = empirical_ntk(net, theta, x1, other, entk_options(m, mode, 2));
        ASSERT_EQ(k.shape(), jc.shape()) << where << " " << to_string(m);
        if (P == 0) {
          // No parameters, no Jacobian: every method must give exact zeros.
          EXPECT_EQ(test::max_abs(k.vector()), 0.0) << where << " " << to_string(m);
        } else {
          EXPECT_LE(test::max_abs_diff(k.vector(), jc.vector()), 1e-10 * scale) << where << " " << to_string(m);
        }
      }
      if (P == 0) EXPECT_EQ(scale, 0.0) << where << " jc";
      // The kernel must not vanish where there are parameters, or the comparison proves nothing.
      if (P > 0) EXPECT_GT(scale, 0.0) << where;
    }
}

TEST_P(LayerHarness, EntkMethodsAgree) {
  const LayerCase& c = GetParam();
  Network net(c.spec, c.input_shape, c.defaults);
  check_methods_agree(net, c.spec);
}

TEST_P(LayerHarness, EntkMethodsAgreeEmbedded) {
  const LayerCase& c = GetParam();
  Network net(embedded_spec(c), c.input_shape, c.defaults);
  ASSERT_GT(net.num_params(), c.num_params);
  check_methods_agree(net, embedded_spec(c));
}

// ---- Kernel rule against Monte Carlo ----------------------------------------------------------
//
// The wide variant of a case: a wide random layer first, so that whatever the case starts with
// sees a Gaussian input (`Dense(W)` for vectors, `Conv(W, 3, padding=SAME)` for images: a 3x3
// filter also correlates neighbouring pixels, so spatial rules see a non-trivial covariance);
// then the case with every Dense / Conv widened to W outputs (the first positional argument;
// Residual blocks and shortcuts included, so branch widths still match); then a readout to a
// vector, `GlobalAvgPool, Dense(R)` if the case ends on an image, `Dense(R)` otherwise. The
// analytic kernel does not depend on W or R; the Monte Carlo average of R-output empirical kernels
// over S initializations converges to it with relative error ~ 1/√(W·S) (NTK, R = 4) and
// ~ 1/√(R·S) (NNGP, whose spread comes from the readout itself: R = 256, as in test_infinite).
//
// Widths and samples: vectors W = 512, S = 32; images W = 128, S = 64 (a widened W→W 3x3 Conv
// costs 9·W² per pixel, so the images buy their accuracy with seeds rather than width). One
// sample's trace-mode NTK has a relative spread of about √(2/W) (a sum of W independent terms,
// each a squared Gaussian), so the mean is off by about √(2/(W·S)): 1.1% for both vectors and
// images (the global average over pixels removes a little more). 5% is then 4-5 standard errors,
// while a wrong constant in a rule (a factor, a missing bias term, a missing 1/2) moves the kernel
// by far more (measured: at most 2.6% over all cases). The NNGP adds the readout's own spread
// √(2/(R·S)) (1.6% for vectors, 1.1% for images) to that of the features, and its feature
// fluctuations are not damped by the backward pass: measured up to 6.4% (Mlp, four random layers),
// so its tolerance is 10%. The NTK, which contains the NNGP of every layer, is the tight check.
// Finite-width bias, unlike the spread, does not average out over seeds: it grows like D/W for D
// random layers in a row. Wide variants with D/W > 0.05 (DeepConv: 11 random layers at width 128)
// are skipped, saying so; the rules they use are the shallow cases' rules, and deep analytic
// kernels are checked in closed form by Infinite.ArcCosineConversion.
constexpr index_t kWideVector = 512, kWideImage = 128, kNtkReadout = 4, kNngpReadout = 256;
constexpr int kSamplesVector = 32, kSamplesImage = 64;
constexpr double kNtkTolerance = 0.05, kNngpTolerance = 0.10, kMaxDepthOverWidth = 0.05;

// Every layer spec of a tree: top level, Residual blocks and named lists (shortcuts), recursively.
void for_each_layer(std::vector<LayerSpec>& layers, const std::function<void(LayerSpec&)>& f) {
  for (LayerSpec& l : layers) {
    f(l);
    for_each_layer(l.children, f);
    for (auto& list : l.lists) for_each_layer(list.second, f);
  }
}
void for_each_layer(const std::vector<LayerSpec>& layers, const std::function<void(const LayerSpec&)>& f) {
  for (const LayerSpec& l : layers) {
    f(l);
    for_each_layer(l.children, f);
    for (const auto& list : l.lists) for_each_layer(list.second, f);
  }
}

std::string wide_spec(const LayerCase& c, index_t readout) {
  const bool image = is_image(c.input_shape);
  const std::string W = std::to_string(image ? kWideImage : kWideVector);
  std::vector<LayerSpec> layers = parse_spec(c.spec);
  for_each_layer(layers, [&](LayerSpec& l) {
    if (l.name != "Dense" && l.name != "Conv") return;
    // The output width: the first positional argument, or given by key.
    for (SpecArg& a : l.args)
      if (a.key.empty() || a.key == "out" || a.key == "out_channels") {
        a.value = W;
        return;
      }
    ADD_FAILURE() << "no output width found in " << c.spec;
  });
  const Network narrow(c.spec, c.input_shape, c.defaults);
  const std::string before = image ? "Conv(" + W + ", 3, padding=SAME)" : "Dense(" + W + ")";
  const std::string after = (is_image(narrow.output_shape()) ? "GlobalAvgPool, Dense(" : "Dense(") + std::to_string(readout) + ")";
  return before + ", " + to_string(layers) + ", " + after;
}

constexpr index_t kMonteCarloN = 3;

KernelOptions kernel_options(KernelOptions::Get g) {
  KernelOptions o;
  o.get = g;
  return o;
}

// Dense and Conv layers in a spec, Residual branches included.
int random_layers(const std::string& spec) {
  int count = 0;
  for_each_layer(parse_spec(spec), [&](const LayerSpec& l) { count += l.name == "Dense" || l.name == "Conv"; });
  return count;
}

TEST_P(LayerHarness, KernelRuleMatchesMonteCarlo) {
  const LayerCase& c = GetParam();
  const bool image = is_image(c.input_shape);
  const index_t width = image ? kWideImage : kWideVector;
  const int samples = image ? kSamplesImage : kSamplesVector;
  const Array<double> x = test::random_batch<double>(kMonteCarloN, c.input_shape, 61);
  for (auto g : {KernelOptions::ntk, KernelOptions::nngp}) {
    const bool ntk = g == KernelOptions::ntk;
    const std::string spec = wide_spec(c, ntk ? kNtkReadout : kNngpReadout);
    const Network net(spec, c.input_shape, c.defaults);
    Array<double> exact;
    try {
      exact = infinite_kernel(net, x, nullptr, kernel_options(g));
    } catch (const NotSupported& e) {
      GTEST_SKIP() << "no exact kernel for " << spec << ": " << e.what();
    }
    const int depth = random_layers(spec);
    if (double(depth) / double(width) > kMaxDepthOverWidth)
      GTEST_SKIP() << spec << ": " << depth << " random layers at width " << width
                   << ", a finite-width bias beyond what Monte Carlo at this width can resolve";
    const Array<double> mc = monte_carlo_kernel(net, x, nullptr, kernel_options(g), samples, 700);
    ASSERT_EQ(mc.shape(), exact.shape());
    const double err = test::rel_frob(mc, exact);
    std::printf("[ info ] MC %s %s, %d seeds: rel Frobenius error %.4f\n", ntk ? "NTK" : "NNGP", spec.c_str(), samples, err);
    EXPECT_LE(err, ntk ? kNtkTolerance : kNngpTolerance) << (ntk ? "NTK " : "NNGP ") << spec;
  }
}

INSTANTIATE_TEST_SUITE_P(Layers, LayerHarness, ::testing::ValuesIn(layer_cases()),
                         [](const ::testing::TestParamInfo<LayerCase>& info) { return info.param.name; });

// Every layer the registry knows is exercised by at least one harness case.
TEST(LayerRegistry, EveryLayerHasAHarnessCase) {
  std::set<std::string> covered;
  for (const LayerCase& c : layer_cases())
    for (const LayerSpec& s : parse_spec(c.spec)) {
      covered.insert(s.name);
      for (const LayerSpec& child : s.children) covered.insert(child.name);
    }
  for (const std::string& name : layer_names()) EXPECT_TRUE(covered.count(name)) << name << " has no harness case";
}

// Residual is a combinator with two forms, identity shortcut and projection shortcut: both need
// cases (every oracle above then runs on both).
TEST(LayerRegistry, ResidualHasCasesWithAndWithoutAShortcut) {
  bool with = false, without = false;
  for (const LayerCase& c : layer_cases())
    for_each_layer(parse_spec(c.spec), [&](const LayerSpec& s) {
      if (s.name != "Residual") return;
      bool shortcut = false;
      for (const auto& list : s.lists) shortcut = shortcut || list.first == "shortcut";
      (shortcut ? with : without) = true;
    });
  EXPECT_TRUE(with) << "no case has Residual(..., shortcut=[...])";
  EXPECT_TRUE(without) << "no case has Residual without a shortcut";
}

// The Monte Carlo oracle skips wide variants without an exact kernel, or too deep for their width. So that a skip cannot hide a
// layer, every registered layer must sit in at least one case whose wide variant has one (checked
// with the analytic kernel only, which does not depend on the width: cheap, and not a MonteCarlo test).
TEST(LayerRegistry, EveryLayerHasAnExactKernelCase) {
  std::set<std::string> covered;
  for (const LayerCase& c : layer_cases()) {
    const std::string spec = wide_spec(c, kNtkReadout);
    const index_t width = is_image(c.input_shape) ? kWideImage : kWideVector;
    if (double(random_layers(spec)) / double(width) > kMaxDepthOverWidth) continue;
    const Network net(spec, c.input_shape, c.defaults);
    const Array<double> x = test::random_batch<double>(2, c.input_shape, 71);
    try {
      infinite_kernel(net, x, nullptr, kernel_options(KernelOptions::ntk));
    } catch (const NotSupported&) {
      continue;
    }
    for_each_layer(parse_spec(c.spec), [&](const LayerSpec& s) { covered.insert(s.name); });
  }
  // Layers with no exact infinite-width kernel by design; the kernels refuse them, naming them
  // (Infinite.RefusesLayersWithoutAnExactKernel).
  const std::set<std::string> no_exact_kernel = {"MaxPool", "BatchNorm"};
  for (const std::string& name : layer_names())
    EXPECT_TRUE(covered.count(name) || no_exact_kernel.count(name))
        << name << " has no case with an exact kernel: its rule is never checked against Monte Carlo";
}

}  // namespace
}  // namespace ntk

namespace ntk {
namespace {

// Layers process several examples per GEMM internally (Conv chunks its patches to bound memory);
// results must not depend on how a batch is split.
TEST(LayerBatching, ForwardIsIndependentOfBatchSplit) {
  Network net("Conv(4, 3, padding=SAME, b_std=0.1), Relu, Conv(3, 3), GlobalAvgPool, Dense(2)", {28, 28, 64});
  std::vector<double> theta = harness_theta<double>(net, 5);
  const index_t n = 20;  // the first Conv's patches take 3.6 MB per example: several chunks
  Array<double> x({n, 28, 28, 64}, test::random_vector<double>(n * 28 * 28 * 64, 6));
  Array<double> whole = net.apply(theta, x, n);
  Array<double> single = net.apply(theta, x, 1);
  EXPECT_LE(test::max_abs_diff(whole.vector(), single.vector()), 1e-12 * test::max_abs(single.vector()));
}

}  // namespace
}  // namespace ntk
