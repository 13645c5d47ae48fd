// The layer-by-layer path of the infinite-width kernels: whole pixel-pair states of a batch of
// pairs carried through every layer's kernel_rule, and the program check both paths share.
#include <tuple>

#include "blas.hpp"
#include "kernel_detail.hpp"
#include "ntk/error.hpp"
#include "ntk/parallel.hpp"

namespace ntk {

void Layer::kernel_rule(KernelState&) const {
  throw NotSupported("infinite-width kernels: layer " + describe() + " has no kernel rule (yet)");
}

namespace detail {
namespace {

// The diagonal Σ(p, p) of each pair of a state (its per-pixel variances when the pairs are (x, x)).
std::vector<double> state_diagonal(const KernelState& s) {
  const index_t P = s.pixels(), E = s.entries();
  std::vector<double> d(static_cast<size_t>(s.pairs * P));
  for (index_t q = 0; q < s.pairs; ++q)
    for (index_t p = 0; p < P; ++p) d[size_t(q * P + p)] = s.nngp[size_t(q * E + (s.diagonal ? p : p * P + p))];
  return d;
}

}  // namespace

bool check_program(const Network& net) {
  const auto& layers = net.layers();
  const auto& paths = net.layer_paths();
  // fresh: the buffer is a zero-mean random layer's output (or a linear map of one) since the start of
  // its branch; shared: a branch starts from it, so it is no branch's own.
  std::vector<bool> gaussian(net.num_buffers(), false), fresh(net.num_buffers(), false), shared(net.num_buffers(), false);
  std::vector<std::string> made_by(net.num_buffers(), "the network input");
  bool full = false;
  for (const auto& st : net.steps()) {
    const size_t in = size_t(st.in), out = size_t(st.out);
    if (st.is_join()) {
      const size_t skip = size_t(st.skip);
      const std::string refusal = net.join_of(st).kernel_refusal(fresh[in], fresh[skip] && !shared[skip]);
      if (!refusal.empty()) throw NotSupported("infinite-width kernels: " + refusal + "; this one ends in " + made_by[in]);
      gaussian[out] = gaussian[in] && gaussian[skip];
      fresh[out] = false;
      made_by[out] = "a " + net.join_of(st).name() + " sum";
      continue;
    }
    if (st.branch_start) shared[in] = true;
    const bool in_fresh = fresh[in] && !st.branch_start;
    const Layer& l = *layers[size_t(st.layer)];
    const std::string what = "layer " + paths[size_t(st.layer)] + " " + l.describe();
    if (l.kernel_needs_gaussian_input() && !gaussian[in])
      throw NotSupported("infinite-width kernels: " + what + " gets a non-Gaussian input (" + made_by[in] +
                         "), so its kernel has no exact rule; put a Dense or Conv layer before it");
    full = full || l.kernel_needs_full_covariance();
    gaussian[out] = l.kernel_output_gaussian(gaussian[in]);
    fresh[out] = l.kernel_output_gaussian(false) || (!l.kernel_needs_gaussian_input() && in_fresh);
    made_by[out] = "the output of " + what;
  }
  if (net.output_shape().size() != 1)
    throw NotSupported("infinite-width kernels: the network's output " + shape_string(net.output_shape()) +
                       " is not a vector; end it with GlobalAvgPool or Flatten (then Dense)");
  return full;
}

// out (r1 × r2) = x yᵀ / C for rows x (r1 × C) and y (r2 × C), as GEMMs of one fixed shape,
// kGramBlock × kGramBlock × C: OpenBLAS picks its kernel (and so its rounding) by the shape it is
// given, but within one shape an entry's bits do not depend on where it lies. So an entry is the
// same whatever tile it is computed in (a tile of another size in another process: ntkit.dask).
// Edge blocks are windows shifted back inside the rows, or zero-padded copies when there are fewer.
constexpr index_t kGramBlock = 64;

void gram_in_fixed_blocks(const double* x, index_t r1, const double* y, index_t r2, index_t C, double* out) {
  const index_t B = kGramBlock, nb1 = (r1 + B - 1) / B, nb2 = (r2 + B - 1) / B;
  std::vector<double> x_pad, y_pad;
  auto padded = [&](const double* rows, index_t r, std::vector<double>& buf) {
    if (r >= B) return rows;
    buf.assign(size_t(B * C), 0.0);
    std::copy(rows, rows + r * C, buf.begin());
    return static_cast<const double*>(buf.data());
  };
  const double* xs = padded(x, r1, x_pad);
  const double* ys = padded(y, r2, y_pad);
  const index_t n1 = std::max(r1, B), n2 = std::max(r2, B);
  parallel_for(nb1 * nb2, [&](index_t begin, index_t end) {
    std::vector<double> block(size_t(B * B));
    for (index_t q = begin; q < end; ++q) {
      const index_t bi = (q / nb2) * B, bj = (q % nb2) * B;
      const index_t w1 = std::min(bi, n1 - B), w2 = std::min(bj, n2 - B);  // the window's first row / column
      detail::gemm_serial(false, true, B, B, C, 1.0 / double(C), xs + w1 * C, C, ys + w2 * C, C, 0.0, block.data(), B);
      for (index_t i = bi; i < std::min(bi + B, r1); ++i)
        for (index_t j = bj; j < std::min(bj + B, r2); ++j) out[i * r2 + j] = block[size_t((i - w1) * B + (j - w2))];
    }
  });
}

KernelState input_state(const Inputs& a, const Inputs& b, const PairBatch& batch, bool diagonal, const Shape& in_shape,
                        bool want_ntk) {
  KernelState s;
  s.pairs = batch.pairs();
  std::tie(s.h, s.w) = spatial_of(in_shape);
  s.diagonal = diagonal && s.pixels() > 1;
  s.want_ntk = want_ntk;
  const index_t P = a.pixels, C = a.channels, E = s.entries();
  s.nngp.assign(size_t(s.pairs * E), 0.0);
  if (P == 1 && !batch.self) {
    gram_in_fixed_blocks(a.example(batch.i0), batch.c1, b.example(batch.j0), batch.c2, C, s.nngp.data());
  } else {
    parallel_for(s.pairs, [&](index_t begin, index_t end) {
      for (index_t q = begin; q < end; ++q) {
        const double* x = a.example(batch.first(q));
        const double* y = b.example(batch.second(q));
        double* dst = s.nngp.data() + q * E;
        if (s.diagonal || P == 1) {
          for (index_t p = 0; p < P; ++p) {
            double t = 0;
            for (index_t c = 0; c < C; ++c) t += x[p * C + c] * y[p * C + c];
            dst[p] = t / double(C);
          }
        } else {
          detail::gemm_serial(false, true, P, P, C, 1.0 / double(C), x, C, y, C, 0.0, dst, P);
        }
      }
    });
  }
  if (want_ntk) s.ntk.assign(s.nngp.size(), 0.0);
  return s;
}

KernelState propagate(const Network& net, KernelState input, size_t first, const PairBatch& batch, bool symmetric,
                      const VarianceMaps* maps1, const VarianceMaps* maps2, VarianceMaps* record, index_t record_n) {
  const auto& steps = net.steps();
  if (first >= steps.size()) return input;
  std::vector<KernelState> buffers(net.num_buffers());
  buffers[size_t(steps[first].in)] = std::move(input);
  for (size_t k = first; k < steps.size(); ++k) {
    const auto& st = steps[k];
    // A buffer read by no later step can be moved from.
    const bool last_use = net.last_reader(size_t(st.in)) == int(k);
    KernelState s = last_use ? std::move(buffers[size_t(st.in)]) : buffers[size_t(st.in)];
    if (st.is_join()) {
      net.join_of(st).kernel_rule(s, buffers[size_t(st.skip)]);
    } else {
      const Layer& layer = *net.layers()[size_t(st.layer)];
      if (layer.kernel_needs_gaussian_input()) {
        const index_t P = s.pixels();
        std::vector<double> own = state_diagonal(s);
        s.var1.assign(own.size(), 0.0);
        s.var2.assign(own.size(), 0.0);
        for (index_t q = 0; q < s.pairs; ++q) {
          const index_t i = batch.first(q), j = batch.second(q);
          const bool self_pair = batch.self || (symmetric && i == j);
          for (index_t p = 0; p < P; ++p) {
            const size_t at = size_t(q * P + p);
            s.var1[at] = self_pair ? own[at] : (*maps1)[size_t(st.layer)][size_t(i * P + p)];
            s.var2[at] = self_pair ? own[at] : (*maps2)[size_t(st.layer)][size_t(j * P + p)];
          }
        }
        if (record) {
          auto& map = (*record)[size_t(st.layer)];
          map.resize(size_t(record_n * P));
          for (index_t q = 0; q < s.pairs; ++q)
            std::copy(own.begin() + q * P, own.begin() + (q + 1) * P, map.begin() + (batch.first(q)) * P);
        }
      }
      layer.kernel_rule(s);
    }
    buffers[size_t(st.out)] = std::move(s);
  }
  return std::move(buffers.back());
}

index_t batch_pairs(const Network& net, bool diagonal) {
  index_t widest = 1;
  for (size_t b = 0; b < net.num_buffers(); ++b) {
    const auto [h, w] = spatial_of(net.buffer_shape(b));
    widest = std::max(widest, diagonal ? h * w : h * w * h * w);
  }
  const index_t bytes_per_pair = widest * 8 * 2 * 4;  // Σ and Θ, a few live buffers
  return std::max<index_t>(1, (index_t(256) << 20) / bytes_per_pair);
}

std::uint64_t variance_map_bytes(const Network& net, index_t n) {
  std::uint64_t bytes = 0;
  for (const auto& st : net.steps())
    if (!st.is_join() && net.layers()[size_t(st.layer)]->kernel_needs_gaussian_input()) {
      const auto [h, w] = spatial_of(net.buffer_shape(size_t(st.in)));
      bytes += std::uint64_t(n) * std::uint64_t(h * w) * 8 * 3;  // the offset path keeps √ and 1/√ too
    }
  return bytes;
}

}  // namespace detail
}  // namespace ntk
