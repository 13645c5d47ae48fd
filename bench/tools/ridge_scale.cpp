// Exact kernel ridge at scale: how close the Cholesky factorization of an N × N float64 kernel comes
// to the machine's DGEMM peak, measured in the same run on the same threads.
//
//   ridge_scale [N=20000] [threads=all] [save=K.npy]
//
// The kernel is the infinite-width NTK of the README's FCN on the first N training images (scaled
// to [0, 1]); ridge 1e-4 relative, 10 one-hot outputs from the training labels. Prints the DGEMM
// peak (best of 3 square products of 4096 on OpenBLAS's threads, as the factorization runs), the
// kernel time, the factorization alone (dpotrf: N³/3 FLOPs), the whole kernel_ridge call (forming
// K + λI in float64, dpotrf, dpotrs for the 10 outputs), training accuracy as a sanity check, and
// peak RSS. With a third argument the kernel is also saved there (.npy) for the peers
// (bench/compare_ridge.sh).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "blas.hpp"
#include "lapack.hpp"
#include "ntk/infinite.hpp"
#include "ntk/io.hpp"
#include "ntk/jobs.hpp"
#include "ntk/parallel.hpp"
#include "ntk/solve.hpp"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double dgemm_peak_gflops(ntk::index_t n) {
  std::vector<double> a(size_t(n * n), 0.5), b(size_t(n * n), 0.25), c(size_t(n * n));
  double best = 0;
  ntk::detail::LapackThreads blas_threads;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    ntk::detail::gemm_serial(false, false, n, n, n, 1.0, a.data(), n, b.data(), n, 0.0, c.data(), n);
    best = std::max(best, 2.0 * double(n) * double(n) * double(n) / seconds_since(t0) / 1e9);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const ntk::index_t n = argc > 1 ? std::atol(argv[1]) : 20000;
  const int threads = argc > 2 ? std::atoi(argv[2]) : 0;
  const std::string dir = "/usr/share/datasets/fashion-mnist/";
  const std::string images = dir + "train-images-idx3-ubyte.gz";
  const std::string save = argc > 3 ? argv[3] : "";
  ntk::set_num_threads(threads);
  std::printf("threads %d, N %lld\n", ntk::num_threads(), static_cast<long long>(n));

  const double peak = dgemm_peak_gflops(4096);
  std::printf("DGEMM peak (4096^3, best of 3): %.1f GFLOP/s\n", peak);

  ntk::RawArray raw = ntk::load_input(images);
  const ntk::index_t available = raw.shape.at(0);
  if (n > available) {
    std::fprintf(stderr, "error: only %lld images in %s\n", static_cast<long long>(available), images.c_str());
    return 1;
  }
  ntk::Array<double> all = raw.as<double>();
  const ntk::index_t d = all.size() / available;
  ntk::Array<double> x(ntk::Shape{n, d}, std::vector<double>(all.data(), all.data() + n * d));
  ntk::RawArray labels_raw = ntk::load_input(dir + "train-labels-idx1-ubyte.gz");
  ntk::Array<double> labels = labels_raw.as<double>();

  const std::string fcn =
      "Dense(512, W_std=1.4142135623730951, b_std=0.05), Relu, Dense(512, W_std=1.4142135623730951, b_std=0.05), "
      "Relu, Dense(512, W_std=1.4142135623730951, b_std=0.05), Relu, Dense(1)";
  ntk::Network net(fcn, ntk::Shape{d});
  auto t0 = std::chrono::steady_clock::now();
  ntk::Array<double> k = ntk::infinite_kernel<double>(net, x, nullptr);
  std::printf("kernel (infinite NTK of the FCN, %lld x %lld float64): %.1f s\n", static_cast<long long>(n),
              static_cast<long long>(n), seconds_since(t0));

  if (!save.empty()) ntk::write_npy(save, k);

  // The factorization alone, on a copy of K + λI.
  double mean_diag = 0;
  for (ntk::index_t i = 0; i < n; ++i) mean_diag += k[i * n + i] / double(n);
  {
    std::vector<double> a(k.vector());
    for (ntk::index_t i = 0; i < n; ++i) a[size_t(i * n + i)] += 1e-4 * mean_diag;
    t0 = std::chrono::steady_clock::now();
    const int info = ntk::detail::cholesky_upper(a.data(), n);
    const double secs = seconds_since(t0), gflops = double(n) * double(n) * double(n) / 3.0 / secs / 1e9;
    std::printf("dpotrf: %.2f s, %.1f GFLOP/s = %.0f%% of the DGEMM peak (info %d)\n", secs, gflops,
                100.0 * gflops / peak, info);
  }

  ntk::Array<double> y(ntk::Shape{n, 10});
  for (ntk::index_t i = 0; i < n; ++i) y[i * 10 + ntk::index_t(labels[i])] = 1.0;
  t0 = std::chrono::steady_clock::now();
  ntk::RidgeOptions options;
  options.ridge = 1e-4;
  const ntk::RidgeFit fit = ntk::kernel_ridge(k, y, options);
  const double solve_secs = seconds_since(t0);
  const ntk::Array<double> pred = ntk::kernel_ridge_predict(k, fit.alpha);
  ntk::index_t correct = 0;
  for (ntk::index_t i = 0; i < n; ++i) {
    const double* row = pred.data() + i * 10;
    correct += ntk::index_t(std::max_element(row, row + 10) - row) == ntk::index_t(labels[i]);
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf("kernel_ridge (10 outputs, %s): %.2f s; train accuracy %.4f; peak RSS %.2f GB\n",
              fit.cholesky ? "Cholesky" : "eigh fallback", solve_secs, double(correct) / double(n),
              double(usage.ru_maxrss) / 1e6);
  return 0;
}
