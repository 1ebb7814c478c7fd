// The run plan: every decision of a clustering run made once, before any work starts.
//
// resolve_plan() turns what the user gave (a release-style YAML config, CLI flags or Python
// keywords, all as one PlanRequest) into a RunPlan: typed modes, k and the index, the model,
// calibration, the tau list or "automatic", threads, bins and outputs. It validates everything
// it can without reading the data (files exist and are files, the output folder can be written,
// values are in range) and lists every config key that is accepted but has no effect. Nothing
// downstream re-decides: the pipeline (pipeline.h) only carries the plan out.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "facecluster/config.h"
#include "facecluster/graph.h"
#include "facecluster/knn.h"
#include "facecluster/model.h"

namespace facecluster {

// cluster: the training-free default (or a model given by --model); eval: the release's eval.py
// (a trained checkpoint from work_dir, the config's architecture enforced).
enum class Job { Cluster, Eval, Train };  // Train: only for unused_config_keys (train_model reads the config)

// auto: distances rescaled by P(same identity) fitted on the data (docs/calibration.md);
// off: the distances as they are, with the release's constants.
enum class CalibrateMode { Auto, Off };
CalibrateMode parse_calibrate(const std::string& name);
const char* calibrate_name(CalibrateMode m);

// The metric that picks the best tau of a sweep when labels are given.
enum class SelectBy { Pairwise, BCubed };
SelectBy parse_select_by(const std::string& name);
const char* select_by_name(SelectBy s);

// What the user asked for. An unset field means "the config's value, else the default".
struct PlanRequest {
  std::optional<std::string> config;  // YAML file, loaded by resolve_plan
  std::vector<std::string> sets;      // KEY=VALUE overrides of config keys
  bool features_in_memory = false;    // the caller passes features or a graph (Python): no feature file

  std::optional<std::string> features, labels, knn_cache, out_dir;
  std::optional<int64_t> dim;
  std::optional<bool> rebuild_knn;

  std::optional<int64_t> k, nlist, nprobe, hnsw_m, ef_construction, ef_search, probe, refine;
  std::optional<std::string> index, knn_precision;

  std::optional<std::string> model, precision;  // model: a file, or "default" (the shipped one)
  std::optional<std::string> device;            // cpu, cuda, cuda:N, auto (the model's)
  std::optional<int64_t> batch_size;

  std::optional<std::string> calibrate, density, select_by;
  std::optional<bool> tpdi;
  std::optional<int64_t> ndde_k, max_conn;
  std::optional<double> ndde_sigma, tpdi_sigma;
  std::optional<std::vector<double>> taus;

  std::optional<int64_t> bins, threads;
  std::optional<int64_t> halo_mib;  // under mpirun: memory for the rows other processes hold
  std::optional<std::string> state_dir;  // --save-state: keep what adding faces later needs
};

constexpr int kDefaultBins = 5;
constexpr int64_t kDefaultHaloMib = 2048;

struct RunPlan {
  Job job = Job::Cluster;
  // Inputs. features is empty when the caller passes them in memory.
  std::string features;
  int64_t feature_dim = 0;  // of a .bin file; 0 for .npy (its header says)
  bool normalize = true;
  std::string labels;       // "" = no labels: nothing is scored
  std::string knn_cache;    // "" = no cache
  bool rebuild_knn = false;
  KnnOptions knn;
  // The learned similarity. model == "" runs training-free on cosine distances.
  std::string model;
  bool check_model_arch = false;  // refuse a model whose architecture differs from model_args
  ModelArgs model_args;
  InferenceOptions inference;
  // The graph stage and the cut.
  CalibrateMode calibrate = CalibrateMode::Auto;
  GraphParams graph;
  bool tau_automatic = true;  // the stable tau on calibrated distances (calibrate.h)
  std::vector<double> taus;   // otherwise the values to link with (scored when labels exist)
  SelectBy select_by = SelectBy::Pairwise;
  int bins = kDefaultBins;
  // Under mpirun: the neighbour rows other processes hold are fetched in blocks of own rows
  // sized so that one block's halo stays within this many MiB (all at once when they fit).
  int64_t halo_mib = kDefaultHaloMib;
  int threads = 1;            // resolved: never 0
  std::string out_dir;        // "" = nothing written
  std::string state_dir;      // "" = no state kept; else a new state folder (incremental.h)
  bool create_out_parents = false;  // work_dir/results: its folders are made as needed
  std::vector<std::string> warnings;
};

RunPlan resolve_plan(Job job, const PlanRequest& request);

// The keys a config file set that change nothing in `job` (resolve_plan puts them in a warning);
// with_model: a learned similarity runs (its inference batch, test_batch_size, then matters).
std::vector<std::string> unused_config_keys(const Config& cfg, Job job, bool with_model = false);
// The one warning line that names them: "SOURCE: keys with no effect on JOB: a, b, ...".
std::string no_effect_warning(const std::string& source, Job job, const std::vector<std::string>& keys);

// Only the inputs (features, labels, kNN cache, k, index, threads) of one split of a config:
// what the train job reads for its training and validation splits. `what` names the split.
RunPlan resolve_split(const Config& cfg, const DatasetArgs& ds, const std::string& knn_fallback, const std::string& what);

// The plan as "name: value" lines, for logs and reports.
std::vector<std::pair<std::string, std::string>> describe_plan(const RunPlan& p);

// numpy.linspace(start, end, count); every value must be in (0, 1].
std::vector<double> tau_linspace(double start, double end, int64_t count);
// "START:END:COUNT" (the CLI's --tau-range), strictly: three fields, COUNT an integer in [1, 10000].
std::vector<double> parse_tau_range(const std::string& text);

// The user-facing parameters of a clustering run and their defaults, by the names the Python
// module uses as keyword arguments (the CLI's flags are the same names with '-').
using ParamValue = std::variant<std::monostate, bool, int64_t, double, std::string, std::vector<double>>;
struct Parameter {
  std::string name;
  ParamValue default_value;  // monostate: unset (decided by the plan, see help)
  std::string help;
};
const std::vector<Parameter>& run_parameters();
// Sets one parameter by name; throws naming the parameter on an unknown name or a wrong type.
void set_parameter(PlanRequest& r, const std::string& name, const ParamValue& value);

}  // namespace facecluster
