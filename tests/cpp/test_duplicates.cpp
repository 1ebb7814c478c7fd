// Copies of faces (issue 38): identical rows are grouped by value, near copies through the graph,
// a graph is reduced to the distinct rows, and the pipeline gives every copy its original's label
// while the other faces keep the labels they have without copies.
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "facecluster/duplicates.h"
#include "facecluster/io.h"
#include "facecluster/metrics.h"
#include "facecluster/pipeline.h"
#include "facecluster/plan.h"
#include "facecluster/synth.h"
#include "helpers.h"
#include "pipeline_helpers.h"

using namespace facecluster;
using fctest::run_features;

namespace {

Matrix rows_of(const std::vector<std::vector<float>>& v) {
  Matrix m(static_cast<int64_t>(v.size()), static_cast<int64_t>(v[0].size()));
  for (size_t i = 0; i < v.size(); ++i) std::copy(v[i].begin(), v[i].end(), m.row(static_cast<int64_t>(i)));
  return m;
}

RunPlan plan_with(const std::string& calibrate, std::optional<std::vector<double>> taus = std::nullopt, int k = 20) {
  PlanRequest r;
  r.features_in_memory = true;
  r.calibrate = calibrate;
  r.taus = taus;
  r.k = k;
  return resolve_plan(Job::Cluster, r);
}


SynthData faces(int64_t n, uint64_t seed) {
  SynthOptions o;
  o.n = n;
  o.dim = 64;
  o.seed = seed;
  return make_synthetic(o);
}

// Rows r of x, in that order.
Matrix pick(const Matrix& x, const std::vector<int64_t>& r) {
  Matrix m(static_cast<int64_t>(r.size()), x.cols);
  for (size_t i = 0; i < r.size(); ++i) std::copy(x.row(r[i]), x.row(r[i]) + x.cols, m.row(static_cast<int64_t>(i)));
  return m;
}

}  // namespace

TEST(Duplicates, IdenticalRowsAreGroupedUnderTheirFirstRow) {
  const Matrix x = rows_of({{1, 0}, {0, 1}, {1, 0}, {0.6f, 0.8f}, {0, 1}, {1, 0}});
  const DuplicateGroups d = identical_rows(x);
  EXPECT_EQ(d.kept, (std::vector<int64_t>{0, 1, 3}));
  EXPECT_EQ(d.row_of, (std::vector<int64_t>{0, 1, 0, 2, 1, 0}));
  EXPECT_EQ(d.copies(), 3);
  EXPECT_FALSE(identical_rows(rows_of({{1, 0}, {0, 1}})).any());
}

