#include "facecluster/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "facecluster/error.h"
#include "facecluster/io.h"

namespace facecluster {
namespace fs = std::filesystem;

namespace {

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += static_cast<char>(ch);
    } else if (ch < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", ch);
      out += b;
    } else {
      out += static_cast<char>(ch);
    }
  }
  return out + "\"";
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += ch;
    }
  }
  return out;
}

// Cluster sizes in power-of-two buckets [1], [2], [3, 4], [5, 8], ...: {lo, hi, clusters}.
struct SizeBucket {
  int64_t lo, hi, count;
};
std::vector<SizeBucket> size_buckets(const std::vector<int64_t>& sizes, int64_t largest) {
  std::vector<SizeBucket> b;
  for (int64_t lo = 1, hi = 1; lo <= std::max<int64_t>(largest, 1); lo = hi + 1, hi = hi * 2) b.push_back({lo, hi, 0});
  for (int64_t s : sizes)
    for (auto& x : b)
      if (s >= x.lo && s <= x.hi) ++x.count;
  return b;
}

int64_t largest_of(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  int64_t m = 1;
  for (int64_t v : a) m = std::max(m, v);
  for (int64_t v : b) m = std::max(m, v);
  return m;
}

std::string buckets_json(const std::vector<SizeBucket>& b) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < b.size(); ++i)
    out << (i ? ", " : "") << "{\"min_size\": " << b[i].lo << ", \"max_size\": " << b[i].hi << ", \"clusters\": " << b[i].count << "}";
  out << "]";
  return out.str();
}

constexpr int kLinkBins = 50;
constexpr int kTauPoints = 100;  // the clusters-by-tau curve: tau = 0.01, 0.02, ..., 1.00

// ---- inline SVG charts ----------------------------------------------------------------------

class Plot {
 public:
  // categories: x tick labels at 0.5, 1.5, ... (bars per category) instead of numbers.
  Plot(std::string title, std::string xlabel, std::string ylabel, double x0, double x1, double y0, double y1,
       const std::vector<std::string>& categories = {})
      : x0_(x0), x1_(x1), y0_(y0), y1_(y1 > y0 ? y1 : y0 + 1) {
    out_ << "<figure><figcaption>" << html_escape(title) << "</figcaption>"
         << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W
         << " " << H << "\">";
    out_ << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << W - L - R << "\" height=\"" << H - T - B
         << "\" fill=\"#fafafa\" stroke=\"#999\"/>";
    for (size_t i = 0; i < categories.size(); ++i)
      out_ << "<text x=\"" << px(double(i) + 0.5) << "\" y=\"" << H - B + 16 << "\" font-size=\"11\" text-anchor=\"middle\">"
           << html_escape(categories[i]) << "</text>";
    for (int i = 0; i <= 4; ++i) {
      const double xv = x0_ + (x1_ - x0_) * i / 4, yv = y0_ + (y1_ - y0_) * i / 4;
      if (categories.empty())
        out_ << "<text x=\"" << px(xv) << "\" y=\"" << H - B + 16 << "\" font-size=\"11\" text-anchor=\"middle\">"
             << tick(xv, x1_ - x0_) << "</text>";
      out_ << "<text x=\"" << L - 6 << "\" y=\"" << py(yv) + 4 << "\" font-size=\"11\" text-anchor=\"end\">"
           << tick(yv, y1_ - y0_) << "</text>";
      out_ << "<line x1=\"" << L << "\" x2=\"" << W - R << "\" y1=\"" << py(yv) << "\" y2=\"" << py(yv)
           << "\" stroke=\"#e4e4e4\"/>";
    }
    out_ << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - B + 32 << "\" font-size=\"12\" text-anchor=\"middle\">"
         << html_escape(xlabel) << "</text>";
    out_ << "<text x=\"14\" y=\"" << (T + H - B) / 2 << "\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 14 "
         << (T + H - B) / 2 << ")\">" << html_escape(ylabel) << "</text>";
  }
  void bar(double xa, double xb, double y, const std::string& color, const std::string& tip) {
    const double top = py(std::max(y, y0_)), base = py(y0_);
    out_ << "<rect x=\"" << px(xa) << "\" y=\"" << top << "\" width=\"" << std::max(0.5, px(xb) - px(xa)) << "\" height=\""
         << std::max(0.0, base - top) << "\" fill=\"" << color << "\"><title>" << html_escape(tip) << "</title></rect>";
  }
  void polyline(const std::vector<std::pair<double, double>>& pts, const std::string& color, bool dots) {
    if (pts.empty()) return;
    out_ << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"2\" points=\"";
    for (const auto& [x, y] : pts) out_ << px(x) << "," << py(y) << " ";
    out_ << "\"/>";
    if (dots)
      for (const auto& [x, y] : pts) out_ << "<circle cx=\"" << px(x) << "\" cy=\"" << py(y) << "\" r=\"3\" fill=\"" << color << "\"/>";
  }
  void vline(double x, const std::string& label) {
    out_ << "<line x1=\"" << px(x) << "\" x2=\"" << px(x) << "\" y1=\"" << T << "\" y2=\"" << H - B
         << "\" stroke=\"#d62728\" stroke-width=\"2\" stroke-dasharray=\"5,3\"/>";
    out_ << "<text x=\"" << px(x) + 4 << "\" y=\"" << T + 14 << "\" font-size=\"12\" fill=\"#d62728\">" << html_escape(label)
         << "</text>";
  }
  void text_at(double x, double y, const std::string& s) {
    out_ << "<text x=\"" << px(x) << "\" y=\"" << py(y) - 3 << "\" font-size=\"10\" text-anchor=\"middle\">" << html_escape(s)
         << "</text>";
  }
  void legend(const std::vector<std::pair<std::string, std::string>>& items) {
    double x = L + 8;
    for (const auto& [name, color] : items) {
      out_ << "<rect x=\"" << x << "\" y=\"" << H - 16 << "\" width=\"10\" height=\"10\" fill=\"" << color << "\"/>";
      out_ << "<text x=\"" << x + 14 << "\" y=\"" << H - 7 << "\" font-size=\"11\">" << html_escape(name) << "</text>";
      x += 24 + 7.0 * name.size();
    }
  }
  std::string done() {
    out_ << "</svg></figure>\n";
    return out_.str();
  }

