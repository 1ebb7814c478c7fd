// Self-calibration for clustering without labels (docs/calibration.md): a two-component
// mixture fitted to the kNN similarities (anchored by pairs whose neighbour lists clearly do or
// do not overlap) turns each graph distance into a calibrated 1 - P(same identity), the scale
// the method's constants were designed for; the linking threshold comes from the stability of
// the clustering over tau.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "facecluster/graph.h"

namespace facecluster {

struct Mixture {
  double same_mean = 0, same_sd = 0, diff_mean = 0, diff_sd = 0, same_weight = 0;
  int iterations = 0;
};

// Fits two Gaussians (same / different identity) to similarity values by EM. Deterministic.
// anchor (empty, or one per value): 1 = known same, 0 = known different, -1 = unknown; known
// values keep their class in every EM step (semi-supervised EM).
Mixture fit_mixture(const std::vector<float>& similarity, const std::vector<int8_t>& anchor = {});

// P(same | s), made non-decreasing in s.
class SameProbability {
 public:
  SameProbability() = default;
  SameProbability(const Mixture& m, double lo, double hi);
  double operator()(double s) const;
  // The similarity where P(same) crosses 0.5.
  double threshold() const { return threshold_; }

 private:
  double lo_ = 0, hi_ = 1;
  std::vector<double> table_;
  double threshold_ = 0.5;
};

struct Calibration {
  Mixture mixture;
  SameProbability same;
  // The raw order kept inside a class: distance d becomes 1 - P(same) + order_weight * d /
  // order_scale, with order_scale the median non-self kNN distance and order_weight the TPDi
  // temperature (docs/calibration.md, "order within a class").
  double order_weight = 0, order_scale = 1;
  GraphParams params;  // what the graph stage should run with
  std::vector<std::string> notes;
};

// Fits the calibration on a graph whose distances are 1 - similarity (cosine or learned).
// Pairs whose two faces share at least half their neighbour lists anchor the "same" class,
// pairs sharing under a tenth the "different" class.
Calibration calibrate_graph(const KnnGraph& g, const GraphParams& base);

// The same graph with calibrated distances 1 - P(same) + order_weight * d / order_scale; the
// map is increasing in d, so neighbour order is unchanged.
KnnGraph apply_calibration(const KnnGraph& g, const Calibration& c);

// The linking threshold from the stability of the clustering over tau. With one parent per face
// the links form a forest, so the number of clusters at tau is N minus the links with TPDi < tau:
// the histogram of link TPDi values is how fast the clustering changes with tau. Above the
// calibrated midpoint (0.5) the clustering is most stable where that histogram is lowest; when
// that valley is deep (at most `depth` times the links just below 0.5) tau moves to its middle
// (the middle of the lowest run of windows 0.1 wide, so that a few stray links cannot pin it);
// otherwise tau goes where the links first thin out to that floor (a window with at most twice
// the fewest links). The reference counts at least 20 links (a nearly empty window just below
// 0.5 means the links have already thinned out); with under 20 links below 0.5 in all there is
// too little to judge: 0.5.
// `note` receives one line saying what was chosen and why.
double stable_tau(const Links& links, std::string* note, double depth = 0.15);

}  // namespace facecluster
