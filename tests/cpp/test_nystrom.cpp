// Kernel blocks against the full kernels computed directly; Nyström ridge against exact kernel ridge
// (M = N) and against a dense solve of its own normal equations written here (M < N); ridge on
// features against kernel ridge on F Fᵀ (the primal / dual identity).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "file_fixture.hpp"
#include "harness.hpp"
#include "linear_oracle.hpp"
#include "ntk/empirical.hpp"
#include "ntk/error.hpp"
#include "ntk/infinite.hpp"
#include "ntk/io.hpp"
#include "ntk/kernel_block.hpp"
#include "ntk/nystrom.hpp"
#include "ntk/solve.hpp"

namespace ntk {
namespace {

using test::random_batch;

using test::gauss_solve;

// Naive (rows, k) · (cols, k)ᵀ.
template <class T>
std::vector<double> naive_abt(const Array<T>& a, const Array<T>& b) {
  const index_t r = a.dim(0), c = b.dim(0), k = a.dim(1);
  std::vector<double> out(size_t(r * c));
  for (index_t i = 0; i < r; ++i)
    for (index_t j = 0; j < c; ++j) {
      double s = 0;
      for (index_t e = 0; e < k; ++e) s += double(a[i * k + e]) * double(b[j * k + e]);
      out[size_t(i * c + j)] = s;
    }
  return out;
}

double rel(const std::vector<double>& a, const std::vector<double>& b) {
  return test::max_abs_diff(a, b) / test::max_abs(b);
}

// Entries full[ri[a], ci[b]] of a (rows × cols) kernel.
template <class T>
std::vector<double> pick(const Array<T>& full, const std::vector<index_t>& ri, const std::vector<index_t>& ci) {
  const index_t cols = full.dim(1);
  std::vector<double> out;
  for (index_t r : ri)
    for (index_t c : ci) out.push_back(double(full[r * cols + c]));
  return out;
}

std::vector<double> block_of(const KernelBlocks& k, const std::vector<index_t>& ri, const std::vector<index_t>& ci,
                             int threads = 0) {
  std::vector<double> out(ri.size() * ci.size(), -1.0);
  k.block(ri, ci, out.data(), threads);
  return out;
}

// Shuffled, repeated and partial index lists.
const std::vector<index_t> kRows = {4, 0, 4, 6, 2, 1};
const std::vector<index_t> kCols = {3, 3, 0, 5, 1};

const char* kNet = "Dense(16, W_std=1.4142135623730951, b_std=0.05), Relu, Dense(16, W_std=1.4142135623730951, b_std=0.05), Relu, Dense(1)";

// ---------------------------------------------------------------------------------------------
// Kernel blocks

TEST(KernelBlocks, ArrayInMemory) {
  const Array<double> k(Shape{7, 6}, test::random_vector<double>(42, 1));
  const Array<float> k32 = cast<float>(k);
  const auto blocks = array_kernel_blocks(k, false);
  EXPECT_EQ(blocks->rows(), 7);
  EXPECT_EQ(blocks->cols(), 6);
  EXPECT_FALSE(blocks->symmetric());
  EXPECT_EQ(block_of(*array_kernel_blocks(k, false), kRows, kCols), pick(k, kRows, kCols));
  EXPECT_EQ(block_of(*array_kernel_blocks(k32, false), kRows, kCols, 2), pick(k32, kRows, kCols));
  EXPECT_THROW(array_kernel_blocks(k, true), InvalidArgument);  // not square
  EXPECT_THROW(block_of(*array_kernel_blocks(k, false), {7}, {0}), InvalidArgument);  // out of range
  EXPECT_THROW(array_kernel_blocks(k, false)->diagonal(std::vector<index_t>{0}, nullptr), InvalidArgument);

  const Array<double> sq(Shape{5, 5}, test::random_vector<double>(25, 2));
  std::vector<double> d(3);
  array_kernel_blocks(sq, true)->diagonal(std::vector<index_t>{4, 0, 4}, d.data());
  EXPECT_EQ(d, (std::vector<double>{sq[24], sq[0], sq[24]}));
}

TEST(KernelBlocks, NonFiniteBlockIsANumericalErrorNamingTheKernel) {
  Array<double> k(Shape{3, 3}, std::vector<double>(9, 1.0));
  k[4] = std::nan("");
  const auto blocks = array_kernel_blocks(k, true);
  EXPECT_NO_THROW(block_of(*blocks, {0, 2}, {0, 2}));
  try {
    block_of(*blocks, {0, 1}, {1});
    FAIL() << "expected NumericalError";
  } catch (const NumericalError& e) {
    EXPECT_NE(std::string(e.what()).find("kernel array 3 x 3"), std::string::npos) << e.what();
  }
}

using KernelBlocksFile = test::FileTest;

TEST_F(KernelBlocksFile, MemoryMappedNpy) {
  const Array<double> k(Shape{7, 6}, test::random_vector<double>(42, 3));
  write_npy(path("k64.npy"), k);
  write_npy(path("k32.npy"), cast<float>(k));
  const auto b64 = npy_kernel_blocks(path("k64.npy"), false);
  const auto b32 = npy_kernel_blocks(path("k32.npy"), false);
  EXPECT_EQ(b64->rows(), 7);
  EXPECT_EQ(b64->cols(), 6);
  EXPECT_EQ(block_of(*b64, kRows, kCols), pick(k, kRows, kCols));
  EXPECT_EQ(block_of(*b32, kRows, kCols), pick(cast<float>(k), kRows, kCols));
  EXPECT_NE(b32->describe().find("k32.npy"), std::string::npos);
  EXPECT_THROW(npy_kernel_blocks(path("k64.npy"), true), InvalidArgument);  // not square

  const Array<double> sq(Shape{5, 5}, test::random_vector<double>(25, 4));
  write_npy(path("sq.npy"), sq);
  std::vector<double> d(2);
  npy_kernel_blocks(path("sq.npy"), true)->diagonal(std::vector<index_t>{3, 1}, d.data());
  EXPECT_EQ(d, (std::vector<double>{sq[18], sq[6]}));

  write_npy(path("k3d.npy"), Array<double>(Shape{2, 2, 2}));
  EXPECT_THROW(npy_kernel_blocks(path("k3d.npy"), false), InvalidArgument);
  write_npy(path("int.npy"), RawArray{DType::int32, Shape{2, 2}, std::vector<std::byte>(16)});
  EXPECT_THROW(npy_kernel_blocks(path("int.npy"), false), InvalidArgument);
  test::Bytes bytes = test::read_bytes(path("sq.npy"));
  bytes.resize(bytes.size() - 8);
  test::write_bytes(path("short.npy"), bytes);
  EXPECT_THROW(npy_kernel_blocks(path("short.npy"), true), IoError);
  EXPECT_THROW(npy_kernel_blocks(path("missing.npy"), true), IoError);
}

TEST(KernelBlocks, FeatureInnerProducts) {
  const Array<double> fr(Shape{7, 4}, test::random_vector<double>(28, 5));
  const Array<double> fc(Shape{6, 4}, test::random_vector<double>(24, 6));
  const std::vector<double> want = naive_abt(fr, fc);
  const Array<double> full(Shape{7, 6}, want);
  const auto cross = feature_kernel_blocks(fr, &fc);
  EXPECT_FALSE(cross->symmetric());
  EXPECT_LT(rel(block_of(*cross, kRows, kCols), pick(full, kRows, kCols)), 1e-14);
  const Array<float> fr32 = cast<float>(fr), fc32 = cast<float>(fc);
  EXPECT_LT(rel(block_of(*feature_kernel_blocks(fr32, &fc32), kRows, kCols), pick(Array<double>(Shape{7, 6}, naive_abt(fr32, fc32)), kRows, kCols)), 1e-14);

  const Array<double> self(Shape{7, 7}, naive_abt(fr, fr));
  const auto sym = feature_kernel_blocks(fr);
  EXPECT_TRUE(sym->symmetric());
  EXPECT_LT(rel(block_of(*sym, kRows, kRows), pick(self, kRows, kRows)), 1e-14);
  EXPECT_LT(rel(block_of(*sym, kRows, {6, 0}), pick(self, kRows, {6, 0})), 1e-14);
  std::vector<double> d(3);
  sym->diagonal(std::vector<index_t>{6, 2, 6}, d.data());
  EXPECT_LT(rel(d, {self[48], self[16], self[48]}), 1e-14);

  const Array<double> narrow(Shape{6, 3});
  EXPECT_THROW(feature_kernel_blocks(fr, &narrow), InvalidArgument);
  Array<double> bad = fr;
  bad[5] = std::nan("");
  EXPECT_THROW(feature_kernel_blocks(bad), InvalidArgument);
}

TEST(KernelBlocks, InfiniteWidthKernel) {
  const Network net(kNet, {5});
  const Array<double> xr = random_batch<double>(7, {5}, 7), xc = random_batch<double>(6, {5}, 8);
  for (const auto get : {KernelOptions::ntk, KernelOptions::nngp}) {
    KernelOptions opt;
    opt.get = get;
    const Array<double> self = infinite_kernel(net, xr, nullptr, opt), cross = infinite_kernel(net, xr, &xc, opt);
    const auto sym = infinite_kernel_blocks(net, xr, nullptr, opt);
    EXPECT_TRUE(sym->symmetric());
    EXPECT_LT(rel(block_of(*sym, kRows, kRows), pick(self, kRows, kRows)), 1e-12);  // the symmetric path
    EXPECT_LT(rel(block_of(*sym, kRows, kCols, 2), pick(self, kRows, kCols)), 1e-12);
    std::vector<double> d(3);
    sym->diagonal(std::vector<index_t>{6, 2, 6}, d.data());
    EXPECT_LT(rel(d, {self[48], self[16], self[48]}), 1e-12);
    const auto cb = infinite_kernel_blocks(net, xr, &xc, opt);
    EXPECT_FALSE(cb->symmetric());
    EXPECT_LT(rel(block_of(*cb, kRows, kCols), pick(cross, kRows, kCols)), 1e-12);
    // float32 inputs: the same kernel to float32 rounding.
    const Array<float> xr32 = cast<float>(xr);
    EXPECT_LT(rel(block_of(*infinite_kernel_blocks(net, xr32, nullptr, opt), kRows, kCols), pick(self, kRows, kCols)), 1e-5);
  }
  EXPECT_NE(infinite_kernel_blocks(net, xr, nullptr)->describe().find("NTK"), std::string::npos);
  const Array<double> wrong = random_batch<double>(3, {4}, 9);
  EXPECT_THROW(infinite_kernel_blocks(net, wrong, nullptr), InvalidArgument);
  EXPECT_THROW(infinite_kernel_blocks(net, xr, &wrong), InvalidArgument);
}

TEST(KernelBlocks, EmpiricalKernelInScalarModes) {
  const Network net("Dense(6, b_std=0.3), Tanh, Dense(3)", {4});
  const std::vector<double> theta = net.init<double>(3);
  const Array<double> xr = random_batch<double>(7, {4}, 10), xc = random_batch<double>(6, {4}, 11);
  for (const std::string mode : {"pntk", "trace", "logit=2"}) {
    EntkOptions opt;
    opt.mode = parse_entk_mode(mode);
    const Array<double> self = empirical_ntk(net, theta, xr, nullptr, opt), cross = empirical_ntk(net, theta, xr, &xc, opt);
    const auto sym = empirical_kernel_blocks(net, theta, xr, nullptr, opt);
    EXPECT_LT(rel(block_of(*sym, kRows, kRows), pick(self, kRows, kRows)), 1e-12) << mode;
    EXPECT_LT(rel(block_of(*sym, kCols, kRows), pick(self, kCols, kRows)), 1e-12) << mode;
    const auto cb = empirical_kernel_blocks(net, theta, xr, &xc, opt);
    EXPECT_LT(rel(block_of(*cb, kRows, kCols), pick(cross, kRows, kCols)), 1e-12) << mode;
    // Again with the same columns (pntk and logit keep the columns' gradients between calls).
    EXPECT_LT(rel(block_of(*cb, kCols, kCols), pick(cross, kCols, kCols)), 1e-12) << mode;
    std::vector<double> d(3);
    sym->diagonal(std::vector<index_t>{5, 0, 5}, d.data());
    EXPECT_LT(rel(d, {self[5 * 7 + 5], self[0], self[5 * 7 + 5]}), 1e-12) << mode;
  }
  {
    // The columns' gradients must fit max_memory: refused, naming the knob, before any is computed.
    EntkOptions tight;
    tight.mode = parse_entk_mode("pntk");
    tight.max_memory = 1 << 20;
    const auto blocks = empirical_kernel_blocks(net, theta, xr, &xc, tight);
    std::vector<double> out(kRows.size() * kCols.size());
    try {
      blocks->block(kRows, kCols, out.data());
      ADD_FAILURE() << "no MemoryBudgetError";
    } catch (const MemoryBudgetError& e) {
      EXPECT_NE(std::string(e.what()).find("--max-memory"), std::string::npos) << e.what();
    }
  }
  for (const std::string mode : {"full", "diagonal"}) {
    EntkOptions opt;
    opt.mode = parse_entk_mode(mode);
    try {
      empirical_kernel_blocks(net, theta, xr, nullptr, opt);
      FAIL() << "expected InvalidArgument for " << mode;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("pntk"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(empirical_kernel_blocks(net, std::vector<double>(3), xr, nullptr, EntkOptions{}), InvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Nyström

// An infinite-width NTK on n random inputs: positive definite but with the fast-decaying spectrum
// of a real kernel.
Array<double> ntk_kernel(index_t n, std::uint64_t seed) {
  const Network net(kNet, {12});
  return infinite_kernel(net, random_batch<double>(n, {12}, seed), nullptr);
}

Array<double> targets(index_t n, index_t o, std::uint64_t seed) {
  return Array<double>(Shape{n, o}, test::random_vector<double>(n * o, seed));
}

double mean_diagonal(const Array<double>& k) {
  double s = 0;
  for (index_t i = 0; i < k.dim(0); ++i) s += k[i * k.dim(0) + i];
  return s / double(k.dim(0));
}

TEST(Nystrom, AllCentersIsExactKernelRidge) {
  const index_t n = 70;
  const Array<double> k = ntk_kernel(n, 20);
  const auto blocks = array_kernel_blocks(k, true);
  for (const index_t o : {1, 3, 10}) {
    const Array<double> y = targets(n, o, 21 + std::uint64_t(o));
    RidgeOptions exact_opt;
    exact_opt.ridge = 1e-3;
    const RidgeFit exact = kernel_ridge(k, y, exact_opt);
    NystromOptions opt;
    opt.centers = n;
    opt.ridge = 1e-3;
    opt.tolerance = 1e-12;
    opt.selection = o == 3 ? CenterSelection::rpcholesky : CenterSelection::greedy;  // M = N: no selection
    const NystromFit fit = nystrom_ridge(*blocks, y, opt);
    EXPECT_EQ(fit.selection, CenterSelection::uniform);
    EXPECT_DOUBLE_EQ(fit.lambda, exact.lambda);
    ASSERT_EQ(index_t(fit.centers.size()), n);
    EXPECT_LE(fit.iterations, 3) << "the preconditioner is exact for M = N";
    EXPECT_TRUE(fit.knm_cached);
    // Centers are 0..N-1 in order, so α is exact kernel ridge's α.
    EXPECT_LT(rel(fit.alpha.vector(), exact.alpha.vector()), 1e-6) << "O = " << o;
    const Array<double> want = kernel_ridge_predict(k, exact.alpha);
    EXPECT_LT(rel(nystrom_predict(*blocks, fit).vector(), want.vector()), 1e-6);
    // An iteration limit met on the last iteration the solve needed changes nothing: CG's β still
    // becomes α.
    opt.max_iterations = fit.iterations;
    const NystromFit limited = nystrom_ridge(*blocks, y, opt);
    EXPECT_EQ(limited.iterations, fit.iterations);
    EXPECT_EQ(limited.alpha.vector(), fit.alpha.vector()) << "O = " << o;
  }
  // More centers than examples: all of them, with a warning.
  NystromOptions opt;
  opt.centers = n + 5;
  opt.ridge = 1e-2;
  const NystromFit fit = nystrom_ridge(*blocks, targets(n, 2, 5), opt);
  EXPECT_EQ(index_t(fit.centers.size()), n);
  EXPECT_FALSE(fit.warnings.empty());
}

// (K_nMᵀK_nM + λK_MM) α = K_nMᵀY formed and solved here from the full kernel.
std::vector<double> dense_nystrom(const Array<double>& k, const std::vector<index_t>& centers, const Array<double>& y,
                                  double lambda) {
  const index_t n = k.dim(0), m = index_t(centers.size()), o = y.dim(1);
  std::vector<double> h(size_t(m * m)), rhs(size_t(m * o));
  for (index_t a = 0; a < m; ++a) {
    for (index_t b = 0; b < m; ++b) {
      double s = 0;
      for (index_t i = 0; i < n; ++i) s += k[i * n + centers[size_t(a)]] * k[i * n + centers[size_t(b)]];
      h[size_t(a * m + b)] = s + lambda * k[centers[size_t(a)] * n + centers[size_t(b)]];
    }
    for (index_t c = 0; c < o; ++c) {
      double s = 0;
      for (index_t i = 0; i < n; ++i) s += k[i * n + centers[size_t(a)]] * y[i * o + c];
      rhs[size_t(a * o + c)] = s;
    }
  }
  return gauss_solve(h, rhs, m, o);
}

TEST(Nystrom, FewerCentersSolveTheNystromNormalEquations) {
  const index_t n = 90, m = 24, o = 3;
  const Array<double> k = ntk_kernel(n, 30);
  const Array<double> y = targets(n, o, 31);
  const auto blocks = array_kernel_blocks(k, true);
  for (const auto selection : {CenterSelection::uniform, CenterSelection::rpcholesky, CenterSelection::greedy})
  for (const bool relative : {true, false}) {
    SCOPED_TRACE(center_selection_name(selection));
    NystromOptions opt;
    opt.centers = m;
    opt.selection = selection;
    opt.selection_block = 5;  // several rounds
    opt.seed = 5;
    opt.ridge = relative ? 1e-2 : 0.05;
    opt.relative = relative;
    opt.tolerance = 1e-13;
    opt.max_iterations = 300;
    const NystromFit fit = nystrom_ridge(*blocks, y, opt);
    const double lambda = relative ? 1e-2 * mean_diagonal(k) : 0.05;
    EXPECT_NEAR(fit.lambda, lambda, 1e-15 * lambda);
    ASSERT_EQ(index_t(fit.centers.size()), m);
    EXPECT_TRUE(std::is_sorted(fit.centers.begin(), fit.centers.end()));
    EXPECT_EQ(std::adjacent_find(fit.centers.begin(), fit.centers.end()), fit.centers.end());
    EXPECT_GE(fit.centers.front(), 0);
    EXPECT_LT(fit.centers.back(), n);
    EXPECT_EQ(fit.selection, selection);
    EXPECT_EQ(fit.selection_rounds > 0, selection != CenterSelection::uniform);
    // For the pivoted selections this checks K_nM rebuilt from the Cholesky factor as well.
    EXPECT_LT(rel(fit.alpha.vector(), dense_nystrom(k, fit.centers, y, lambda)), 1e-6);
    EXPECT_FALSE(fit.residual_history.empty());
    EXPECT_EQ(index_t(fit.residual_history.size()), fit.iterations);
  }
}

TEST(Nystrom, CentersDependOnTheSeedOnly) {
  // Large enough that the selection's GEMMs split over threads.
  const index_t n = 600, m = 150;
  const Array<double> k = ntk_kernel(n, 40);
  const auto blocks = array_kernel_blocks(k, true);
  const Array<double> y = targets(n, 1, 41);
  for (const auto selection : {CenterSelection::uniform, CenterSelection::rpcholesky, CenterSelection::greedy}) {
    SCOPED_TRACE(center_selection_name(selection));
    NystromOptions opt;
    opt.centers = m;
    opt.ridge = 1e-2;
    opt.seed = 9;
    opt.selection = selection;
    opt.selection_block = 32;
    opt.threads = 4;
    const NystromFit a = nystrom_ridge(*blocks, y, opt);
    opt.threads = 1;
    const NystromFit b = nystrom_ridge(*blocks, y, opt);
    opt.threads = 3;
    const NystromFit b3 = nystrom_ridge(*blocks, y, opt);
    opt.seed = 10;
    const NystromFit c = nystrom_ridge(*blocks, y, opt);
    ASSERT_EQ(index_t(a.centers.size()), m);
    EXPECT_TRUE(std::is_sorted(a.centers.begin(), a.centers.end()));
    EXPECT_EQ(std::adjacent_find(a.centers.begin(), a.centers.end()), a.centers.end()) << "a duplicate center";
    EXPECT_EQ(a.centers, b.centers);
    EXPECT_EQ(a.centers, b3.centers);
    EXPECT_LT(rel(a.alpha.vector(), b.alpha.vector()), 1e-8);  // LAPACK threads round differently
    if (selection == CenterSelection::greedy)
      EXPECT_EQ(a.centers, c.centers) << "greedy does not use the seed";
    else
      EXPECT_NE(a.centers, c.centers);
  }
}

// Features of `clusters` random, linearly independent points in R^clusters; example i is a copy of
// point cluster_of[i], so K = Φ Φᵀ has rank `clusters` exactly and duplicated rows.
Array<double> clustered_features(const std::vector<index_t>& cluster_of, index_t clusters, std::uint64_t seed) {
  const std::vector<double> points = test::random_vector<double>(clusters * clusters, seed);
  Array<double> f(Shape{index_t(cluster_of.size()), clusters});
  for (size_t i = 0; i < cluster_of.size(); ++i)
    for (index_t c = 0; c < clusters; ++c) f[index_t(i) * clusters + c] = points[size_t(cluster_of[i] * clusters + c)];
  return f;
}

// The oracle: on a kernel of rank r whose examples are r points with very unequal multiplicities,
// a pivoted selection takes one copy of each point (a chosen point's copies have residual 0), so
// Nyström with M = r spans the kernel and predicts what exact kernel ridge does; uniform centers
// take mostly copies of the big cluster and do not.
TEST(Nystrom, PivotedSelectionSpansALowRankKernelOfDuplicates) {
  const index_t r = 6, n = 80, o = 2;
  std::vector<index_t> cluster_of(static_cast<size_t>(n), 0);  // 75 copies of point 0
  for (index_t c = 1; c < r; ++c) cluster_of[size_t(10 * c)] = c;  // one copy of each other point
  const Array<double> f = clustered_features(cluster_of, r, 90);
  Array<double> k(Shape{n, n}, naive_abt(f, f));
  const auto blocks = array_kernel_blocks(k, true);
  const Array<double> y = targets(n, o, 91);
  RidgeOptions exact_opt;
  exact_opt.ridge = 1e-3;
  const RidgeFit exact = kernel_ridge(k, y, exact_opt);
  const std::vector<double> want = kernel_ridge_predict(k, exact.alpha).vector();
  auto fit_with = [&](CenterSelection selection, std::uint64_t seed, index_t m) {
    NystromOptions opt;
    opt.centers = m;
    opt.ridge = 1e-3;
    opt.selection = selection;
    opt.seed = seed;
    opt.tolerance = 1e-12;
    opt.max_iterations = 200;
    opt.selection_block = 4;  // candidates repeat within a round and across rounds
    return nystrom_ridge(*blocks, y, opt);
  };
  for (const auto selection : {CenterSelection::rpcholesky, CenterSelection::greedy})
    for (const std::uint64_t seed : {0, 1, 2, 3}) {
      SCOPED_TRACE(std::string(center_selection_name(selection)) + " seed " + std::to_string(seed));
      const NystromFit fit = fit_with(selection, seed, r);
      ASSERT_EQ(index_t(fit.centers.size()), r);
      std::vector<index_t> hit;
      for (const index_t c : fit.centers) hit.push_back(cluster_of[size_t(c)]);
      std::sort(hit.begin(), hit.end());
      EXPECT_EQ(hit, (std::vector<index_t>{0, 1, 2, 3, 4, 5})) << "one center per distinct point";
      EXPECT_LT(rel(nystrom_predict(*blocks, fit).vector(), want), 1e-6);
      // More centers than the rank: the selection stops at r, with a warning, and is still exact.
      const NystromFit more = fit_with(selection, seed, r + 4);
      EXPECT_EQ(index_t(more.centers.size()), r);
      EXPECT_FALSE(more.warnings.empty());
      EXPECT_LT(rel(nystrom_predict(*blocks, more).vector(), want), 1e-6);
    }
  const NystromFit uniform = fit_with(CenterSelection::uniform, 0, r);
  std::vector<index_t> hit;
  for (const index_t c : uniform.centers) hit.push_back(cluster_of[size_t(c)]);
  EXPECT_LT(std::count(hit.begin(), hit.end(), 0), r) << "uniform centers here are mostly copies of point 0";
  EXPECT_GT(rel(nystrom_predict(*blocks, uniform).vector(), want), 1e-2) << "so uniform Nyström is not exact";
}

TEST(Nystrom, CenterSelectionNames) {
  for (const auto s : {CenterSelection::uniform, CenterSelection::rpcholesky, CenterSelection::greedy})
    EXPECT_EQ(parse_center_selection(center_selection_name(s)), s);
  EXPECT_THROW(parse_center_selection("kmeans"), InvalidArgument);
  EXPECT_EQ(NystromOptions{}.selection, CenterSelection::uniform);
}

TEST(Nystrom, CachedAndRecomputedKnmAgree) {
  const index_t n = 80, m = 25, o = 2;
  const Array<double> k = ntk_kernel(n, 50);
  const Array<double> y = targets(n, o, 51);
  const auto blocks = array_kernel_blocks(k, true);
  NystromOptions opt;
  opt.centers = m;
  opt.ridge = 1e-2;
  opt.tolerance = 1e-12;
  opt.max_iterations = 300;
  opt.selection = CenterSelection::uniform;  // pivoted selections need K_nM in memory (below)
  index_t progress_calls = 0;
  opt.progress = [&](index_t it, index_t max_it, double residual) {
    ++progress_calls;
    EXPECT_LE(it, max_it);
    EXPECT_GE(residual, 0.0);
  };
  const NystromFit cached = nystrom_ridge(*blocks, y, opt);
  EXPECT_TRUE(cached.knm_cached);
  EXPECT_EQ(progress_calls, cached.iterations);
  // About 20 kB for K_MM, its factors and the CG state; all of K_nM would add 16 kB.
  opt.max_memory = 30000;
  opt.row_block = 7;  // does not divide N
  const NystromFit recomputed = nystrom_ridge(*blocks, y, opt);
  EXPECT_FALSE(recomputed.knm_cached);
  EXPECT_FALSE(recomputed.warnings.empty());
  EXPECT_EQ(cached.centers, recomputed.centers);
  EXPECT_LT(rel(recomputed.alpha.vector(), cached.alpha.vector()), 1e-10);
  // K_nM kept in float32: the same centers, and the solution of the kernel rounded to float32, which
  // for a kernel already in float32 is the kernel itself.
  Array<float> k32 = cast<float>(k);
  const auto blocks32 = array_kernel_blocks(k32, true);
  NystromOptions opt32 = opt;
  opt32.max_memory = 0;
  const NystromFit in_double = nystrom_ridge(*blocks32, y, opt32);
  opt32.cache_float32 = true;
  opt32.row_block = 9;
  const NystromFit in_single = nystrom_ridge(*blocks32, y, opt32);
  EXPECT_TRUE(in_single.knm_cached);
  EXPECT_EQ(in_single.centers, cached.centers);
  EXPECT_LT(rel(in_single.alpha.vector(), in_double.alpha.vector()), 1e-10);
  EXPECT_GT(rel(in_single.alpha.vector(), cached.alpha.vector()), 0.0);  // the float32 kernel is another kernel

  // A pivoted selection under the same budget falls back to uniform centers, with a warning.
  opt.selection = CenterSelection::rpcholesky;
  const NystromFit fallback = nystrom_ridge(*blocks, y, opt);
  EXPECT_EQ(fallback.selection, CenterSelection::uniform);
  EXPECT_EQ(fallback.centers, cached.centers);
  EXPECT_GE(fallback.warnings.size(), 2u);
  opt.max_memory = 0;
  const NystromFit pivoted = nystrom_ridge(*blocks, y, opt);
  EXPECT_EQ(pivoted.selection, CenterSelection::rpcholesky);
  EXPECT_TRUE(pivoted.knm_cached);
  // K_nM and K_MM come from the selection: the diagonal, the candidate blocks and K_nM only.
  EXPECT_LT(pivoted.kernel_evaluations, std::uint64_t(n * m + n + m * m));
  EXPECT_EQ(cached.kernel_evaluations, std::uint64_t(n * m + n + m * m));

  opt.max_memory = 1000;
  try {
    nystrom_ridge(*blocks, y, opt);
    FAIL() << "expected MemoryBudgetError";
  } catch (const MemoryBudgetError& e) {
    EXPECT_NE(std::string(e.what()).find("--max-memory"), std::string::npos) << e.what();
  }
}

TEST(Nystrom, PredictsFromTheTestKernelAtTheCenters) {
  const index_t n = 50, nt = 13, o = 2;
  const Network net(kNet, {6});
  const Array<double> x = random_batch<double>(n, {6}, 60), xt = random_batch<double>(nt, {6}, 61);
  const auto train = infinite_kernel_blocks(net, x, nullptr);
  const auto test_blocks = infinite_kernel_blocks(net, xt, &x);
  NystromOptions opt;
  opt.centers = 20;
  opt.ridge = 1e-3;
  const NystromFit fit = nystrom_ridge(*train, targets(n, o, 62), opt);
  const Array<double> kt = infinite_kernel(net, xt, &x);
  std::vector<double> want(size_t(nt * o), 0.0);
  for (index_t i = 0; i < nt; ++i)
    for (index_t j = 0; j < 20; ++j)
      for (index_t c = 0; c < o; ++c) want[size_t(i * o + c)] += kt[i * n + fit.centers[size_t(j)]] * fit.alpha[j * o + c];
  EXPECT_LT(rel(nystrom_predict(*test_blocks, fit).vector(), want), 1e-12);
  EXPECT_THROW(nystrom_predict(*infinite_kernel_blocks(net, xt, &xt), fit), InvalidArgument);  // columns not N
}

TEST(Nystrom, BadInputsThrow) {
  const Array<double> k = ntk_kernel(20, 70);
  const auto blocks = array_kernel_blocks(k, true);
  const Array<double> y = targets(20, 2, 71);
  NystromOptions opt;
  opt.centers = 5;
  EXPECT_THROW(nystrom_ridge(*blocks, targets(19, 2, 1), opt), InvalidArgument);
  Array<double> nan_y = y;
  nan_y[3] = std::nan("");
  EXPECT_THROW(nystrom_ridge(*blocks, nan_y, opt), InvalidArgument);
  NystromOptions neg = opt;
  neg.ridge = -1;
  EXPECT_THROW(nystrom_ridge(*blocks, y, neg), InvalidArgument);
  NystromOptions none = opt;
  none.centers = 0;
  EXPECT_THROW(nystrom_ridge(*blocks, y, none), InvalidArgument);
  EXPECT_THROW(nystrom_ridge(*array_kernel_blocks(k, false), y, opt), InvalidArgument);  // not a train kernel
}

// ---------------------------------------------------------------------------------------------
// Ridge on features

TEST(FeatureRidge, PredictsWhatKernelRidgeOnInnerProductsDoes) {
  for (const index_t m : {20, 45}) {  // fewer and more features than examples
    const index_t n = 30, nt = 9, o = 3;
    const Array<double> f(Shape{n, m}, test::random_vector<double>(n * m, 80 + std::uint64_t(m)));
    const Array<double> ft(Shape{nt, m}, test::random_vector<double>(nt * m, 81));
    const Array<double> y = targets(n, o, 82);
    const Array<double> k(Shape{n, n}, naive_abt(f, f)), kt(Shape{nt, n}, naive_abt(ft, f));
    for (const bool relative : {true, false}) {
      FeatureRidgeOptions opt;
      opt.ridge = relative ? 1e-2 : 0.3;
      opt.relative = relative;
      const FeatureRidgeFit fit = feature_ridge(f, y, opt);
      RidgeOptions kopt;
      kopt.ridge = opt.ridge;
      kopt.relative = relative;
      const RidgeFit dual = kernel_ridge(k, y, kopt);
      EXPECT_NEAR(fit.lambda, dual.lambda, 1e-12 * dual.lambda);
      EXPECT_TRUE(fit.cholesky);
      EXPECT_EQ(fit.weights.shape(), (Shape{m, o}));
      EXPECT_LT(rel(feature_ridge_predict(ft, fit.weights).vector(), kernel_ridge_predict(kt, dual.alpha).vector()), 1e-8);
      EXPECT_LT(rel(feature_ridge_predict(f, fit.weights).vector(), kernel_ridge_predict(k, dual.alpha).vector()), 1e-8);
    }
  }
}

TEST(FeatureRidge, AutomaticRidgeChoosesAsSelectRidgeOnTheInnerProducts) {
  // The features' choice (one eigendecomposition of the fit rows' FᵀF, m x m) against select_ridge on
  // K = FFᵀ (one of the fit rows' N x N kernel block): the same validation MSEs, the same choice, and
  // the refit equals a fixed-ridge fit on all rows at the chosen ridge. Batches of 7 rows straddle the
  // boundary between the fit and the validation rows.
  const std::vector<double> grid = {0.0, 1e-6, 1e-4, 1e-2, 1e-1, 1.0, 10.0};
  for (const index_t m : {12, 40}) {  // fewer and more features than fit rows
    const index_t n = 33, o = 2, v = 5;
    Array<double> f(Shape{n, m}, test::random_vector<double>(n * m, 95 + std::uint64_t(m)));
    const Array<double> y = targets(n, o, 96);
    const Array<double> k(Shape{n, n}, naive_abt(f, f));
    const RidgeSelection expect = select_ridge(k, y, v, grid);
    FeatureRidgeOptions opt;
    opt.ridge_grid = grid;
    opt.validation = v;
    opt.batch_rows = 7;
    const FeatureRidgeFit fit = feature_ridge(f, y, opt);
    ASSERT_EQ(fit.validation_mse.size(), grid.size());
    for (size_t i = 0; i < grid.size(); ++i)
      EXPECT_NEAR(fit.validation_mse[i], expect.validation_mse[i], 1e-8 * expect.validation_mse[i]) << m << " " << grid[i];
    EXPECT_EQ(fit.chosen_ridge, expect.best_ridge);
    FeatureRidgeOptions fixed;
    fixed.ridge = fit.chosen_ridge;
    EXPECT_LT(rel(fit.weights.vector(), feature_ridge(f, y, fixed).weights.vector()), 1e-10);
    opt.validation = n;
    EXPECT_THROW(feature_ridge(f, y, opt), InvalidArgument);  // nothing left to fit
  }
}

using FeatureRidgeFile = test::FileTest;

TEST_F(FeatureRidgeFile, BatchesFloat32AndMappedFilesGiveTheSameWeights) {
  const index_t n = 37, m = 11, o = 2;
  const Array<double> f(Shape{n, m}, test::random_vector<double>(n * m, 90));
  const Array<double> y = targets(n, o, 91);
  FeatureRidgeOptions opt;
  opt.ridge = 1e-2;
  const FeatureRidgeFit whole = feature_ridge(f, y, opt);
  for (const index_t batch : {1, 5, 36, 100}) {
    opt.batch_rows = batch;
    EXPECT_LT(rel(feature_ridge(f, y, opt).weights.vector(), whole.weights.vector()), 1e-12) << batch;
  }
  write_npy(path("f64.npy"), f);
  opt.batch_rows = 4;
  EXPECT_LT(rel(feature_ridge(path("f64.npy"), y, opt).weights.vector(), whole.weights.vector()), 1e-12);
  const Array<float> f32 = cast<float>(f);
  write_npy(path("f32.npy"), f32);
  const FeatureRidgeFit in_memory32 = feature_ridge(f32, y, opt);
  EXPECT_LT(rel(feature_ridge(path("f32.npy"), y, opt).weights.vector(), in_memory32.weights.vector()), 1e-12);
  EXPECT_LT(rel(in_memory32.weights.vector(), whole.weights.vector()), 1e-4);
  EXPECT_LT(rel(feature_ridge_predict(f32, whole.weights).vector(), feature_ridge_predict(f, whole.weights).vector()), 1e-5);
  // Predictions from the mapped files equal those from the arrays.
  EXPECT_LT(rel(feature_ridge_predict(path("f64.npy"), whole.weights).vector(), feature_ridge_predict(f, whole.weights).vector()), 1e-14);
  EXPECT_LT(rel(feature_ridge_predict(path("f32.npy"), whole.weights).vector(), feature_ridge_predict(f32, whole.weights).vector()), 1e-14);
  EXPECT_THROW(feature_ridge_predict(path("f64.npy"), Array<double>(Shape{m + 1, o})), InvalidArgument);

  write_npy(path("f1d.npy"), Array<double>(Shape{n}));
  EXPECT_THROW(feature_ridge(path("f1d.npy"), y, opt), InvalidArgument);
  Array<double> nan_f = f;
  nan_f[5 * m + 3] = std::nan("");
  write_npy(path("nan.npy"), nan_f);
  try {
    feature_ridge(path("nan.npy"), y, opt);
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("row 5"), std::string::npos) << e.what();
  }
  EXPECT_THROW(feature_ridge(path("missing.npy"), y, opt), IoError);
}

TEST(FeatureRidge, BadInputsThrowAndSingularSystemsFallBack) {
  const index_t n = 12, m = 5;
  const Array<double> f(Shape{n, m}, test::random_vector<double>(n * m, 100));
  const Array<double> y = targets(n, 2, 101);
  EXPECT_THROW(feature_ridge(f, targets(n + 1, 2, 1), {}), InvalidArgument);  // rows ≠ targets
  Array<double> nan_f = f;
  nan_f[7] = std::nan("");
  EXPECT_THROW(feature_ridge(nan_f, y, {}), InvalidArgument);
  FeatureRidgeOptions neg;
  neg.ridge = -1;
  EXPECT_THROW(feature_ridge(f, y, neg), InvalidArgument);
  const FeatureRidgeFit fit = feature_ridge(f, y, {});
  const Array<double> wide(Shape{3, m + 1});
  EXPECT_THROW(feature_ridge_predict(wide, fit.weights), InvalidArgument);  // features of another width
  EXPECT_THROW(feature_ridge(Array<double>(Shape{n}), y, {}), InvalidArgument);

  // A feature that is zero everywhere and no ridge: FᵀF is singular (exactly, so that Cholesky
  // cannot pass by rounding); solved on the directions it has.
  Array<double> dup(Shape{n, m + 1});
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < m; ++j) dup[i * (m + 1) + j] = f[i * m + j];
  const FeatureRidgeFit singular = feature_ridge(dup, y, {});
  EXPECT_FALSE(singular.cholesky);
  EXPECT_NE(singular.warning.find("FᵀF"), std::string::npos) << singular.warning;
  // The least-squares fit is the same model as without the empty feature.
  EXPECT_LT(rel(feature_ridge_predict(dup, singular.weights).vector(), feature_ridge_predict(f, fit.weights).vector()), 1e-8);
}

}  // namespace
}  // namespace ntk
