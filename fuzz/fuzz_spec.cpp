// libFuzzer target: any byte string as a network spec must give a Network or an ntk::Error.
#include <cstddef>
#include <cstdint>
#include <string>

#include "ntk/error.hpp"
#include "ntk/network.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string spec(reinterpret_cast<const char*>(data), size);
  for (const ntk::Shape& input : {ntk::Shape{8, 8, 3}, ntk::Shape{16}}) {
    try {
      ntk::Network net(spec, input);
      ntk::Network again(net.describe(), input);  // the canonical text must parse back
      if (again.num_params() != net.num_params()) __builtin_trap();
    } catch (const ntk::Error&) {
    }
  }
  return 0;
}
