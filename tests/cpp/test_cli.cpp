// The ntk command line, run as a separate process: exit statuses, the one-line error contract,
// no output left behind on failure, and outputs that agree with the library called directly.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli_fixture.hpp"
#include "file_fixture.hpp"
#include "ntk/array.hpp"
#include "ntk/empirical.hpp"
#include "ntk/infinite.hpp"
#include "ntk/io.hpp"
#include "ntk/network.hpp"

namespace ntk {
namespace {

constexpr const char* kMlp = "Dense(16), Relu, Dense(3)";
constexpr const char* kCnn =
    "Conv(4, 3, padding=SAME), Relu, Residual(Conv(4, 3, padding=SAME), Gelu), AvgPool(2), Flatten, Dense(3, b_std=0.1)";

template <class T>
Array<T> random_array(const Shape& shape, std::uint64_t seed) {
  Array<T> a(shape);
  for (index_t i = 0; i < a.size(); ++i) a[i] = static_cast<T>(std::sin(0.37 * double(i) + double(seed)) * 1.5);
  return a;
}

template <class T>
void expect_close(const Array<T>& got, const Array<T>& want) {
  ASSERT_EQ(got.shape(), want.shape());
  const double tol = sizeof(T) == 4 ? 1e-5 : 1e-12;
  for (index_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(double(got[i]), double(want[i]), tol * (1 + std::abs(double(want[i])))) << "at flat index " << i;
}

void expect_same_arrays(const std::map<std::string, RawArray>& a, const std::map<std::string, RawArray>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [key, value] : a) {
    auto it = b.find(key);
    ASSERT_NE(it, b.end()) << key;
    EXPECT_EQ(value.dtype, it->second.dtype) << key;
    EXPECT_EQ(value.shape, it->second.shape) << key;
    EXPECT_TRUE(value.bytes == it->second.bytes) << key;
  }
}

std::vector<unsigned char> idx_bytes(std::uint8_t type, const std::vector<std::uint32_t>& dims,
                                     const std::vector<unsigned char>& payload) {
  std::vector<unsigned char> b{0, 0, type, static_cast<unsigned char>(dims.size())};
  for (std::uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>(d >> s));
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

void write_bytes(const std::string& p, const std::vector<unsigned char>& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

void truncate_by(const std::string& p, std::uintmax_t drop) {
  const auto size = fs::file_size(p);
  ASSERT_GT(size, drop);
  fs::resize_file(p, size - drop);
}

// ---------------------------------------------------------------------------------------------

TEST_F(Cli, VersionAndHelpExitZero) {
  Result r = run("--version");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, std::string("ntk ") + NTK_VERSION + "\n");

  r = run("--help");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("init"), std::string::npos);
  EXPECT_NE(r.out.find("apply"), std::string::npos);
  EXPECT_NE(r.out.find("Example"), std::string::npos);

  for (const std::string sub : {"init", "apply"}) {
    r = run(sub + " --help");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(r.err.empty()) << r.err;
    EXPECT_NE(r.out.find("Example:\n  ntk " + sub + " --net"), std::string::npos) << r.out;
    for (const char* flag : {"--net", "--W-std", "--b-std", "--parameterization", "--dtype", "-o"})
      EXPECT_NE(r.out.find(flag), std::string::npos) << sub << " --help lacks " << flag;
  }
  r = run("apply -h");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("--threads"), std::string::npos);
}

// `ntk demo` only starts the Python demo (tests/python/test_demo.py runs it); here: it is listed, and
// without a usable Python it fails with one error line that says what to install.
TEST_F(Cli, DemoWithoutItsPythonIsOneErrorLine) {
  EXPECT_NE(run("--help").out.find("demo"), std::string::npos);
  ::setenv("NTKIT_PYTHON", path("no-such-python").c_str(), 1);
  Result r = run("demo --quick");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err.rfind("error: ntk demo: cannot start " + path("no-such-python"), 0), 0u) << r.err;
  EXPECT_NE(r.err.find("scripts/run.sh"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  if (::access("/usr/bin/python3", X_OK) == 0) {  // Debian's Python, which has no ntkit (the package lives in venvs)
    ::setenv("NTKIT_PYTHON", "/usr/bin/python3", 1);
    r = run("demo --quick");
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(r.err.rfind("error: ntk demo runs the Python package ntkit", 0), 0u) << r.err;
  }
  ::unsetenv("NTKIT_PYTHON");
  EXPECT_TRUE(listing().empty());
}

// Layers without an exact infinite-width kernel: `ntk kernel` refuses them in one error line that
// names the layer; `ntk entk` computes the same network's empirical kernel.
TEST_F(Cli, KernelRefusesMaxPoolAndBatchNormByName) {
  write_npy(path("img.npy"), random_array<float>({3, 6, 6, 1}, 7));
  const std::pair<const char*, const char*> cases[] = {
      {"Conv(2, 3, padding=1), Relu, MaxPool(2), GlobalAvgPool, Dense(1)", "MaxPool(2x2, stride=2x2, padding=VALID)"},
      {"Conv(2, 3, padding=1), BatchNorm, Relu, GlobalAvgPool, Dense(1)", "BatchNorm(eps=1e-05)"}};
  for (const auto& [net, named] : cases) {
    Result r = run(std::string("kernel --net '") + net + "' --x1 " + q(path("img.npy")) + " -o " + q(path("k.npy")));
    EXPECT_EQ(r.status, 1) << net;
    EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(named), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(fs::exists(path("k.npy")));
    r = run(std::string("entk --net '") + net + "' --seed 0 --x1 " + q(path("img.npy")) + " -q -o " + q(path("k.npy")));
    EXPECT_EQ(r.status, 0) << r.err;
    fs::remove(path("k.npy"));
  }
}

TEST_F(Cli, InitWritesTheLibrarysParameters) {
  const std::string p = path("p.npz");
  Result r = run("init --net " + q(kMlp) + " --input-shape 5 --seed 7 -o " + q(p));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.err.empty());
  EXPECT_TRUE(r.out.starts_with("wrote " + p + ": 128 parameters")) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);

