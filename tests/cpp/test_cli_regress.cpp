// ntk regress as a separate process: the one-line error contract on inputs that do not fit
// together (exit status, no output file), targets as floats, integer labels and IDX labels,
// predictions that equal the library called directly, JSON output, the GP covariance.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "cli_fixture.hpp"
#include "harness.hpp"
#include "ntk/array.hpp"
#include "ntk/dynamics.hpp"
#include "ntk/io.hpp"
#include "ntk/regress.hpp"
#include "ntk/solve.hpp"

namespace ntk {
namespace {

class CliRegress : public Cli {
 protected:
  static constexpr index_t n = 12, m = 7, o = 3, d = 20;

  void SetUp() override {
    Cli::SetUp();
    // A Gram matrix of n + m random vectors (positive definite: d > n + m), split train / test.
    const std::vector<double> x = test::random_vector<double>((n + m) * d, 3);
    auto dot = [&](index_t i, index_t j) {
      double s = 0;
      for (index_t c = 0; c < d; ++c) s += x[size_t(i * d + c)] * x[size_t(j * d + c)];
      return s / double(d);
    };
    k_ = Array<double>(Shape{n, n});
    kt_ = Array<double>(Shape{m, n});
    ktt_ = Array<double>(Shape{m, m});
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j) k_[i * n + j] = dot(i, j);
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j) kt_[i * n + j] = dot(n + i, j);
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < m; ++j) ktt_[i * m + j] = dot(n + i, n + j);
    for (index_t i = 0; i < n; ++i) labels_.push_back((i * 7 + 1) % o);
    for (index_t i = 0; i < m; ++i) test_labels_.push_back((i * 5 + 2) % o);
    write_npy(path("K.npy"), k_);
    write_npy(path("KT.npy"), kt_);
    write_npy(path("KTT.npy"), ktt_);
    write_npy(path("Y.npy"), one_hot(labels_, o));
    write_npy(path("YT.npy"), one_hot(test_labels_, o));
    write_labels("L.npy", labels_);
    write_labels("LT.npy", test_labels_);
    // IDX labels as MNIST ships them: magic 0x00000801 (unsigned bytes, one dimension), count, bytes.
    std::string idx{0, 0, 8, 1, 0, 0, 0, char(n)};
    for (std::int64_t l : labels_) idx += char(l);
    std::ofstream(path("labels-idx1-ubyte"), std::ios::binary) << idx;
  }

  void write_labels(const std::string& name, const std::vector<std::int64_t>& labels) const {
    RawArray r{DType::int64, Shape{index_t(labels.size())}, {}};
    const auto* b = reinterpret_cast<const std::byte*>(labels.data());
    r.bytes.assign(b, b + labels.size() * sizeof(std::int64_t));
    write_npy(path(name), r);
  }

  static double max_diff(const Array<double>& a, const Array<double>& b) {
    EXPECT_EQ(a.shape(), b.shape());
    double d = 0;
    for (index_t i = 0; i < std::min(a.size(), b.size()); ++i) d = std::max(d, std::abs(a[i] - b[i]));
    return d;
  }

  std::string base() const { return "regress --k-train " + q(path("K.npy")) + " --k-test " + q(path("KT.npy")); }

  Array<double> k_, kt_, ktt_;
  std::vector<std::int64_t> labels_, test_labels_;
};

