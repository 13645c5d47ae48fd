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

// ‖a − b‖_F / ‖b‖_F over two arrays of the same size (b the reference).
template <class T>
double rel_frob(const Array<T>& a, const Array<T>& b) {
  double num2 = 0, den2 = 0;
  for (index_t i = 0; i < b.size(); ++i) {
    const double d = double(a[i]) - double(b[i]);
    num2 += d * d;
    den2 += double(b[i]) * double(b[i]);
  }
  return std::sqrt(num2 / den2);
}

// A batch (n, example_shape...) of standard normal entries.
template <class T>
Array<T> random_batch(index_t n, const Shape& example_shape, std::uint64_t seed, double scale = 1.0) {
  Shape s{n};
  s.insert(s.end(), example_shape.begin(), example_shape.end());
  return Array<T>(s, random_vector<T>(n * numel(example_shape), seed, scale));
}

}  // namespace ntk::test
