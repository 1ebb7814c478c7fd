#include <cmath>
#include <map>
#include <random>

#include "facecluster/error.h"
#include "facecluster/metrics.h"
#include "helpers.h"

using namespace facecluster;

namespace {

// Brute-force references: count over all ordered pairs / all elements, O(N^2).
struct Reference {
  double pw_p, pw_r, bc_p, bc_r, ari, nmi;
};

Reference brute_force(const Labels& pred, const Labels& gt) {
  const size_t n = pred.size();
  double both = 0, same_pred = 0, same_gt = 0, bc_p = 0, bc_r = 0;
  double a = 0, b = 0, c = 0, d = 0;  // unordered pairs: same/same, pred only, gt only, neither
  for (size_t i = 0; i < n; ++i) {
    double in_both = 0, in_pred = 0, in_gt = 0;
    for (size_t j = 0; j < n; ++j) {
      const bool sp = pred[i] == pred[j], sg = gt[i] == gt[j];
      in_both += sp && sg;
      in_pred += sp;
      in_gt += sg;
      if (i == j) continue;
      both += sp && sg;
      same_pred += sp;
      same_gt += sg;
      if (j > i) {
        if (sp && sg) a += 1;
        else if (sp) b += 1;
        else if (sg) c += 1;
        else d += 1;
      }
    }
    bc_p += in_both / in_pred;
    bc_r += in_both / in_gt;
  }
  Reference r;
  r.pw_p = same_pred > 0 ? both / same_pred : 1.0;
  r.pw_r = same_gt > 0 ? both / same_gt : 1.0;
  r.bc_p = bc_p / double(n);
  r.bc_r = bc_r / double(n);
  const double den = (a + b) * (b + d) + (a + c) * (c + d);
  r.ari = den != 0 ? 2 * (a * d - b * c) / den : 1.0;
  // NMI from the dense joint distribution.
  std::map<int64_t, double> pc, pk;
  std::map<std::pair<int64_t, int64_t>, double> pck;
  for (size_t i = 0; i < n; ++i) {
    pc[gt[i]] += 1.0 / double(n);
    pk[pred[i]] += 1.0 / double(n);
    pck[{gt[i], pred[i]}] += 1.0 / double(n);
  }
  double hc = 0, hk = 0, mi = 0;
  for (auto& [_, p] : pc) hc -= p * std::log(p);
  for (auto& [_, p] : pk) hk -= p * std::log(p);
  for (auto& [key, p] : pck) mi += p * std::log(p / (pc[key.first] * pk[key.second]));
  r.nmi = (hc == 0 && hk == 0) ? 1.0 : mi / ((hc + hk) / 2);
  return r;
}

}  // namespace

TEST(Metrics, HandComputedCase) {
  const Labels gt = {0, 0, 0, 1, 1}, pred = {0, 0, 1, 1, 1};
  const Scores s = evaluate(pred, gt);
  EXPECT_DOUBLE_EQ(s.pairwise_p, 0.5);
  EXPECT_DOUBLE_EQ(s.pairwise_r, 0.5);
  EXPECT_DOUBLE_EQ(s.pairwise_f, 0.5);
  EXPECT_NEAR(s.bcubed_p, 11.0 / 15, 1e-12);
  EXPECT_NEAR(s.bcubed_r, 11.0 / 15, 1e-12);
  EXPECT_NEAR(s.ari, 1.0 / 6, 1e-12);
  EXPECT_NEAR(s.nmi, 0.4325380677663126, 1e-9);
  EXPECT_EQ(s.true_clusters, 2);
  EXPECT_EQ(s.pred_clusters, 2);
}

