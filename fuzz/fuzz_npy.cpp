// libFuzzer target: parse_npy on arbitrary bytes must either return a consistent array or throw
// ntk::Error; anything else (crash, sanitizer report, other exception, hang) is a bug.
#include <cstddef>
#include <cstdint>

#include "ntk/io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, size_t size) {
  try {
    const ntk::RawArray a = ntk::parse_npy(reinterpret_cast<const std::byte*>(data), size, "fuzz input");
    // Whatever parses must survive conversion and a write/read round trip unchanged.
    (void)a.as<double>();
    const std::vector<std::byte> again = ntk::serialize_npy(a);
    const ntk::RawArray b = ntk::parse_npy(again.data(), again.size(), "round trip");
    if (b.dtype != a.dtype || b.shape != a.shape || b.bytes != a.bytes) __builtin_trap();
  } catch (const ntk::Error&) {
  }
  return 0;
}
