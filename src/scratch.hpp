// Scratch buffers that a callee overwrites completely: std::vector without the zero-fill, which
// for the cotangents of a backward pass is a memset of every activation. Builds with sanitizers
// (NTK_POISON_SCRATCH) fill them with NaN instead, so a callee that reads before writing shows up
// as NaN in the tests rather than as values that happen to be zero. Private to the library.
#pragma once
#include <limits>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace ntk::detail {

template <class T>
struct DefaultInitAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  DefaultInitAllocator() = default;
  template <class U>
  DefaultInitAllocator(const DefaultInitAllocator<U>&) noexcept {}
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    if constexpr (sizeof...(Args) == 0)
      ::new (static_cast<void*>(p)) U;  // default-initialization: no zero-fill for arithmetic types
    else
      ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

template <class T>
using Scratch = std::vector<T, DefaultInitAllocator<T>>;

// A scratch buffer of `size` elements for a callee to overwrite.
template <class T>
Scratch<T> scratch(std::size_t size) {
  Scratch<T> s(size);
#ifdef NTK_POISON_SCRATCH
  std::fill(s.begin(), s.end(), std::numeric_limits<T>::quiet_NaN());
#endif
  return s;
}

}  // namespace ntk::detail
