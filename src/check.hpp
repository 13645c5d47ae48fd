// Internal invariants. A violated one is a bug in ntkit, never a user's mistake, so it is not one of
// the ntk::Error types (which callers map to messages about their input): NTK_ASSERT throws
// std::logic_error naming the condition and the place, which the CLI reports as an internal error
// and Python as a RuntimeError, instead of aborting a long-lived process. Checked in every build.
#pragma once
#include <string>

namespace ntk::detail {

[[noreturn]] void assertion_failed(const char* condition, const std::string& what, const char* file, int line);

}  // namespace ntk::detail

#define NTK_ASSERT(condition, what) \
  ((condition) ? void(0) : ::ntk::detail::assertion_failed(#condition, (what), __FILE__, __LINE__))
// A place that must never be reached.
#define NTK_UNREACHABLE(what) ::ntk::detail::assertion_failed("unreachable", (what), __FILE__, __LINE__)