TEST_F(CliRegress, BadInputIsOneErrorLineAndNoOutput) {
  const std::string out = path("P.npy");
  const std::string o_flag = " -o " + q(out);
  // Label count != kernel rows.
  write_labels("short.npy", {0, 1, 2});
  Result r = expect_failure(base() + " --y-train " + q(path("short.npy")) + o_flag, 1, out);
  EXPECT_NE(r.err.find("has 3 targets but the train kernel"), std::string::npos) << r.err;
  // A train kernel that is not square.
  const std::string train_flag = " --train-predictions " + q(out);  // for the cases without a test kernel
  r = expect_failure("regress --k-train " + q(path("KT.npy")) + " --y-train " + q(path("Y.npy")) + train_flag, 1, out);
  EXPECT_NE(r.err.find("must be square"), std::string::npos) << r.err;
  // A test kernel with the wrong number of columns.
  r = expect_failure("regress --k-train " + q(path("K.npy")) + " --k-test " + q(path("KTT.npy")) + " --y-train " +
                         q(path("Y.npy")) + o_flag,
                     1, out);
  EXPECT_NE(r.err.find("columns, one per training example"), std::string::npos) << r.err;
  // NaN in a kernel.
  Array<double> bad = k_;
  bad[3] = std::numeric_limits<double>::quiet_NaN();
  write_npy(path("Knan.npy"), bad);
  r = expect_failure("regress --k-train " + q(path("Knan.npy")) + " --y-train " + q(path("Y.npy")) + train_flag, 1, out);
  EXPECT_NE(r.err.find("non-finite"), std::string::npos) << r.err;
  // Negative or non-finite ridge or time: usage errors.
  for (const char* flag : {" --ridge -1", " --ridge nan", " --ridge inf", " --time -2", " --time nan", " --time 1,,2",
                           " --learning-rate 0"})
    expect_failure(base() + " --y-train " + q(path("Y.npy")) + flag + o_flag, 2, out);
  // Test targets of the wrong length.
  r = expect_failure(base() + " --y-train " + q(path("Y.npy")) + " --y-test " + q(path("Y.npy")) + o_flag, 1, out);
  EXPECT_NE(r.err.find("one per test example"), std::string::npos) << r.err;
  // Negative labels, labels beyond --classes, labels mixed with float targets.
  write_labels("neg.npy", std::vector<std::int64_t>(size_t(n), -1));
  r = expect_failure(base() + " --y-train " + q(path("neg.npy")) + o_flag, 1, out);
  EXPECT_NE(r.err.find("integers >= 0"), std::string::npos) << r.err;
  // Non-integer labels: an IDX file is labels whatever its element type (here float32, big-endian).
  std::string idx{0, 0, 0x0D, 1, 0, 0, 0, char(n)};
  for (index_t i = 0; i < n; ++i) idx += i == 4 ? std::string{0x3F, char(0xC0), 0, 0} : std::string{0, 0, 0, 0};  // 1.5, 0
  std::ofstream(path("float-labels-idx1"), std::ios::binary) << idx;
  r = expect_failure(base() + " --y-train " + q(path("float-labels-idx1")) + o_flag, 1, out);
  EXPECT_NE(r.err.find("label 1.5"), std::string::npos) << r.err;
  expect_failure(base() + " --y-train " + q(path("L.npy")) + " --classes 2" + o_flag, 1, out);
  expect_failure(base() + " --y-train " + q(path("L.npy")) + " --y-test " + q(path("YT.npy")) + o_flag, 1, out);
  // The covariance without its test-test kernel; test-test kernels without --covariance.
  expect_failure(base() + " --y-train " + q(path("Y.npy")) + " --covariance " + q(path("C.npy")) + o_flag, 2, out);
  expect_failure(base() + " --y-train " + q(path("Y.npy")) + " --k-test-test " + q(path("KTT.npy")) + o_flag, 2, out);
  // Predictions without a test kernel.
  expect_failure("regress --k-train " + q(path("K.npy")) + " --y-train " + q(path("Y.npy")) + o_flag, 1, out);
}

