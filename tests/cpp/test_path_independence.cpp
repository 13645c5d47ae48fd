// Path independence of the kernels: the same kernel whichever internal path computes it.
//  (a) x2 = a copy of x1 (a separate array, so the non-symmetric path runs) against x2 omitted
//      (the symmetric path, upper tiles only): aliasing x2 to x1 would take the symmetric path
//      twice and prove nothing;
//  (b) 1 thread against 2 threads;
//  (c) N larger than one tile against a single tile (the number of tiles is counted through the
//      progress callback, so the test fails loudly if tile sizes change and N fits in one);
//  (d) float32 sd and vp against float64.
// For ntk::empirical_ntk (modes full / trace / pntk / diagonal, methods jc / vp / sd) and
// ntk::infinite_kernel (vectors, images, offset path and layer-by-layer path).
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <type_traits>
#include <vector>

#include "harness.hpp"
#include "ntk/empirical.hpp"
#include "ntk/infinite.hpp"

namespace ntk {
namespace {

template <class T>
Array<T> random_inputs(const Network& net, index_t n, std::uint64_t seed) {
  Shape s{n};
  s.insert(s.end(), net.input_shape().begin(), net.input_shape().end());
  return Array<T>(s, test::random_vector<T>(n * net.input_size(), seed));
}

// A deep copy in a separate buffer (never the same pointer as the original).
template <class T>
Array<T> copy_of(const Array<T>& a) {
  return Array<T>(a.shape(), std::vector<T>(a.data(), a.data() + a.size()));
}

// max |a − b| / max |b|.
template <class A, class B>
double rel_err(const Array<A>& a, const Array<B>& b) {
  EXPECT_EQ(a.shape(), b.shape());
  if (a.shape() != b.shape()) return 1e300;
  return test::max_abs_diff(a.vector(), b.vector()) / (test::max_abs(b.vector()) + 1e-300);
}

template <class T>
bool identical(const Array<T>& a, const Array<T>& b) {
  return a.shape() == b.shape() && a.vector() == b.vector();
}

// Rows [r0, r1) of a row-major (N1, N2, ...) kernel.
template <class T>
Array<T> rows_of(const Array<T>& k, index_t r0, index_t r1) {
  Shape s = k.shape();
  const index_t per = k.size() / s[0];
  s[0] = r1 - r0;
  return Array<T>(s, std::vector<T>(k.data() + r0 * per, k.data() + r1 * per));
}

// ------------------------------------------------------------------------------------------------
// Empirical NTK

struct EntkNet {
  std::string spec;
  Shape input;
  NetworkDefaults defaults{};
};

const EntkNet kEntkNets[] = {
    {"Dense(7, b_std=0.1), Relu, Dense(6, b_std=0.1), Erf, Dense(3, b_std=0.1)", {5}},
    {"Conv(3, 3, padding=SAME, b_std=0.1), Relu, Conv(4, 2, stride=2), Gelu, GlobalAvgPool, Dense(3, b_std=0.1)", {5, 5, 2}},
    {"Conv(3, 2x3, b_std=0.2), LeakyRelu(0.1), Residual(Abs, Conv(3, 3, padding=SAME)), LayerNorm, Tanh, "
     "AvgPool(2, padding=SAME), Flatten, Dense(3)",
     {4, 5, 1},
     {1.2, 0.1, Parameterization::standard}},
};

EntkOptions entk_opts(const char* mode, EntkMethod method, index_t tile, int threads) {
  EntkOptions o;
  o.mode = parse_entk_mode(mode);
  o.method = method;
  o.tile = tile;
  o.threads = threads;
  return o;
}

// Runs the eNTK and counts the tile pairs it reported.
template <class T>
Array<T> entk(const Network& net, const std::vector<T>& theta, const Array<T>& x1,
              const std::type_identity_t<Array<T>>* x2, EntkOptions o,
              int* tiles = nullptr) {
  int calls = 0;
  o.progress = [&](index_t, index_t) { ++calls; };
  Array<T> k = empirical_ntk(net, theta, x1, x2, o);
  if (tiles) *tiles = calls;
  return k;
}

TEST(PathIndependence, EntkCopyThreadsTiles) {
  const index_t n = 10, n2 = 7;
  int not_bit_exact = 0, runs = 0;
  for (const EntkNet& c : kEntkNets) {
    Network net(c.spec, c.input, c.defaults);
    const auto theta = net.init<double>(3);
    const Array<double> x = random_inputs<double>(net, n, 4), y = random_inputs<double>(net, n2, 5);
    const Array<double> x_copy = copy_of(x);
    ASSERT_NE(x_copy.data(), x.data());
    for (EntkMethod m : {EntkMethod::jc, EntkMethod::vp, EntkMethod::sd})
      for (const char* mode : {"full", "trace", "pntk", "diagonal"}) {
        SCOPED_TRACE(c.spec + " " + to_string(m) + " " + mode);
        int tiles = 0;
        // References: one tile, one thread.
        const Array<double> sym = entk(net, theta, x, nullptr, entk_opts(mode, m, 0, 1), &tiles);
        EXPECT_EQ(tiles, 1) << "tile 0 should hold all " << n << " examples";
        const Array<double> cross = entk(net, theta, x, &y, entk_opts(mode, m, 0, 1), &tiles);
        EXPECT_EQ(tiles, 1);
        // (a) x2 = a copy of x1 takes the non-symmetric path and must give the symmetric kernel.
        EXPECT_LE(rel_err(entk(net, theta, x, &x_copy, entk_opts(mode, m, 0, 1)), sym), 1e-12) << "x2 = copy of x1";
        // (b) 2 threads.
        const Array<double> sym2 = entk(net, theta, x, nullptr, entk_opts(mode, m, 0, 2));
        const Array<double> cross2 = entk(net, theta, x, &y, entk_opts(mode, m, 0, 2));
        EXPECT_LE(rel_err(sym2, sym), 1e-13) << "2 threads, symmetric";
        EXPECT_LE(rel_err(cross2, cross), 1e-13) << "2 threads, x2";
        not_bit_exact += !identical(sym2, sym) + !identical(cross2, cross);
        runs += 2;
        // (c) tiles of 3 (not dividing 10 or 7): 4 × 4 tiles, upper 10 when symmetric.
        EXPECT_LE(rel_err(entk(net, theta, x, nullptr, entk_opts(mode, m, 3, 1), &tiles), sym), 1e-12) << "tile 3, symmetric";
        EXPECT_EQ(tiles, 10);
        EXPECT_LE(rel_err(entk(net, theta, x, &y, entk_opts(mode, m, 3, 1), &tiles), cross), 1e-12) << "tile 3, x2";
        EXPECT_EQ(tiles, 12);
        // Tiles and threads together.
        EXPECT_LE(rel_err(entk(net, theta, x, nullptr, entk_opts(mode, m, 3, 2)), sym), 1e-12) << "tile 3, 2 threads";
        EXPECT_LE(rel_err(entk(net, theta, x, &x_copy, entk_opts(mode, m, 4, 2)), sym), 1e-12) << "tile 4, copy, 2 threads";
      }
  }
  std::printf("[ info ] eNTK, 2 threads against 1: %d of %d kernels not bit-identical (all within 1e-13)\n", not_bit_exact,
              runs);
}

TEST(PathIndependence, EntkFloat32SdVpAgainstFloat64) {
  // float32 sd and vp against float64 (the same parameters, rounded), full and trace modes.
  for (const EntkNet& c : {kEntkNets[0], kEntkNets[1]}) {
    Network net(c.spec, c.input, c.defaults);
    const auto theta64 = net.init<double>(6);
    const std::vector<float> theta32(theta64.begin(), theta64.end());
    const Array<double> x64 = random_inputs<double>(net, 6, 7), y64 = random_inputs<double>(net, 4, 8);
    const Array<float> x32 = cast<float>(x64), y32 = cast<float>(y64);
    for (EntkMethod m : {EntkMethod::sd, EntkMethod::vp})
      for (const char* mode : {"full", "trace"})
        for (bool sym : {true, false}) {
          SCOPED_TRACE(c.spec + " " + to_string(m) + " " + mode + (sym ? " symmetric" : " x2"));
          const Array<double> ref = entk(net, theta64, x64, sym ? nullptr : &y64, entk_opts(mode, EntkMethod::jc, 0, 0));
          const Array<double> k64 = entk(net, theta64, x64, sym ? nullptr : &y64, entk_opts(mode, m, 0, 0));
          const Array<float> k32 = entk(net, theta32, x32, sym ? nullptr : &y32, entk_opts(mode, m, 0, 0));
          EXPECT_LE(rel_err(k64, ref), 1e-10);
          EXPECT_LE(rel_err(k32, ref), 1e-4);
        }
  }
}

// ------------------------------------------------------------------------------------------------
// Infinite-width kernels

struct InfCase {
  std::string spec;
  Shape input;
  bool offset_path;
};

const InfCase kInfCases[] = {
    {"Dense(4, W_std=1.3, b_std=0.2), Relu, Dense(4, b_std=0.1), Tanh, Dense(3, W_std=1.2), Gelu, Dense(2)", {5}, true},
    {"Dense(4, W_std=1.3, b_std=0.2, parameterization=standard), LayerNorm, Erf, Residual(Dense(4, b_std=0.1), Abs, Dense(4)), Dense(1)", {3}, true},
    // Offset path (stride-1 convolutions up to GlobalAvgPool / Flatten) and the same nets layer by layer.
    {"Conv(2, 3, padding=SAME, W_std=1.3, b_std=0.1), Relu, Conv(2, 3, padding=SAME), Erf, GlobalAvgPool, Dense(1)", {4, 4, 2}, true},
    {"Conv(2, 3, padding=SAME, W_std=1.3, b_std=0.1), Relu, Conv(2, 3, padding=SAME), Erf, GlobalAvgPool, Dense(1)", {4, 4, 2}, false},
    {"Conv(2, 2, padding=SAME), LeakyRelu(0.1), Conv(2, 2, padding=SAME), Residual(Gelu, Conv(2, 3, padding=SAME)), Abs, "
     "Flatten, Dense(1, b_std=0.1)", {4, 3, 1}, true},
    {"Conv(2, 2, padding=SAME), LeakyRelu(0.1), Conv(2, 2, padding=SAME), Residual(Gelu, Conv(2, 3, padding=SAME)), Abs, "
     "Flatten, Dense(1, b_std=0.1)", {4, 3, 1}, false},
    // Only layer by layer: strides and AvgPool.
    {"Conv(2, 2, stride=2, padding=SAME, b_std=0.1), Relu, AvgPool(2, padding=SAME), Conv(2, 1), Tanh, Flatten, Dense(1)", {5, 5, 1}, true},
};

KernelOptions kopts(KernelOptions::Get g, bool offset_path, int threads = 1, int* tiles = nullptr) {
  KernelOptions o;
  o.get = g;
  o.offset_path = offset_path;
  o.threads = threads;
  if (tiles) {
    *tiles = 0;
    o.progress = [tiles](index_t, index_t) { ++*tiles; };
  }
  return o;
}

TEST(PathIndependence, InfiniteCopyAndThreads) {
  int not_bit_exact = 0, runs = 0;
  for (const InfCase& c : kInfCases) {
    Network net(c.spec, c.input);
    const Array<double> x = random_inputs<double>(net, 6, 11), y = random_inputs<double>(net, 4, 12);
    const Array<double> x_copy = copy_of(x);
    ASSERT_NE(x_copy.data(), x.data());
    for (auto g : {KernelOptions::nngp, KernelOptions::ntk}) {
      SCOPED_TRACE(c.spec + (c.offset_path ? "" : " (layer by layer)") + (g == KernelOptions::ntk ? " NTK" : " NNGP"));
      const Array<double> sym = infinite_kernel(net, x, nullptr, kopts(g, c.offset_path));
      const Array<double> cross = infinite_kernel(net, x, &y, kopts(g, c.offset_path));
      // (a) the non-symmetric path on a copy: variances from the maps of two self passes, Σ(x, x')
      // computed as a cross pair, against the symmetric path.
      EXPECT_LE(rel_err(infinite_kernel(net, x, &x_copy, kopts(g, c.offset_path)), sym), 1e-12) << "x2 = copy of x1";
      // (b) 2 threads.
      const Array<double> sym2 = infinite_kernel(net, x, nullptr, kopts(g, c.offset_path, 2));
      const Array<double> cross2 = infinite_kernel(net, x, &y, kopts(g, c.offset_path, 2));
      EXPECT_LE(rel_err(sym2, sym), 1e-13) << "2 threads, symmetric";
      EXPECT_LE(rel_err(cross2, cross), 1e-13) << "2 threads, x2";
      EXPECT_LE(rel_err(infinite_kernel(net, x, &x_copy, kopts(g, c.offset_path, 2)), sym), 1e-12) << "copy, 2 threads";
      not_bit_exact += !identical(sym2, sym) + !identical(cross2, cross);
      runs += 2;
      // float32: the copy against the symmetric path as well.
      const Array<float> xf = cast<float>(x), xf_copy = copy_of(xf);
      const Array<float> symf = infinite_kernel(net, xf, nullptr, kopts(g, c.offset_path));
      EXPECT_LE(rel_err(infinite_kernel(net, xf, &xf_copy, kopts(g, c.offset_path)), symf), 1e-5) << "float32 copy";
      EXPECT_LE(rel_err(symf, sym), 1e-5) << "float32 vs float64";
    }
  }
  std::printf("[ info ] infinite kernels, 2 threads against 1: %d of %d kernels not bit-identical (all within 1e-13)\n",
              not_bit_exact, runs);
}

// N above one tile: the kernel against blocks of rows computed by calls small enough for one tile
// (a few rows of x1 against all of x2: one tile holds every column), symmetric and not.
void check_tiled(const std::string& spec, const Shape& input, bool offset_path, index_t n1, index_t n2, index_t probe,
                 KernelOptions::Get g) {
  SCOPED_TRACE(spec + (offset_path ? "" : " (layer by layer)") + (g == KernelOptions::ntk ? " NTK" : " NNGP"));
  Network net(spec, input);
  const Array<double> x = random_inputs<double>(net, n1, 21), y = random_inputs<double>(net, n2, 22);
  int tiles_sym = 0, tiles_cross = 0, tiles_probe = 0;
  const Array<double> sym = infinite_kernel(net, x, nullptr, kopts(g, offset_path, 0, &tiles_sym));
  const Array<double> cross = infinite_kernel(net, x, &y, kopts(g, offset_path, 0, &tiles_cross));
  // Enough tiles that both row and column boundaries are crossed (3 upper tiles of a 2 × 2 grid).
  EXPECT_GE(tiles_sym, 3) << "N = " << n1 << " fits in fewer tiles than expected: raise N";
  EXPECT_GE(tiles_cross, 4) << "N1 × N2 = " << n1 << " × " << n2 << " fits in fewer tiles than expected: raise N";
  for (index_t i = 0; i < n1; ++i)
    for (index_t j = i + 1; j < n1; ++j) ASSERT_EQ(sym[i * n1 + j], sym[j * n1 + i]) << i << "," << j;
  // Row blocks: the first rows, the last rows (across the last tile boundary), a middle block.
  for (index_t r0 : {index_t(0), n1 / 2 - probe / 2, n1 - probe}) {
    const index_t r1 = r0 + probe;
    Shape s = x.shape();
    s[0] = probe;
    const Array<double> part(s, std::vector<double>(x.data() + r0 * net.input_size(), x.data() + r1 * net.input_size()));
    const Array<double> want_sym = infinite_kernel(net, part, &x, kopts(g, offset_path, 0, &tiles_probe));
    EXPECT_EQ(tiles_probe, 1);
    EXPECT_LE(rel_err(rows_of(sym, r0, r1), want_sym), 1e-12) << "symmetric, rows " << r0 << ".." << r1;
    const Array<double> want_cross = infinite_kernel(net, part, &y, kopts(g, offset_path, 0, &tiles_probe));
    EXPECT_EQ(tiles_probe, 1);
    EXPECT_LE(rel_err(rows_of(cross, r0, r1), want_cross), 1e-12) << "x2, rows " << r0 << ".." << r1;
  }
}

TEST(PathIndependence, InfiniteVectorsManyTiles) {
  // Vector kernels run layer by layer, about 2048 × 2048 pairs per tile (src/infinite.cpp:
  // batch_pairs): N = 2100 spans 2 × 2 tiles. Closed-form activations keep it fast.
  check_tiled("Dense(3, W_std=1.2, b_std=0.1), Relu, Dense(2, b_std=0.2), Erf, Dense(1)", {3}, true, 2100, 2100, 8,
              KernelOptions::ntk);
}

TEST(PathIndependence, InfiniteImagesOffsetPathManyTiles) {
  // The offset path takes tiles of 256 × 256 pairs (offset_tile_pairs = 65536): N = 260.
  for (auto g : {KernelOptions::ntk, KernelOptions::nngp})
    check_tiled("Conv(2, 2, padding=SAME, W_std=1.2, b_std=0.1), Relu, Conv(1, 2, padding=SAME), Gelu, GlobalAvgPool, Dense(1)",
                {3, 3, 1}, true, 260, 260, 6, g);
  check_tiled("Conv(2, 3, padding=SAME, W_std=1.2), Abs, Flatten, Dense(1, b_std=0.1)", {4, 4, 1}, true, 260, 260, 6,
              KernelOptions::ntk);
}

TEST(PathIndependence, InfiniteImagesLayerByLayerManyTiles) {
  // Layer by layer, whole pixel-pair states: 8 × 8 images keep 4096 entries per pair, tiles of
  // 32 × 32 pairs (batch_pairs): N = 40 (symmetric) and 40 × 36.
  check_tiled("Conv(1, 3, padding=SAME, W_std=1.3, b_std=0.1), Relu, Conv(1, 3, padding=SAME), LeakyRelu(0.2), "
              "GlobalAvgPool, Dense(1)",
              {8, 8, 1}, false, 40, 36, 4, KernelOptions::ntk);
  // Diagonal states (Flatten readout): 64 entries per pair, tiles of 256 × 256 pairs.
  check_tiled("Conv(1, 3, padding=SAME, W_std=1.3, b_std=0.1), Relu, Conv(1, 3, padding=SAME), Flatten, Dense(1)",
              {8, 8, 1}, false, 260, 260, 4, KernelOptions::ntk);
}

}  // namespace
}  // namespace ntk