 private:
  static constexpr int W = 560, H = 320, L = 60, R = 16, T = 16, B = 64;
  double px(double x) const { return L + (x - x0_) / (x1_ - x0_) * (W - L - R); }
  double py(double y) const { return H - B - (y - y0_) / (y1_ - y0_) * (H - T - B); }
  static std::string tick(double v, double span) {
    if (span >= 50) return fmt("%.0f", v);
    if (span >= 5) return fmt("%.1f", v);
    return fmt("%.2f", v);
  }
  double x0_, x1_, y0_, y1_;
  std::ostringstream out_;
};

const char* kBlue = "#1f77b4";
const char* kOrange = "#ff7f0e";
const char* kGreen = "#2ca02c";

std::string chart_clusters_by_tau(const ClusterReport& r) {
  // With one parent per face the links form a forest: clusters(tau) = N - links with distance < tau.
  const int64_t n = static_cast<int64_t>(r.labels.size());
  std::vector<std::pair<double, double>> pts;
  for (size_t i = 0; i < r.link_summary.below.size(); ++i)
    pts.emplace_back(double(i + 1) / double(r.link_summary.below.size()), double(n - r.link_summary.below[i]));
  Plot p(r.params.max_conn == 1 ? "Clusters by tau (every tau, from the links)" : "Clusters at the taus run",
         "tau (linking distance threshold)", "clusters", 0, 1, 0, double(n));
  if (r.params.max_conn == 1) p.polyline(pts, kBlue, false);
  std::vector<std::pair<double, double>> run;
  for (const auto& e : r.sweep) run.emplace_back(e.tau, double(e.clusters));
  p.polyline(run, kOrange, true);
  p.vline(r.chosen_tau(), "tau " + fmt("%.3f", r.chosen_tau()));
  p.legend({{"clusters (all tau)", kBlue}, {"taus run", kOrange}});
  return p.done();
}

