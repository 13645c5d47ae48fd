// Conv: 2-D convolution over NHWC inputs with HWIO filters, stride and VALID / SAME / integer
// padding (SAME as in TensorFlow and neural-tangents: the extra pixel of odd padding goes after;
// integer as in PyTorch: the same number of zeros on both sides; Padding2d in layers.hpp). Every
// route below reads the geometry only through pad_top_ / pad_left_ and the output size, so the
// three kinds share it. Computed per example as im2col patches (Ho·Wo × kh·kw·C) times W reshaped
// (kh·kw·C × O), a GEMM.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "../check.hpp"
#include "../blas.hpp"
#include "../simd.hpp"
#include "layers.hpp"
#include "ntk/error.hpp"
#include "ntk/parallel.hpp"

namespace ntk::detail {
namespace {

// Patches of one block of output pixels in the forward pass: about one core's L2 cache.
constexpr index_t kPatchBlockBytes = index_t(1024) << 10;
constexpr index_t kMinBlockRows = 128;
// V of a group of directions in vjp_factored; Q of a chunk of examples in the pixel-pair block.
constexpr index_t kFactoredBytes = index_t(4) << 20;
constexpr index_t kPixelPairBytes = index_t(32) << 20;

// 64 bytes of T as one GCC vector (an AVX-512 register; two AVX2 or four SSE registers).
template <class T>
struct Vec64;
template <>
struct Vec64<float> {
  typedef float type __attribute__((vector_size(64)));
};
template <>
struct Vec64<double> {
  typedef double type __attribute__((vector_size(64)));
};
template <class T>
using Vec64T = typename Vec64<T>::type;
// A thread's buffers for Conv::factored_binary: the tables, the bit patterns of the mask and the
// accumulators of every pixel. Vectors are held in an alignas(64) box: GCC drops the alignment
// of a vector type used as a template argument, and std::vector<Vec64T<T>> would be 16-aligned.
template <class T>
struct FourRussians {
  struct alignas(64) Box {
    Vec64T<T> v;
  };
  std::vector<Box> table_boxes, acc_boxes;
  std::vector<uint8_t> codes;
  Vec64T<T>* table() { return &table_boxes.data()->v; }
  Vec64T<T>* acc() { return &acc_boxes.data()->v; }
};

class Conv final : public LayerImpl<Conv> {
 public:
  Conv(index_t out, std::pair<long long, long long> kernel, std::pair<long long, long long> stride, Padding2d padding,
       AffineOptions o)
      : out_(out), kh_(kernel.first), kw_(kernel.second), sh_(stride.first), sw_(stride.second), padding_(padding), o_(o) {}

  std::string name() const override { return "Conv"; }
  bool output_channel_params() const override { return true; }
  std::string describe() const override {
    return "Conv(" + std::to_string(out_) + ", " + std::to_string(kh_) + "x" + std::to_string(kw_) +
           ", stride=" + std::to_string(sh_) + "x" + std::to_string(sw_) + ", padding=" + padding_.to_string() +
           ", " + describe_affine(o_) + ")";
  }

  std::vector<ParamSpec> param_specs() const override {
    bool standard = o_.parameterization == Parameterization::standard;
    std::vector<ParamSpec> p{{"W", {kh_, kw_, c_, out_}, standard ? o_.W_std / std::sqrt(double(taps())) : 1.0}};
    if (o_.b_std) p.push_back({"b", {out_}, standard ? *o_.b_std : 1.0});
    return p;
  }

  template <class T>
  void forward_t(const T* th, const T* x, T* y, index_t n) const {
    // Each thread builds the patches of a block of output rows (pixels of one or more examples)
    // and multiplies them by W while they are in its cache: a whole batch's patch matrix (kh·kw
    // times the input) would go to memory and back. Blocks span examples, so that W, which BLAS
    // packs on every call, is amortized over many rows even when an example has few pixels.
    const index_t P = pixels_out(), F = taps(), total = n * P, rows = block_rows<T>(F, total);
    parallel_for((total + rows - 1) / rows, [&](index_t begin, index_t end) {
      std::vector<T> patches(static_cast<size_t>(rows * F));
      for (index_t b = begin; b < end; ++b) {
        const index_t r0 = b * rows, r1 = std::min(total, r0 + rows);
        for (index_t r = r0; r < r1;) {  // the block's pieces, one per example
          const index_t i = r / P, p1 = std::min(P, r1 - i * P);
          im2col(x + i * in_size(), patches.data() + (r - r0) * F, r - i * P, p1);
          r = i * P + p1;
        }
        T* ys = y + r0 * out_;  // output rows are contiguous across examples
        gemm_serial(false, false, r1 - r0, out_, F, w_scale<T>(), patches.data(), F, th, out_, T(0), ys, out_);
        if (o_.b_std) add_bias(th + F * out_, ys, r1 - r0);
      }
    });
  }

