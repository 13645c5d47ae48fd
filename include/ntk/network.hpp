// A network built from a spec: a tree of layers (serial lists and Residual blocks) flattened into
// a program of steps over activation buffers. It owns shape inference, the flat parameter buffer
// and its named views, forward passes that keep the activations (a Trace), and reverse / forward
// mode derivatives with k directions per example.
#pragma once
#include <functional>
#include <map>
#include <span>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "ntk/array.hpp"
#include "ntk/io.hpp"
#include "ntk/layer.hpp"

namespace ntk {

// A network's flat parameter vector, read only: a std::vector<T> (converts implicitly) or borrowed
// memory such as a NumPy buffer. T is not deduced from it (type_identity), so calls deduce T from
// their arrays and a vector argument converts.
template <class T>
using ThetaSpan = std::type_identity_t<std::span<const T>>;

// A named slice of the flat parameter buffer, e.g. "2.0.W" at [offset, offset + numel(shape)).
struct ParamView {
  std::string name;
  index_t offset = 0;
  Shape shape;
  double init_std = 1.0;
  int layer = 0;  // index into Network::layers()
  double init_mean = 0.0;
  bool trainable = true;  // false: frozen (ParamSpec::trainable)
};

// Activations of every buffer of the program for one batch of n examples.
template <class T>
struct Trace {
  index_t n = 0;
  std::vector<std::vector<T>> buffers;  // buffers[b] is (n, buffer_size(b))
};

class Network {
 public:
  // input_shape is per example: {d} for vectors, {H, W, C} for images.
  Network(const std::string& spec, const Shape& input_shape, const NetworkDefaults& defaults = {});
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;
  Network(Network&&) noexcept;
  Network& operator=(Network&&) noexcept;
  ~Network();

  const Shape& input_shape() const { return input_shape_; }
  const Shape& output_shape() const { return output_shape_; }
  index_t input_size() const { return numel(input_shape_); }
  index_t output_size() const { return numel(output_shape_); }
  index_t num_params() const { return num_params_; }
  const std::vector<ParamView>& param_views() const { return views_; }
  const std::vector<std::unique_ptr<Layer>>& layers() const { return layers_; }
  // Path ("2.0") of every layer, parallel to layers().
  const std::vector<std::string>& layer_paths() const { return paths_; }
  // The spec with every argument spelled out; one line per layer with shapes and parameters.
  std::string describe() const;
  std::string summary() const;

  // Parameters drawn from the counter-based generator: identical for a seed whatever the thread
  // count; float32 parameters are the float64 ones rounded. threads = 0: num_threads().
  template <class T>
  std::vector<T> init(std::uint64_t seed, int threads = 0) const;

  // Parameter file <-> flat buffer. from_npz checks every key and shape and that values are finite.
  template <class T>
  std::vector<T> params_from_npz(const std::map<std::string, RawArray>& arrays) const;
  // Throws InvalidArgument naming the parameter (and its flat index) that holds a NaN or Inf.
  template <class T>
  void check_finite_params(ThetaSpan<T> theta) const;
  // The same from borrowed arrays (e.g. NumPy's), each read once into the flat buffer.
  template <class T>
  std::vector<T> params_from_views(const std::map<std::string, ArrayView>& arrays) const;
  template <class T>
  std::map<std::string, RawArray> params_to_npz(const std::vector<T>& theta) const;

  // Throws InvalidArgument, naming the array `what`, unless x is a non-empty batch (N,
  // input_shape...) of finite values.
  template <class T>
  void check_inputs(const Array<T>& x, const char* what) const;

  // Outputs (N, output_shape...) for inputs (N, input_shape...). Checks shapes and finiteness,
  // works through the batch in chunks of at most batch_chunk examples to bound memory.
  template <class T>
  Array<T> apply(ThetaSpan<T> theta, const Array<T>& x, index_t batch_chunk = 256) const;

  // Forward pass over n examples (x is (n, input_size)), keeping every activation. The output is
  // trace.buffers.back().
  template <class T>
  void forward(const T* theta, const T* x, index_t n, Trace<T>& trace) const;

  // Reverse mode at the trace: g_out (n, k, output_size) -> input cotangent (n, k, input_size)
  // (skipped if g_in is null) and parameter cotangents accumulated into g_theta (a full parameter
  // row per direction, or per example and direction: then these are Jacobian rows).
  // observe, if given, is called for every layer with the layer's index and its output cotangents
  // (n, k, out): what structured derivatives are assembled from. shortcuts (only without
  // parameter cotangents): for each, the input cotangent (n, k, in) of `layer` is written by
  // `compute` from what the caller knows once the backward pass has reached `through`, a later
  // layer of the same straight chain; the VJPs of layer..through are skipped and only `through`
  // of them is observed.
  template <class T>
  struct Shortcut {
    int layer = -1, through = -1;
    std::function<void(T*)> compute;
  };
  template <class T>
  void vjp(const T* theta, const Trace<T>& trace, index_t k, const std::type_identity_t<T>* g_out,
           std::type_identity_t<T>* g_in, ParamCotangent<T> g_theta,
           const std::function<void(int, const std::type_identity_t<T>*)>& observe = {},
           const std::vector<Shortcut<T>>& shortcuts = {}) const;

