// The feature-map job (ntk features): inputs from a file or memory, the map of ntk/features.hpp applied
// to row batches, the result written to an .npy band by band (atomically) or returned in memory.
#pragma once
#include <optional>
#include <string>

#include "ntk/jobs.hpp"
#include "ntk/features.hpp"
#include "ntk/sketch.hpp"

namespace ntk {

struct FeaturesJob {
  std::string sketch = "ntk";  // "ntk" (NTKSketch), "ntkrf" (NTKRF), "cntk" (CNTKSketch) or "gradient"
  int depth = 1;
  index_t dim = 4096;          // features per example
  int degree = 0;              // NTKSketch / CNTKSketch: polynomial degree, a power of two (0: 8 / 2)
  bool layerwise = false;      // NTKSketch: the layer-wise Algorithm 1 instead of the one-pass variant
  int filter = 3;              // CNTKSketch: f × f filters
  bool same = true;            // CNTKSketch: SAME (true) or VALID padding
  index_t poly_dim = 0;        // NTKSketch: PolySketch width (0: dim/4)
  index_t relu_dim = 0;        // NTKRF: order-1 features per layer (0: dim/2)
  index_t step_dim = 0;        // NTKRF: order-0 features per layer (0: relu_dim)
  bool leverage = true;        // NTKRF: leverage-score sampling of the order-1 features
  bool shared_projection = true;   // NTKRF: step features from the ReLU features' projections
  std::uint64_t seed = 0;
  // nullopt: Fourier for ntk / ntkrf / gradient, Hadamard for cntk (as accurate there at large m and
  // about 3x faster; README, sketches).
  std::optional<SketchTransform> transform;
  bool flatten = false;        // images (N, H, W, C) taken as vectors of H·W·C; otherwise refused
  // sketch == "gradient": the network, its parameters, the empirical kernel's mode and the projection.
  NetworkRequest net;
  ParamSource params;
  EntkMode mode{EntkMode::pntk};
  GradientProjection projection = GradientProjection::srht;
  JobInput x;
  InputOptions input;
  DType dtype = DType::float32;  // of the output; features are computed in float64
  int threads = 0;
  std::uint64_t max_memory = 0;  // 0: no limit
  ProgressFn progress;           // (rows done, rows)
  std::string output_path;       // empty: returned in JobResult::array
  // Continue an interrupted run from the checkpoint beside output_path (a file is always written
  // resumably; without resume, an interrupted run's checkpoint is refused rather than overwritten).
  bool resume = false;
};

JobResult run_features(const FeaturesJob& job);

}  // namespace ntk