  template <class T>
  void vjp_t(const T* th, const T* x, const T*, index_t n, index_t k, const T* g_out, T* g_in,
             ParamCotangent<T> g_th) const {
    const T s = w_scale<T>();
    const index_t P = pixels_out(), F = taps(), Pin = h_ * w_;
    // Stride 1: the input cotangent is a convolution of the output cotangent with the flipped,
    // transposed filter: input pixel q gathers tap (dy, dx) from output pixel q + pad − (dy, dx).
    // Blocks of those gathered rows (k·H·W of them, kh·kw·O wide) times W reshaped (kh·kw·O × C)
    // are GEMMs as deep as the forward pass's, built in cache like its patches. Other strides:
    // (k·P × O)·Wᵀ gives every patch's cotangent and col2im scatter-adds them back to pixels.
    const bool gathered = sh_ == 1 && sw_ == 1;
    const index_t G = kh_ * kw_ * out_;
    const std::vector<T> w_flipped = g_in && gathered ? flipped_filter(th) : std::vector<T>();
    if (g_in && gathered) {
      // Rows (example, direction, input pixel) are contiguous in g_in across examples: blocks span
      // them, as in the forward pass.
      const index_t total = n * k * Pin, rows = block_rows<T>(G, total);
      parallel_for((total + rows - 1) / rows, [&](index_t begin, index_t end) {
        std::vector<T> gathered_rows(static_cast<size_t>(rows * G));
        for (index_t b = begin; b < end; ++b) {
          const index_t r0 = b * rows, r1 = std::min(total, r0 + rows);
          gather_cotangents(g_out, r0, r1, gathered_rows.data());
          gemm_serial(false, false, r1 - r0, c_, G, s, gathered_rows.data(), G, w_flipped.data(), c_, T(0),
                      g_in + r0 * c_, c_);
        }
      });
    }
    if (!g_th.data && (!g_in || gathered)) return;
    // Examples run in parallel when their parameter cotangents go to separate rows (or nowhere).
    const bool parallel = !g_th.data || g_th.per_example;
    parallel_for(n, [&](index_t i_begin, index_t i_end) {
      std::vector<T> patches(static_cast<size_t>(g_th.data ? P * F : 0));
      std::vector<T> grad_patches(static_cast<size_t>(g_in && !gathered ? k * P * F : 0));
      for (index_t i = i_begin; i < i_end; ++i) {
        const T* gi = g_out + i * k * out_size();
        if (g_in && !gathered) {
          gemm_serial(false, true, k * P, F, out_, s, gi, out_, th, out_, T(0), grad_patches.data(), F);
          for (index_t kk = 0; kk < k; ++kk) col2im(grad_patches.data() + kk * P * F, g_in + (i * k + kk) * in_size());
        }
        if (!g_th.data) continue;
        im2col(x + i * in_size(), patches.data());
        for (index_t kk = 0; kk < k; ++kk) {
          // patchesᵀ (F × P) times direction kk's cotangent (P × O), straight into its row.
          T* dst = g_th.row(i, kk, k);
          const T* g = gi + kk * out_size();
          gemm_serial(true, false, F, out_, P, s, patches.data(), F, g, out_, T(1), dst, out_);
          if (o_.b_std) {
            T* db = dst + F * out_;
            const T c = b_scale<T>();
            for (index_t p = 0; p < P; ++p)
              for (index_t o = 0; o < out_; ++o) db[o] += c * g[p * out_ + o];
          }
        }
      }
    }, parallel ? 0 : 1);
  }

  // Input cotangents of factored output cotangents G_ia = M_i ⊙ (1 u_iaᵀ) (Layer::vjp_factored),
  // stride 1: g_in,ia = gathered(M_i) · V_ia with V_ia[(dy, dx, o), c] = s·W[dy, dx, c, o]·u_ia(o),
  // so the mask is gathered once per example instead of once per direction, and directions side
  // by side make one wide GEMM (k·C columns) in place of k narrow ones (C columns). A mask with
  // two values (behind a ReLU) takes table lookups instead of the GEMM (factored_binary).
  bool has_vjp_factored() const override { return sh_ == 1 && sw_ == 1; }
  void vjp_factored(const float* th, const float* mask, const float* u, index_t n, index_t k,
                    float* g_in) const override {
    factored_t(th, mask, u, n, k, g_in);
  }
  void vjp_factored(const double* th, const double* mask, const double* u, index_t n, index_t k,
                    double* g_in) const override {
    factored_t(th, mask, u, n, k, g_in);
  }
  template <class T>
  void factored_t(const T* th, const T* mask, const T* u, index_t n, index_t k, T* g_in) const {
    NTK_ASSERT(has_vjp_factored(), "Conv::vjp_factored: strided convolutions have no factored route");
    const T s = w_scale<T>();
    const index_t G = kh_ * kw_ * out_, Pin = h_ * w_;
    const std::vector<T> w = flipped_filter(th);
    // Directions in groups whose V fits a few MiB; pixels in blocks as in the forward pass.
    const index_t group = std::clamp<index_t>(kFactoredBytes / (G * c_ * index_t(sizeof(T))), 1, k);
    const index_t block = block_rows<T>(G, Pin);
    parallel_for(n, [&](index_t i_begin, index_t i_end) {
      std::vector<T> v(static_cast<size_t>(G * group * c_)), rows(static_cast<size_t>(block * G)),
          out(static_cast<size_t>(block * group * c_));
      FourRussians<T> fr;
      for (index_t i = i_begin; i < i_end; ++i)
        for (index_t a0 = 0; a0 < k; a0 += group) {
          const index_t ka = std::min(group, k - a0), width = ka * c_;
          const T* mask_i = mask + i * out_size();
          if (const std::optional<T> v = two_valued(mask_i, out_size())) {
            factored_binary(w.data(), s * *v, mask_i, u + (i * k + a0) * out_, ka, g_in + (i * k + a0) * Pin * c_, fr);
            continue;
          }
          for (index_t r = 0; r < G; ++r) {
            const index_t o = r % out_;
            for (index_t a = 0; a < ka; ++a) {
              const T scale = s * u[(i * k + a0 + a) * out_ + o];
              for (index_t c = 0; c < c_; ++c) v[size_t(r * width + a * c_ + c)] = scale * w[size_t(r * c_ + c)];
            }
          }
          for (index_t q0 = 0; q0 < Pin; q0 += block) {
            const index_t q1 = std::min(Pin, q0 + block);
            gather_cotangents(mask + i * out_size(), q0, q1, rows.data());
            gemm_serial(false, false, q1 - q0, width, G, T(1), rows.data(), G, v.data(), width, T(0), out.data(), width);
            for (index_t a = 0; a < ka; ++a)
              for (index_t q = q0; q < q1; ++q)
                std::copy_n(out.data() + (q - q0) * width + a * c_, c_, g_in + ((i * k + a0 + a) * Pin + q) * c_);
          }
        }
    });
  }

