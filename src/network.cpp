#include "ntk/network.hpp"
#include "check.hpp"

#include <algorithm>
#include <sstream>

#include "ntk/error.hpp"
#include "ntk/parallel.hpp"
#include "ntk/rng.hpp"
#include "scratch.hpp"

namespace ntk {

Network::Network(Network&&) noexcept = default;
Network& Network::operator=(Network&&) noexcept = default;
Network::~Network() = default;

Network::Network(const std::string& spec, const Shape& input_shape, const NetworkDefaults& defaults)
    : input_shape_(input_shape) {
  if (input_shape.empty()) throw InvalidArgument("input shape is empty; give the per-example shape, e.g. 784 or 28,28,1");
  for (index_t d : input_shape)
    if (d < 1) throw InvalidArgument("input shape " + shape_string(input_shape) + " has a non-positive dimension");
  buffer_shapes_.push_back(input_shape_);
  specs_ = parse_spec(spec);
  int out = build(specs_, 0, "", defaults);
  output_shape_ = buffer_shapes_[static_cast<size_t>(out)];
  for (const Shape& s : buffer_shapes_) buffer_sizes_.push_back(numel(s));
  // Who reads each buffer, then the channel chains that depend on it.
  buffer_readers_.assign(buffer_shapes_.size(), 0);
  last_reader_.assign(buffer_shapes_.size(), -1);
  for (size_t j = 0; j < steps_.size(); ++j)
    for (int b : {steps_[j].in, steps_[j].skip})
      if (b >= 0) ++buffer_readers_[size_t(b)], last_reader_[size_t(b)] = int(j);
  for (int l = 0; l < static_cast<int>(layers_.size()); ++l) chain_end_.push_back(find_channel_chain_end(l));
}

int Network::build(const std::vector<LayerSpec>& specs, int in_buffer, const std::string& prefix,
                   const NetworkDefaults& d) {
  int cur = in_buffer;
  for (size_t i = 0; i < specs.size(); ++i) {
    const LayerSpec& s = specs[i];
    const std::string path = prefix + std::to_string(i);
    const Shape in_shape = buffer_shapes_[static_cast<size_t>(cur)];  // copy: build() grows the vector
    if (s.name == "Residual") {
      cur = build_residual(s, cur, path, d);
      continue;
    }
    std::unique_ptr<Layer> layer = make_layer(s, d);
    try {
      layer->build(in_shape);
    } catch (const InvalidArgument& e) {
      throw InvalidArgument("layer " + path + " (" + s.name + " at spec position " + std::to_string(s.pos) +
                            "): " + e.what());
    }
    int index = static_cast<int>(layers_.size());
    layer_param_offset_.push_back(num_params_);
    for (const ParamSpec& p : layer->param_specs()) {
      views_.push_back({path + "." + p.name, num_params_, p.shape, p.init_std, index, p.init_mean, p.trainable});
      num_params_ += numel(p.shape);
    }
    buffer_shapes_.push_back(layer->out_shape());
    int out = static_cast<int>(buffer_shapes_.size()) - 1;
    layer_step_.push_back(steps_.size());
    Step step;
    step.layer = index, step.in = cur, step.out = out;
    steps_.push_back(step);
    layers_.push_back(std::move(layer));
    paths_.push_back(path);
    cur = out;
  }
  return cur;
}

// Residual: the block from in_buffer, the shortcut (if any) from in_buffer too, then their join.
int Network::build_residual(const LayerSpec& s, int in_buffer, const std::string& path, const NetworkDefaults& d) {
  const std::string where = "Residual at position " + std::to_string(s.pos);
  if (!s.args.empty())
    throw ParseError("spec: " + where + " takes only layers and shortcut=[...], not '" + s.args.front().value +
                     "' at position " + std::to_string(s.args.front().pos));
  if (s.children.empty()) throw ParseError("spec: " + where + " needs at least one layer inside");
  const std::vector<LayerSpec>* shortcut = nullptr;
  for (const auto& [key, list] : s.lists) {
    if (key != "shortcut") throw ParseError("spec: " + where + " takes shortcut=[...], not " + key + "=[...]");
    shortcut = &list;
  }
  const Shape in_shape = buffer_shapes_[static_cast<size_t>(in_buffer)];
  // Builds one branch from in_buffer; its first step is marked as a branch start.
  auto branch = [&](const std::vector<LayerSpec>& layers, const std::string& prefix) {
    const size_t first = steps_.size();
    const int out = build(layers, in_buffer, prefix, d);
    if (first < steps_.size()) steps_[first].branch_start = true;
    return out;
  };
  const int block_out = branch(s.children, path + ".");
  const int shortcut_out = shortcut ? branch(*shortcut, path + ".shortcut.") : in_buffer;
  const Shape& block_shape = buffer_shapes_[static_cast<size_t>(block_out)];
  const Shape& shortcut_shape = buffer_shapes_[static_cast<size_t>(shortcut_out)];
  if (block_shape != shortcut_shape) {
    if (!shortcut)
      throw InvalidArgument(where + ": its block maps " + shape_string(in_shape) + " to " + shape_string(block_shape) +
                            "; x + block(x) needs equal shapes (use padding=SAME and the same channel count, or a "
                            "shortcut=[...] that maps x to the block's shape)");
    throw InvalidArgument(where + ": its block maps " + shape_string(in_shape) + " to " + shape_string(block_shape) +
                          " but its shortcut to " + shape_string(shortcut_shape) +
                          "; block(x) + shortcut(x) needs equal shapes");
  }
  buffer_shapes_.push_back(block_shape);
  const int out = static_cast<int>(buffer_shapes_.size()) - 1;
  combinators_.push_back(make_residual_sum());
  Step join;
  join.join = static_cast<int>(combinators_.size()) - 1;
  join.in = block_out, join.skip = shortcut_out, join.out = out;
  steps_.push_back(join);
  return out;
}

std::string Network::describe(const std::vector<LayerSpec>& specs, size_t& next_layer) const {
  std::string out;
  for (const LayerSpec& s : specs) {
    if (!out.empty()) out += ", ";
    if (s.name != "Residual") {
      out += layers_[next_layer++]->describe();
      continue;
    }
    out += "Residual(" + describe(s.children, next_layer);
    for (const auto& [key, list] : s.lists) out += ", " + key + "=[" + describe(list, next_layer) + "]";
    out += ")";
  }
  return out;
}

std::string Network::describe() const {
  size_t next_layer = 0;
  return describe(specs_, next_layer);
}

std::string Network::summary() const {
  std::ostringstream s;
  // Frozen parameters (BatchNorm's running statistics) are stored but not differentiated: say so.
  std::vector<index_t> frozen(layers_.size(), 0);
  for (const ParamView& v : views_)
    if (!v.trainable) frozen[size_t(v.layer)] += numel(v.shape);
  auto count = [](index_t all, index_t fixed) {
    return std::to_string(all) + " params" + (fixed ? " (" + std::to_string(fixed) + " frozen)" : "");
  };
  index_t total_frozen = 0;
  s << "input " << shape_string(input_shape_) << "\n";
  for (size_t i = 0; i < layers_.size(); ++i) {
    s << "  " << paths_[i] << "  " << layers_[i]->describe() << " -> " << shape_string(layers_[i]->out_shape())
      << ", " << count(layers_[i]->num_params(), frozen[i]) << "\n";
    total_frozen += frozen[i];
  }
  s << "output " << shape_string(output_shape_) << ", " << count(num_params_, total_frozen) << " in total";
  return s.str();
}

template <class T>
std::vector<T> Network::init(std::uint64_t seed, int threads) const {
  std::vector<T> theta(static_cast<size_t>(num_params_));
  for (const ParamView& v : views_) {
    const std::uint64_t stream = stream_id(v.name.c_str());
    parallel_for(
        numel(v.shape),
        [&](index_t begin, index_t end) {
          for (index_t j = begin; j < end; ++j)
            theta[static_cast<size_t>(v.offset + j)] =
                static_cast<T>(v.init_mean + v.init_std * normal(seed, stream, static_cast<std::uint64_t>(j)));
        },
        threads);
  }
  return theta;
}

template <class T>
std::vector<T> Network::params_from_npz(const std::map<std::string, RawArray>& arrays) const {
  std::map<std::string, ArrayView> views;
  for (const auto& [key, raw] : arrays) views.emplace(key, raw.view());
  return params_from_views<T>(views);
}

template <class T>
void Network::check_finite_params(ThetaSpan<T> theta) const {
  for (const ParamView& v : views_)
    if (index_t bad = first_non_finite(theta.data() + v.offset, numel(v.shape)); bad >= 0)
      throw InvalidArgument("parameter '" + v.name + "' has a non-finite value at flat index " + std::to_string(bad));
}

template <class T>
std::vector<T> Network::params_from_views(const std::map<std::string, ArrayView>& arrays) const {
  std::vector<T> theta(static_cast<size_t>(num_params_));
  for (const ParamView& v : views_) {
    auto it = arrays.find(v.name);
    if (it == arrays.end())
      throw InvalidArgument("parameter file has no array '" + v.name + "' (shape " + shape_string(v.shape) +
                            ") needed by layer " + paths_[static_cast<size_t>(v.layer)] + " " +
                            layers_[static_cast<size_t>(v.layer)]->describe() +
                            "; was it made for another spec or --b-std?");
    if (it->second.shape != v.shape)
      throw InvalidArgument("parameter '" + v.name + "' has shape " + shape_string(it->second.shape) + " but layer " +
                            layers_[static_cast<size_t>(v.layer)]->describe() + " needs " + shape_string(v.shape));
    convert_values(it->second, theta.data() + v.offset);  // its shape is v.shape: numel(v.shape) values
  }
  for (const auto& entry : arrays) {
    const std::string& key = entry.first;
    bool known = std::any_of(views_.begin(), views_.end(), [&](const ParamView& v) { return v.name == key; });
    if (!known)
      throw InvalidArgument("parameter file has an array '" + key + "' that no layer of the network uses; was it made for " +
                            (key.size() > 2 && key.substr(key.size() - 2) == ".b" ? "layers with biases (--b-std / b_std=)" : "another spec") + "?");
  }
  check_finite_params<T>(theta);
  return theta;
}

template <class T>
std::map<std::string, RawArray> Network::params_to_npz(const std::vector<T>& theta) const {
  if (static_cast<index_t>(theta.size()) != num_params_)
    throw InvalidArgument("parameter vector has " + std::to_string(theta.size()) + " values, the network needs " +
                          std::to_string(num_params_));
  std::map<std::string, RawArray> out;
  for (const ParamView& v : views_) {
    Array<T> a(v.shape);
    std::copy(theta.begin() + v.offset, theta.begin() + v.offset + a.size(), a.data());
    out[v.name] = RawArray::from(a);
  }
  return out;
}

template <class T>
void Network::forward(const T* theta, const T* x, index_t n, Trace<T>& trace) const {
  trace.n = n;
  trace.buffers.resize(buffer_sizes_.size());
  trace.buffers[0].assign(x, x + n * buffer_sizes_[0]);
  for (const Step& s : steps_) {
    std::vector<T>& out = trace.buffers[static_cast<size_t>(s.out)];
    out.resize(static_cast<size_t>(n * buffer_sizes_[static_cast<size_t>(s.out)]));
    if (s.is_join()) {
      join_of(s).forward(trace.buffers[static_cast<size_t>(s.in)].data(), trace.buffers[static_cast<size_t>(s.skip)].data(),
                         out.data(), index_t(out.size()));
    } else {
      layers_[static_cast<size_t>(s.layer)]->forward(theta + layer_param_offset_[static_cast<size_t>(s.layer)],
                                                     trace.buffers[static_cast<size_t>(s.in)].data(), out.data(), n);
    }
  }
}

template <class T>
void Network::check_inputs(const Array<T>& x, const char* what) const {
  if (x.ndim() == 0 || drop_first(x.shape()) != input_shape_)
    throw InvalidArgument(std::string(what) + " has shape " + shape_string(x.shape()) + " but the network takes " +
                          batch_shape_string(input_shape_));
  if (x.dim(0) == 0)
    throw InvalidArgument(std::string(what) + " has no examples (shape " + shape_string(x.shape()) + ")");
  if (index_t bad = first_non_finite(x); bad >= 0)
    throw InvalidArgument(std::string(what) + " has a non-finite value (NaN or Inf) in example " +
                          std::to_string(bad / input_size()));
}

template <class T>
Array<T> Network::apply(ThetaSpan<T> theta, const Array<T>& x, index_t batch_chunk) const {
  if (static_cast<index_t>(theta.size()) != num_params_)
    throw InvalidArgument("got " + std::to_string(theta.size()) + " parameters, the network has " + std::to_string(num_params_));
  check_inputs(x, "input");
  const index_t n = x.dim(0);
  Shape out_shape{n};
  out_shape.insert(out_shape.end(), output_shape_.begin(), output_shape_.end());
  Array<T> y(out_shape);
  Trace<T> trace;
  for (index_t start = 0; start < n; start += batch_chunk) {
    index_t count = std::min(batch_chunk, n - start);
    forward(theta.data(), x.data() + start * input_size(), count, trace);
    std::copy(trace.buffers.back().begin(), trace.buffers.back().end(), y.data() + start * output_size());
  }
  return y;
}

template <class T>
void Network::vjp(const T* theta, const Trace<T>& trace, index_t k, const std::type_identity_t<T>* g_out,
                  std::type_identity_t<T>* g_in, ParamCotangent<T> g_theta,
                  const std::function<void(int, const std::type_identity_t<T>*)>& observe,
                  const std::vector<Shortcut<T>>& shortcuts) const {
  const index_t n = trace.n;
  NTK_ASSERT(shortcuts.empty() || !g_theta.data, "Network::vjp: shortcuts skip layers' parameter cotangents");
  // Per layer: the shortcut it starts (its input cotangent), or that skips it.
  std::vector<const Shortcut<T>*> starts(layers_.size(), nullptr), inside(layers_.size(), nullptr);
  for (const Shortcut<T>& sc : shortcuts) {
    starts[size_t(sc.layer)] = &sc;
    for (int l = sc.layer + 1; l <= sc.through; ++l) inside[size_t(l)] = &sc;
  }
  // Cotangent buffers are overwritten by the layers' VJPs, so they skip the zero-fill.
  std::vector<detail::Scratch<T>> cot(buffer_sizes_.size());
  auto accumulate = [](detail::Scratch<T>& into, detail::Scratch<T>&& from) {
    if (into.empty()) {
      into = std::move(from);
    } else {
      for (size_t j = 0; j < into.size(); ++j) into[j] += from[j];
    }
  };
  const size_t last = buffer_sizes_.size() - 1;
  cot[last].assign(g_out, g_out + n * k * buffer_sizes_[last]);
  for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) {
    const Step& s = *it;
    detail::Scratch<T> g = std::move(cot[static_cast<size_t>(s.out)]);
    cot[static_cast<size_t>(s.out)] = {};
    if (s.is_join()) {
      auto g_a = detail::scratch<T>(g.size()), g_b = detail::scratch<T>(g.size());
      join_of(s).vjp(g.data(), g_a.data(), g_b.data(), index_t(g.size()));
      accumulate(cot[static_cast<size_t>(s.skip)], std::move(g_b));
      accumulate(cot[static_cast<size_t>(s.in)], std::move(g_a));
      continue;
    }
    const Layer& layer = *layers_[static_cast<size_t>(s.layer)];
    const index_t offset = layer_param_offset_[static_cast<size_t>(s.layer)];
    const Shortcut<T>* skipped_by = inside[size_t(s.layer)];
    const Shortcut<T>* started = starts[size_t(s.layer)];
    if (observe && !started && (!skipped_by || skipped_by->through == s.layer)) observe(s.layer, g.data());
    if (skipped_by) continue;  // the chain's start receives its input cotangent from the shortcut
    const bool need_in = s.in != 0 || g_in != nullptr;
    auto g_prev = detail::scratch<T>(need_in ? static_cast<size_t>(n * k * layer.in_size()) : 0);
    ParamCotangent<T> pc = g_theta;
    if (pc.data) pc.data += offset;
    if (started) {
      if (need_in) started->compute(g_prev.data());
    } else {
      layer.vjp(theta + offset, trace.buffers[static_cast<size_t>(s.in)].data(),
                trace.buffers[static_cast<size_t>(s.out)].data(), n, k, g.data(), need_in ? g_prev.data() : nullptr, pc);
    }
    if (need_in) accumulate(cot[static_cast<size_t>(s.in)], std::move(g_prev));
  }
  if (g_in) std::copy(cot[0].begin(), cot[0].end(), g_in);
}

