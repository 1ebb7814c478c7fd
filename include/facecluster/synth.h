// Synthetic face embeddings with identity labels, deterministic from a seed (see docs/synth.md).
#pragma once

#include <string>

#include "facecluster/types.h"

namespace facecluster {

struct SynthOptions {
  int64_t n = 20000;          // faces
  int64_t dim = 256;          // embedding dimension (the cosine map may add dimensions)
  int64_t identities = 0;     // 0: n / 68 (MS1M's mean identity size), at least 1
  uint64_t seed = 42;
  double single_share = 0.0;  // share of identities with exactly one face (drawn before small_share)
  double small_share = 0.30;  // share of identities with 1 to 5 faces
  double size_sigma = 1.0;    // log-normal spread of the other identities' sizes
  int64_t max_size = 1500;    // cap on one identity's size
  double cos_min = 0.30;      // within-identity target mean cosine, drawn uniformly
  double cos_max = 0.80;      //   from [cos_min, cos_max] per identity
  double two_mode_share = 0.15;  // identities with two modes (pose / age)
  double mode_cos = 0.70;        // cosine between the two mode centres
  double quality_sigma = 0.25;   // per-face log-normal spread of the noise (image quality)
  double near_dup_share = 0.02;  // identities whose centre is placed near another's
  double near_dup_cos = 0.50;    // cosine between such centres
  double centre_dim = 0;         // identity centres spread like random directions in this many
                                 // dimensions (cos^2 averages 1 / centre_dim), in [1, dim]; 0: all of dim
  double mislabel_share = 0.01;  // faces given another identity's label
  std::string cos_map = "none";  // see apply_cosine_map
};

struct SynthData {
  Matrix features;  // L2-normalised rows
  Labels labels;
};

SynthData make_synthetic(const SynthOptions& opt);

// Maps pairwise cosines the way other face models distribute them, on unit rows:
//   "none";
//   "offset:A" (0 < A < 1): appends one dimension so that cos' = A + (1 - A) cos exactly
//     (cosines compressed into [A, 1], as with models whose impostor pairs sit near 0.8);
//   "noise:S" (S > 0): appends D dimensions of Gaussian noise of norm ~S, so that
//     cos' ~ cos / (1 + S^2) (cosines shrunk towards 0, a noisier model).
// Specs can be chained with ',' ("noise:0.5,offset:0.8"). Rows stay unit length.
void apply_cosine_map(Matrix& m, const std::string& spec, uint64_t seed);

struct SynthStats {
  int64_t n = 0, identities = 0;
  int64_t size_min = 0, size_p50 = 0, size_p90 = 0, size_p99 = 0, size_max = 0;
  double share_ids_1_to_5 = 0;          // identities with 1-5 faces
  double within_cos_p05 = 0, within_cos_mean = 0, within_cos_p95 = 0;  // per-identity mean cosine
  double cross_cos_mean = 0, cross_cos_p99 = 0;  // random different-label pairs
};
SynthStats measure_synthetic(const Matrix& normalized, const Labels& labels, uint64_t seed = 1);
std::string format_synth_stats(const SynthStats& s);

}  // namespace facecluster