  // Behind a ReLU the mask takes two values, 0 and v, so the gathered mask is v times a binary
  // matrix, and a product by a binary matrix needs no multiplications: the Four Russians' method.
  // The gathered mask's columns (tap, channel) go in nibbles of 4 channels; for each nibble a
  // table holds the 16 sums of V's 4 rows that its bit patterns select, so a gathered row costs
  // kh·kw·⌈O/4⌉ table reads and adds in place of kh·kw·O multiply-adds: 4x fewer operations than
  // the GEMM. Columns go in blocks of one 64-byte vector, and the taps one by one over all input
  // pixels, so that the tables being read (16 KiB for O = 64) stay in L1 and the accumulators of a
  // pixel are read and written once per tap; building the tables costs 1/50 of the adds.
  //
  // The one nonzero value v of a mask with values in {0, v} (v = 1/pixels behind a ReLU and a
  // global average pool; 0 for an all-zero mask), or nothing if it has more.
  template <class T>
  static std::optional<T> two_valued(const T* m, index_t n) {
    T v = T(0);
    for (index_t e = 0; e < n; ++e) {
      if (m[e] == T(0) || m[e] == v) continue;
      if (v != T(0)) return std::nullopt;
      v = m[e];
    }
    return v;
  }
  template <class T>
  NTK_SIMD_CLONES void factored_binary(const T* w, T s, const T* mask, const T* u, index_t ka, T* g_in,
                                       FourRussians<T>& fr) const {
    constexpr index_t B = 64 / index_t(sizeof(T));  // columns per block: one vector
    const index_t P = pixels_out(), nib = (out_ + 3) / 4, taps = kh_ * kw_, width = ka * c_, Pin = h_ * w_;
    fr.codes.assign(static_cast<size_t>(P * nib), 0);
    for (index_t p = 0; p < P; ++p)
      for (index_t o = 0; o < out_; ++o)
        if (mask[p * out_ + o] != T(0)) fr.codes[size_t(p * nib + o / 4)] |= uint8_t(1u << (o % 4));
    fr.table_boxes.resize(static_cast<size_t>(taps * nib * 16));
    fr.acc_boxes.resize(static_cast<size_t>(Pin));
    for (index_t col0 = 0; col0 < width; col0 += B) {
      const index_t cols = std::min(B, width - col0);
      // Column col0 + c is channel[c] of direction[c]; it goes to g_in + offset[c] + q·C for pixel q.
      std::array<index_t, B> direction{}, channel{}, offset{};
      for (index_t c = 0; c < cols; ++c) {
        direction[size_t(c)] = (col0 + c) / c_;
        channel[size_t(c)] = (col0 + c) % c_;
        offset[size_t(c)] = direction[size_t(c)] * Pin * c_ + channel[size_t(c)];
      }
      // The common case: a whole block of one direction's channels (C a multiple of the block).
      const bool one_direction = cols == B && direction[0] == direction[size_t(B - 1)];
      // Entry (t, j, pattern): Σ over the set bits b of V[(t, 4j + b), col0 + ·]; unused columns 0.
      for (index_t t = 0; t < taps; ++t)
        for (index_t j = 0; j < nib; ++j) {
          Vec64T<T>* e = fr.table() + (t * nib + j) * 16;
          std::fill(e, e + 16, Vec64T<T>{});
          for (index_t b = 0; b < 4 && 4 * j + b < out_; ++b) {
            const index_t o = 4 * j + b;
            const T* w_row = w + (t * out_ + o) * c_;
            Vec64T<T>& row = e[index_t(1) << b];
            if (one_direction) {
              const T scale = s * u[direction[0] * out_ + o];
              for (index_t c = 0; c < B; ++c) row[c] = scale * w_row[channel[0] + c];
            } else {
              for (index_t c = 0; c < cols; ++c)
                row[c] = s * u[direction[size_t(c)] * out_ + o] * w_row[channel[size_t(c)]];
            }
          }
          for (index_t m = 3; m < 16; ++m)
            if (m & (m - 1)) e[m] = e[m & (m - 1)] + e[m & -m];
        }
      lookup_rows<T>(fr.table(), fr.codes.data(), nib, fr.acc());
      for (index_t q = 0; q < Pin; ++q) {
        if (one_direction) {
          std::memcpy(g_in + offset[0] + q * c_, fr.acc() + q, sizeof(Vec64T<T>));
          continue;
        }
        for (index_t c = 0; c < cols; ++c) g_in[offset[size_t(c)] + q * c_] = fr.acc()[q][c];
      }
    }
  }
  // acc[q] = Σ over taps and nibbles of the table entry that input pixel q's output pixel selects.
  template <class T>
  NTK_SIMD_CLONES void lookup_rows(const Vec64T<T>* table, const uint8_t* codes, index_t nib,
                                   Vec64T<T>* acc) const {
    std::fill(acc, acc + h_ * w_, Vec64T<T>{});
    for (index_t dy = 0; dy < kh_; ++dy)
      for (index_t dx = 0; dx < kw_; ++dx) {
        const Vec64T<T>* tap = table + (dy * kw_ + dx) * nib * 16;
        // Input rows iy whose output row iy + pad − dy exists, and likewise for columns.
        const index_t y0 = std::max<index_t>(0, dy - pad_top_), y1 = std::min(h_, ho_ + dy - pad_top_);
        const index_t x0 = std::max<index_t>(0, dx - pad_left_), x1 = std::min(w_, wo_ + dx - pad_left_);
        for (index_t iy = y0; iy < y1; ++iy)
          for (index_t ix = x0; ix < x1; ++ix) {
            const uint8_t* code = codes + ((iy + pad_top_ - dy) * wo_ + ix + pad_left_ - dx) * nib;
            // Four partial sums: a quarter of the dependent chain of adds.
            Vec64T<T> a{}, b{}, c{}, d{};
            index_t j = 0;
            for (; j + 3 < nib; j += 4) {
              a += tap[j * 16 + code[j]];
              b += tap[(j + 1) * 16 + code[j + 1]];
              c += tap[(j + 2) * 16 + code[j + 2]];
              d += tap[(j + 3) * 16 + code[j + 3]];
            }
            for (; j < nib; ++j) a += tap[j * 16 + code[j]];
            acc[iy * w_ + ix] += (a + b) + (c + d);
          }
      }
  }

