#include <cmath>
#include <random>
#include <map>
#include "facecluster/error.h"
#include "facecluster/synth.h"
#include "helpers.h"

using namespace facecluster;

TEST(Synth, SameSeedSameOutputOtherSeedDiffers) {
  SynthOptions o;
  o.n = 3000;
  o.dim = 64;
  const SynthData a = make_synthetic(o), b = make_synthetic(o);
  EXPECT_EQ(a.features.data, b.features.data);
  EXPECT_EQ(a.labels, b.labels);
  o.seed = 43;
  const SynthData c = make_synthetic(o);
  EXPECT_NE(a.features.data, c.features.data);
}

TEST(Synth, StatisticsWithinDocumentedRanges) {
  SynthOptions o;
  o.n = 20000;
  o.dim = 256;
  const SynthData d = make_synthetic(o);
  ASSERT_EQ(d.features.rows, 20000);
  ASSERT_EQ(d.labels.size(), 20000u);
  const SynthStats s = measure_synthetic(d.features, d.labels);
  // documented in docs/synth.md
  EXPECT_NEAR(double(s.identities), 20000.0 / 68, 15);
  EXPECT_GE(s.share_ids_1_to_5, 0.20);
  EXPECT_LE(s.size_min, 2);
  EXPECT_GE(s.size_max, 300);
  EXPECT_GE(s.within_cos_mean, 0.40);
  EXPECT_LE(s.within_cos_mean, 0.60);
  EXPECT_GE(s.within_cos_p05, 0.08);  // small identities with a mislabelled face sit lowest
  EXPECT_LE(s.within_cos_p95, 0.85);
  EXPECT_NEAR(s.cross_cos_mean, 0.0, 0.02);
  EXPECT_LE(s.cross_cos_p99, 0.25);
  for (int64_t i = 0; i < d.features.rows; i += 997) {
    double n2 = 0;
    for (int64_t c = 0; c < d.features.cols; ++c) n2 += double(d.features.row(i)[c]) * d.features.row(i)[c];
    ASSERT_NEAR(n2, 1.0, 1e-5);
  }
}

TEST(Synth, AnyDimensionAndTinySizes) {
  for (int64_t dim : {3, 97}) {
    SynthOptions o;
    o.n = 50;
    o.dim = dim;
    const SynthData d = make_synthetic(o);
    EXPECT_EQ(d.features.cols, dim);
    EXPECT_EQ(d.features.rows, 50);
  }
  SynthOptions one;
  one.n = 1;
  EXPECT_EQ(make_synthetic(one).labels.size(), 1u);
}

TEST(Synth, CosineMapsHaveTheStatedEffect) {
  Matrix m(3, 2);
  m.data = {1, 0, 0, 1, 0.6f, 0.8f};
  Matrix off = m;
  apply_cosine_map(off, "offset:0.8", 1);
  ASSERT_EQ(off.cols, 3);
  auto dot = [](const Matrix& x, int a, int b) {
    double s = 0;
    for (int64_t c = 0; c < x.cols; ++c) s += double(x.row(a)[c]) * x.row(b)[c];
    return s;
  };
  EXPECT_NEAR(dot(off, 0, 1), 0.8 + 0.2 * 0.0, 1e-6);
  EXPECT_NEAR(dot(off, 0, 2), 0.8 + 0.2 * 0.6, 1e-6);
  EXPECT_NEAR(dot(off, 1, 1), 1.0, 1e-6);
  SynthOptions o;
  o.n = 2000;
  o.dim = 128;
  SynthData d = make_synthetic(o);
  const SynthStats before = measure_synthetic(d.features, d.labels);
  apply_cosine_map(d.features, "noise:1.0", 3);
  const SynthStats after = measure_synthetic(d.features, d.labels);
  EXPECT_EQ(d.features.cols, 256);
  EXPECT_NEAR(after.within_cos_mean, before.within_cos_mean / 2, 0.03);
  EXPECT_THROW(apply_cosine_map(d.features, "offset:2", 1), Error);
  EXPECT_THROW(apply_cosine_map(d.features, "squash:1", 1), Error);
}

