// Adding faces to a clustering (issue 41): the kNN lists and graph-stage values after an addition
// are those of a run on all faces from scratch; a plan without approximate choices (flat index,
// no calibration, a fixed tau) gives the same partition; ids of untouched clusters survive; the
// state folder round-trips, is replaced in one step, and refuses what does not fit it.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <set>

#include "facecluster/graph.h"
#include "facecluster/incremental.h"
#include "facecluster/io.h"
#include "facecluster/knn.h"
#include "facecluster/log.h"
#include "facecluster/pipeline.h"
#include "facecluster/plan.h"
#include "facecluster/synth.h"
#include "helpers.h"
#include "pipeline_helpers.h"

using namespace facecluster;
using fctest::run_features;
namespace fs = std::filesystem;

namespace {

SynthData faces(int64_t n, uint64_t seed, int64_t dim = 48) {
  SynthOptions o;
  o.n = n;
  o.dim = dim;
  o.seed = seed;
  return make_synthetic(o);
}

Matrix rows(const Matrix& x, int64_t first, int64_t count) {
  Matrix m(count, x.cols);
  std::copy(x.row(first), x.row(first) + count * x.cols, m.data.begin());
  return m;
}

Labels labels_of(const Labels& l, int64_t first, int64_t count) { return Labels(l.begin() + first, l.begin() + first + count); }

Matrix unit(Matrix x) {
  normalize_rows(x, "test");
  return x;
}

// The exact plan: flat search, cosine distances, one fixed tau.
RunPlan exact_plan(int k = 20, double tau = 0.6) {
  PlanRequest r;
  r.features_in_memory = true;
  r.calibrate = "off";
  r.taus = std::vector<double>{tau};
  r.k = k;
  r.index = "flat";
  return resolve_plan(Job::Cluster, r);
}

RunPlan default_plan(int k = 20) {
  PlanRequest r;
  r.features_in_memory = true;
  r.k = k;
  r.index = "flat";
  return resolve_plan(Job::Cluster, r);
}


ClusterState first_state(const RunPlan& plan, const Matrix& x, const Labels* gt = nullptr) {
  const ClusterReport r = run_features(plan, x, gt);
  return state_from_run(plan, x, r, gt);
}

// Labels as a partition: each label replaced by the order of its first appearance.
Labels canonical(const Labels& l) {
  std::map<int64_t, int64_t> first;
  Labels out(l.size());
  for (size_t i = 0; i < l.size(); ++i) out[i] = first.emplace(l[i], static_cast<int64_t>(first.size())).first->second;
  return out;
}

TEST(ExtendKnn, GivesTheListsOfExactSearchOverAllRows) {
  const SynthData d = faces(1500, 3);
  const Matrix x = unit(d.features);
  const int k = 25;
  KnnOptions o;
  o.k = k;
  o.index = KnnIndex::Flat;
  const Matrix old_rows = rows(x, 0, 1200), new_rows = rows(x, 1200, 300);
  KnnGraph g = build_knn(old_rows, o);
  const KnnGraph before = g;
  const KnnExtension e = extend_knn(g, old_rows, new_rows);
  apply_extension(g, e);
  const KnnGraph expected = brute_force_knn(x, k);
  ASSERT_EQ(g.n, expected.n);
  EXPECT_EQ(g.nbrs, expected.nbrs);
  for (size_t i = 0; i < g.dists.size(); ++i) ASSERT_NEAR(g.dists[i], expected.dists[i], 1e-6) << "entry " << i;
  // `changed` is exactly the old rows whose lists differ.
  std::set<int64_t> differ;
  for (int64_t i = 0; i < before.n; ++i)
    if (!std::equal(before.nbr_row(i), before.nbr_row(i) + k, g.nbr_row(i))) differ.insert(i);
  EXPECT_EQ(std::set<int64_t>(e.changed.begin(), e.changed.end()), differ);
  EXPECT_FALSE(differ.empty());
}

TEST(ExtendKnn, ListsFlatSearchGivesBitForBit) {
  const SynthData d = faces(900, 5);
  const Matrix x = unit(d.features);
  KnnOptions o;
  o.k = 30;
  o.index = KnnIndex::Flat;
  KnnGraph g = build_knn(rows(x, 0, 700), o);
  apply_extension(g, extend_knn(g, rows(x, 0, 700), rows(x, 700, 200)));
  const KnnGraph whole = build_knn(x, o);
  EXPECT_EQ(g.nbrs, whole.nbrs);
  EXPECT_EQ(g.dists, whole.dists);
}

// The graph stage of the first `first` rows of x (k neighbours, flat search), the rest added and
// the stage updated: checked against the whole stage of the grown graph, bit for bit.
struct Grown {
  std::vector<int64_t> recomputed, changed;
};
Grown grow_and_check(const Matrix& x, int64_t first, int k, const GraphParams& p) {
  KnnOptions o;
  o.k = k;
  o.index = KnnIndex::Flat;
  KnnGraph g = build_knn(rows(x, 0, first), o);
  GraphResult r = run_graph_stage(g, p);
  const KnnExtension e = extend_knn(g, rows(x, 0, first), rows(x, first, x.rows - first));
  apply_extension(g, e);
  Grown out{update_graph_stage(g, e.changed, p, r), e.changed};
  const GraphResult whole = run_graph_stage(g, p);
  EXPECT_EQ(r.density, whole.density);
  EXPECT_EQ(r.links.parent, whole.links.parent);
  EXPECT_EQ(r.links.dist, whole.links.dist);
  EXPECT_TRUE(std::is_sorted(out.recomputed.begin(), out.recomputed.end()));
  return out;
}

TEST(UpdateGraphStage, EqualsTheWholeStageBitForBit) {
  const Matrix x = unit(faces(1200, 7).features);
  for (const bool tpdi : {true, false}) {
    GraphParams p;
    p.use_tpdi = tpdi;
    p.max_conn = 2;
    EXPECT_LE(grow_and_check(x, 1000, 20, p).recomputed.size(), 1200u);
  }
}

TEST(UpdateGraphStage, RecomputesOnlyNearAFewAddedRows) {
  // Few neighbours and three added rows: the rows that can change are a small part, computed as
  // a part of the graph rather than in the whole pass.
  const Matrix x = unit(faces(3003, 43).features);
  for (const Density density : {Density::OneStep, Density::Full}) {
    GraphParams p;
    p.density = density;
    p.ndde_k = 5;
    const Grown g = grow_and_check(x, 3000, 5, p);
    const auto& done = g.recomputed;
    if (density == Density::OneStep) {
      EXPECT_LT(done.size(), 3003u / 4);
      for (int64_t i : g.changed) EXPECT_TRUE(std::binary_search(done.begin(), done.end(), i));
      for (int64_t i = 3000; i < 3003; ++i) EXPECT_TRUE(std::binary_search(done.begin(), done.end(), i));
    } else {
      EXPECT_EQ(done.size(), 3003u);  // the diffusion moves every density
    }
  }
}

TEST(AddFaces, ExactPlanGivesTheScratchPartitionAfterEveryBatch) {
  const SynthData d = faces(2000, 11);
  const RunPlan plan = exact_plan();
  const Matrix first = rows(d.features, 0, 1400);
  ClusterState s = first_state(plan, unit(first));
  for (int b = 0; b < 3; ++b) {
    const int64_t at = 1400 + 200 * b;
    const ClusterReport added = add_faces(s, rows(d.features, at, 200), nullptr, "batch");
    const ClusterReport scratch = run_features(plan, unit(rows(d.features, 0, at + 200)));
    ASSERT_EQ(added.labels.size(), static_cast<size_t>(at + 200));
    EXPECT_EQ(canonical(added.labels), canonical(scratch.labels)) << "after batch " << b;
  }
}

TEST(AddFaces, DefaultPlanAgreesWithScratchAndScores) {
  const SynthData d = faces(3000, 13);
  const RunPlan plan = default_plan();
  const Labels gt0 = labels_of(d.labels, 0, 2400);
  ClusterState s = first_state(plan, unit(rows(d.features, 0, 2400)), &gt0);
  ASSERT_TRUE(s.calibrated);
  ClusterReport r;
  for (int b = 0; b < 3; ++b) {
    const Labels gt = labels_of(d.labels, 2400 + 200 * b, 200);
    r = add_faces(s, rows(d.features, 2400 + 200 * b, 200), &gt, "batch");
  }
  ASSERT_TRUE(r.scored);
  const ClusterReport scratch = run_features(plan, unit(d.features), &d.labels);
  const Scores agree = evaluate(r.labels, scratch.labels);
  EXPECT_GE(agree.pairwise_f, 0.98);
  // The scores are those of the labels against every face's true label.
  EXPECT_DOUBLE_EQ(r.sweep[0].scores.pairwise_f, evaluate(r.labels, d.labels).pairwise_f);
  EXPECT_EQ(r.sweep[0].tau, s.tau);
}

TEST(AddFaces, ARecalibrationGivesTheScratchRunsPartition) {
  // With the calibration fitted again on all faces (and tau chosen again), the clustering is the
  // scratch run's: the same exact graph, the same fit, the same cut.
  const SynthData d = faces(3000, 47);
  const RunPlan plan = default_plan();
  ClusterState s = first_state(plan, unit(rows(d.features, 0, 2800)));
  add_faces(s, rows(d.features, 2800, 100), nullptr, "batch");
  EXPECT_EQ(s.calibrated_on, 2800);  // 3.6% more faces: the first fit stays
  const ClusterReport r = add_faces(s, rows(d.features, 2900, 100), nullptr, "batch", true);
  EXPECT_EQ(s.calibrated_on, 3000);
  const ClusterReport scratch = run_features(plan, unit(d.features));
  EXPECT_EQ(canonical(r.labels), canonical(scratch.labels));
  EXPECT_EQ(r.chosen_tau(), scratch.chosen_tau());
}

TEST(AddFaces, TheCalibrationIsFittedAgainOnceTheFacesGrewByATenth) {
  const SynthData d = faces(1300, 53);
  ClusterState s = first_state(default_plan(), unit(rows(d.features, 0, 1000)));
  add_faces(s, rows(d.features, 1000, 60), nullptr, "batch");
  EXPECT_EQ(s.calibrated_on, 1000);
  add_faces(s, rows(d.features, 1060, 60), nullptr, "batch");  // 12% more than the fit saw
  EXPECT_EQ(s.calibrated_on, 1120);
  // A first run too small to calibrate gets its calibration once there are pairs to fit.
  ClusterState tiny = first_state(default_plan(), unit(rows(d.features, 1200, 3)));
  EXPECT_FALSE(tiny.calibrated);
  add_faces(tiny, rows(d.features, 1203, 97), nullptr, "batch");
  EXPECT_TRUE(tiny.calibrated);
  EXPECT_EQ(tiny.calibrated_on, 100);
}

TEST(AddFaces, UntouchedClustersKeepTheirIdsAndChangesAreListed) {
  const SynthData d = faces(2400, 17);
  const RunPlan plan = exact_plan();
  ClusterState s = first_state(plan, unit(rows(d.features, 0, 1600)));
  Labels before = s.labels();
  int64_t unchanged = 0;
  for (int b = 0; b < 4; ++b) {
    const ClusterReport r = add_faces(s, rows(d.features, 1600 + 200 * b, 200), nullptr, "batch");
    const Labels after(r.labels.begin(), r.labels.begin() + static_cast<int64_t>(before.size()));
    // Earlier cluster -> the labels its faces have now; label -> how many earlier faces have it.
    std::map<int64_t, std::set<int64_t>> now;
    std::map<int64_t, int64_t> holders, size;
    for (size_t i = 0; i < before.size(); ++i) now[before[i]].insert(after[i]), ++holders[after[i]], ++size[before[i]];
    std::set<int64_t> split, merged_away;
    for (const auto& c : r.changes) {
      if (c.kind == ClusterChange::Kind::Split) split.insert(c.id);
      else merged_away.insert(c.others.begin(), c.others.end());
    }
    for (const auto& [id, labels] : now) {
      const bool same_members = labels.size() == 1 && holders[*labels.begin()] == size[id];
      if (same_members) {
        ++unchanged;
        EXPECT_EQ(*labels.begin(), id) << "cluster " << id << " kept its faces but not its id";
      }
      // Every cluster that lost its id or its faces is listed.
      if (labels.size() > 1) {
        EXPECT_TRUE(split.count(id)) << "cluster " << id << " split silently";
      }
      if (labels.size() == 1 && *labels.begin() != id) {
        EXPECT_TRUE(merged_away.count(id) || split.count(id)) << "cluster " << id << " lost its id silently";
      }
    }
    before = r.labels;
  }
  EXPECT_GT(unchanged, 100);
}

TEST(AddFaces, CopiesTakeTheirOriginalsLabel) {
  const SynthData d = faces(1200, 19);
  const RunPlan plan = exact_plan();
  ClusterState s = first_state(plan, unit(rows(d.features, 0, 1000)));
  Matrix batch = rows(d.features, 1000, 200);
  // Rows 0..9 of the batch: copies of earlier faces; rows 10..14: copies of rows 20..24 of the batch.
  for (int i = 0; i < 10; ++i) std::copy(d.features.row(i * 7), d.features.row(i * 7) + batch.cols, batch.row(i));
  for (int i = 10; i < 15; ++i) std::copy(batch.row(i + 10), batch.row(i + 10) + batch.cols, batch.row(i));
  const ClusterReport r = add_faces(s, batch, nullptr, "batch");
  EXPECT_EQ(s.graph.n, 1000 + 200 - 15);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(r.labels[1000 + i], r.labels[i * 7]);
  for (int i = 10; i < 15; ++i) EXPECT_EQ(r.labels[1000 + i], r.labels[1000 + i + 10]);
  // The distinct faces are clustered as a whole run clusters them (which groups copies too).
  Matrix all(1200, batch.cols);
  std::copy(d.features.row(0), d.features.row(0) + 1000 * batch.cols, all.row(0));
  std::copy(batch.row(0), batch.row(0) + 200 * batch.cols, all.row(1000));
  EXPECT_EQ(canonical(r.labels), canonical(run_features(plan, unit(all)).labels));
}

TEST(AddFaces, AFirstRunSmallerThanKGrowsItsLists) {
  const SynthData d = faces(400, 23);
  const RunPlan plan = exact_plan(40);
  ClusterState s = first_state(plan, unit(rows(d.features, 0, 25)));
  EXPECT_EQ(s.graph.k, 25);
  add_faces(s, rows(d.features, 25, 10), nullptr, "batch");
  const ClusterReport r = add_faces(s, rows(d.features, 35, 365), nullptr, "batch");
  EXPECT_EQ(s.graph.k, 40);
  EXPECT_EQ(canonical(r.labels), canonical(run_features(plan, unit(d.features)).labels));
}

// Interrupts from the n-th check of an interrupt on (0: never), counting the checks (some come
// from one thread of a parallel loop, so their number varies a little between runs).
std::atomic<int> checks{0};
int interrupt_at = 0;
bool count_and_interrupt() { return ++checks >= interrupt_at && interrupt_at > 0; }

void expect_same_state(const ClusterState& a, const ClusterState& b) {
  EXPECT_EQ(a.labels(), b.labels());
  EXPECT_EQ(a.graph.n, b.graph.n);
  EXPECT_EQ(a.graph.k, b.graph.k);
  EXPECT_EQ(a.graph.nbrs, b.graph.nbrs);
  EXPECT_EQ(a.graph.dists, b.graph.dists);
  EXPECT_EQ(a.link_dists, b.link_dists);
  EXPECT_EQ(a.features.data, b.features.data);
  EXPECT_EQ(a.features.rows, b.features.rows);
  EXPECT_EQ(a.density, b.density);
  EXPECT_EQ(a.links.parent, b.links.parent);
  EXPECT_EQ(a.links.dist, b.links.dist);
  EXPECT_EQ(a.row_of, b.row_of);
  EXPECT_EQ(a.truth, b.truth);
  EXPECT_EQ(a.batches.size(), b.batches.size());
  EXPECT_EQ(a.calibrated, b.calibrated);
  EXPECT_EQ(a.calibrated_on, b.calibrated_on);
  EXPECT_EQ(a.calibration.similarity.same_mean, b.calibration.similarity.same_mean);
  EXPECT_EQ(a.next_id, b.next_id);
  EXPECT_EQ(a.tau, b.tau);
}

TEST(AddFaces, AnInterruptedAdditionLeavesTheStateAsItWas) {
  const SynthData d = faces(1500, 59);
  const Labels gt = labels_of(d.labels, 0, 1200), gt_new = labels_of(d.labels, 1200, 300);
  const ClusterState before = first_state(default_plan(), unit(rows(d.features, 0, 1200)), &gt);
  const Matrix batch = rows(d.features, 1200, 300);
  const ClusterState small = first_state(exact_plan(40), unit(rows(d.features, 0, 25)));
  // An addition that refits: every check of an interrupt it makes, counted on an uninterrupted run.
  ClusterState whole = before;
  struct HookScope {
    HookScope() { set_interrupt_hook(&count_and_interrupt); }
    ~HookScope() {
      set_interrupt_hook(nullptr);
      interrupt_at = 0;
    }
  } hook;
  checks = 0;
  interrupt_at = 0;
  add_faces(whole, batch, &gt_new, "batch", true);
  const int total = checks;
  ASSERT_GT(total, 3);
  for (int at : {1, 2, total / 2, total * 3 / 4}) {
    ClusterState s = before;
    checks = 0;
    interrupt_at = at;
    EXPECT_THROW(add_faces(s, batch, &gt_new, "batch", true), Interrupted) << "check " << at << " of " << total;
    expect_same_state(s, before);
  }
  // The same for a first run smaller than k (its lists widen) and for an error.
  ClusterState s = small;
  checks = 0;
  interrupt_at = 1;
  EXPECT_THROW(add_faces(s, batch, nullptr, "batch"), Interrupted);
  expect_same_state(s, small);
  interrupt_at = 0;
  s = before;
  const Labels wrong(7, 1);
  EXPECT_THROW(add_faces(s, batch, &wrong, "batch"), Error);
  expect_same_state(s, before);
}

TEST(AddFaces, RefusesWhatDoesNotFit) {
  const SynthData d = faces(600, 29);
  ClusterState s = first_state(exact_plan(), unit(rows(d.features, 0, 500)));
  EXPECT_THROW(add_faces(s, Matrix(10, 12), nullptr, "wrong.bin"), Error);
  const Matrix batch = rows(d.features, 500, 100);
  const Labels short_gt(5, 1);
  EXPECT_THROW(add_faces(s, batch, &short_gt, "batch"), Error);
  add_faces(s, batch, nullptr, "batch");
  try {
    add_faces(s, batch, nullptr, "again.bin");
    FAIL() << "the same batch was added twice";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("added already"), std::string::npos) << e.what();
  }
}