  Network net(kMlp, {5});
  expect_same_arrays(read_npz(p), net.params_to_npz(net.init<float>(7)));

  r = run("init --quiet --net " + q(kMlp) + " --input-shape 5 --seed 7 -o " + q(path("quiet.npz")));
  EXPECT_EQ(r.status, 0);
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST_F(Cli, SameSeedSameParametersOtherSeedOthers) {
  const auto a = read_npz(init(kCnn, "6,6,2", "a.npz", "--seed 3"));
  const auto b = read_npz(init(kCnn, "6,6,2", "b.npz", "--seed 3"));
  const auto c = read_npz(init(kCnn, "6,6,2", "c.npz", "--seed 4"));
  expect_same_arrays(a, b);
  ASSERT_EQ(a.size(), c.size());
  EXPECT_FALSE(a.at("0.W").bytes == c.at("0.W").bytes);
  // Default seed is 0.
  Network net(kCnn, {6, 6, 2});
  expect_same_arrays(read_npz(init(kCnn, "6,6,2", "d.npz")), net.params_to_npz(net.init<float>(0)));
}

TEST_F(Cli, ApplyMlpMatchesLibrary) {
  const std::string p = init(kMlp, "5", "p.npz", "--seed 11");
  Array<float> x = random_array<float>({7, 5}, 1);
  write_npy(path("x.npy"), x);
  Result r = run("apply --net " + q(kMlp) + " --params " + q(p) + " -x " + q(path("x.npy")) + " -o " + q(path("y.npy")));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.err.empty());

  RawArray y = read_npy(path("y.npy"));
  EXPECT_EQ(y.dtype, DType::float32);
  EXPECT_EQ(y.shape, (Shape{7, 3}));
  // Independent path: parameters from the generator, not from the file.
  Network net(kMlp, {5});
  expect_close(y.as<float>(), net.apply(net.init<float>(11), x));
}

