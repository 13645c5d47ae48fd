// The tile engine (src/tiles.hpp) and the run-policy defects it closes: bands and mirroring checked
// against a producer whose every value is known, non-finite results refused, the per-call thread
// count, and the planner honouring per-layer contributions.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include "file_fixture.hpp"
#include "harness.hpp"
#include "ntk/empirical.hpp"
#include "ntk/error.hpp"
#include "ntk/infinite.hpp"
#include "ntk/io.hpp"
#include "ntk/network.hpp"
#include "ntk/parallel.hpp"
#include "tiles.hpp"

namespace ntk {
namespace {

// Pair (i, j) with block entry (a, b) has the value f(i, j, a, b), which is not symmetric, so a
// wrong mirror (untransposed blocks, a swapped pair) shows. As the real producers do on the
// symmetric path, only entries with j >= i are trusted: the rest are poisoned with the wrong value,
// and the engine must overwrite them from the mirror. Records every tile it was asked for.
class KnownProducer final : public detail::TileProducer<double> {
 public:
  KnownProducer(index_t block, bool symmetric, bool fill_lower) : block_(block), symmetric_(symmetric), fill_lower_(fill_lower) {}
  static double f(index_t i, index_t j, index_t a, index_t b) { return 1000.0 * double(i) + double(j) + 0.01 * double(a) + 0.001 * double(b); }
  // The symmetric kernel's true value: the upper triangle as produced, the lower its transpose.
  double expected(index_t i, index_t j, index_t a, index_t b) const {
    return symmetric_ && j < i ? f(j, i, b, a) : f(i, j, a, b);
  }
  index_t values() const { return block_ == 0 ? 1 : block_ * block_; }
  void tile(index_t i0, index_t c1, index_t j0, index_t c2, double* tile) override {
    tiles.insert({i0, j0});
    const index_t B = std::max<index_t>(block_, 1);
    for (index_t i = 0; i < c1; ++i)
      for (index_t j = 0; j < c2; ++j)
        for (index_t a = 0; a < B; ++a)
          for (index_t b = 0; b < B; ++b) {
            const bool lower = symmetric_ && j0 + j < i0 + i;
            const double v = lower && !fill_lower_ ? -1.0 : expected(i0 + i, j0 + j, a, b);
            tile[((i * c2 + j) * B + a) * B + b] = v;
          }
  }
  std::string what() const override { return "the test kernel"; }
  std::set<std::pair<index_t, index_t>> tiles;

