// One result of a clustering run, rendered four ways: the terminal text (also scores.txt), JSON
// (scores.json, and the Python dict: same keys, same nesting), and report.html, one
// self-contained page with inline SVG charts for a person who would rather look than read.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "facecluster/calibrate.h"
#include "facecluster/duplicates.h"
#include "facecluster/graph.h"
#include "facecluster/metrics.h"
#include "facecluster/types.h"

namespace facecluster {

struct SweepEntry {
  double tau = 0;
  int64_t clusters = 0;
  bool scored = false;
  Scores scores;
};

// What the report draws from the links, additive over any split of the rows (a distributed run
// sums the processes' own): links with a parent by distance, in equal bins over [0, 1], and for
// tau = 0.01, 0.02, ..., 1.00 the links with distance below tau.
struct LinkSummary {
  std::vector<int64_t> histogram, below;
};
LinkSummary summarize_links(const Links& links);

// A cluster of an earlier clustering that adding faces changed (incremental.h). Merged: the
// earlier clusters `others` are now all in cluster `id` (their ids are gone). Split: the faces
// of earlier cluster `id` are now in the clusters `others` (ascending; `id` among them when it
// kept its id).
struct ClusterChange {
  enum class Kind { Merged, Split };
  Kind kind = Kind::Merged;
  int64_t id = 0;
  std::vector<int64_t> others;
};
// "clusters 40 and 41 merged into 12", "cluster 7 split into 7 and 3051".
std::string describe_change(const ClusterChange& c);

struct ClusterReport {
  std::vector<std::pair<std::string, std::string>> plan;  // describe_plan()
  std::vector<std::string> warnings;  // config keys without effect, and the like
  std::vector<std::string> decisions; // one line per automatic choice, in a user's words (the terminal)
  std::vector<std::string> notes;     // the evidence behind them in full (scores.json, report.html)
  GraphParams params;                 // what the graph stage ran with (after calibration)
  std::vector<SweepEntry> sweep;
  size_t chosen = 0;                  // index into sweep of the labels returned
  Labels labels;
  std::vector<double> density;
  Links links;                        // every row's (one process); empty after a distributed run
  LinkSummary link_summary;
  bool scored = false;                // true labels were given
  std::vector<int64_t> true_sizes;    // sizes of the true identities (scored runs)
  std::vector<BinScores> size_bins, sparsity_bins;
  KnnGraph graph;                     // the graph that was linked (learned distances with a model); not rendered
  // What adding faces later needs (incremental.h); not rendered.
  DuplicateGroups copies;             // empty when every face is distinct
  std::optional<DistanceMap> calibration;  // when the distances were calibrated
  // After adding faces: the earlier clusters the addition merged or split (rendered).
  std::vector<ClusterChange> changes;

  double chosen_tau() const { return sweep.empty() ? 0.0 : sweep[chosen].tau; }
};

std::string render_text(const ClusterReport& r);
std::string render_json(const ClusterReport& r);
std::string render_html(const ClusterReport& r);

// The files of a results folder: pred_labels.meta, density.txt, scores.json, scores.txt, report.html.
const std::vector<std::string>& result_file_names();

// Writes the results files into `dir` (created, with its parents when create_parents) as one
// set: all are written before any replaces an old one.
void write_results(const std::string& dir, const ClusterReport& r, bool create_parents = false);

}  // namespace facecluster
