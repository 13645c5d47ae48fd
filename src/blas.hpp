// Thin, typed wrappers over CBLAS (row-major). Private to the library.
#pragma once
#include <cblas.h>

#include <algorithm>
#include <type_traits>

#include "ntk/array.hpp"
#include "ntk/parallel.hpp"

namespace ntk::detail {

template <class T>
void gemm_serial(bool trans_a, bool trans_b, index_t m, index_t n, index_t kk, T alpha, const T* a, index_t lda,
                 const T* b, index_t ldb, T beta, T* c, index_t ldc) {
  if (m == 0 || n == 0) return;
  const auto ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, ta, tb, blasint(m), blasint(n), blasint(kk), alpha, a, blasint(lda), b, blasint(ldb),
                beta, c, blasint(ldc));
  else
    cblas_dgemm(CblasRowMajor, ta, tb, blasint(m), blasint(n), blasint(kk), alpha, a, blasint(lda), b, blasint(ldb),
                beta, c, blasint(ldc));
}

// C (m x n) = alpha * op(A) (m x kk) * op(B) (kk x n) + beta * C, all row-major with leading dims.
// OpenBLAS runs single-threaded (see parallel.cpp); large products are split here into blocks of
// kGemmBlock rows (or columns) of C run on ntkit's threads. The blocks do not depend on the number
// of threads, so neither do the results: OpenBLAS picks its kernels (and their order of summation)
// by the shapes it is given, and a split by thread count gave other bits on 1 and 2 threads.
inline constexpr index_t kGemmBlock = 256;
template <class T>
void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t kk, T alpha, const T* a, index_t lda, const T* b,
          index_t ldb, T beta, T* c, index_t ldc) {
  const double work = double(m) * double(n) * double(kk);
  if (work < 4e6 || std::max(m, n) <= kGemmBlock) {
    gemm_serial(trans_a, trans_b, m, n, kk, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  if (m >= n) {
    parallel_for((m + kGemmBlock - 1) / kGemmBlock, [&](index_t b0, index_t b1) {
      for (index_t blk = b0; blk < b1; ++blk) {
        const index_t begin = blk * kGemmBlock, rows = std::min(kGemmBlock, m - begin);
        const T* a_rows = trans_a ? a + begin : a + begin * lda;
        gemm_serial(trans_a, trans_b, rows, n, kk, alpha, a_rows, lda, b, ldb, beta, c + begin * ldc, ldc);
      }
    });
  } else {
    parallel_for((n + kGemmBlock - 1) / kGemmBlock, [&](index_t b0, index_t b1) {
      for (index_t blk = b0; blk < b1; ++blk) {
        const index_t begin = blk * kGemmBlock, cols = std::min(kGemmBlock, n - begin);
        const T* b_cols = trans_b ? b + begin * ldb : b + begin;
        gemm_serial(trans_a, trans_b, m, cols, kk, alpha, a, lda, b_cols, ldb, beta, c + begin, ldc);
      }
    });
  }
}

// Solves op(U) X = B in place: U (n × n) upper triangular, row-major; B (n × nrhs) row-major.
// OpenBLAS runs it on one thread; the solvers call it on M × O right-hand sides, a small part of
// their work.
inline void trsm_upper(bool trans, index_t n, index_t nrhs, const double* u, double* b) {
  if (n == 0 || nrhs == 0) return;
  cblas_dtrsm(CblasRowMajor, CblasLeft, CblasUpper, trans ? CblasTrans : CblasNoTrans, CblasNonUnit, blasint(n),
              blasint(nrhs), 1.0, u, blasint(n), b, blasint(nrhs));
}

}  // namespace ntk::detail
