#include <algorithm>
#include <cmath>
#include <random>

#include "facecluster/calibrate.h"
#include "facecluster/error.h"
#include "helpers.h"

using namespace facecluster;

TEST(Calibrate, ThresholdFallsInTheGapOfAKnownSplit) {
  for (double same_share : {0.1, 0.3, 0.7}) {
    std::mt19937_64 rng(5);
    std::uniform_real_distribution<double> same(0.65, 0.95), diff(-0.05, 0.35);
    std::vector<float> s;
    for (int i = 0; i < 20000; ++i) s.push_back(static_cast<float>(i < same_share * 20000 ? same(rng) : diff(rng)));
    const Mixture m = fit_mixture(s);
    const SameProbability p(m, -0.05, 0.95);
    EXPECT_GT(p.threshold(), 0.35) << same_share;
    EXPECT_LT(p.threshold(), 0.65) << same_share;
    EXPECT_NEAR(m.same_weight, same_share, 0.02);
    EXPECT_LT(p(0.2), 0.05);
    EXPECT_GT(p(0.8), 0.95);
  }
}

TEST(Calibrate, SameProbabilityIsMonotone) {
  Mixture m;
  m.same_mean = 0.6;
  m.same_sd = 0.02;  // narrow "same", wide "different": the raw posterior dips again at the top
  m.diff_mean = 0.2;
  m.diff_sd = 0.3;
  m.same_weight = 0.3;
  const SameProbability p(m, -0.5, 1.0);
  double prev = -1;
  for (double s = -0.5; s <= 1.0; s += 0.001) {
    EXPECT_GE(p(s), prev - 1e-12);
    prev = p(s);
  }
}

TEST(Calibrate, WideSameComponentDoesNotClaimTheLowTail) {
  // A narrow "different" peak with a wide "same" component: the raw posterior says "same" far
  // below the peak; the calibrated one must not.
  Mixture m;
  m.same_mean = 0.6;
  m.same_sd = 0.15;
  m.diff_mean = 0.24;
  m.diff_sd = 0.016;
  m.same_weight = 0.88;
  const SameProbability p(m, -0.2, 1.0);
  EXPECT_LT(p(0.24), 0.5);
  EXPECT_LT(p(0.0), 0.5);
  EXPECT_GT(p.threshold(), 0.24);
  EXPECT_LT(p.threshold(), 0.35);
}

TEST(Calibrate, AnchorsKeepABroadSameComponentWhole) {
  // The kNN similarities of a 128-d synthetic set (shape as measured): a narrow "different" peak
  // (13%) below a broad "same" mass with two bumps (low- and high-cosine identities). Anchors at
  // the rates the shared-neighbour rule gave there: most same pairs, fewer of the low-similarity
  // ones; about half the strangers, fewer of the high-similarity ones.
  std::mt19937_64 rng(11);
  std::normal_distribution<double> diff(0.28, 0.03), low(0.47, 0.09), high(0.73, 0.07);
  std::uniform_real_distribution<double> u(0, 1);
  auto same = [&](std::mt19937_64& r) { return u(r) < 0.4 ? low(r) : high(r); };
  std::vector<float> s;
  std::vector<int8_t> anchor;
  for (int i = 0; i < 20000; ++i) {
    const bool is_same = u(rng) > 0.13;
    const double v = is_same ? same(rng) : diff(rng);
    s.push_back(static_cast<float>(v));
    const double rate = is_same ? (v < 0.4 ? 0.6 : 0.85) : (v < 0.3 ? 0.6 : 0.3);
    anchor.push_back(u(rng) < rate ? (is_same ? 1 : 0) : -1);
  }
  const Mixture m = fit_mixture(s, anchor);
  EXPECT_NEAR(m.diff_mean, 0.28, 0.02);
  EXPECT_NEAR(m.same_weight, 0.87, 0.04);
  const SameProbability p(m, 0.1, 0.95);
  EXPECT_GT(p.threshold(), 0.29);
  EXPECT_LT(p.threshold(), 0.37);
  // Without anchors the two Gaussians split the flat "same" mass instead (why anchors exist).
  const Mixture free = fit_mixture(s);
  EXPECT_GT(free.diff_mean, 0.33);
  EXPECT_THROW(fit_mixture(s, std::vector<int8_t>(10, -1)), Error);
}

