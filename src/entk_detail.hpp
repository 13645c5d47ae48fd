// Internals of the empirical NTK shared by its modes, methods, planner and driver (src/entk_*.cpp
// and src/empirical.cpp); not part of the public API.
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

#include "ntk/empirical.hpp"

namespace ntk::detail {

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

// The methods' building blocks (src/entk_methods.cpp), instantiated for float and double.

// Jacobian rows of n examples for the K directions: J (n·K × P), row (i, kk) = J(x_i)ᵀ c_kk.
template <class T>
void jacobian_rows(const Network& net, const T* theta, const T* x, index_t n, const Directions<T>& dirs, T* J);

// Channel-factored structured derivative of layer l: its side, (C, n, R) per-example parameter
// gradients for the chain's mask M (n, out) from Network::channel_mask (see entk_methods.cpp).
template <class T>
std::vector<T> factored_side(const Network& net, const T* theta, const Trace<T>& trace, int l, const std::vector<T>& mask);

// Adds layer l's block from two factored sides a1 (C, n1, R), a2 (C, n2, R) and the chain end's
// cotangents u1 (n1, K, C), u2 (n2, K, C).
template <class T>
void factored_block(const std::vector<T>& a1, const T* u1, index_t n1, const std::vector<T>& a2, const T* u2, index_t n2,
                    index_t K, index_t C, bool paired, T* block);

// NTK-vector products for a tile pair (see entk_methods.cpp).
template <class T>
void vp_block(const Network& net, const T* theta, const T* rows1, index_t c1, const Trace<T>& trace2, index_t c2,
              const Directions<T>& dirs, T* block);

// Per-layer structured-derivative costs (multiply-adds), factored where the network allows it
// (src/entk_plan.cpp).
double sd_side_flops(const Network& net, int l, index_t n, index_t K);
double sd_block_flops(const Network& net, int l, index_t n1, index_t n2, index_t K, bool paired);

}  // namespace ntk::detail
