// Empirical NTK: closed forms, an independent finite-difference Jacobian, agreement of methods,
// mode identities, symmetry, PSD, and independence of tile size.
#include <gtest/gtest.h>

#include "harness.hpp"
#include "ntk/empirical.hpp"
#include "ntk/error.hpp"
#include "ntk/io.hpp"

#include <cstdio>

namespace ntk {
namespace {

Array<double> random_inputs(const Network& net, index_t n, std::uint64_t seed) {
  Shape s{n};
  s.insert(s.end(), net.input_shape().begin(), net.input_shape().end());
  return Array<double>(s, test::random_vector<double>(n * net.input_size(), seed));
}

EntkOptions opts(const std::string& mode, EntkMethod method = EntkMethod::jc, index_t tile = 0) {
  EntkOptions o;
  o.mode = parse_entk_mode(mode);
  o.method = method;
  o.tile = tile;
  return o;
}

double rel_err(const Array<double>& a, const Array<double>& b) {
  return test::max_abs_diff(a.vector(), b.vector()) / (test::max_abs(b.vector()) + 1e-300);
}

TEST(Entk, LinearModelClosedForm) {
  // f = (1/√d)·x·W + b_std·b: Θ(x, x') = (x·x'/d + b_std²)·I_O exactly.
  const index_t d = 6, O = 3;
  Network net("Dense(3, b_std=0.7)", {d});
  auto theta = net.init<double>(1);
  Array<double> x1 = random_inputs(net, 4, 2), x2 = random_inputs(net, 5, 3);
  Array<double> K = empirical_ntk(net, theta, x1, &x2, opts("full"));
  ASSERT_EQ(K.shape(), (Shape{4, 5, O, O}));
  for (index_t i = 0; i < 4; ++i)
    for (index_t j = 0; j < 5; ++j) {
      double dot = 0;
      for (index_t c = 0; c < d; ++c) dot += x1[i * d + c] * x2[j * d + c];
      for (index_t a = 0; a < O; ++a)
        for (index_t b = 0; b < O; ++b)
          EXPECT_NEAR(K[((i * 5 + j) * O + a) * O + b], a == b ? dot / d + 0.49 : 0.0, 1e-13);
    }
}

// Jacobian by central differences of the forward pass: shares nothing with VJP / JVP.
Array<double> fd_full_kernel(const Network& net, const std::vector<double>& theta, const Array<double>& x) {
  const index_t n = x.dim(0), O = net.output_size(), P = net.num_params();
  std::vector<double> J(static_cast<size_t>(n * O * P));
  const double eps = 1e-6;
  for (index_t p = 0; p < P; ++p) {
    std::vector<double> tp = theta, tm = theta;
    tp[size_t(p)] += eps;
    tm[size_t(p)] -= eps;
    Array<double> yp = net.apply(tp, x), ym = net.apply(tm, x);
    for (index_t r = 0; r < n * O; ++r) J[size_t(r * P + p)] = (yp[r] - ym[r]) / (2 * eps);
  }
  Array<double> K({n, n, O, O});
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j)
      for (index_t a = 0; a < O; ++a)
        for (index_t b = 0; b < O; ++b) {
          double s = 0;
          for (index_t p = 0; p < P; ++p) s += J[size_t((i * O + a) * P + p)] * J[size_t((j * O + b) * P + p)];
          K[((i * n + j) * O + a) * O + b] = s;
        }
  return K;
}

TEST(Entk, MatchesFiniteDifferenceJacobian) {
  Network net("Conv(3, 3, padding=SAME, b_std=0.1), Gelu, Residual(Dense(3), Tanh), GlobalAvgPool, Dense(2, b_std=0.2)", {4, 4, 2});
  auto theta = net.init<double>(4);
  Array<double> x = random_inputs(net, 3, 5);
  Array<double> fd = fd_full_kernel(net, theta, x);
  for (EntkMethod m : {EntkMethod::jc, EntkMethod::vp, EntkMethod::sd, EntkMethod::automatic}) {
    Array<double> K = empirical_ntk(net, theta, x, nullptr, opts("full", m));
    EXPECT_LT(rel_err(K, fd), 1e-7) << to_string(m);
  }
}

struct NetCase {
  std::string spec;
  Shape input;
  NetworkDefaults defaults{};
};

const NetCase kNets[] = {
    {"Dense(7, b_std=0.1), Relu, Dense(6, b_std=0.1), Erf, Dense(3, b_std=0.1)", {5}},
    {"Dense(7), LayerNorm, Sigmoid, Dense(3)", {5}, {1.0, 0.3, Parameterization::standard}},
    {"Conv(3, 3, stride=2, padding=SAME), Relu, AvgPool(2, padding=SAME), Flatten, Dense(4, b_std=0)", {6, 5, 2}},
    {"Conv(3, 2x3, b_std=0.2), LeakyRelu(0.1), Residual(Abs, Conv(3, 3, padding=SAME)), GlobalAvgPool, Dense(3)", {5, 6, 1}},
    // Channel-factored cotangents: the chain ends at GlobalAvgPool, or at an AvgPool down to one pixel.
    {"Conv(4, 3, padding=SAME, b_std=0.3), Relu, AvgPool(2), Gelu, GlobalAvgPool, Dense(3, b_std=0.1)", {6, 6, 2}},
    {"Conv(5, 2, b_std=0.2), Erf, AvgPool(2), Flatten, Dense(3)", {3, 3, 2}, {1.3, 0.2, Parameterization::standard}},
    // The second Conv takes the pixel-pair order (few output pixels, a large filter).
    {"Conv(6, 3, padding=SAME), Relu, Conv(16, 2, stride=2, b_std=0.1), Tanh, Flatten, Dense(3, b_std=0)", {4, 4, 3}},
    // A factored chain after a stride-1 Conv: its input cotangents come from Conv::vjp_factored,
    // with Relu's binary masks by table lookups (6 channels: a nibble and a half; 12 input
    // channels × 3 directions = 36 columns: more than one block in float64), with LeakyRelu's by GEMM.
    {"Conv(12, 3, padding=SAME), Relu, Conv(6, 3, padding=1, b_std=0.2), Relu, GlobalAvgPool, Dense(3)", {4, 5, 2}},
    {"Conv(5, 3, padding=SAME), Relu, Conv(6, 3, padding=SAME), LeakyRelu(0.2), GlobalAvgPool, Dense(3)", {4, 5, 2}},
};

TEST(Entk, StructuredDerivativeRoutesAreTheIntendedOnes) {
  // kNets[4], [5]: the first Conv's cotangents factor over channels; kNets[3] (residual) and
  // kNets[2] (Flatten after a spatial layer) do not.
  Network factored(kNets[4].spec, kNets[4].input), pooled(kNets[5].spec, kNets[5].input);
  EXPECT_EQ(factored.channel_chain_end(0), 4);
  EXPECT_EQ(pooled.channel_chain_end(0), 2);
  Network residual(kNets[3].spec, kNets[3].input), flat(kNets[2].spec, kNets[2].input);
  for (int l = 0; l < static_cast<int>(residual.layers().size()); ++l) EXPECT_EQ(residual.channel_chain_end(l), -1);
  EXPECT_EQ(flat.channel_chain_end(0), -1);
  // kNets[6]: the second Conv (2x2 output pixels, 2x2x6 filter, 16 channels) keeps patches as its
  // side, the pixel-pair order; the first keeps per-example filter gradients.
  Network pixel(kNets[6].spec, kNets[6].input);
  const Layer& conv2 = *pixel.layers()[2];
  EXPECT_EQ(conv2.ntk_side_elements(1, 3), 4.0 * 24.0);
  const Layer& conv1 = *pixel.layers()[0];
  EXPECT_EQ(conv1.ntk_side_elements(1, 3), 3.0 * double(conv1.num_params()));
}

TEST(Entk, AllMethodsAgree) {
  for (const NetCase& c : kNets) {
    Network net(c.spec, c.input, c.defaults);
    auto theta = net.init<double>(7);
    Array<double> x1 = random_inputs(net, 5, 8), x2 = random_inputs(net, 3, 9);
    for (const char* mode : {"full", "trace", "trace-sum", "pntk", "logit=1", "diagonal"}) {
      Array<double> jc = empirical_ntk(net, theta, x1, &x2, opts(mode, EntkMethod::jc));
      Array<double> vp = empirical_ntk(net, theta, x1, &x2, opts(mode, EntkMethod::vp, 2));
      EXPECT_LT(rel_err(vp, jc), 1e-10) << c.spec << " mode " << mode;
      Array<double> sd = empirical_ntk(net, theta, x1, &x2, opts(mode, EntkMethod::sd, 4));
      EXPECT_LT(rel_err(sd, jc), 1e-10) << c.spec << " mode " << mode;
      Array<double> sym_sd = empirical_ntk(net, theta, x1, nullptr, opts(mode, EntkMethod::sd, 2));
      Array<double> sym_jc = empirical_ntk(net, theta, x1, nullptr, opts(mode, EntkMethod::jc));
      EXPECT_LT(rel_err(sym_sd, sym_jc), 1e-10) << c.spec << " mode " << mode;
    }
  }
}

// The factored side transposes per-example gradients (R × C) in 64-row tiles; with R = 9·16 + 1 =
// 145 rows (two full tiles and a partial one) every tile boundary is crossed, which the small nets
// above (R = 19, 9) never do.
TEST(Entk, FactoredRouteAcrossTransposeTiles) {
  Network net("Conv(4, 3, padding=SAME, b_std=0.3), Relu, GlobalAvgPool, Dense(3)", {5, 5, 16});
  ASSERT_EQ(net.channel_chain_end(0), 2);
  ASSERT_EQ(net.layers()[0]->num_params() / 4, 145);
  auto theta = net.init<double>(4);
  Array<double> x1 = random_inputs(net, 3, 5), x2 = random_inputs(net, 2, 6);
  for (const char* mode : {"full", "trace"}) {
    Array<double> jc = empirical_ntk(net, theta, x1, &x2, opts(mode, EntkMethod::jc));
    EXPECT_LT(rel_err(empirical_ntk(net, theta, x1, &x2, opts(mode, EntkMethod::sd)), jc), 1e-10) << mode;
  }
}

TEST(Entk, ModeIdentitiesSymmetryAndPsd) {
  Network net(kNets[3].spec, kNets[3].input);
  auto theta = net.init<double>(10);
  const index_t n = 7, O = 3;
  Array<double> x = random_inputs(net, n, 11);
  Array<double> full = empirical_ntk(net, theta, x, nullptr, opts("full"));
  Array<double> trace = empirical_ntk(net, theta, x, nullptr, opts("trace"));
  Array<double> trace_sum = empirical_ntk(net, theta, x, nullptr, opts("trace-sum"));
  Array<double> pntk = empirical_ntk(net, theta, x, nullptr, opts("pntk"));
  Array<double> diag = empirical_ntk(net, theta, x, nullptr, opts("diagonal"));
  Array<double> logit2 = empirical_ntk(net, theta, x, nullptr, opts("logit=2"));
  double scale = test::max_abs(full.vector());
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) {
      double tr = 0, all = 0;
      for (index_t a = 0; a < O; ++a)
        for (index_t b = 0; b < O; ++b) {
          double v = full[((i * n + j) * O + a) * O + b];
          all += v;
          if (a == b) {
            tr += v;
            EXPECT_NEAR(diag[(i * n + j) * O + a], v, 1e-12 * scale);
          }
          EXPECT_NEAR(v, full[((j * n + i) * O + b) * O + a], 1e-12 * scale);  // Θ(x, x')ᵀ = Θ(x', x)
        }
      EXPECT_NEAR(trace[i * n + j], tr / O, 1e-12 * scale);
      EXPECT_NEAR(trace_sum[i * n + j], tr, 1e-12 * scale);
      EXPECT_NEAR(pntk[i * n + j], all / O, 1e-12 * scale);
      EXPECT_NEAR(logit2[i * n + j], full[((i * n + j) * O + 2) * O + 2], 1e-12 * scale);
    }
  // PSD: vᵀ Θ v >= 0 for random v over the whole NO × NO matrix.
  for (std::uint64_t s = 0; s < 20; ++s) {
    auto v = test::random_vector<double>(n * O, 100 + s);
    double q = 0;
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j)
        for (index_t a = 0; a < O; ++a)
          for (index_t b = 0; b < O; ++b) q += v[size_t(i * O + a)] * full[((i * n + j) * O + a) * O + b] * v[size_t(j * O + b)];
    EXPECT_GE(q, -1e-10 * scale);
  }
}