std::string chart_scores_by_tau(const ClusterReport& r) {
  if (!r.scored || r.sweep.size() < 2) return "";
  std::vector<std::pair<double, double>> fp, fb;
  double lo = 1, hi = 0;
  for (const auto& e : r.sweep) {
    fp.emplace_back(e.tau, e.scores.pairwise_f);
    fb.emplace_back(e.tau, e.scores.bcubed_f);
    lo = std::min(lo, e.tau);
    hi = std::max(hi, e.tau);
  }
  Plot p("Scores over the tau sweep", "tau", "F-score", lo, hi > lo ? hi : lo + 0.01, 0, 1);
  p.polyline(fp, kBlue, true);
  p.polyline(fb, kGreen, true);
  p.vline(r.chosen_tau(), "best " + fmt("%.3f", r.chosen_tau()));
  p.legend({{"pairwise F", kBlue}, {"BCubed F", kGreen}});
  return p.done();
}

std::string chart_link_histogram(const ClusterReport& r) {
  const auto& h = r.link_summary.histogram;
  const int64_t top = std::max<int64_t>(1, *std::max_element(h.begin(), h.end()));
  Plot p("Links by distance to the parent (a face joins its parent's cluster when below tau)",
         r.params.use_tpdi ? "TPDi to the parent" : "distance to the parent", "links", 0, 1, 0, double(top) * 1.05);
  for (int b = 0; b < kLinkBins; ++b)
    p.bar(double(b) / kLinkBins, double(b + 1) / kLinkBins, double(h[b]), kBlue,
          fmt("[%.2f, ", double(b) / kLinkBins) + fmt("%.2f): ", double(b + 1) / kLinkBins) + std::to_string(h[b]) + " links");
  p.vline(r.chosen_tau(), "tau " + fmt("%.3f", r.chosen_tau()));
  return p.done();
}

std::string chart_cluster_sizes(const ClusterReport& r) {
  const auto pred = class_sizes(r.labels);
  const int64_t largest = largest_of(pred, r.true_sizes);
  const auto pb = size_buckets(pred, largest);
  const auto tb = size_buckets(r.true_sizes, largest);
  int64_t top = 1;
  for (const auto& b : pb) top = std::max(top, b.count);
  for (const auto& b : tb) top = std::max(top, b.count);
  // Heights on a log scale: singletons and the large identities differ by orders of magnitude.
  auto h = [](int64_t c) { return std::log10(1.0 + double(c)); };
  const double nb = double(pb.size());
  std::vector<std::string> names;
  for (const auto& b : pb) names.push_back(b.lo == b.hi ? std::to_string(b.lo) : std::to_string(b.lo) + "-" + std::to_string(b.hi));
  Plot p("Cluster sizes (bars on a log scale; counts on top)", "cluster size (faces)", "log10(1 + clusters)", 0, nb, 0,
         h(top) * 1.1, names);
  const bool two = r.scored;
  for (size_t i = 0; i < pb.size(); ++i) {
    const std::string range = pb[i].lo == pb[i].hi ? std::to_string(pb[i].lo)
                                                   : std::to_string(pb[i].lo) + "-" + std::to_string(pb[i].hi);
    const double x = double(i);
    if (two) {
      p.bar(x + 0.1, x + 0.5, h(tb[i].count), kGreen, "true, size " + range + ": " + std::to_string(tb[i].count));
      p.text_at(x + 0.3, h(tb[i].count), std::to_string(tb[i].count));
    }
    const double a = two ? x + 0.5 : x + 0.2;
    p.bar(a, a + (two ? 0.4 : 0.6), h(pb[i].count), kBlue, "predicted, size " + range + ": " + std::to_string(pb[i].count));
    p.text_at(a + (two ? 0.2 : 0.3), h(pb[i].count), std::to_string(pb[i].count));
  }
  std::vector<std::pair<std::string, std::string>> legend;
  if (two) legend.emplace_back("true identities", kGreen);
  legend.emplace_back("predicted clusters", kBlue);
  p.legend(legend);
  return p.done();
}

