#include "facecluster/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <sstream>
#include <unordered_map>

#include "facecluster/error.h"

namespace facecluster {
namespace {

// Maps arbitrary labels to 0..C-1 in order of first appearance.
std::vector<int32_t> densify(const Labels& labels, int64_t* count) {
  std::unordered_map<int64_t, int32_t> ids;
  ids.reserve(labels.size() / 4 + 16);
  std::vector<int32_t> out(labels.size());
  for (size_t i = 0; i < labels.size(); ++i) {
    auto it = ids.emplace(labels[i], static_cast<int32_t>(ids.size())).first;
    out[i] = it->second;
  }
  *count = static_cast<int64_t>(ids.size());
  return out;
}

double f_score(double p, double r) { return p + r > 0 ? 2 * p * r / (p + r) : 0.0; }
double comb2(double x) { return x * (x - 1) / 2; }

}  // namespace

std::vector<int64_t> class_sizes(const Labels& labels) {
  int64_t count = 0;
  const std::vector<int32_t> ids = densify(labels, &count);
  std::vector<int64_t> sizes(static_cast<size_t>(count), 0);
  for (int32_t c : ids) ++sizes[static_cast<size_t>(c)];
  return sizes;
}

Scores evaluate(const Labels& pred, const Labels& gt) {
  FC_CHECK(pred.size() == gt.size(),
           "cannot score: " << pred.size() << " predicted labels but " << gt.size() << " true labels");
  FC_CHECK(!pred.empty(), "cannot score an empty labelling");
  Scores s;
  const int64_t n = static_cast<int64_t>(pred.size());
  s.n = n;
  int64_t nc = 0, nk = 0;
  const std::vector<int32_t> c = densify(gt, &nc);
  const std::vector<int32_t> k = densify(pred, &nk);
  s.true_clusters = nc;
  s.pred_clusters = nk;
  std::vector<int64_t> csize(static_cast<size_t>(nc), 0), ksize(static_cast<size_t>(nk), 0);
  std::unordered_map<int64_t, int64_t> cont;
  cont.reserve(static_cast<size_t>(std::max(nc, nk)) * 2);
  for (int64_t i = 0; i < n; ++i) {
    ++csize[c[i]];
    ++ksize[k[i]];
    ++cont[static_cast<int64_t>(c[i]) * nk + k[i]];
  }
  double sum_nck2 = 0, sum_c2 = 0, sum_k2 = 0, b_p = 0, b_r = 0, mi = 0;
  double comb_nck = 0, comb_c = 0, comb_k = 0;
  const double dn = static_cast<double>(n);
  for (const auto& [key, cnt] : cont) {
    const double v = static_cast<double>(cnt);
    const int64_t ci = key / nk, ki = key % nk;
    const double a = static_cast<double>(csize[ci]), b = static_cast<double>(ksize[ki]);
    sum_nck2 += v * v;
    b_p += v * v / b;
    b_r += v * v / a;
    mi += (v / dn) * std::log(v * dn / (a * b));
    comb_nck += comb2(v);
  }
  double hc = 0, hk = 0;
  for (int64_t a : csize) {
    sum_c2 += double(a) * a;
    hc -= (a / dn) * std::log(a / dn);
    comb_c += comb2(double(a));
    s.true_singletons += (a == 1);
  }
  for (int64_t b : ksize) {
    sum_k2 += double(b) * b;
    hk -= (b / dn) * std::log(b / dn);
    comb_k += comb2(double(b));
    s.pred_singletons += (b == 1);
  }
  // Pairwise: 0/0 (no predicted pairs, or no true pairs) counts as 1: nothing was wrong.
  const double tp = sum_nck2 - dn, pp = sum_k2 - dn, tt = sum_c2 - dn;
  s.pairwise_p = pp > 0 ? tp / pp : 1.0;
  s.pairwise_r = tt > 0 ? tp / tt : 1.0;
  s.pairwise_f = f_score(s.pairwise_p, s.pairwise_r);
  s.bcubed_p = b_p / dn;
  s.bcubed_r = b_r / dn;
  s.bcubed_f = f_score(s.bcubed_p, s.bcubed_r);
  // NMI with the arithmetic mean of the entropies (scikit-learn's default); two one-cluster
  // labellings are identical, score 1.
  if ((nc == 1 && nk == 1) || (hc == 0 && hk == 0)) {
    s.nmi = 1.0;
  } else {
    const double denom = (hc + hk) / 2;
    s.nmi = denom > 0 ? std::max(0.0, mi) / denom : 0.0;
    s.nmi = std::min(1.0, s.nmi);
  }
  const double total = comb2(dn);
  const double expected = total > 0 ? comb_c * comb_k / total : 0.0;
  const double max_index = (comb_c + comb_k) / 2;
  s.ari = (max_index - expected) != 0 ? (comb_nck - expected) / (max_index - expected) : 1.0;
  return s;
}

namespace {

std::vector<BinScores> evaluate_binned(const Labels& pred, const Labels& gt, const std::vector<double>& key,
                                       const std::vector<int32_t>& cls, const std::string& by, int bins) {
  FC_CHECK(bins >= 1, "number of bins must be >= 1, got " << bins);
  const int64_t nc = static_cast<int64_t>(key.size());
  std::vector<int64_t> order(static_cast<size_t>(nc));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return key[a] < key[b]; });
  std::vector<int> bin_of(static_cast<size_t>(nc));
  std::vector<BinScores> out;
  const int nb = static_cast<int>(std::min<int64_t>(bins, nc));
  int64_t pos = 0;
  for (int b = 0; b < nb; ++b) {
    const int64_t len = nc / nb + (b < nc % nb ? 1 : 0);
    BinScores bs;
    bs.by = by;
    bs.bin = b + 1;
    bs.classes = len;
    bs.key_min = key[order[pos]];
    bs.key_max = key[order[pos + len - 1]];
    for (int64_t t = pos; t < pos + len; ++t) bin_of[order[t]] = b;
    pos += len;
    out.push_back(bs);
  }
  std::vector<Labels> p(static_cast<size_t>(nb)), g(static_cast<size_t>(nb));
  for (size_t i = 0; i < gt.size(); ++i) {
    const int b = bin_of[cls[i]];
    p[b].push_back(pred[i]);
    g[b].push_back(gt[i]);
  }
  for (int b = 0; b < nb; ++b) {
    out[b].rows = static_cast<int64_t>(g[b].size());
    out[b].scores = evaluate(p[b], g[b]);
  }
  return out;
}

}  // namespace