TEST_F(Cli, ApplyCnnMatchesLibrary) {
  const std::string p = init(kCnn, "6,6,2", "p.npz", "--seed 5");
  Array<float> x = random_array<float>({4, 6, 6, 2}, 2);
  write_npy(path("x.npy"), x);
  Result r = run("apply --threads 1 --net " + q(kCnn) + " --params " + q(p) + " -x " + q(path("x.npy")) + " -o " +
                 q(path("y.npy")));
  ASSERT_EQ(r.status, 0) << r.err;
  RawArray y = read_npy(path("y.npy"));
  EXPECT_EQ(y.shape, (Shape{4, 3}));
  Network net(kCnn, {6, 6, 2});
  expect_close(y.as<float>(), net.apply(net.init<float>(5), x));
}

TEST_F(Cli, Float64EndToEnd) {
  const std::string p = init(kCnn, "6,6,2", "p.npz", "--seed 9 --dtype float64");
  EXPECT_EQ(read_npz(p).at("0.W").dtype, DType::float64);
  Array<double> x = random_array<double>({3, 6, 6, 2}, 3);
  write_npy(path("x.npy"), x);
  // float64 X gives float64 outputs by default.
  Result r = run("apply --net " + q(kCnn) + " --params " + q(p) + " -x " + q(path("x.npy")) + " -o " + q(path("y.npy")));
  ASSERT_EQ(r.status, 0) << r.err;
  RawArray y = read_npy(path("y.npy"));
  EXPECT_EQ(y.dtype, DType::float64);
  Network net(kCnn, {6, 6, 2});
  expect_close(y.as<double>(), net.apply(net.init<double>(9), x));

  // --dtype float32 overrides.
  r = run("apply --dtype float32 --net " + q(kCnn) + " --params " + q(p) + " -x " + q(path("x.npy")) + " -o " +
          q(path("y32.npy")));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(read_npy(path("y32.npy")).dtype, DType::float32);
}

TEST_F(Cli, NetworkDefaultsFlags) {
  const std::string spec = "Dense(4), Relu, Dense(2)";
  const std::string flags = "--W-std 1.5 --b-std 0.2 --parameterization standard";
  const std::string p = init(spec, "3", "p.npz", "--seed 2 " + flags);
  NetworkDefaults d;
  d.W_std = 1.5;
  d.b_std = 0.2;
  d.parameterization = Parameterization::standard;
  Network net(spec, {3}, d);
  const auto arrays = read_npz(p);
  EXPECT_EQ(arrays.count("0.b"), 1u);
  expect_same_arrays(arrays, net.params_to_npz(net.init<float>(2)));

  Array<float> x = random_array<float>({5, 3}, 4);
  write_npy(path("x.npy"), x);
  const std::string base = "apply --net " + q(spec) + " --params " + q(p) + " -x " + q(path("x.npy"));
  Result r = run(base + " " + flags + " -o " + q(path("y.npy")));
  ASSERT_EQ(r.status, 0) << r.err;
  expect_close(read_npy(path("y.npy")).as<float>(), net.apply(net.init<float>(2), x));

  // Without --b-std the network has no biases, and the file's biases are not for it.
  Result e = expect_failure(base + " -o " + q(path("z.npy")), 1, path("z.npy"));
  EXPECT_NE(e.err.find("0.b"), std::string::npos) << e.err;
}

