// The empirical NTK's planner: an analytic cost model (FLOPs and working memory of each method for
// a tile size) and the choice of method and tile under the memory budget, before any allocation.
#include <algorithm>
#include <cstdio>
#include <functional>

#include "entk_detail.hpp"
#include "ntk/error.hpp"

namespace ntk {

namespace detail {
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
  // Side 1 of a tile row of c1 examples: forward, then K backward passes (input cotangents ≈
  // forward, parameter part ≈ forward).
  auto row = [&](double c1) { return method == EntkMethod::sd ? sd_side(c1) : c1 * fp * (1 + 2 * k); };
  auto pair = [&](double c1, double c2, bool diagonal_tile) {
    // Symmetric diagonal tiles contract only the pairs i <= j where blocks go through
    // contract_rows / accumulate_paired (SYRK-style); the small factored and pixel-pair blocks
    // compute all pairs, so for them this count is a slight underestimate.
    const double half = diagonal_tile ? (c1 + 1) / (2 * c1) : 1.0;
    double f = 0;
    switch (method) {
      case EntkMethod::jc:
        if (!diagonal_tile && !spill) f += c2 * fp * (1 + 2 * k);
        f += half * c1 * c2 * pair_dirs * P;
        break;
      case EntkMethod::vp:
        f += c2 * fp + c1 * c2 * k * 2 * fp + c1 * c2 * k * O * (paired ? k : 1);
        break;
      default:
        if (!diagonal_tile) f += sd_side(c2);
        for (int l = 0; l < static_cast<int>(net.layers().size()); ++l)
          if (net.layers()[size_t(l)]->num_params() > 0)
            f += half * sd_block_flops(net, l, index_t(c1), index_t(c2), K, paired);
        break;
    }
    return f;
  };
  // Tiles have t examples except the last of each side (r1, r2): the cost is a sum over a few
  // kinds of tile pairs, counted instead of visited (a planner probing tile 1 over 10^4 examples
  // would otherwise walk 5·10^7 pairs).
  const double t_ = double(t), f1 = double(n1 / t), f2 = double(n2 / t);
  const double r1 = double(n1 % t), r2 = double(n2 % t);
  double total = f1 * row(t_) + (r1 > 0 ? row(r1) : 0);
  if (spill && !symmetric) total += double(n2) * fp * (1 + 2 * k);
  if (symmetric) {
    total += f1 * pair(t_, t_, true) + f1 * (f1 - 1) / 2 * pair(t_, t_, false);
    if (r1 > 0) total += pair(r1, r1, true) + f1 * pair(t_, r1, false);
  } else {
    total += f1 * f2 * pair(t_, t_, false);
    if (r2 > 0) total += f1 * pair(t_, r2, false);
    if (r1 > 0) total += f2 * pair(r1, t_, false) + (r2 > 0 ? pair(r1, r2, false) : 0);
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

}  // namespace detail

using namespace detail;

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

}  // namespace ntk
