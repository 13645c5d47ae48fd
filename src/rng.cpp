#include "ntk/rng.hpp"

#include <cmath>
#include <numbers>

namespace ntk {

namespace {
constexpr std::uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
constexpr std::uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;

inline void mulhilo(std::uint32_t a, std::uint32_t b, std::uint32_t& hi, std::uint32_t& lo) {
  std::uint64_t p = static_cast<std::uint64_t>(a) * b;
  hi = static_cast<std::uint32_t>(p >> 32);
  lo = static_cast<std::uint32_t>(p);
}

// 53-bit uniform in (0, 1]: never 0, so log() in Box-Muller is finite.
inline double open_uniform(std::uint32_t hi, std::uint32_t lo) {
  std::uint64_t bits = ((static_cast<std::uint64_t>(hi) << 32) | lo) >> 11;
  return (static_cast<double>(bits) + 1.0) * 0x1.0p-53;
}
}  // namespace

std::array<std::uint32_t, 4> philox4x32(std::uint64_t key, std::array<std::uint32_t, 4> c) {
  std::uint32_t k0 = static_cast<std::uint32_t>(key), k1 = static_cast<std::uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    std::uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kMul0, c[0], hi0, lo0);
    mulhilo(kMul1, c[2], hi1, lo1);
    c = {hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0};
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return c;
}

static std::array<std::uint32_t, 4> block(std::uint64_t seed, std::uint64_t stream, std::uint64_t n) {
  return philox4x32(seed, {static_cast<std::uint32_t>(n), static_cast<std::uint32_t>(n >> 32),
                           static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32)});
}

double normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  auto r = block(seed, stream, index / 2);
  double u1 = open_uniform(r[0], r[1]), u2 = open_uniform(r[2], r[3]);
  double radius = std::sqrt(-2.0 * std::log(u1));
  double angle = 2.0 * std::numbers::pi * u2;
  return index % 2 == 0 ? radius * std::cos(angle) : radius * std::sin(angle);
}

void fill_normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t first, std::uint64_t count, double* out) {
  std::uint64_t k = 0;
  if (count > 0 && first % 2 == 1) out[k++] = normal(seed, stream, first);
  for (; k + 1 < count; k += 2) {
    const auto r = block(seed, stream, (first + k) / 2);
    const double radius = std::sqrt(-2.0 * std::log(open_uniform(r[0], r[1])));
    const double angle = 2.0 * std::numbers::pi * open_uniform(r[2], r[3]);
    out[k] = radius * std::cos(angle);
    out[k + 1] = radius * std::sin(angle);
  }
  if (k < count) out[k] = normal(seed, stream, first + k);
}

double uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  auto r = block(seed, stream, index / 2);
  return index % 2 == 0 ? open_uniform(r[0], r[1]) - 0x1.0p-53 : open_uniform(r[2], r[3]) - 0x1.0p-53;
}

std::uint64_t stream_id(const char* name) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (; *name; ++name) {
    h ^= static_cast<unsigned char>(*name);
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace ntk