std::vector<BinScores> evaluate_by_size(const Labels& pred, const Labels& gt, int bins) {
  FC_CHECK(pred.size() == gt.size(), "cannot score: " << pred.size() << " predicted labels but " << gt.size() << " true labels");
  int64_t nc = 0;
  const std::vector<int32_t> cls = densify(gt, &nc);
  std::vector<double> size(static_cast<size_t>(nc), 0);
  for (int32_t c : cls) size[c] += 1;
  return evaluate_binned(pred, gt, size, cls, "size", bins);
}

ClassCosines class_mean_cosines(const Matrix& x, const Labels& labels) {
  FC_CHECK(x.rows == static_cast<int64_t>(labels.size()),
           "class cosines need one feature row per label: " << x.rows << " rows, " << labels.size() << " labels");
  return class_mean_cosines_by_blocks(labels, x.cols, [&](int64_t first, int64_t count) {
    return Matrix::borrow(x.row(first), count, x.cols);
  });
}

ClassCosines class_mean_cosines_by_blocks(const Labels& labels, int64_t d, const RowBlocks& read) {
  int64_t nc = 0;
  ClassCosines out;
  out.class_of_row = densify(labels, &nc);
  std::vector<double> sums(static_cast<size_t>(nc * d), 0.0), self(static_cast<size_t>(nc), 0.0);
  out.size.assign(static_cast<size_t>(nc), 0);
  const int64_t n = static_cast<int64_t>(labels.size()), block = 65536;
  for (int64_t first = 0; first < n; first += block) {
    const Matrix x = read(first, std::min(block, n - first));
    FC_CHECK(x.cols == d, "class cosines: rows of dimension " << x.cols << ", expected " << d);
    for (int64_t r = 0; r < x.rows; ++r) {
      const int32_t c = out.class_of_row[static_cast<size_t>(first + r)];
      const float* v = x.row(r);
      double* s = sums.data() + c * d;
      for (int64_t j = 0; j < d; ++j) {
        s[j] += v[j];
        self[c] += double(v[j]) * v[j];
      }
      ++out.size[c];
    }
  }
  out.mean_cosine.assign(static_cast<size_t>(nc), std::nan(""));
  for (int64_t c = 0; c < nc; ++c) {
    const double m = double(out.size[c]);
    if (m < 2) continue;
    double s2 = 0;
    for (int64_t j = 0; j < d; ++j) s2 += sums[c * d + j] * sums[c * d + j];
    out.mean_cosine[c] = (s2 - self[c]) / (m * (m - 1));
  }
  return out;
}

std::vector<BinScores> evaluate_by_sparsity(const Labels& pred, const Labels& gt, const Matrix& features, int bins) {
  FC_CHECK(pred.size() == gt.size(), "cannot score: " << pred.size() << " predicted labels but " << gt.size() << " true labels");
  return evaluate_by_sparsity(pred, gt, class_mean_cosines(features, gt), bins);
}