TEST(Entk, TilesAndSymmetricPathGiveTheSameKernel) {
  Network net(kNets[0].spec, kNets[0].input);
  auto theta = net.init<double>(12);
  Array<double> x = random_inputs(net, 10, 13);
  for (const char* mode : {"full", "trace", "diagonal", "pntk"}) {
    Array<double> whole = empirical_ntk(net, theta, x, &x, opts(mode, EntkMethod::jc, 0));
    for (index_t tile : {1, 3, 4, 7}) {
      EXPECT_LT(rel_err(empirical_ntk(net, theta, x, nullptr, opts(mode, EntkMethod::jc, tile)), whole), 1e-13)
          << mode << " tile " << tile;
      EXPECT_LT(rel_err(empirical_ntk(net, theta, x, &x, opts(mode, EntkMethod::vp, tile)), whole), 1e-12)
          << mode << " tile " << tile;
      EXPECT_LT(rel_err(empirical_ntk(net, theta, x, nullptr, opts(mode, EntkMethod::sd, tile)), whole), 1e-12)
          << mode << " tile " << tile;
    }
  }
}

TEST(Entk, Float32AgreesWithFloat64) {
  Network net(kNets[2].spec, kNets[2].input);
  auto theta64 = net.init<double>(14);
  auto theta32 = net.init<float>(14);
  Array<double> x64 = random_inputs(net, 4, 15);
  Array<float> x32 = cast<float>(x64);
  EntkOptions o = opts("full");
  Array<double> k64 = empirical_ntk(net, theta64, x64, nullptr, o);
  Array<double> k32 = cast<double>(empirical_ntk(net, theta32, x32, nullptr, o));
  EXPECT_LT(rel_err(k32, k64), 1e-5);
}

