#include <cstdio>

#include "commands.h"
#include "facecluster/error.h"
#include "facecluster/io.h"
#include "facecluster/log.h"
#include "facecluster/metrics.h"

namespace facecluster::cli {

std::function<void()> add_evaluate(CLI::App& app) {
  auto* cmd = app.add_subcommand("evaluate", "score predicted labels against true labels (pairwise, BCubed, NMI, ARI, hard-cluster bins)");
  struct Args {
    std::string pred, gt, features;
    int64_t dim = 0;
    int bins = 5;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--pred", a->pred, "predicted labels (.meta)")->required();
  cmd->add_option("--gt", a->gt, "true labels (.meta)")->required();
  cmd->add_option("--features", a->features, "features (.bin/.npy), for the sparsity bins");
  cmd->add_option("--dim", a->dim, "feature dimension of a .bin file");
  cmd->add_option("--bins", a->bins, "number of hard-cluster bins")->capture_default_str();
  cmd->add_flag("--json", a->json, "print JSON instead of tables");
  return [a] {
    FC_CHECK(a->bins >= 1 && a->bins <= 1000, "--bins must be in [1, 1000], got " << a->bins);
    const Labels pred = read_labels(a->pred), gt = read_labels(a->gt);
    FC_CHECK(pred.size() == gt.size(), "predicted labels " << a->pred << " have " << pred.size() << " rows but true labels "
                                                           << a->gt << " have " << gt.size());
    StageTimer t("evaluate");
    const Scores s = evaluate(pred, gt);
    const auto by_size = evaluate_by_size(pred, gt, a->bins);
    std::vector<BinScores> by_sparsity;
    if (!a->features.empty()) {
      Matrix x = read_features(a->features, a->dim);
      FC_CHECK(x.rows == static_cast<int64_t>(gt.size()),
               "features " << a->features << " have " << x.rows << " rows but labels " << a->gt << " have " << gt.size());
      normalize_rows(x, a->features);
      by_sparsity = evaluate_by_sparsity(pred, gt, x, a->bins);
    }
    t.stop();
    if (a->json) {
      std::printf("%s", evaluation_to_json(s, by_size, by_sparsity).c_str());
    } else {
      std::printf("%s\n%s", format_scores_table(s).c_str(), format_bins_table(by_size).c_str());
      if (!by_sparsity.empty()) std::printf("\n%s", format_bins_table(by_sparsity).c_str());
    }
  };
}

}  // namespace facecluster::cli
