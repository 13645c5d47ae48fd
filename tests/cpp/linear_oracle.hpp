// A linear solver for the tests of the kernel methods that shares nothing with the library's LAPACK,
// Cholesky or conjugate-gradient paths: Gaussian elimination with partial pivoting.
#pragma once
#include <cmath>
#include <utility>
#include <vector>

#include "ntk/array.hpp"

namespace ntk::test {

// Solves A x = b (A n × n, b n × o, row-major).
inline std::vector<double> gauss_solve(std::vector<double> a, std::vector<double> b, index_t n, index_t o) {
  for (index_t c = 0; c < n; ++c) {
    index_t p = c;
    for (index_t r = c + 1; r < n; ++r)
      if (std::abs(a[size_t(r * n + c)]) > std::abs(a[size_t(p * n + c)])) p = r;
    for (index_t j = 0; j < n; ++j) std::swap(a[size_t(c * n + j)], a[size_t(p * n + j)]);
    for (index_t j = 0; j < o; ++j) std::swap(b[size_t(c * o + j)], b[size_t(p * o + j)]);
    for (index_t r = c + 1; r < n; ++r) {
      const double f = a[size_t(r * n + c)] / a[size_t(c * n + c)];
      for (index_t j = c; j < n; ++j) a[size_t(r * n + j)] -= f * a[size_t(c * n + j)];
      for (index_t j = 0; j < o; ++j) b[size_t(r * o + j)] -= f * b[size_t(c * o + j)];
    }
  }
  for (index_t c = n - 1; c >= 0; --c)
    for (index_t j = 0; j < o; ++j) {
      double s = b[size_t(c * o + j)];
      for (index_t k = c + 1; k < n; ++k) s -= a[size_t(c * n + k)] * b[size_t(k * o + j)];
      b[size_t(c * o + j)] = s / a[size_t(c * n + c)];
    }
  return b;
}

}  // namespace ntk::test