  // Forward mode at the trace: t_out (n, k, output_size) = J_x t_in + J_theta t_theta[kk].
  // t_in (n, k, input_size) may be null; t_theta is k rows of stride t_theta_stride, may be null.
  template <class T>
  void jvp(const T* theta, const Trace<T>& trace, index_t k, const std::type_identity_t<T>* t_in,
           const std::type_identity_t<T>* t_theta, index_t t_theta_stride, std::type_identity_t<T>* t_out) const;

  // Channel-factored cotangents. For a layer with output_channel_params() whose output goes
  // through a straight chain of channelwise layers until no spatial axis is left (e.g. Conv, Relu,
  // GlobalAvgPool), the last layer of that chain; -1 if there is none. Then every cotangent at the
  // layer's output factors per example as G = M ⊙ (1 uᵀ): a mask M that does not depend on the
  // output direction times the chain end's cotangent u broadcast over pixels.
  int channel_chain_end(int layer) const { return chain_end_[static_cast<size_t>(layer)]; }
  // M for n examples: the chain's VJP (k = 1) of a ones cotangent at chain_end's output, written to
  // mask (n, layer out_size).
  template <class T>
  void channel_mask(const T* theta, const Trace<T>& trace, int layer, int chain_end, T* mask) const;

  index_t buffer_size(size_t b) const { return buffer_sizes_[b]; }
  // A layer's slice of the parameter buffer, and its input / output activations in a trace.
  index_t param_offset(int layer) const { return layer_param_offset_[static_cast<size_t>(layer)]; }
  template <class T>
  const T* layer_input(const Trace<T>& trace, int layer) const {
    return trace.buffers[static_cast<size_t>(steps_[layer_step_[static_cast<size_t>(layer)]].in)].data();
  }
  template <class T>
  const T* layer_output(const Trace<T>& trace, int layer) const {
    return trace.buffers[static_cast<size_t>(steps_[layer_step_[static_cast<size_t>(layer)]].out)].data();
  }

  // The program: steps over activation buffers (0 is the input, the last the output). A layer step
  // applies layers()[layer] to buffer `in`; a join step (layer < 0) applies combinators()[join] to
  // buffers `in` and `skip` (a Residual's block and shortcut outputs).
  struct Step {
    int layer = -1;
    int join = -1;
    int in = 0, skip = -1;  // buffer indices
    int out = 0;
    // The first step of a branch whose input another branch also reads (a Residual's block or
    // shortcut): for infinite-width kernels its input counts as shared, not as fresh.
    bool branch_start = false;
    bool is_join() const { return layer < 0; }
  };
  const std::vector<Step>& steps() const { return steps_; }
  const std::vector<std::unique_ptr<Combinator>>& combinators() const { return combinators_; }
  const Combinator& join_of(const Step& s) const { return *combinators_[static_cast<size_t>(s.join)]; }
  size_t num_buffers() const { return buffer_sizes_.size(); }
  // The last step that reads buffer b (-1: none, the output): after it the buffer is dead.
  int last_reader(size_t b) const { return last_reader_[b]; }
  const Shape& buffer_shape(size_t b) const { return buffer_shapes_[b]; }

 private:
  int build(const std::vector<LayerSpec>& specs, int in_buffer, const std::string& prefix, const NetworkDefaults& d);
  int build_residual(const LayerSpec& s, int in_buffer, const std::string& path, const NetworkDefaults& d);
  std::string describe(const std::vector<LayerSpec>& specs, size_t& next_layer) const;
  int find_channel_chain_end(int layer) const;

  Shape input_shape_, output_shape_;
  std::vector<LayerSpec> specs_;  // as parsed, for describe()
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<std::unique_ptr<Combinator>> combinators_;
  std::vector<std::string> paths_;
  std::vector<index_t> layer_param_offset_;
  std::vector<size_t> layer_step_;  // index into steps_ of each layer
  std::vector<ParamView> views_;
  std::vector<Step> steps_;
  std::vector<Shape> buffer_shapes_;
  std::vector<index_t> buffer_sizes_;
  index_t num_params_ = 0;
  std::vector<int> buffer_readers_, last_reader_;  // per buffer: steps reading it, the last of them
  std::vector<int> chain_end_;                      // per layer: channel_chain_end
};

}  // namespace ntk
