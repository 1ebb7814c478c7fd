#include <cstdio>

#include "commands.h"
#include "facecluster/io.h"
#include "facecluster/log.h"
#include "facecluster/synth.h"

namespace facecluster::cli {

std::function<void()> add_synth(CLI::App& app) {
  auto* cmd = app.add_subcommand("synth", "generate synthetic face embeddings with identity labels (PREFIX.bin + PREFIX.meta)");
  auto opt = std::make_shared<SynthOptions>();
  auto out = std::make_shared<std::string>();
  auto stats = std::make_shared<bool>(false);
  cmd->add_option("-o,--out", *out, "output prefix: writes PREFIX.bin and PREFIX.meta")->required();
  cmd->add_option("-n,--n", opt->n, "number of faces")->capture_default_str();
  cmd->add_option("-d,--dim", opt->dim, "embedding dimension")->capture_default_str();
  cmd->add_option("--ids", opt->identities, "number of identities (0: n / 68)")->capture_default_str();
  cmd->add_option("--seed", opt->seed, "random seed")->capture_default_str();
  cmd->add_option("--single-share", opt->single_share, "share of identities with exactly one face")->capture_default_str();
  cmd->add_option("--small-share", opt->small_share, "share of identities with 1-5 faces")->capture_default_str();
  cmd->add_option("--size-sigma", opt->size_sigma, "log-normal spread of identity sizes")->capture_default_str();
  cmd->add_option("--max-size", opt->max_size, "largest identity")->capture_default_str();
  cmd->add_option("--cos-min", opt->cos_min, "lowest within-identity mean cosine")->capture_default_str();
  cmd->add_option("--cos-max", opt->cos_max, "highest within-identity mean cosine")->capture_default_str();
  cmd->add_option("--two-mode-share", opt->two_mode_share, "share of identities with two modes")->capture_default_str();
  cmd->add_option("--mode-cos", opt->mode_cos, "cosine between a two-mode identity's mode centres")->capture_default_str();
  cmd->add_option("--quality-sigma", opt->quality_sigma, "per-face spread of the noise level")->capture_default_str();
  cmd->add_option("--near-dup-share", opt->near_dup_share, "share of identities placed near another")->capture_default_str();
  cmd->add_option("--centre-dim", opt->centre_dim,
                  "the identity centres spread like random directions in this many dimensions (small: crowded, "
                  "many look-alikes); 0: all of dim")
      ->capture_default_str();
  cmd->add_option("--mislabel-share", opt->mislabel_share, "share of faces with a wrong label")->capture_default_str();
  cmd->add_option("--cos-map", opt->cos_map, "cosine mapping: none, offset:A, noise:S (chain with ',')")->capture_default_str();
  cmd->add_flag("--stats", *stats, "print the measured statistics of what was generated");
  return [=] {
    check_parent_dir(*out + ".bin");
    SynthData data;
    {
      StageTimer t("synth " + std::to_string(opt->n) + " x " + std::to_string(opt->dim));
      data = make_synthetic(*opt);
    }
    {
      StageTimer t("write " + *out + ".bin/.meta");
      write_features_bin(*out + ".bin", data.features);
      write_labels(*out + ".meta", data.labels);
    }
    std::printf("wrote %s.bin (%lld x %lld float32) and %s.meta\n", out->c_str(), (long long)data.features.rows,
                (long long)data.features.cols, out->c_str());
    if (*stats) std::printf("%s", format_synth_stats(measure_synthetic(data.features, data.labels)).c_str());
  };
}

}  // namespace facecluster::cli