TEST(Entk, PerLayerContributionsSumToTheKernel) {
  Network net(kNets[3].spec, kNets[3].input);
  auto theta = net.init<double>(16);
  Array<double> x1 = random_inputs(net, 4, 17), x2 = random_inputs(net, 3, 18);
  for (const char* mode : {"full", "trace", "pntk"}) {
    EntkOptions o = opts(mode, EntkMethod::sd);
    Array<double> whole = empirical_ntk(net, theta, x1, &x2, o);
    std::vector<double> sum(static_cast<size_t>(whole.size()), 0.0);
    int parameterized = 0;
    for (int l = 0; l < static_cast<int>(net.layers().size()); ++l) {
      if (net.layers()[size_t(l)]->num_params() == 0) continue;
      ++parameterized;
      o.layers = {l};
      Array<double> part = empirical_ntk(net, theta, x1, &x2, o);
      for (index_t e = 0; e < part.size(); ++e) sum[size_t(e)] += part[e];
    }
    EXPECT_EQ(parameterized, 3);
    EXPECT_LT(test::max_abs_diff(sum, whole.vector()), 1e-12 * test::max_abs(whole.vector())) << mode;
  }
  EntkOptions jc = opts("full", EntkMethod::jc);
  jc.layers = {0};
  EXPECT_THROW(empirical_ntk(net, theta, x1, &x2, jc), InvalidArgument);
}

