// libFuzzer target: parse_npz on arbitrary bytes must either return consistent arrays or throw
// ntk::Error; anything else (crash, sanitizer report, leak, other exception, hang) is a bug.
#include <cstddef>
#include <cstdint>

#include "ntk/io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, size_t size) {
  try {
    const auto arrays = ntk::parse_npz(reinterpret_cast<const std::byte*>(data), size, "fuzz input");
    for (const auto& [key, a] : arrays) (void)a.as<float>();
  } catch (const ntk::Error&) {
  }
  return 0;
}