  template <class T>
  void jvp_t(const T* th, const T* x, const T*, index_t n, index_t k, const T* t_in, const T* t_th, index_t stride,
             T* t_out) const {
    // Blocks of output pixels as in the forward pass: the tangent's patches times W, plus the
    // input's patches (built once per block for all k directions) times each direction's dW.
    const T s = w_scale<T>();
    const index_t P = pixels_out(), F = taps();
    const index_t rows = block_rows<T>(F, P), blocks = (P + rows - 1) / rows;
    parallel_for(n * blocks, [&](index_t begin, index_t end) {
      std::vector<T> x_patches(static_cast<size_t>(t_th ? rows * F : 0)), t_patches(static_cast<size_t>(rows * F));
      for (index_t b = begin; b < end; ++b) {
        const index_t i = b / blocks, p0 = (b % blocks) * rows, p1 = std::min(P, p0 + rows);
        if (t_th) im2col(x + i * in_size(), x_patches.data(), p0, p1);
        for (index_t kk = 0; kk < k; ++kk) {
          T* dst = t_out + (i * k + kk) * out_size() + p0 * out_;
          if (t_in) {
            im2col(t_in + (i * k + kk) * in_size(), t_patches.data(), p0, p1);
            gemm_serial(false, false, p1 - p0, out_, F, s, t_patches.data(), F, th, out_, T(0), dst, out_);
          } else {
            std::fill(dst, dst + (p1 - p0) * out_, T(0));
          }
          if (!t_th) continue;
          const T* dW = t_th + kk * stride;
          gemm_serial(false, false, p1 - p0, out_, F, s, x_patches.data(), F, dW, out_, T(1), dst, out_);
          if (o_.b_std) add_bias(dW + F * out_, dst, p1 - p0);
        }
      }
    });
  }

  // Structured derivative (REFERENCE.md section 3), two contraction orders chosen per layer by
  // cost: (a) per-example filter gradients X_iᵀ G_ia (F × O) and their Gram, the generic route;
  // (b) pixel pairs, <X_iᵀ G_ia, X_jᵀ G_jb> = <Q_ijᵀ G_ia, G_jb> with Q_ij = s²·X_i X_jᵀ + c²·11ᵀ
  // (P × P, the bias adds c²), which wins when the output has few pixels and the filter is large.
  // The side of (b) is the patches X (n, P, F).
  template <class T>
  std::vector<T> ntk_side_t(const T* th, const T* x, const T* y, const T* g, index_t n, index_t k) const {
    if (!pixel_pairs(k)) return LayerImpl<Conv>::ntk_side_t(th, x, y, g, n, k);
    const index_t P = pixels_out(), F = taps();
    std::vector<T> patches(static_cast<size_t>(n * P * F));
    parallel_for(n, [&](index_t begin, index_t end) {
      for (index_t i = begin; i < end; ++i) im2col(x + i * in_size(), patches.data() + i * P * F);
    });
    return patches;
  }

