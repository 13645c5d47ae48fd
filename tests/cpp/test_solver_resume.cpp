// Resumable solvers (issue 16): Nyström's passes and the features' FᵀF accumulation, interrupted
// after every state they offer and resumed from it, give the bits of the uninterrupted solve; the
// state file (src/checkpoint.hpp, StateCheckpoint) keeps arrays bit for bit and refuses damaged
// files, other jobs' states and a rerun that would overwrite one.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "checkpoint.hpp"
#include "file_fixture.hpp"
#include "harness.hpp"
#include "ntk/error.hpp"
#include "ntk/infinite.hpp"
#include "ntk/kernel_block.hpp"
#include "ntk/network.hpp"
#include "ntk/nystrom.hpp"

namespace ntk {
namespace {

using test::random_batch;

// Keeps a copy of every state offered (as an interrupted run would have saved it, had it been killed
// right after); or, given one, hands it to the solver as the state to resume from.
class MemoryCheckpoint final : public SolverCheckpoint {
 public:
  MemoryCheckpoint() = default;
  explicit MemoryCheckpoint(SolverState resume_from) : saved_(std::move(resume_from)) {}
  const SolverState& saved() const override { return saved_; }
  bool due() const override { return true; }
  void save(const std::vector<StateArray>& arrays) override {
    SolverState s;
    for (const StateArray& a : arrays)
      s.arrays.emplace(a.name, Array<double>(a.shape, std::vector<double>(a.data, a.data + numel(a.shape))));
    offered.push_back(std::move(s));
  }
  std::vector<SolverState> offered;

