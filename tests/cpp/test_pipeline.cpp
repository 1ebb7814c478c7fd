#include <cmath>
#include <algorithm>
#include <filesystem>
#include <optional>

#include "facecluster/calibrate.h"
#include "facecluster/error.h"
#include "facecluster/io.h"
#include "facecluster/pipeline.h"
#include "facecluster/plan.h"
#include "facecluster/report.h"
#include "facecluster/synth.h"
#include "helpers.h"

using namespace facecluster;

namespace {
struct Data {
  Matrix x;
  Labels gt;
  KnnGraph g;
};

Data celeba() {
  Data d;
  const std::string base = fctest::shared_data("celeba299/celeba299_mfn128");
  d.x = read_features_bin(base + ".bin", 128);
  normalize_rows(d.x, base);
  d.gt = read_labels(base + ".meta");
  d.g = brute_force_knn(d.x, 80);
  return d;
}

bool have_celeba() { return std::filesystem::exists(fctest::shared_data("celeba299/celeba299_mfn128.bin")); }

// A plan from flags only, training-free, data passed in memory.
RunPlan plan_with(const std::string& calibrate, std::optional<std::vector<double>> taus = std::nullopt,
                  const std::string& select_by = "pairwise") {
  PlanRequest r;
  r.features_in_memory = true;
  r.calibrate = calibrate;
  r.taus = taus;
  r.select_by = select_by;
  return resolve_plan(Job::Cluster, r);
}
}  // namespace

TEST(Pipeline, Celeba299TrainingFree) {
  if (!have_celeba()) GTEST_SKIP() << "../shared/data/celeba299 not found";
  const Data d = celeba();
  // The release's fixed constants at its default tau collapse on cosine distances ...
  const ClusterReport fixed = cluster_graph(plan_with("off"), d.g, &d.gt);
  EXPECT_DOUBLE_EQ(fixed.chosen_tau(), 0.7);
  EXPECT_LT(fixed.sweep[0].scores.pairwise_f, 0.4);
  // ... the self-calibrated default does not.
  const ClusterReport autor = cluster_graph(plan_with("auto"), d.g, &d.gt);
  EXPECT_GT(autor.sweep[autor.chosen].scores.pairwise_f, 0.88);
  EXPECT_GT(autor.sweep[autor.chosen].scores.bcubed_f, 0.88);
  EXPECT_FALSE(autor.notes.empty());
}

TEST(Pipeline, MonotoneTransformsOfCosinesKeepTheClustering) {
  if (!have_celeba()) GTEST_SKIP() << "../shared/data/celeba299 not found";
  const Data d = celeba();
  const ClusterReport base = cluster_graph(plan_with("auto"), d.g);
  // An affine map (cosines compressed into [0.8, 1]) and a mild power map.
  for (int variant = 0; variant < 2; ++variant) {
    KnnGraph t = d.g;
    for (size_t e = 0; e < t.dists.size(); ++e) {
      const double s = 1.0 - d.g.dists[e];
      const double mapped = variant == 0 ? 0.8 + 0.2 * s : (s >= 0 ? std::pow(s, 1.5) : -std::pow(-s, 1.5));
      t.dists[e] = static_cast<float>(std::max(0.0, 1.0 - mapped));
    }
    for (int64_t i = 0; i < t.n; ++i) t.dist_row(i)[0] = 0.f;
    const ClusterReport r = cluster_graph(plan_with("auto"), t);
    EXPECT_NE(r.notes[0], base.notes[0]);  // the fitted parameters moved
    const Scores agree = evaluate(r.labels, base.labels);
    EXPECT_GT(agree.pairwise_f, 0.95) << "variant " << variant;
  }
}

TEST(Pipeline, SweepPicksBestAndKnnCacheRoundTrips) {
  SynthOptions so;
  so.n = 3000;
  so.dim = 32;
  const SynthData s = make_synthetic(so);
  fctest::TempDir dir;
  PlanRequest req;
  req.features_in_memory = true;
  req.knn_cache = dir.file("knn.npz");
  req.k = 20;
  req.calibrate = "off";
  req.taus = std::vector<double>{0.3, 0.6, 0.9};
  req.select_by = "bcubed";
  const RunPlan plan = resolve_plan(Job::Cluster, req);
  const KnnGraph built = knn_graph_for(plan, s.features);
  ASSERT_TRUE(std::filesystem::exists(plan.knn_cache));
  const KnnGraph cached = knn_graph_for(plan, s.features);
  EXPECT_EQ(cached.nbrs, built.nbrs);
  PipelineInput in;
  in.features = &s.features;
  in.labels = &s.labels;
  const ClusterReport r = run_pipeline(plan, in);
  ASSERT_EQ(r.sweep.size(), 3u);
  for (const auto& e : r.sweep) EXPECT_LE(e.scores.bcubed_f, r.sweep[r.chosen].scores.bcubed_f);
  EXPECT_EQ(evaluate(r.labels, s.labels).bcubed_f, r.sweep[r.chosen].scores.bcubed_f);
  // The bins come with the pipeline: size bins from the labels, sparsity bins from the features.
  ASSERT_EQ(r.size_bins.size(), 5u);
  ASSERT_EQ(r.sparsity_bins.size(), 5u);
  EXPECT_EQ(r.size_bins[0].scores.pairwise_f, evaluate_by_size(r.labels, s.labels, 5)[0].scores.pairwise_f);
  write_results(dir.file("out"), r);
  EXPECT_EQ(read_labels(dir.file("out/pred_labels.meta")), r.labels);
  for (const char* f : {"density.txt", "scores.json", "scores.txt", "report.html"})
    EXPECT_TRUE(std::filesystem::exists(dir.file(std::string("out/") + f))) << f;
  // A cache of another size is refused.
  Matrix fewer(10, 32);
  std::copy(s.features.data.begin(), s.features.data.begin() + 320, fewer.data.begin());
  EXPECT_THROW(knn_graph_for(plan, fewer), Error);
}