std::string chart_bins(const std::vector<BinScores>& bins, const std::string& title) {
  if (bins.empty()) return "";
  std::vector<std::string> names;
  for (const auto& b : bins)
    names.push_back(b.by == "size" ? fmt("%.0f", b.key_min) + "-" + fmt("%.0f", b.key_max)
                                   : fmt("%.2f", b.key_min) + "-" + fmt("%.2f", b.key_max));
  Plot p(title, bins[0].by == "size" ? "bin: identity sizes (1st = smallest)" : "bin: identity sparsity (last = sparsest)",
         "F-score", 0, double(bins.size()), 0, 1, names);
  for (size_t i = 0; i < bins.size(); ++i) {
    const auto& b = bins[i];
    const double x = double(i);
    p.bar(x + 0.1, x + 0.5, b.scores.pairwise_f, kBlue, "bin " + std::to_string(b.bin) + " pairwise F " + fmt("%.4f", b.scores.pairwise_f));
    p.bar(x + 0.5, x + 0.9, b.scores.bcubed_f, kGreen, "bin " + std::to_string(b.bin) + " BCubed F " + fmt("%.4f", b.scores.bcubed_f));
    p.text_at(x + 0.5, std::max(b.scores.pairwise_f, b.scores.bcubed_f), "bin " + std::to_string(b.bin));
  }
  p.legend({{"pairwise F", kBlue}, {"BCubed F", kGreen}});
  return p.done();
}

}  // namespace

LinkSummary summarize_links(const Links& links) {
  LinkSummary s;
  s.histogram.assign(kLinkBins, 0);
  s.below.assign(kTauPoints, 0);
  // A link counts below every tau from the first one above its distance on: count where that
  // run starts, then sum. The comparison is the one the cut makes (float distance < float tau).
  const auto tau = [](int t) { return static_cast<float>(t / double(kTauPoints)); };
  std::vector<int64_t> starts(kTauPoints + 1, 0);
  for (size_t i = 0; i < links.parent.size(); ++i) {
    if (links.parent[i] < 0) continue;
    const float d = links.dist[i];
    s.histogram[std::min(kLinkBins - 1, static_cast<int>(std::clamp(static_cast<double>(d), 0.0, 1.0) * kLinkBins))] += 1;
    int t = static_cast<int>(std::clamp(std::floor(static_cast<double>(d) * kTauPoints) + 1, 1.0, kTauPoints + 1.0));
    while (t > 1 && d < tau(t - 1)) --t;
    while (t <= kTauPoints && !(d < tau(t))) ++t;
    starts[static_cast<size_t>(t - 1)] += 1;  // t = kTauPoints + 1: below none
  }
  int64_t run = 0;
  for (int t = 1; t <= kTauPoints; ++t) s.below[static_cast<size_t>(t - 1)] = run += starts[static_cast<size_t>(t - 1)];
  return s;
}

std::string describe_change(const ClusterChange& c) {
  std::ostringstream out;
  auto list = [&](const std::vector<int64_t>& ids) {
    for (size_t i = 0; i < ids.size(); ++i) out << (i == 0 ? "" : i + 1 == ids.size() ? " and " : ", ") << ids[i];
  };
  if (c.kind == ClusterChange::Kind::Merged) {
    out << (c.others.size() == 1 ? "cluster " : "clusters ");
    list(c.others);
    out << " merged into " << c.id;
  } else {
    out << "cluster " << c.id << " split into ";
    list(c.others);
  }
  return out.str();
}

namespace {
// The changes an addition made, at most this many on the terminal (all in scores.json and the report).
constexpr size_t kChangesShown = 20;
}  // namespace

std::string render_text(const ClusterReport& r) {
  std::ostringstream out;
  out << "plan\n";
  for (const auto& [k, v] : r.plan) out << "  " << k << ": " << v << "\n";
  for (const auto& w : r.warnings) out << "warning: " << w << "\n";
  for (const auto& line : r.decisions) out << "auto: " << line << "\n";
  if (!r.changes.empty()) out << "changes to earlier clusters (" << r.changes.size() << ")\n";
  for (size_t i = 0; i < r.changes.size() && i < kChangesShown; ++i) out << "  " << describe_change(r.changes[i]) << "\n";
  if (r.changes.size() > kChangesShown) out << "  ... " << r.changes.size() - kChangesShown << " more in scores.json\n";
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
  if (r.scored && !r.sweep.empty()) {
    std::snprintf(buf, sizeof buf, "\nscores at tau %.4f\n", r.chosen_tau());
    out << buf << format_scores_table(r.sweep[r.chosen].scores);
  }
  if (!r.size_bins.empty()) out << "\n" << format_bins_table(r.size_bins);
  if (!r.sparsity_bins.empty()) out << "\n" << format_bins_table(r.sparsity_bins);
  return out.str();
}

