#include <filesystem>

#include "facecluster/config.h"
#include "facecluster/error.h"
#include "helpers.h"

using namespace facecluster;

namespace {
// The shape of the release's eval config: anchors on feature_dim / topk / model_topk, Python
// style booleans, nested blocks.
const char* kReleaseStyle = R"(
seed: 42
workers: 4
work_dir: ./save/Ours
batch_size: 512
test_batch_size: 512
dataset_name: ms1m
test_dataset_name: ms1m
dataset_args:
  feature_path: ./data/features/part0_train.bin
  label_path: ./data/labels/part0_train.meta
  feature_dim: &feature_dim 256
  topk: &topk 1
  model_topk: &model_topk 80
  knn_path: ./save/knns/ms1m/part0_train/faiss_k_80.npz
  is_norm_feat: True
  prefix: ./save
  is_reload: False
  is_train: True
test_dataset_args:
  feature_path: ./data/features/part1_test.bin
  label_path: ./data/labels/part1_test.meta
  feature_dim: *feature_dim
  topk: *topk
  model_topk: *model_topk
  is_norm_feat: True
  is_train: False
model_name: transformer
model_args:
  d_model: *feature_dim
  nhead: 8
  dim_feedforward: 2048
  dropout: 0.2
  activation: relu
  normalize_before: False
  num_encoder_layers: 1
  num_of_feats: *model_topk
loss_list: [pair]
loss_args:
  verbose: False
lambdas:
  pair: 1
density_args:
  density_type: approximate_NDDe
  TPDi: True
cluster_args:
  max_conn: 1
  tau_start: 0.6
  tau_end: 0.8
  tau_step: 5
  select_by: pairwise
  compute_time: False
  compute_size: True
  compute_sim: False
learning_rate: 0.0001
weight_decay: 0.0005
clip_max_norm: -1
mode: test
recompute_dist: True
prefix: part1_eval
eval_epoch: 7
)";

void expect_error(const std::string& yaml, std::initializer_list<std::string> fragments) {
  try {
    parse_config(yaml, "cfg.yaml");
    FAIL() << "accepted: " << yaml;
  } catch (const Error& e) {
    for (const auto& f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();
  }
}
}  // namespace

TEST(Config, LoadsReleaseShapeWithAnchors) {
  const Config c = parse_config(kReleaseStyle, "eval.yaml");
  EXPECT_EQ(c.workers, 4);
  EXPECT_EQ(c.test_dataset_args.feature_dim, 256);
  EXPECT_EQ(c.test_dataset_args.model_topk, 80);
  EXPECT_EQ(c.model_args.d_model, 256);
  EXPECT_EQ(c.model_args.num_of_feats, 80);
  EXPECT_FALSE(c.test_dataset_args.is_train);
  EXPECT_TRUE(c.dataset_args.is_train);
  EXPECT_EQ(c.loss_list, (std::vector<std::string>{"pair"}));
  EXPECT_EQ(c.density_args.density_type, "approximate_NDDe");
  EXPECT_DOUBLE_EQ(c.learning_rate, 1e-4);
  EXPECT_EQ(c.prefix, "part1_eval");
  EXPECT_DOUBLE_EQ(c.cluster_args.tau_start, 0.6);
  EXPECT_DOUBLE_EQ(c.cluster_args.tau_end, 0.8);
  EXPECT_EQ(c.cluster_args.tau_step, 5);
  EXPECT_TRUE(c.keys_set.count("cluster_args.tau_step"));
  EXPECT_FALSE(c.keys_set.count("cluster_args.calibrate"));
}

TEST(Config, DefaultsAreTheRelease) {
  const Config c = parse_config("seed: 1", "x");
  EXPECT_EQ(c.density_args.ndde_k, 20);
  EXPECT_DOUBLE_EQ(c.density_args.ndde_sigma, 0.5);
  EXPECT_DOUBLE_EQ(c.density_args.tpdi_sigma, 0.05);
  EXPECT_DOUBLE_EQ(c.density_args.ndde_d, 0.1);
  EXPECT_DOUBLE_EQ(c.density_args.ndde_epsilon, 0.05);
  EXPECT_DOUBLE_EQ(c.cluster_args.tau_start, 0.7);
  EXPECT_EQ(c.cluster_args.max_conn, 1);
  EXPECT_EQ(c.dataset_args.model_topk, 80);
}

