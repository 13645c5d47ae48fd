// libFuzzer target: an .npz from arbitrary bytes read as the parameters of fixed networks (an MLP
// with a bias, a CNN with BatchNorm whose running statistics are frozen parameters) must give a
// parameter vector of the network's size or an ntk::Error (missing or extra keys, wrong shapes,
// dtypes, non-finite values); anything else is a bug.
#include <cstddef>
#include <cstdint>

#include "ntk/error.hpp"
#include "ntk/io.hpp"
#include "ntk/network.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const ntk::Network mlp("Dense(4, b_std=0.1), Relu, Dense(2)", {3});
  static const ntk::Network cnn("Conv(2, 3, padding=1), BatchNorm, Relu, GlobalAvgPool, Dense(2)", {4, 4, 1});
  try {
    const auto arrays = ntk::parse_npz(reinterpret_cast<const std::byte*>(data), size, "fuzz input");
    for (const ntk::Network* net : {&mlp, &cnn}) {
      try {
        const std::vector<float> p = net->params_from_npz<float>(arrays);
        if (static_cast<ntk::index_t>(p.size()) != net->num_params()) __builtin_trap();
        net->check_finite_params<float>(p);
      } catch (const ntk::Error&) {
      }
    }
  } catch (const ntk::Error&) {
  }
  return 0;
}