TEST(Calibrate, ApplyKeepsOrderAndSelfDistance) {
  const KnnGraph g = fctest::random_graph(200, 10, 9, false);
  const Calibration c = calibrate_graph(g, GraphParams{});
  const KnnGraph out = apply_calibration(g, c);
  // Independent expectation: P(same | s) from the fitted mixture's two Gaussians by Bayes' rule.
  const Mixture& m = c.mixture;
  auto bayes = [&](double s) {
    auto pdf = [](double x, double mu, double sd) { return std::exp(-0.5 * (x - mu) * (x - mu) / (sd * sd)) / sd; };
    const double a = m.same_weight * pdf(s, m.same_mean, m.same_sd);
    const double b = (1 - m.same_weight) * pdf(s, m.diff_mean, m.diff_sd);
    return a / (a + b);
  };
  // The order term: the TPDi temperature times the distance over the median non-self distance
  // (the graph is small, so every row is in the calibration's sample).
  std::vector<double> nonself;
  for (int64_t i = 0; i < g.n; ++i)
    for (int j = 0; j < g.k; ++j)
      if (g.nbr_row(i)[j] != i) nonself.push_back(g.dist_row(i)[j]);
  std::sort(nonself.begin(), nonself.end());
  const double median = nonself[nonself.size() / 2], weight = GraphParams{}.tpdi_sigma;
  EXPECT_NEAR(c.order_scale, median, 1e-6);
  EXPECT_DOUBLE_EQ(c.order_weight, weight);
  int64_t checked_against_bayes = 0;
  for (int64_t i = 0; i < g.n; ++i) {
    EXPECT_EQ(out.dist_row(i)[0], 0.f);
    for (int j = 1; j < g.k; ++j) {
      EXPECT_GE(out.dist_row(i)[j], out.dist_row(i)[j - 1]);
      const double s = 1.0 - double(g.dist_row(i)[j]);
      const double order = weight * double(g.dist_row(i)[j]) / median;
      EXPECT_NEAR(out.dist_row(i)[j], 1.0 - c.same(s) + order, 1e-6) << "row " << i << " entry " << j;
      // Between the two means the monotone posterior is Bayes' rule itself.
      if (s > m.diff_mean && s < m.same_mean) {
        EXPECT_NEAR(out.dist_row(i)[j], 1.0 - bayes(s) + order, 0.01) << "s " << s;
        ++checked_against_bayes;
      }
    }
  }
  EXPECT_GT(checked_against_bayes, 100);
  EXPECT_EQ(out.nbrs, g.nbrs);
  EXPECT_FALSE(c.notes.empty());
}

TEST(Calibrate, TooFewValuesIsAnError) { EXPECT_THROW(fit_mixture({0.1f, 0.2f}), Error); }

namespace {
// Links whose TPDi values spread evenly over [t - 0.025, t + 0.025) for each (t, count).
facecluster::Links links_with(const std::vector<std::pair<double, int>>& groups) {
  facecluster::Links l;
  for (const auto& [t, count] : groups)
    for (int i = 0; i < count; ++i) {
      l.parent.push_back(0);
      l.dist.push_back(static_cast<float>(std::min(1.0, t - 0.025 + 0.05 * (i + 0.5) / count)));
    }
  l.parent.push_back(-1);  // a root
  l.dist.push_back(1.f);
  return l;
}
}  // namespace