 private:
  SolverState saved_;
};

const char* kNet = "Dense(16, W_std=1.4142135623730951, b_std=0.05), Relu, Dense(16, W_std=1.4142135623730951, b_std=0.05), Relu, Dense(1)";

Array<double> targets(index_t n, index_t o, std::uint64_t seed) {
  return Array<double>(Shape{n, o}, test::random_vector<double>(n * o, seed));
}

void expect_same_fit(const NystromFit& got, const NystromFit& want, const std::string& where) {
  EXPECT_EQ(got.alpha.vector(), want.alpha.vector()) << where;
  EXPECT_EQ(got.train_predictions.vector(), want.train_predictions.vector()) << where;
  EXPECT_EQ(got.test_predictions.vector(), want.test_predictions.vector()) << where;
  EXPECT_EQ(got.iterations, want.iterations) << where;
  EXPECT_EQ(got.residual_history, want.residual_history) << where;
  EXPECT_EQ(got.warnings, want.warnings) << where;
  EXPECT_FALSE(got.resumed_at.empty()) << where;
}

// Every pass (the right-hand side, each CG iteration, train and test predictions), with K_nM
// recomputed in blocks of rows that do not divide N and with K_nM cached (one block per pass).
TEST(SolverResume, NystromResumedFromAnyStateGivesTheSameBits) {
  const index_t n = 60, nt = 11, o = 2;
  const Network net(kNet, {5});
  const Array<double> x = random_batch<double>(n, {5}, 70), xt = random_batch<double>(nt, {5}, 71);
  // The kernels in memory: the solves below are many.
  const Array<double> k = infinite_kernel(net, x, nullptr), kt = infinite_kernel(net, xt, &x);
  const auto train = array_kernel_blocks(k, true);
  const auto test_k = array_kernel_blocks(kt, false);
  const Array<double> y = targets(n, o, 72);
  for (const bool cached : {false, true}) {
    NystromOptions opt;
    opt.centers = 17;
    opt.ridge = 1e-3;
    opt.tolerance = 1e-9;
    opt.max_iterations = 12;  // stops on the iteration limit: its warning must survive a resume
    opt.train_predictions = true;
    opt.test = test_k.get();
    opt.row_block = 7;
    if (!cached) opt.max_memory = nystrom_fixed_bytes(n, 17, o) + 8 * 17 * 8;
    const NystromFit plain = nystrom_ridge(*train, y, opt);
    EXPECT_EQ(plain.knm_cached, cached);
    MemoryCheckpoint recorder;
    opt.checkpoint = &recorder;
    const NystromFit recorded = nystrom_ridge(*train, y, opt);
    EXPECT_EQ(recorded.alpha.vector(), plain.alpha.vector());  // offering states changes nothing
    EXPECT_TRUE(recorded.resumed_at.empty());
    // Blocks of 7 rows over N = 60 (9 per pass) or one per pass when cached; 2 blocks of test rows.
    const size_t per_pass = cached ? 1 : 9;
    EXPECT_EQ(recorder.offered.size(), per_pass * size_t(1 + plain.iterations + 1) + 2);
    for (size_t i = 0; i < recorder.offered.size(); ++i) {
      MemoryCheckpoint resume(recorder.offered[i]);
      opt.checkpoint = &resume;
      expect_same_fit(nystrom_ridge(*train, y, opt), plain,
                      (cached ? "cached, state " : "recomputed, state ") + std::to_string(i));
    }
  }
}

TEST(SolverResume, NystromRefusesAStateOfAnotherSolve) {
  const index_t n = 40, o = 1;
  const Network net(kNet, {5});
  const Array<double> x = random_batch<double>(n, {5}, 73);
  const auto train = infinite_kernel_blocks(net, x, nullptr);
  const Array<double> y = targets(n, o, 74);
  NystromOptions opt;
  opt.centers = 10;
  opt.ridge = 1e-3;
  MemoryCheckpoint recorder;
  opt.checkpoint = &recorder;
  nystrom_ridge(*train, y, opt);
  ASSERT_GT(recorder.offered.size(), 2u);
  SolverState other_centers = recorder.offered[1];
  other_centers.arrays.at("centers")[0] += 1;
  SolverState past_the_end = recorder.offered[1];
  past_the_end.arrays.at("meta")[1] = double(n + 1);
  SolverState missing = recorder.offered[1];
  missing.arrays.erase("r");
  for (SolverState* bad : {&other_centers, &past_the_end, &missing}) {
    MemoryCheckpoint resume(*bad);
    opt.checkpoint = &resume;
    EXPECT_THROW(nystrom_ridge(*train, y, opt), IoError);
  }
}

// Batches of 7 rows straddle the boundary between the fit rows and the validation rows, whose rows
// a resumed run reads again (without adding them twice).
TEST(SolverResume, FeatureRidgeResumedFromAnyStateGivesTheSameBits) {
  const index_t n = 33, m = 12, o = 2;
  const Array<double> f(Shape{n, m}, test::random_vector<double>(n * m, 75));
  const Array<double> y = targets(n, o, 76);
  for (const bool select : {false, true}) {
    FeatureRidgeOptions opt;
    opt.batch_rows = 7;
    opt.ridge = 1e-2;
    if (select) opt.ridge_grid = {0.0, 1e-4, 1e-2, 1.0}, opt.validation = 5;
    const FeatureRidgeFit plain = feature_ridge(f, y, opt);
    MemoryCheckpoint recorder;
    opt.checkpoint = &recorder;
    feature_ridge(f, y, opt);
    EXPECT_EQ(recorder.offered.size(), select ? 4u + 1u : 5u);  // 28 fit rows in 4 batches, 5 in 1
    for (size_t i = 0; i < recorder.offered.size(); ++i) {
      MemoryCheckpoint resume(recorder.offered[i]);
      opt.checkpoint = &resume;
      const FeatureRidgeFit got = feature_ridge(f, y, opt);
      EXPECT_EQ(got.weights.vector(), plain.weights.vector()) << select << " state " << i;
      EXPECT_EQ(got.validation_mse, plain.validation_mse) << select << " state " << i;
      EXPECT_EQ(got.chosen_ridge, plain.chosen_ridge);
      EXPECT_FALSE(got.resumed_at.empty());
    }
    SolverState unaligned = recorder.offered[0];
    unaligned.arrays.at("meta")[0] = 3;
    MemoryCheckpoint resume(unaligned);
    opt.checkpoint = &resume;
    EXPECT_THROW(feature_ridge(f, y, opt), IoError);
  }
}

using StateFile = test::FileTest;

TEST_F(StateFile, KeepsArraysBitForBitAndRefusesOtherJobsAndDamage) {
  const std::string out = path("pred.npy");
  const detail::JobIdentity id{{"solver", "Nystrom"}, {"targets", "(4, 1) float64 0123456789abcdef"}};
  const std::vector<double> a = {1.0 / 3.0, -0.0, 1e-310, 7.25}, b = {};
  {
    detail::StateCheckpoint c(out, id, false, 0.0);
    EXPECT_TRUE(c.saved().empty());
    EXPECT_TRUE(c.due());
    c.save({{"a", Shape{2, 2}, a.data()}, {"empty", Shape{0}, b.data()}});
  }
  const std::string file = out + ".ntk-state";
  ASSERT_TRUE(std::filesystem::exists(file));
  {
    detail::StateCheckpoint c(out, id, true, 3600.0);
    ASSERT_EQ(c.saved().arrays.size(), 2u);
    EXPECT_EQ(c.saved().arrays.at("a").vector(), a);
    EXPECT_EQ(c.saved().arrays.at("a").shape(), (Shape{2, 2}));
    EXPECT_FALSE(c.due());  // an hour between saves
    double got[4];
    EXPECT_THROW(detail::load_state_array(c.saved(), "a", got, 3), IoError);
    EXPECT_THROW(detail::load_state_array(c.saved(), "b", got, 4), IoError);
  }
  // A rerun without --resume, and another job's resume, are refused; the file stays.
  EXPECT_THROW(detail::StateCheckpoint(out, id, false, 0.0), InvalidArgument);
  detail::JobIdentity other = id;
  other[1].second = "(4, 1) float64 fedcba9876543210";
  try {
    detail::StateCheckpoint(out, other, true, 0.0);
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("targets"), std::string::npos) << e.what();
  }
  ASSERT_TRUE(std::filesystem::exists(file));
  // Damage: a flipped bit in the values, a cut, a byte too many.
  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto write = [&](const std::string& content) {
    std::ofstream(file, std::ios::binary | std::ios::trunc) << content;
  };
  std::string flipped = bytes;
  flipped[flipped.size() - 3] ^= 1;
  for (const std::string& bad : {flipped, bytes.substr(0, bytes.size() - 1), bytes + "x", std::string("ntkit state 1\n")}) {
    write(bad);
    EXPECT_THROW(detail::StateCheckpoint(out, id, true, 0.0), IoError);
  }
  write(bytes);
  detail::StateCheckpoint c(out, id, true, 0.0);
  c.finish();
  EXPECT_FALSE(std::filesystem::exists(file));
}

}  // namespace
}  // namespace ntk