template <class T>
void Network::jvp(const T* theta, const Trace<T>& trace, index_t k, const std::type_identity_t<T>* t_in,
                  const std::type_identity_t<T>* t_theta, index_t t_theta_stride, std::type_identity_t<T>* t_out) const {
  const index_t n = trace.n;
  std::vector<std::vector<T>> tan(buffer_sizes_.size());  // empty = zero tangent
  if (t_in) tan[0].assign(t_in, t_in + n * k * buffer_sizes_[0]);
  for (const Step& s : steps_) {
    std::vector<T>& out = tan[static_cast<size_t>(s.out)];
    const std::vector<T>& a = tan[static_cast<size_t>(s.in)];
    if (s.is_join()) {
      const std::vector<T>& b = tan[static_cast<size_t>(s.skip)];
      out.resize(static_cast<size_t>(n * k * buffer_sizes_[static_cast<size_t>(s.out)]));
      if (!join_of(s).jvp(a.empty() ? nullptr : a.data(), b.empty() ? nullptr : b.data(), out.data(), index_t(out.size())))
        out.clear();  // zero in, zero out
      continue;
    }
    const Layer& layer = *layers_[static_cast<size_t>(s.layer)];
    const index_t offset = layer_param_offset_[static_cast<size_t>(s.layer)];
    const bool has_params = t_theta && layer.num_params() > 0;
    if (a.empty() && !has_params) continue;  // zero in, zero out
    out.resize(static_cast<size_t>(n * k * layer.out_size()));
    layer.jvp(theta + offset, trace.buffers[static_cast<size_t>(s.in)].data(),
              trace.buffers[static_cast<size_t>(s.out)].data(), n, k, a.empty() ? nullptr : a.data(),
              has_params ? t_theta + offset : nullptr, t_theta_stride, out.data());
  }
  const std::vector<T>& result = tan.back();
  const index_t total = n * k * buffer_sizes_.back();
  if (result.empty())
    std::fill(t_out, t_out + total, T(0));
  else
    std::copy(result.begin(), result.end(), t_out);
}

