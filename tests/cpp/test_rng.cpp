// Philox known-answer vectors (Random123's kat_vectors for philox4x32_10) and the statistics and
// determinism of the derived normals.
#include <gtest/gtest.h>

#include <cmath>

#include "ntk/network.hpp"
#include "ntk/rng.hpp"

namespace ntk {
namespace {

TEST(Rng, PhiloxKnownAnswers) {
  using A = std::array<std::uint32_t, 4>;
  EXPECT_EQ(philox4x32(0, {0, 0, 0, 0}), (A{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  EXPECT_EQ(philox4x32(0xffffffffffffffffull, {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}),
            (A{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(philox4x32(0x299f31d0a4093822ull, {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}),
            (A{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

TEST(Rng, NormalMomentsAndIndependenceOfStreams) {
  const int n = 200000;
  double sum = 0, sum2 = 0, sum4 = 0, cross = 0;
  for (int i = 0; i < n; ++i) {
    double z = normal(5, 1, static_cast<std::uint64_t>(i));
    double w = normal(5, 2, static_cast<std::uint64_t>(i));
    sum += z;
    sum2 += z * z;
    sum4 += z * z * z * z;
    cross += z * w;
  }
  // Standard errors: mean 1/sqrt(n) ~ 0.0022, var sqrt(2/n) ~ 0.0032, kurtosis sqrt(96/n) ~ 0.022.
  EXPECT_NEAR(sum / n, 0.0, 0.01);
  EXPECT_NEAR(sum2 / n, 1.0, 0.015);
  EXPECT_NEAR(sum4 / n, 3.0, 0.1);
  EXPECT_NEAR(cross / n, 0.0, 0.01);
}

TEST(Rng, UniformInUnitInterval) {
  double sum = 0;
  for (int i = 0; i < 100000; ++i) {
    double u = uniform(9, 3, static_cast<std::uint64_t>(i));
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / 100000, 0.5, 0.005);
}

TEST(Rng, InitIsAPureFunctionOfSeedAndName) {
  Network a("Dense(16), Relu, Dense(4)", {8});
  Network b("Dense(16), Relu, Dense(4)", {8});
  EXPECT_EQ(a.init<double>(3), b.init<double>(3));
  EXPECT_NE(a.init<double>(3), a.init<double>(4));
  // Bit-identical whatever the thread count.
  EXPECT_EQ(a.init<double>(3, 1), a.init<double>(3, 3));
  EXPECT_EQ(a.init<float>(3, 1), a.init<float>(3, 7));
  // A parameter's values depend on its name, not on what precedes it in the buffer.
  Network c("Dense(16), Relu, Dense(4, b_std=0.1)", {8});
  auto ta = a.init<double>(3), tc = c.init<double>(3);
  for (index_t i = 0; i < 8 * 16 + 16 * 4; ++i) EXPECT_EQ(ta[i], tc[i]);
}

}  // namespace
}  // namespace ntk

namespace ntk {
namespace {
TEST(Rng, FillNormalEqualsNormalAtEveryOffset) {
  for (std::uint64_t first : {0, 1, 6, 7}) {
    for (std::uint64_t count : {0, 1, 2, 5, 8}) {
      std::vector<double> v(count + 1, -1.0);
      fill_normal(9, 3, first, count, v.data());
      for (std::uint64_t k = 0; k < count; ++k) EXPECT_EQ(v[k], normal(9, 3, first + k)) << first << " " << k;
      EXPECT_EQ(v[count], -1.0);  // nothing written past count
    }
  }
}
}  // namespace
}  // namespace ntk
