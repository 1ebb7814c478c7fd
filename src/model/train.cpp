// The training job (the release's main.py): every labelled row is an anchor, BCE with logits
// over its neighbour pairs, Adam, checkpoints per save_interval epochs, exact resume.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <numeric>
#include <random>
#include <regex>
#include <sstream>

#include "batch.h"
#include "checkpoint.h"
#include "facecluster/error.h"
#include "facecluster/io.h"
#include "facecluster/log.h"
#include "net.h"
#include "runtime.h"

namespace facecluster {
namespace fs = std::filesystem;

namespace {

void check_split(const TrainSplit& s, const ModelSpec& spec, const std::string& what) {
  FC_CHECK(s.x && s.g, what << ": features and kNN graph are required");
  FC_CHECK(s.labels && !s.labels->empty(), what << ": labels are required for training (dataset_args.label_path)");
  FC_CHECK(static_cast<int64_t>(s.labels->size()) == s.x->rows,
           what << ": " << s.labels->size() << " labels for " << s.x->rows << " feature rows");
  model::check_model_input(spec, *s.x, *s.g, what);
}

// The entries of an earlier train_log.json for epochs 1..upto (a resumed run keeps them), one
// line each as format_log writes them.
std::vector<std::string> earlier_log_entries(const std::string& path, int upto) {
  std::vector<std::string> out;
  std::error_code ec;
  if (upto <= 0 || !fs::exists(path, ec)) return out;
  static const std::regex entry(R"(\s*(\{"epoch": ([0-9]+),.*\}),?\s*)");
  std::istringstream in(read_text_file(path));
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (std::regex_match(line, m, entry) && std::stoi(m[2]) <= upto) out.push_back(m[1]);
  }
  return out;
}

std::string format_log(const std::vector<std::string>& earlier, const std::vector<EpochLog>& logs) {
  std::ostringstream os;
  os.precision(6);
  os << "[\n";
  for (size_t i = 0; i < earlier.size(); ++i) os << "  " << earlier[i] << (i + 1 < earlier.size() + logs.size() ? "," : "") << "\n";
  for (size_t i = 0; i < logs.size(); ++i) {
    const auto& l = logs[i];
    os << "  {\"epoch\": " << l.epoch << ", \"seconds\": " << l.seconds << ", \"anchors_per_second\": " << l.anchors_per_second
       << ", \"loss\": " << l.train.loss << ", \"pair_accuracy\": " << l.train.accuracy;
    if (l.validated)
      os << ", \"val_loss\": " << l.validation.loss << ", \"val_pair_accuracy\": " << l.validation.accuracy
         << ", \"val_pair_precision\": " << l.validation.precision << ", \"val_pair_recall\": " << l.validation.recall;
    os << "}" << (i + 1 < logs.size() ? "," : "") << "\n";
  }
  os << "]\n";
  return os.str();
}

}  // namespace

void check_training_config(const Config& cfg) {
  for (const auto& loss : cfg.loss_list)
    FC_CHECK(loss == "pair", cfg.source << ": unknown loss " << quote_input(loss) << " in loss_list; expected pair");
  FC_CHECK(!cfg.loss_list.empty(), cfg.source << ": loss_list is empty; expected [pair]");
  FC_CHECK(cfg.weight_decay >= 0, cfg.source << ": weight_decay must be >= 0, got " << cfg.weight_decay);
  FC_CHECK(cfg.batch_size >= 1, cfg.source << ": batch_size must be >= 1, got " << cfg.batch_size);
  FC_CHECK(cfg.epochs >= 1, cfg.source << ": epochs must be >= 1, got " << cfg.epochs);
  FC_CHECK(cfg.learning_rate > 0, cfg.source << ": learning_rate must be > 0, got " << cfg.learning_rate);
  FC_CHECK(cfg.save_interval >= 1 && cfg.inference_interval >= 1 && cfg.print_interval >= 1,
           cfg.source << ": save_interval, inference_interval and print_interval must be >= 1");
  FC_CHECK(!cfg.work_dir.empty(), cfg.source << ": work_dir is required for training");
  const ModelArgs& m = cfg.model_args;
  FC_CHECK(m.nhead >= 1 && m.d_model >= 2 && m.d_model % m.nhead == 0,
           cfg.source << ": model_args.d_model (" << m.d_model << ") must be a multiple of nhead (" << m.nhead << ")");
  // A fresh run would overwrite some of an earlier run's checkpoints and leave its later ones,
  // which --reload or eval would then take for this run's.
  const std::string earlier = latest_checkpoint(cfg.work_dir);
  FC_CHECK(cfg.reload || earlier.empty(),
           "work_dir " << cfg.work_dir << " holds checkpoints of an earlier run (latest " << fs::path(earlier).filename().string()
                       << "): --reload resumes it; to start over, remove its epoch_*.ckpt or choose another work_dir");
  try {
    (void)parse_precision(cfg.precision);
  } catch (const Error& e) {
    FC_FAIL(cfg.source << ": " << e.what());
  }
}

