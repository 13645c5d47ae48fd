// libFuzzer target: parse_idx (plain or gzip) on arbitrary bytes must either return a consistent
// array or throw ntk::Error; anything else (crash, sanitizer report, other exception, hang) is a bug.
#include <cstddef>
#include <cstdint>

#include "ntk/io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, size_t size) {
  try {
    const ntk::RawArray a = ntk::parse_idx(reinterpret_cast<const std::byte*>(data), size, "fuzz input");
    (void)a.as<double>();
  } catch (const ntk::Error&) {
  }
  return 0;
}