std::string render_json(const ClusterReport& r) {
  std::ostringstream out;
  out << "{\"plan\": {";
  for (size_t i = 0; i < r.plan.size(); ++i) out << (i ? ", " : "") << json_string(r.plan[i].first) << ": " << json_string(r.plan[i].second);
  out << "}, \"warnings\": [";
  for (size_t i = 0; i < r.warnings.size(); ++i) out << (i ? ", " : "") << json_string(r.warnings[i]);
  out << "], \"decisions\": [";
  for (size_t i = 0; i < r.decisions.size(); ++i) out << (i ? ", " : "") << json_string(r.decisions[i]);
  out << "], \"notes\": [";
  for (size_t i = 0; i < r.notes.size(); ++i) out << (i ? ", " : "") << json_string(r.notes[i]);
  out << "], \"changes\": [";
  for (size_t i = 0; i < r.changes.size(); ++i) {
    const ClusterChange& c = r.changes[i];
    out << (i ? ", " : "") << "{\"kind\": \"" << (c.kind == ClusterChange::Kind::Merged ? "merged" : "split")
        << "\", \"id\": " << c.id << ", \"others\": [";
    for (size_t j = 0; j < c.others.size(); ++j) out << (j ? ", " : "") << c.others[j];
    out << "], \"text\": " << json_string(describe_change(c)) << "}";
  }
  const auto& p = r.params;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "], \"params\": {\"density_type\": \"%s\", \"ndde_k\": %d, \"ndde_sigma\": %.6g, \"tpdi\": %s, "
                "\"tpdi_sigma\": %.6g, \"max_conn\": %d}",
                density_name(p.density), p.ndde_k, p.ndde_sigma, p.use_tpdi ? "true" : "false", p.tpdi_sigma, p.max_conn);
  out << buf;
  out << ", \"n\": " << r.labels.size() << ", \"chosen_tau\": " << r.chosen_tau()
      << ", \"clusters\": " << (r.sweep.empty() ? 0 : r.sweep[r.chosen].clusters);
  if (r.scored && !r.sweep.empty()) out << ", \"scores\": " << scores_to_json(r.sweep[r.chosen].scores);
  out << ", \"sweep\": [";
  for (size_t i = 0; i < r.sweep.size(); ++i) {
    const auto& e = r.sweep[i];
    out << (i ? ", " : "") << "{\"tau\": " << e.tau << ", \"clusters\": " << e.clusters;
    if (e.scored) out << ", \"scores\": " << scores_to_json(e.scores);
    out << "}";
  }
  out << "]";
  if (!r.size_bins.empty()) out << ", \"size_bins\": " << bins_to_json(r.size_bins);
  if (!r.sparsity_bins.empty()) out << ", \"sparsity_bins\": " << bins_to_json(r.sparsity_bins);
  const auto& h = r.link_summary.histogram;
  out << ", \"link_histogram\": {\"bin_width\": " << 1.0 / kLinkBins << ", \"counts\": [";
  for (size_t i = 0; i < h.size(); ++i) out << (i ? ", " : "") << h[i];
  out << "]}";
  const auto pred = class_sizes(r.labels);
  const int64_t largest = largest_of(pred, r.true_sizes);
  out << ", \"cluster_sizes\": {\"predicted\": " << buckets_json(size_buckets(pred, largest));
  if (r.scored) out << ", \"true\": " << buckets_json(size_buckets(r.true_sizes, largest));
  out << "}}\n";
  return out.str();
}