TEST_F(CliRegress, LabelsFromIdxIntAndOneHotFloatsAgreeWithTheLibrary) {
  const std::string idx = path("labels-idx1-ubyte");
  for (const std::string& y : {path("Y.npy"), path("L.npy"), idx}) {
    const std::string out = path("P.npy");
    Result r = run(base() + " --y-train " + q(y) + " --y-test " + q(path(y == path("Y.npy") ? "YT.npy" : "LT.npy")) +
                   " --ridge 0.01 -o " + q(out));
    ASSERT_EQ(r.status, 0) << y << ": " << r.err;
    EXPECT_TRUE(r.err.empty()) << r.err;
    RidgeOptions ro;
    ro.ridge = 0.01;
    const Array<double> want = kernel_ridge_predict(kt_, kernel_ridge(k_, one_hot(labels_, o), ro).alpha);
    EXPECT_LE(max_diff(read_npy(out).as<double>(), want), 1e-12) << y;
    // Accuracy is reported for labels only; the MSE always.
    EXPECT_NE(r.out.find("test MSE"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("accuracy") != std::string::npos, y != path("Y.npy")) << r.out;
    std::filesystem::remove(out);
  }
}

TEST_F(CliRegress, SeveralTimesJsonAndTrainPredictions) {
  const std::string out = path("P.npy"), train = path("PT.npy"), json = path("out.json");
  Result r = run(base() + " --y-train " + q(path("L.npy")) + " --y-test " + q(path("LT.npy")) +
                 " --time 0,2.5,inf --learning-rate 3 --json -o " + q(out) + " --train-predictions " + q(train));
  ASSERT_EQ(r.status, 0) << r.err;
  const Array<double> p = read_npy(out).as<double>(), pt = read_npy(train).as<double>();
  EXPECT_EQ(p.shape(), (Shape{3, m, o}));
  EXPECT_EQ(pt.shape(), (Shape{3, n, o}));
  GdMseOptions g;
  g.learning_rate = 3;
  const GdMsePredictions want = gradient_descent_mse(k_, one_hot(labels_, o), {0, 2.5, kInfiniteTime}, g, &kt_);
  EXPECT_LE(max_diff(p, want.test), 1e-12);
  // Train predictions are the in-sample outputs: the test formula with the train kernel.
  const GdMsePredictions fit = gradient_descent_mse(k_, one_hot(labels_, o), {0, 2.5, kInfiniteTime}, g, &k_);
  EXPECT_LE(max_diff(pt, fit.test), 1e-12);
  std::ofstream(json) << r.out;
  const std::string check =
      "/usr/bin/python3 -c \"import json,sys; d=json.load(open(sys.argv[1])); r=d['results']; "
      "assert len(r)==3 and r[2]['time']=='inf' and d['classes']==3 and 'test_accuracy' in r[0], d\" " + q(json);
  EXPECT_EQ(std::system(check.c_str()), 0) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
}

TEST_F(CliRegress, RidgeAutoChoosesOnTheValidationSplit) {
  Result r = run(base() + " --y-train " + q(path("Y.npy")) + " --ridge auto --validation 3 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const RidgeSelection s = select_ridge(k_, one_hot(labels_, o), 3, default_ridge_grid());
  char want[64];
  std::snprintf(want, sizeof want, "\"ridge\": %.17g,", s.best_ridge);
  EXPECT_NE(r.out.find(want), std::string::npos) << want << "\n" << r.out;
  EXPECT_NE(r.out.find("\"validation\": 3"), std::string::npos) << r.out;
}

TEST_F(CliRegress, NotPositiveDefiniteWarnsAndStaysFinite) {
  Array<double> k(Shape{n, n});
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) k[i * n + j] = std::cos(double(i + 2 * j)) + std::cos(double(j + 2 * i));
  write_npy(path("Kbad.npy"), k);
  const std::string out = path("P.npy");
  Result r = run("regress --k-train " + q(path("Kbad.npy")) + " --k-test " + q(path("KT.npy")) + " --y-train " +
                 q(path("Y.npy")) + " -o " + q(out));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.err.starts_with("warning: ")) << r.err;
  EXPECT_NE(r.out.find("eigh fallback"), std::string::npos) << r.out;
  EXPECT_EQ(first_non_finite(read_npy(out).as<double>()), -1);
}

