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
