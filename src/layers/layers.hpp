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
std::string format_number(double v);

}  // namespace ntk::detail