std::string render_html(const ClusterReport& r) {
  std::ostringstream out;
  out << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>facecluster report</title><style>"
         "body{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}"
         "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
         "figure{display:inline-block;margin:8px 12px 8px 0;vertical-align:top}figcaption{font-weight:bold;margin-bottom:4px}"
         ".warn{color:#a15c00}.note{color:#555}</style></head><body>\n";
  out << "<h1>facecluster report</h1>\n";
  const int64_t clusters = r.sweep.empty() ? 0 : r.sweep[r.chosen].clusters;
  out << "<p><b>" << r.labels.size() << "</b> faces in <b>" << clusters << "</b> clusters at tau <b>"
      << fmt("%.4f", r.chosen_tau()) << "</b>";
  if (r.scored && !r.sweep.empty()) {
    const Scores& s = r.sweep[r.chosen].scores;
    out << "; pairwise F <b>" << fmt("%.4f", s.pairwise_f) << "</b> (P " << fmt("%.4f", s.pairwise_p) << ", R "
        << fmt("%.4f", s.pairwise_r) << "), BCubed F <b>" << fmt("%.4f", s.bcubed_f) << "</b>, NMI "
        << fmt("%.4f", s.nmi) << "; " << s.true_clusters << " true identities";
  }
  out << ".</p>\n";
  for (const auto& w : r.warnings) out << "<p class=\"warn\">warning: " << html_escape(w) << "</p>\n";
  for (const auto& n : r.decisions) out << "<p class=\"note\">auto: " << html_escape(n) << "</p>\n";
  if (!r.changes.empty()) {
    out << "<h2>Changes to earlier clusters</h2>\n<ul>";
    for (const auto& c : r.changes) out << "<li>" << html_escape(describe_change(c)) << "</li>";
    out << "</ul>\n";
  }
  out << "<h2>Charts</h2>\n" << chart_clusters_by_tau(r) << chart_scores_by_tau(r) << chart_link_histogram(r)
      << chart_cluster_sizes(r) << chart_bins(r.size_bins, "Hard clusters: F by identity size")
      << chart_bins(r.sparsity_bins, "Hard clusters: F by identity sparsity");
  if (!r.notes.empty()) {
    out << "<h2>How the automatic choices were made</h2>\n";
    for (const auto& n : r.notes) out << "<p class=\"note\">" << html_escape(n) << "</p>\n";
  }
  out << "<h2>Plan</h2>\n<table>";
  for (const auto& [k, v] : r.plan) out << "<tr><th>" << html_escape(k) << "</th><td>" << html_escape(v) << "</td></tr>";
  out << "</table>\n<h2>Tables</h2>\n<pre>" << html_escape(render_text(r)) << "</pre>\n</body></html>\n";
  return out.str();
}

void write_results(const std::string& dir, const ClusterReport& r, bool create_parents) {
  FC_CHECK(!dir.empty(), "output folder is empty");
  const fs::path d(dir);
  if (!fs::exists(d)) {
    const fs::path parent = d.parent_path().empty() ? fs::path(".") : d.parent_path();
    if (create_parents) make_folders(parent.string(), "parent of the results folder");
    FC_CHECK(fs::is_directory(parent), "cannot create output folder " << dir << ": " << parent.string() << " does not exist");
    std::error_code ec;
    fs::create_directory(d, ec);
    FC_CHECK(!ec, "cannot create results folder " << dir << ": " << ec.message());
  }
  FC_CHECK(fs::is_directory(d), "output path " << dir << " exists and is not a folder");
  std::string dens;
  dens.reserve(r.density.size() * 12);
  char buf[64];
  for (double v : r.density) {
    std::snprintf(buf, sizeof buf, "%.8g\n", v);
    dens += buf;
  }
  const auto& names = result_file_names();
  const std::vector<std::string> contents = {format_labels(r.labels), dens, render_json(r), render_text(r), render_html(r)};
  std::vector<std::pair<std::string, std::string>> files;
  for (size_t i = 0; i < names.size(); ++i) files.emplace_back((d / names[i]).string(), contents[i]);
  write_text_files(files);
}

const std::vector<std::string>& result_file_names() {
  static const std::vector<std::string> names = {"pred_labels.meta", "density.txt", "scores.json", "scores.txt",
                                                 "report.html"};
  return names;
}

}  // namespace facecluster
