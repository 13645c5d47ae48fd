#include "lapack.hpp"

#include <cblas.h>

#include <algorithm>
#include <string>

#include "ntk/error.hpp"
#include "ntk/parallel.hpp"

namespace ntk::detail {

LapackThreads::LapackThreads() { openblas_set_num_threads(num_threads()); }
LapackThreads::~LapackThreads() { openblas_set_num_threads(1); }

namespace {

void syevd(const char* jobz, std::vector<double>& a, index_t n, std::vector<double>& w) {
  const int N = int(n);
  int info = 0, lwork = -1, liwork = -1, iwork_query = 0;
  double work_query = 0;
  w.assign(size_t(n), 0.0);
  dsyevd_(jobz, "L", &N, a.data(), &N, w.data(), &work_query, &lwork, &iwork_query, &liwork, &info);
  lwork = int(work_query), liwork = iwork_query;
  std::vector<double> work(size_t(std::max(lwork, 1)));
  std::vector<int> iwork(size_t(std::max(liwork, 1)));
  LapackThreads threads;
  dsyevd_(jobz, "L", &N, a.data(), &N, w.data(), work.data(), &lwork, iwork.data(), &liwork, &info);
  if (info != 0)
    throw NumericalError("the eigendecomposition of the kernel did not converge (LAPACK dsyevd info " +
                         std::to_string(info) + ")");
}

}  // namespace

void eigh(std::vector<double>& a, index_t n, std::vector<double>& w) { syevd("V", a, n, w); }

void eigvalsh(std::vector<double>& a, index_t n, std::vector<double>& w) { syevd("N", a, n, w); }

int cholesky_upper(double* a, index_t n) {
  const int N = int(n);
  int info = 0;
  LapackThreads threads;
  dpotrf_("L", &N, a, &N, &info);  // column-major lower = row-major upper
  return info;
}

}  // namespace ntk::detail