TEST(Config, HiddenConstantsAreOptionalKeys) {
  const Config c = parse_config("density_args:\n  tpdi_sigma: 0.1\n  ndde_k: 10\n  ndde_sigma: 0.25\n", "x");
  EXPECT_DOUBLE_EQ(c.density_args.tpdi_sigma, 0.1);
  EXPECT_EQ(c.density_args.ndde_k, 10);
  EXPECT_DOUBLE_EQ(c.density_args.ndde_sigma, 0.25);
}

TEST(Config, ErrorsNameFileAndKey) {
  expect_error("sede: 1\n", {"cfg.yaml", "unknown key 'sede'"});
  expect_error("cluster_args:\n  tau_strat: 0.5\n", {"unknown key 'cluster_args.tau_strat'"});
  expect_error("epochs: ten\n", {"cfg.yaml", "'epochs'", "integer", "ten"});
  expect_error("dataset_args:\n  is_norm_feat: maybe\n", {"dataset_args.is_norm_feat", "boolean"});
  expect_error("cluster_args: 3\n", {"cluster_args", "block"});
  expect_error("learning_rate: [1, 2]\n", {"learning_rate", "number"});
  expect_error("a: [unclosed\n", {"cfg.yaml", "malformed YAML"});
}

TEST(Config, RequiredKeysAndOverrides) {
  Config c = parse_config("seed: 1", "train.yaml");
  try {
    require_keys(c, {"dataset_args.feature_path"}, "train");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.yaml: train needs key 'dataset_args.feature_path'"), std::string::npos)
        << e.what();
  }
  set_config_value(c, "dataset_args.feature_path", "x.bin");
  EXPECT_NO_THROW(require_keys(c, {"dataset_args.feature_path"}, "train"));
  set_config_value(c, "cluster_args.tau_start", "0.95");
  EXPECT_DOUBLE_EQ(c.cluster_args.tau_start, 0.95);
  EXPECT_THROW(set_config_value(c, "nope", "1"), Error);
  EXPECT_THROW(set_config_value(c, "epochs", "1.5"), Error);
}

TEST(Config, YamlDumpLoadsBack) {
  Config c = parse_config(kReleaseStyle, "eval.yaml");
  const Config back = parse_config(config_to_yaml(c), "dump");
  EXPECT_EQ(back.test_dataset_args.feature_path, c.test_dataset_args.feature_path);
  EXPECT_EQ(back.cluster_args.tau_step, 5);
  EXPECT_DOUBLE_EQ(back.weight_decay, c.weight_decay);
  EXPECT_EQ(back.loss_list, c.loss_list);
}

TEST(Config, CommittedExampleConfigsLoad) {
  int loaded = 0;
  for (const auto& e : std::filesystem::directory_iterator(std::string(FC_SOURCE_DIR) + "/configs")) {
    if (e.path().extension() != ".yaml") continue;
    const Config c = load_config(e.path().string());
    EXPECT_FALSE(c.test_dataset_args.feature_path.empty()) << e.path();
    ++loaded;
  }
  EXPECT_GE(loaded, 3);
  const Config train = load_config(std::string(FC_SOURCE_DIR) + "/configs/train_synthetic.yaml");
  EXPECT_NO_THROW(require_keys(train, {"dataset_args.feature_path", "dataset_args.label_path"}, "train"));
  EXPECT_EQ(train.model_args.num_of_feats, 80);
}

TEST(Config, KeysThatAreNotNamesAreErrorsNotCrashes) {
  // Found by fuzzing: a complex key (a YAML "? " entry) made yaml-cpp throw its own exception type.
  EXPECT_THROW(parse_config("cluster_args:\n? tau_step: 1e80\n", "f.yaml"), Error);
  EXPECT_THROW(parse_config("? [a, b]\n: 1\n", "f.yaml"), Error);
}
