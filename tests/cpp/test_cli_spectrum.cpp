// ntk spectrum, ntk compare and ntk pntk-report run as separate processes: results that agree with
// the library, JSON that Python's json module parses, and bad inputs that fail with the exit
// status of DESIGN.md, one "error:" line and no output file.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "cli_fixture.hpp"
#include "harness.hpp"
#include "ntk/empirical.hpp"
#include "ntk/io.hpp"
#include "ntk/network.hpp"
#include "ntk/spectrum.hpp"

namespace ntk {
namespace {

class CliSpectrum : public Cli {
 protected:
  // Runs a Python check on a JSON document (bound to `j`); true if the assertions hold.
  bool python_json(const std::string& json, const std::string& body) const {
    std::ofstream(io_ / "doc.json") << json;
    std::ofstream(io_ / "check.py") << "import json, sys\nj = json.load(open(" << q((io_ / "doc.json").string())
                                    << "))\n"
                                    << body << "\n";
    return std::system(("/usr/bin/python3 " + q((io_ / "check.py").string())).c_str()) == 0;
  }

  // A symmetric positive definite (n, n) kernel, written as path(name).
  Array<double> write_kernel(const std::string& name, index_t n, std::uint64_t seed) const {
    const auto g = test::random_vector<double>(n * (n + 3), seed);
    Array<double> k(Shape{n, n});
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j)
        for (index_t l = 0; l < n + 3; ++l) k[i * n + j] += g[size_t(i * (n + 3) + l)] * g[size_t(j * (n + 3) + l)];
    write_npy(path(name), k);
    return k;
  }

};

TEST_F(CliSpectrum, SpectrumAgreesWithLibraryAndJsonParses) {
  const Array<double> k = write_kernel("k.npy", 30, 1);
  RawArray labels{DType::int64, Shape{30}, {}};
  labels.bytes.resize(30 * 8);
  Array<double> y(Shape{30, 3});
  for (index_t i = 0; i < 30; ++i) {
    const std::int64_t c = i % 3;
    std::memcpy(labels.bytes.data() + i * 8, &c, 8);
    y[i * 3 + c] = 1;
  }
  write_npy(path("labels.npy"), labels);
  const KernelSpectrum want = spectrum(k, &y);

  const Result r = run("spectrum --k " + q(path("k.npy")) + " --y " + q(path("labels.npy")) + " --json -o " +
                       q(path("eigs.npy")));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  char check[512];
  std::snprintf(check, sizeof check,
                "assert abs(j['lambda_max'] - %.17g) <= 1e-9 * %.17g\n"
                "assert abs(j['effective_rank'] - %.17g) <= 1e-9 * %.17g\n"
                "assert abs(j['alignment'] - %.17g) <= 1e-9\n"
                "assert j['method'] == 'lapack' and j['n'] == 30 and j['positive_definite']\n",
                want.lambda_max, want.lambda_max, want.effective_rank, want.effective_rank, *want.alignment);
  EXPECT_TRUE(python_json(r.out, check)) << r.out;
  const Array<double> eigs = read_npy(path("eigs.npy")).as<double>();
  ASSERT_EQ(eigs.size(), 30);
  for (index_t i = 0; i < 30; ++i) EXPECT_NEAR(eigs[i], want.eigenvalues[size_t(i)], 1e-9 * want.lambda_max);

  // Lanczos on the memory-mapped file, float32.
  write_npy(path("k32.npy"), cast<float>(k));
  const Result l = run("spectrum --k " + q(path("k32.npy")) + " --top 3 --bottom 2 --json -o " + q(path("few.npy")));
  ASSERT_EQ(l.status, 0) << l.err;
  std::snprintf(check, sizeof check,
                "assert j['method'] == 'lanczos'\n"
                "assert abs(j['top'][2] - %.17g) <= 1e-5 * %.17g\n"
                "assert abs(j['top'][0] - %.17g) <= 1e-5 * %.17g\n"
                "assert abs(j['bottom'][0] - %.17g) <= 1e-5 * %.17g\n",
                want.eigenvalues[29], want.lambda_max, want.eigenvalues[27], want.lambda_max, want.eigenvalues[0],
                want.lambda_max);
  EXPECT_TRUE(python_json(l.out, check)) << l.out;
  EXPECT_EQ(read_npy(path("few.npy")).shape, (Shape{5}));

  // Text output names the quantities.
  const Result t = run("spectrum --k " + q(path("k.npy")));
  ASSERT_EQ(t.status, 0) << t.err;
  EXPECT_NE(t.out.find("condition number"), std::string::npos) << t.out;
}

TEST_F(CliSpectrum, CompareKroneckerAgreesWithLibrary) {
  const Network net("Dense(8), Relu, Dense(3)", Shape{4});
  const std::vector<double> theta = net.init<double>(2);
  const Array<double> x = test::random_batch<double>(6, {4}, 3);
  EntkOptions eo;
  eo.mode = parse_entk_mode("full");
  const Array<double> full = empirical_ntk(net, theta, x, nullptr, eo);
  eo.mode = parse_entk_mode("pntk");
  const Array<double> pntk = empirical_ntk(net, theta, x, nullptr, eo);
  write_npy(path("full.npy"), full);
  write_npy(path("pntk.npy"), cast<float>(pntk));
  const KernelComparison want = compare(pntk, full);
  const Result r = run("compare --k " + q(path("pntk.npy")) + " --ref " + q(path("full.npy")) + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  char check[256];
  std::snprintf(check, sizeof check,
                "assert j['kronecker'] and j['outputs'] == 3\n"
                "assert abs(j['relative_frobenius'] - %.17g) <= 1e-6\n"
                "assert abs(j['lambda_max_ratio'] - %.17g) <= 1e-5\n",
                want.relative_frobenius, want.lambda_max_ratio);
  EXPECT_TRUE(python_json(r.out, check)) << r.out;
}

TEST_F(CliSpectrum, PntkReportWritesJson) {
  const Array<double> x = test::random_batch<double>(12, {5}, 4), xt = test::random_batch<double>(6, {5}, 5);
  write_npy(path("x.npy"), x);
  write_npy(path("xt.npy"), xt);
  RawArray y{DType::int64, Shape{12}, std::vector<std::byte>(12 * 8)}, yt{DType::int64, Shape{6}, std::vector<std::byte>(6 * 8)};
  for (int i = 0; i < 12; ++i) {
    const std::int64_t c = i % 4;
    std::memcpy(y.bytes.data() + i * 8, &c, 8);
    if (i < 6) std::memcpy(yt.bytes.data() + i * 8, &c, 8);
  }
  write_npy(path("y.npy"), y);
  write_npy(path("yt.npy"), yt);
  const std::string common = "pntk-report --net 'Dense(16), Relu, Dense(4)' --seed 1 --x-train " + q(path("x.npy")) +
                             " --x-test " + q(path("xt.npy")) + " --y-test " + q(path("yt.npy"));
  const Result r = run(common + " --y-train " + q(path("y.npy")) + " --json -o " + q(path("report.json")));
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string check =
      "assert j['n_train'] == 12 and j['n_test'] == 6 and j['outputs'] == 4\n"
      "assert j['full_train']['shape'] == [12, 12, 4, 4] and j['pntk_test']['shape'] == [6, 12]\n"
      "assert 0 < j['train']['relative_frobenius'] < 10 and j['train']['kronecker']\n"
      "assert 0 <= j['accuracy_full'] <= 1 and 0 <= j['accuracy_pntk'] <= 1\n";
  EXPECT_TRUE(python_json(r.out, check)) << r.out;
  EXPECT_TRUE(python_json(slurp(path("report.json")), check));

  // Labels that do not fit the network's 4 outputs, or the wrong count: one error line, no report.
  RawArray bad = y;
  const std::int64_t seven = 7;
  std::memcpy(bad.bytes.data(), &seven, 8);
  write_npy(path("bad.npy"), bad);
  expect_failure(common + " --y-train " + q(path("bad.npy")) + " -o " + q(path("r2.json")), 1);
  expect_failure(common + " --y-train " + q(path("yt.npy")) + " -o " + q(path("r2.json")), 1);
  expect_failure(common + " --y-train " + q(path("y.npy")) + " --params p.npz -o " + q(path("r2.json")), 2);
}

TEST_F(CliSpectrum, BadInputsFailCleanly) {
  write_npy(path("rect.npy"), Array<double>(Shape{3, 4}, std::vector<double>(12, 1.0)));
  Array<double> nan = write_kernel("nan.npy", 4, 9);
  nan[5] = std::nan("");
  write_npy(path("nan.npy"), nan);
  write_kernel("k4.npy", 4, 10);
  write_kernel("k5.npy", 5, 11);
  const std::string out = " -o " + q(path("e.npy"));
  expect_failure("spectrum --k " + q(path("rect.npy")) + out, 1);
  expect_failure("spectrum --k " + q(path("rect.npy")) + " --top 2" + out, 1);
  expect_failure("spectrum --k " + q(path("nan.npy")) + out, 1);
  expect_failure("spectrum --k " + q(path("nan.npy")) + " --top 1" + out, 1);
  expect_failure("spectrum --k " + q(path("missing.npy")) + out, 1);
  expect_failure("spectrum --k " + q(path("k4.npy")) + " --top 4" + out, 1);  // Lanczos needs K < N
  expect_failure("spectrum --k " + q(path("k4.npy")) + " --top 0" + out, 2);
  expect_failure("spectrum --k " + q(path("k4.npy")) + " --y " + q(path("k5.npy")) + out, 1);
  expect_failure("spectrum" + out, 2);
  expect_failure("compare --k " + q(path("k4.npy")) + " --ref " + q(path("k5.npy")), 1);
  expect_failure("compare --k " + q(path("k4.npy")) + " --ref " + q(path("nan.npy")), 1);
  expect_failure("compare --k " + q(path("k4.npy")), 2);
}

}  // namespace
}  // namespace ntk