TEST(Metrics, PerfectAndAllSingletons) {
  const Labels gt = {4, 4, 9, 9, 9, 1};
  const Scores perfect = evaluate({7, 7, 3, 3, 3, 0}, gt);
  EXPECT_DOUBLE_EQ(perfect.pairwise_f, 1.0);
  EXPECT_DOUBLE_EQ(perfect.bcubed_f, 1.0);
  EXPECT_NEAR(perfect.nmi, 1.0, 1e-12);
  EXPECT_NEAR(perfect.ari, 1.0, 1e-12);
  const Scores single = evaluate({0, 1, 2, 3, 4, 5}, gt);
  EXPECT_DOUBLE_EQ(single.pairwise_p, 1.0);  // no predicted pair, none wrong
  EXPECT_DOUBLE_EQ(single.pairwise_r, 0.0);
  EXPECT_DOUBLE_EQ(single.bcubed_p, 1.0);
  EXPECT_EQ(single.pred_singletons, 6);
  EXPECT_EQ(single.true_singletons, 1);
}

TEST(Metrics, MatchesBruteForceOnRandomLabelings) {
  std::mt19937_64 rng(2024);
  for (int trial = 0; trial < 3000; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 60);
    const int kc = 1 + static_cast<int>(rng() % 8), kp = 1 + static_cast<int>(rng() % 12);
    Labels gt(n), pred(n);
    for (int i = 0; i < n; ++i) {
      gt[i] = static_cast<int64_t>(rng() % kc) * 1000 - 7;  // non-contiguous, negative labels
      pred[i] = (rng() % 4 == 0) ? gt[i] : static_cast<int64_t>(rng() % kp);
    }
    const Scores s = evaluate(pred, gt);
    const Reference r = brute_force(pred, gt);
    ASSERT_NEAR(s.pairwise_p, r.pw_p, 1e-12) << trial;
    ASSERT_NEAR(s.pairwise_r, r.pw_r, 1e-12) << trial;
    ASSERT_NEAR(s.bcubed_p, r.bc_p, 1e-12) << trial;
    ASSERT_NEAR(s.bcubed_r, r.bc_r, 1e-12) << trial;
    ASSERT_NEAR(s.ari, r.ari, 1e-9) << trial;
    ASSERT_NEAR(s.nmi, r.nmi, 1e-9) << trial;
  }
}

TEST(Metrics, LengthMismatchIsAnError) {
  EXPECT_THROW(evaluate({1, 2}, {1}), Error);
  EXPECT_THROW(evaluate({}, {}), Error);
}

TEST(Bins, BySizeSplitsClassesLikeArraySplit) {
  // classes of sizes 1, 2, 3, 4, 5, 6, 7 (labels 10..16); 3 bins -> 3, 2, 2 classes
  Labels gt, pred;
  for (int c = 0; c < 7; ++c)
    for (int i = 0; i <= c; ++i) {
      gt.push_back(10 + c);
      pred.push_back(c < 3 ? 0 : 10 + c);  // the three smallest classes merged into one cluster
    }
  const auto bins = evaluate_by_size(pred, gt, 3);
  ASSERT_EQ(bins.size(), 3u);
  EXPECT_EQ(bins[0].classes, 3);
  EXPECT_EQ(bins[1].classes, 2);
  EXPECT_EQ(bins[2].classes, 2);
  EXPECT_EQ(bins[0].rows, 1 + 2 + 3);
  EXPECT_EQ(bins[0].key_min, 1);
  EXPECT_EQ(bins[2].key_max, 7);
  // bin 1 alone: the merge gives pairwise precision tp/pp = (1+4+9-6)/(36-6)
  EXPECT_NEAR(bins[0].scores.pairwise_p, 8.0 / 30, 1e-12);
  EXPECT_DOUBLE_EQ(bins[1].scores.pairwise_f, 1.0);
}

TEST(Bins, BySparsityUsesMeanPairwiseCosine) {
  // class 0: identical rows (sparsity 0); class 1: orthogonal rows (sparsity 1)
  Matrix x(4, 2);
  x.data = {1, 0, 1, 0, 1, 0, 0, 1};
  const Labels gt = {0, 0, 1, 1};
  const auto bins = evaluate_by_sparsity(gt, gt, x, 2);
  ASSERT_EQ(bins.size(), 2u);
  EXPECT_NEAR(bins[0].key_min, 0.0, 1e-12);
  EXPECT_NEAR(bins[1].key_max, 1.0, 1e-12);
  EXPECT_EQ(bins[1].rows, 2);
}
