#include "facecluster/pipeline.h"

#include <cstdio>
#include <filesystem>
#include <sstream>

#include "facecluster/calibrate.h"
#include "facecluster/error.h"
#include "facecluster/io.h"
#include "facecluster/log.h"

namespace facecluster {
namespace fs = std::filesystem;

ClusterResult cluster_graph(const KnnGraph& g, const GraphParams& params, const std::vector<double>& taus,
                            const Labels* gt, const std::string& select_by, const std::string& calibrate) {
  for (double t : taus) FC_CHECK(t > 0 && t <= 1, "tau must be in (0, 1], got " << t);
  FC_CHECK(select_by == "pairwise" || select_by == "bcubed",
           "select_by must be pairwise or bcubed, got '" << select_by << "'");
  FC_CHECK(!gt || static_cast<int64_t>(gt->size()) == g.n,
           "labels have " << (gt ? gt->size() : 0) << " rows but the graph has " << g.n);
  {
    StageTimer t("validate graph");
    validate_graph(g, "kNN graph");
  }
  ClusterResult r;
  std::vector<double> tau_list = taus;  // empty: stable_tau() with "auto", the release default with "off"
  const KnnGraph* work = &g;
  KnnGraph calibrated;
  r.params = params;
  if (calibrate == "auto") {
    StageTimer t("calibrate");
    Calibration cal = calibrate_graph(g, params);
    calibrated = apply_calibration(g, cal);
    work = &calibrated;
    r.params = cal.params;
    r.notes = cal.notes;
    for (const auto& line : r.notes) log_info("  auto: " + line);
  } else {
    FC_CHECK(calibrate == "off" || calibrate.empty(), "calibrate must be auto or off, got '" << calibrate << "'");
    if (tau_list.empty()) tau_list = tau_values(ClusterArgs{});
  }
  GraphResult gr = run_graph_stage(*work, r.params);
  r.density = std::move(gr.density);
  r.links = std::move(gr.links);
  if (calibrate == "auto" && taus.empty()) {
    std::string note;
    tau_list = {stable_tau(r.links, &note)};
    r.notes.push_back(note);
    log_info("  auto: " + note);
  }
  StageTimer t("link + score " + std::to_string(tau_list.size()) + " tau value(s)");
  double best = -1;
  for (size_t i = 0; i < tau_list.size(); ++i) {
    SweepEntry e;
    e.tau = tau_list[i];
    Labels labels = link_components(r.links, e.tau);
    e.clusters = labels.empty() ? 0 : *std::max_element(labels.begin(), labels.end()) + 1;
    if (gt) {
      e.scores = evaluate(labels, *gt);
      e.scored = true;
      const double f = select_by == "bcubed" ? e.scores.bcubed_f : e.scores.pairwise_f;
      if (f > best) {
        best = f;
        r.chosen = i;
        r.labels = labels;
      }
    } else if (i == 0) {
      r.labels = labels;
    }
    r.sweep.push_back(e);
  }
  return r;
}

KnnGraph knn_for_dataset(const Matrix& x, const DatasetArgs& a, const KnnOptions& base, bool reload) {
  KnnOptions o = base;
  o.k = a.model_topk;
  if (!a.knn_index.empty()) o.index = a.knn_index;
  if (!a.knn_path.empty() && fs::exists(a.knn_path) && !reload && !a.is_reload) {
    StageTimer t("load kNN cache " + a.knn_path);
    KnnGraph g = read_knn_npz(a.knn_path, x.rows);
    FC_CHECK(g.k >= std::min<int64_t>(o.k, x.rows), "kNN cache " << a.knn_path << " has k = " << g.k << " but "
                                                                  << o.k << " neighbours are configured (rebuild with --reload)");
    if (g.k > o.k) {  // keep the first k columns
      KnnGraph cut(g.n, o.k);
      for (int64_t i = 0; i < g.n; ++i) {
        std::copy(g.nbr_row(i), g.nbr_row(i) + o.k, cut.nbr_row(i));
        std::copy(g.dist_row(i), g.dist_row(i) + o.k, cut.dist_row(i));
      }
      return cut;
    }
    return g;
  }
  KnnGraph g = build_knn(x, o);
  if (!a.knn_path.empty()) {
    const fs::path parent = fs::path(a.knn_path).parent_path();
    if (!parent.empty()) fs::create_directories(parent);
    StageTimer t("write kNN cache " + a.knn_path);
    write_knn_npz(a.knn_path, g);
  }
  return g;
}

std::string format_sweep_table(const ClusterResult& r) {
  std::ostringstream out;
  char buf[256];
  out << "tau sweep (" << r.sweep.size() << " value" << (r.sweep.size() == 1 ? "" : "s") << ")\n";
  std::snprintf(buf, sizeof buf, "  %-8s %10s %8s %8s %8s %8s\n", "tau", "clusters", "F_P", "F_B", "NMI", "");
  out << buf;
  for (size_t i = 0; i < r.sweep.size(); ++i) {
    const auto& e = r.sweep[i];
    if (e.scored)
      std::snprintf(buf, sizeof buf, "  %-8.4f %10lld %8.4f %8.4f %8.4f %8s\n", e.tau, (long long)e.clusters,
                    e.scores.pairwise_f, e.scores.bcubed_f, e.scores.nmi, i == r.chosen ? "<- best" : "");
    else
      std::snprintf(buf, sizeof buf, "  %-8.4f %10lld %8s %8s %8s %8s\n", e.tau, (long long)e.clusters, "-", "-", "-",
                    i == r.chosen ? "<- used" : "");
    out << buf;
  }
  return out.str();
}

std::string cluster_result_json(const ClusterResult& r) {
  std::ostringstream out;
  const auto& p = r.params;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "{\"params\": {\"density_type\": \"%s\", \"ndde_k\": %d, \"ndde_sigma\": %.6g, \"tpdi\": %s, "
                "\"tpdi_sigma\": %.6g, \"max_conn\": %d}",
                p.density.c_str(), p.ndde_k, p.ndde_sigma, p.use_tpdi ? "true" : "false", p.tpdi_sigma, p.max_conn);
  out << buf << ", \"notes\": [";
  for (size_t i = 0; i < r.notes.size(); ++i) {
    std::string s = r.notes[i];
    std::string esc;
    for (char ch : s) {
      if (ch == '"' || ch == '\\') esc.push_back('\\');
      esc.push_back(ch);
    }
    out << (i ? ", " : "") << "\"" << esc << "\"";
  }
  out << "], \"chosen_tau\": " << (r.sweep.empty() ? 0.0 : r.sweep[r.chosen].tau) << ", \"sweep\": [";
  for (size_t i = 0; i < r.sweep.size(); ++i) {
    const auto& e = r.sweep[i];
    out << (i ? ", " : "") << "{\"tau\": " << e.tau << ", \"clusters\": " << e.clusters;
    if (e.scored) out << ", \"scores\": " << scores_to_json(e.scores);
    out << "}";
  }
  out << "]";
  if (!r.size_bins.empty()) out << ", \"size_bins\": " << bins_to_json(r.size_bins);
  if (!r.sparsity_bins.empty()) out << ", \"sparsity_bins\": " << bins_to_json(r.sparsity_bins);
  out << "}\n";
  return out.str();
}