  template <class T>
  void ntk_block_t(const T* th, const T* x1, const T* g1, const std::vector<T>& s1, index_t n1, const T* x2,
                   const T* g2, const std::vector<T>& s2, index_t n2, index_t k, bool paired, T* block) const {
    if (!pixel_pairs(k)) {
      LayerImpl<Conv>::ntk_block_t(th, x1, g1, s1, n1, x2, g2, s2, n2, k, paired, block);
      return;
    }
    const index_t P = pixels_out(), F = taps(), PO = P * out_;
    const T s = w_scale<T>(), c2 = o_.b_std ? b_scale<T>() * b_scale<T>() : T(0);
    // Q for a chunk of side-1 examples against all of side 2 is one GEMM (ci·P × n2·P): one per
    // example would repack side 2's patches every time, which costs as much as the product itself
    // when P is small (the last stages of a ResNet have 1 to 16 output pixels).
    const index_t ci = std::clamp<index_t>(kPixelPairBytes / (P * n2 * P * index_t(sizeof(T))), 1,
                                           std::max<index_t>(1, (n1 + kParallelChunks - 1) / kParallelChunks));
    const index_t ld = n2 * P;
    // Matched directions: <Q_ij, G_ia G_jaᵀ> for every pair, with G_a Gᵀ_a one GEMM per chunk as
    // well; side 2's cotangents are regrouped by direction (k × n2·P × O) for it.
    std::vector<T> g2_by_dir;
    if (!paired) {
      g2_by_dir.resize(static_cast<size_t>(k * n2 * PO));
      for (index_t j = 0; j < n2; ++j)
        for (index_t a = 0; a < k; ++a)
          std::copy_n(g2 + (j * k + a) * PO, PO, g2_by_dir.data() + (a * n2 + j) * PO);
    }
    const index_t chunks = (n1 + ci - 1) / ci;
    parallel_for(chunks, [&](index_t c_begin, index_t c_end) {
      std::vector<T> q(static_cast<size_t>(ci * P * ld)), w(static_cast<size_t>(paired ? k * PO : 0)),
          h(static_cast<size_t>(paired ? 0 : ci * P * ld)), g1a(static_cast<size_t>(paired ? 0 : ci * PO));
      for (index_t chunk = c_begin; chunk < c_end; ++chunk) {
        const index_t i0 = chunk * ci, cn = std::min(ci, n1 - i0);
        gemm_serial(false, true, cn * P, ld, F, s * s, s1.data() + i0 * P * F, F, s2.data(), F, T(0), q.data(), ld);
        if (c2 != T(0))
          for (T& v : q) v += c2;
        if (!paired) {
          for (index_t a = 0; a < k; ++a) {
            for (index_t i = 0; i < cn; ++i) std::copy_n(g1 + ((i0 + i) * k + a) * PO, PO, g1a.data() + i * PO);
            gemm_serial(false, true, cn * P, ld, out_, T(1), g1a.data(), out_, g2_by_dir.data() + a * n2 * PO, out_, T(0),
                        h.data(), ld);
            for (index_t i = 0; i < cn; ++i)
              for (index_t j = 0; j < n2; ++j) {
                T v = 0;
                for (index_t p = 0; p < P; ++p) {
                  const size_t at = size_t((i * P + p) * ld + j * P);
                  for (index_t p2 = 0; p2 < P; ++p2) v += q[at + size_t(p2)] * h[at + size_t(p2)];
                }
                block[(a * n1 + i0 + i) * n2 + j] += v;
              }
          }
          continue;
        }
        for (index_t i = i0; i < i0 + cn; ++i)
          for (index_t j = 0; j < n2; ++j) {
            const T* qij = q.data() + (i - i0) * P * ld + j * P;
            for (index_t a = 0; a < k; ++a)  // w_a = Q_ijᵀ G_ia (P × O)
              gemm_serial(true, false, P, out_, P, T(1), qij, ld, g1 + (i * k + a) * PO, out_, T(0), w.data() + a * PO,
                          out_);
            // (k × k) = w (k × P·O) · G_j (k × P·O)ᵀ, added in place: (n1, n2, k, k) layout
            gemm_serial(false, true, k, k, PO, T(1), w.data(), PO, g2 + j * k * PO, PO, T(1), block + (i * n2 + j) * k * k,
                        k);
          }
      }
    });
  }

  // Cost per pair of examples of the two orders, asymptotically in the tile size (the sides are
  // linear in it): (a) K²·F·O (paired; K·F·O matched), (b) P²·F + K·P²·O + K²·P·O.
  bool pixel_pairs(index_t k) const {
    const double P = double(pixels_out()), F = double(taps()), O = double(out_), K = double(k);
    const double filters = K * K * F * O, pairs = P * P * F + K * P * P * O + K * K * P * O;
    return pairs < filters;
  }
  double ntk_side_flops(index_t n, index_t k) const override {
    return pixel_pairs(k) ? 0.0 : Layer::ntk_side_flops(n, k);
  }
  double ntk_side_elements(index_t n, index_t k) const override {
    return pixel_pairs(k) ? double(n) * double(pixels_out()) * double(taps()) : Layer::ntk_side_elements(n, k);
  }
  double ntk_block_flops(index_t n1, index_t n2, index_t k, bool paired) const override {
    if (!pixel_pairs(k)) return Layer::ntk_block_flops(n1, n2, k, paired);
    const double P = double(pixels_out()), F = double(taps()), O = double(out_), K = double(k);
    return double(n1) * double(n2) * (P * P * F + K * P * P * O + (paired ? K * K * P * O : K * P * P));
  }

