// libFuzzer target: arbitrary bytes as a targets / labels file (`ntk regress --y-train`: a float
// .npy of targets, an integer .npy or an IDX file of class labels, gzipped or not) must give
// targets consistent with their shape, or an ntk::Error; anything else is a bug. load_targets
// reads a file, so each input is written to one temporary file first.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "ntk/error.hpp"
#include "ntk/regress.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = "/tmp/ntk_fuzz_labels." + std::to_string(::getpid());
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    const ntk::Targets t = ntk::load_targets(ntk::JobInput::file(path));
    if (t.is_labels) {
      for (std::int64_t label : t.labels)
        if (label < 0) __builtin_trap();
      if (!t.labels.empty() && t.labels.size() < 100000) (void)ntk::one_hot(t.labels, 0);
    } else if (t.values.ndim() != 2) {
      __builtin_trap();
    }
  } catch (const ntk::Error&) {
  }
  return 0;
}
