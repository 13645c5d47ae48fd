// ntk features run as a separate process: features whose Gram approximates what `ntk kernel` computes
// for the documented spec, the same features from the library, and bad inputs that fail with one
// "error:" line, the exit status of DESIGN.md and no output file.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "cli_fixture.hpp"
#include "harness.hpp"
#include "ntk/features.hpp"
#include "ntk/io.hpp"

namespace ntk {
namespace {

const char* const kSpec2 =
    "'Dense(64, W_std=1.4142135623730951, b_std=none), Relu, Dense(64, W_std=1.4142135623730951, b_std=none), Relu, "
    "Dense(1, W_std=1, b_std=none)'";

// ‖F·Fᵀ − K‖_F / ‖K‖_F for features F (n, m) and a kernel K (n, n).
double gram_error(const Array<double>& f, const Array<double>& k) {
  const index_t n = f.dim(0), m = f.dim(1);
  double e = 0, ref = 0;
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) {
      double g = 0;
      for (index_t c = 0; c < m; ++c) g += f[i * m + c] * f[j * m + c];
      e += (g - k[i * n + j]) * (g - k[i * n + j]);
      ref += k[i * n + j] * k[i * n + j];
    }
  return std::sqrt(e / ref);
}

class CliFeatures : public Cli {
 protected:
  Array<double> write_points(const std::string& name, index_t n, index_t d) const {
    auto v = test::random_vector<double>(n * d, 17);
    for (double& x : v) x = std::abs(x);
    Array<double> x(Shape{n, d}, v);
    write_npy(path(name), x);
    return x;
  }
};

TEST_F(CliFeatures, GramApproximatesTheKernelOfTheSpecAndMatchesTheLibrary) {
  const index_t n = 20, d = 12, m = 4096;
  const Array<double> x = write_points("x.npy", n, d);
  ASSERT_EQ(run("kernel --net " + std::string(kSpec2) + " --x1 " + q(path("x.npy")) + " -o " + q(path("k.npy")) + " -q").status, 0);
  const Array<double> k = read_npy(path("k.npy")).as<double>();
  for (const std::string sketch : {"ntk", "ntkrf", "ntk --layerwise", "ntkrf --relu-dim 1024 --step-dim 2048 --transform hadamard --separate-projections"}) {
    SCOPED_TRACE(sketch);
    const Result r = run("features --sketch " + sketch + " --depth 2 --dim " + std::to_string(m) + " --seed 3 --dtype float64 -x " +
                         q(path("x.npy")) + " -o " + q(path("f.npy")));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("wrote"), std::string::npos) << r.out;
    const Array<double> f = read_npy(path("f.npy")).as<double>();
    ASSERT_EQ(f.dim(0), n);
    ASSERT_EQ(f.dim(1), m);
    EXPECT_LT(gram_error(f, k), 0.1);
    // The CLI is the library: the same features from the same seed.
    std::vector<double> lib(static_cast<size_t>(n * m));
    if (sketch == "ntk --layerwise")
      CntkSketch({1, 1, d, m, 2, 1, true, 2, 0, 3, SketchTransform::fourier}).transform(x.data(), n, lib.data());
    else if (sketch == "ntk")
      NtkSketch({d, m, 2, 8, 0, 3}).transform(x.data(), n, lib.data());
    else if (sketch == "ntkrf")
      NtkRandomFeatures({d, m, 2, 0, 0, true, 3}).transform(x.data(), n, lib.data());
    else
      NtkRandomFeatures({d, m, 2, 1024, 2048, true, 3, SketchTransform::hadamard, false}).transform(x.data(), n, lib.data());
    for (index_t i = 0; i < n * m; ++i) ASSERT_EQ(f[i], lib[size_t(i)]) << i;
  }
}

TEST_F(CliFeatures, GradientSketchApproximatesThePntkOfNtkEntk) {
  const index_t n = 10, m = 8192;
  Array<double> images(Shape{n, 5, 5, 1}, test::random_vector<double>(n * 25, 21));
  write_npy(path("img.npy"), images);
  const std::string net = " --net 'Conv(4, 3, padding=SAME), Relu, GlobalAvgPool, Dense(3)' ";
  ASSERT_EQ(run("entk" + net + "--seed 5 --mode pntk --x1 " + q(path("img.npy")) + " -o " + q(path("k.npy")) + " -q").status, 0);
  const Result r = run("features --sketch gradient" + net + "--init-seed 5 --dim " + std::to_string(m) +
                       " --dtype float64 -x " + q(path("img.npy")) + " -o " + q(path("g.npy")));
  ASSERT_EQ(r.status, 0) << r.err;
  const Array<double> k = read_npy(path("k.npy")).as<double>(), f = read_npy(path("g.npy")).as<double>();
  ASSERT_EQ(f.dim(1), m);
  EXPECT_LT(gram_error(f, k), 0.1);
  const std::string io = " -x " + q(path("img.npy")) + " -o " + q(path("f.npy"));
  expect_failure("features --sketch gradient" + net + "--init-seed 5 --mode trace --dim 16" + io, 1, path("f.npy"));
  expect_failure("features --sketch gradient --init-seed 5 --dim 16" + io, 2, path("f.npy"));           // no --net
  expect_failure("features --sketch gradient" + net + "--dim 16" + io, 2, path("f.npy"));               // no parameters
  expect_failure("features --sketch ntk" + net + "--dim 16 --flatten" + io, 2, path("f.npy"));          // --net without gradient
  write_npy(path("vec.npy"), Array<double>(Shape{3, 4}, test::random_vector<double>(12, 2)));
  expect_failure("features --sketch gradient" + net + "--init-seed 1 --dim 16 -x " + q(path("vec.npy")) + " -o " + q(path("f.npy")), 1,
                 path("f.npy"));  // vectors into a Conv
}