TEST(Entk, OperatorAppliesTheFullKernel) {
  Network net(kNets[1].spec, kNets[1].input, kNets[1].defaults);
  auto theta = net.init<double>(19);
  const index_t n = 5, O = 3;
  Array<double> x = random_inputs(net, n, 20);
  Array<double> full = empirical_ntk(net, theta, x, nullptr, opts("full"));
  NtkOperator<double> op(net, theta, x);
  ASSERT_EQ(op.dim(), n * O);
  const index_t count = 2;
  auto v = test::random_vector<double>(count * n * O, 21);
  std::vector<double> y(v.size());
  op.apply(v.data(), y.data(), count);
  for (index_t c = 0; c < count; ++c)
    for (index_t i = 0; i < n; ++i)
      for (index_t a = 0; a < O; ++a) {
        double expect = 0;
        for (index_t j = 0; j < n; ++j)
          for (index_t b = 0; b < O; ++b) expect += full[((i * n + j) * O + a) * O + b] * v[size_t((c * n + j) * O + b)];
        EXPECT_NEAR(y[size_t((c * n + i) * O + a)], expect, 1e-11 * (std::abs(expect) + 1));
      }
}

TEST(Entk, OutOfCoreFileEqualsInMemoryKernel) {
  Network net(kNets[2].spec, kNets[2].input);
  auto theta = net.init<double>(22);
  Array<double> x1 = random_inputs(net, 11, 23), x2 = random_inputs(net, 6, 24);
  const std::string path = ::testing::TempDir() + "/ntk_out_of_core_test.npy";
  for (EntkMethod method : {EntkMethod::sd, EntkMethod::jc})  // jc spills its Jacobian rows to disk
  for (const char* mode : {"full", "trace", "diagonal"})
    for (bool symmetric : {true, false}) {
      EntkOptions o = opts(mode, method, 4);  // 4 does not divide 11
      const Array<double>* second = symmetric ? nullptr : &x2;
      Array<double> in_memory = empirical_ntk(net, theta, x1, second, o);
      empirical_ntk_to_file(net, theta, x1, second, o, path);
      Array<double> from_file = read_npy(path).as<double>();
      EXPECT_EQ(from_file.shape(), in_memory.shape());
      EXPECT_LE(rel_err(from_file, in_memory), 1e-14) << mode << (symmetric ? " symmetric" : "");
    }
  std::remove(path.c_str());
}

