#include "ntk/empirical.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

#include <fcntl.h>
#include <unistd.h>

#include "blas.hpp"
#include "ntk/error.hpp"
#include "ntk/io.hpp"
#include "ntk/parallel.hpp"
#include "tiles.hpp"

namespace ntk {

EntkMethod parse_entk_method(const std::string& s) {
  if (s == "auto") return EntkMethod::automatic;
  if (s == "jc") return EntkMethod::jc;
  if (s == "vp") return EntkMethod::vp;
  if (s == "sd") return EntkMethod::sd;
  throw InvalidArgument("unknown eNTK method '" + s + "' (use auto, jc, vp or sd)");
}

const char* to_string(EntkMethod m) {
  switch (m) {
    case EntkMethod::automatic: return "auto";
    case EntkMethod::jc: return "jc";
    case EntkMethod::vp: return "vp";
    case EntkMethod::sd: return "sd";
  }
  return "?";
}

EntkMode parse_entk_mode(const std::string& s) {
  if (s == "full") return {EntkMode::full};
  if (s == "trace") return {EntkMode::trace};
  if (s == "trace-sum") return {EntkMode::trace_sum};
  if (s == "pntk") return {EntkMode::pntk};
  if (s == "diagonal") return {EntkMode::diagonal};
  if (s.rfind("logit=", 0) == 0) {
    index_t k = -1;
    const char* b = s.data() + 6;
    const char* e = s.data() + s.size();
    auto r = std::from_chars(b, e, k);
    if (r.ec == std::errc() && r.ptr == e && b != e && k >= 0) return {EntkMode::logit, k};
  }
  throw InvalidArgument("unknown eNTK mode '" + s + "' (use full, trace, trace-sum, pntk, logit=K or diagonal)");
}

std::string to_string(const EntkMode& m) {
  switch (m.kind) {
    case EntkMode::full: return "full";
    case EntkMode::trace: return "trace";
    case EntkMode::trace_sum: return "trace-sum";
    case EntkMode::pntk: return "pntk";
    case EntkMode::logit: return "logit=" + std::to_string(m.logit_index);
    case EntkMode::diagonal: return "diagonal";
  }
  return "?";
}

std::string format_bytes(std::uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

Shape entk_output_shape(const EntkMode& mode, index_t n1, index_t n2, index_t outputs) {
  if (mode.kind == EntkMode::full) return {n1, n2, outputs, outputs};
  if (mode.kind == EntkMode::diagonal) return {n1, n2, outputs};
  return {n1, n2};
}

namespace {

// The output cotangents a mode needs, as K rows of length O, and how blocks are reduced: `paired`
// keeps every (a, b) pair of directions (full mode); otherwise only matching directions a = b are
// contracted, which is where the output-reducing modes save their factor O.
template <class T>
struct Directions {
  index_t K = 0;
  std::vector<T> rows;  // K × O
  bool paired = false;
};

template <class T>
Directions<T> directions_for(const EntkMode& mode, index_t O) {
  Directions<T> d;
  if (mode.kind == EntkMode::pntk || mode.kind == EntkMode::logit) {
    d.K = 1;
    d.rows.assign(static_cast<size_t>(O), T(0));
    if (mode.kind == EntkMode::pntk)
      std::fill(d.rows.begin(), d.rows.end(), T(1 / std::sqrt(double(O))));
    else
      d.rows[static_cast<size_t>(mode.logit_index)] = T(1);
    return d;
  }
  d.K = O;
  d.rows.assign(static_cast<size_t>(O * O), T(0));
  for (index_t a = 0; a < O; ++a) d.rows[static_cast<size_t>(a * O + a)] = T(1);
  d.paired = mode.kind == EntkMode::full;
  return d;
}

// Reduces matched direction kk of a tile's block, V (c1 × c2), into the tile (c1 × c2 × values): the
// diagonal mode keeps it at output kk; trace and trace-sum reset at kk = 0, then accumulate.
template <class T>
void reduce_matched(const T* V, index_t kk, const EntkMode& mode, index_t O, index_t c1, index_t c2, T* tile) {
  const bool sum_modes = mode.kind == EntkMode::trace || mode.kind == EntkMode::trace_sum;
  const T scale = mode.kind == EntkMode::trace ? T(1) / T(O) : T(1);
  const index_t n = c1 * c2;
  if (mode.kind == EntkMode::diagonal) {
    for (index_t e = 0; e < n; ++e) tile[e * O + kk] = V[e];
  } else if (sum_modes) {
    for (index_t e = 0; e < n; ++e) tile[e] = (kk == 0 ? T(0) : tile[e]) + scale * V[e];
  } else {
    std::copy(V, V + n, tile);
  }
}

// Jacobian rows of n examples for the K directions: J (n·K × P), row (i, kk) = J(x_i)ᵀ c_kk.
template <class T>
void jacobian_rows(const Network& net, const T* theta, const T* x, index_t n, const Directions<T>& dirs, T* J) {
  const index_t P = net.num_params(), O = net.output_size();
  Trace<T> trace;
  net.forward(theta, x, n, trace);
  std::vector<T> g(static_cast<size_t>(n * dirs.K * O));
  for (index_t i = 0; i < n; ++i) std::copy(dirs.rows.begin(), dirs.rows.end(), g.begin() + i * dirs.K * O);
  std::fill(J, J + n * dirs.K * P, T(0));
  net.vjp(theta, trace, dirs.K, g.data(), nullptr, ParamCotangent<T>{J, P, true});
}

// Channel-factored structured derivative of layer l (Network::channel_chain_end). Its output
// cotangents factor as G_ia = M_i ⊙ (1 u_iaᵀ), so its parameter gradient for direction a is
// A_i diag(u_ia), where A_i (R × C, parameters with the output channel last) is the gradient for
// the cotangent M_i alone: one backward pass per example instead of one per direction, and
//   Θ_l[(i,a), (j,b)] = Σ_c u_ia(c) u_jb(c) S_ij(c),   S_ij(c) = Σ_r A_i(r,c) A_j(r,c),
// which costs n1·n2·(R·C + K²·C) instead of n1·n2·K²·R·C. The side keeps A as (C, n, R).
template <class T>
std::vector<T> factored_side(const Network& net, const T* theta, const Trace<T>& trace, int l, int end) {
  const Layer& layer = *net.layers()[size_t(l)];
  const index_t n = trace.n, C = layer.out_shape().back(), P = layer.num_params(), R = P / C;
  std::vector<T> mask(static_cast<size_t>(n * layer.out_size()));
  net.channel_mask(theta, trace, l, end, mask.data());
  std::vector<T> grads(static_cast<size_t>(n * P), T(0));
  layer.vjp(theta + net.param_offset(l), net.layer_input(trace, l), net.layer_output(trace, l), n, 1, mask.data(),
            static_cast<T*>(nullptr), ParamCotangent<T>{grads.data(), P, true});
  // (n, R, C) -> (C, n, R) in 64 x 64 tiles, threaded over tiles of r.
  std::vector<T> a(grads.size());
  constexpr index_t B = 64;
  const index_t r_tiles = (R + B - 1) / B;
  parallel_for(n * r_tiles, [&](index_t begin, index_t end) {
    for (index_t task = begin; task < end; ++task) {
      const index_t i = task / r_tiles, r0 = (task % r_tiles) * B, r1 = std::min(R, r0 + B);
      for (index_t c0 = 0; c0 < C; c0 += B)
        for (index_t c = c0; c < std::min(C, c0 + B); ++c)
          for (index_t r = r0; r < r1; ++r)
            a[static_cast<size_t>((c * n + i) * R + r)] = grads[static_cast<size_t>((i * R + r) * C + c)];
    }
  });
  return a;
}

// Adds layer l's block from two factored sides a1 (C, n1, R), a2 (C, n2, R) and the chain end's
// cotangents u1 (n1, K, C), u2 (n2, K, C).
template <class T>
void factored_block(const std::vector<T>& a1, const T* u1, index_t n1, const std::vector<T>& a2, const T* u2, index_t n2,
                    index_t K, index_t C, bool paired, T* block) {
  const index_t R = static_cast<index_t>(a1.size()) / (C * n1);
  std::vector<T> S(static_cast<size_t>(C * n1 * n2));
  parallel_for(C, [&](index_t c_begin, index_t c_end) {
    for (index_t c = c_begin; c < c_end; ++c)
      detail::gemm_serial(false, true, n1, n2, R, T(1), a1.data() + c * n1 * R, R, a2.data() + c * n2 * R, R, T(0),
                          S.data() + c * n1 * n2, n2);
  });
  parallel_for(n1, [&](index_t i_begin, index_t i_end) {
    std::vector<T> s(static_cast<size_t>(C)), w(static_cast<size_t>(C));
    for (index_t i = i_begin; i < i_end; ++i)
      for (index_t j = 0; j < n2; ++j) {
        for (index_t c = 0; c < C; ++c) s[size_t(c)] = S[static_cast<size_t>((c * n1 + i) * n2 + j)];
        for (index_t a = 0; a < K; ++a) {
          const T* ua = u1 + (i * K + a) * C;
          for (index_t c = 0; c < C; ++c) w[size_t(c)] = ua[c] * s[size_t(c)];
          auto dot = [&](index_t b) {
            const T* ub = u2 + (j * K + b) * C;
            T v = 0;
            for (index_t c = 0; c < C; ++c) v += w[size_t(c)] * ub[c];
            return v;
          };
          if (paired) {
            T* dst = block + ((i * n2 + j) * K + a) * K;
            for (index_t b = 0; b < K; ++b) dst[b] += dot(b);
          } else {
            block[(a * n1 + i) * n2 + j] += dot(a);
          }
        }
      }
  });
}

// Per-layer structured-derivative costs (multiply-adds), factored where the network allows it.
double sd_side_flops(const Network& net, int l, index_t n, index_t K) {
  const Layer& layer = *net.layers()[size_t(l)];
  if (net.channel_chain_end(l) < 0) return layer.ntk_side_flops(n, K);
  return double(n) * layer.forward_flops();  // one parameter-gradient pass, the mask chain is elementwise
}
double sd_block_flops(const Network& net, int l, index_t n1, index_t n2, index_t K, bool paired) {
  const Layer& layer = *net.layers()[size_t(l)];
  if (net.channel_chain_end(l) < 0) return layer.ntk_block_flops(n1, n2, K, paired);
  const double C = double(layer.out_shape().back());
  return double(n1) * double(n2) * (double(layer.num_params()) + (paired ? double(K * K) : double(K)) * C);
}
double sd_side_elements(const Network& net, int l, index_t n, index_t K) {
  const Layer& layer = *net.layers()[size_t(l)];
  return net.channel_chain_end(l) < 0 ? layer.ntk_side_elements(n, K) : double(n) * double(layer.num_params());
}

// Bytes of working memory for tiles of t examples per side (the kernel itself excluded).
std::uint64_t working_bytes(const Network& net, EntkMethod method, index_t t, index_t K, bool paired,
                            std::uint64_t s) {
  const std::uint64_t P = std::uint64_t(net.num_params());
  std::uint64_t buffers = std::uint64_t(net.input_size()), widest = 0, cotangents = 0, sides = 0;
  for (int l = 0; l < static_cast<int>(net.layers().size()); ++l) {
    const Layer& layer = *net.layers()[size_t(l)];
    buffers += std::uint64_t(layer.out_size());
    widest = std::max<std::uint64_t>(widest, std::uint64_t(std::max(layer.in_size(), layer.out_size())));
    if (layer.num_params() > 0) {
      cotangents += std::uint64_t(layer.out_size());
      sides += std::uint64_t(sd_side_elements(net, l, t, K));
    }
  }
  const std::uint64_t ut = std::uint64_t(t), uk = std::uint64_t(K);
  std::uint64_t bytes = 2 * ut * buffers * s;                       // the traces of both sides
  bytes += 3 * ut * uk * widest * s;                                // cotangents in flight
  bytes += (paired ? ut * ut * uk * uk : ut * ut * uk) * s;         // one contracted block
  switch (method) {
    case EntkMethod::jc: bytes += 2 * ut * uk * P * s; break;       // Jacobian rows of both sides
    case EntkMethod::vp: bytes += ut * uk * P * s + 3 * ut * ut * uk * widest * s; break;  // rows, tangents
    default: bytes += 2 * (ut * uk * cotangents + sides) * s + ut * ut * uk * s; break;  // per-layer cotangents, sides
  }
  return bytes + (std::uint64_t(64) << 20);  // patches, BLAS buffers
}

// Floating-point operations of a method over the tile pairs it visits (2 per multiply-add).
double method_flops(const Network& net, EntkMethod method, index_t n1, index_t n2, bool symmetric, index_t t,
                    index_t K, bool paired, bool out_of_core) {
  // Out of core, Jacobian contraction computes every x2 row once and spills it (see compute_entk).
  const bool spill = out_of_core && method == EntkMethod::jc && (n2 + t - 1) / t > 1;
  double fp = 0;
  for (const auto& layer : net.layers()) fp += layer->forward_flops();
  auto sd_side = [&](double c) {  // forward, input cotangents of K directions, the layers' sides
    double f = c * fp * (1 + double(K));
    for (int l = 0; l < static_cast<int>(net.layers().size()); ++l)
      if (net.layers()[size_t(l)]->num_params() > 0) f += sd_side_flops(net, l, index_t(c), K);
    return f;
  };
  const double P = double(net.num_params()), O = double(net.output_size()), k = double(K);
  const double pair_dirs = paired ? k * k : k;
  double total = 0;
  for (index_t i0 = 0; i0 < n1; i0 += t) {
    const double c1 = double(std::min(t, n1 - i0));
    // Side 1: forward, then K backward passes (input cotangents ≈ forward, parameter part ≈ forward).
    total += method == EntkMethod::sd ? sd_side(c1) : c1 * fp * (1 + 2 * k);
    if (spill && !symmetric && i0 == 0) total += double(n2) * fp * (1 + 2 * k);
    for (index_t j0 = symmetric ? i0 : 0; j0 < n2; j0 += t) {
      const double c2 = double(std::min(t, n2 - j0));
      const bool diagonal_tile = symmetric && j0 == i0;
      // Symmetric diagonal tiles contract only the pairs i <= j where blocks go through
      // contract_rows / accumulate_paired (SYRK-style); the small factored and pixel-pair blocks
      // compute all pairs, so for them this count is a slight underestimate.
      const double half = diagonal_tile ? (c1 + 1) / (2 * c1) : 1.0;
      switch (method) {
        case EntkMethod::jc:
          if (!diagonal_tile && !spill) total += c2 * fp * (1 + 2 * k);
          total += half * c1 * c2 * pair_dirs * P;
          break;
        case EntkMethod::vp:
          total += c2 * fp + c1 * c2 * k * 2 * fp + c1 * c2 * k * O * (paired ? k : 1);
          break;
        default:
          if (!diagonal_tile) total += sd_side(c2);
          for (int l = 0; l < static_cast<int>(net.layers().size()); ++l)
            if (net.layers()[size_t(l)]->num_params() > 0)
              total += half * sd_block_flops(net, l, index_t(c1), index_t(c2), K, paired);
          break;
      }
    }
  }
  return 2 * total;
}

// The largest tile whose working memory plus resident kernel fits max_memory.
index_t choose_tile(const Network& net, EntkMethod method, index_t n_max, index_t K, bool paired,
                    const std::function<std::uint64_t(index_t)>& resident, std::uint64_t element_bytes,
                    const EntkOptions& o) {
  if (o.tile > 0) return std::min(o.tile, n_max);
  if (o.max_memory == 0) return std::min<index_t>(n_max, 256);  // no budget: BLAS-friendly tiles
  auto need = [&](index_t t) { return resident(t) + working_bytes(net, method, t, K, paired, element_bytes); };
  if (!o.out_of_core && resident(1) >= o.max_memory)
    throw MemoryBudgetError("the kernel itself takes " + format_bytes(resident(1)) + ", more than --max-memory " +
                            format_bytes(o.max_memory) + "; raise --max-memory, write it out of core (ntk entk does when it does not fit), or use a reducing mode (trace, pntk)");
  index_t lo = 0, hi = n_max;
  while (lo < hi) {
    index_t mid = (lo + hi + 1) / 2;
    if (need(mid) <= o.max_memory)
      lo = mid;
    else
      hi = mid - 1;
  }
  if (lo == 0)
    throw MemoryBudgetError("method " + std::string(to_string(method)) + " needs " + format_bytes(need(1)) +
                            " for a tile of one example (kernel included), more than --max-memory " +
                            format_bytes(o.max_memory) + "; raise --max-memory");
  return lo;
}

// NTK-vector products for a tile pair: the x1 side's Jacobian rows (c1·K × P) are parameter
// tangents pushed through the x2 side's JVP, giving J(x2_j) J(x1_i)ᵀ c_a for every output; the
// output axis is then contracted with the directions.
template <class T>
void vp_block(const Network& net, const T* theta, const T* rows1, index_t c1, const Trace<T>& trace2, index_t c2,
              const Directions<T>& dirs, T* block) {
  const index_t K = dirs.K, O = net.output_size(), P = net.num_params();
  std::vector<T> tangents(static_cast<size_t>(c2 * c1 * K * O));
  net.jvp(theta, trace2, c1 * K, nullptr, rows1, P, tangents.data());
  for (index_t i = 0; i < c1; ++i)
    for (index_t j = 0; j < c2; ++j)
      for (index_t a = 0; a < K; ++a) {
        const T* tv = tangents.data() + (j * c1 * K + i * K + a) * O;
        auto project = [&](index_t b) {
          T v = 0;
          for (index_t o = 0; o < O; ++o) v += dirs.rows[size_t(b * O + o)] * tv[o];
          return v;
        };
        if (dirs.paired) {
          for (index_t b = 0; b < K; ++b) block[((i * c2 + j) * K + a) * K + b] = project(b);
        } else {
          block[a * c1 * c2 + i * c2 + j] = project(a);
        }
      }
}

}  // namespace

EntkPlan plan_empirical_ntk(const Network& net, index_t n1, index_t n2, bool symmetric, const EntkOptions& o,
                            std::size_t element_bytes) {
  const index_t O = net.output_size();
  const bool paired = o.mode.kind == EntkMode::full;
  const index_t K = (o.mode.kind == EntkMode::pntk || o.mode.kind == EntkMode::logit) ? 1 : O;
  EntkPlan plan;
  plan.output_bytes = std::uint64_t(numel(entk_output_shape(o.mode, n1, n2, O))) * element_bytes;
  // Out of core, only the strips of the kernel that the current tile row writes are resident (its
  // rows and, on the symmetric path, the mirrored columns); budget them at the largest tile.
  const std::uint64_t per_example = plan.output_bytes / std::uint64_t(std::max<index_t>(n1, 1));
  auto resident = [&](index_t t) { return o.out_of_core ? 2 * std::uint64_t(t) * per_example : plan.output_bytes; };
  if (!o.layers.empty() && o.method != EntkMethod::automatic && o.method != EntkMethod::sd)
    throw InvalidArgument("per-layer contributions are computed by structured derivatives; use method sd or auto");
  const EntkPlan::Candidate* best = nullptr;
  for (EntkMethod m : {EntkMethod::jc, EntkMethod::vp, EntkMethod::sd}) {
    EntkPlan::Candidate c;
    c.method = m;
    if (!o.layers.empty() && m != EntkMethod::sd) {
      // Per-layer contributions exist only as structured derivatives: auto must not pick another.
      c.refused = "per-layer contributions (EntkOptions::layers) are computed by structured derivatives only";
      plan.candidates.push_back(c);
      continue;
    }
    try {
      c.tile = choose_tile(net, m, std::max(n1, n2), K, paired, resident, element_bytes, o);
      c.working_bytes = working_bytes(net, m, c.tile, K, paired, element_bytes);
      c.flops = method_flops(net, m, n1, n2, symmetric, c.tile, K, paired, o.out_of_core);
    } catch (const MemoryBudgetError& e) {
      c.refused = e.what();
    }
    plan.candidates.push_back(c);
  }
  for (const auto& c : plan.candidates) {
    const bool wanted = o.method == EntkMethod::automatic ? c.refused.empty() && (!best || c.flops < best->flops)
                                                          : c.method == o.method;
    if (wanted) best = &c;
  }
  if (!best) throw MemoryBudgetError(plan.candidates.back().refused);
  if (!best->refused.empty()) throw MemoryBudgetError(best->refused);
  plan.method = best->method;
  plan.tile = best->tile;
  plan.flops = best->flops;
  plan.working_bytes = best->working_bytes;
  return plan;
}

std::string EntkPlan::describe() const {
  std::string s;
  char line[256];
  for (const auto& c : candidates) {
    if (c.refused.empty())
      std::snprintf(line, sizeof line, "  %-3s %s %10.3g GFLOP  tile %-6lld working memory %s\n", to_string(c.method),
                    c.method == method ? "*" : " ", c.flops / 1e9, static_cast<long long>(c.tile),
                    format_bytes(c.working_bytes).c_str());
    else
      std::snprintf(line, sizeof line, "  %-3s   does not fit: %s\n", to_string(c.method), c.refused.c_str());
    s += line;
  }
  return "plan: method " + std::string(to_string(method)) + ", tile " + std::to_string(tile) + ", kernel " +
         format_bytes(output_bytes) + " + working " + format_bytes(working_bytes) + "\n" + s;
}

namespace {

// A temporary file for spilled intermediate results, unlinked at once so nothing outlives the
// process; read and written with pread / pwrite so it never counts toward resident memory.
class ScratchFile {
 public:
  explicit ScratchFile(const std::string& path) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd_ < 0) throw IoError("cannot create scratch file '" + path + "': " + std::strerror(errno));
    ::unlink(path.c_str());
  }
  ~ScratchFile() { ::close(fd_); }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;
  void write(const void* data, std::size_t bytes, std::uint64_t offset) {
    for (std::size_t done = 0; done < bytes;) {
      ssize_t n = ::pwrite(fd_, static_cast<const char*>(data) + done, bytes - done, off_t(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw IoError(std::string("cannot write the Jacobian scratch file: ") + std::strerror(errno) + " (is the disk full?)");
      done += std::size_t(n);
    }
  }
  void read(void* data, std::size_t bytes, std::uint64_t offset) const {
    for (std::size_t done = 0; done < bytes;) {
      ssize_t n = ::pread(fd_, static_cast<char*>(data) + done, bytes - done, off_t(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw IoError(std::string("cannot read the Jacobian scratch file: ") + std::strerror(errno));
      done += std::size_t(n);
    }
  }

 private:
  int fd_ = -1;
};

// The eNTK as a producer of tiles for the tile engine: a tile row prepares its x1 side once (the
// Jacobian rows, or the trace, cotangents and layer sides of structured derivatives), every tile of
// the row prepares its x2 side and contracts the two into the tile in the output layout.
template <class T>
class EntkProducer final : public detail::TileProducer<T> {
 public:
  EntkProducer(const Network& net, const std::vector<T>& theta, const Array<T>& x1, const Array<T>* x2_in,
               const EntkOptions& options, const EntkPlan& plan, const std::string& spill_path)
      : net_(net), theta_(theta), x1_(x1), x2_(x2_in ? *x2_in : x1), symmetric_(x2_in == nullptr), mode_(options.mode),
        dirs_(directions_for<T>(options.mode, net.output_size())), method_(plan.method), t_(plan.tile) {
    const index_t L = index_t(net.layers().size());
    // Layers whose parameters enter the kernel (all, unless per-layer contributions were asked for).
    included_.assign(size_t(L), false);
    for (index_t l = 0; l < L; ++l) included_[size_t(l)] = net.layers()[size_t(l)]->num_params() > 0 && options.layers.empty();
    for (int l : options.layers) {
      if (l < 0 || l >= static_cast<int>(L))
        throw InvalidArgument("layer index " + std::to_string(l) + " is out of range (the network has " +
                              std::to_string(L) + " layers)");
      included_[size_t(l)] = net.layers()[size_t(l)]->num_params() > 0;
    }
    if (!options.layers.empty() && method_ != EntkMethod::sd)
      throw InvalidArgument("per-layer contributions are computed by structured derivatives; use method sd or auto");
    // Structured derivatives factor a layer's cotangents where the network allows it; the chain
    // end's cotangents are then kept as well.
    chain_end_.assign(size_t(L), -1);
    keep_cotangents_ = included_;
    for (index_t l = 0; l < L; ++l)
      if (included_[size_t(l)] && method_ == EntkMethod::sd && (chain_end_[size_t(l)] = net.channel_chain_end(int(l))) >= 0) {
        keep_cotangents_[size_t(l)] = false;
        keep_cotangents_[size_t(chain_end_[size_t(l)])] = true;
      }
    const index_t K = dirs_.K, P = net.num_params(), n2 = x2_.dim(0);
    block_.resize(static_cast<size_t>(dirs_.paired ? 0 : K * t_ * t_));
    // Out of core with Jacobian contraction, the x2 side's Jacobian rows are computed once and kept
    // in a scratch file beside the output instead of being recomputed for every tile row.
    if (method_ == EntkMethod::jc && !spill_path.empty() && (n2 + t_ - 1) / t_ > 1) {
      spilled_ = std::make_unique<ScratchFile>(spill_path);
      std::vector<T> rows;
      for (index_t j0 = 0; j0 < n2; j0 += t_) {
        const index_t c2 = std::min(t_, n2 - j0);
        rows.resize(static_cast<size_t>(c2 * K * P));
        jacobian_rows(net, theta.data(), x2_.data() + j0 * net.input_size(), c2, dirs_, rows.data());
        spilled_->write(rows.data(), rows.size() * sizeof(T), std::uint64_t(j0 * K * P) * sizeof(T));
      }
    }
  }

  std::string what() const override { return "the empirical NTK"; }

  void begin_row(index_t i0, index_t c1) override { prepare(x1_, i0, c1, false, s1_); }

  void tile(index_t i0, index_t c1, index_t j0, index_t c2, T* tile) override {
    const index_t K = dirs_.K, P = net_.num_params(), O = net_.output_size();
    const bool diagonal_tile = symmetric_ && j0 == i0;
    // The symmetric diagonal tile reuses side 1, except for VP whose x2 side differs in kind.
    const Side& b = diagonal_tile && method_ != EntkMethod::vp ? s1_ : (prepare(x2_, j0, c2, true, s2_), s2_);
    // Full mode: blocks are (c1, c2, K, K), the tile's own layout, so they accumulate in place.
    T* block = dirs_.paired ? tile : block_.data();
    std::fill(block, block + (dirs_.paired ? c1 * c2 * K * K : K * c1 * c2), T(0));
    if (method_ == EntkMethod::jc) {
      contract_rows(s1_.rows.data(), c1, b.rows.data(), c2, K, P, dirs_.paired, block);
    } else if (method_ == EntkMethod::sd) {
      for (int l = 0; l < static_cast<int>(net_.layers().size()); ++l) {
        const Layer& layer = *net_.layers()[size_t(l)];
        if (!included_[size_t(l)]) continue;
        if (const int end = chain_end_[size_t(l)]; end >= 0) {
          factored_block(s1_.layer_sides[size_t(l)], s1_.cotangents[size_t(end)].data(), c1, b.layer_sides[size_t(l)],
                         b.cotangents[size_t(end)].data(), c2, K, layer.out_shape().back(), dirs_.paired, block);
          continue;
        }
        layer.ntk_block(theta_.data() + net_.param_offset(l), net_.layer_input(s1_.trace, l), s1_.cotangents[size_t(l)].data(),
                        s1_.layer_sides[size_t(l)], c1, net_.layer_input(b.trace, l), b.cotangents[size_t(l)].data(),
                        b.layer_sides[size_t(l)], c2, K, dirs_.paired, block);
      }
    } else {
      vp_block(net_, theta_.data(), s1_.rows.data(), c1, b.trace, c2, dirs_, block);
    }
    if (!dirs_.paired)
      for (index_t kk = 0; kk < K; ++kk) reduce_matched(block + kk * c1 * c2, kk, mode_, O, c1, c2, tile);
  }

 private:
  // One side of a tile pair: what each method needs of its examples.
  struct Side {
    std::vector<T> rows;                      // jc, vp (x1 side): Jacobian rows (count·K × P)
    Trace<T> trace;                           // sd, vp (x2 side)
    std::vector<std::vector<T>> cotangents;   // sd: per layer, (count, K, out)
    std::vector<std::vector<T>> layer_sides;  // sd: per layer, what its ntk_side keeps
  };

  void prepare(const Array<T>& x, index_t start, index_t count, bool x2_side, Side& side) {
    const index_t K = dirs_.K, P = net_.num_params(), O = net_.output_size();
    const T* xs = x.data() + start * net_.input_size();
    if (spilled_ && (x2_side || symmetric_)) {
      side.rows.resize(static_cast<size_t>(count * K * P));
      spilled_->read(side.rows.data(), side.rows.size() * sizeof(T), std::uint64_t(start * K * P) * sizeof(T));
      return;
    }
    if (method_ == EntkMethod::jc || (method_ == EntkMethod::vp && !x2_side)) {
      side.rows.resize(static_cast<size_t>(count * K * P));
      jacobian_rows(net_, theta_.data(), xs, count, dirs_, side.rows.data());
      return;
    }
    net_.forward(theta_.data(), xs, count, side.trace);
    if (method_ == EntkMethod::vp) return;
    side.cotangents.assign(net_.layers().size(), {});
    std::vector<T> g(static_cast<size_t>(count * K * O));
    for (index_t i = 0; i < count; ++i) std::copy(dirs_.rows.begin(), dirs_.rows.end(), g.begin() + i * K * O);
    net_.vjp(theta_.data(), side.trace, K, g.data(), nullptr, ParamCotangent<T>{}, [&](int layer, const T* g_layer) {
      if (!keep_cotangents_[size_t(layer)]) return;
      const index_t size = count * K * net_.layers()[size_t(layer)]->out_size();
      side.cotangents[size_t(layer)].assign(g_layer, g_layer + size);
    });
    side.layer_sides.assign(net_.layers().size(), {});
    for (int l = 0; l < static_cast<int>(net_.layers().size()); ++l) {
      const Layer& layer = *net_.layers()[size_t(l)];
      if (!included_[size_t(l)]) continue;
      if (chain_end_[size_t(l)] >= 0) {
        side.layer_sides[size_t(l)] = factored_side(net_, theta_.data(), side.trace, l, chain_end_[size_t(l)]);
        continue;
      }
      side.layer_sides[size_t(l)] =
          layer.ntk_side(theta_.data() + net_.param_offset(l), net_.layer_input(side.trace, l),
                         net_.layer_output(side.trace, l), side.cotangents[size_t(l)].data(), count, K);
    }
  }

  const Network& net_;
  const std::vector<T>& theta_;
  const Array<T>& x1_;
  const Array<T>& x2_;
  const bool symmetric_;
  const EntkMode mode_;
  const Directions<T> dirs_;
  const EntkMethod method_;
  const index_t t_;
  std::vector<bool> included_, keep_cotangents_;
  std::vector<int> chain_end_;
  std::unique_ptr<ScratchFile> spilled_;
  std::vector<T> block_;  // matched modes: K planes of c1 × c2
  Side s1_, s2_;
};

// The tile layout of an eNTK: square tiles of plan.tile examples; out of core, bands of one tile row
// (the plan budgets two tile rows of the kernel: the band and the mirror read back into it).
detail::TileGrid entk_grid(const Network& net, index_t n1, index_t n2, bool symmetric, const EntkMode& mode,
                           const EntkPlan& plan, bool out_of_core) {
  const index_t O = net.output_size();
  detail::TileGrid g;
  g.n1 = n1, g.n2 = n2, g.symmetric = symmetric;
  g.values = numel(entk_output_shape(mode, 1, 1, O));
  g.block_dim = mode.kind == EntkMode::full ? O : 0;
  g.tile1 = g.tile2 = plan.tile;
  g.band = out_of_core ? plan.tile : 0;
  return g;
}

template <class T>
void validate(const Network& net, const std::vector<T>& theta, const Array<T>& x1, const Array<T>* x2,
              const EntkOptions& options) {
  if (static_cast<index_t>(theta.size()) != net.num_params())
    throw InvalidArgument("got " + std::to_string(theta.size()) + " parameters, the network has " + std::to_string(net.num_params()));
  net.check_inputs(x1, "x1");
  if (x2) net.check_inputs(*x2, "x2");
  const index_t O = net.output_size();
  if (options.mode.kind == EntkMode::logit && options.mode.logit_index >= O)
    throw InvalidArgument("mode logit=" + std::to_string(options.mode.logit_index) +
                          " asks for an output the network does not have (it has " + std::to_string(O) + " outputs: 0.." +
                          std::to_string(O - 1) + ")");
}

}  // namespace

template <class T>
Array<T> empirical_ntk(const Network& net, const std::vector<T>& theta, const Array<T>& x1,
                       const std::type_identity_t<Array<T>>* x2, const EntkOptions& options) {
  ThreadScope threads(options.threads);
  validate(net, theta, x1, x2, options);
  const index_t n1 = x1.dim(0), n2 = x2 ? x2->dim(0) : n1;
  const EntkPlan plan = plan_empirical_ntk(net, n1, n2, x2 == nullptr, options, sizeof(T));  // before allocating
  Array<T> out(entk_output_shape(options.mode, n1, n2, net.output_size()));
  const detail::TileGrid grid = entk_grid(net, n1, n2, x2 == nullptr, options.mode, plan, false);
  EntkProducer<T> producer(net, theta, x1, x2, options, plan, "");
  detail::ArraySink<T> sink(out.data(), out.size() / std::max<index_t>(n1, 1), grid.values);
  detail::run_tiles(grid, producer, sink, options.progress);
  return out;
}

template <class T>
void empirical_ntk_to_file(const Network& net, const std::vector<T>& theta, const Array<T>& x1,
                           const std::type_identity_t<Array<T>>* x2, const EntkOptions& options, const std::string& path) {
  ThreadScope threads(options.threads);
  validate(net, theta, x1, x2, options);
  const index_t n1 = x1.dim(0), n2 = x2 ? x2->dim(0) : n1;
  EntkOptions o = options;
  o.out_of_core = true;
  const EntkPlan plan = plan_empirical_ntk(net, n1, n2, x2 == nullptr, o, sizeof(T));
  const Shape shape = entk_output_shape(o.mode, n1, n2, net.output_size());
  NpyFileWriter file(path, sizeof(T) == 8 ? DType::float64 : DType::float32, shape);
  const detail::TileGrid grid = entk_grid(net, n1, n2, x2 == nullptr, o.mode, plan, true);
  EntkProducer<T> producer(net, theta, x1, x2, o, plan, path + ".jacobian");
  detail::FileSink<T> sink(file, numel(shape) / n1, grid.values);
  detail::run_tiles(grid, producer, sink, options.progress);
  file.commit();
}

template <class T>
Array<T> empirical_nngp(const Network& net, const std::vector<T>& theta, const Array<T>& x1,
                        const std::type_identity_t<Array<T>>* x2, const EntkMode& mode) {
  EntkOptions o;
  o.mode = mode;
  validate(net, theta, x1, x2, o);
  const Array<T> f1 = net.apply(theta, x1);
  const Array<T> f2 = x2 ? net.apply(theta, *x2) : f1;
  const index_t n1 = x1.dim(0), n2 = f2.dim(0), O = net.output_size();
  Array<T> out(entk_output_shape(mode, n1, n2, O));
  for (index_t i = 0; i < n1; ++i)
    for (index_t j = 0; j < n2; ++j) {
      const T* a = f1.data() + i * O;
      const T* b = f2.data() + j * O;
      switch (mode.kind) {
        case EntkMode::full:
          for (index_t p = 0; p < O; ++p)
            for (index_t q = 0; q < O; ++q) out[((i * n2 + j) * O + p) * O + q] = a[p] * b[q];
          break;
        case EntkMode::diagonal:
          for (index_t p = 0; p < O; ++p) out[(i * n2 + j) * O + p] = a[p] * b[p];
          break;
        case EntkMode::logit: out[i * n2 + j] = a[mode.logit_index] * b[mode.logit_index]; break;
        default: {
          T diag = 0, sum_a = 0, sum_b = 0;
          for (index_t p = 0; p < O; ++p) {
            diag += a[p] * b[p];
            sum_a += a[p];
            sum_b += b[p];
          }
          out[i * n2 + j] = mode.kind == EntkMode::trace       ? diag / T(O)
                            : mode.kind == EntkMode::trace_sum ? diag
                                                               : sum_a * sum_b / T(O);
        }
      }
    }
  return out;
}

template Array<float> empirical_nngp<float>(const Network&, const std::vector<float>&, const Array<float>&,
                                            const Array<float>*, const EntkMode&);
template Array<double> empirical_nngp<double>(const Network&, const std::vector<double>&, const Array<double>&,
                                              const Array<double>*, const EntkMode&);

template <class T>
NtkOperator<T>::NtkOperator(const Network& net, std::vector<T> theta, const Array<T>& x)
    : net_(net), theta_(std::move(theta)), n_(x.ndim() ? x.dim(0) : 0) {
  if (static_cast<index_t>(theta_.size()) != net.num_params())
    throw InvalidArgument("got " + std::to_string(theta_.size()) + " parameters, the network has " + std::to_string(net.num_params()));
  net.check_inputs(x, "x");
  net.forward(theta_.data(), x.data(), n_, trace_);
}

template <class T>
void NtkOperator<T>::apply(const T* v, T* out, index_t count) const {
  const index_t O = net_.output_size(), P = net_.num_params();
  // (count, N, O) <-> the (N, count, O) layout of directions per example.
  std::vector<T> g(static_cast<size_t>(n_ * count * O)), t(g.size());
  for (index_t c = 0; c < count; ++c)
    for (index_t i = 0; i < n_; ++i) std::copy(v + (c * n_ + i) * O, v + (c * n_ + i + 1) * O, g.begin() + (i * count + c) * O);
  std::vector<T> jtv(static_cast<size_t>(count * P), T(0));
  net_.vjp(theta_.data(), trace_, count, g.data(), nullptr, ParamCotangent<T>{jtv.data(), P, false});
  net_.jvp(theta_.data(), trace_, count, nullptr, jtv.data(), P, t.data());
  for (index_t c = 0; c < count; ++c)
    for (index_t i = 0; i < n_; ++i) std::copy(t.begin() + (i * count + c) * O, t.begin() + (i * count + c + 1) * O, out + (c * n_ + i) * O);
}

template class NtkOperator<float>;
template class NtkOperator<double>;

template void empirical_ntk_to_file<float>(const Network&, const std::vector<float>&, const Array<float>&,
                                           const Array<float>*, const EntkOptions&, const std::string&);
template void empirical_ntk_to_file<double>(const Network&, const std::vector<double>&, const Array<double>&,
                                            const Array<double>*, const EntkOptions&, const std::string&);
template Array<float> empirical_ntk<float>(const Network&, const std::vector<float>&, const Array<float>&, const Array<float>*,
                                           const EntkOptions&);
template Array<double> empirical_ntk<double>(const Network&, const std::vector<double>&, const Array<double>&,
                                             const Array<double>*, const EntkOptions&);

}  // namespace ntk
