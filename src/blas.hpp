// Thin, typed wrappers over CBLAS (row-major). Private to the library.
#pragma once
#include <cblas.h>

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
// OpenBLAS runs single-threaded (see parallel.cpp); large products are split here into row (or
// column) blocks of C run on ntkit's threads. Each element of C is still one dot product over the
// full kk, so the split does not change which values are summed.
template <class T>
void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t kk, T alpha, const T* a, index_t lda, const T* b,
          index_t ldb, T beta, T* c, index_t ldc) {
  const int threads = num_threads();
  const double work = double(m) * double(n) * double(kk);
  if (threads <= 1 || work < 4e6) {
    gemm_serial(trans_a, trans_b, m, n, kk, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  if (m >= n || m >= 64 * threads) {
    parallel_for(m, [&](index_t begin, index_t end) {
      const T* a_rows = trans_a ? a + begin : a + begin * lda;
      gemm_serial(trans_a, trans_b, end - begin, n, kk, alpha, a_rows, lda, b, ldb, beta, c + begin * ldc, ldc);
    });
  } else {
    parallel_for(n, [&](index_t begin, index_t end) {
      const T* b_cols = trans_b ? b + begin * ldb : b + begin;
      gemm_serial(trans_a, trans_b, m, end - begin, kk, alpha, a, lda, b_cols, ldb, beta, c + begin, ldc);
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