int Network::find_channel_chain_end(int layer) const {
  const Layer& first = *layers_[static_cast<size_t>(layer)];
  if (!first.output_channel_params() || first.out_shape().size() < 2) return -1;
  const index_t channels = first.out_shape().back();
  if (first.out_size() == channels) return -1;  // one pixel: nothing to factor
  // Every buffer from the layer's output to the chain end must feed exactly the next chain step.
  for (size_t step = layer_step_[static_cast<size_t>(layer)] + 1; step < steps_.size(); ++step) {
    const Step& s = steps_[step];
    const int feed = steps_[step - 1].out;
    if (s.is_join() || s.in != feed || buffer_readers_[size_t(feed)] != 1) return -1;
    const Layer& l = *layers_[static_cast<size_t>(s.layer)];
    if (!l.channelwise() || l.out_shape().empty() || l.out_shape().back() != channels) return -1;
    if (l.out_size() == channels) return s.layer;
  }
  return -1;
}

template <class T>
void Network::channel_mask(const T* theta, const Trace<T>& trace, int layer, int chain_end, T* mask) const {
  const index_t n = trace.n;
  std::vector<T> g(static_cast<size_t>(n * layers_[static_cast<size_t>(chain_end)]->out_size()), T(1)), prev;
  for (int l = chain_end; l > layer; --l) {
    const Layer& ly = *layers_[static_cast<size_t>(l)];
    prev.assign(static_cast<size_t>(n * ly.in_size()), T(0));
    ly.vjp(theta + layer_param_offset_[static_cast<size_t>(l)], layer_input(trace, l), layer_output(trace, l), n, 1,
           g.data(), prev.data(), ParamCotangent<T>{});
    g.swap(prev);
  }
  std::copy(g.begin(), g.end(), mask);
}