TEST_F(CliRegress, GpCovarianceMatchesTheLibrary) {
  const std::string out = path("P.npy"), cov = path("C.npy");
  Result r = run(base() + " --y-train " + q(path("Y.npy")) + " --k-test-test " + q(path("KTT.npy")) + " --ridge 1e-3" +
                 " --covariance " + q(cov) + " -o " + q(out));
  ASSERT_EQ(r.status, 0) << r.err;
  PredictOptions po;
  po.diag_reg = 1e-3;
  const GpPosterior want =
      gp_inference(GpGet::nngp, one_hot(labels_, o), GpKernels<double>{&k_, &kt_, &ktt_}, {}, po);
  EXPECT_LE(max_diff(read_npy(out).as<double>(), want.mean), 1e-12);
  EXPECT_LE(max_diff(read_npy(cov).as<double>(), want.covariance), 1e-12);
  // The NTK posterior: here the NTK is K and the NNGP K / 2 (the formula holds for any PSD pair).
  Array<double> k2 = k_, kt2 = kt_, ktt2 = ktt_;
  for (index_t e = 0; e < k2.size(); ++e) k2[e] *= 0.5;
  for (index_t e = 0; e < kt2.size(); ++e) kt2[e] *= 0.5;
  for (index_t e = 0; e < ktt2.size(); ++e) ktt2[e] *= 0.5;
  write_npy(path("N.npy"), k2);
  write_npy(path("NT.npy"), kt2);
  write_npy(path("NTT.npy"), ktt2);
  std::filesystem::remove(cov);
  r = run(base() + " --y-train " + q(path("Y.npy")) + " --nngp-train " + q(path("N.npy")) + " --nngp-test " +
          q(path("NT.npy")) + " --nngp-test-test " + q(path("NTT.npy")) + " --covariance " + q(cov));
  ASSERT_EQ(r.status, 0) << r.err;
  const GpPosterior ntk = gp_inference(GpGet::ntk, one_hot(labels_, o), GpKernels<double>{&k2, &kt2, &ktt2},
                                       GpKernels<double>{&k_, &kt_, nullptr}, {});
  EXPECT_LE(max_diff(read_npy(cov).as<double>(), ntk.covariance), 1e-12);
}

}  // namespace
}  // namespace ntk