TEST_F(Cli, ApplyReadsIdxImages) {
  const std::string spec = "Flatten, Dense(2)";
  const std::string p = init(spec, "4,4,1", "p.npz", "--seed 1");
  std::vector<unsigned char> pixels(3 * 4 * 4);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<unsigned char>((i * 37) % 256);
  write_bytes(path("images-idx3-ubyte"), idx_bytes(0x08, {3, 4, 4}, pixels));

  Array<float> x({3, 4, 4, 1});
  for (index_t i = 0; i < x.size(); ++i) x[i] = float(pixels[static_cast<size_t>(i)]);
  Network net(spec, {4, 4, 1});
  const Array<float> want = net.apply(net.init<float>(1), x);

  // --idx-scale raw: the pixel values as stored (the default, unit, divides them by 255; below).
  Result r = run("apply --net " + q(spec) + " --params " + q(p) + " -x " + q(path("images-idx3-ubyte")) +
                 " --idx-scale raw -o " + q(path("y.npy")));
  ASSERT_EQ(r.status, 0) << r.err;
  RawArray y = read_npy(path("y.npy"));
  EXPECT_EQ(y.dtype, DType::float32);
  expect_close(y.as<float>(), want);

  // Gzipped, as Debian's dataset-fashion-mnist ships it.
  const std::vector<unsigned char> raw = idx_bytes(0x08, {3, 4, 4}, pixels);
  gzFile gz = gzopen(path("images.gz").c_str(), "wb");
  ASSERT_NE(gz, nullptr);
  ASSERT_EQ(gzwrite(gz, raw.data(), static_cast<unsigned>(raw.size())), static_cast<int>(raw.size()));
  gzclose(gz);
  r = run("apply --net " + q(spec) + " --params " + q(p) + " -x " + q(path("images.gz")) + " --idx-scale raw -o " +
          q(path("yz.npy")));
  ASSERT_EQ(r.status, 0) << r.err;
  expect_close(read_npy(path("yz.npy")).as<float>(), want);

  // By default IDX bytes become [0, 1] (byte / 255, as torchvision's ToTensor).
  Array<float> unit({3, 4, 4, 1});
  for (index_t i = 0; i < unit.size(); ++i) unit[i] = float(pixels[static_cast<size_t>(i)]) / 255.0f;
  r = run("apply --net " + q(spec) + " --params " + q(p) + " -x " + q(path("images.gz")) + " -o " + q(path("yu.npy")));
  ASSERT_EQ(r.status, 0) << r.err;
  expect_close(read_npy(path("yu.npy")).as<float>(), net.apply(net.init<float>(1), unit));
}

// ---------------------------------------------------------------------------------------------
// Failures: exit status, one "error:" line, nothing written.

TEST_F(Cli, BadSpecsAreUsageErrors) {
  const std::string o = path("p.npz");
  Result r = expect_failure("init --net 'Dense(4), Frobnicate' --input-shape 5 -o " + q(o), 2, o);
  EXPECT_NE(r.err.find("Frobnicate"), std::string::npos) << r.err;
  expect_failure("init --net 'Dense(10' --input-shape 5 -o " + q(o), 2, o);
  expect_failure("init --net 'Dense(10,,)' --input-shape 5 -o " + q(o), 2, o);
  expect_failure("init --net 'Dense(0)' --input-shape 5 -o " + q(o), 2, o);

  // apply reports the spec before touching its files.
  expect_failure("apply --net 'Dense(10' --params nowhere.npz -x nowhere.npy -o " + q(path("y.npy")), 2, path("y.npy"));
}

