// libFuzzer target: arbitrary bytes as a solver's state file (src/checkpoint.hpp, StateCheckpoint:
// a text header, then float64 arrays checked against their hashes) beside an output being resumed
// must be accepted (arrays of the sizes their lines declare) or refused with an ntk::Error naming
// what to do; anything else is a bug.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "checkpoint.hpp"
#include "ntk/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string out = "/tmp/ntk_fuzz_state." + std::to_string(::getpid()) + ".npy";
  std::FILE* f = std::fopen((out + ".ntk-state").c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  const ntk::detail::JobIdentity identity{{"solver", "Nystrom"}, {"targets", "(4, 2) float64 0123456789abcdef"}};
  try {
    ntk::detail::StateCheckpoint c(out, identity, true, 0.0);
    std::size_t values = 0;
    for (const auto& [name, a] : c.saved().arrays) values += std::size_t(a.size());
    if (values * 8 > size) __builtin_trap();  // the values are in the file
    double meta[3];
    ntk::detail::load_state_array(c.saved(), "meta", meta, 3);
  } catch (const ntk::Error&) {
  }
  return 0;
}
