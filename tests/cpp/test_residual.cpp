// Residual as a combinator: block(x) + shortcut(x), the shortcut the identity when omitted. Checked
// against the two branches built as networks of their own (forward pass, infinite-width kernels),
// the spec round trip, parameter names, and the refusals.
#include <gtest/gtest.h>

#include <map>

#include "harness.hpp"
#include "ntk/empirical.hpp"
#include "ntk/error.hpp"
#include "ntk/infinite.hpp"
#include "ntk/io.hpp"
#include "ntk/network.hpp"

namespace ntk {
namespace {

Array<double> inputs(const Shape& shape, std::uint64_t seed) {
  Array<double> x(shape);
  const std::vector<double> v = test::random_vector<double>(x.size(), seed);
  std::copy(v.begin(), v.end(), x.data());
  return x;
}

double max_rel(const Array<double>& a, const Array<double>& b) {
  double m = 0, s = 0;
  for (index_t e = 0; e < a.size(); ++e) m = std::max(m, std::abs(a[e] - b[e])), s = std::max(s, std::abs(b[e]));
  return m / s;
}

// The parameters of a branch network, taken by name from the whole network's ("1.3.W" -> "3.W").
std::vector<double> branch_params(const Network& whole, const std::vector<double>& theta, const Network& branch,
                                  const std::string& prefix) {
  std::map<std::string, RawArray> all = whole.params_to_npz(theta), mine;
  for (const ParamView& v : branch.param_views()) mine[v.name] = all.at(prefix + v.name);
  return branch.params_from_npz<double>(mine);
}

TEST(Residual, ShortcutParametersAreNamedAndTheSpecRoundTrips) {
  const Network net("Dense(6), Residual(Relu, Dense(5, b_std=0.1), shortcut=[Dense(5)]), Relu, Dense(2)", Shape{4});
  std::vector<std::string> names;
  for (const ParamView& v : net.param_views()) names.push_back(v.name);
  EXPECT_EQ(names, (std::vector<std::string>{"0.W", "1.1.W", "1.1.b", "1.shortcut.0.W", "3.W"}));
  EXPECT_EQ(net.num_params(), 24 + 35 + 30 + 10);
  const std::string described = net.describe();
  EXPECT_NE(described.find("shortcut=[Dense(5, W_std=1"), std::string::npos) << described;
  const Network again(described, Shape{4});
  EXPECT_EQ(again.describe(), described);
  EXPECT_EQ(again.num_params(), net.num_params());
}

TEST(Residual, ForwardIsTheSumOfTheBranchesBuiltOnTheirOwn) {
  const Shape img{6, 6, 3};
  const Network net("Residual(Conv(4, 3, stride=2, padding=SAME, b_std=0.2), Relu, Conv(4, 3, padding=SAME), "
                    "shortcut=[Conv(4, 1, stride=2), Erf])",
                    img);
  const Network block("Conv(4, 3, stride=2, padding=SAME, b_std=0.2), Relu, Conv(4, 3, padding=SAME)", img);
  const Network shortcut("Conv(4, 1, stride=2), Erf", img);
  const std::vector<double> theta = net.init<double>(5);
  const Array<double> x = inputs(Shape{3, 6, 6, 3}, 2);
  const Array<double> y = net.apply(theta, x);
  const Array<double> a = block.apply(branch_params(net, theta, block, "0."), x);
  const Array<double> b = shortcut.apply(branch_params(net, theta, shortcut, "0.shortcut."), x);
  ASSERT_EQ(y.shape(), a.shape());
  for (index_t e = 0; e < y.size(); ++e) ASSERT_EQ(y[e], a[e] + b[e]) << e;
}

TEST(Residual, EntkMethodsAgreeWithAShortcut) {
  const Network net("Conv(3, 3, padding=SAME), Residual(Relu, Conv(4, 3, stride=2, padding=SAME), "
                    "shortcut=[Conv(4, 1, stride=2, b_std=0.1)]), Relu, GlobalAvgPool, Dense(3)",
                    Shape{5, 5, 2});
  const std::vector<double> theta = net.init<double>(1);
  const Array<double> x1 = inputs(Shape{4, 5, 5, 2}, 3), x2 = inputs(Shape{3, 5, 5, 2}, 4);
  for (const char* mode : {"full", "trace", "pntk"}) {
    EntkOptions o;
    o.mode = parse_entk_mode(mode);
    o.method = EntkMethod::jc;
    const Array<double> jc = empirical_ntk(net, theta, x1, &x2, o);
    for (EntkMethod m : {EntkMethod::vp, EntkMethod::sd}) {
      o.method = m;
      EXPECT_LT(max_rel(empirical_ntk(net, theta, x1, &x2, o), jc), 1e-11) << mode << " " << to_string(m);
    }
  }
}

// Two branches from the same input with their own random last layers are independent, so the
// kernels of the sum are the sums of the branches' kernels, each computed as a network of its own.
TEST(Residual, InfiniteKernelOfIndependentBranchesIsTheSumOfTheirKernels) {
  struct Case {
    std::string block, shortcut;
    Shape shape;
  };
  const Case cases[] = {
      {"Dense(8, W_std=1.3, b_std=0.2), Relu, Dense(1)", "Dense(1, W_std=0.7)", {5}},
      {"Dense(8), Erf, Dense(1, b_std=0.3, parameterization=standard)", "Dense(1, b_std=0.1)", {5}},
      {"Conv(2, 3, padding=SAME, W_std=1.4), Relu, Conv(2, 3, padding=SAME)", "Conv(2, 1)", {4, 4, 2}},
  };
  for (const Case& c : cases)
    for (const auto get : {KernelOptions::ntk, KernelOptions::nngp}) {
      const std::string readout = c.shape.size() > 1 ? ", GlobalAvgPool" : "";
      KernelOptions o;
      o.get = get;
      Shape xs = c.shape;
      xs.insert(xs.begin(), 4);
      const Array<double> x = inputs(xs, 6);
      const Network whole("Residual(" + c.block + ", shortcut=[" + c.shortcut + "])" + readout, c.shape);
      const Array<double> k = infinite_kernel(whole, x, nullptr, o);
      const Array<double> ka = infinite_kernel(Network(c.block + readout, c.shape), x, nullptr, o);
      const Array<double> kb = infinite_kernel(Network(c.shortcut + readout, c.shape), x, nullptr, o);
      Array<double> sum(ka.shape());
      for (index_t e = 0; e < sum.size(); ++e) sum[e] = ka[e] + kb[e];
      EXPECT_LT(max_rel(k, sum), 1e-13) << c.block << " | " << c.shortcut;
    }
}

TEST(Residual, KernelsWhoseBranchesAreCorrelatedAreRefused) {
  const Array<double> x = inputs(Shape{3, 4}, 1);
  // x + x: the branches are the same variable, so their kernels do not simply add.
  EXPECT_THROW(infinite_kernel(Network("Dense(4), Residual(Identity), Dense(1)", Shape{4}), x, nullptr), NotSupported);
  // relu(h) + h: correlated through the shared h.
  EXPECT_THROW(infinite_kernel(Network("Dense(4), Residual(Relu, shortcut=[Identity]), Dense(1)", Shape{4}), x, nullptr),
               NotSupported);
  // Either branch with a random layer of its own is enough.
  EXPECT_NO_THROW(infinite_kernel(Network("Dense(4), Residual(Relu, shortcut=[Dense(4)]), Dense(1)", Shape{4}), x, nullptr));
}

TEST(Residual, BadShortcutsAreClearErrors) {
  EXPECT_THROW(Network("Dense(3, shortcut=[Dense(3)])", Shape{4}), ParseError);
  EXPECT_THROW(Network("Residual(Relu, skip=[Dense(3)])", Shape{4}), ParseError);
  EXPECT_THROW(Network("Residual(Relu, shortcut=[])", Shape{4}), ParseError);
  EXPECT_THROW(Network("Residual(Relu, shortcut=[Dense(3)], shortcut=[Dense(3)])", Shape{4}), ParseError);
  EXPECT_THROW(Network("Residual(Relu, shortcut=[Dense(3)", Shape{4}), ParseError);
  try {
    Network("Residual(Dense(5), shortcut=[Dense(3)])", Shape{4});
    FAIL() << "no error";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("but its shortcut to (3,)"), std::string::npos) << e.what();
  }
  // Without a shortcut, the block must keep the shape; the message names the way out.
  try {
    Network("Residual(Dense(5))", Shape{4});
    FAIL() << "no error";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("shortcut=[...]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ntk