TEST(Synth, BadOptions) {
  SynthOptions o;
  o.n = 0;
  EXPECT_THROW(make_synthetic(o), Error);
  o.n = 10;
  o.dim = 0;
  EXPECT_THROW(make_synthetic(o), Error);
}

TEST(Synth, SingleShareGivesThatShareOfOneFaceIdentities) {
  SynthOptions o;
  o.n = 20000;
  o.dim = 32;
  o.identities = 4000;
  o.single_share = 0.6;
  o.small_share = 0.0;
  o.mislabel_share = 0.0;  // a mislabel would move a face between identities
  const SynthData d = make_synthetic(o);
  std::map<int64_t, int64_t> size;
  for (int64_t l : d.labels) ++size[l];
  int64_t ones = 0;
  for (const auto& [id, n] : size) ones += n == 1;
  // 4,000 identities, each single with probability 0.6: 2,400 expected, sd about 31. The other
  // identities share the remaining 17,600 faces, so almost none of them ends up with one face.
  EXPECT_EQ(static_cast<int64_t>(size.size()), 4000);
  EXPECT_NEAR(static_cast<double>(ones), 2400.0, 130.0);
}

TEST(Synth, CentreDimCrowdsStrangersAsItsSpectrumSays) {
  // Faces x = sqrt(t) mu + sqrt(1 - t) e with t the within-identity cosine (0.64 here, no
  // quality spread, one mode) and e a random unit vector. Two strangers then have cosine
  //   t cos(mu_i, mu_j) + sqrt(t (1 - t)) (mu_i.e_j + e_i.mu_j) + (1 - t) e_i.e_j,
  // of variance t^2 / C + (2 t (1 - t) + (1 - t)^2) / D, where cos(mu_i, mu_j) has variance
  // 1 / C for centres that spread like random directions in C = centre_dim dimensions (C = D
  // when isotropic).
  const double t = 0.64, dim = 256;
  auto stranger_sd = [&](double centre_dim) {
    SynthOptions o;
    o.n = 6000;
    o.dim = static_cast<int64_t>(dim);
    o.identities = 600;
    o.cos_min = o.cos_max = t;
    o.quality_sigma = 0;
    o.two_mode_share = o.near_dup_share = o.mislabel_share = 0;
    o.centre_dim = centre_dim;
    const SynthData d = make_synthetic(o);
    std::mt19937_64 rng(5);
    std::uniform_int_distribution<int64_t> pick(0, o.n - 1);
    double s1 = 0, s2 = 0;
    int64_t m = 0;
    while (m < 40000) {
      const int64_t a = pick(rng), b = pick(rng);
      if (d.labels[a] == d.labels[b]) continue;
      double c = 0;
      for (int64_t j = 0; j < o.dim; ++j) c += double(d.features.row(a)[j]) * d.features.row(b)[j];
      s1 += c;
      s2 += c * c;
      ++m;
    }
    const SynthStats s = measure_synthetic(d.features, d.labels);
    EXPECT_NEAR(s.within_cos_mean, t, 0.03) << "centre_dim " << centre_dim << " must not change the identities";
    return std::sqrt(s2 / double(m) - (s1 / double(m)) * (s1 / double(m)));
  };
  auto expected_sd = [&](double p) { return std::sqrt(t * t / p + (2 * t * (1 - t) + (1 - t) * (1 - t)) / dim); };
  EXPECT_NEAR(stranger_sd(0), expected_sd(dim), 0.1 * expected_sd(dim));
  EXPECT_NEAR(stranger_sd(16), expected_sd(16), 0.1 * expected_sd(16));
  EXPECT_NEAR(stranger_sd(64), expected_sd(64), 0.1 * expected_sd(64));
}

TEST(Synth, CentreDimOutsideOneToDimIsRejected) {
  SynthOptions o;
  o.n = 100;
  o.dim = 32;
  for (double bad : {0.5, 33.0, -1.0}) {
    o.centre_dim = bad;
    EXPECT_THROW(make_synthetic(o), Error) << bad;
  }
  o.centre_dim = 32;
  EXPECT_NO_THROW(make_synthetic(o));
}