std::vector<BinScores> evaluate_by_sparsity(const Labels& pred, const Labels& gt, const ClassCosines& cc, int bins) {
  FC_CHECK(pred.size() == gt.size(), "cannot score: " << pred.size() << " predicted labels but " << gt.size() << " true labels");
  std::vector<double> sparsity(cc.mean_cosine.size(), 0.0);  // singletons: 0
  for (size_t c = 0; c < sparsity.size(); ++c)
    if (!std::isnan(cc.mean_cosine[c])) sparsity[c] = 1.0 - cc.mean_cosine[c];
  return evaluate_binned(pred, gt, sparsity, cc.class_of_row, "sparsity", bins);
}

std::string format_scores_table(const Scores& s) {
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "rows %lld | true clusters %lld (%lld singletons) | predicted clusters %lld (%lld singletons)\n"
                "             precision  recall   F-score\n"
                "pairwise     %9.4f %8.4f %9.4f\n"
                "bcubed       %9.4f %8.4f %9.4f\n"
                "NMI %.4f | ARI %.4f\n",
                (long long)s.n, (long long)s.true_clusters, (long long)s.true_singletons, (long long)s.pred_clusters,
                (long long)s.pred_singletons, s.pairwise_p, s.pairwise_r, s.pairwise_f, s.bcubed_p, s.bcubed_r,
                s.bcubed_f, s.nmi, s.ari);
  return buf;
}

std::string format_bins_table(const std::vector<BinScores>& bins) {
  if (bins.empty()) return "";
  std::ostringstream out;
  char buf[512];
  std::snprintf(buf, sizeof buf, "hard-cluster bins by %s (%s)\n%-4s %-19s %8s %8s %8s %8s %8s %8s\n",
                bins[0].by.c_str(), bins[0].by == "size" ? "bin 1 = smallest identities" : "last bin = sparsest identities",
                "bin", bins[0].by.c_str(), "classes", "rows", "F_P", "F_B", "P_P", "R_P");
  out << buf;
  for (const auto& b : bins) {
    char range[64];
    std::snprintf(range, sizeof range, b.by == "size" ? "%.0f-%.0f" : "%.3f-%.3f", b.key_min, b.key_max);
    std::snprintf(buf, sizeof buf, "%-4d %-19s %8lld %8lld %8.4f %8.4f %8.4f %8.4f\n", b.bin, range, (long long)b.classes,
                  (long long)b.rows, b.scores.pairwise_f, b.scores.bcubed_f, b.scores.pairwise_p, b.scores.pairwise_r);
    out << buf;
  }
  return out.str();
}

std::string scores_to_json(const Scores& s) {
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "{\"n\": %lld, \"true_clusters\": %lld, \"pred_clusters\": %lld, \"true_singletons\": %lld, "
                "\"pred_singletons\": %lld, \"pairwise_precision\": %.6f, \"pairwise_recall\": %.6f, "
                "\"pairwise_f\": %.6f, \"bcubed_precision\": %.6f, \"bcubed_recall\": %.6f, \"bcubed_f\": %.6f, "
                "\"nmi\": %.6f, \"ari\": %.6f}",
                (long long)s.n, (long long)s.true_clusters, (long long)s.pred_clusters, (long long)s.true_singletons,
                (long long)s.pred_singletons, s.pairwise_p, s.pairwise_r, s.pairwise_f, s.bcubed_p, s.bcubed_r,
                s.bcubed_f, s.nmi, s.ari);
  return buf;
}

std::string bins_to_json(const std::vector<BinScores>& bins) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < bins.size(); ++i) {
    const auto& b = bins[i];
    char buf[256];
    std::snprintf(buf, sizeof buf, "{\"by\": \"%s\", \"bin\": %d, \"classes\": %lld, \"rows\": %lld, \"key_min\": %.6f, "
                  "\"key_max\": %.6f, \"scores\": ", b.by.c_str(), b.bin, (long long)b.classes, (long long)b.rows,
                  b.key_min, b.key_max);
    out << (i ? ", " : "") << buf << scores_to_json(b.scores) << "}";
  }
  out << "]";
  return out.str();
}

std::string evaluation_to_json(const Scores& s, const std::vector<BinScores>& size_bins,
                               const std::vector<BinScores>& sparsity_bins) {
  std::string out = "{\"scores\": " + scores_to_json(s) + ", \"size_bins\": " + bins_to_json(size_bins);
  if (!sparsity_bins.empty()) out += ", \"sparsity_bins\": " + bins_to_json(sparsity_bins);
  return out + "}\n";
}

}  // namespace facecluster
