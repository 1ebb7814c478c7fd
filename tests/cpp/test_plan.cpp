// The run plan: one place where flags, config keys and defaults become decisions.
#include <algorithm>
#include <fstream>

#include "facecluster/error.h"
#include "facecluster/io.h"
#include "facecluster/plan.h"
#include "helpers.h"

using namespace facecluster;

namespace {

std::string write(const fctest::TempDir& dir, const std::string& name, const std::string& text) {
  const std::string path = dir.file(name);
  std::ofstream(path) << text;
  return path;
}

std::string error_of(const PlanRequest& r, Job job = Job::Cluster) {
  try {
    resolve_plan(job, r);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Plan, TauLinspaceIsNumpysAndValidated) {
  const auto v = tau_linspace(0.6, 0.8, 5);
  ASSERT_EQ(v.size(), 5u);
  EXPECT_DOUBLE_EQ(v[0], 0.6);
  EXPECT_NEAR(v[2], 0.7, 1e-12);
  EXPECT_DOUBLE_EQ(v[4], 0.8);
  EXPECT_THROW(tau_linspace(0.5, 0.9, 0), Error);
  EXPECT_THROW(tau_linspace(1.2, 1.2, 1), Error);
  EXPECT_THROW(tau_linspace(0.5, 0.9, 1000000000), Error);
}

TEST(Plan, TauRangeIsParsedStrictly) {
  EXPECT_EQ(parse_tau_range("0.5:0.9:3"), (std::vector<double>{0.5, 0.7, 0.9}));
  for (const char* bad : {"0.5:0.9:3:4", "0.5:0.9:2.5", "0.5:0.9:3x", "0.5:0.9", "a:b:c", "0.5:0.9:", "nan:0.9:3"})
    EXPECT_THROW(parse_tau_range(bad), Error) << bad;
}

TEST(Plan, DefaultsAreTheReleasesAndTrainingFree) {
  PlanRequest r;
  r.features_in_memory = true;
  const RunPlan p = resolve_plan(Job::Cluster, r);
  EXPECT_EQ(p.knn.k, 80);
  EXPECT_EQ(p.knn.index, KnnIndex::Auto);  // exact (flat) up to a size, blocked above: Knn.AutoIndex...
  EXPECT_EQ(p.calibrate, CalibrateMode::Auto);
  EXPECT_TRUE(p.tau_automatic);
  EXPECT_TRUE(p.model.empty());
  EXPECT_EQ(p.graph.density, Density::OneStep);
  EXPECT_EQ(p.graph.ndde_k, 20);
  EXPECT_DOUBLE_EQ(p.graph.ndde_sigma, 0.5);
  EXPECT_DOUBLE_EQ(p.graph.tpdi_sigma, 0.05);
  EXPECT_EQ(p.graph.max_conn, 1);
  EXPECT_GE(p.threads, 1);
  EXPECT_EQ(p.graph.threads, p.threads);
  EXPECT_EQ(p.knn.threads, p.threads);
  // The parameter table (what Python shows as defaults) agrees with the plan.
  for (const auto& param : run_parameters()) {
    if (param.name == "k") {
      EXPECT_EQ(std::get<int64_t>(param.default_value), p.knn.k);
    }
    if (param.name == "ndde_sigma") {
      EXPECT_EQ(std::get<double>(param.default_value), p.graph.ndde_sigma);
    }
    if (param.name == "max_conn") {
      EXPECT_EQ(std::get<int64_t>(param.default_value), p.graph.max_conn);
    }
    if (param.name == "bins") {
      EXPECT_EQ(std::get<int64_t>(param.default_value), p.bins);
    }
  }
  // Calibration off: the release's single tau 0.7.
  r.calibrate = "off";
  const RunPlan off = resolve_plan(Job::Cluster, r);
  EXPECT_FALSE(off.tau_automatic);
  EXPECT_EQ(off.taus, std::vector<double>{0.7});
}

TEST(Plan, FlagsOverrideTheConfigAndUnusedKeysAreNamed) {
  fctest::TempDir dir;
  const std::string feats = write(dir, "x.bin", std::string(64, '\0'));
  const std::string cfg = write(dir, "c.yaml",
                                "work_dir: " + dir.file("work") + "\nworkers: 4\n"
                                "test_dataset_args:\n  feature_path: " + feats + "\n  feature_dim: 4\n  knn_index: hnsw\n"
                                "cluster_args:\n  tau_start: 0.7\n  tau_step: 1\n  compute_size: True\n  calibrate: auto\n");
  PlanRequest r;
  r.config = cfg;
  RunPlan p = resolve_plan(Job::Cluster, r);
  EXPECT_EQ(p.knn.index, KnnIndex::Hnsw);
  EXPECT_EQ(p.feature_dim, 4);
  EXPECT_EQ(p.out_dir, dir.file("work") + "/results");
  auto unused_keys = [](const RunPlan& plan) {
    for (const auto& w : plan.warnings)
      if (w.find("keys with no effect") != std::string::npos) return w;
    return std::string();
  };
  const std::string unused = unused_keys(p);
  for (const char* key : {"workers", "cluster_args.compute_size", "cluster_args.tau_start", "cluster_args.tau_step"})
    EXPECT_NE(unused.find(key), std::string::npos) << key << " in " << unused;
  EXPECT_EQ(unused.find("knn_index"), std::string::npos) << unused;
  r.index = "flat";  // --index flat wins over the config's hnsw
  r.out_dir = "res";  // a bare folder name is fine
  p = resolve_plan(Job::Cluster, r);
  EXPECT_EQ(p.knn.index, KnnIndex::Flat);
  EXPECT_EQ(p.out_dir, "res");
  // Calibration off: the config's tau applies and is no longer reported as unused.
  r.calibrate = "off";
  p = resolve_plan(Job::Cluster, r);
  EXPECT_EQ(p.taus, std::vector<double>{0.7});
  EXPECT_EQ(unused_keys(p).find("tau_start"), std::string::npos) << unused_keys(p);
}

TEST(Plan, BadRequestsFailBeforeAnyWork) {
  fctest::TempDir dir;
  const std::string feats = write(dir, "x.bin", std::string(64, '\0'));
  PlanRequest r;
  r.features = feats;
  r.dim = 4;
  EXPECT_EQ(error_of(r), "");
  auto expect = [&](PlanRequest bad, const std::string& fragment) {
    const std::string e = error_of(bad);
    EXPECT_NE(e.find(fragment), std::string::npos) << "got: " << e;
  };
  PlanRequest b = r;
  b.features = dir.file("missing.bin");
  expect(b, "does not exist");
  b = r;
  b.features = dir.file("");
  expect(b, "is not a file");
  b = r;
  b.dim.reset();
  expect(b, "dimension must be given");
  b = r;
  b.labels = dir.file("");
  expect(b, "labels");
  b = r;
  b.out_dir = dir.file("missing/out");
  expect(b, "does not exist");
  b = r;
  b.out_dir = feats;
  expect(b, "is not a folder");
  b = r;
  b.index = "hnws";
  expect(b, "unknown knn index 'hnws'; expected auto, flat, ivf, hnsw, blocked");
  b = r;
  b.calibrate = "maybe";
  expect(b, "unknown calibrate 'maybe'");
  b = r;
  b.density = "kde";
  expect(b, "unknown density 'kde'");
  b = r;
  b.select_by = "nmi";
  expect(b, "unknown select_by 'nmi'");
  b = r;
  b.nprobe = 0;
  expect(b, "nprobe must be >= 1");
  b = r;
  b.threads = 100000;
  expect(b, "threads must be in [0, 1024]");
  b = r;
  b.taus = std::vector<double>{0.5, 1.5};
  expect(b, "tau must be in (0, 1]");
  b = r;
  b.bins = 0;
  expect(b, "bins must be in");
  b = r;
  b.precision = "fp16";
  expect(b, "unknown precision 'fp16'");
}

TEST(Plan, ParametersSetByName) {
  PlanRequest r;
  set_parameter(r, "k", int64_t{12});
  set_parameter(r, "tau", 0.5);
  set_parameter(r, "index", std::string("hnsw"));
  set_parameter(r, "model", std::monostate{});
  EXPECT_EQ(*r.k, 12);
  EXPECT_EQ(*r.taus, std::vector<double>{0.5});
  EXPECT_EQ(*r.index, "hnsw");
  EXPECT_FALSE(r.model.has_value());
  EXPECT_THROW(set_parameter(r, "kk", int64_t{1}), Error);
  EXPECT_THROW(set_parameter(r, "k", std::string("many")), Error);
  EXPECT_THROW(set_parameter(r, "k", 1.5), Error);
}

TEST(Plan, UnusedKeysOfATrainingConfig) {
  const Config c = parse_config(
      "workers: 8\nepochs: 3\nlearning_rate: 0.001\ndataset_args:\n  feature_path: x.bin\n  topk: 1\n"
      "model_args:\n  nhead: 4\ncluster_args:\n  tau_start: 0.6\n  compute_size: True\neval_epoch: 3\n",
      "t.yaml");
  const auto train = unused_config_keys(c, Job::Train);
  for (const char* key : {"workers", "dataset_args.topk", "cluster_args.tau_start", "cluster_args.compute_size", "eval_epoch"})
    EXPECT_NE(std::find(train.begin(), train.end(), key), train.end()) << key;
  for (const char* key : {"epochs", "learning_rate", "dataset_args.feature_path", "model_args.nhead"})
    EXPECT_EQ(std::find(train.begin(), train.end(), key), train.end()) << key;
  const auto eval = unused_config_keys(c, Job::Eval);  // a training config used for eval
  EXPECT_EQ(std::find(eval.begin(), eval.end(), std::string("eval_epoch")), eval.end());
  EXPECT_EQ(std::find(eval.begin(), eval.end(), std::string("epochs")), eval.end());
  EXPECT_NE(std::find(eval.begin(), eval.end(), std::string("cluster_args.compute_size")), eval.end());
  // test_batch_size is the model's inference batch: used by cluster only when a model runs
  const Config b = parse_config("test_batch_size: 64\n", "b.yaml");
  EXPECT_EQ(unused_config_keys(b, Job::Cluster), std::vector<std::string>{"test_batch_size"});
  EXPECT_TRUE(unused_config_keys(b, Job::Cluster, true).empty());
}

#ifdef FC_TEST_WITH_TORCH
// Where the model runs is decided once, in the plan: auto is the GPU when libtorch sees one;
// a GPU asked of a machine (or a CPU-only libtorch) without one is refused before any work.
TEST(Plan, DeviceIsDecidedOnceAndAMissingGpuIsRefused) {
  fctest::TempDir dir;
  PlanRequest r;
  r.features = write(dir, "x.bin", std::string(64 * 256, '\0'));
  r.dim = 256;
  r.model = "default";
  EXPECT_EQ(resolve_plan(Job::Cluster, r).inference.device, cuda_available() ? "cuda:0" : "cpu");
  r.device = "cpu";
  EXPECT_EQ(resolve_plan(Job::Cluster, r).inference.device, "cpu");
  r.device = "gpu";
  EXPECT_NE(error_of(r).find("unknown device 'gpu'; expected cpu, cuda, cuda:N or auto"), std::string::npos) << error_of(r);
  r.device = "cuda:x";
  EXPECT_NE(error_of(r).find("unknown device"), std::string::npos) << error_of(r);
  if (!cuda_available()) {
    r.device = "cuda";
    EXPECT_NE(error_of(r).find("libtorch sees no CUDA GPU"), std::string::npos) << error_of(r);
  }
  // The exact kNN goes where the model goes; the approximate indexes stay on the CPU.
  r.model.reset();
  r.device = "auto";
  RunPlan p = resolve_plan(Job::Cluster, r);
  EXPECT_EQ(p.knn.device, p.inference.device);
  r.index = "hnsw";
  p = resolve_plan(Job::Cluster, r);
  EXPECT_EQ(p.knn.device, "cpu");
}
#endif
