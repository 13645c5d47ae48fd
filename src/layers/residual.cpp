// Residual(block..., shortcut=[...]) = block(x) + shortcut(x), the shortcut the identity when
// omitted. The network compiles it into the block's and the shortcut's layer steps (the shortcut's
// parameters under "<i>.shortcut.<j>") and one ResidualSum node; every pass over the program
// handles the sum here.
#include <algorithm>
#include <memory>
#include <string>

#include "ntk/layer.hpp"

namespace ntk {
namespace {

class ResidualSum final : public Combinator {
 public:
  std::string name() const override { return "Residual"; }
  void forward(const float* a, const float* b, float* out, index_t size) const override { add(a, b, out, size); }
  void forward(const double* a, const double* b, double* out, index_t size) const override { add(a, b, out, size); }
  // The sum passes its cotangent unchanged to both branches.
  void vjp(const float* g, float* g_a, float* g_b, index_t size) const override { copy2(g, g_a, g_b, size); }
  void vjp(const double* g, double* g_a, double* g_b, index_t size) const override { copy2(g, g_a, g_b, size); }
  bool jvp(const float* t_a, const float* t_b, float* t_out, index_t size) const override {
    return tangent(t_a, t_b, t_out, size);
  }
  bool jvp(const double* t_a, const double* t_b, double* t_out, index_t size) const override {
    return tangent(t_a, t_b, t_out, size);
  }
  // Independent zero-mean branches: their kernels add (the cross covariance vanishes).
  void kernel_rule(KernelState& a, const KernelState& b) const override {
    add(a.nngp.data(), b.nngp.data(), a.nngp.data(), index_t(a.nngp.size()));
    add(a.ntk.data(), b.ntk.data(), a.ntk.data(), index_t(a.ntk.size()));
  }
  std::string kernel_refusal(bool a_fresh, bool b_fresh) const override {
    if (a_fresh || b_fresh) return "";
    return "a Residual block must end in a Dense or Conv layer (a zero-mean random layer), or have a shortcut that "
           "does, for its kernel to be the sum of the two branches";
  }
  void kernel_offset_rule(float* a, const float* b, index_t cells) const override { add(a, b, a, cells); }
  void kernel_offset_rule(double* a, const double* b, index_t cells) const override { add(a, b, a, cells); }

 private:
  template <class T>
  static void add(const T* a, const T* b, T* out, index_t size) {
    for (index_t j = 0; j < size; ++j) out[j] = a[j] + b[j];
  }
  template <class T>
  static void copy2(const T* g, T* g_a, T* g_b, index_t size) {
    std::copy(g, g + size, g_a);
    std::copy(g, g + size, g_b);
  }
  template <class T>
  static bool tangent(const T* t_a, const T* t_b, T* t_out, index_t size) {
    if (!t_a && !t_b) return false;
    if (t_a && t_b)
      add(t_a, t_b, t_out, size);
    else
      std::copy(t_a ? t_a : t_b, (t_a ? t_a : t_b) + size, t_out);
    return true;
  }
};

}  // namespace

std::unique_ptr<Combinator> make_residual_sum() { return std::make_unique<ResidualSum>(); }

}  // namespace ntk
