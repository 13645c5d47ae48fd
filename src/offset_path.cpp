// The offset path's program check, and the layers' default offset rules (reaching one is a bug:
// the driver takes the offset path only when every layer before the readout has a rule).
#include "check.hpp"
#include "kernel_detail.hpp"

namespace ntk {

void Layer::kernel_offset_rule(OffsetBlockT<double>&) const {
  NTK_UNREACHABLE("Layer::kernel_offset_rule: layer " + describe() + " has no offset rule");
}
void Layer::kernel_offset_rule(OffsetBlockT<float>&) const {
  NTK_UNREACHABLE("Layer::kernel_offset_rule: layer " + describe() + " has no offset rule");
}

void Layer::kernel_offset_readout(const OffsetBlockT<double>&, double*, double*) const {
  NTK_UNREACHABLE("Layer::kernel_offset_readout: layer " + describe() + " is not a readout");
}
void Layer::kernel_offset_readout(const OffsetBlockT<float>&, double*, double*) const {
  NTK_UNREACHABLE("Layer::kernel_offset_readout: layer " + describe() + " is not a readout");
}
double Layer::kernel_offset_readout_scale() const {
  NTK_UNREACHABLE("Layer::kernel_offset_readout_scale: layer " + describe() + " is not a readout");
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