TEST_F(Cli, BadFlagsAreUsageErrors) {
  const std::string o = path("p.npz");
  const std::string net = "--net " + q(kMlp);
  Result r = expect_failure("init " + net + " --input-shape 5 --frobnicate 3 -o " + q(o), 2, o);
  EXPECT_NE(r.err.find("--frobnicate"), std::string::npos) << r.err;
  r = expect_failure("init " + net + " --frobnicate -o " + q(o), 2, o);  // unknown flag wins over missing ones
  EXPECT_NE(r.err.find("--frobnicate"), std::string::npos) << r.err;
  r = expect_failure("init --input-shape 5 -o " + q(o), 2, o);
  EXPECT_NE(r.err.find("--net"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("ntk init --help"), std::string::npos) << r.err;
  expect_failure("init " + net + " -o " + q(o), 2, o);
  expect_failure("init " + net + " --input-shape 5", 2);
  expect_failure("apply " + net + " -x x.npy -o " + q(o), 2, o);
  expect_failure("init " + net + " --input-shape 5,x -o " + q(o), 2, o);
  expect_failure("init " + net + " --input-shape 5,0 -o " + q(o), 2, o);
  expect_failure("init " + net + " --input-shape 5 --seed -1 -o " + q(o), 2, o);
  expect_failure("init " + net + " --input-shape 5 --dtype float16 -o " + q(o), 2, o);
  expect_failure("init " + net + " --input-shape 5 --b-std nan -o " + q(o), 2, o);
  expect_failure("init " + net + " --input-shape 5 --W-std x -o " + q(o), 2, o);
  expect_failure("init " + net + " --input-shape 5 --parameterization mup -o " + q(o), 2, o);
  expect_failure("apply " + net + " --params p.npz -x x.npy -o y.npy --threads 0", 2);
  expect_failure("", 2);
  r = expect_failure("frobnicate", 2);
  EXPECT_NE(r.err.find("frobnicate"), std::string::npos) << r.err;
}

class CliApplyFailures : public Cli {
 protected:
  void SetUp() override {
    Cli::SetUp();
    params_ = init(kMlp, "5", "p.npz", "--seed 1");
    write_npy(path("x.npy"), random_array<float>({6, 5}, 1));
  }
  // apply with -x and --params, expected to fail; returns stderr.
  std::string fail_apply(const std::string& x, const std::string& params, int status = 1,
                         const std::string& spec = kMlp) const {
    const std::string y = path("y.npy");
    return expect_failure("apply --net " + q(spec) + " --params " + q(params) + " -x " + q(x) + " -o " + q(y), status, y)
        .err;
  }
  std::string params_;
};

TEST_F(CliApplyFailures, WrongInputShape) {
  write_npy(path("x6.npy"), random_array<float>({6, 6}, 1));
  std::string err = fail_apply(path("x6.npy"), params_);
  EXPECT_NE(err.find("0.W"), std::string::npos) << err;
  // One example that is not batched.
  write_npy(path("x1.npy"), random_array<float>({5}, 1));
  fail_apply(path("x1.npy"), params_);
  // Images for a network whose parameters were made for vectors.
  write_npy(path("img.npy"), random_array<float>({2, 5, 5, 1}, 1));
  fail_apply(path("img.npy"), params_);
}

TEST_F(CliApplyFailures, ParameterFileMissingAKey) {
  auto arrays = read_npz(params_);
  arrays.erase("2.W");
  write_npz(path("missing.npz"), arrays);
  std::string err = fail_apply(path("x.npy"), path("missing.npz"));
  EXPECT_NE(err.find("2.W"), std::string::npos) << err;
}

TEST_F(CliApplyFailures, ParameterWithWrongShape) {
  auto arrays = read_npz(params_);
  arrays["2.W"] = RawArray::from(random_array<float>({16, 4}, 1));
  write_npz(path("shape.npz"), arrays);
  std::string err = fail_apply(path("x.npy"), path("shape.npz"));
  EXPECT_NE(err.find("2.W"), std::string::npos) << err;
}

TEST_F(CliApplyFailures, NonFiniteParameter) {
  auto arrays = read_npz(params_);
  Array<float> w = arrays.at("0.W").as<float>();
  w[3] = std::numeric_limits<float>::infinity();
  arrays["0.W"] = RawArray::from(w);
  write_npz(path("inf.npz"), arrays);
  fail_apply(path("x.npy"), path("inf.npz"));
}

TEST_F(CliApplyFailures, NanInInputs) {
  Array<float> x = random_array<float>({6, 5}, 1);
  x[13] = std::numeric_limits<float>::quiet_NaN();
  write_npy(path("nan.npy"), x);
  std::string err = fail_apply(path("nan.npy"), params_);
  EXPECT_NE(err.find("example 2"), std::string::npos) << err;
  // Also with a float64 computation.
  const std::string y = path("y.npy");
  expect_failure("apply --dtype float64 --net " + q(kMlp) + " --params " + q(params_) + " -x " + q(path("nan.npy")) +
                     " -o " + q(y),
                 1, y);
}

TEST_F(CliApplyFailures, TruncatedNpyInput) {
  write_npy(path("t.npy"), random_array<float>({6, 5}, 1));
  truncate_by(path("t.npy"), 9);
  fail_apply(path("t.npy"), params_);
  // Cut inside the header.
  write_npy(path("h.npy"), random_array<float>({6, 5}, 1));
  fs::resize_file(path("h.npy"), 20);
  fail_apply(path("h.npy"), params_);
}

TEST_F(CliApplyFailures, TruncatedNpzParams) {
  fs::copy_file(params_, path("t.npz"));
  truncate_by(path("t.npz"), fs::file_size(params_) / 2);
  fail_apply(path("x.npy"), path("t.npz"));
}

TEST_F(CliApplyFailures, TruncatedIdx) {
  std::vector<unsigned char> pixels(2 * 5, 7);  // header says 3 x 5, payload has 2 x 5
  write_bytes(path("t-idx2-ubyte"), idx_bytes(0x08, {3, 5}, pixels));
  fail_apply(path("t-idx2-ubyte"), params_);
  write_bytes(path("h.idx"), {0, 0, 8, 3, 0, 0});  // cut inside the header
  fail_apply(path("h.idx"), params_);
}

TEST_F(CliApplyFailures, MissingFiles) {
  std::string err = fail_apply(path("nowhere.npy"), params_);
  EXPECT_NE(err.find("nowhere.npy"), std::string::npos) << err;
  err = fail_apply(path("x.npy"), path("nowhere.npz"));
  EXPECT_NE(err.find("nowhere.npz"), std::string::npos) << err;
  // A parameter file where an array is expected.
  fail_apply(params_, params_);
}

TEST_F(CliApplyFailures, OutputDirectoryMissing) {
  const std::string y = path("no/such/dir/y.npy");
  Result r = expect_failure("apply --net " + q(kMlp) + " --params " + q(params_) + " -x " + q(path("x.npy")) + " -o " + q(y),
                            1, y);
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
  const std::string p = path("no/p.npz");
  expect_failure("init --net " + q(kMlp) + " --input-shape 5 -o " + q(p), 1, p);
  // An existing directory is not a file name.
  expect_failure("init --net " + q(kMlp) + " --input-shape 5 -o " + q(dir_.string()), 1);
}

TEST_F(CliApplyFailures, ShapeErrorsOfTheSpecAreFailures) {
  // A valid spec that cannot take the input shape: not a usage error.
  expect_failure("init --net 'Conv(4, 3)' --input-shape 5 -o " + q(path("c.npz")), 1, path("c.npz"));
}

}  // namespace
}  // namespace ntk

