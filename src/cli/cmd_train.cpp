// `facecluster train -c TRAIN.yaml`: the release's training job (main.py) for the learned similarity.
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "facecluster/error.h"
#include "facecluster/io.h"
#include "facecluster/log.h"
#include "facecluster/model.h"
#include "facecluster/pipeline.h"
#include "facecluster/plan.h"
#include "options.h"

namespace facecluster::cli {
namespace fs = std::filesystem;

namespace {

struct Split {
  SplitData data;
  KnnGraph g;
};

Split load_split(const Config& cfg, const DatasetArgs& ds, const std::string& knn_fallback, const std::string& what) {
  FC_CHECK(!ds.label_path.empty(), what << ": label_path is required (pair labels come from identities)");
  const RunPlan plan = resolve_split(cfg, ds, knn_fallback, what);
  if (!plan.knn_cache.empty() && plan.rebuild_knn)
    check_not_an_input(plan.knn_cache, {{"features", plan.features}, {"labels", plan.labels}});
  Split s;
  s.data = read_split(plan);
  s.g = knn_graph_for(plan, s.data.x);
  return s;
}

}  // namespace

std::function<void()> add_train(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "train the learned pair similarity (the release's main.py) from a YAML config");
  struct Args {
    std::string config;
    std::vector<std::string> sets;
    bool reload = false;
    std::optional<std::string> device, precision;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("-c,--config", a->config, "training config (release format: dataset_args, model_args, epochs, ...)")->required();
  cmd->add_option("--set", a->sets, "override any config key: --set epochs=2");
  cmd->add_flag("--reload", a->reload, "resume from the latest checkpoint in work_dir (the config's reload: True)");
  cmd->add_option("--device", a->device, "where to train: cpu, cuda, cuda:N or auto (default: the config's device, auto)");
  cmd->add_option("--precision", a->precision, "the forward pass: fp32 or bf16 autocast (default: the config's precision, fp32)");
  return [a] {
    Config cfg = load_config(a->config);
    apply_config_sets(cfg, a->sets);
    if (a->reload) cfg.reload = true;
    if (a->device) cfg.device = *a->device;
    if (a->precision) cfg.precision = precision_name(parse_precision(*a->precision));  // a bad flag is named as a flag
    cfg.device = resolve_device(cfg.device);  // a GPU asked of a machine without one is refused before any work
    if (global_threads()) cfg.threads = static_cast<int>(*global_threads());
    require_keys(cfg, {"dataset_args.feature_path", "dataset_args.label_path", "work_dir"}, "train");
    check_training_config(cfg);  // before the kNN caches are built
    if (const auto unused = unused_config_keys(cfg, Job::Train); !unused.empty())
      log_warn(no_effect_warning(a->config, Job::Train, unused));
    Split train = load_split(cfg, cfg.dataset_args, cfg.train_knn_path, a->config + ": dataset_args");
    std::unique_ptr<Split> val;
    const DatasetArgs& vd = cfg.test_dataset_args;
    if (!vd.feature_path.empty() && !vd.label_path.empty()) {
      std::error_code ec;
      if (fs::equivalent(vd.feature_path, cfg.dataset_args.feature_path, ec)) {
        log_warn("test_dataset_args is the training split; validation skipped (it must run on other rows)");
      } else {
        val = std::make_unique<Split>(load_split(cfg, vd, cfg.test_knn_path, a->config + ": test_dataset_args"));
      }
    }
    const ModelSpec spec = ModelSpec::from_config(cfg.model_args, train.data.x.cols);
    TrainSplit ts{&train.data.x, &train.g, &train.data.labels};
    TrainSplit vs{val ? &val->data.x : nullptr, val ? &val->g : nullptr, val ? &val->data.labels : nullptr};
    const auto logs = train_model(cfg, spec, ts, val ? &vs : nullptr);
    const std::string last = latest_checkpoint(cfg.work_dir);
    FC_CHECK(!last.empty(), "training wrote no checkpoint to " << cfg.work_dir);
    const std::string model_file = (fs::path(cfg.work_dir) / "model.fcmodel").string();
    PairModel::load(last).save_weights(model_file);
    std::printf("epoch  seconds  anchors/s  loss    pair-acc%s\n", val ? "  val-loss  val-acc  val-prec  val-rec" : "");
    for (const auto& l : logs) {
      std::printf("%5d  %7.1f  %9.0f  %.4f  %.4f", l.epoch, l.seconds, l.anchors_per_second, l.train.loss, l.train.accuracy);
      if (l.validated)
        std::printf("    %.4f    %.4f   %.4f    %.4f", l.validation.loss, l.validation.accuracy, l.validation.precision,
                    l.validation.recall);
      std::printf("\n");
    }
    std::printf("checkpoint %s\nmodel file %s (weights only: facecluster cluster --model %s)\n", last.c_str(),
                model_file.c_str(), model_file.c_str());
  };
}

std::function<void()> add_export(CLI::App& app) {
  auto* cmd = app.add_subcommand("export-model", "write the weights of a training checkpoint as a model file (no optimizer state)");
  struct Args {
    std::string checkpoint, out;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("checkpoint", a->checkpoint, "training checkpoint (work_dir/epoch_<E>.ckpt)")->required();
  cmd->add_option("out", a->out, "model file to write")->required();
  return [a] {
    check_parent_dir(a->out);
    check_not_an_input(a->out, {{"checkpoint", a->checkpoint}});
    PairModel m = PairModel::load(a->checkpoint);
    m.save_weights(a->out);
    std::printf("wrote %s (%s, %lld parameters, %d epoch(s))\n", a->out.c_str(), m.spec().describe().c_str(),
                static_cast<long long>(m.parameter_count()), m.epoch());
  };
}

std::function<void()> add_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "cluster a split with a trained model (the release's eval.py) from a YAML config");
  auto f = std::make_shared<ClusterFlags>();
  PlanRequest& r = f->req;
  cmd->add_option("-c,--config", r.config, "evaluation config (test_dataset_args, eval_epoch, density_args, cluster_args)")->required();
  cmd->add_option("--model", r.model, "model file or checkpoint (default: work_dir/epoch_<eval_epoch>.ckpt)");
  cmd->add_option("-o,--out", r.out_dir, "results folder (default: work_dir/results)");
  add_cluster_flags(cmd, *f);
  return [f] {
    finish_cluster_flags(*f);
    const RunPlan plan = resolve_plan(Job::Eval, f->req);
    for (const auto& w : plan.warnings) log_warn(w);
    const ClusterReport rep = run_plan(plan);
    std::printf("%s\nresults written to %s (report.html to look at)\n", render_text(rep).c_str(), plan.out_dir.c_str());
  };
}

}  // namespace facecluster::cli
