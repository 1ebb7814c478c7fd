// Self-calibration for clustering without labels (docs/calibration.md): a two-class mixture
// fitted to the kNN pairs, seen by their similarity and by how much of one face's neighbour
// list lies in the other's neighbourhood, turns each graph distance into a calibrated one on
// the scale the method's constants were designed for (0 for the same person, 1 for strangers):
// the distance whose square-root transition weight (what TPDi adds up) is the pair's expected
// one over the two classes given P(same identity), plus the raw order within a class; the
// linking threshold is the one whose clustering makes the sampled pairs' probabilities most
// likely, those read from a three-part fit whose middle part's share of same-person pairs is
// estimated together with the clustering.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "facecluster/graph.h"

namespace facecluster {

// Similarity of the kNN pairs, two Gaussians per class. The same person: tight and loose pairs
// (identities differ in spread, some have two modes): same_mean / same_sd the tight part,
// loose_mean / loose_sd the loose part, loose_share the loose part's share of the class.
// Strangers: the core (diff_mean / diff_sd) and an upper part (look-alike identities, hubs)
// tail_mean / tail_sd with tail_share of the class. A share of 0: that class is one Gaussian.
struct Mixture {
  double same_mean = 0, same_sd = 0, diff_mean = 0, diff_sd = 0, same_weight = 0;
  double loose_mean = 0, loose_sd = 1, loose_share = 0;
  double tail_mean = 0, tail_sd = 1, tail_share = 0;
  int iterations = 0;
  // Each class's density at similarity s, and its two parts (each weighted by its share).
  double same_pdf(double s) const;
  std::pair<double, double> same_parts(double s) const;  // (tight, loose)
  double diff_pdf(double s) const;
  std::pair<double, double> diff_parts(double s) const;  // (core, upper tail)
  double same_class_mean() const { return (1 - loose_share) * same_mean + loose_share * loose_mean; }
  double diff_class_mean() const { return (1 - tail_share) * diff_mean + tail_share * tail_mean; }
};

// The kNN pairs as a mixture of same-person and stranger pairs seen two ways: the pair's
// similarity (Mixture) and the overlap of neighbourhoods (the share of j's list found in the
// lists of i and of i's kOverlapReach nearest neighbours; a free histogram of kOverlapBins bins
// per class), the two views independent given the class. EM starts from the pairs sharing at
// least half their lists as "same" and under a tenth as "different" (each split at its median
// similarity into its two parts), and then learns what overlap each class really has
// (docs/calibration.md).
constexpr int kOverlapBins = 10;
// The histogram bin of an overlap (a share of k list entries): bin b holds [b / 10, (b + 1) / 10).
// One rule for the fit and the posterior, so a share on a bin edge (56 / 80 = 0.7f, a hair under
// 0.7 in float) is counted where it is scored.
int overlap_bin(double overlap);
// How far the overlap view looks past i's own list: a loose member of an identity larger than
// the list shares little of its list with i but much with the faces next to i; a stranger shares
// little with either (docs/calibration.md). A handful: results were flat from 3 to 10.
constexpr int kOverlapReach = 5;
constexpr double kStartSameOverlap = 0.5, kStartDiffOverlap = 0.1;
struct TwoViewMixture {
  Mixture similarity;
  std::vector<double> overlap_same, overlap_diff;  // probability of each overlap bin
  double posterior(double s, double overlap) const;  // P(same | similarity, overlap)
};
// Both classes get the same shape: two Gaussians over similarity sharing the class's overlap
// histogram; the strangers' upper part grows from the fit with one Gaussian for them.
// stranger_tail = false stops there (kept for comparison).
TwoViewMixture fit_two_view(const std::vector<float>& similarity, const std::vector<float>& overlap,
                            bool stranger_tail = true);

// The same pairs read a second way, for the cut only: three parts over similarity, each a
// Gaussian with an overlap histogram of its own (tight same-person pairs, a middle part,
// strangers; ordered by mean similarity). Whether the middle part is the same person (the loose
// pairs of identities larger than the list) or strangers (hubs, look-alikes) is not in the
// mixture's shape; likelihood_tau reads it off the clusterings (docs/calibration.md).
struct ThreePartMixture {
  static constexpr int kParts = 3;
  struct Part {
    double weight = 0, mean = 0, sd = 0;
    std::vector<double> overlap;  // probability of each overlap bin
  };
  Part part[kParts];  // tight, middle, strangers
  // P(part | similarity, overlap) for the three parts.
  void responsibilities(double s, double overlap, double out[kParts]) const;
};
ThreePartMixture fit_three_part(const std::vector<float>& similarity, const std::vector<float>& overlap);

// P(same | s), made non-decreasing in s.
class SameProbability {
 public:
  SameProbability() = default;
  SameProbability(const Mixture& m, double lo, double hi);
  double operator()(double s) const;
  // The similarity where P(same) crosses 0.5.
  double threshold() const { return threshold_; }
  // The range of similarities the table spans (values outside read its ends).
  double lo() const { return lo_; }
  double hi() const { return hi_; }

