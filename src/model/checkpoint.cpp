#include "checkpoint.h"

#include <fstream>
#include <cstdio>
#include <filesystem>
#include <regex>

#include "facecluster/error.h"
#include "facecluster/io.h"

namespace facecluster {
namespace fs = std::filesystem;

namespace model {
namespace {

constexpr const char* kFormat = "facecluster-pair-model";
constexpr int64_t kVersion = 1;

void write_spec(torch::serialize::OutputArchive& a, const ModelSpec& s) {
  a.write("spec.in_dim", c10::IValue(s.in_dim));
  a.write("spec.d_model", c10::IValue(static_cast<int64_t>(s.d_model)));
  a.write("spec.nhead", c10::IValue(static_cast<int64_t>(s.nhead)));
  a.write("spec.dim_feedforward", c10::IValue(static_cast<int64_t>(s.dim_feedforward)));
  a.write("spec.num_layers", c10::IValue(static_cast<int64_t>(s.num_layers)));
  a.write("spec.k", c10::IValue(static_cast<int64_t>(s.k)));
  a.write("spec.dropout", c10::IValue(s.dropout));
  a.write("spec.activation", c10::IValue(s.activation));
  a.write("spec.normalize_before", c10::IValue(s.normalize_before));
}

c10::IValue read_value(torch::serialize::InputArchive& a, const std::string& key, const std::string& path) {
  c10::IValue v;
  FC_CHECK(a.try_read(key, v), "checkpoint " << path << " lacks '" << key << "': not a facecluster model file");
  return v;
}

ModelSpec read_spec(torch::serialize::InputArchive& a, const std::string& path) {
  ModelSpec s;
  s.in_dim = read_value(a, "spec.in_dim", path).toInt();
  s.d_model = static_cast<int>(read_value(a, "spec.d_model", path).toInt());
  s.nhead = static_cast<int>(read_value(a, "spec.nhead", path).toInt());
  s.dim_feedforward = static_cast<int>(read_value(a, "spec.dim_feedforward", path).toInt());
  s.num_layers = static_cast<int>(read_value(a, "spec.num_layers", path).toInt());
  s.k = static_cast<int>(read_value(a, "spec.k", path).toInt());
  s.dropout = read_value(a, "spec.dropout", path).toDouble();
  s.activation = read_value(a, "spec.activation", path).toStringRef();
  s.normalize_before = read_value(a, "spec.normalize_before", path).toBool();
  return s;
}

// The first non-empty line of a libtorch message, quoted: its messages span many lines.
std::string first_line(const std::string& what) {
  const size_t a = what.find_first_not_of(" \n");
  if (a == std::string::npos) return "(no message)";
  return quote_input(what.substr(a, what.find('\n', a) - a), 160);
}

// A spec read from a file is checked before any tensor is sized by it.
void check_spec(const ModelSpec& s, const std::string& path) {
  FC_CHECK(s.in_dim >= 1 && s.in_dim <= 65536 && s.d_model >= 1 && s.d_model <= 16384 && s.nhead >= 1 &&
               s.nhead <= 256 && s.d_model % s.nhead == 0 && s.dim_feedforward >= 1 && s.dim_feedforward <= 65536 &&
               s.num_layers >= 1 && s.num_layers <= 64 && s.k >= 1 && s.k <= 100000 && s.dropout >= 0 &&
               s.dropout < 1 && (s.activation == "relu" || s.activation == "gelu"),
           "model file " << path << " states an implausible architecture (" << s.describe() << "): corrupt?");
}

bool same_shapes(const ModelSpec& a, const ModelSpec& b) {
  return a.in_dim == b.in_dim && a.d_model == b.d_model && a.nhead == b.nhead && a.dim_feedforward == b.dim_feedforward &&
         a.num_layers == b.num_layers && a.k == b.k && a.activation == b.activation &&
         a.normalize_before == b.normalize_before;
}

}  // namespace

void save_checkpoint(const std::string& path, PairNet net, int epoch, const CheckpointExtras& extras) {
  torch::serialize::OutputArchive a;
  a.write("format", c10::IValue(std::string(kFormat)));
  a.write("version", c10::IValue(kVersion));
  write_spec(a, net->spec);
  a.write("epoch", c10::IValue(static_cast<int64_t>(epoch)));
  a.write("config", c10::IValue(extras.config_yaml));
  torch::serialize::OutputArchive m;
  // Weights are written from the CPU, so a file from a GPU run loads in a CPU-only build. The
  // parameters move in place (the optimizer keeps its references) and move back after.
  const torch::Device at = net->parameters().empty() ? torch::Device(torch::kCPU) : net->parameters().front().device();
  if (!at.is_cpu()) net->to(torch::kCPU);
  net->save(m);
  if (!at.is_cpu()) net->to(at);
  a.write("model", m);
  if (extras.optimizer) {
    torch::serialize::OutputArchive o;
    extras.optimizer->save(o);
    a.write("optimizer", o);
  }
  if (extras.with_rng) a.write("rng", at::detail::getDefaultCPUGenerator().get_state(), /*is_buffer=*/true);
  // Through a stream, not the temporary's name: libtorch names the archive's root folder after
  // the file it writes, and a name with the process id in it would make two runs' files differ.
  write_atomically(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary);
    FC_CHECK(out, "cannot open " << tmp << " for writing");
    try {
      a.save_to(out);
    } catch (const c10::Error& e) {
      FC_FAIL("cannot write checkpoint " << path << ": " << e.what_without_backtrace());
    }
    out.close();
    FC_CHECK(out, "cannot write checkpoint " << path << " (disk full or file too large?)");
  });
}