TEST(StateFolder, RoundTripsAndReplacesItselfInOneStep) {
  fctest::TempDir tmp;
  const SynthData d = faces(1500, 31);
  const RunPlan plan = default_plan();
  const Labels gt = labels_of(d.labels, 0, 1200);
  ClusterState s = first_state(plan, unit(rows(d.features, 0, 1200)), &gt);
  const std::string dir = tmp.file("state");
  save_state(dir, s, true);
  EXPECT_THROW(save_state(dir, s, true), Error);  // a first run never replaces a state
  ClusterState loaded = load_state(dir);
  EXPECT_EQ(loaded.labels(), s.labels());
  EXPECT_EQ(loaded.graph.nbrs, s.graph.nbrs);
  EXPECT_EQ(loaded.link_dists, s.link_dists);
  EXPECT_EQ(loaded.density, s.density);
  EXPECT_EQ(loaded.links.parent, s.links.parent);
  EXPECT_EQ(loaded.calibration.similarity.same_mean, s.calibration.similarity.same_mean);
  EXPECT_EQ(loaded.tau, s.tau);
  EXPECT_EQ(loaded.truth, s.truth);
  // Adding to the loaded state and to the one in memory gives the same.
  const Labels gt1 = labels_of(d.labels, 1200, 300);
  const ClusterReport a = add_faces(s, rows(d.features, 1200, 300), &gt1, "batch");
  const ClusterReport b = add_faces(loaded, rows(d.features, 1200, 300), &gt1, "batch");
  EXPECT_EQ(a.labels, b.labels);
  save_state(dir, loaded, false);
  // One generation is left, CURRENT names it, and the first batch's features are shared by link.
  std::vector<std::string> gens;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind("gen-", 0) == 0) gens.push_back(e.path().filename().string());
  ASSERT_EQ(gens.size(), 1u);
  EXPECT_EQ(gens[0], "gen-000001");
  EXPECT_EQ(load_state(dir).labels(), a.labels);
}

