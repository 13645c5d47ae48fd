// A dense, C-ordered, owning n-dimensional array. Deliberately small: ntkit's hot paths work on
// raw pointers handed to BLAS; this type carries shape and storage across API boundaries.
#pragma once
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "ntk/error.hpp"

namespace ntk {

using index_t = std::int64_t;
using Shape = std::vector<index_t>;

// Number of elements of a shape (1 for a scalar shape {}). Throws on negative dimensions or overflow.
index_t numel(const Shape& shape);
// "(2, 28, 28, 1)"
std::string shape_string(const Shape& shape);
// "(N, 28, 28, 1)" for a per-example shape (28, 28, 1).
std::string batch_shape_string(const Shape& per_example);
// Shape without its leading (batch) axis; throws if shape is empty.
Shape drop_first(const Shape& shape);

// An array either owns its values (a std::vector) or borrows a read-only buffer it does not own,
// e.g. a NumPy array's memory handed in by the Python bindings, so that large inputs are not copied.
// A borrowed array reads the buffer in place through every const accessor; the first mutable access
// copies it into owned storage (copy on write), so the lender's buffer is never written. The buffer
// must outlive the array and every copy of it (copies of a borrowed array borrow the same buffer).
template <class T>
class Array {
 public:
  Array() = default;
  explicit Array(Shape shape) : shape_(std::move(shape)), data_(static_cast<size_t>(numel(shape_))) {}
  Array(Shape shape, std::vector<T> data) : shape_(std::move(shape)), data_(std::move(data)) {
    if (static_cast<index_t>(data_.size()) != numel(shape_))
      throw InvalidArgument("array of shape " + shape_string(shape_) + " given " +
                            std::to_string(data_.size()) + " values");
  }
  // Reads numel(shape) values at `values` without copying them (see above).
  static Array borrow(Shape shape, const T* values) {
    Array a;
    a.borrowed_size_ = numel(shape);
    a.shape_ = std::move(shape);
    a.borrowed_ = values;
    return a;
  }
  bool borrowed() const { return borrowed_ != nullptr; }

  const Shape& shape() const { return shape_; }
  index_t dim(size_t axis) const { return shape_.at(axis); }
  size_t ndim() const { return shape_.size(); }
  index_t size() const { return borrowed_ ? borrowed_size_ : static_cast<index_t>(data_.size()); }
  bool empty() const { return size() == 0; }

  T* data() { own(); return data_.data(); }
  const T* data() const { return borrowed_ ? borrowed_ : data_.data(); }
  T& operator[](index_t i) { own(); return data_[static_cast<size_t>(i)]; }
  const T& operator[](index_t i) const { return data()[i]; }
  std::span<T> span() { own(); return data_; }
  std::span<const T> span() const { return {data(), static_cast<size_t>(size())}; }
  std::vector<T>& vector() { own(); return data_; }
  const std::vector<T>& vector() const {
    if (borrowed_) throw std::logic_error("Array::vector() on a borrowed array (use span())");
    return data_;
  }

  // Same data, new shape with the same number of elements.
  void reshape(Shape shape) {
    if (numel(shape) != size())
      throw InvalidArgument("cannot reshape " + shape_string(shape_) + " to " + shape_string(shape));
    shape_ = std::move(shape);
  }

 private:
  // Copy on write: a borrowed buffer becomes owned storage before anything may write to it.
  void own() {
    if (borrowed_) [[unlikely]] {
      data_.assign(borrowed_, borrowed_ + borrowed_size_);
      borrowed_ = nullptr;
      borrowed_size_ = 0;
    }
  }

  Shape shape_;
  std::vector<T> data_;
  const T* borrowed_ = nullptr;
  index_t borrowed_size_ = 0;
};

// Element-type conversion (float <-> double).
template <class To, class From>
Array<To> cast(const Array<From>& a) {
  Array<To> out(a.shape());
  for (index_t i = 0; i < a.size(); ++i) out[i] = static_cast<To>(a[i]);
  return out;
}

// Index of the first NaN or Inf, or -1 if every value is finite.
template <class T>
index_t first_non_finite(const T* values, index_t count);
template <class T>
index_t first_non_finite(const Array<T>& a) { return first_non_finite(a.data(), a.size()); }

}  // namespace ntk