  // Infinite width (REFERENCE.md section 4): with W(·) the mean over the filter taps δ of the
  // covariance at (s·p + δ − pad, s·p' + δ − pad) (zero outside the image),
  //   Σ ← W_std²·W(Σ) + b_std²;  NTK param Θ ← Σ_new + W_std²·W(Θ);
  //   standard param Θ ← fan_in·W(Σ_old) + (1 if bias) + W_std²·W(Θ), fan_in = kh·kw·C.
  // Both pixels shift by the same δ, so W is separable: rows (dy) first, then columns (dx). On the
  // diagonal (p = p' only) it is a plain mean filter.
  void kernel_rule(KernelState& s) const override {
    NTK_ASSERT(s.h == h_ && s.w == w_, "Conv::kernel_rule: the state does not match the layer's input");
    std::vector<double> sig = window_mean(s, s.nngp), theta = s.want_ntk ? window_mean(s, s.ntk) : std::vector<double>();
    parallel_for(index_t(sig.size()), [&](index_t begin, index_t end) {
      affine_kernel_rows(o_, double(taps()), end - begin, sig.data() + begin, s.want_ntk ? theta.data() + begin : nullptr);
    });
    s.nngp.swap(sig);
    if (s.want_ntk) s.ntk.swap(theta);
    s.h = ho_, s.w = wo_;
  }

  // On one offset's grid (OffsetBlock) the window mean is a plain kh × kw mean filter: output cell
  // g reads input cells g + δ − pad, zero outside the grid (where p or p + d leaves the image).
  // Only when the output is no larger than the input: an even kernel with integer padding k/2
  // grows it by a pixel, and then the grids would outgrow the driver's buffers (sized by the
  // input), offsets beyond the network input's extent (never enumerated) would carry the bias, and
  // an output grid could be non-empty over an empty input one. The layer-by-layer path covers it.
  bool kernel_has_offset_rule() const override { return sh_ == 1 && sw_ == 1 && ho_ <= h_ && wo_ <= w_; }
  void kernel_offset_rule(OffsetBlockT<double>& b) const override { offset_rule(b); }
  void kernel_offset_rule(OffsetBlockT<float>& b) const override { offset_rule(b); }
  template <class T>
  void offset_rule(OffsetBlockT<T>& b) const {
    NTK_ASSERT(b.h == h_ && b.w == w_, "Conv::kernel_offset_rule: the block does not match the layer's input");
    const index_t L = OffsetBlockT<T>::lanes, gh = b.grid_h(), gw = b.grid_w();
    b.h = ho_, b.w = wo_;
    if (gh <= 0 || gw <= 0 || b.empty()) return;
    const index_t oh = b.grid_h(), ow = b.grid_w();
    b.scratch->resize(static_cast<size_t>(oh * gw * L));
    window_sum_grid(gh, gw, oh, ow, b.nngp, b.scratch->data());
    if (b.ntk) window_sum_grid(gh, gw, oh, ow, b.ntk, b.scratch->data());
    affine_kernel_rows(o_, double(taps()), oh * ow * L, b.nngp, b.ntk, 1.0 / double(kh_ * kw_));
  }
  bool kernel_output_gaussian(bool) const override { return true; }

  double forward_flops() const override { return double(pixels_out()) * double(taps()) * double(out_); }

 protected:
  Shape infer_shape(const Shape& in) override {
    if (in.size() != 3)
      throw InvalidArgument("Conv needs image inputs (H, W, C) per example, got " + shape_string(in));
    h_ = in[0], w_ = in[1], c_ = in[2];
    const Window2d g = window_geometry(h_, w_, kh_, kw_, sh_, sw_, padding_, "Conv kernel");
    ho_ = g.out_h, wo_ = g.out_w, pad_top_ = g.pad_top, pad_left_ = g.pad_left;
    return {ho_, wo_, out_};
  }