TEST(Pipeline, DefaultPlanOnSynthetic20kMeetsItsFloor) {
  // The README's default path end to end (automatic calibration and tau, exact kNN, k 80) on
  // the demo's data: docs report pairwise F 0.96; the floor is 0.93. Never skipped.
  SynthOptions so;
  so.n = 20000;
  so.dim = 256;
  so.seed = 42;
  const SynthData s = make_synthetic(so);
  PlanRequest req;
  req.features_in_memory = true;
  const RunPlan plan = resolve_plan(Job::Cluster, req);
  ASSERT_TRUE(plan.tau_automatic);
  ASSERT_EQ(plan.calibrate, CalibrateMode::Auto);
  PipelineInput in;
  in.features = &s.features;
  in.labels = &s.labels;
  const ClusterReport r = run_pipeline(plan, in);
  ASSERT_EQ(r.sweep.size(), 1u);
  const Scores sc = evaluate(r.labels, s.labels);  // scored independently of the report
  EXPECT_GE(sc.pairwise_f, 0.93) << render_text(r);
  EXPECT_GE(sc.bcubed_f, 0.90) << render_text(r);
  EXPECT_DOUBLE_EQ(r.sweep[0].scores.pairwise_f, sc.pairwise_f);
}

TEST(Pipeline, CalibrationFindsTheStrangersOfA128dSet) {
  // 128-d synthetic faces with identities larger than k: strangers are a small share of the
  // kNN pairs. The fitted "different" component must sit on them, not inside the same-identity
  // mass, and P(same) = 0.5 must fall below nearly all same-identity pairs. (A fit on similarity
  // alone put "different" at 0.51 on this set; strangers sit at 0.22.)
  SynthOptions o;
  o.n = 3000;
  o.dim = 128;
  o.seed = 7;
  o.mislabel_share = 0;
  const SynthData d = make_synthetic(o);
  const KnnGraph g = brute_force_knn(d.features, 80);
  std::vector<double> same, diff;
  for (int64_t i = 0; i < g.n; ++i)
    for (int j = 1; j < g.k; ++j)
      (d.labels[i] == d.labels[g.nbr_row(i)[j]] ? same : diff).push_back(1.0 - g.dist_row(i)[j]);
  std::sort(same.begin(), same.end());
  double diff_mean = 0;
  for (double v : diff) diff_mean += v / double(diff.size());
  const Calibration c = calibrate_graph(g, GraphParams{});
  EXPECT_NEAR(c.fit.similarity.diff_mean, diff_mean, 0.03) << c.notes[0];
  EXPECT_LT(c.same.threshold(), same[same.size() / 20]) << c.notes[0];
  // The two-view posterior of the sampled pairs (every row here) adds up to about the number of
  // same-identity pairs the labels give.
  double expected_same = 0;
  for (const PairEvidence& e : c.pairs) expected_same += 1.0 / (1.0 + std::exp(-double(e.log_odds)));
  EXPECT_EQ(c.pairs.size(), same.size() + diff.size());
  EXPECT_NEAR(expected_same / double(same.size()), 1.0, 0.03) << c.notes[1];
}

TEST(Report, LinkSummaryAddsUpOverAnySplitOfTheRows) {
  // 1,000 rows, one parent each or none, distances on and between the 0.01 steps.
  facecluster::Links all;
  all.max_conn = 1;
  for (int i = 0; i < 1000; ++i) {
    all.parent.push_back(i % 7 == 0 ? -1 : (i * 31) % 1000);
    all.dist.push_back(i % 3 == 0 ? static_cast<float>((i % 101) / 100.0) : static_cast<float>((i * 0.61803) - std::floor(i * 0.61803)));
  }
  all.dist[5] = -0.1f;  // outside [0, 1] (learned or calibrated distances can leave it by rounding)
  all.dist[10] = 1.5f;
  all.dist[20] = 0.f;
  all.dist[40] = 1.f;
  const facecluster::LinkSummary whole = facecluster::summarize_links(all);
  ASSERT_EQ(whole.below.size(), 100u);
  for (int t = 1; t <= 100; ++t) {  // brute force: links with a parent and distance < tau
    int64_t want = 0;
    for (size_t i = 0; i < all.parent.size(); ++i)
      want += all.parent[i] >= 0 && all.dist[i] < static_cast<float>(t / 100.0);
    EXPECT_EQ(whole.below[static_cast<size_t>(t - 1)], want) << "tau " << t / 100.0;
  }
  int64_t with_parent = 0;
  for (int32_t p : all.parent) with_parent += p >= 0;
  int64_t binned = 0;
  for (int64_t h : whole.histogram) binned += h;
  EXPECT_EQ(binned, with_parent);
  // Summed element by element over three slices of the rows, as a distributed run sums them.
  std::vector<int64_t> histogram(whole.histogram.size()), below(whole.below.size());
  for (int first : {0, 333, 700}) {
    const int last = first == 0 ? 333 : first == 333 ? 700 : 1000;
    facecluster::Links part;
    part.parent.assign(all.parent.begin() + first, all.parent.begin() + last);
    part.dist.assign(all.dist.begin() + first, all.dist.begin() + last);
    const facecluster::LinkSummary s = facecluster::summarize_links(part);
    for (size_t b = 0; b < histogram.size(); ++b) histogram[b] += s.histogram[b];
    for (size_t t = 0; t < below.size(); ++t) below[t] += s.below[t];
  }
  EXPECT_EQ(histogram, whole.histogram);
  EXPECT_EQ(below, whole.below);
}