void write_cluster_results(const std::string& dir, const ClusterResult& r) {
  FC_CHECK(!dir.empty(), "output folder is empty");
  const fs::path d(dir);
  if (!fs::exists(d)) {
    const fs::path parent = d.parent_path().empty() ? fs::path(".") : d.parent_path();
    FC_CHECK(fs::is_directory(parent), "cannot create output folder " << dir << ": " << parent.string() << " does not exist");
    fs::create_directory(d);
  }
  FC_CHECK(fs::is_directory(d), "output path " << dir << " exists and is not a folder");
  write_labels((d / "pred_labels.meta").string(), r.labels);
  std::string dens;
  dens.reserve(r.density.size() * 12);
  char buf[64];
  for (double v : r.density) {
    std::snprintf(buf, sizeof buf, "%.8g\n", v);
    dens += buf;
  }
  write_text_file((d / "density.txt").string(), dens);
  write_text_file((d / "scores.json").string(), cluster_result_json(r));
  std::string text = format_sweep_table(r);
  for (const auto& line : r.notes) text = "auto: " + line + "\n" + text;
  if (!r.sweep.empty() && r.sweep[r.chosen].scored) text += "\nscores at tau " + std::to_string(r.sweep[r.chosen].tau) + "\n" + format_scores_table(r.sweep[r.chosen].scores);
  if (!r.size_bins.empty()) text += "\n" + format_bins_table(r.size_bins);
  if (!r.sparsity_bins.empty()) text += "\n" + format_bins_table(r.sparsity_bins);
  write_text_file((d / "scores.txt").string(), text);
}

}  // namespace facecluster