 private:
  // W(m) of the kernel rule for every pair of the state.
  std::vector<double> window_mean(const KernelState& s, const std::vector<double>& m) const {
    const index_t H = h_, W = w_, P = H * W, Po = ho_ * wo_;
    const double inv = 1.0 / double(kh_ * kw_);
    auto valid_y = [&](index_t o, index_t d) { index_t i = o * sh_ + d - pad_top_; return i >= 0 && i < H ? i : -1; };
    auto valid_x = [&](index_t o, index_t d) { index_t i = o * sw_ + d - pad_left_; return i >= 0 && i < W ? i : -1; };
    if (s.diagonal) {
      std::vector<double> out(static_cast<size_t>(s.pairs * Po), 0.0);
      parallel_for(s.pairs, [&](index_t begin, index_t end) {
        for (index_t q = begin; q < end; ++q)
          for (index_t oy = 0; oy < ho_; ++oy)
            for (index_t ox = 0; ox < wo_; ++ox) {
              double t = 0;
              for (index_t dy = 0; dy < kh_; ++dy)
                for (index_t dx = 0; dx < kw_; ++dx) {
                  const index_t iy = valid_y(oy, dy), ix = valid_x(ox, dx);
                  if (iy >= 0 && ix >= 0) t += m[size_t(q * P + iy * W + ix)];
                }
              out[size_t(q * Po + oy * wo_ + ox)] = inv * t;
            }
      });
      return out;
    }
    std::vector<double> out(static_cast<size_t>(s.pairs * Po * Po), 0.0);
    // One task per (pair, output row oy): rows first into t (W × Ho × W), then columns.
    parallel_for(s.pairs * ho_, [&](index_t begin, index_t end) {
      std::vector<double> t(static_cast<size_t>(W * ho_ * W));
      for (index_t task = begin; task < end; ++task) {
        const index_t q = task / ho_, oy = task % ho_;
        const double* in = m.data() + q * P * P;
        std::fill(t.begin(), t.end(), 0.0);
        for (index_t oy2 = 0; oy2 < ho_; ++oy2)
          for (index_t dy = 0; dy < kh_; ++dy) {
            const index_t iy = valid_y(oy, dy), iy2 = valid_y(oy2, dy);
            if (iy < 0 || iy2 < 0) continue;
            for (index_t x = 0; x < W; ++x) {
              const double* src = in + ((iy * W + x) * H + iy2) * W;
              double* dst = t.data() + (x * ho_ + oy2) * W;
              for (index_t x2 = 0; x2 < W; ++x2) dst[x2] += src[x2];
            }
          }
        double* o = out.data() + (q * Po + oy * wo_) * Po;
        for (index_t ox = 0; ox < wo_; ++ox)
          for (index_t dx = 0; dx < kw_; ++dx) {
            const index_t ix = valid_x(ox, dx);
            if (ix < 0) continue;
            for (index_t oy2 = 0; oy2 < ho_; ++oy2) {
              const double* src = t.data() + (ix * ho_ + oy2) * W;
              double* dst = o + ox * Po + oy2 * wo_;
              for (index_t ox2 = 0; ox2 < wo_; ++ox2) {
                const index_t ix2 = valid_x(ox2, dx);
                if (ix2 >= 0) dst[ox2] += inv * src[ix2];
              }
            }
          }
      }
    });
    return out;
  }

  // The window sum on a (gh, gw) grid of lanes, in place into the (oh, ow) output: rows into t
  // (oh × gw × lanes), then columns. Output row oy sums the input rows oy + dy − pad inside the
  // grid in one pass (sum_runs); in the columns pass the cells whose whole window lies inside the
  // grid form one run too, so the inner loops are long and contiguous.
  template <class T>
  NTK_SIMD_CLONES void window_sum_grid(index_t gh, index_t gw, index_t oh, index_t ow, T* m, T* t) const {
    const index_t L = OffsetBlockT<T>::lanes, run = gw * L;
    std::vector<const T*> src;
    for (index_t oy = 0; oy < oh; ++oy) {
      src.clear();
      for (index_t dy = 0; dy < kh_; ++dy)
        if (const index_t iy = oy + dy - pad_top_; iy >= 0 && iy < gh) src.push_back(m + iy * run);
      sum_runs(t + oy * run, src, run);
    }
    // Cells [x0, x1) have every tap inside the grid; the few at the edges go one by one.
    const index_t x0 = std::min(ow, pad_left_), x1 = std::max(x0, std::min(ow, gw - kw_ + 1 + pad_left_));
    for (index_t oy = 0; oy < oh; ++oy) {
      const T* row = t + oy * run;
      T* out = m + oy * ow * L;
      auto cells = [&](index_t lo, index_t hi) {
        if (lo >= hi) return;
        src.clear();
        for (index_t dx = 0; dx < kw_; ++dx) {
          const index_t ix = lo + dx - pad_left_;
          if (ix >= 0 && ix + (hi - lo) <= gw) src.push_back(row + ix * L);
        }
        sum_runs(out + lo * L, src, (hi - lo) * L);
      };
      for (index_t ox = 0; ox < x0; ++ox) cells(ox, ox + 1);
      cells(x0, x1);
      for (index_t ox = x1; ox < ow; ++ox) cells(ox, ox + 1);
    }
  }
  // dst[e] = Σ_k src[k][e] for e < n (0 without sources).
  template <class T>
  static void sum_runs(T* dst, const std::vector<const T*>& src, index_t n) {
    const size_t k = src.size();
    if (k == 0) return void(std::fill(dst, dst + n, T(0)));
    if (k == 1) return void(std::copy(src[0], src[0] + n, dst));
    const T *a = src[0], *b = src[1];
    if (k == 3) {
      const T* c = src[2];
      for (index_t e = 0; e < n; ++e) dst[e] = a[e] + b[e] + c[e];
      return;
    }
    for (index_t e = 0; e < n; ++e) dst[e] = a[e] + b[e];
    for (size_t j = 2; j < k; ++j)
      for (index_t e = 0; e < n; ++e) dst[e] += src[j][e];
  }

  index_t taps() const { return kh_ * kw_ * c_; }
  index_t pixels_out() const { return ho_ * wo_; }
  template <class T>
  T w_scale() const {
    return o_.parameterization == Parameterization::ntk ? T(o_.W_std / std::sqrt(double(taps()))) : T(1);
  }
  template <class T>
  T b_scale() const {
    return o_.parameterization == Parameterization::ntk ? T(*o_.b_std) : T(1);
  }
  // y (pixels × O; all output pixels by default) += c·b for every pixel.
  template <class T>
  void add_bias(const T* b, T* y, index_t pixels = -1) const {
    const T c = b_scale<T>();
    for (index_t p = 0; p < (pixels < 0 ? pixels_out() : pixels); ++p)
      for (index_t o = 0; o < out_; ++o) y[p * out_ + o] += c * b[o];
  }

