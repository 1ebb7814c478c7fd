// `facecluster add`: faces added to a clustering kept by `cluster --save-state` (incremental.h).
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "facecluster/error.h"
#include "facecluster/incremental.h"
#include "facecluster/io.h"
#include "facecluster/log.h"

namespace facecluster::cli {

std::function<void()> add_add(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "add", "add faces to a clustering kept by `cluster --save-state`: new faces join clusters or start new ones, cluster "
             "ids survive, merges and splits are listed (docs/incremental.md)");
  struct Args {
    std::string state, features, labels, out;
    std::optional<int64_t> dim;
    bool recalibrate = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--state", a->state, "state folder (written by `cluster --save-state`; replaced by the grown state)")->required();
  cmd->add_option("-f,--features", a->features, "the new faces (.bin, or .npy)")->required();
  cmd->add_option("-d,--dim", a->dim, "feature dimension of a .bin file (default: the state's)");
  cmd->add_option("-l,--labels", a->labels, "true labels of the new faces (.meta): scored with the earlier faces' labels");
  cmd->add_flag("--recalibrate", a->recalibrate,
                "fit the calibration (and the automatic tau) again on all faces now; by default that happens once the "
                "faces have grown by a tenth since it was fitted");
  cmd->add_option("-o,--out", a->out, "results folder: every face so far (pred_labels.meta: the first run's faces, then each batch's)");
  return [a] {
    const StateLock lock(a->state);
    std::vector<NamedPath> inputs = {{"features", a->features}, {"labels", a->labels}};
    if (!a->out.empty()) {
      make_folders(a->out, "results folder (-o)");
      for (const auto& name : result_file_names()) check_not_an_input(a->out + "/" + name, inputs);
    }
    ClusterState s = load_state(a->state);
    Matrix x;
    {
      StageTimer t("read " + a->features);
      // A .npy file says its own shape; a .bin file is read at the state's dimension unless -d says otherwise.
      const bool npy = std::filesystem::path(a->features).extension() == ".npy";
      x = read_features(a->features, a->dim.value_or(npy ? 0 : s.dim));
    }
    Labels truth;
    if (!a->labels.empty()) {
      truth = read_labels(a->labels);
      FC_CHECK(static_cast<int64_t>(truth.size()) == x.rows, "labels " << a->labels << " have " << truth.size()
                                                                       << " rows but features " << a->features << " have "
                                                                       << x.rows);
    }
    const ClusterReport r = add_faces(s, std::move(x), a->labels.empty() ? nullptr : &truth, a->features, a->recalibrate);
    if (!a->out.empty()) {
      StageTimer t("write results to " + a->out);
      write_results(a->out, r);
    }
    save_state(a->state, s, false);
    std::printf("%s", render_text(r).c_str());
    if (!a->out.empty()) std::printf("\nresults written to %s (report.html to look at)\n", a->out.c_str());
    std::printf("state %s now holds %lld faces\n", a->state.c_str(), static_cast<long long>(s.faces()));
  };
}

}  // namespace facecluster::cli