namespace ntk {
namespace {

// ntk entk: results equal the library's, and its bad inputs give one error line and no file.
class CliEntk : public Cli {
 protected:
  void SetUp() override {
    Cli::SetUp();
    params_ = init(kMlp, "5", "p.npz", "--seed 2");
    write_npy(path("x1.npy"), random_array<double>({4, 5}, 3));
    write_npy(path("x2.npy"), random_array<double>({3, 5}, 4));
  }
  std::string entk(const std::string& extra, const std::string& out) const {
    return "entk --net " + q(kMlp) + " --params " + q(params_) + " --x1 " + q(path("x1.npy")) + " -o " + q(out) + " " + extra;
  }
  std::string params_;
};

TEST_F(CliEntk, MatchesTheLibraryInEveryMode) {
  Network net(kMlp, {5});
  const auto theta = net.params_from_npz<double>(read_npz(params_));
  const Array<double> x1 = read_npy(path("x1.npy")).as<double>(), x2 = read_npy(path("x2.npy")).as<double>();
  for (const char* mode : {"full", "trace", "pntk", "diagonal", "logit=1"}) {
    const std::string out = path("k.npy");
    Result r = run(entk(std::string("--mode ") + mode + " --x2 " + q(path("x2.npy")), out));
    ASSERT_EQ(r.status, 0) << r.err;
    EntkOptions o;
    o.mode = parse_entk_mode(mode);
    o.method = EntkMethod::jc;
    expect_close(read_npy(out).as<double>(), empirical_ntk(net, theta, x1, &x2, o));
    // Out of core gives the same numbers.
    r = run(entk(std::string("--out-of-core --mode ") + mode + " --x2 " + q(path("x2.npy")), out));
    ASSERT_EQ(r.status, 0) << r.err;
    expect_close(read_npy(out).as<double>(), empirical_ntk(net, theta, x1, &x2, o));
  }
  Result r = run(entk("--mode full --explain", path("unused.npy")));
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("plan: method"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(path("unused.npy")));
}

TEST_F(CliEntk, NngpAndFloat64Accumulation) {
  Network net(kMlp, {5});
  const auto theta = net.params_from_npz<double>(read_npz(params_));
  const Array<double> x1 = read_npy(path("x1.npy")).as<double>();
  const std::string out = path("k.npy");
  ASSERT_EQ(run(entk("--get nngp --mode full", out)).status, 0);
  expect_close(read_npy(out).as<double>(), empirical_nngp(net, theta, x1, nullptr, parse_entk_mode("full")));
  // float32 output computed in float64 from float32 inputs.
  write_npy(path("x32.npy"), cast<float>(x1));
  Result r = run("entk --net " + q(kMlp) + " --params " + q(params_) + " --x1 " + q(path("x32.npy")) +
                 " --accumulate float64 --mode trace -o " + q(out));
  ASSERT_EQ(r.status, 0) << r.err;
  RawArray k = read_npy(out);
  EXPECT_EQ(k.dtype, DType::float32);
  EntkOptions o;
  o.mode = parse_entk_mode("trace");
  expect_close(k.as<float>(), cast<float>(empirical_ntk(net, theta, cast<double>(cast<float>(x1)), nullptr, o)));
}

TEST_F(CliEntk, BadInputsGiveOneErrorLine) {
  const std::string out = path("k.npy");
  write_npy(path("wide.npy"), random_array<double>({3, 6}, 5));
  std::string err = expect_failure(entk("--x2 " + q(path("wide.npy")), out), 1, out).err;
  EXPECT_NE(err.find("x2"), std::string::npos) << err;                        // feature mismatch
  err = expect_failure(entk("--mode logit=7", out), 1, out).err;              // a mode the network cannot give
  EXPECT_NE(err.find("logit=7"), std::string::npos) << err;
  expect_failure(entk("--mode everything", out), 1, out);                     // unknown mode
  err = expect_failure(entk("--max-memory 1K", out), 1, out).err;             // budget too small for one tile
  EXPECT_NE(err.find("--max-memory"), std::string::npos) << err;
  expect_failure(entk("--max-memory lots", out), 2, out);                     // malformed budget
  const std::string unwritable = path("no/such/dir/k.npy");                   // output that cannot be written
  expect_failure(entk("", unwritable), 1, unwritable);
  expect_failure("entk --net " + q(kMlp) + " --x1 " + q(path("x1.npy")) + " -o " + q(out), 2, out);  // no --params/--seed
}

}  // namespace
}  // namespace ntk

