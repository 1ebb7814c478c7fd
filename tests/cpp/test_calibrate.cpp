#include <omp.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "facecluster/calibrate.h"
#include "facecluster/graph.h"
#include "facecluster/error.h"
#include "facecluster/synth.h"
#include "helpers.h"

using namespace facecluster;

TEST(Calibrate, ThresholdFallsInTheGapOfAKnownSplit) {
  for (double same_share : {0.1, 0.3, 0.7}) {
    std::mt19937_64 rng(5);
    std::uniform_real_distribution<double> same(0.65, 0.95), diff(-0.05, 0.35), same_ov(0.3, 1.0), diff_ov(0.0, 0.4);
    std::vector<float> s, ov;
    for (int i = 0; i < 20000; ++i) {
      const bool is_same = i < same_share * 20000;
      s.push_back(static_cast<float>(is_same ? same(rng) : diff(rng)));
      ov.push_back(static_cast<float>(is_same ? same_ov(rng) : diff_ov(rng)));
    }
    const TwoViewMixture f = fit_two_view(s, ov);
    const SameProbability p(f.similarity, -0.05, 0.95);
    EXPECT_GT(p.threshold(), 0.35) << same_share;
    EXPECT_LT(p.threshold(), 0.65) << same_share;
    EXPECT_NEAR(f.similarity.same_weight, same_share, 0.02);
    EXPECT_LT(p(0.2), 0.05);
    EXPECT_GT(p(0.8), 0.95);
    EXPECT_GT(f.posterior(0.8, 0.9), 0.99);
    EXPECT_LT(f.posterior(0.1, 0.05), 0.01);
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

TEST(Calibrate, LearnsTheOverlapOfStrangersWhenTheStartIsImpure) {
  // The shape measured on celeba299_faceapi128 (cosines packed in 0.8-1.0, many hubs): a quarter
  // of the kNN pairs are the same person; strangers' neighbour lists overlap a lot, so a third
  // of the pairs sharing half their lists are strangers and the start ("same" at overlap >= 0.5)
  // is impure. The two-view fit must still find the class share and the similarity where P(same)
  // is one half; by Bayes' rule on the generating model that is where
  // 0.25 N(s; 0.95, 0.015) = 0.75 N(s; 0.92, 0.015), s = 0.935 + 0.015^2 ln 3 / 0.03 = 0.9405.
  std::mt19937_64 rng(17);
  std::normal_distribution<double> same(0.95, 0.015), diff(0.92, 0.015);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<float> s, ov;
  int64_t start_same = 0, start_same_strangers = 0;
  for (int i = 0; i < 60000; ++i) {
    const bool is_same = u(rng) < 0.25;
    s.push_back(static_cast<float>(is_same ? same(rng) : diff(rng)));
    const double o = is_same ? 0.4 + 0.5 * u(rng) : 0.6 * u(rng) * u(rng) + 0.3 * u(rng);
    ov.push_back(static_cast<float>(o));
    if (o >= kStartSameOverlap) ++start_same, start_same_strangers += !is_same;
  }
  ASSERT_GT(double(start_same_strangers) / double(start_same), 0.2);  // the start really is impure
  const TwoViewMixture f = fit_two_view(s, ov);
  EXPECT_NEAR(f.similarity.same_weight, 0.25, 0.03);
  EXPECT_NEAR(f.similarity.same_mean, 0.95, 0.005);
  EXPECT_NEAR(f.similarity.diff_class_mean(), 0.92, 0.005);
  const SameProbability p(f.similarity, 0.85, 1.0);
  EXPECT_NEAR(p.threshold(), 0.9405, 0.006);
}

TEST(Calibrate, KeepsTheLoosePairsOfTheSamePersonWithIt) {
  // The shape of the synthetic families where one Gaussian per class failed (large, loose
  // identities; parameters as fitted on family 530661175 by three free components): 85% of the
  // kNN pairs are the same person, half of them loose (lower similarity, fewer shared
  // neighbours), a few tight strangers below. With one Gaussian for the same person the
  // strangers' Gaussian took the loose pairs (same share fitted 0.44). The fit must keep the
  // class share, and P(same) must cross one half where Bayes' rule on the generating model does.
  const double share = 0.85, loose = 0.5;
  std::mt19937_64 rng(23);
  std::normal_distribution<double> tight_s(0.394, 0.066), loose_s(0.277, 0.049), diff_s(0.117, 0.015);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<float> s, ov;
  for (int i = 0; i < 80000; ++i) {
    const double c = u(rng);
    if (c < share * (1 - loose)) s.push_back(static_cast<float>(tight_s(rng))), ov.push_back(static_cast<float>(0.45 + 0.5 * u(rng)));
    else if (c < share) s.push_back(static_cast<float>(loose_s(rng))), ov.push_back(static_cast<float>(0.2 + 0.3 * u(rng)));
    else s.push_back(static_cast<float>(diff_s(rng))), ov.push_back(static_cast<float>(0.3 * u(rng) * u(rng)));
  }
  const TwoViewMixture f = fit_two_view(s, ov);
  EXPECT_NEAR(f.similarity.same_weight, share, 0.02);
  auto pdf = [](double x, double mu, double sd) { return std::exp(-0.5 * (x - mu) * (x - mu) / (sd * sd)) / sd; };
  double crossing = 0;  // where share (loose N + tight N) = (1 - share) N_strangers, scanning up
  for (double x = 0.117; x < 0.394; x += 1e-4) {
    const double same = share * ((1 - loose) * pdf(x, 0.394, 0.066) + loose * pdf(x, 0.277, 0.049));
    if (same >= (1 - share) * pdf(x, 0.117, 0.015)) {
      crossing = x;
      break;
    }
  }
  ASSERT_GT(crossing, 0.117);
  const SameProbability p(f.similarity, 0.0, 0.7);
  EXPECT_NEAR(p.threshold(), crossing, 0.01);
  EXPECT_GT(f.posterior(0.277, 0.35), 0.9);  // a typical loose pair
  EXPECT_LT(f.posterior(0.117, 0.05), 0.1);  // a typical stranger
}

TEST(Calibrate, GivesStrangersTheirLookAlikeTail) {
  // The shape of family 112799872, where the fit with one Gaussian for strangers was
  // over-confident: 15% of the kNN pairs are the same person (tight and loose parts), the
  // strangers a narrow core with an upper tail of look-alike identities (6% of them, between the
  // core and the loose pairs). Each class's overlap is uniform on its own range, so the true
  // P(same | similarity, overlap bin) follows by Bayes' rule on the generating model. The fit
  // whose strangers have two parts must recover the class share and the tail, and its posterior
  // must be nearer the true one than the fit with one Gaussian for strangers.
  const double share = 0.15, loose = 0.4, tail = 0.06;
  const double tight_m = 0.66, tight_sd = 0.05, loose_m = 0.55, loose_sd = 0.05, core_m = 0.44, core_sd = 0.02,
               tail_m = 0.50, tail_sd = 0.03;
  const double same_lo = 0.3, same_hi = 1.0, diff_lo = 0.0, diff_hi = 0.6;  // overlap ranges
  std::mt19937_64 rng(29);
  std::uniform_real_distribution<double> u(0, 1);
  std::normal_distribution<double> z(0, 1);
  std::vector<float> s, ov;
  for (int i = 0; i < 120000; ++i) {
    const bool is_same = u(rng) < share;
    const double x = is_same ? (u(rng) < loose ? loose_m + loose_sd * z(rng) : tight_m + tight_sd * z(rng))
                             : (u(rng) < tail ? tail_m + tail_sd * z(rng) : core_m + core_sd * z(rng));
    s.push_back(static_cast<float>(x));
    ov.push_back(static_cast<float>(is_same ? same_lo + (same_hi - same_lo) * u(rng) : diff_lo + (diff_hi - diff_lo) * u(rng)));
  }
  auto pdf = [](double x, double mu, double sd) { return std::exp(-0.5 * (x - mu) * (x - mu) / (sd * sd)) / sd; };
  auto bin_share = [](int b, double lo, double hi) {  // P(overlap bin b) for an overlap uniform on [lo, hi]
    return std::max(0.0, std::min(hi, (b + 1) / double(kOverlapBins)) - std::max(lo, b / double(kOverlapBins))) / (hi - lo);
  };
  auto true_posterior = [&](double x, double o) {
    const int b = overlap_bin(o);
    const double a = share * ((1 - loose) * pdf(x, tight_m, tight_sd) + loose * pdf(x, loose_m, loose_sd)) *
                     bin_share(b, same_lo, same_hi);
    const double c = (1 - share) * ((1 - tail) * pdf(x, core_m, core_sd) + tail * pdf(x, tail_m, tail_sd)) *
                     bin_share(b, diff_lo, diff_hi);
    return a / (a + c);
  };
  const TwoViewMixture with_tail = fit_two_view(s, ov, true), without = fit_two_view(s, ov, false);
  EXPECT_NEAR(with_tail.similarity.same_weight, share, 0.01);
  EXPECT_NEAR(with_tail.similarity.tail_share, tail, 0.03);
  EXPECT_NEAR(with_tail.similarity.tail_mean, tail_m, 0.02);
  EXPECT_NEAR(with_tail.similarity.diff_mean, core_m, 0.005);
  EXPECT_EQ(without.similarity.tail_share, 0.0);
  double err_with = 0, err_without = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const double t = true_posterior(s[i], ov[i]);
    err_with += std::fabs(with_tail.posterior(s[i], ov[i]) - t) / double(s.size());
    err_without += std::fabs(without.posterior(s[i], ov[i]) - t) / double(s.size());
  }
  EXPECT_LT(err_with, 0.01);
  EXPECT_LT(err_with, 0.5 * err_without) << "the tail should matter on this shape";
}

TEST(Calibrate, OverlapIsTheShareOfTheListInTheNeighbourhood) {
  // A random graph (self first, some padded entries): each sampled pair's overlap must be the
  // share of b's list found in a's list or in the lists of a's kOverlapReach nearest others,
  // counted here by brute force over std::set.
  const int64_t n = 300;
  const int k = 12;
  std::mt19937_64 rng(4);
  KnnGraph g(n, k);
  for (int64_t i = 0; i < n; ++i) {
    g.nbr_row(i)[0] = static_cast<int32_t>(i), g.dist_row(i)[0] = 0.f;
    for (int j = 1; j < k; ++j) {
      g.nbr_row(i)[j] = j == k - 1 && i % 7 == 0 ? -1 : static_cast<int32_t>(rng() % n);
      g.dist_row(i)[j] = 0.1f * j;
    }
  }
  const PairSample ps = sample_pairs(g, 0, n, [&](int32_t j) { return g.nbr_row(j); });
  ASSERT_EQ(calibration_row_stride(n, k), 1);
  size_t checked = 0;
  for (size_t q = 0; q < ps.a.size(); ++q) {
    const int32_t a = ps.a[q], b = ps.b[q];
    std::set<int32_t> hood(g.nbr_row(a), g.nbr_row(a) + k);
    int reached = 0;
    for (int j = 0; j < k && reached < kOverlapReach; ++j) {
      const int32_t v = g.nbr_row(a)[j];
      if (v < 0 || v == a) continue;
      hood.insert(g.nbr_row(v), g.nbr_row(v) + k);
      ++reached;
    }
    int shared = 0;
    for (int l = 0; l < k; ++l) shared += g.nbr_row(b)[l] >= 0 && hood.count(g.nbr_row(b)[l]) > 0;
    ASSERT_FLOAT_EQ(ps.overlap[q], float(shared) / float(k)) << "pair " << a << " " << b;
    ++checked;
  }
  EXPECT_GT(checked, size_t(n) * (k - 2));
}

TEST(Calibrate, OverlapBinIsTheIntegerShareOfTheList) {
  // Overlaps are stored as float(shared) / float(k); each must land in bin floor(10 shared / k),
  // counted in integers, including shares on a bin edge that float leaves a hair under it
  // (56 / 80 = 0.7f < 0.7).
  for (int k : {10, 20, 30, 64, 80, 100, 128, 200})
    for (int shared = 0; shared <= k; ++shared)
      ASSERT_EQ(overlap_bin(float(shared) / float(k)), std::min(kOverlapBins - 1, shared * kOverlapBins / k))
          << shared << " of " << k;
  EXPECT_EQ(overlap_bin(-0.5), 0);
  EXPECT_EQ(overlap_bin(1.5), kOverlapBins - 1);
}

TEST(Calibrate, ExpectedRootWeightDistanceSpansTheScaleOfTheConstants) {
  const double sigma = 0.05;
  EXPECT_NEAR(expected_root_weight_distance(1.0, sigma), 0.0, 1e-12);  // surely the same person
  EXPECT_NEAR(expected_root_weight_distance(0.0, sigma), 1.0, 1e-12);  // surely strangers
  // Even odds: half a sure pair's square-root weight (plus half a stranger's), i.e. 2 sigma ln 2
  // away (a quarter of a sure pair's weight), where 1 - P would have put it at 0.5 (e^-10).
  EXPECT_NEAR(expected_root_weight_distance(0.5, sigma), -2 * sigma * std::log(0.5 * (1 + std::exp(-0.5 / sigma))), 1e-12);
  EXPECT_NEAR(expected_root_weight_distance(0.5, sigma), 2 * sigma * std::log(2.0), 1e-5);
  // A stranger of P 0.01 adds about 0.01 of a sure pair to a Bhattacharyya sum: its weight is
  // about 1e-4 of a sure pair's, not 0.01.
  EXPECT_NEAR(std::exp(-expected_root_weight_distance(0.01, sigma) / sigma), 0.01 * 0.01, 2e-6);
  double last = 2;
  for (int i = 0; i <= 100; ++i) {  // decreasing in P
    const double d = expected_root_weight_distance(i / 100.0, sigma);
    EXPECT_LT(d, last) << i;
    last = d;
  }
}

TEST(Calibrate, ApplyKeepsOrderAndSelfDistance) {
  // A graph with identities in it (a random graph has none, and its fit is degenerate).
  SynthOptions o;
  o.n = 1500;
  o.dim = 32;
  o.identities = 60;
  o.seed = 3;
  const Matrix x = make_synthetic(o).features;
  const int k = 20;
  KnnGraph g(x.rows, k);  // exact kNN by cosine, the row itself first
  for (int64_t i = 0; i < x.rows; ++i) {
    std::vector<std::pair<float, int32_t>> all;
    for (int64_t j = 0; j < x.rows; ++j) {
      double dot = 0;
      for (int64_t c = 0; c < x.cols; ++c) dot += double(x.data[i * x.cols + c]) * x.data[j * x.cols + c];
      all.emplace_back(j == i ? 0.f : static_cast<float>(std::max(0.0, 1.0 - dot)), static_cast<int32_t>(j));
    }
    std::partial_sort(all.begin(), all.begin() + k, all.end());
    for (int j = 0; j < k; ++j) g.nbr_row(i)[j] = all[j].second, g.dist_row(i)[j] = all[j].first;
  }
  const Calibration c = calibrate_graph(g, GraphParams{});
  const KnnGraph out = apply_calibration(g, c);
  // Independent expectation: P(same | s) from the fitted mixture's Gaussians (the same class's
  // tight and loose parts, the strangers' core and upper part) by Bayes' rule.
  const Mixture& m = c.fit.similarity;
  auto bayes = [&](double s) {
    auto pdf = [](double x, double mu, double sd) { return std::exp(-0.5 * (x - mu) * (x - mu) / (sd * sd)) / sd; };
    const double a = m.same_weight * ((1 - m.loose_share) * pdf(s, m.same_mean, m.same_sd) +
                                      m.loose_share * pdf(s, m.loose_mean, m.loose_sd));
    const double b = (1 - m.same_weight) * ((1 - m.tail_share) * pdf(s, m.diff_mean, m.diff_sd) +
                                            m.tail_share * pdf(s, m.tail_mean, m.tail_sd));
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
    for (int j = 0; j < g.k; ++j) {  // the row itself, and any twin at raw distance 0, stay at 0
      if (g.nbr_row(i)[j] == i || g.dist_row(i)[j] == 0.f) {
        EXPECT_EQ(out.dist_row(i)[j], 0.f) << "row " << i;
      }
    }
    for (int j = 1; j < g.k; ++j) {
      EXPECT_GE(out.dist_row(i)[j], out.dist_row(i)[j - 1]);
      if (g.nbr_row(i)[j] == i || g.dist_row(i)[j] == 0.f) continue;
      const double s = 1.0 - double(g.dist_row(i)[j]);
      const double order = weight * double(g.dist_row(i)[j]) / median;
      // Less the order term, the entry's square-root transition weight exp(-d / (2 sigma)) is the
      // pair's expected one: 1 (distance 0) if the same person, exp(-1 / (2 sigma)) if strangers.
      const double root_weight = std::exp(-(double(out.dist_row(i)[j]) - order) / (2 * weight));
      auto expected = [&](double p) { return p + (1 - p) * std::exp(-0.5 / weight); };
      EXPECT_NEAR(root_weight, expected(c.same(s)), 1e-5 * expected(c.same(s))) << "row " << i << " entry " << j;
      // Between the strangers' upper mean and the tight mean the monotone posterior is Bayes'
      // rule itself.
      if (s > std::max(m.diff_mean, m.tail_share > 0 ? m.tail_mean : m.diff_mean) && s < m.same_mean) {
        EXPECT_NEAR(root_weight, expected(bayes(s)), 0.01) << "s " << s;
        ++checked_against_bayes;
      }
    }
  }
  EXPECT_GT(checked_against_bayes, 100);
  EXPECT_EQ(out.nbrs, g.nbrs);
  EXPECT_FALSE(c.notes.empty());
}

TEST(Calibrate, TooFewValuesIsAnError) {
  EXPECT_THROW(fit_two_view({0.1f, 0.2f}, {0.f, 0.f}), Error);
  EXPECT_THROW(fit_two_view(std::vector<float>(20, 0.5f), std::vector<float>(19, 0.f)), Error);
}

TEST(LikelihoodTau, ChoosesTheClusteringThePairsSupport) {
  // Four faces: links 1 -> 0 at TPDi 0.2, 3 -> 2 at 0.4, 2 -> 0 at 0.8. Pairs (0,1) +5, (2,3) +3,
  // (0,2) -4, (1,3) -1 in log-odds. By hand: tau <= 0.2 keeps all apart (0); up to 0.4 joins
  // {0,1} (5); up to 0.8 also {2,3} (8); above 0.8 all four (5 + 3 - 4 - 1 = 3). Best: (0.4, 0.8].
  facecluster::Links l;
  l.parent = {-1, 0, 0, 2};
  l.dist = {1.f, 0.2f, 0.8f, 0.4f};
  const std::vector<PairEvidence> pairs = {{0, 1, 5.f}, {2, 3, 3.f}, {0, 2, -4.f}, {1, 3, -1.f}};
  std::string note;
  const double tau = likelihood_tau(l, pairs, &note);
  EXPECT_GT(tau, 0.4);
  EXPECT_LE(tau, 0.8);
  EXPECT_NE(note.find("most likely"), std::string::npos) << note;
  // With the cross pairs in favour, joining all four wins.
  const std::vector<PairEvidence> friendly = {{0, 1, 5.f}, {2, 3, 3.f}, {0, 2, 2.f}, {1, 3, 1.f}};
  EXPECT_GT(likelihood_tau(l, friendly, nullptr), 0.8);
  EXPECT_THROW(likelihood_tau(l, {}, nullptr), Error);
}


TEST(LikelihoodTau, MatchesLabellingEveryStep) {
  // Brute force (one labelling per step, as the definition reads) against the one-pass version,
  // on random link sets with up to two parents per face and random pair evidence.
  std::mt19937_64 rng(23);
  std::uniform_real_distribution<double> u(0, 1);
  for (int trial = 0; trial < 20; ++trial) {
    const int n = 400, conn = 1 + trial % 2;
    facecluster::Links l;
    l.max_conn = conn;
    for (int i = 0; i < n; ++i)
      for (int c = 0; c < conn; ++c) {
        const bool root = i == 0 || u(rng) < 0.05;
        l.parent.push_back(root ? -1 : static_cast<int32_t>(rng() % i));
        // Some distances exactly on the grid (a link at 0.25 is kept only from tau 0.255 on).
        l.dist.push_back(u(rng) < 0.2 ? static_cast<float>((rng() % 200) / 200.0) : static_cast<float>(u(rng)));
      }
    std::vector<PairEvidence> pairs;
    for (int p = 0; p < 1500; ++p) {
      const int32_t a = static_cast<int32_t>(rng() % n), b = static_cast<int32_t>(rng() % n);
      if (a != b) pairs.push_back({a, b, static_cast<float>(u(rng) * 4 - 2.2)});
    }
    double best = -1e300, best_tau = 0;
    auto ll_at = [&](double tau) {
      const Labels lab = link_components(l, tau);
      double ll = 0;
      for (const PairEvidence& e : pairs)
        if (lab[static_cast<size_t>(e.a)] == lab[static_cast<size_t>(e.b)]) ll += e.log_odds;
      return ll;
    };
    const LikelihoodCurve curve = likelihood_curve(l, pairs);
    for (int step = 1; step < 200; ++step) {
      const double ll = ll_at(step / 200.0);
      EXPECT_NEAR(curve.log_likelihood[static_cast<size_t>(step)], ll, 1e-3) << "trial " << trial << " step " << step;
      if (ll > best) best = ll, best_tau = step / 200.0;
    }
    const double tau = likelihood_tau(l, pairs, nullptr);
    EXPECT_NEAR(ll_at(tau), best, 1e-3) << "trial " << trial << ": chose " << tau << ", brute force " << best_tau;
  }
}

TEST(Calibrate, ThreePartFitRecoversPartsWithTheirOwnOverlap) {
  // Drawn from three parts whose overlap profiles differ (the middle one, like the loose pairs of
  // a large identity, in between): the fit must give back each part's mean, spread, weight and
  // overlap, ordered by mean similarity.
  std::mt19937_64 rng(31);
  struct Truth {
    double weight, mean, sd, overlap_lo, overlap_hi;
  };
  const Truth truth[3] = {{0.35, 0.75, 0.05, 0.6, 1.0}, {0.25, 0.45, 0.06, 0.2, 0.6}, {0.40, 0.20, 0.04, 0.0, 0.2}};
  std::vector<float> s, o;
  std::discrete_distribution<int> which({truth[0].weight, truth[1].weight, truth[2].weight});
  for (int i = 0; i < 300000; ++i) {
    const Truth& t = truth[which(rng)];
    s.push_back(static_cast<float>(std::normal_distribution<double>(t.mean, t.sd)(rng)));
    o.push_back(static_cast<float>(std::uniform_real_distribution<double>(t.overlap_lo, t.overlap_hi)(rng)));
  }
  const ThreePartMixture f = fit_three_part(s, o);
  // Summed in fixed chunks: one thread gives the same fit, to the bit.
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const ThreePartMixture one = fit_three_part(s, o);
  omp_set_num_threads(threads);
  for (int c = 0; c < 3; ++c) {
    ASSERT_EQ(one.part[c].mean, f.part[c].mean);
    ASSERT_EQ(one.part[c].sd, f.part[c].sd);
    ASSERT_EQ(one.part[c].overlap, f.part[c].overlap);
  }
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(f.part[c].mean, truth[c].mean, 0.01) << c;
    EXPECT_NEAR(f.part[c].sd, truth[c].sd, 0.01) << c;
    EXPECT_NEAR(f.part[c].weight, truth[c].weight, 0.02) << c;
    double in_range = 0;
    for (int b = overlap_bin(truth[c].overlap_lo); b < overlap_bin(truth[c].overlap_hi - 1e-3) + 1; ++b)
      in_range += f.part[c].overlap[static_cast<size_t>(b)];
    EXPECT_GT(in_range, 0.97) << c;
  }
}

