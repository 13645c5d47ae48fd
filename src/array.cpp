#include "ntk/array.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <limits>

namespace ntk {

index_t numel(const Shape& shape) {
  index_t n = 1;
  for (index_t d : shape) {
    if (d < 0) throw InvalidArgument("negative dimension in shape " + shape_string(shape));
    if (d != 0 && n > std::numeric_limits<index_t>::max() / d)
      throw InvalidArgument("shape " + shape_string(shape) + " has too many elements");
    n *= d;
  }
  return n;
}

std::string shape_string(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

std::string batch_shape_string(const Shape& per_example) {
  std::string s = "(N";
  for (index_t d : per_example) s += ", " + std::to_string(d);
  return s + ")";
}

Shape drop_first(const Shape& shape) {
  if (shape.empty()) throw InvalidArgument("expected an array with a leading batch axis, got a scalar");
  return Shape(shape.begin() + 1, shape.end());
}

template <class T>
index_t first_non_finite(const T* values, index_t count) {
  // Block by block: a branch-free test of the exponent bits (all ones: Inf or NaN) that the compiler
  // vectorizes, so that checking an input or a parameter vector costs about one read of it; the
  // exact index is searched only inside a block that has one.
  using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  constexpr Bits exponent = sizeof(T) == 4 ? Bits(0x7f800000u) : Bits(0x7ff0000000000000ull);
  constexpr index_t block = 1024;
  for (index_t b = 0; b < count; b += block) {
    const index_t e = std::min(count, b + block);
    Bits bad = 0;
    for (index_t i = b; i < e; ++i) bad |= Bits((std::bit_cast<Bits>(values[i]) & exponent) == exponent);
    if (bad)
      for (index_t i = b; i < e; ++i)
        if (!std::isfinite(values[i])) return i;
  }
  return -1;
}

template index_t first_non_finite<float>(const float*, index_t);
template index_t first_non_finite<double>(const double*, index_t);

}  // namespace ntk