 private:
  index_t block_;
  bool symmetric_, fill_lower_;
};

class TileEngine : public test::FileTest {};

TEST_F(TileEngine, BandsAndMirrorsGiveEveryValueInMemoryAndOutOfCore) {
  for (const bool symmetric : {true, false})
    for (const index_t block : {index_t(0), index_t(3)})
      for (const bool fill_lower : {true, false}) {
        const index_t n1 = 23, n2 = symmetric ? 23 : 17;
        KnownProducer producer(block, symmetric, fill_lower);
        detail::TileGrid g;
        g.n1 = n1, g.n2 = n2, g.symmetric = symmetric, g.values = producer.values(), g.block_dim = block;
        g.tile1 = 5, g.tile2 = symmetric ? 5 : 4;
        g.producer_fills_diagonal_tiles = fill_lower;
        const index_t row = n2 * g.values;
        // In memory: one band.
        std::vector<double> mem(size_t(n1 * row), std::nan(""));
        detail::ArraySink<double> array_sink(mem.data(), row, g.values);
        index_t last_done = 0, last_total = 0;
        detail::run_tiles<double>(g, producer, array_sink, [&](index_t d, index_t t) { last_done = d, last_total = t; });
        EXPECT_EQ(last_done, last_total);
        EXPECT_EQ(last_total, symmetric ? n1 * (n1 + 1) / 2 : n1 * n2);
        // Out of core in bands of 2 tile rows (the last one short), so mirrors cross bands.
        g.band = 10;
        {
          NpyFileWriter file(path("k.npy"), DType::float64, Shape{n1, n2, g.values});
          detail::FileSink<double> file_sink(file, row, g.values);
          detail::run_tiles<double>(g, producer, file_sink, {});
          file.commit();
        }
        const Array<double> disk = read_npy(path("k.npy")).as<double>();
        const index_t B = std::max<index_t>(block, 1);
        for (index_t i = 0; i < n1; ++i)
          for (index_t j = 0; j < n2; ++j)
            for (index_t a = 0; a < B; ++a)
              for (index_t b = 0; b < B; ++b) {
                const size_t at = size_t((i * n2 + j) * g.values + a * B + b);
                ASSERT_EQ(mem[at], producer.expected(i, j, a, b)) << i << " " << j << " sym " << symmetric << " block " << block;
                ASSERT_EQ(disk[index_t(at)], mem[at]) << i << " " << j;
              }
        // The symmetric path asks only for upper tiles.
        for (const auto& [i0, j0] : producer.tiles) EXPECT_TRUE(!symmetric || j0 >= i0) << i0 << " " << j0;
      }
}

// Rows of 1100 doubles (8.8 KB): each band's rows go partly straight to disk (write_direct, the
// 4 KiB-aligned middle of each row's part that is not read again) and partly through the page cache.
TEST_F(TileEngine, LargeRowsOutOfCoreEqualInMemory) {
  for (const bool symmetric : {true, false}) {
    const index_t n1 = 1100, n2 = symmetric ? 1100 : 1030;
    KnownProducer producer(0, symmetric, false);
    detail::TileGrid g;
    g.n1 = n1, g.n2 = n2, g.symmetric = symmetric, g.tile1 = 100, g.tile2 = 100, g.band = 300;
    g.producer_fills_diagonal_tiles = false;
    {
      NpyFileWriter file(path("big.npy"), DType::float64, Shape{n1, n2});
      detail::FileSink<double> sink(file, n2, 1);
      detail::run_tiles<double>(g, producer, sink, {});
      file.commit();
    }
    const Array<double> disk = read_npy(path("big.npy")).as<double>();
    for (index_t i = 0; i < n1; ++i)
      for (index_t j = 0; j < n2; ++j) ASSERT_EQ(disk[i * n2 + j], producer.expected(i, j, 0, 0)) << i << " " << j;
  }
}

// write_direct writes exactly what write would, whether the buffer is aligned like the file (the
// middle goes straight to disk) or not (all through the page cache).
TEST_F(TileEngine, WriteDirectEqualsWrite) {
  const std::size_t n = 5 * 4096 + 123;
  std::vector<unsigned char> want(n * sizeof(double));
  for (std::size_t k = 0; k < want.size(); ++k) want[k] = static_cast<unsigned char>((k * 131 + 7) % 251);
  std::vector<unsigned char> buffer(want.size() + 2 * NpyFileWriter::kDirectAlignment);
  const std::size_t pieces[][2] = {{0, 9000}, {9000, 13}, {9013, 20000}, {29013, 1}, {29014, n * 8 - 29014}};
  for (const bool align_like_file : {true, false}) {
    {
      NpyFileWriter file(path("d.npy"), DType::float64, Shape{index_t(n)});
      for (const auto& [offset, len] : pieces) {
        // A buffer address with the file offset's remainder (or one off from it), holding the piece.
        const std::uintptr_t base = reinterpret_cast<std::uintptr_t>(buffer.data());
        const std::size_t A = NpyFileWriter::kDirectAlignment;
        std::size_t shift = (file.data_alignment(offset) + A - base % A) % A + (align_like_file ? 0 : 8);
        std::copy(want.begin() + std::ptrdiff_t(offset), want.begin() + std::ptrdiff_t(offset + len), buffer.begin() + std::ptrdiff_t(shift));
        file.write_direct(offset, buffer.data() + shift, len);
      }
      file.commit();
    }
    const RawArray back = read_npy(path("d.npy"));
    ASSERT_EQ(back.bytes.size(), want.size());
    EXPECT_TRUE(std::equal(want.begin(), want.end(), reinterpret_cast<const unsigned char*>(back.bytes.data())))
        << "aligned like the file: " << align_like_file;
  }
}

class NanProducer final : public detail::TileProducer<float> {
 public:
  void tile(index_t, index_t c1, index_t, index_t c2, float* tile) override {
    std::fill(tile, tile + c1 * c2, 1.0f);
    if (c1 * c2 > 3) tile[3] = std::numeric_limits<float>::infinity();
  }
  std::string what() const override { return "the test kernel"; }
};

TEST_F(TileEngine, NonFiniteTilesAreRefusedBeforeTheirBandIsWritten) {
  NanProducer producer;
  detail::TileGrid g;
  g.n1 = g.n2 = 8, g.tile1 = g.tile2 = 4, g.band = 4;
  {
    NpyFileWriter file(path("k.npy"), DType::float32, Shape{8, 8});
    detail::FileSink<float> sink(file, 8, 1);
    try {
      detail::run_tiles<float>(g, producer, sink, {});
      FAIL() << "no error";
    } catch (const NumericalError& e) {
      EXPECT_NE(std::string(e.what()).find("pair (0, 3)"), std::string::npos) << e.what();
    }
  }
  EXPECT_FALSE(std::filesystem::exists(path("k.npy")));
}

// Throws IoError (as a full disk would) at the tile starting at row fail_at, after the bands
// before it were recorded; otherwise the known values.
class FailingProducer final : public detail::TileProducer<double> {
 public:
  explicit FailingProducer(index_t fail_at) : fail_at_(fail_at) {}
  void tile(index_t i0, index_t c1, index_t j0, index_t c2, double* tile) override {
    if (i0 == fail_at_) throw IoError("cannot write 'k.npy': disk full (test)");
    known_.tile(i0, c1, j0, c2, tile);
  }
  std::string what() const override { return "the test kernel"; }