 private:
  double lo_ = 0, hi_ = 1;
  std::vector<double> table_;
  double threshold_ = 0.5;
};

// One sampled neighbour pair and the log-odds that it is one person, log(P / (1 - P)), with P
// from the two-view fit held within [kMinPairProbability, 1 - kMinPairProbability]: one pair's
// evidence counts at most 1000:1, so a few pairs in a Gaussian's far tail cannot outvote the rest.
struct PairEvidence {
  int32_t a = 0, b = 0;
  float log_odds = 0;
};
constexpr double kMinPairProbability = 1e-3;
// log(P / (1 - P)) with P held within [kMinPairProbability, 1 - kMinPairProbability].
float clamped_log_odds(double p);

struct Calibration {
  TwoViewMixture fit;  // fit.similarity gives P(same | similarity) for the distances
  SameProbability same;
  // The raw order kept inside a class: distance d becomes expected_root_weight_distance(P(same),
  // tpdi_sigma) + order_weight * d / order_scale, with order_scale the median non-self kNN
  // distance and order_weight the TPDi temperature (docs/calibration.md, step 3).
  double order_weight = 0, order_scale = 1;
  GraphParams params;  // what the graph stage should run with
  std::vector<PairEvidence> pairs;  // the sampled pairs, log-odds under `fit`
  // The same pairs under `three_part`: P(tight part) and P(middle part) of each, for the cut.
  ThreePartMixture three_part;
  std::vector<std::pair<float, float>> part_shares;
  std::string decision;             // one line for the terminal: what was chosen, on what evidence
  std::vector<std::string> notes;   // the fit in full (scores.json, report.html)
};

// The fewest non-self neighbour pairs a calibration is fitted on; a run on fewer (a handful of
// distinct faces) links cosine distances with the release's constants instead.
constexpr int64_t kMinCalibrationPairs = 10;
// The non-self neighbour pairs of g (what a calibration is fitted on).
int64_t neighbour_pairs(const KnnGraph& g);

// Fits the calibration on a graph whose distances are 1 - similarity (cosine or learned): the
// two-view mixture over about 2M sampled neighbour pairs (every r-th row, all its neighbours).
Calibration calibrate_graph(const KnnGraph& g, const GraphParams& base);

// calibrate_graph in steps, for a process holding only some rows of the graph (a distributed
// run): each samples its rows, the samples are joined in row order, and every process fits the
// same calibration from them.
struct PairSample {  // the pairs, each with its similarity and the overlap of neighbourhoods
  std::vector<int32_t> a, b;
  std::vector<float> sim, overlap;
};
struct SimilarityRange {  // of the non-self kNN entries
  float lo = 1e30f, hi = -1e30f;
};
// Rows are sampled when their global id is a multiple of this (about 2M pairs in all).
int64_t calibration_row_stride(int64_t n, int k);
// The sampled rows among global rows first_row..first_row + count - 1 of n, as offsets from
// first_row, ascending: the rows whose pairs sample_pairs takes.
std::vector<int64_t> calibration_sampled_rows(int64_t first_row, int64_t count, int64_t n, int k);
// `rows` holds global rows first_row..first_row + rows.n - 1 of a graph of n rows;
// nbrs_of(j) gives the list of any global row j those rows name.
using NeighbourLookup = std::function<const int32_t*(int32_t)>;
PairSample sample_pairs(const KnnGraph& rows, int64_t first_row, int64_t n, const NeighbourLookup& nbrs_of);
SimilarityRange similarity_range(const KnnGraph& rows, int64_t first_row);
Calibration calibration_from_sample(const PairSample& sample, const SimilarityRange& range, const GraphParams& base);

// The distance whose square-root transition weight exp(-distance / (2 sigma)) is the expected
// one of a pair that is the same person (distance 0) with probability p_same and a stranger
// (distance 1) otherwise: -2 sigma log(p_same + (1 - p_same) exp(-1 / (2 sigma))). TPDi sums
// sqrt(q_il q_jl), so each pair then adds to it what it adds on average over its two classes.
double expected_root_weight_distance(double p_same, double sigma);

// The same graph with calibrated distances expected_root_weight_distance(P(same), tpdi_sigma) +
// order_weight * d / order_scale; the map is increasing in d, so neighbour order is unchanged.
// first_row: the global id of g's row 0 (a part of a graph).
KnnGraph apply_calibration(const KnnGraph& g, const Calibration& c, int64_t first_row = 0);
// The same, in place (no second n x k copy at MS1M scale).
void calibrate_distances(KnnGraph& g, const Calibration& c, int64_t first_row = 0);
// The calibrated distances of the rows `rows` of g (row ids, any order) written into `out`
// (g.n x k, row i at i * k), the others left as they are: rows whose lists changed.
void calibrate_rows(const KnnGraph& g, const Calibration& c, const std::vector<int64_t>& rows, std::vector<float>& out);

// What apply_calibration needs of a Calibration, kept by an incremental clustering to calibrate
// the lists of faces added later as the first run calibrated its own: the same-person mixture
// over similarity and the range P(same) was tabulated over, the order term, and the graph
// parameters. calibration_from_map gives back a Calibration that maps distances bit for bit as
// the original did (the rest of it, the sampled pairs and the fit's notes, stays empty).
struct DistanceMap {
  Mixture similarity;
  double lo = 0, hi = 1, order_weight = 0, order_scale = 1;
  GraphParams params;
};
DistanceMap distance_map(const Calibration& c);
Calibration calibration_from_map(const DistanceMap& m);

// The linking threshold by maximum likelihood: of the clusterings the links give at tau = 0.005,
// 0.010, ..., 0.995, the one under which the sampled pairs' calibrated same-person probabilities
// are most likely (pairs together: P; pairs apart: 1 - P). `note` says what was chosen.
double likelihood_tau(const Links& links, const std::vector<PairEvidence>& pairs, std::string* note);

// The pairs' probabilities the cut uses. The three-part fit's middle part is read as the same
// person when some clustering on the path explains the pairs better that way (all of it the same
// person) than with all of it strangers (each reading scored by its best clustering's
// log-likelihood, constant included). Then P(same) = P(tight) + theta x P(middle), with theta
// (the middle part's share of same-person pairs) midway between two estimates that err in
// opposite directions: the share by maximum likelihood together with the clustering (0, 0.05,
// ..., 1; high, a classification likelihood favours shares that make the pairs sure) and the
// two-class fit's mean P(same) over the middle part (low, it ties loose pairs to the tight
// pairs' overlap). Otherwise theta is the two-class fit's share alone: read as strangers,
// "everything apart" explains a large middle part at little cost whatever it is, so the joint
// estimate cannot be trusted on that side; the pairs are still P(tight) + theta x P(middle), not
// the two-class fit's own P, which calls crowded strangers sure (docs/calibration.md). `note`
// says which.
constexpr int kMiddleShareSteps = 20;
struct CutEvidence {
  double middle_share = 0;  // theta
  bool middle_is_same = false;  // how theta was taken; the pairs below are P(tight) + theta x P(middle)
  std::vector<PairEvidence> pairs;
  std::vector<int32_t> join_step;  // each pair's first step together on the links it was read from
};
CutEvidence cut_evidence(const Links& links, const Calibration& c, std::string* note);
// likelihood_tau on those links and pairs, from the join steps cut_evidence already found.
double likelihood_tau(const CutEvidence& e, std::string* note);

// The curve behind it: for tau = step / kSteps, the log-likelihood up to a constant (the sum of
// the log-odds of the pairs together; 0 at step 0, where no link is kept) and how many pairs are
// together. One pass over the links in order, O(N + P log P).
struct LikelihoodCurve {
  static constexpr int kSteps = 200;
  std::vector<double> log_likelihood;  // kSteps values, index = step
  std::vector<int64_t> together;
};
LikelihoodCurve likelihood_curve(const Links& links, const std::vector<PairEvidence>& pairs);

}  // namespace facecluster