TEST(Calibrate, CutEvidenceTakesTheMiddleShareMidwayBetweenItsTwoEstimates) {
  // Brute force over the grid of middle shares, each scored by labelling every step (as the
  // definition reads, constant included), on random links and part shares; read as the same
  // person, theta is midway between the best of them and the two-class fit's mean P(same) over
  // the middle part; read as strangers, it is the two-class fit's share alone.
  std::mt19937_64 rng(37);
  std::uniform_real_distribution<double> u(0, 1);
  int seen_same = 0;
  for (int trial = 0; trial < 6; ++trial) {
    const int n = 300;
    facecluster::Links l;
    l.max_conn = 1;
    for (int i = 0; i < n; ++i) {
      l.parent.push_back(i == 0 || u(rng) < 0.05 ? -1 : static_cast<int32_t>(rng() % i));
      l.dist.push_back(static_cast<float>(u(rng)));
    }
    Calibration c;
    const Labels at_09 = link_components(l, 0.9);
    for (int p = 0; p < 1200; ++p) {
      const int32_t a = static_cast<int32_t>(rng() % n), b = static_cast<int32_t>(rng() % n);
      if (a == b) continue;
      // Even trials: random shares. Odd ones: pairs the path joins by tau 0.9 are half tight,
      // half middle, the others mostly strangers (a middle part that is the same person).
      double tight = u(rng) * 0.8, middle = u(rng) * (1 - tight);
      if (trial % 2) {
        const bool together = at_09[static_cast<size_t>(a)] == at_09[static_cast<size_t>(b)];
        tight = together ? 0.4 + 0.1 * u(rng) : 0.02 * u(rng), middle = together ? 0.45 + 0.04 * u(rng) : 0.1 * u(rng);
      }
      c.pairs.push_back({a, b, static_cast<float>(u(rng) * 4 - 2)});  // the two-class fit's log-odds
      c.part_shares.emplace_back(static_cast<float>(tight), static_cast<float>(middle));
    }
    double best = -1e300, best_theta = -1, at_zero = 0, at_one = 0;
    for (int t = 0; t <= kMiddleShareSteps; ++t) {
      const double theta = t / double(kMiddleShareSteps);
      double best_here = -1e300;
      for (int step = 1; step < 200; ++step) {
        const Labels lab = link_components(l, step / 200.0);
        double ll = 0;
        for (size_t q = 0; q < c.pairs.size(); ++q) {
          const double p = std::clamp(double(c.part_shares[q].first) + theta * double(c.part_shares[q].second),
                                      kMinPairProbability, 1 - kMinPairProbability);
          ll += lab[static_cast<size_t>(c.pairs[q].a)] == lab[static_cast<size_t>(c.pairs[q].b)] ? std::log(p)
                                                                                                   : std::log(1 - p);
        }
        if (ll > best + 1e-6) best = ll, best_theta = theta;
        best_here = std::max(best_here, ll);
      }
      if (t == 0) at_zero = best_here;
      if (t == kMiddleShareSteps) at_one = best_here;
    }
    seen_same += at_one > at_zero;
    // The two-class fit's share: its P(same) averaged over the middle part.
    double fit_same = 0, fit_mass = 0;
    for (size_t q = 0; q < c.pairs.size(); ++q) {
      const double p2 = 1 / (1 + std::exp(-double(c.pairs[q].log_odds)));
      fit_same += c.part_shares[q].second * p2, fit_mass += c.part_shares[q].second;
    }
    const double theta = at_one > at_zero ? 0.5 * (best_theta + fit_same / fit_mass) : fit_same / fit_mass;
    std::string note;
    const CutEvidence e = cut_evidence(l, c, &note);
    EXPECT_NEAR(e.middle_share, theta, 1e-9) << "trial " << trial << ": " << note;
    EXPECT_EQ(e.middle_is_same, at_one > at_zero) << "trial " << trial << ": " << note;
    ASSERT_EQ(e.pairs.size(), c.pairs.size());
    const double p0 = std::clamp(double(c.part_shares[0].first) + theta * double(c.part_shares[0].second),
                                 kMinPairProbability, 1 - kMinPairProbability);
    // Either way the three-part probabilities at theta.
    EXPECT_NEAR(e.pairs[0].log_odds, std::log(p0 / (1 - p0)), 1e-4);
    EXPECT_EQ(e.pairs[0].a, c.pairs[0].a);
    // The tau from the join steps it found is the tau of those links and pairs.
    EXPECT_EQ(likelihood_tau(e, nullptr), likelihood_tau(l, e.pairs, nullptr)) << "trial " << trial;
  }
  EXPECT_GT(seen_same, 0);  // both readings were exercised
  EXPECT_LT(seen_same, 6);
}