LoadedCheckpoint load_checkpoint(const std::string& path, const ModelSpec* expected) {
  FC_CHECK(fs::is_regular_file(path), "model file " << path << " does not exist");
  check_zip_archive(path, "model file");
  LoadedCheckpoint ck;
  try {
    ck.archive.load_from(path, torch::Device(torch::kCPU));  // CUDA tensors (a GPU run's optimizer) land on the CPU
  } catch (const c10::Error& e) {
    FC_FAIL("model file " << path << " is not a readable facecluster checkpoint (truncated or another format): "
                          << first_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {  // libtorch's TorchScript reader throws its own types too
    FC_FAIL("model file " << path << " is not a readable facecluster checkpoint (corrupt): " << first_line(e.what()));
  }
  c10::IValue format;
  ModelSpec spec;
  try {
    FC_CHECK(ck.archive.try_read("format", format) && format.isString() && format.toStringRef() == kFormat,
             "model file " << path << " is not a facecluster pair-similarity model");
    const int64_t version = read_value(ck.archive, "version", path).toInt();
    FC_CHECK(version == kVersion, "model file " << path << " has format version " << version << "; this build reads "
                                                  << kVersion);
    spec = read_spec(ck.archive, path);
    ck.epoch = static_cast<int>(read_value(ck.archive, "epoch", path).toInt());
    ck.config_yaml = read_value(ck.archive, "config", path).toStringRef();
  } catch (const c10::Error& e) {
    FC_FAIL("model file " << path << " is corrupt (a value of the wrong type): " << first_line(e.what_without_backtrace()));
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    FC_FAIL("model file " << path << " is corrupt: " << first_line(e.what()));
  }
  check_spec(spec, path);
  if (expected)
    FC_CHECK(same_shapes(spec, *expected), "model file " << path << " holds a model for (" << spec.describe()
                                                         << ") but (" << expected->describe()
                                                         << ") is needed: train one for these features or fix the config");
  ck.net = PairNet(spec);
  try {
    torch::serialize::InputArchive m;
    ck.archive.read("model", m);
    ck.net->load(m);
  } catch (const c10::Error& e) {
    FC_FAIL("model file " << path << ": weights do not match the stated architecture (" << spec.describe()
                          << "): " << first_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    FC_FAIL("model file " << path << " is corrupt: " << first_line(e.what()));
  }
  torch::serialize::InputArchive probe;
  ck.has_optimizer = ck.archive.try_read("optimizer", probe);
  return ck;
}

void restore_optimizer(LoadedCheckpoint& ck, torch::optim::Optimizer& opt, const std::string& path, torch::Device device) {
  torch::serialize::InputArchive o;
  FC_CHECK(ck.archive.try_read("optimizer", o), "checkpoint " << path
                                                    << " holds weights only (no optimizer state): it cannot be resumed");
  try {
    opt.load(o);
  } catch (const c10::Error& e) {
    FC_FAIL("checkpoint " << path << ": optimizer state does not load: " << std::string(e.what_without_backtrace()).substr(0, 200));
  }
  if (device.is_cpu()) return;
  for (auto& entry : opt.state()) {  // Adam's moments go where the parameters are
    auto* adam = dynamic_cast<torch::optim::AdamParamState*>(entry.second.get());
    FC_CHECK(adam, "checkpoint " << path << ": optimizer state of another kind than Adam cannot move to " << device.str());
    adam->exp_avg(adam->exp_avg().to(device));
    adam->exp_avg_sq(adam->exp_avg_sq().to(device));
    if (adam->max_exp_avg_sq().defined()) adam->max_exp_avg_sq(adam->max_exp_avg_sq().to(device));
  }
}

void restore_rng(LoadedCheckpoint& ck, const std::string& path) {
  torch::Tensor state;
  FC_CHECK(ck.archive.try_read("rng", state, /*is_buffer=*/true), "checkpoint " << path << " lacks the random state");
  at::Generator gen = at::detail::getDefaultCPUGenerator();  // shares the global generator
  gen.set_state(state);
}

}  // namespace model

// ---- PairModel -------------------------------------------------------------------------------

PairModel::PairModel() = default;
PairModel::~PairModel() { delete impl_; }
PairModel::PairModel(PairModel&& o) noexcept : impl_(o.impl_) { o.impl_ = nullptr; }
PairModel& PairModel::operator=(PairModel&& o) noexcept {
  std::swap(impl_, o.impl_);
  return *this;
}

PairModel PairModel::create(const ModelSpec& spec, uint64_t seed) {
  torch::manual_seed(seed);
  PairModel m;
  m.impl_ = new Impl;
  m.impl_->net = model::PairNet(spec);
  return m;
}

PairModel PairModel::load(const std::string& path, const ModelSpec* expected) {
  auto ck = model::load_checkpoint(path, expected);
  PairModel m;
  m.impl_ = new Impl;
  m.impl_->net = ck.net;
  m.impl_->epoch = ck.epoch;
  return m;
}

void PairModel::save_weights(const std::string& path) const {
  FC_CHECK(impl_, "save_weights on an empty model");
  model::save_checkpoint(path, impl_->net, impl_->epoch, {});
}

const ModelSpec& PairModel::spec() const {
  FC_CHECK(impl_, "empty model");
  return impl_->net->spec;
}

int64_t PairModel::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : impl_->net->parameters()) n += p.numel();
  return n;
}

