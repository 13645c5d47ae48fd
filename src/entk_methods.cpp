// The empirical NTK's methods, as building blocks the driver combines per tile: Jacobian rows
// (Jacobian contraction, and the x1 side of NTK-vector products), NTK-vector products, and the
// channel-factored structured derivative.
#include <algorithm>
#include <vector>

#include "blas.hpp"
#include "entk_detail.hpp"
#include "ntk/parallel.hpp"

namespace ntk::detail {

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
// which costs n1·n2·(R·C + K²·C) instead of n1·n2·K²·R·C. mask: M (n, out), from
// Network::channel_mask. The side keeps A as (C, n, R).
template <class T>
std::vector<T> factored_side(const Network& net, const T* theta, const Trace<T>& trace, int l, const std::vector<T>& mask) {
  const Layer& layer = *net.layers()[size_t(l)];
  const index_t n = trace.n, C = layer.out_shape().back(), P = layer.num_params(), R = P / C;
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


#define NTK_INSTANTIATE(T)                                                                                            \
  template void jacobian_rows(const Network&, const T*, const T*, index_t, const Directions<T>&, T*);                 \
  template std::vector<T> factored_side(const Network&, const T*, const Trace<T>&, int, const std::vector<T>&);      \
  template void factored_block(const std::vector<T>&, const T*, index_t, const std::vector<T>&, const T*, index_t,     \
                               index_t, index_t, bool, T*);                                                           \
  template void vp_block(const Network&, const T*, const T*, index_t, const Trace<T>&, index_t, const Directions<T>&, \
                         T*);
NTK_INSTANTIATE(float)
NTK_INSTANTIATE(double)
#undef NTK_INSTANTIATE

}  // namespace ntk::detail