// A distributed run samples its own rows and joins the samples in row order: every process then
// fits the calibration calibrate_graph fits on the whole graph, pair for pair.
TEST(Calibrate, SamplesFromPartsGiveTheWholeGraphsCalibration) {
  const KnnGraph g = fctest::random_graph(3000, 20, 9, false);
  const Calibration whole = calibrate_graph(g, GraphParams{});
  for (int parts : {2, 5}) {
    PairSample joined;
    SimilarityRange range;
    for (int q = 0; q < parts; ++q) {
      const int64_t lo = g.n * q / parts, hi = g.n * (q + 1) / parts;
      KnnGraph own(hi - lo, g.k);
      std::copy(g.nbr_row(lo), g.nbr_row(hi), own.nbrs.begin());
      std::copy(g.dist_row(lo), g.dist_row(hi), own.dists.begin());
      const PairSample s = sample_pairs(own, lo, g.n, [&](int32_t j) { return g.nbr_row(j); });
      joined.a.insert(joined.a.end(), s.a.begin(), s.a.end());
      joined.b.insert(joined.b.end(), s.b.begin(), s.b.end());
      joined.sim.insert(joined.sim.end(), s.sim.begin(), s.sim.end());
      joined.overlap.insert(joined.overlap.end(), s.overlap.begin(), s.overlap.end());
      const SimilarityRange r = similarity_range(own, lo);
      range.lo = std::min(range.lo, r.lo);
      range.hi = std::max(range.hi, r.hi);
      // The calibrated rows of the part are the whole graph's calibrated rows.
      const KnnGraph cal_own = apply_calibration(own, whole, lo);
      const KnnGraph cal_whole = apply_calibration(g, whole);
      for (int64_t i = lo; i < hi; ++i)
        for (int j = 0; j < g.k; ++j) ASSERT_EQ(cal_own.dist_row(i - lo)[j], cal_whole.dist_row(i)[j]) << i;
    }
    const Calibration c = calibration_from_sample(joined, range, GraphParams{});
    ASSERT_EQ(c.pairs.size(), whole.pairs.size());
    for (size_t i = 0; i < c.pairs.size(); ++i) {
      ASSERT_EQ(c.pairs[i].a, whole.pairs[i].a);
      ASSERT_EQ(c.pairs[i].b, whole.pairs[i].b);
      ASSERT_EQ(c.pairs[i].log_odds, whole.pairs[i].log_odds);
      ASSERT_EQ(c.part_shares[i], whole.part_shares[i]);
    }
    EXPECT_EQ(c.order_scale, whole.order_scale);
    EXPECT_EQ(c.same.threshold(), whole.same.threshold());
  }
}