TEST_F(CliFeatures, CntkSketchApproximatesNtkKernelOfItsSpec) {
  const index_t n = 6, m = 4096;
  auto v = test::random_vector<double>(n * 7 * 7, 31);
  for (double& e : v) e = std::abs(e);
  write_npy(path("img.npy"), Array<double>(Shape{n, 7, 7, 1}, v));
  const std::string spec = "'Conv(4, 3, padding=SAME, W_std=1.4142135623730951, b_std=none), Relu, Conv(4, 3, padding=SAME, "
                           "W_std=1.4142135623730951, b_std=none), Relu, GlobalAvgPool, Dense(1, W_std=1, b_std=none)'";
  ASSERT_EQ(run("kernel --net " + spec + " --x1 " + q(path("img.npy")) + " -o " + q(path("k.npy")) + " -q").status, 0);
  const Result r = run("features --sketch cntk --depth 2 --dim " + std::to_string(m) + " --dtype float64 -x " + q(path("img.npy")) +
                       " -o " + q(path("f.npy")));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("CNTKSketch"), std::string::npos) << r.out;
  const Array<double> k = read_npy(path("k.npy")).as<double>(), f = read_npy(path("f.npy")).as<double>();
  EXPECT_LT(gram_error(f, k), 0.1);
  expect_failure("features --sketch cntk --depth 4 --padding VALID --dim 64 -x " + q(path("img.npy")) + " -o " + q(path("g.npy")), 1,
                 path("g.npy"));  // four VALID 3x3 layers do not fit 7x7
  expect_failure("features --sketch cntk --dim 66 -x " + q(path("img.npy")) + " -o " + q(path("g.npy")), 1, path("g.npy"));
}

TEST_F(CliFeatures, BadInputFailsCleanly) {
  write_points("x.npy", 5, 4);
  const std::string x = " -x " + q(path("x.npy")) + " -o " + q(path("f.npy"));
  expect_failure("features --sketch ntk --degree 3 --dim 16" + x, 1, path("f.npy"));   // degree not a power of two
  expect_failure("features --sketch ntk --dim 15" + x, 1, path("f.npy"));              // odd dimension
  expect_failure("features --sketch ntkrf --dim 2" + x, 1, path("f.npy"));             // too small for both parts
  expect_failure("features --sketch cntk --dim 16" + x, 1, path("f.npy"));             // vectors to CNTKSketch
  expect_failure("features --sketch cnn --dim 16" + x, 2, path("f.npy"));              // no such sketch
  Array<double> images(Shape{3, 4, 4, 1}, test::random_vector<double>(48, 5));
  write_npy(path("img.npy"), images);
  const Result r = expect_failure("features --sketch ntk --dim 16 -x " + q(path("img.npy")) + " -o " + q(path("f.npy")), 1, path("f.npy"));
  EXPECT_NE(r.err.find("--flatten"), std::string::npos) << r.err;
  EXPECT_EQ(run("features --sketch ntk --dim 16 --flatten -q -x " + q(path("img.npy")) + " -o " + q(path("g.npy"))).status, 0);
  std::vector<double> v = test::random_vector<double>(8, 6);
  v[5] = std::numeric_limits<double>::quiet_NaN();
  write_npy(path("nan.npy"), Array<double>(Shape{2, 4}, v));
  const Result n = expect_failure("features --sketch ntkrf --dim 16 -x " + q(path("nan.npy")) + " -o " + q(path("f.npy")), 1, path("f.npy"));
  EXPECT_NE(n.err.find("row 1"), std::string::npos) << n.err;
  write_npy(path("empty.npy"), Array<double>(Shape{0, 4}));
  expect_failure("features --sketch ntk --dim 16 -x " + q(path("empty.npy")) + " -o " + q(path("f.npy")), 1, path("f.npy"));
  // The map's own matrices count against the budget, and are refused before they are allocated: NTKRF's
  // second-layer weights at M = 65536 alone are 8 GiB in float32.
  const Result big = expect_failure("features --sketch ntkrf --depth 2 --dim 65536 --max-memory 1G" + x, 1, path("f.npy"));
  EXPECT_NE(big.err.find("ntkrf map"), std::string::npos) << big.err;
  EXPECT_NE(big.err.find("--max-memory"), std::string::npos) << big.err;
  for (const std::string s : {"ntk", "ntkrf", "ntk --layerwise"})
    EXPECT_EQ(run("features --sketch " + s + " --depth 2 --dim 64 --max-memory 64M -q -x " + q(path("x.npy")) + " -o " +
                  q(path("ok.npy"))).status, 0) << s;
  expect_failure("features --sketch cntk --dim 65536 --max-memory 32M -x " + q(path("img.npy")) + " -o " + q(path("f.npy")), 1,
                 path("f.npy"));
}

}  // namespace
}  // namespace ntk