namespace ntk {
namespace {

// The solvers beyond the exact kernel file, through the CLI: Nyström with every example a center is
// exact kernel ridge; ridge on features predicts what kernel ridge on their inner products does (the
// kernel files written here by a plain loop); a network's kernel computed block by block equals the
// same kernel computed by `ntk kernel` and read from files.
TEST_F(CliRegress, NystromFeaturesAndNetworkKernelsAgreeWithTheExactSolve) {
  const std::string y = " --y-train " + q(path("L.npy")) + " --y-test " + q(path("LT.npy")) + " --ridge 1e-2";
  auto predictions = [&](const std::string& args, const std::string& name) {
    const Result r = run(args + y + " -q -o " + q(path(name)));
    EXPECT_EQ(r.status, 0) << r.err;
    return read_npy(path(name)).as<double>();
  };
  const Array<double> exact = predictions(base(), "exact.npy");
  EXPECT_LT(max_diff(predictions(base() + " --centers " + std::to_string(n), "nys.npy"), exact), 1e-6);
  EXPECT_LT(max_diff(predictions(base() + " --centers 1000 --center-seed 5", "nys_all.npy"), exact), 1e-6);
  // Fewer centers: a different, still finite, model.
  const Array<double> few = predictions(base() + " --centers 4", "nys4.npy");
  EXPECT_GT(max_diff(few, exact), 1e-6);

  // Features F (n + m, f) and the kernel of their inner products.
  const index_t f = 5;
  const std::vector<double> feats = test::random_vector<double>((n + m) * f, 11);
  Array<double> ftr(Shape{n, f}, std::vector<double>(feats.begin(), feats.begin() + n * f));
  Array<double> fte(Shape{m, f}, std::vector<double>(feats.begin() + n * f, feats.end()));
  Array<double> kf(Shape{n, n}), kft(Shape{m, n});
  for (index_t i = 0; i < n + m; ++i)
    for (index_t j = 0; j < n; ++j) {
      double s = 0;
      for (index_t c = 0; c < f; ++c) s += feats[size_t(i * f + c)] * feats[size_t(j * f + c)];
      (i < n ? kf[i * n + j] : kft[(i - n) * n + j]) = s;
    }
  write_npy(path("F.npy"), ftr);
  write_npy(path("FT.npy"), fte);
  write_npy(path("KF.npy"), kf);
  write_npy(path("KFT.npy"), kft);
  const Array<double> by_features =
      predictions("regress --f-train " + q(path("F.npy")) + " --f-test " + q(path("FT.npy")), "pf.npy");
  const Array<double> by_kernel =
      predictions("regress --k-train " + q(path("KF.npy")) + " --k-test " + q(path("KFT.npy")), "pk.npy");
  EXPECT_LT(max_diff(by_features, by_kernel), 1e-8);

  // A network's infinite-width kernel, from the inputs or from `ntk kernel`'s files.
  const std::string spec = "Dense(16, W_std=1.4, b_std=0.1), Relu, Dense(1)";
  Array<double> x(Shape{n, 4}, test::random_vector<double>(n * 4, 21));
  Array<double> xt(Shape{m, 4}, test::random_vector<double>(m * 4, 22));
  write_npy(path("X.npy"), x);
  write_npy(path("XT.npy"), xt);
  ASSERT_EQ(run("kernel --net " + q(spec) + " --x1 " + q(path("X.npy")) + " -q -o " + q(path("KN.npy"))).status, 0);
  ASSERT_EQ(run("kernel --net " + q(spec) + " --x1 " + q(path("XT.npy")) + " --x2 " + q(path("X.npy")) + " -q -o " +
                q(path("KNT.npy")))
                .status,
            0);
  const std::string net = "regress --net " + q(spec) + " --x-train " + q(path("X.npy")) + " --x-test " + q(path("XT.npy"));
  const Array<double> from_files =
      predictions("regress --k-train " + q(path("KN.npy")) + " --k-test " + q(path("KNT.npy")), "pkn.npy");
  EXPECT_LT(max_diff(predictions(net, "pn.npy"), from_files), 1e-12);
  EXPECT_LT(max_diff(predictions(net + " --centers " + std::to_string(n), "pnn.npy"), from_files), 1e-6);
  // The empirical kernel in pntk mode, exactly and with all examples as centers.
  const Array<double> pntk = predictions(net + " --mode pntk --seed 3", "pe.npy");
  EXPECT_LT(max_diff(predictions(net + " --mode pntk --seed 3 --centers " + std::to_string(n), "pen.npy"), pntk), 1e-6);
  EXPECT_GT(max_diff(pntk, from_files), 1e-6);  // a finite network is not its infinite-width limit
}

TEST_F(CliRegress, SolverChoicesThatDoNotFitAreRefused) {
  const std::string out = path("P.npy"), o_flag = " -o " + q(out), y = " --y-train " + q(path("L.npy"));
  write_npy(path("F.npy"), Array<double>(Shape{n, 3}, test::random_vector<double>(n * 3, 1)));
  write_npy(path("FT2.npy"), Array<double>(Shape{m, 2}, test::random_vector<double>(m * 2, 2)));
  // Features of different widths.
  Result r = expect_failure("regress --f-train " + q(path("F.npy")) + " --f-test " + q(path("FT2.npy")) + y + o_flag, 1, out);
  EXPECT_NE(r.err.find("features per example"), std::string::npos) << r.err;
  // Two sources at once; inputs without a network.
  expect_failure(base() + " --f-train " + q(path("F.npy")) + y + o_flag, 2, out);
  expect_failure(base() + " --x-train " + q(path("F.npy")) + y + o_flag, 2, out);
  // Nyström gives the converged solution at a fixed ridge only; features the converged solution, with
  // a fixed ridge or one chosen on the last training rows (--ridge auto, as for kernels).
  for (const char* flag : {" --centers 3 --time 1", " --centers 3 --ridge auto"}) {
    r = expect_failure(base() + y + flag + o_flag, 1, out);
    EXPECT_NE(r.err.find("Nyström"), std::string::npos) << r.err;
  }
  r = expect_failure("regress --f-train " + q(path("F.npy")) + y + " --ridge auto --time 1 --train-predictions " + q(out), 1, out);
  EXPECT_NE(r.err.find("features"), std::string::npos) << r.err;
  const Result chosen = run("regress --f-train " + q(path("F.npy")) + y + " --ridge auto --json");
  ASSERT_EQ(chosen.status, 0) << chosen.err;
  EXPECT_NE(chosen.out.find("\"ridge_selection\""), std::string::npos) << chosen.out;
  // An exact solve beyond the budget names Nyström's knob.
  r = expect_failure(base() + y + " --max-memory 1000" + o_flag, 1, out);
  EXPECT_NE(r.err.find("--centers"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace ntk
