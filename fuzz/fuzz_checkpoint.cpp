// libFuzzer target: arbitrary bytes as a checkpoint record (src/checkpoint.hpp) beside an output
// being resumed must be accepted (a start row within the output) or refused with an ntk::Error
// naming what to do; anything else is a bug. The record is read from a file, so each input is
// written to one first.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "checkpoint.hpp"
#include "ntk/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string out = "/tmp/ntk_fuzz_checkpoint." + std::to_string(::getpid()) + ".npy";
  std::FILE* f = std::fopen((out + ".ntk-checkpoint").c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  const ntk::detail::JobIdentity identity{{"kernel", "empirical NTK"}, {"x1", "(8, 3) float32 0123456789abcdef"}};
  try {
    ntk::detail::Checkpoint c(out, identity, 8, true);
    if (c.start_row() < 0 || c.start_row() > 8) __builtin_trap();
  } catch (const ntk::Error&) {
  }
  return 0;
}