TEST(StateFolder, RefusesWhatIsNotAStateOfThisVersion) {
  fctest::TempDir tmp;
  const SynthData d = faces(300, 37);
  const ClusterState s = first_state(exact_plan(), unit(d.features));
  auto message = [](const std::string& dir) {
    try {
      load_state(dir);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(loaded)");
  };
  EXPECT_NE(message(tmp.file("missing")).find("does not exist"), std::string::npos);
  fs::create_directories(tmp.file("empty"));
  EXPECT_NE(message(tmp.file("empty")).find("holds no clustering state"), std::string::npos);
  const std::string dir = tmp.file("state");
  save_state(dir, s, true);
  const std::string gen = dir + "/gen-000000";
  {  // another format version
    std::string text = read_text_file(gen + "/state.yaml");
    const std::string good = read_text_file(gen + "/state.yaml");
    text.replace(text.find("version: 1"), 10, "version: 9");
    write_text_file(gen + "/state.yaml", text);
    EXPECT_NE(message(dir).find("format version 9"), std::string::npos) << message(dir);
    write_text_file(gen + "/state.yaml", good);
  }
  {  // a truncated array
    const std::string p = gen + "/density.npy";
    fs::resize_file(p, fs::file_size(p) - 8);
    EXPECT_NE(message(dir).find("density.npy"), std::string::npos) << message(dir);
  }
  {  // a missing one
    fs::remove(gen + "/density.npy");
    EXPECT_NE(message(dir).find("density.npy is missing"), std::string::npos) << message(dir);
  }
  {  // CURRENT naming nothing
    write_text_file(dir + "/CURRENT", "gen-000007\n");
    EXPECT_NE(message(dir).find("missing"), std::string::npos) << message(dir);
  }
}

TEST(StateFolder, AKilledSaveLeavesTheOldStateAndIsSweptAway) {
  fctest::TempDir tmp;
  const SynthData d = faces(400, 41);
  ClusterState s = first_state(exact_plan(), unit(rows(d.features, 0, 300)));
  const std::string dir = tmp.file("state");
  save_state(dir, s, true);
  const Labels before = s.labels();
  // What a save killed before its CURRENT was replaced leaves: a partial generation.
  fs::create_directories(dir + "/gen-000001.partial");
  { std::ofstream(dir + "/gen-000001.partial/knn_ids.npy") << "half"; }
  EXPECT_EQ(load_state(dir).labels(), before);
  add_faces(s, rows(d.features, 300, 100), nullptr, "batch");
  save_state(dir, s, false);
  EXPECT_FALSE(fs::exists(dir + "/gen-000001.partial"));
  EXPECT_EQ(load_state(dir).labels(), s.labels());
}

}  // namespace