TEST(Duplicates, NearCopiesAreJoinedThroughTheGraphTransitively) {
  // Distinct rows 0..3 (of input rows 0..4, row 4 a copy of row 1); rows 0-1 and 1-2 are within
  // kDuplicateDistance, 2-3 are not.
  const Matrix x = rows_of({{1, 0}, {0, 1}, {0.5f, 0.5f}, {0.3f, 0.7f}, {0, 1}});
  const DuplicateGroups exact = identical_rows(x);
  ASSERT_EQ(exact.kept.size(), 4u);
  KnnGraph g(4, 3);
  const float tiny = static_cast<float>(kDuplicateDistance / 2), far = 0.2f;
  auto set = [&](int64_t i, std::vector<int32_t> nb, std::vector<float> d) {
    std::copy(nb.begin(), nb.end(), g.nbr_row(i));
    std::copy(d.begin(), d.end(), g.dist_row(i));
  };
  set(0, {0, 1, 2}, {0, tiny, far});
  set(1, {1, 2, 0}, {0, tiny, tiny});
  set(2, {2, 1, 3}, {0, tiny, far});
  set(3, {3, 2, 1}, {0, far, far});
  const DuplicateGroups d = merge_near_duplicates(exact, g);
  EXPECT_EQ(d.kept, (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(d.row_of, (std::vector<int64_t>{0, 0, 0, 1, 0}));
}

TEST(Duplicates, ReducedGraphListsEachDistinctRowOnceWithItselfFirst) {
  // Rows 0 and 2 are one face (row 2 listed before row 0 in row 0's list, at distance 0).
  const Matrix x = rows_of({{1, 0}, {0, 1}, {1, 0}, {0.6f, 0.8f}});
  const DuplicateGroups d = identical_rows(x);
  KnnGraph g(4, 4);
  const std::vector<std::vector<int32_t>> nb = {{2, 0, 3, 1}, {1, 3, 0, 2}, {0, 2, 3, 1}, {3, 1, 0, 2}};
  const std::vector<std::vector<float>> di = {{0, 0, .4f, 1}, {0, .2f, 1, 1}, {0, 0, .4f, 1}, {0, .2f, .4f, .4f}};
  for (int64_t i = 0; i < 4; ++i) {
    std::copy(nb[i].begin(), nb[i].end(), g.nbr_row(i));
    std::copy(di[i].begin(), di[i].end(), g.dist_row(i));
  }
  const KnnGraph r = reduce_graph(g, d);
  ASSERT_EQ(r.n, 3);
  // Distinct rows: 0 (rows 0, 2), 1, 2 (row 3).
  EXPECT_EQ(std::vector<int32_t>(r.nbr_row(0), r.nbr_row(0) + 4), (std::vector<int32_t>{0, 2, 1, -1}));
  EXPECT_EQ(std::vector<float>(r.dist_row(0), r.dist_row(0) + 3), (std::vector<float>{0, .4f, 1}));
  EXPECT_EQ(std::vector<int32_t>(r.nbr_row(1), r.nbr_row(1) + 4), (std::vector<int32_t>{1, 2, 0, -1}));
  EXPECT_EQ(std::vector<int32_t>(r.nbr_row(2), r.nbr_row(2) + 4), (std::vector<int32_t>{2, 1, 0, -1}));
  validate_graph(r, "reduced");
}

TEST(Duplicates, EveryRowTwiceGivesTheClustersOfEveryRowOnce) {
  const SynthData s = faces(2000, 7);
  std::vector<int64_t> twice;
  for (int round = 0; round < 2; ++round)
    for (int64_t i = 0; i < s.features.rows; ++i) twice.push_back(i);
  const Matrix x2 = pick(s.features, twice);
  for (const char* mode : {"auto", "off"}) {
    SCOPED_TRACE(mode);
    const RunPlan plan = std::string(mode) == "auto" ? plan_with("auto") : plan_with("off", std::vector<double>{0.7});
    const Labels once = run_features(plan, s.features).labels;
    const Labels both = run_features(plan, x2).labels;
    ASSERT_EQ(both.size(), 4000u);
    for (int64_t i = 0; i < 2000; ++i) {
      ASSERT_EQ(both[i], once[i]) << "row " << i;
      ASSERT_EQ(both[i + 2000], once[i]) << "copy of row " << i;
    }
  }
}

TEST(Duplicates, CopiesOfSomeRowsLeaveTheOthersAlone) {
  const SynthData s = faces(2000, 11);
  std::mt19937_64 rng(3);
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < s.features.rows; ++i) rows.push_back(i);
  for (int c = 0; c < 400; ++c) rows.push_back(static_cast<int64_t>(rng() % 2000));  // 20% copies, some twice
  Matrix x = pick(s.features, rows);
  // Half of the copies with noise far below any two photos' distance (near copies).
  std::normal_distribution<float> noise(0, 1e-5f);
  for (int64_t i = 2000; i < x.rows; i += 2) {
    for (int64_t c = 0; c < x.cols; ++c) x.row(i)[c] += noise(rng);
  }
  normalize_rows(x, "test");
  const Labels once = run_features(plan_with("auto"), s.features).labels;
  const Labels with = run_features(plan_with("auto"), x).labels;
  for (size_t i = 0; i < rows.size(); ++i) ASSERT_EQ(with[i], once[static_cast<size_t>(rows[i])]) << "row " << i;
}

TEST(Duplicates, IdenticalRowsFormOneCluster) {
  const SynthData s = faces(200, 5);
  const Matrix same = pick(s.features, std::vector<int64_t>(500, 17));
  for (const RunPlan& plan : {plan_with("auto"), plan_with("off", std::vector<double>{0.7})}) {
    const Labels l = run_features(plan, same).labels;
    EXPECT_EQ(std::set<int64_t>(l.begin(), l.end()).size(), 1u);
  }
  // Two faces, each 250 times: two clusters at most, copies together.
  std::vector<int64_t> two(500, 17);
  for (size_t i = 1; i < two.size(); i += 2) two[i] = 150;
  const Labels l = run_features(plan_with("auto"), pick(s.features, two)).labels;
  for (size_t i = 2; i < l.size(); ++i) EXPECT_EQ(l[i], l[i - 2]);
}

TEST(Duplicates, CelebaTwiceGivesCelebaOnce) {
  const std::string base = fctest::shared_data("celeba299/celeba299_mfn128");
  if (!std::filesystem::exists(base + ".bin")) GTEST_SKIP() << "../shared/data/celeba299 not found";
  Matrix x = read_features_bin(base + ".bin", 128);
  normalize_rows(x, base);
  std::vector<int64_t> twice;
  for (int64_t i = 0; i < x.rows; ++i) twice.push_back(i), twice.push_back(i);
  const Labels once = run_features(plan_with("auto", std::nullopt, 80), x).labels;
  const Labels both = run_features(plan_with("auto", std::nullopt, 80), pick(x, twice)).labels;
  Labels first(once.size());
  for (size_t i = 0; i < once.size(); ++i) first[i] = both[2 * i];
  EXPECT_GE(evaluate(first, once).pairwise_f, 0.995);
}