TEST(StableTau, MovesToADeepValleyAboveTheMidpoint) {
  // Same-identity links spread up to 0.7, a gap, then cross-identity links near 1.
  std::vector<std::pair<double, int>> g;
  for (int b = 0; b < 14; ++b) g.emplace_back(0.025 + 0.05 * b, 100);
  g.emplace_back(0.97, 300);
  std::string note;
  const double tau = facecluster::stable_tau(links_with(g), &note);
  EXPECT_GT(tau, 0.72);  // inside the empty stretch (0.7, 0.97)
  EXPECT_LT(tau, 0.95);
  EXPECT_NE(note.find("most stable"), std::string::npos) << note;
}

TEST(StableTau, AStrayLinkDoesNotPinTauToTheEdgeOfTheValley) {
  // Same-identity links up to 0.65, one stray link at 0.72, then nothing until the pile at
  // 0.95-1. Windows 0.05 wide are empty just above 0.65 (before the stray) and again from about
  // 0.75; the valley is the long stretch after the stray, so tau lands in (0.75, 0.92), not at 0.68.
  std::vector<std::pair<double, int>> g;
  for (int b = 0; b < 13; ++b) g.emplace_back(0.025 + 0.05 * b, 100);
  g.emplace_back(0.72, 1);
  g.emplace_back(0.975, 300);
  std::string note;
  const double tau = facecluster::stable_tau(links_with(g), &note);
  EXPECT_GT(tau, 0.75);
  EXPECT_LT(tau, 0.92);
  EXPECT_NE(note.find("most stable"), std::string::npos) << note;
}

TEST(StableTau, WithoutADeepValleyLinksUpToTheFloor) {
  // Links thin out gradually to a floor of 25 per 0.05 from 0.75 on: not deep against the 100
  // just below 0.5, so tau goes where the windows first hold at most twice the floor (0.675).
  std::vector<std::pair<double, int>> g = {{0.475, 100}, {0.525, 90}, {0.575, 80}, {0.625, 70}, {0.675, 50},
                                           {0.725, 30}};
  for (double t : {0.775, 0.825, 0.875, 0.925}) g.emplace_back(t, 25);
  g.emplace_back(0.975, 200);
  std::string note;
  const double tau = facecluster::stable_tau(links_with(g), &note);
  EXPECT_GE(tau, 0.65);
  EXPECT_LE(tau, 0.70);
  EXPECT_NE(note.find("thin out"), std::string::npos) << note;
}

TEST(StableTau, StaysAtTheMidpointWithoutAClearPlateau) {
  std::vector<std::pair<double, int>> g;
  for (int b = 0; b < 20; ++b) g.emplace_back(0.025 + 0.05 * b, 40);  // flat: no stable stretch
  std::string note;
  EXPECT_DOUBLE_EQ(facecluster::stable_tau(links_with(g), &note), 0.5);
  EXPECT_NE(note.find("no deep stable plateau"), std::string::npos) << note;
  // Too few links below the midpoint at all to judge: the midpoint too.
  EXPECT_DOUBLE_EQ(facecluster::stable_tau(links_with({{0.1, 12}, {0.47, 5}, {0.99, 50}}), nullptr), 0.5);
}

TEST(StableTau, FewLinksJustBelowTheMidpointMeanTheyHaveThinnedOut) {
  // Same-identity links at 0.1, only 5 just below 0.5, nothing in (0.5, 0.95), strangers at
  // 0.99: a clean separation, so tau goes into the empty stretch, not to 0.5 (family 52354408 of
  // the issue-13 bench: 0.5 gave F_P 0.916 where 0.981 was reachable).
  std::string note;
  const double tau = facecluster::stable_tau(links_with({{0.1, 500}, {0.47, 5}, {0.99, 50}}), &note);
  EXPECT_GT(tau, 0.6);
  EXPECT_LT(tau, 0.92);
  EXPECT_NE(note.find("most stable"), std::string::npos) << note;
}
