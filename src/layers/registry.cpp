#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>

#include "../blas.hpp"
#include "../check.hpp"
#include "../simd.hpp"
#include "layers.hpp"
#include "ntk/error.hpp"
#include "ntk/parallel.hpp"

namespace ntk {

Parameterization parse_parameterization(const std::string& s) {
  if (s == "ntk") return Parameterization::ntk;
  if (s == "standard") return Parameterization::standard;
  throw InvalidArgument("parameterization must be 'ntk' or 'standard', got '" + s + "'");
}

const char* to_string(Parameterization p) { return p == Parameterization::ntk ? "ntk" : "standard"; }

void Layer::build(const Shape& in_shape) {
  out_shape_ = infer_shape(in_shape);
  in_shape_ = in_shape;
  in_size_ = numel(in_shape_);
  out_size_ = numel(out_shape_);
}

index_t Layer::num_params() const {
  index_t total = 0;
  for (const auto& p : param_specs()) total += numel(p.shape);
  return total;
}

void Layer::vjp_factored(const float*, const float*, const float*, index_t, index_t, float*) const {
  NTK_ASSERT(false, name() + " has no factored VJP (has_vjp_factored is false)");
}
void Layer::vjp_factored(const double*, const double*, const double*, index_t, index_t, double*) const {
  NTK_ASSERT(false, name() + " has no factored VJP (has_vjp_factored is false)");
}

namespace {
using Factory = std::function<std::unique_ptr<Layer>(const LayerSpec&, const NetworkDefaults&)>;

const std::map<std::string, Factory>& registry() {
  static const std::map<std::string, Factory> r = [] {
    std::map<std::string, Factory> m;
    m["Dense"] = detail::make_dense;
    m["Conv"] = detail::make_conv;
    for (const char* name : {"Relu", "LeakyRelu", "Abs", "Erf", "Gelu", "Tanh", "Sigmoid", "Identity"})
      m[name] = [](const LayerSpec& s, const NetworkDefaults&) { return detail::make_activation(s); };
    m["AvgPool"] = [](const LayerSpec& s, const NetworkDefaults&) { return detail::make_avg_pool(s); };
    m["MaxPool"] = [](const LayerSpec& s, const NetworkDefaults&) { return detail::make_max_pool(s); };
    m["GlobalAvgPool"] = [](const LayerSpec& s, const NetworkDefaults&) { return detail::make_global_avg_pool(s); };
    m["Flatten"] = [](const LayerSpec& s, const NetworkDefaults&) { return detail::make_flatten(s); };
    m["LayerNorm"] = [](const LayerSpec& s, const NetworkDefaults&) { return detail::make_layer_norm(s); };
    m["BatchNorm"] = [](const LayerSpec& s, const NetworkDefaults&) { return detail::make_batch_norm(s); };
    return m;
  }();
  return r;
}
}  // namespace

std::vector<std::string> layer_names() {
  std::vector<std::string> names;
  for (const auto& [name, f] : registry()) names.push_back(name);
  names.push_back("Residual");
  return names;
}

std::unique_ptr<Layer> make_layer(const LayerSpec& spec, const NetworkDefaults& defaults) {
  auto it = registry().find(spec.name);
  if (it == registry().end()) {
    std::string known;
    for (const auto& n : layer_names()) known += (known.empty() ? "" : ", ") + n;
    throw ParseError("spec: unknown layer '" + spec.name + "' at position " + std::to_string(spec.pos) +
                     " (known layers: " + known + ")");
  }
  if (!spec.children.empty() || !spec.lists.empty())
    throw ParseError("spec: " + spec.name + " at position " + std::to_string(spec.pos) +
                     " does not take layers as arguments (only Residual does)");
  return it->second(spec, defaults);
}

namespace detail {

AffineOptions read_affine_options(const ArgReader& args, const NetworkDefaults& d) {
  AffineOptions o;
  o.W_std = args.get_double("W_std", d.W_std);
  o.b_std = args.get_optional_double("b_std", d.b_std);
  std::string p = args.get_choice("parameterization", {"ntk", "standard"}, to_string(d.parameterization));
  o.parameterization = parse_parameterization(p);
  return o;
}

std::string format_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  // Prefer the shortest text that round-trips.
  for (int prec = 1; prec <= 17; ++prec) {
    char s[32];
    std::snprintf(s, sizeof s, "%.*g", prec, v);
    if (std::strtod(s, nullptr) == v) return s;
  }
  return buf;
}

std::string Padding2d::to_string() const {
  switch (kind) {
    case Kind::valid: return "VALID";
    case Kind::same: return "SAME";
    case Kind::integer: break;
  }
  return h == w ? std::to_string(h) : std::to_string(h) + "x" + std::to_string(w);
}

Padding2d read_padding(const ArgReader& args, index_t kh, index_t kw) {
  Padding2d p;
  const SpecArg* a = args.find("padding");
  if (!a || a->value == "VALID") return p;
  if (a->value == "SAME") {
    p.kind = Padding2d::Kind::same;
    return p;
  }
  // `3` or `1x2`: non-negative integers (get_size2 takes positive sizes only, and 0 is a valid
  // padding on one axis, as in padding=1x0).
  const std::string& s = a->value;
  auto part = [&](size_t begin, size_t end) -> index_t {
    long long v = -1;
    auto r = std::from_chars(s.data() + begin, s.data() + end, v);
    if (r.ec != std::errc() || r.ptr != s.data() + end || begin == end)
      args.fail(*a, "'padding' must be VALID, SAME or zeros per side as an integer such as 1 or 1x2");
    if (v < 0) args.fail(*a, "'padding' must not be negative");
    return index_t(v);
  };
  const size_t x = s.find('x');
  p.kind = Padding2d::Kind::integer;
  p.h = part(0, x == std::string::npos ? s.size() : x);
  p.w = x == std::string::npos ? p.h : part(x + 1, s.size());
  if (p.h > kh / 2 || p.w > kw / 2)
    args.fail(*a, "'padding' must be at most half the window (" + std::to_string(kh) + "x" + std::to_string(kw) +
                      ": at most " + std::to_string(kh / 2) + "x" + std::to_string(kw / 2) + ")");
  return p;
}

Window2d window_geometry(index_t h, index_t w, index_t kh, index_t kw, index_t sh, index_t sw,
                         const Padding2d& padding, const std::string& what) {
  Window2d g;
  if (padding.kind == Padding2d::Kind::same) {
    g.out_h = (h + sh - 1) / sh;
    g.out_w = (w + sw - 1) / sw;
    g.pad_top = std::max<index_t>((g.out_h - 1) * sh + kh - h, 0) / 2;
    g.pad_left = std::max<index_t>((g.out_w - 1) * sw + kw - w, 0) / 2;
    return g;
  }
  const index_t ph = padding.h, pw = padding.w;  // 0 under VALID
  if (h + 2 * ph < kh || w + 2 * pw < kw) {
    const std::string window = what + " " + std::to_string(kh) + "x" + std::to_string(kw);
    const std::string input = std::to_string(h) + ", " + std::to_string(w);
    if (padding.kind == Padding2d::Kind::valid)
      throw InvalidArgument(window + " is larger than its input (" + input + ") with padding=VALID (use padding=SAME?)");
    throw InvalidArgument(window + " is larger than its input (" + input + ") padded by " + std::to_string(ph) + "x" +
                          std::to_string(pw) + " zeros (padding=" + padding.to_string() +
                          "): no output pixel; use more padding or a smaller window");
  }
  g.out_h = (h + 2 * ph - kh) / sh + 1;
  g.out_w = (w + 2 * pw - kw) / sw + 1;
  g.pad_top = ph, g.pad_left = pw;
  return g;
}

std::string describe_affine(const AffineOptions& o) {
  return "W_std=" + format_number(o.W_std) + ", b_std=" + (o.b_std ? format_number(*o.b_std) : "none") +
         ", parameterization=" + to_string(o.parameterization);
}

template <class T>
NTK_SIMD_CLONES void affine_kernel_rows(const AffineOptions& o, double fan_in, index_t n, T* nngp, T* ntk,
                                        double scale) {
  const double w2 = o.W_std * o.W_std;
  const T b2 = T(o.b_std ? *o.b_std * *o.b_std : 0.0), one = T(o.b_std ? 1.0 : 0.0);
  const T w2s = T(w2 * scale), fans = T(fan_in * scale);
  const bool standard = o.parameterization == Parameterization::standard;
  for (index_t e = 0; e < n; ++e) {
    const T m = nngp[e], sig = w2s * m + b2;
    if (ntk) ntk[e] = standard ? fans * m + one + w2s * ntk[e] : sig + w2s * ntk[e];
    nngp[e] = sig;
  }
}
template void affine_kernel_rows(const AffineOptions&, double, index_t, double*, double*, double);
template void affine_kernel_rows(const AffineOptions&, double, index_t, float*, float*, double);

}  // namespace detail
}  // namespace ntk

