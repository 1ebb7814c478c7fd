// The learned pair similarity (SPEC section 3): a small transformer reads one anchor's k
// neighbours and predicts, for each, the probability that it shows the anchor's person.
// Training, checkpoints and inference; libtorch stays behind this header.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "facecluster/config.h"
#include "facecluster/error.h"
#include "facecluster/types.h"

namespace facecluster {

// The architecture. With in_dim == d_model there is no input projection and the model has the
// release's shapes exactly; otherwise a learned Linear(in_dim, d_model) comes first.
struct ModelSpec {
  int64_t in_dim = 256;
  int d_model = 256, nhead = 8, dim_feedforward = 2048, num_layers = 1, k = 80;
  double dropout = 0.2;
  std::string activation = "relu";  // relu or gelu
  bool normalize_before = false;    // false: post-norm (the release)

  static ModelSpec from_config(const ModelArgs& m, int64_t feature_dim);
  std::string describe() const;  // one line, for logs and error messages
};

// A trained (or freshly initialised) model held in memory.
class PairModel {
 public:
  PairModel();
  ~PairModel();
  PairModel(PairModel&&) noexcept;
  PairModel& operator=(PairModel&&) noexcept;

  static PairModel create(const ModelSpec& spec, uint64_t seed);
  // Loads a checkpoint (training checkpoint or weights-only model file). With `expected`, a
  // checkpoint of another architecture or feature dimension is refused with a message naming both.
  static PairModel load(const std::string& path, const ModelSpec* expected = nullptr);
  // Writes a weights-only model file (atomically): what `cluster --model` reads.
  void save_weights(const std::string& path) const;

  const ModelSpec& spec() const;
  int64_t parameter_count() const;
  int epoch() const;  // epochs trained (from the checkpoint), 0 for a fresh model

  struct Impl;
  Impl* impl() const { return impl_; }

 private:
  Impl* impl_ = nullptr;
};

// Matrix products of inference in float32, or in bfloat16 (CPU autocast; only where the CPU
// runs them fast, else fp32 with a warning).
enum class Precision { Fp32, Bf16 };
inline Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::Fp32;
  if (name == "bf16") return Precision::Bf16;
  throw Error("unknown precision " + quote_input(name) + "; expected fp32 or bf16");
}
inline const char* precision_name(Precision p) { return p == Precision::Fp32 ? "fp32" : "bf16"; }

struct InferenceOptions {
  int batch_size = 512;
  Precision precision = Precision::Fp32;
  int threads = 0;                 // 0 = all cores
  std::string device = "auto";     // cpu, cuda, cuda:N, auto (see resolve_device)
};

// A --device name as the model runs it: "cpu" or "cuda:N". auto: the first CUDA GPU when
// libtorch sees one, else the CPU. Throws naming the choices for an unknown name, and for cuda
// when this build's libtorch has no CUDA or no GPU is visible.
std::string resolve_device(const std::string& name);
bool cuda_available();

// Runs the model over every anchor of `g` (features already normalised) and returns the graph
// of learned distances d = 1 - sigmoid(logit), each row re-sorted ascending. Anchors stream in
// batches: memory beyond the two graphs is one batch. The row itself is put first in the model's
// input when the kNN row does not start with it. With anchors >= 0 only the first `anchors`
// rows are anchors (and rows of the result); the others only lend their features (a process of a
// distributed run: its own rows first, then the rows of other processes its rows name).
KnnGraph learned_graph(const PairModel& model, const Matrix& x, const KnnGraph& g, const InferenceOptions& o,
                       int64_t anchors = -1);

struct PairStats {
  double loss = 0, accuracy = 0, precision = 0, recall = 0;
  int64_t pairs = 0;
};

// Loss and pair accuracy (threshold 0.5) of the model on a labelled graph, no gradients.
PairStats evaluate_pairs(const PairModel& model, const Matrix& x, const KnnGraph& g, const Labels& labels,
                         const InferenceOptions& o);

struct TrainSplit {
  const Matrix* x = nullptr;   // normalised features
  const KnnGraph* g = nullptr; // its kNN graph (k >= the model's k)
  const Labels* labels = nullptr;
};

struct EpochLog {
  int epoch = 0;
  double seconds = 0, anchors_per_second = 0;
  PairStats train;
  bool validated = false;
  PairStats validation;
};

// Checks the training keys (epochs, batch_size, learning_rate, intervals, work_dir, loss_list)
// before any data is read; train_model checks them again.
void check_training_config(const Config& cfg);

// Trains per the config (epochs, batch_size, learning_rate, weight_decay, clip_max_norm, seed,
// save_interval, inference_interval, reload, work_dir). Checkpoints go to
// work_dir/epoch_<E>.ckpt (written atomically); with reload the latest one is resumed exactly
// (model, optimizer, random state). `val`, when given, is scored every inference_interval epochs.
std::vector<EpochLog> train_model(const Config& cfg, const ModelSpec& spec, const TrainSplit& train,
                                  const TrainSplit* val);

// work_dir/epoch_<E>.ckpt, and the latest such file in work_dir ("" when none).
std::string checkpoint_path(const std::string& work_dir, int epoch);
std::string latest_checkpoint(const std::string& work_dir);

// The model file that ships with facecluster (`cluster --model default`): looked up next to the
// executable's install prefix and in the source tree; throws naming the places tried.
std::string default_model_path();

}  // namespace facecluster