std::vector<EpochLog> train_model(const Config& cfg, const ModelSpec& spec, const TrainSplit& train,
                                  const TrainSplit* val) {
  check_split(train, spec, "training split");
  if (val) check_split(*val, spec, "validation split");
  check_training_config(cfg);
  make_folders(cfg.work_dir, "work_dir");
  model::TorchThreads threads(cfg.threads);
  model::reuse_freed_memory();

  PairModel pm = PairModel::create(spec, static_cast<uint64_t>(cfg.seed));  // seeds torch, then initialises
  int start = std::max(0, cfg.start_epoch);
  std::string resume_from;
  std::unique_ptr<model::LoadedCheckpoint> ck;
  if (cfg.reload) {
    resume_from = latest_checkpoint(cfg.work_dir);
    if (resume_from.empty()) {
      log_warn("reload: no checkpoint in " + cfg.work_dir + "; training from scratch");
    } else {
      ck = std::make_unique<model::LoadedCheckpoint>(model::load_checkpoint(resume_from, &spec));
      pm.impl()->net = ck->net;
      start = ck->epoch;
    }
  }
  auto& net = pm.impl()->net;
  const torch::Device dev = model::torch_device(cfg.device);
  net->to(dev);  // before the optimizer is made: it holds the parameters where they are
  torch::optim::Adam opt(net->parameters(),
                         torch::optim::AdamOptions(cfg.learning_rate).weight_decay(cfg.weight_decay));
  if (ck) {
    model::restore_optimizer(*ck, opt, resume_from, dev);
    model::restore_rng(*ck, resume_from);
    log_info("resumed from " + resume_from + " (epoch " + std::to_string(start) + ")");
  }
  if (start >= cfg.epochs) log_warn("nothing to train: already at epoch " + std::to_string(start) + " of " +
                                    std::to_string(cfg.epochs));

  const auto feats = model::feature_tensor(*train.x).to(dev);
  const int64_t n = train.x->rows;
  const int64_t batch = std::min<int64_t>(cfg.batch_size, n);
  const int64_t iters = n / batch;  // drop last
  const Precision precision = parse_precision(cfg.precision);
  log_info("training " + spec.describe() + ", " + std::to_string(pm.parameter_count()) + " parameters, " +
           std::to_string(n) + " anchors, batch " + std::to_string(batch) + ", " + std::to_string(iters) +
           " iterations per epoch" + (cfg.augment_rotation ? ", random rotations" : "") + ", " +
           precision_name(precision) + ", on " + dev.str());
  const std::string log_path = (fs::path(cfg.work_dir) / "train_log.json").string();
  const std::vector<std::string> earlier_log = earlier_log_entries(log_path, start);
  std::vector<EpochLog> logs;
  std::vector<int64_t> order(static_cast<size_t>(n));
  InferenceOptions vo;
  vo.batch_size = cfg.test_batch_size;
  vo.threads = cfg.threads;
  vo.device = cfg.device;
  vo.precision = precision;
  for (int epoch = start; epoch < cfg.epochs; ++epoch) {
    net->train();
    // The order depends only on (seed, epoch), so a resumed run shuffles as the uninterrupted one.
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(static_cast<uint64_t>(cfg.seed) * 1000003ULL + static_cast<uint64_t>(epoch));
    std::shuffle(order.begin(), order.end(), rng);
    const auto t0 = std::chrono::steady_clock::now();
    double loss_sum = 0, window_loss = 0;
    int64_t correct = 0, counted = 0, window_correct = 0, window_pairs = 0;
    for (int64_t it = 0; it < iters; ++it) {
      check_interrupt();
      model::Batch b = model::make_batch(feats, *train.g, order.data() + it * batch, batch, spec.k, train.labels);
      if (cfg.augment_rotation) {
        auto q = std::get<0>(torch::linalg_qr(torch::randn({spec.in_dim, spec.in_dim}))).to(dev);
        b.x = torch::matmul(b.x, q);
      }
      torch::Tensor logits, loss;
      {
        model::AutocastScope autocast(precision, dev);
        logits = net->forward(b.x, b.pad);
        loss = model::pair_loss(logits, b);
      }
      opt.zero_grad();
      loss.backward();
      if (cfg.clip_max_norm > 0) torch::nn::utils::clip_grad_norm_(net->parameters(), cfg.clip_max_norm);
      opt.step();
      {
        const model::PairCounts c = model::count_pairs(logits, b);
        const double l = loss.item<double>() * static_cast<double>(c.pairs);
        loss_sum += l;
        window_loss += l;
        correct += c.correct;
        window_correct += c.correct;
        counted += c.pairs;
        window_pairs += c.pairs;
      }
      if ((it + 1) % cfg.print_interval == 0 || it + 1 == iters) {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double rate = static_cast<double>((it + 1) * batch) / std::max(s, 1e-9);
        const double eta = static_cast<double>((iters - it - 1) * batch) / std::max(rate, 1e-9);
        char line[256];
        std::snprintf(line, sizeof line, "epoch %d/%d iter %lld/%lld: loss %.4f, pair accuracy %.4f, %.0f anchors/s, ETA %.0f s",
                      epoch + 1, cfg.epochs, static_cast<long long>(it + 1), static_cast<long long>(iters),
                      window_loss / std::max<int64_t>(window_pairs, 1),
                      static_cast<double>(window_correct) / std::max<int64_t>(window_pairs, 1), rate, eta);
        log_info(line);
        window_loss = 0;
        window_correct = window_pairs = 0;
      }
    }
    EpochLog log;
    log.epoch = epoch + 1;
    log.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log.anchors_per_second = static_cast<double>(iters * batch) / std::max(log.seconds, 1e-9);
    log.train.pairs = counted;
    log.train.loss = loss_sum / std::max<int64_t>(counted, 1);
    log.train.accuracy = static_cast<double>(correct) / std::max<int64_t>(counted, 1);
    if ((epoch + 1) % cfg.save_interval == 0 || epoch + 1 == cfg.epochs) {
      const std::string path = checkpoint_path(cfg.work_dir, epoch + 1);
      model::CheckpointExtras extras;
      extras.optimizer = &opt;
      extras.config_yaml = config_to_yaml(cfg);
      extras.with_rng = true;
      model::save_checkpoint(path, net, epoch + 1, extras);
      log_info("saved " + path);
    }
    if (val && (epoch + 1) % cfg.inference_interval == 0) {
      // Evaluation must not move the training random stream, or resume would diverge.
      const auto state = at::detail::getDefaultCPUGenerator().get_state();
      pm.impl()->epoch = epoch + 1;
      log.validation = evaluate_pairs(pm, *val->x, *val->g, *val->labels, vo);
      log.validated = true;
      at::Generator gen = at::detail::getDefaultCPUGenerator();
      gen.set_state(state);
    }
    char line[256];
    std::snprintf(line, sizeof line, "epoch %d done in %.1f s: loss %.4f, pair accuracy %.4f", epoch + 1, log.seconds,
                  log.train.loss, log.train.accuracy);
    std::string msg = line;
    if (log.validated) {
      std::snprintf(line, sizeof line, "; validation loss %.4f, pair accuracy %.4f (precision %.4f, recall %.4f)",
                    log.validation.loss, log.validation.accuracy, log.validation.precision, log.validation.recall);
      msg += line;
    }
    log_info(msg);
    logs.push_back(log);
    write_text_file(log_path, format_log(earlier_log, logs));
  }
  return logs;
}

}  // namespace facecluster