#define NTK_INSTANTIATE(T)                                                                                   \
  template std::vector<T> Network::init<T>(std::uint64_t, int) const;                                             \
  template std::vector<T> Network::params_from_npz<T>(const std::map<std::string, RawArray>&) const;         \
  template std::vector<T> Network::params_from_views<T>(const std::map<std::string, ArrayView>&) const;      \
  template void Network::check_finite_params<T>(ThetaSpan<T>) const;                                          \
  template std::map<std::string, RawArray> Network::params_to_npz<T>(const std::vector<T>&) const;            \
  template void Network::check_inputs<T>(const Array<T>&, const char*) const;                                  \
  template Array<T> Network::apply<T>(ThetaSpan<T>, const Array<T>&, index_t) const;                \
  template void Network::forward<T>(const T*, const T*, index_t, Trace<T>&) const;                           \
  template void Network::vjp<T>(const T*, const Trace<T>&, index_t, const T*, T*, ParamCotangent<T>,             \
                                const std::function<void(int, const T*)>&,                                   \
                                const std::vector<Network::Shortcut<T>>&) const;                             \
  template void Network::jvp<T>(const T*, const Trace<T>&, index_t, const T*, const T*, index_t, T*) const;      \
  template void Network::channel_mask<T>(const T*, const Trace<T>&, int, int, T*) const;
NTK_INSTANTIATE(float)
NTK_INSTANTIATE(double)
#undef NTK_INSTANTIATE

}  // namespace ntk