  // Input pixel feeding output (oy, ox) at tap (dy, dx), or -1 if it falls in the padding.
  index_t source(index_t oy, index_t ox, index_t dy, index_t dx) const {
    index_t iy = oy * sh_ + dy - pad_top_, ix = ox * sw_ + dx - pad_left_;
    return (iy < 0 || iy >= h_ || ix < 0 || ix >= w_) ? -1 : iy * w_ + ix;
  }

  // Rows per block of a patch-style GEMM `width` deep over `total` rows: about kPatchBlockBytes of
  // patches, but at least kMinBlockRows so the packing of W (width × O) is amortized.
  template <class T>
  static index_t block_rows(index_t width, index_t total) {
    return std::clamp<index_t>(std::max<index_t>(kPatchBlockBytes / (width * index_t(sizeof(T))), kMinBlockRows), 1,
                               std::max<index_t>(total, 1));
  }

  // W reshaped for the gathered input cotangents: row (dy, dx, o), column c = W[dy, dx, c, o].
  template <class T>
  std::vector<T> flipped_filter(const T* th) const {
    std::vector<T> w(static_cast<size_t>(kh_ * kw_ * out_ * c_));
    for (index_t t = 0; t < kh_ * kw_; ++t)
      for (index_t c = 0; c < c_; ++c)
        for (index_t o = 0; o < out_; ++o) w[size_t((t * out_ + o) * c_ + c)] = th[(t * c_ + c) * out_ + o];
    return w;
  }

  // Rows [r0, r1) of the stride-1 input cotangent's gathered matrix, r = (e, input pixel) with e
  // an (example, direction) pair: for each tap (dy, dx) the O output cotangents of the pixel that
  // tap reads from, zero where it falls outside the output. g holds P rows of O per e.
  template <class T>
  void gather_cotangents(const T* g, index_t r0, index_t r1, T* rows) const {
    const index_t Pin = h_ * w_, G = kh_ * kw_ * out_;
    for (index_t r = r0; r < r1; ++r) {
      const index_t e = r / Pin, iy = (r % Pin) / w_, ix = r % w_;
      T* row = rows + (r - r0) * G;
      for (index_t dy = 0; dy < kh_; ++dy)
        for (index_t dx = 0; dx < kw_; ++dx) {
          T* dst = row + (dy * kw_ + dx) * out_;
          const index_t oy = iy + pad_top_ - dy, ox = ix + pad_left_ - dx;
          if (oy < 0 || oy >= ho_ || ox < 0 || ox >= wo_)
            std::fill(dst, dst + out_, T(0));
          else
            std::copy_n(g + (e * pixels_out() + oy * wo_ + ox) * out_, out_, dst);
        }
    }
  }

  // Patch rows of output pixels [p0, p1) (all of them by default), one row of kh·kw·C per pixel.
  template <class T>
  void im2col(const T* img, T* patches, index_t p0 = 0, index_t p1 = -1) const {
    if (p1 < 0) p1 = pixels_out();
    for (index_t p = p0; p < p1; ++p) {
      const index_t oy = p / wo_, ox = p % wo_;
      T* row = patches + (p - p0) * taps();
      for (index_t dy = 0; dy < kh_; ++dy)
        for (index_t dx = 0; dx < kw_; ++dx) {
          T* dst = row + (dy * kw_ + dx) * c_;
          index_t src = source(oy, ox, dy, dx);
          if (src < 0)
            std::fill(dst, dst + c_, T(0));
          else
            std::copy(img + src * c_, img + (src + 1) * c_, dst);
        }
    }
  }

  // Adjoint of im2col: img = Σ over patches of their taps (img is overwritten).
  template <class T>
  void col2im(const T* patches, T* img) const {
    std::fill(img, img + in_size(), T(0));
    for (index_t oy = 0; oy < ho_; ++oy)
      for (index_t ox = 0; ox < wo_; ++ox) {
        const T* row = patches + (oy * wo_ + ox) * taps();
        for (index_t dy = 0; dy < kh_; ++dy)
          for (index_t dx = 0; dx < kw_; ++dx) {
            index_t src = source(oy, ox, dy, dx);
            if (src < 0) continue;
            const T* from = row + (dy * kw_ + dx) * c_;
            T* to = img + src * c_;
            for (index_t c = 0; c < c_; ++c) to[c] += from[c];
          }
      }
  }

  index_t out_, kh_, kw_, sh_, sw_;
  Padding2d padding_;
  AffineOptions o_;
  index_t h_ = 0, w_ = 0, c_ = 0, ho_ = 0, wo_ = 0, pad_top_ = 0, pad_left_ = 0;
};

}  // namespace

std::unique_ptr<Layer> make_conv(const LayerSpec& spec, const NetworkDefaults& defaults) {
  ArgReader args(spec, {"out_channels", "kernel", "stride", "padding", "W_std", "b_std", "parameterization"});
  index_t out = args.get_int("out_channels");
  auto kernel = args.get_size2("kernel", std::nullopt);
  auto stride = args.get_size2("stride", std::make_pair(1LL, 1LL));
  const Padding2d padding = read_padding(args, kernel.first, kernel.second);
  return std::make_unique<Conv>(out, kernel, stride, padding, read_affine_options(args, defaults));
}

}  // namespace ntk::detail
