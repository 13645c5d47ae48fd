// Factories of the built-in layers; registry.cpp maps spec names to them.
#pragma once
#include <memory>
#include <string>

#include "ntk/layer.hpp"

namespace ntk::detail {

std::unique_ptr<Layer> make_dense(const LayerSpec& spec, const NetworkDefaults& defaults);
std::unique_ptr<Layer> make_conv(const LayerSpec& spec, const NetworkDefaults& defaults);
std::unique_ptr<Layer> make_activation(const LayerSpec& spec);  // Relu, LeakyRelu, Abs, Erf, Gelu, Tanh, Sigmoid, Identity
std::unique_ptr<Layer> make_avg_pool(const LayerSpec& spec);
std::unique_ptr<Layer> make_max_pool(const LayerSpec& spec);
std::unique_ptr<Layer> make_global_avg_pool(const LayerSpec& spec);
std::unique_ptr<Layer> make_flatten(const LayerSpec& spec);
std::unique_ptr<Layer> make_layer_norm(const LayerSpec& spec);
std::unique_ptr<Layer> make_batch_norm(const LayerSpec& spec);

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

// Zero padding of a 2-D sliding window (Conv, AvgPool) as the spec writes it: VALID (none, the
// default as in PyTorch and neural-tangents), SAME (TensorFlow's and neural-tangents' rule:
// ceil(in / stride) outputs, the odd padding pixel after), or PyTorch's integer padding, `3` or
// `1x2`: h zero rows above and below the image and w zero columns left and right of it (what a
// ResNet written in PyTorch uses, e.g. Conv(64, 7, stride=2, padding=3)).
struct Padding2d {
  enum class Kind { valid, same, integer } kind = Kind::valid;
  index_t h = 0, w = 0;  // integer padding only
  // The spec's text: VALID, SAME, 3 or 1x2 (what read_padding reads back).
  std::string to_string() const;
};
// Reads a window layer's `padding` argument. Integer padding may be at most half the window on
// each axis (kh/2, kw/2): PyTorch's pooling refuses more, border windows would hold mostly zeros,
// and Conv's shifted-GEMM VJP assumes padding below the kernel size. Violations throw ParseError
// (an InvalidArgument) naming the layer, the token and its position.
Padding2d read_padding(const ArgReader& args, index_t kh, index_t kw);

// Output size and leading padding of a 2-D sliding window (Conv, AvgPool) over an H×W input:
// VALID floor((in − k) / stride) + 1 outputs; SAME ceil(in / stride); integer padding p
// floor((in + 2p − k) / stride) + 1 with p leading zeros (trailing ones beyond what the last window
// reaches are simply never read). Throws InvalidArgument, naming `what`, when not even one window
// fits (VALID or integer padding with a window larger than the padded input).
struct Window2d {
  index_t out_h = 0, out_w = 0, pad_top = 0, pad_left = 0;
};
Window2d window_geometry(index_t h, index_t w, index_t kh, index_t kw, index_t sh, index_t sw,
                         const Padding2d& padding, const std::string& what);

}  // namespace ntk::detail