 private:
  index_t fail_at_;
  KnownProducer known_{3, true, true};
};

TEST_F(TileEngine, ResumableWritesContinueAfterAFailureToTheSameBytes) {
  detail::TileGrid g;
  g.n1 = g.n2 = 23, g.symmetric = true, g.values = 9, g.block_dim = 3, g.tile1 = g.tile2 = 5, g.band = 5;
  const Shape shape{23, 23, 3, 3};
  const detail::JobIdentity id{{"kernel", "test"}, {"tile", "5"}};
  KnownProducer whole(3, true, true);
  EXPECT_EQ(detail::run_tiles_to_file<double>(g, whole, path("ref.npy"), shape, id, false, {}), 0);
  const RawArray ref = read_npy(path("ref.npy"));
  EXPECT_FALSE(std::filesystem::exists(path("ref.npy.ntk-checkpoint")));
  EXPECT_FALSE(std::filesystem::exists(path("ref.npy.partial")));

  // Fails in the band at row 15: rows [0, 15) are recorded, the partial file and the record stay,
  // and the error says so.
  FailingProducer failing(15);
  try {
    detail::run_tiles_to_file<double>(g, failing, path("k.npy"), shape, id, false, {});
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("the 15 finished rows are kept"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(path("k.npy")));
  ASSERT_TRUE(std::filesystem::exists(path("k.npy.partial")));
  // Without resume, and with another identity, refused; the kept work is untouched.
  EXPECT_THROW(detail::run_tiles_to_file<double>(g, whole, path("k.npy"), shape, id, false, {}), InvalidArgument);
  const detail::JobIdentity other{{"kernel", "test"}, {"tile", "6"}};
  try {
    detail::run_tiles_to_file<double>(g, whole, path("k.npy"), shape, other, true, {});
    FAIL() << "no error";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("tile: '5' there, '6' here"), std::string::npos) << e.what();
  }
  // Resumed: only the tiles of rows 15.. are computed, and the bytes are the uninterrupted run's.
  KnownProducer rest(3, true, true);
  index_t first_done = -1;
  EXPECT_EQ(detail::run_tiles_to_file<double>(g, rest, path("k.npy"), shape, id, true,
                                              [&](index_t d, index_t) { if (first_done < 0) first_done = d; }),
            15);
  for (const auto& [i0, j0] : rest.tiles) EXPECT_GE(i0, 15);
  EXPECT_GT(first_done, 23 * 15 - 15 * 14 / 2);
  const RawArray got = read_npy(path("k.npy"));
  EXPECT_EQ(got.bytes, ref.bytes);
  EXPECT_FALSE(std::filesystem::exists(path("k.npy.ntk-checkpoint")));
  EXPECT_FALSE(std::filesystem::exists(path("k.npy.partial")));
}

TEST_F(TileEngine, DamagedCheckpointsAreRefusedSayingWhatToDo) {
  const detail::JobIdentity id{{"kernel", "test"}};
  for (const std::string& text : {std::string("not a checkpoint\n"), std::string("ntkit checkpoint 1\nkernel: test\n"),
                                  std::string("ntkit checkpoint 1\nkernel: test\nrows: 9 of 8\n"),
                                  std::string("ntkit checkpoint 1\nkernel test\nrows: 1 of 8\n")}) {
    {
      std::ofstream f(path("k.npy.ntk-checkpoint"));
      f << text;
    }
    try {
      detail::Checkpoint c(path("k.npy"), id, 8, true);
      FAIL() << "accepted: " << text;
    } catch (const IoError& e) {
      EXPECT_NE(std::string(e.what()).find("to start over"), std::string::npos) << e.what();
    }
  }
  {
    std::ofstream f(path("k.npy.ntk-checkpoint"));
    f << "ntkit checkpoint 1\nkernel: test\nrows: 4 of 8\n";
  }
  detail::Checkpoint c(path("k.npy"), id, 8, true);
  EXPECT_EQ(c.start_row(), 4);
  EXPECT_TRUE(c.reopen());
}

// Overflowing networks: the library reports NumericalError instead of returning NaN kernels.
TEST(Overflow, KernelsThatOverflowAreErrorsNotNaN) {
  const Array<float> x = [] {
    Array<float> a(Shape{5, 4});
    for (index_t e = 0; e < a.size(); ++e) a[e] = float(std::sin(double(e) + 1.0));
    return a;
  }();
  Network huge("Dense(4, W_std=1e308), Relu, Dense(4, W_std=1e308)", Shape{4});
  const std::vector<float> theta = huge.init<float>(0);
  EntkOptions o;
  for (EntkMethod m : {EntkMethod::jc, EntkMethod::vp, EntkMethod::sd}) {
    o.method = m;
    EXPECT_THROW(empirical_ntk(huge, theta, x, nullptr, o), NumericalError) << to_string(m);
  }
  Network deep("Dense(8, W_std=1e200), Relu, Dense(8, W_std=1e200), Relu, Dense(1, W_std=1e200)", Shape{4});
  EXPECT_THROW(infinite_kernel(deep, x, nullptr), NumericalError);
}

TEST(Threads, AThrowingBodyOnTheCallingThreadLeavesLaterLoopsParallel) {
  ThreadScope two(2);
  // Part 0 runs on the calling thread; it throws.
  EXPECT_THROW(parallel_for(2, [](index_t begin, index_t) {
                 if (begin == 0) throw std::runtime_error("part 0");
               }),
               std::runtime_error);
  EXPECT_FALSE(in_parallel_region());
  std::mutex mu;
  std::set<std::thread::id> ids;
  parallel_for(2, [&](index_t, index_t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::lock_guard<std::mutex> lock(mu);
    ids.insert(std::this_thread::get_id());
  });
  EXPECT_EQ(ids.size(), 2u) << "the later loop ran on one thread";
}

TEST(Threads, ScopedThreadCountIsPerCallAndRestored) {
  const int before = num_threads();
  {
    ThreadScope one(1);
    EXPECT_EQ(num_threads(), 1);
    {
      ThreadScope three(3);
      EXPECT_EQ(num_threads(), 3);
    }
    EXPECT_EQ(num_threads(), 1);
    ThreadScope unchanged(0);
    EXPECT_EQ(num_threads(), 1);
  }
  EXPECT_EQ(num_threads(), before);
}

TEST(Planner, PerLayerContributionsMakeAutoChooseStructuredDerivatives) {
  // A small conv net in pntk mode, where auto picks jc for the whole kernel.
  Network net("Conv(2, 3), Relu, GlobalAvgPool, Dense(1)", Shape{8, 8, 3});
  EntkOptions o;
  o.mode = parse_entk_mode("pntk");
  ASSERT_EQ(plan_empirical_ntk(net, 64, 64, true, o, sizeof(double)).method, EntkMethod::jc);
  o.layers = {0};
  const EntkPlan plan = plan_empirical_ntk(net, 64, 64, true, o, sizeof(double));
  EXPECT_EQ(plan.method, EntkMethod::sd);
  const std::vector<double> theta = net.init<double>(3);
  Array<double> x(Shape{4, 8, 8, 3});
  for (index_t e = 0; e < x.size(); ++e) x[e] = std::cos(0.3 * double(e));
  const Array<double> k_auto = empirical_ntk(net, theta, x, nullptr, o);
  o.method = EntkMethod::sd;
  const Array<double> k_sd = empirical_ntk(net, theta, x, nullptr, o);
  EXPECT_EQ(std::vector<double>(k_auto.data(), k_auto.data() + k_auto.size()),
            std::vector<double>(k_sd.data(), k_sd.data() + k_sd.size()));
  o.method = EntkMethod::jc;
  EXPECT_THROW(plan_empirical_ntk(net, 4, 4, true, o, sizeof(double)), InvalidArgument);
}

}  // namespace
}  // namespace ntk
