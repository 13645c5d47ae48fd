// The spec grammar and its errors: every error names the offending token and its position.
#include <gtest/gtest.h>

#include "ntk/error.hpp"
#include "ntk/network.hpp"
#include "ntk/spec.hpp"

namespace ntk {
namespace {

TEST(Spec, ParsesTheDesignExamples) {
  auto layers = parse_spec("Dense(512), Relu, Dense(512), Relu, Dense(10)");
  ASSERT_EQ(layers.size(), 5u);
  EXPECT_EQ(layers[0].name, "Dense");
  EXPECT_EQ(layers[0].args.at(0).value, "512");
  EXPECT_EQ(layers[1].name, "Relu");
  EXPECT_TRUE(layers[1].args.empty());

  layers = parse_spec(
      "Conv(64, 3, padding=SAME), Relu, Residual(Conv(64, 3, padding=SAME), Relu, Conv(64, 3, padding=SAME)), "
      "Relu, AvgPool(2), Flatten, Dense(10, b_std=0.1)");
  ASSERT_EQ(layers.size(), 7u);
  EXPECT_EQ(layers[2].name, "Residual");
  ASSERT_EQ(layers[2].children.size(), 3u);
  EXPECT_EQ(layers[2].children[0].args.at(2).key, "padding");
  EXPECT_EQ(layers[2].children[0].args.at(2).value, "SAME");
  EXPECT_EQ(layers[6].args.at(1).key, "b_std");
  EXPECT_EQ(layers[6].args.at(1).value, "0.1");
  // Canonical text round-trips.
  EXPECT_EQ(to_string(parse_spec(to_string(layers))), to_string(layers));
}

TEST(Spec, PositionsAreOneBasedCharacterOffsets) {
  auto layers = parse_spec("Dense(5),  Relu");
  EXPECT_EQ(layers[0].pos, 1u);
  EXPECT_EQ(layers[0].args[0].pos, 7u);
  EXPECT_EQ(layers[1].pos, 12u);
}

void expect_parse_error(const std::string& spec, const std::string& token, size_t pos) {
  try {
    Network net(spec, {4, 4, 2});
    FAIL() << "no error for spec: " << spec;
  } catch (const ParseError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(token), std::string::npos) << msg;
    EXPECT_NE(msg.find("position " + std::to_string(pos)), std::string::npos) << msg;
  }
}

TEST(Spec, ErrorsNameTokenAndPosition) {
  expect_parse_error("Dense(10), Dnse(3)", "'Dnse'", 12);
  expect_parse_error("Dense(10", "end of spec", 9);
  expect_parse_error("Dense(10,,)", "','", 10);
  expect_parse_error("Dense(10) Relu", "'Relu'", 11);
  expect_parse_error("Dense(10, W_sdt=2)", "W_sdt", 11);
  expect_parse_error("Dense(ten)", "ten", 7);
  expect_parse_error("Dense(0)", "'0'", 7);
  expect_parse_error("Dense(10, b_std=abc)", "b_std=abc", 11);
  expect_parse_error("Conv(4, 3, padding=FULL)", "padding=FULL", 12);
  expect_parse_error("Conv(4, 3x)", "3x", 9);
  expect_parse_error("Relu(2)", "'2'", 6);
  expect_parse_error("Dense(3, 4, 5, 6, 7)", "too many", 19);
  expect_parse_error("Dense(3, out=4)", "given twice", 10);
  expect_parse_error("Residual()", "Residual", 1);
  expect_parse_error("Residual(2)", "'2'", 10);
  expect_parse_error("Relu(Dense(2))", "Relu", 1);
  expect_parse_error("Dense(10) # comment", "'#'", 11);
  expect_parse_error("dense(10)", "'dense'", 1);
  expect_parse_error("Dense(10, W_std=nan)", "W_std=nan", 11);
  expect_parse_error("Dense(10, W_std=inf)", "W_std=inf", 11);
}

// Integer padding as PyTorch writes it (padding=3, or padding=1x2 for rows x columns) beside
// VALID and SAME: describe() writes back what parses to the same layer, and the output size is
// PyTorch's floor((in + 2p − k)/s) + 1.
TEST(Spec, IntegerPaddingRoundTrips) {
  struct Case {
    std::string spec;
    Shape in, out;
    std::string described;
  };
  const Case cases[] = {
      {"Conv(4, 7, stride=2, padding=3)", {16, 15, 1}, {8, 8, 4},
       "Conv(4, 7x7, stride=2x2, padding=3, W_std=1, b_std=none, parameterization=ntk)"},
      {"Conv(2, 3x5, padding=1x2)", {4, 4, 1}, {4, 4, 2},
       "Conv(2, 3x5, stride=1x1, padding=1x2, W_std=1, b_std=none, parameterization=ntk)"},
      {"Conv(2, 3, padding=1x0)", {4, 4, 1}, {4, 2, 2},
       "Conv(2, 3x3, stride=1x1, padding=1x0, W_std=1, b_std=none, parameterization=ntk)"},
      {"Conv(2, 3, padding=0)", {4, 4, 1}, {2, 2, 2},
       "Conv(2, 3x3, stride=1x1, padding=0, W_std=1, b_std=none, parameterization=ntk)"},
      {"Conv(2, 2, padding=1)", {4, 4, 1}, {5, 5, 2},
       "Conv(2, 2x2, stride=1x1, padding=1, W_std=1, b_std=none, parameterization=ntk)"},
      {"Conv(2, 3, padding=SAME)", {4, 4, 1}, {4, 4, 2},
       "Conv(2, 3x3, stride=1x1, padding=SAME, W_std=1, b_std=none, parameterization=ntk)"},
      {"Conv(2, 3)", {4, 4, 1}, {2, 2, 2}, "Conv(2, 3x3, stride=1x1, padding=VALID, W_std=1, b_std=none, parameterization=ntk)"},
      {"AvgPool(3, stride=2, padding=1)", {5, 6, 2}, {3, 3, 2}, "AvgPool(3x3, stride=2x2, padding=1)"},
      {"AvgPool(2x3, padding=1)", {4, 6, 2}, {3, 2, 2}, "AvgPool(2x3, stride=2x3, padding=1)"},
      {"AvgPool(3, 2, 0x1)", {5, 6, 2}, {2, 3, 2}, "AvgPool(3x3, stride=2x2, padding=0x1)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.spec);
    Network net(c.spec, c.in);
    EXPECT_EQ(net.output_shape(), c.out);
    EXPECT_EQ(net.layers()[0]->describe(), c.described);
    Network again(net.describe(), c.in);
    EXPECT_EQ(again.describe(), net.describe());
    EXPECT_EQ(again.output_shape(), c.out);
  }
}

TEST(Spec, IntegerPaddingErrorsNameLayerAndToken) {
  // PyTorch's bound: at most half the window (k/2 rounded down) on each axis.
  expect_parse_error("Conv(4, 3, padding=2)", "padding=2", 12);
  expect_parse_error("Conv(4, 7, stride=2, padding=4)", "padding=4", 22);
  expect_parse_error("Conv(4, 3x1, padding=1x1)", "padding=1x1", 14);
  expect_parse_error("Conv(4, 1, padding=1)", "padding=1", 12);
  expect_parse_error("AvgPool(2, padding=2)", "padding=2", 12);
  expect_parse_error("AvgPool(3, 2, 2)", "'2'", 15);
  // Negative, malformed, or neither a size nor VALID / SAME.
  expect_parse_error("Conv(4, 3, padding=-1)", "padding=-1", 12);
  expect_parse_error("Conv(4, 3, padding=1x-1)", "padding=1x-1", 12);
  expect_parse_error("Conv(4, 3, padding=1x)", "padding=1x", 12);
  expect_parse_error("Conv(4, 3, padding=x1)", "padding=x1", 12);
  expect_parse_error("Conv(4, 3, padding=1.5)", "padding=1.5", 12);
  expect_parse_error("Conv(4, 3, padding=1x1x1)", "padding=1x1x1", 12);
  expect_parse_error("Conv(4, 3, padding=same)", "padding=same", 12);
  for (const char* spec : {"Conv(4, 3, padding=2)", "AvgPool(2, padding=2)"}) {
    try {
      Network net(spec, {4, 4, 2});
      FAIL() << spec;
    } catch (const InvalidArgument& e) {  // ParseError is one
      const std::string msg = e.what();
      EXPECT_NE(msg.find(std::string(spec).substr(0, std::string(spec).find('('))), std::string::npos) << msg;
      EXPECT_NE(msg.find("at most half the window"), std::string::npos) << msg;
    }
  }
  // No output pixel: a window larger than the padded input, naming the layer.
  try {
    Network net("Dense(2), Conv(2, 7, padding=1)", {4, 4, 2});
    FAIL();
  } catch (const InvalidArgument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("layer 1 (Conv"), std::string::npos) << msg;
    EXPECT_NE(msg.find("padding=1"), std::string::npos) << msg;
  }
  // One row: 1 + 2·1 − 5 < 0 leaves no window; 1 + 2·2 − 5 = 0 leaves exactly one.
  EXPECT_THROW(Network("AvgPool(5, padding=1)", {1, 8, 1}), InvalidArgument);
  EXPECT_EQ(Network("AvgPool(5, padding=2)", {1, 8, 1}).output_shape(), (Shape{1, 2, 1}));
}

TEST(Spec, DeepNestingIsRefusedNotACrash) {
  std::string spec;
  for (int i = 0; i < 100000; ++i) spec += "Residual(";
  EXPECT_THROW(parse_spec(spec), ParseError);
  std::string ok = "Dense(3)";
  for (int i = 0; i < 10; ++i) ok = "Residual(" + ok + ")";
  EXPECT_NO_THROW(Network(ok, {3}));
}

TEST(Spec, ShapeErrorsNameTheLayer) {
  try {
    Network net("Dense(4), Conv(2, 3)", {8});
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("layer 1 (Conv"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Network("Conv(2, 5)", {4, 4, 1}), InvalidArgument);
  EXPECT_THROW(Network("Residual(Dense(3))", {4}), InvalidArgument);
  EXPECT_THROW(Network("Dense(3)", {}), InvalidArgument);
  EXPECT_THROW(Network("", {3}), ParseError);
  EXPECT_THROW(Network("   ", {3}), ParseError);
  EXPECT_THROW(Network("Dense(3)", {0}), InvalidArgument);
}

TEST(Spec, LayerArgumentsOverrideNetworkDefaults) {
  NetworkDefaults d{2.0, 0.5, Parameterization::standard};
  Network net("Dense(3), Dense(2, W_std=1, b_std=none, parameterization=ntk)", {4}, d);
  EXPECT_EQ(net.layers()[0]->describe(), "Dense(3, W_std=2, b_std=0.5, parameterization=standard)");
  EXPECT_EQ(net.layers()[1]->describe(), "Dense(2, W_std=1, b_std=none, parameterization=ntk)");
  EXPECT_EQ(net.num_params(), 4 * 3 + 3 + 3 * 2);
  // Standard parameterization: stored values carry the scale W_std/sqrt(fan_in), bias b_std.
  EXPECT_DOUBLE_EQ(net.param_views()[0].init_std, 2.0 / 2.0);
  EXPECT_DOUBLE_EQ(net.param_views()[1].init_std, 0.5);
  EXPECT_DOUBLE_EQ(net.param_views()[2].init_std, 1.0);
}

TEST(Spec, ParameterNamesFollowTheSpecPaths) {
  Network net("Conv(2, 3, padding=SAME), Residual(Relu, Conv(2, 3, padding=SAME, b_std=0)), Flatten, Dense(3)", {4, 4, 1});
  std::vector<std::string> names;
  for (const auto& v : net.param_views()) names.push_back(v.name);
  EXPECT_EQ(names, (std::vector<std::string>{"0.W", "1.1.W", "1.1.b", "3.W"}));
  EXPECT_EQ(net.param_views()[0].shape, (Shape{3, 3, 1, 2}));
  EXPECT_EQ(net.param_views()[3].shape, (Shape{32, 3}));
}

}  // namespace
}  // namespace ntk
