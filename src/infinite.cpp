// Infinite-width kernels: input kernel by GEMM, then every layer's kernel_rule in turn.
#include "ntk/infinite.hpp"

#include <map>
#include <mutex>
#include <tuple>

#include "blas.hpp"
#include "ntk/empirical.hpp"
#include "ntk/error.hpp"
#include "ntk/parallel.hpp"

namespace ntk {

void Layer::kernel_rule(KernelState&) const {
  throw NotSupported("infinite-width kernels: layer " + describe() + " has no kernel rule (yet)");
}

namespace detail {

const GaussHermiteRule& gauss_hermite(int n) {
  static std::mutex mu;
  static std::map<int, GaussHermiteRule> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(n);
  if (it != cache.end()) return it->second;
  if (n < 1 || n > 200) throw InvalidArgument("Gauss-Hermite degree must be in [1, 200]");
  // Orthonormal Hermite recurrence p_j = t·√(2/j)·p_{j−1} − √((j−1)/j)·p_{j−2}, Newton on the
  // roots (Numerical Recipes' gauher); w = 2 / p'_n², the weight of e^{-t²}.
  GaussHermiteRule r;
  r.nodes.assign(size_t(n), 0.0);
  r.weights.assign(size_t(n), 0.0);
  const double pim4 = 0.7511255444649425;  // π^{-1/4}
  const int m = (n + 1) / 2;
  double z = 0;
  for (int i = 0; i < m; ++i) {
    if (i == 0)
      z = std::sqrt(double(2 * n + 1)) - 1.85575 * std::pow(double(2 * n + 1), -0.16667);
    else if (i == 1)
      z -= 1.14 * std::pow(double(n), 0.426) / z;
    else if (i == 2)
      z = 1.86 * z - 0.86 * r.nodes[0];
    else if (i == 3)
      z = 1.91 * z - 0.91 * r.nodes[1];
    else
      z = 2.0 * z - r.nodes[size_t(i - 2)];
    double pp = 0;
    for (int it2 = 0; it2 < 100; ++it2) {
      double p1 = pim4, p2 = 0;
      for (int j = 1; j <= n; ++j) {
        const double p3 = p2;
        p2 = p1;
        p1 = z * std::sqrt(2.0 / j) * p2 - std::sqrt(double(j - 1) / j) * p3;
      }
      pp = std::sqrt(2.0 * n) * p2;
      const double z1 = z;
      z = z1 - p1 / pp;
      if (std::abs(z - z1) <= 1e-15 * std::max(1.0, std::abs(z))) break;
    }
    r.nodes[size_t(i)] = z;  // temporarily descending from the largest
    r.weights[size_t(i)] = 2.0 / (pp * pp);
  }
  // Mirror: node i (largest first) and -node i.
  GaussHermiteRule out;
  out.nodes.resize(size_t(n));
  out.weights.resize(size_t(n));
  for (int i = 0; i < m; ++i) {
    out.nodes[size_t(i)] = -r.nodes[size_t(i)];
    out.weights[size_t(i)] = r.weights[size_t(i)];
    out.nodes[size_t(n - 1 - i)] = r.nodes[size_t(i)];
    out.weights[size_t(n - 1 - i)] = r.weights[size_t(i)];
  }
  if (n % 2 == 1) out.nodes[size_t(m - 1)] = 0.0;
  return cache.emplace(n, std::move(out)).first->second;
}

}  // namespace detail

namespace {

// Which kernel the program admits, checked before any work: every nonlinearity must see a
// Gaussian input, every Residual block must end in a zero-mean random layer (so the branches'
// kernels add), and the output must be a vector. Returns whether the full spatial covariance is
// needed (some layer pools) or only its diagonal.
bool check_program(const Network& net) {
  const auto& layers = net.layers();
  const auto& paths = net.layer_paths();
  std::vector<bool> gaussian(net.num_buffers(), false), fresh(net.num_buffers(), false);
  std::vector<std::string> made_by(net.num_buffers(), "the network input");
  bool full = false;
  for (const auto& st : net.steps()) {
    const size_t in = size_t(st.in), out = size_t(st.out);
    if (st.layer < 0) {
      if (!fresh[in])
        throw NotSupported("infinite-width kernels: a Residual block must end in a Dense or Conv layer (a zero-mean "
                           "random layer) for its kernel to be the sum of the two branches; this one ends in " +
                           made_by[in]);
      gaussian[out] = gaussian[in] && gaussian[size_t(st.skip)];
      fresh[out] = false;
      made_by[out] = "a Residual sum";
      continue;
    }
    const Layer& l = *layers[size_t(st.layer)];
    const std::string what = "layer " + paths[size_t(st.layer)] + " " + l.describe();
    if (l.kernel_needs_gaussian_input() && !gaussian[in])
      throw NotSupported("infinite-width kernels: " + what + " gets a non-Gaussian input (" + made_by[in] +
                         "), so its kernel has no exact rule; put a Dense or Conv layer before it");
    full = full || l.kernel_needs_full_covariance();
    gaussian[out] = l.kernel_output_gaussian(gaussian[in]);
    fresh[out] = l.kernel_output_gaussian(false) || (!l.kernel_needs_gaussian_input() && fresh[in]);
    made_by[out] = "the output of " + what;
  }
  if (net.output_shape().size() != 1)
    throw NotSupported("infinite-width kernels: the network's output " + shape_string(net.output_shape()) +
                       " is not a vector; end it with GlobalAvgPool or Flatten (then Dense)");
  return full;
}

// Spatial extent (h, w) of an activation shape: (H, W, C) images, (L, C) sequences, (d) vectors.
std::pair<index_t, index_t> spatial_of(const Shape& s) {
  if (s.size() >= 3) return {s[0], s[1]};
  if (s.size() == 2) return {s[0], 1};
  return {1, 1};
}

// Inputs in float64, as (N, P, C) with P pixels of C channels.
struct Inputs {
  std::vector<double> x;
  index_t n = 0, pixels = 1, channels = 1;
  const double* example(index_t i) const { return x.data() + i * pixels * channels; }
};

template <class T>
Inputs read_inputs(const Network& net, const Array<T>& a, const char* what) {
  net.check_inputs(a, what);
  Inputs in;
  in.x.assign(a.data(), a.data() + a.size());
  in.n = a.dim(0);
  const auto [h, w] = spatial_of(net.input_shape());
  in.pixels = h * w;
  in.channels = net.input_size() / in.pixels;
  return in;
}

// A batch of pairs (i of a, j of b): the grid [i0, i0 + c1) × [j0, j0 + c2), or, with `self`, the
// pairs (i, i) for i in [i0, i0 + c1) of a.
struct PairBatch {
  index_t i0 = 0, c1 = 0, j0 = 0, c2 = 0;
  bool self = false;
  index_t pairs() const { return self ? c1 : c1 * c2; }
  index_t first(index_t q) const { return self ? i0 + q : i0 + q / c2; }
  index_t second(index_t q) const { return self ? i0 + q : j0 + q % c2; }
};

// Σ⁰(p, p') = x(p)·x'(p')/C for every pair; Θ⁰ = 0. A GEMM over the grid for vectors, one per
// pair over its pixels for images.
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
    detail::gemm(false, true, batch.c1, batch.c2, C, 1.0 / double(C), a.example(batch.i0), C, b.example(batch.j0), C,
                 0.0, s.nngp.data(), batch.c2);
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

// The diagonal Σ(p, p) of each pair of a state (its per-pixel variances when the pairs are (x, x)).
std::vector<double> state_diagonal(const KernelState& s) {
  const index_t P = s.pixels(), E = s.entries();
  std::vector<double> d(static_cast<size_t>(s.pairs * P));
  for (index_t q = 0; q < s.pairs; ++q)
    for (index_t p = 0; p < P; ++p) d[size_t(q * P + p)] = s.nngp[size_t(q * E + (s.diagonal ? p : p * P + p))];
  return d;
}

// Per layer with a variance-reading rule, per example, its input's variances Σ(x, x)(p, p).
using VarianceMaps = std::vector<std::vector<double>>;  // [layer] -> (n, pixels)

// Runs the program on a batch of pairs. Before each layer the variances are filled in: for pairs
// (x, x) from the state itself (so ρ = 1 exactly on them) and recorded into `record`; otherwise
// from the maps of x1 and x2.
KernelState propagate(const Network& net, KernelState input, const PairBatch& batch, bool symmetric,
                      const VarianceMaps* maps1, const VarianceMaps* maps2, VarianceMaps* record, index_t record_n) {
  std::vector<KernelState> buffers(net.num_buffers());
  buffers[0] = std::move(input);
  const auto& steps = net.steps();
  for (size_t k = 0; k < steps.size(); ++k) {
    const auto& st = steps[k];
    // A buffer read by no later step can be moved from.
    const bool last_use = net.last_reader(size_t(st.in)) == int(k);
    KernelState s = last_use ? std::move(buffers[size_t(st.in)]) : buffers[size_t(st.in)];
    if (st.layer < 0) {
      const KernelState& skip = buffers[size_t(st.skip)];
      for (size_t e = 0; e < s.nngp.size(); ++e) s.nngp[e] += skip.nngp[e];
      for (size_t e = 0; e < s.ntk.size(); ++e) s.ntk[e] += skip.ntk[e];
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

// Pairs per batch: the grid of vectors is cheap per pair; image pairs hold P² (or P) entries in
// every live buffer, so batches stay near 256 MiB.
index_t batch_pairs(const Network& net, bool diagonal) {
  index_t widest = 1;
  for (size_t b = 0; b < net.num_buffers(); ++b) {
    const auto [h, w] = spatial_of(net.buffer_shape(b));
    widest = std::max(widest, diagonal ? h * w : h * w * h * w);
  }
  const index_t bytes_per_pair = widest * 8 * 2 * 4;  // Σ and Θ, a few live buffers
  return std::max<index_t>(1, (index_t(256) << 20) / bytes_per_pair);
}

}  // namespace

template <class T>
Array<T> infinite_kernel(const Network& net, const Array<T>& x1, const std::type_identity_t<Array<T>>* x2,
                         KernelOptions options) {
  const bool full = check_program(net);
  const bool diagonal = !full;
  const Inputs a = read_inputs(net, x1, "x1");
  const bool symmetric = x2 == nullptr || x2 == &x1;
  const Inputs b = symmetric ? Inputs() : read_inputs(net, *x2, "x2");
  const Inputs& bb = symmetric ? a : b;
  const bool want_ntk = options.get == KernelOptions::ntk;
  const index_t n1 = a.n, n2 = bb.n;
  const index_t per_batch = batch_pairs(net, diagonal);

  // Pass 1: the pairs (x, x) of every example, recording the variances each rule reads.
  auto self_pass = [&](const Inputs& in, VarianceMaps& maps) {
    maps.assign(net.layers().size(), {});
    for (index_t i0 = 0; i0 < in.n; i0 += per_batch) {
      PairBatch batch{i0, std::min(per_batch, in.n - i0), i0, 0, true};
      propagate(net, input_state(in, in, batch, diagonal, net.input_shape(), false), batch, false, nullptr, nullptr,
                &maps, in.n);
    }
  };
  VarianceMaps maps1, maps2;
  self_pass(a, maps1);
  if (!symmetric) self_pass(b, maps2);
  const VarianceMaps& m2 = symmetric ? maps1 : maps2;

  // Pass 2: tiles of pairs; the symmetric path computes tiles j0 >= i0 and mirrors them.
  Array<T> out(Shape{n1, n2});
  const index_t side = std::max<index_t>(1, static_cast<index_t>(std::sqrt(double(per_batch))));
  const index_t t1 = std::min(n1, side), t2 = symmetric ? t1 : std::min(n2, std::max<index_t>(1, per_batch / t1));
  for (index_t i0 = 0; i0 < n1; i0 += t1)
    for (index_t j0 = symmetric ? i0 : 0; j0 < n2; j0 += t2) {
      PairBatch batch{i0, std::min(t1, n1 - i0), j0, std::min(t2, n2 - j0), false};
      KernelState s = propagate(net, input_state(a, bb, batch, diagonal, net.input_shape(), want_ntk), batch, symmetric,
                                &maps1, &m2, nullptr, 0);
      const std::vector<double>& k = want_ntk ? s.ntk : s.nngp;
      for (index_t q = 0; q < batch.pairs(); ++q) {
        const index_t i = batch.first(q), j = batch.second(q);
        if (symmetric && j < i) continue;  // its mirror image (j, i) is the one written
        out[i * n2 + j] = static_cast<T>(k[size_t(q)]);
        if (symmetric) out[j * n2 + i] = static_cast<T>(k[size_t(q)]);
      }
    }
  return out;
}

template <class T>
Array<T> monte_carlo_kernel(const Network& net, const Array<T>& x1, const std::type_identity_t<Array<T>>* x2,
                            KernelOptions options, int samples, std::uint64_t seed) {
  if (samples < 1) throw InvalidArgument("Monte Carlo kernel: samples must be >= 1, got " + std::to_string(samples));
  const EntkMode trace = parse_entk_mode("trace");
  EntkOptions o;
  o.mode = trace;
  Array<T> mean;
  for (int s = 0; s < samples; ++s) {
    const std::vector<T> theta = net.init<T>(seed + std::uint64_t(s));
    Array<T> k = options.get == KernelOptions::ntk ? empirical_ntk(net, theta, x1, x2, o)
                                                   : empirical_nngp(net, theta, x1, x2, trace);
    if (s == 0) mean = Array<T>(k.shape());
    for (index_t e = 0; e < k.size(); ++e) mean[e] += k[e] / T(samples);
  }
  return mean;
}

template Array<float> monte_carlo_kernel(const Network&, const Array<float>&, const Array<float>*, KernelOptions, int,
                                         std::uint64_t);
template Array<double> monte_carlo_kernel(const Network&, const Array<double>&, const Array<double>*, KernelOptions,
                                          int, std::uint64_t);
template Array<float> infinite_kernel(const Network&, const Array<float>&, const Array<float>*, KernelOptions);
template Array<double> infinite_kernel(const Network&, const Array<double>&, const Array<double>*, KernelOptions);

}  // namespace ntk
