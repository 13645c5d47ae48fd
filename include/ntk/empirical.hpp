// Empirical (finite-width) NTK Θ(x1, x2) = J(x1) J(x2)ᵀ of a Network at parameters theta, by
// Jacobian contraction (jc), NTK-vector products (vp) or structured derivatives (sd), in the named
// modes of REFERENCE.md section 2. Work is tiled over (x1, x2) example blocks under a memory budget.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>
#include <type_traits>

#include "ntk/array.hpp"
#include "ntk/network.hpp"

namespace ntk {

enum class EntkMethod { automatic, jc, vp, sd };
EntkMethod parse_entk_method(const std::string& s);  // "auto" | "jc" | "vp" | "sd"
const char* to_string(EntkMethod m);

// What is computed for each pair (x, x') from the O×O block Θ(x, x').
struct EntkMode {
  enum Kind { full, trace, trace_sum, pntk, logit, diagonal } kind = trace;
  index_t logit_index = 0;  // for kind == logit
};
EntkMode parse_entk_mode(const std::string& s);  // "full" | "trace" | "trace-sum" | "pntk" | "logit=K" | "diagonal"
std::string to_string(const EntkMode& m);

struct EntkOptions {
  EntkMethod method = EntkMethod::automatic;
  EntkMode mode{};
  std::uint64_t max_memory = 0;  // bytes for working memory and the result; 0 = no limit
  index_t tile = 0;              // examples per tile side; 0 = the largest that fits max_memory
  // Per-layer contributions: if not empty, only these layers' parameters (indices into
  // Network::layers()) enter the kernel, so K = Σ_l K_l can be taken apart. Needs method sd / auto.
  std::vector<int> layers;
  // Called after every tile pair with (pairs done, pairs in all); for progress displays.
  std::function<void(index_t, index_t)> progress;
  int threads = 0;  // threads for this call; 0 = num_threads()
  // Set by empirical_ntk_to_file: the kernel lives in a file and only the band of rows in flight
  // counts against max_memory.
  bool out_of_core = false;
  // empirical_ntk_to_file: continue an interrupted run of the same job from its checkpoint
  // (<path>.ntk-checkpoint, written after every band) instead of refusing to overwrite it.
  bool resume = false;
};

// What a call will do, decided before any allocation: the method (auto resolved by an analytic
// cost model), the tile size, and the estimated FLOPs and memory of every method.
struct EntkPlan {
  struct Candidate {
    EntkMethod method;
    index_t tile = 0;
    double flops = 0;                 // floating-point operations, 2 per multiply-add
    std::uint64_t working_bytes = 0;  // beside the kernel
    std::string refused;              // non-empty: why this method cannot run under the budget
  };
  EntkMethod method = EntkMethod::sd;
  index_t tile = 0;
  double flops = 0;
  std::uint64_t working_bytes = 0, output_bytes = 0;
  std::vector<Candidate> candidates;  // jc, vp, sd
  std::string describe() const;       // a few lines for --explain
};

EntkPlan plan_empirical_ntk(const Network& net, index_t n1, index_t n2, bool symmetric, const EntkOptions& options,
                            std::size_t element_bytes);

// "1.5 GiB"
std::string format_bytes(std::uint64_t bytes);

// Output shape for n1 × n2 examples and O outputs: full (n1, n2, O, O); diagonal (n1, n2, O);
// every other mode (n1, n2).
Shape entk_output_shape(const EntkMode& mode, index_t n1, index_t n2, index_t outputs);

// x1 (N1, input...) and optional x2 (N2, input...); x2 == nullptr means x2 = x1 and the symmetric
// path (upper tiles only). Throws InvalidArgument on shape mismatch or non-finite values,
// MemoryBudgetError if one tile does not fit max_memory.
template <class T>
Array<T> empirical_ntk(const Network& net, ThetaSpan<T> theta, const Array<T>& x1,
                       const std::type_identity_t<Array<T>>* x2, const EntkOptions& options);

// The empirical NNGP kernel f(x1) f(x2)ᵀ of the outputs at theta, in the same modes and shapes as
// the eNTK: full (N1, N2, O, O) = f_a(x) f_b(x'); trace = mean over outputs (neural-tangents'
// empirical_nngp_fn); trace-sum; pntk = (1/O)·Σ_ab f_a f_b; logit=K; diagonal (N1, N2, O).
template <class T>
Array<T> empirical_nngp(const Network& net, ThetaSpan<T> theta, const Array<T>& x1,
                        const std::type_identity_t<Array<T>>* x2, const EntkMode& mode);

// The same kernel written straight into an .npy file band of rows by band of rows (the tile engine,
// src/tiles.hpp): each band is written once, so kernels larger than memory fit in max_memory.
// Atomic: nothing is left at path if anything fails. Resumable: the file is written as
// <path>.partial with a checkpoint beside it (src/checkpoint.hpp) that options.resume continues
// from; returns the row it continued from (0 for a fresh run).
template <class T>
index_t empirical_ntk_to_file(const Network& net, ThetaSpan<T> theta, const Array<T>& x1,
                           const std::type_identity_t<Array<T>>* x2, const EntkOptions& options, const std::string& path);

// Matrix-free NTK-vector products Θ·v at fixed inputs x (N examples, O outputs), for solvers and
// estimators (CG, Lanczos, power iteration, trace estimation): a VJP gives Jᵀv, a JVP gives J·(Jᵀv),
// so no kernel or Jacobian is stored. v holds `count` vectors laid out (count, N, O).
template <class T>
class NtkOperator {
 public:
  NtkOperator(const Network& net, std::vector<T> theta, const Array<T>& x);
  index_t dim() const { return n_ * net_.output_size(); }  // N·O
  void apply(const T* v, T* out, index_t count = 1) const;

 private:
  const Network& net_;
  std::vector<T> theta_;
  index_t n_;
  Trace<T> trace_;
};

}  // namespace ntk
