// The release's YAML files as written (SPEC section 8): one struct, keys and defaults as in the
// release; constants the release hard-codes are optional keys under density_args. An unknown key
// is an error that names it. This is raw input: the run plan (plan.h) turns it, with CLI flags
// or Python keywords, into typed, validated decisions.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace facecluster {

struct DatasetArgs {
  std::string feature_path, label_path, knn_path;
  int64_t feature_dim = 256;
  int topk = 1;
  int model_topk = 80;  // k of the kNN graph and of the model input
  bool is_norm_feat = true;
  std::string prefix = "./save";
  bool is_reload = false;
  bool is_train = true;
  std::string knn_index = "auto";  // facecluster extension: auto, flat, ivf, hnsw, blocked
};

struct ModelArgs {
  int d_model = 256, nhead = 8, dim_feedforward = 2048, num_encoder_layers = 1, num_of_feats = 80;
  double dropout = 0.2;
  std::string activation = "relu";
  bool normalize_before = false;
};

// density_args: the graph stage's keys (SPEC sections 4-5), the release's hidden constants included.
struct DensityArgs {
  std::string density_type = "approximate_NDDe";  // or NDDe (the paper's full diffusion)
  bool tpdi = true;                                // key TPDi
  int ndde_k = 20;
  double ndde_sigma = 0.5, ndde_d = 0.1, ndde_epsilon = 0.05;
  int ndde_max_iter = 1000;
  double tpdi_sigma = 0.05;
};

struct ClusterArgs {
  int max_conn = 1;
  double tau_start = 0.7, tau_end = 0.7;
  int tau_step = 1;  // number of tau values (numpy.linspace)
  std::string select_by = "pairwise";  // pairwise or bcubed
  bool compute_time = false, compute_size = false, compute_sim = false;
  std::string calibrate = "default";  // facecluster extension (docs/calibration.md): auto, off, or default
                                     // (auto without a model, off with one)
};

struct Config {
  std::string source;              // the file it came from, for messages
  std::set<std::string> keys_set;  // dotted keys the file or --set gave a value
  int seed = 42;
  int workers = 8;
  std::string work_dir = "./save/facecluster";
  bool debug = false;
  int print_interval = 100, save_interval = 1, inference_interval = 1;
  int batch_size = 512, test_batch_size = 512;
  std::string dataset_name = "ms1m", test_dataset_name = "ms1m";
  DatasetArgs dataset_args, test_dataset_args;
  int start_epoch = 0, epochs = 10;
  bool reload = false;
  double learning_rate = 1e-4, weight_decay = 5e-4, clip_max_norm = -1;
  std::string model_name = "transformer";
  ModelArgs model_args;
  std::vector<std::string> loss_list{"pair"};
  bool loss_verbose = false;
  double lambda_pair = 1.0;
  DensityArgs density_args;
  ClusterArgs cluster_args;
  std::string train_knn_path, test_knn_path;
  std::string mode = "test", prefix;
  bool recompute_dist = true;
  int eval_epoch = 7;
  int threads = 0;  // facecluster extension: 0 = all cores
  std::string device = "auto";  // facecluster extension: where the model trains and runs (cpu, cuda, cuda:N, auto)
  // facecluster extension: train on randomly rotated features (one random orthogonal D x D
  // matrix per batch). Cosines are unchanged, so the model must learn how neighbours relate
  // rather than where each training identity sits; see docs/model.md.
  bool augment_rotation = false;
  // facecluster extension: the training forward pass in fp32 or bf16 autocast (CUDA; CPUs with
  // AVX-512); the backward pass and Adam stay in fp32.
  std::string precision = "fp32";
};

// Loads a YAML file; throws Error naming the file and the key on unknown keys, wrong types or
// malformed YAML. Anchors and aliases are resolved by the YAML parser.
Config load_config(const std::string& path);
Config parse_config(const std::string& yaml_text, const std::string& source);

// Sets one key by its dotted name from a string value ("cluster_args.tau_start=0.9").
void set_config_value(Config& c, const std::string& dotted_key, const std::string& value);
// Applies "KEY=VALUE" overrides (the CLI's --set), in order.
void apply_config_sets(Config& c, const std::vector<std::string>& sets);

// Throws unless every listed dotted key was set to a non-empty value.
void require_keys(const Config& c, const std::vector<std::string>& keys, const std::string& job);

// The config as YAML, for logs and checkpoints.
std::string config_to_yaml(const Config& c);

}  // namespace facecluster
