// Factories of the built-in layers; registry.cpp maps spec names to them.
#pragma once
#include <memory>

#include "ntk/layer.hpp"

namespace ntk::detail {

std::unique_ptr<Layer> make_dense(const LayerSpec& spec, const NetworkDefaults& defaults);
std::unique_ptr<Layer> make_conv(const LayerSpec& spec, const NetworkDefaults& defaults);
std::unique_ptr<Layer> make_activation(const LayerSpec& spec);  // Relu, LeakyRelu, Abs, Erf, Gelu, Tanh, Sigmoid, Identity
std::unique_ptr<Layer> make_avg_pool(const LayerSpec& spec);
std::unique_ptr<Layer> make_global_avg_pool(const LayerSpec& spec);
std::unique_ptr<Layer> make_flatten(const LayerSpec& spec);
std::unique_ptr<Layer> make_layer_norm(const LayerSpec& spec);

// Reads W_std, b_std and parameterization (positional after the layer's own arguments or by key)
// with the network defaults as fallbacks.
struct AffineOptions {
  double W_std;
  std::optional<double> b_std;
  Parameterization parameterization;
};
AffineOptions read_affine_options(const ArgReader& args, const NetworkDefaults& defaults);
std::string describe_affine(const AffineOptions& o);
// The infinite-width rule of a random affine layer over n entries (REFERENCE.md section 4), given
// m(Σ) in nngp and m(Θ) in ntk (null: NNGP only), where m is what the layer does to its inputs'
// pixel pairs (identity for Dense, the window mean for Conv) and fan_in its fan-in:
//   Σ ← W_std²·m(Σ) + b_std²;  NTK param Θ ← Σ_new + W_std²·m(Θ);
//   standard param Θ ← fan_in·m(Σ) + (1 if bias) + W_std²·m(Θ).
// nngp and ntk may hold c·m(·) instead, with scale = 1/c (a window sum and 1/taps).
template <class T>
void affine_kernel_rows(const AffineOptions& o, double fan_in, index_t n, T* nngp, T* ntk, double scale = 1.0);
std::string format_number(double v);

// Output size and leading padding of a 2-D sliding window (Conv, AvgPool) over an H×W input.
// SAME follows TensorFlow and neural-tangents: ceil(in / stride) outputs, the odd padding pixel
// after. VALID throws InvalidArgument, naming `what`, when the window is larger than the input.
struct Window2d {
  index_t out_h = 0, out_w = 0, pad_top = 0, pad_left = 0;
};
Window2d window_geometry(index_t h, index_t w, index_t kh, index_t kw, index_t sh, index_t sw, bool same,
                         const std::string& what);

}  // namespace ntk::detail