namespace ntk {

namespace {

template <class T>
void accumulate_paired_t(const T* u, index_t n1, const T* v, index_t n2, index_t k, index_t d, const T* w, T* block) {
  // Chunks of u-side examples, each one GEMM and one reordering into the block, spread over the
  // threads; a chunk's product stays near 16 MiB. When u and v are the same rows (a symmetric
  // diagonal tile) a chunk computes only the columns from its own first example on and mirrors
  // them, as SYRK does; smaller chunks, visited from both ends so threads get equal work, bring
  // the cost near half.
  const bool symmetric = u == v && n1 == n2;
  const index_t row = n2 * k * k;  // block elements per u example
  // The chunks depend on the sizes only, never on the thread count (a chunk is one GEMM, and
  // OpenBLAS rounds by the shapes it is given): kParallelChunks of them at least keep the threads
  // busy, four times as many in the symmetric case.
  index_t chunk = std::clamp<index_t>((index_t(16) << 20) / std::max<index_t>(1, row * index_t(sizeof(T))), 1, n1);
  const index_t parts = (symmetric ? 4 : 1) * kParallelChunks;
  chunk = std::min(chunk, std::max<index_t>(1, (n1 + parts - 1) / parts));
  const index_t chunks = (n1 + chunk - 1) / chunk;
  parallel_for(chunks, [&](index_t e_begin, index_t e_end) {
    // Reused across calls: a fresh buffer would cost page faults and zeroing on every tile pair.
    thread_local std::vector<T> product;
    if (product.size() < static_cast<size_t>(chunk * row)) product.resize(static_cast<size_t>(chunk * row));
    for (index_t e = e_begin; e < e_end; ++e) {
      const index_t c = symmetric ? (e % 2 == 0 ? e / 2 : chunks - 1 - e / 2) : e;
      const index_t i0 = c * chunk, ci = std::min(chunk, n1 - i0);
      const index_t j0 = symmetric ? i0 : 0, cols = (n2 - j0) * k;
      // product[(i, a), (j, b)] = u_ia · v_jb for j >= j0
      detail::gemm_serial(false, true, ci * k, cols, d, T(1), u + i0 * k * d, d, v + j0 * k * d, d, T(0), product.data(),
                          cols);
      for (index_t i = 0; i < ci; ++i)
        for (index_t j = j0; j < n2; ++j) {
          const T weight = w ? w[(i0 + i) * n2 + j] : T(1);
          T* dst = block + ((i0 + i) * n2 + j) * k * k;
          T* mirror = symmetric && j >= i0 + ci ? block + (j * n2 + i0 + i) * k * k : nullptr;
          for (index_t a = 0; a < k; ++a) {
            const T* src = product.data() + (i * k + a) * cols + (j - j0) * k;
            for (index_t b = 0; b < k; ++b) dst[a * k + b] += weight * src[b];
            if (mirror)
              for (index_t b = 0; b < k; ++b) mirror[b * k + a] += weight * src[b];
          }
        }
    }
  });
}

template <class T>
void contract_rows_t(const T* rows1, index_t n1, const T* rows2, index_t n2, index_t k, index_t P, bool paired, T* block) {
  if (paired) {
    accumulate_paired_t(rows1, n1, rows2, n2, k, P, static_cast<const T*>(nullptr), block);
    return;
  }
  if (rows1 != rows2 || n1 != n2) {
    for (index_t kk = 0; kk < k; ++kk)
      detail::gemm(false, true, n1, n2, P, T(1), rows1 + kk * P, k * P, rows2 + kk * P, k * P, T(1), block + kk * n1 * n2, n2);
    return;
  }
  // Symmetric diagonal tile: per direction, row chunks compute the columns from their first row
  // on (SYRK-style) into a scratch strip, then add it and its mirror image.
  const index_t chunk = std::max<index_t>(1, std::min<index_t>(64, (n1 + 3) / 4));
  const index_t chunks = (n1 + chunk - 1) / chunk;
  parallel_for(k * chunks, [&](index_t e_begin, index_t e_end) {
    thread_local std::vector<T> strip;
    if (strip.size() < static_cast<size_t>(chunk * n2)) strip.resize(static_cast<size_t>(chunk * n2));
    for (index_t e = e_begin; e < e_end; ++e) {
      const index_t kk = e / chunks, c = e % chunks, i0 = c * chunk, ci = std::min(chunk, n1 - i0), cols = n2 - i0;
      detail::gemm_serial(false, true, ci, cols, P, T(1), rows1 + (i0 * k + kk) * P, k * P, rows1 + (i0 * k + kk) * P,
                          k * P, T(0), strip.data(), cols);
      T* plane = block + kk * n1 * n2;
      for (index_t i = 0; i < ci; ++i)
        for (index_t j = i0; j < n2; ++j) {
          const T value = strip[static_cast<size_t>(i * cols + j - i0)];
          plane[(i0 + i) * n2 + j] += value;
          if (j >= i0 + ci) plane[j * n2 + i0 + i] += value;
        }
    }
  });
}

}  // namespace

void contract_rows(const float* r1, index_t n1, const float* r2, index_t n2, index_t k, index_t P, bool paired, float* b) {
  contract_rows_t(r1, n1, r2, n2, k, P, paired, b);
}
void contract_rows(const double* r1, index_t n1, const double* r2, index_t n2, index_t k, index_t P, bool paired, double* b) {
  contract_rows_t(r1, n1, r2, n2, k, P, paired, b);
}
void accumulate_paired(const float* u, index_t n1, const float* v, index_t n2, index_t k, index_t d, const float* w,
                       float* block) {
  accumulate_paired_t(u, n1, v, n2, k, d, w, block);
}
void accumulate_paired(const double* u, index_t n1, const double* v, index_t n2, index_t k, index_t d, const double* w,
                       double* block) {
  accumulate_paired_t(u, n1, v, n2, k, d, w, block);
}

}  // namespace ntk
