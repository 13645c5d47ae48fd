// Shared helpers for the C++ tests: deterministic random arrays and norms.
#pragma once
#include <cmath>
#include <vector>

#include "ntk/array.hpp"
#include "ntk/rng.hpp"

namespace ntk::test {

template <class T>
std::vector<T> random_vector(index_t count, std::uint64_t seed, double scale = 1.0) {
  std::vector<T> v(static_cast<size_t>(count));
  for (index_t i = 0; i < count; ++i) v[static_cast<size_t>(i)] = static_cast<T>(scale * normal(seed, 7, static_cast<std::uint64_t>(i)));
  return v;
}

template <class T>
double dot(const std::vector<T>& a, const std::vector<T>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * double(b[i]);
  return s;
}

template <class A, class B>
double max_abs_diff(const std::vector<A>& a, const std::vector<B>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - double(b[i])));
  return m;
}

template <class T>
double max_abs(const std::vector<T>& a) {
  double m = 0;
  for (const T& v : a) m = std::max(m, std::abs(double(v)));
  return m;
}

}  // namespace ntk::test
