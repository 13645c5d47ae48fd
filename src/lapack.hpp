// LAPACK (from OpenBLAS) for the solvers: declarations of the Fortran routines used, and the
// helpers they share. Private to the library.
#pragma once
#include <vector>

#include "ntk/array.hpp"

extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void dpotrs_(const char* uplo, const int* n, const int* nrhs, const double* a, const int* lda, double* b,
             const int* ldb, int* info);
void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w, double* work,
             const int* lwork, int* iwork, const int* liwork, int* info);
}

namespace ntk::detail {

// OpenBLAS runs single-threaded everywhere in ntkit (parallel.cpp), because ntkit splits its own
// GEMMs over its threads. A LAPACK factorization cannot be split that way, so it runs on OpenBLAS's
// threads inside this scope: num_threads() of them, back to one when the scope ends.
class LapackThreads {
 public:
  LapackThreads();
  ~LapackThreads();
  LapackThreads(const LapackThreads&) = delete;
  LapackThreads& operator=(const LapackThreads&) = delete;
};

// Symmetric eigendecomposition (dsyevd) of a (n × n, symmetric, row-major), overwritten by the
// eigenvectors: row i of the result is eigenvector i; w gets the eigenvalues, ascending. Throws
// NumericalError if LAPACK does not converge.
void eigh(std::vector<double>& a, index_t n, std::vector<double>& w);

// Eigenvalues only (dsyevd with jobz = 'N': no eigenvectors, a fraction of eigh's time and no
// second n × n workspace), ascending in w; a (n × n, symmetric) is destroyed. Throws
// NumericalError if LAPACK does not converge.
void eigvalsh(std::vector<double>& a, index_t n, std::vector<double>& w);

// In-place Cholesky factorization (dpotrf) of a symmetric a (n × n, row-major): on success a's
// upper triangle holds U with a = Uᵀ U (row-major terms); the strict lower triangle is untouched.
// Returns LAPACK's info: 0 on success, k > 0 when the leading minor of order k is not positive.
int cholesky_upper(double* a, index_t n);

}  // namespace ntk::detail
