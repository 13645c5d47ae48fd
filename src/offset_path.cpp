// The offset path's program check, and the layers' default offset rules.
#include "kernel_detail.hpp"

namespace ntk {

void Layer::kernel_offset_rule(OffsetBlockT<double>&) const {
  throw std::logic_error("Layer::kernel_offset_rule: layer " + describe() + " has no offset rule");
}
void Layer::kernel_offset_rule(OffsetBlockT<float>&) const {
  throw std::logic_error("Layer::kernel_offset_rule: layer " + describe() + " has no offset rule");
}

namespace detail {

std::optional<size_t> offset_readout(const Network& net) {
  const auto& steps = net.steps();
  for (size_t k = 0; k < steps.size(); ++k) {
    if (steps[k].is_join()) continue;
    const Layer& l = *net.layers()[size_t(steps[k].layer)];
    if (l.kernel_pixel_readout() != PixelReadout::none) {
      for (size_t j = 0; j <= k; ++j)
        for (int b : {steps[j].in, steps[j].skip})
          if (b >= 0 && net.last_reader(size_t(b)) > int(k)) return std::nullopt;
      return k;
    }
    if (!l.kernel_has_offset_rule()) return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace detail
}  // namespace ntk
