// Thin, typed wrappers over CBLAS (row-major). Private to the library.
#pragma once
#include <cblas.h>

#include "ntk/array.hpp"

namespace ntk::detail {

// C (m x n) = alpha * op(A) (m x kk) * op(B) (kk x n) + beta * C, all row-major with leading dims.
inline void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t kk, float alpha, const float* a,
                 index_t lda, const float* b, index_t ldb, float beta, float* c, index_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(kk), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}
inline void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t kk, double alpha, const double* a,
                 index_t lda, const double* b, index_t ldb, double beta, double* c, index_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(kk), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

}  // namespace ntk::detail