int PairModel::epoch() const { return impl_ ? impl_->epoch : 0; }

std::string checkpoint_path(const std::string& work_dir, int epoch) {
  return (fs::path(work_dir) / ("epoch_" + std::to_string(epoch) + ".ckpt")).string();
}

std::string latest_checkpoint(const std::string& work_dir) {
  if (!fs::is_directory(work_dir)) return "";
  static const std::regex re("epoch_([0-9]+)\\.ckpt");
  int best = -1;
  std::string path;
  for (const auto& e : fs::directory_iterator(work_dir)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (std::regex_match(name, m, re) && std::stoi(m[1]) > best) {
      best = std::stoi(m[1]);
      path = e.path().string();
    }
  }
  return path;
}

std::string default_model_path() {
  std::vector<fs::path> tried;
#ifdef FC_INSTALL_MODEL_DIR
  tried.emplace_back(fs::path(FC_INSTALL_MODEL_DIR) / "default.fcmodel");
#endif
#ifdef FC_SOURCE_MODEL_DIR
  tried.emplace_back(fs::path(FC_SOURCE_MODEL_DIR) / "default.fcmodel");
#endif
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) tried.push_back(exe.parent_path().parent_path() / "share" / "facecluster" / "models" / "default.fcmodel");
  std::string list;
  for (const auto& p : tried) {
    if (fs::is_regular_file(p)) return p.string();
    list += (list.empty() ? "" : ", ") + p.string();
  }
  FC_FAIL("the default model was not found (tried " << list << "); pass --model PATH");
}

}  // namespace facecluster