namespace ntk {
namespace {

TEST_F(Cli, KernelMatchesTheLibraryAndRefusesUnsupportedLayers) {
  const std::string spec = "Dense(8, W_std=1.5, b_std=0.1), Relu, Dense(2)";
  write_npy(path("x1.npy"), random_array<double>({4, 5}, 7));
  write_npy(path("x2.npy"), random_array<double>({3, 5}, 8));
  const Array<double> x1 = read_npy(path("x1.npy")).as<double>(), x2 = read_npy(path("x2.npy")).as<double>();
  Network net(spec, {5});
  for (const char* get : {"ntk", "nngp"}) {
    const std::string out = path("k.npy");
    Result r = run("kernel --net " + q(spec) + " --x1 " + q(path("x1.npy")) + " --x2 " + q(path("x2.npy")) +
                   " --get " + get + " -q -o " + q(out));
    ASSERT_EQ(r.status, 0) << r.err;
    KernelOptions o;
    o.get = std::string(get) == "nngp" ? KernelOptions::nngp : KernelOptions::ntk;
    expect_close(read_npy(out).as<double>(), infinite_kernel(net, x1, &x2, o));
  }
  const std::string out = path("refused.npy");
  std::string err = expect_failure("kernel --net " + q("Relu, Dense(1)") + " --x1 " + q(path("x1.npy")) + " -o " + q(out),
                                   1, out)
                        .err;
  EXPECT_NE(err.find("non-Gaussian"), std::string::npos) << err;
}

TEST_F(Cli, KernelOutOfCoreEqualsInMemoryAndBudgetsAreEnforced) {
  // Images through the offset path and vectors through the layer-by-layer path; symmetric and not.
  struct Case {
    std::string spec;
    Shape shape;
  };
  const Case cases[] = {{"Conv(2, 3, padding=SAME, W_std=1.4), Relu, GlobalAvgPool, Dense(1)", {37, 5, 4, 2}},
                        {"Dense(8, W_std=1.4, b_std=0.1), Relu, Dense(8), Erf, Dense(1)", {300, 6}}};
  for (const auto& c : cases) {
    write_npy(path("x.npy"), random_array<double>(c.shape, 9));
    Shape s2 = c.shape;
    s2[0] = 23;
    write_npy(path("y.npy"), random_array<double>(s2, 10));
    for (const std::string x2 : {std::string(), " --x2 " + q(path("y.npy"))})
      for (const char* dtype : {"float64", "float32"}) {
        const std::string base = "kernel --net " + q(c.spec) + " --x1 " + q(path("x.npy")) + x2 + " --dtype " + dtype + " -q";
        Result a = run(base + " -o " + q(path("mem.npy")));
        ASSERT_EQ(a.status, 0) << a.err;
        Result b = run(base + " --out-of-core -o " + q(path("ooc.npy")));
        ASSERT_EQ(b.status, 0) << b.err;
        EXPECT_EQ(test::read_bytes(path("mem.npy")), test::read_bytes(path("ooc.npy"))) << c.spec << x2 << " " << dtype;
      }
  }
  // A budget too small for the working memory: one error line naming the knob, no file.
  const std::string out = path("small.npy");
  std::string err = expect_failure("kernel --net " + q(cases[1].spec) + " --x1 " + q(path("x.npy")) +
                                       " --max-memory 1K -o " + q(out),
                                   1, out)
                        .err;
  EXPECT_NE(err.find("--max-memory"), std::string::npos) << err;
}

}  // namespace
}  // namespace ntk

namespace ntk {
namespace {

// A computation that overflows: one error line naming the cause, exit 1, no output file (it used
// to save a kernel of NaN and exit 0).
TEST_F(Cli, KernelsThatOverflowFailInsteadOfSavingNaN) {
  write_npy(path("x.npy"), random_array<float>(Shape{6, 4}, 3));
  const std::string x = " --x1 " + q(path("x.npy"));
  for (const char* extra : {"", " --out-of-core"}) {
    const std::string out = path("nan.npy");
    std::string err = expect_failure("entk --net " + q("Dense(4, W_std=1e308), Relu, Dense(4, W_std=1e308)") +
                                         " --seed 0" + x + extra + " -o " + q(out),
                                     1, out)
                          .err;
    EXPECT_NE(err.find("not finite"), std::string::npos) << err;
    err = expect_failure("kernel --net " + q("Dense(8, W_std=1e200), Relu, Dense(8, W_std=1e200), Relu, Dense(1, W_std=1e200)") +
                             x + extra + " -o " + q(out),
                         1, out)
              .err;
    EXPECT_NE(err.find("not finite"), std::string::npos) << err;
  }
}

}  // namespace
}  // namespace ntk