TEST(Entk, EmpiricalNngpIsTheOutputGram) {
  // Each entry is a product of outputs from an independent forward pass; modes reduce as for the eNTK.
  Network net(kNets[0].spec, kNets[0].input);
  auto theta = net.init<double>(25);
  Array<double> x1 = random_inputs(net, 4, 26), x2 = random_inputs(net, 3, 27);
  Array<double> f1 = net.apply(theta, x1), f2 = net.apply(theta, x2);
  Array<double> full = empirical_nngp(net, theta, x1, &x2, parse_entk_mode("full"));
  Array<double> trace = empirical_nngp(net, theta, x1, &x2, parse_entk_mode("trace"));
  Array<double> pntk = empirical_nngp(net, theta, x1, &x2, parse_entk_mode("pntk"));
  const index_t O = 3;
  for (index_t i = 0; i < 4; ++i)
    for (index_t j = 0; j < 3; ++j) {
      double tr = 0, all = 0;
      for (index_t a = 0; a < O; ++a)
        for (index_t b = 0; b < O; ++b) {
          const double v = full[((i * 3 + j) * O + a) * O + b];
          EXPECT_DOUBLE_EQ(v, f1[i * O + a] * f2[j * O + b]);
          all += v;
          if (a == b) tr += v;
        }
      EXPECT_NEAR(trace[i * 3 + j], tr / O, 1e-14);
      EXPECT_NEAR(pntk[i * 3 + j], all / O, 1e-14);
    }
}

TEST(Entk, BadInputsGiveClearErrors) {
  Network net("Dense(4), Relu, Dense(3)", {5});
  auto theta = net.init<double>(1);
  Array<double> x = random_inputs(net, 3, 2);
  Array<double> wrong({3, 4});
  EXPECT_THROW(empirical_ntk(net, theta, x, &wrong, opts("full")), InvalidArgument);
  EXPECT_THROW(empirical_ntk(net, theta, x, nullptr, opts("logit=3")), InvalidArgument);
  EXPECT_THROW(parse_entk_mode("logit=-1"), InvalidArgument);
  EXPECT_THROW(parse_entk_mode("Full"), InvalidArgument);
  Array<double> nan = x;
  nan[4] = std::nan("");
  EXPECT_THROW(empirical_ntk(net, theta, nan, nullptr, opts("trace")), InvalidArgument);
  EntkOptions tiny = opts("full");
  tiny.max_memory = 1024;
  EXPECT_THROW(empirical_ntk(net, theta, x, nullptr, tiny), MemoryBudgetError);
}

}  // namespace
}  // namespace ntk
