// Oracles shared by the sketch and feature-map tests: Gram matrices, unbiasedness over seeds with the
// 1/√seeds rate, bit-identical output across threads and batch splits.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <algorithm>
#include <functional>
#include <iostream>
#include <vector>

#include "ntk/array.hpp"
#include "ntk/parallel.hpp"

namespace ntk::test {

using Vec = std::vector<double>;

// F·Fᵀ of n rows of m features.
inline Vec gram(const Vec& f, index_t n, index_t m) {
  Vec g(size_t(n * n), 0.0);
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j)
      for (index_t k = 0; k < m; ++k) g[size_t(i * n + j)] += f[size_t(i * m + k)] * f[size_t(j * m + k)];
  return g;
}

inline Vec linear_gram(const Vec& x, index_t n, index_t d) { return gram(x, n, d); }


// Runs the sketched Gram of seeds [0, seeds) and checks it against the exact one:
//  - every entry of the mean over all seeds within 5 standard errors of the exact value, and the
//    relative Frobenius error of the mean small;
//  - the root-mean-square Frobenius error of a mean over 50 seeds (32 disjoint groups) is about twice
//    that of a mean over 200 seeds (8 groups): the 1/√seeds rate of an unbiased estimator (a biased
//    one stalls at its bias, ratio → 1).
inline void check_unbiased(const std::function<Vec(std::uint64_t)>& sketched_gram, const Vec& exact, double max_rel_error) {
  const int seeds = 1600;
  const size_t e = exact.size();
  ThreadScope serial(1);  // batches of 6 rows: waking the pool per seed would cost more than the work
  std::vector<Vec> g(seeds);
  for (int s = 0; s < seeds; ++s) g[size_t(s)] = sketched_gram(std::uint64_t(s));

  Vec mean(e, 0.0), var(e, 0.0);
  for (const Vec& gs : g)
    for (size_t k = 0; k < e; ++k) mean[k] += gs[k] / seeds;
  for (const Vec& gs : g)
    for (size_t k = 0; k < e; ++k) var[k] += (gs[k] - mean[k]) * (gs[k] - mean[k]) / (seeds - 1);
  double err2 = 0, ref2 = 0;
  for (size_t k = 0; k < e; ++k) {
    EXPECT_LE(std::abs(mean[k] - exact[k]), 5 * std::sqrt(var[k] / seeds) + 1e-12)
        << "entry " << k << ": mean " << mean[k] << " exact " << exact[k];
    err2 += (mean[k] - exact[k]) * (mean[k] - exact[k]);
    ref2 += exact[k] * exact[k];
  }
  EXPECT_LE(std::sqrt(err2 / ref2), max_rel_error);

  auto rms_error = [&](int group) {
    double sum = 0;
    const int groups = seeds / group;
    for (int q = 0; q < groups; ++q) {
      Vec m(e, 0.0);
      for (int s = q * group; s < (q + 1) * group; ++s)
        for (size_t k = 0; k < e; ++k) m[k] += g[size_t(s)][k] / group;
      for (size_t k = 0; k < e; ++k) sum += (m[k] - exact[k]) * (m[k] - exact[k]);
    }
    return std::sqrt(sum / groups);
  };
  const double ratio = rms_error(50) / rms_error(200);
  std::cout << "[ info ] mean over " << seeds << " seeds: relative Frobenius error " << std::sqrt(err2 / ref2)
            << "; RMS error of 50-seed means / 200-seed means = " << ratio << "\n";
  EXPECT_GT(ratio, 1.4) << "error of the mean over 50 seeds / over 200 seeds";
  EXPECT_LT(ratio, 2.8) << "error of the mean over 50 seeds / over 200 seeds";
}

// Bit-identical output for 1 and 2 threads and for a batch split [0, k) + [k, n).
template <class Apply>
void check_deterministic(index_t n, index_t m, Apply apply) {
  Vec one(size_t(n * m)), two(size_t(n * m)), split(size_t(n * m));
  {
    ThreadScope t(1);
    apply(index_t(0), n, one.data());
  }
  {
    ThreadScope t(2);
    apply(index_t(0), n, two.data());
    const index_t k = std::min<index_t>(13, n / 2);  // a split inside the rows, whatever n
    apply(index_t(0), k, split.data());
    apply(k, n - k, split.data() + k * m);
  }
  EXPECT_EQ(std::memcmp(one.data(), two.data(), one.size() * sizeof(double)), 0);
  EXPECT_EQ(std::memcmp(one.data(), split.data(), one.size() * sizeof(double)), 0);
}

}  // namespace ntk::test
