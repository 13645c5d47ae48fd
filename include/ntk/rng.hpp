// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11). A value is a pure function of
// (seed, stream, index), so results never depend on thread count, tile size or call order.
#pragma once
#include <array>
#include <cstdint>

namespace ntk {

// The 128-bit Philox4x32-10 block for a 64-bit key and a 128-bit counter.
std::array<std::uint32_t, 4> philox4x32(std::uint64_t key, std::array<std::uint32_t, 4> counter);

// Standard normal number number `index` of stream `stream` under `seed` (Box-Muller on two 53-bit
// uniforms; each Philox block yields two normals).
double normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t index);

// Uniform double in [0, 1) with 53 random bits.
double uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t index);

// out[k] = normal(seed, stream, first + k) for k < count, at half the cost: both values of each
// Box-Muller pair come from one block.
void fill_normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t first, std::uint64_t count, double* out);

// Stable 64-bit hash of a string (FNV-1a), for deriving streams from names such as "2.0.W".
std::uint64_t stream_id(const char* name);

}  // namespace ntk
