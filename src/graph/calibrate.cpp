#include "facecluster/calibrate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "facecluster/error.h"

namespace facecluster {
namespace {

double normal_pdf(double x, double mean, double sd) {
  const double z = (x - mean) / sd;
  return std::exp(-0.5 * z * z) / (sd * 2.5066282746310002);
}

std::string fmt(const char* f, double a, double b = 0, double c = 0, double d = 0, double e = 0) {
  char buf[512];
  std::snprintf(buf, sizeof buf, f, a, b, c, d, e);
  return buf;
}

}  // namespace

namespace {

// EM for two Gaussians from a given start; returns the fitted mixture and its log-likelihood.
Mixture run_em(const std::vector<float>& s, const std::vector<int8_t>& anchor, Mixture m, double min_sd, int max_iter,
               double* loglik) {
  const size_t n = s.size();
  const bool anchored = !anchor.empty();
  double ll = 0;
  for (int it = 0; it < max_iter; ++it) {
    double w1 = 0, s1 = 0, ss1 = 0, w0 = 0, s0 = 0, ss0 = 0;
    ll = 0;
    for (size_t i = 0; i < n; ++i) {
      const double x = s[i];
      const double a = m.same_weight * normal_pdf(x, m.same_mean, m.same_sd);
      const double b = (1 - m.same_weight) * normal_pdf(x, m.diff_mean, m.diff_sd);
      double r = a + b > 0 ? a / (a + b) : (x > (m.same_mean + m.diff_mean) / 2 ? 1.0 : 0.0);
      if (anchored && anchor[i] >= 0) r = anchor[i];
      ll += std::log(std::max(a + b, 1e-300));
      w1 += r;
      s1 += r * x;
      ss1 += r * x * x;
      w0 += 1 - r;
      s0 += (1 - r) * x;
      ss0 += (1 - r) * x * x;
    }
    Mixture next = m;
    next.same_weight = std::clamp(w1 / double(n), 1e-4, 1 - 1e-4);
    if (w1 > 1e-9) {
      next.same_mean = s1 / w1;
      next.same_sd = std::max(min_sd, std::sqrt(std::max(0.0, ss1 / w1 - next.same_mean * next.same_mean)));
    }
    if (w0 > 1e-9) {
      next.diff_mean = s0 / w0;
      next.diff_sd = std::max(min_sd, std::sqrt(std::max(0.0, ss0 / w0 - next.diff_mean * next.diff_mean)));
    }
    const double change = std::fabs(next.same_mean - m.same_mean) + std::fabs(next.diff_mean - m.diff_mean) +
                          std::fabs(next.same_weight - m.same_weight);
    m = next;
    m.iterations = it + 1;
    if (change < 1e-7) break;
  }
  *loglik = ll;
  return m;
}

// A start with the two components split at value `cut`.
Mixture split_start(const std::vector<float>& s, double cut, double fallback_sd) {
  double a0 = 0, a1 = 0, q0 = 0, q1 = 0, c0 = 0, c1 = 0;
  for (float v : s) {
    if (v < cut) a0 += v, q0 += double(v) * v, c0 += 1;
    else a1 += v, q1 += double(v) * v, c1 += 1;
  }
  Mixture m;
  m.diff_mean = c0 > 0 ? a0 / c0 : cut;
  m.same_mean = c1 > 0 ? a1 / c1 : cut;
  m.diff_sd = c0 > 1 ? std::max(fallback_sd / 50, std::sqrt(std::max(0.0, q0 / c0 - m.diff_mean * m.diff_mean))) : fallback_sd;
  m.same_sd = c1 > 1 ? std::max(fallback_sd / 50, std::sqrt(std::max(0.0, q1 / c1 - m.same_mean * m.same_mean))) : fallback_sd;
  m.same_weight = std::clamp(c1 / double(s.size()), 0.01, 0.99);
  return m;
}

}  // namespace

Mixture fit_mixture(const std::vector<float>& s, const std::vector<int8_t>& anchor) {
  FC_CHECK(s.size() >= 10, "calibration needs at least 10 similarity values, got " << s.size());
  FC_CHECK(anchor.empty() || anchor.size() == s.size(),
           "calibration: " << anchor.size() << " anchors for " << s.size() << " similarity values");
  std::vector<float> sorted = s;
  std::sort(sorted.begin(), sorted.end());
  auto q = [&](double p) { return double(sorted[static_cast<size_t>(p * double(sorted.size() - 1))]); };
  const double spread = std::max(1e-4, q(0.95) - q(0.05));
  const double min_sd = spread / 200;
  // Several starts (splits at quantiles) on a subsample; the most likely fit is refined on all
  // values. One start is not enough: with one identity size dominating the kNN lists, a single
  // split can lock EM onto two halves of the same-identity mass.
  std::vector<float> sub;
  std::vector<int8_t> sub_anchor;
  const size_t stride = std::max<size_t>(1, s.size() / 100000);
  for (size_t i = 0; i < s.size(); i += stride) {
    sub.push_back(s[i]);
    if (!anchor.empty()) sub_anchor.push_back(anchor[i]);
  }
  Mixture best;
  double best_ll = -1e300;
  for (double p : {0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}) {
    double ll = 0;
    const Mixture m = run_em(sub, sub_anchor, split_start(sub, q(p), spread / 4), min_sd, 150, &ll);
    if (ll > best_ll) best_ll = ll, best = m;
  }
  double ll = 0;
  Mixture m = run_em(s, anchor, best, min_sd, 300, &ll);
  if (m.same_mean < m.diff_mean) {  // keep "same" as the higher-similarity component
    std::swap(m.same_mean, m.diff_mean);
    std::swap(m.same_sd, m.diff_sd);
    m.same_weight = 1 - m.same_weight;
  }
  return m;
}

SameProbability::SameProbability(const Mixture& m, double lo, double hi) : lo_(lo), hi_(std::max(hi, lo + 1e-9)) {
  const int bins = 4096;
  table_.resize(bins + 1);
  double run = 0;
  threshold_ = hi_;
  bool crossed = false;
  auto posterior = [&](double x) {
    const double a = m.same_weight * normal_pdf(x, m.same_mean, m.same_sd);
    const double c = (1 - m.same_weight) * normal_pdf(x, m.diff_mean, m.diff_sd);
    return a + c > 0 ? a / (a + c) : (x > m.same_mean ? 1.0 : 0.0);
  };
  // In the far tails the wider component wins the raw posterior; below the "different" mean
  // a pair is never more likely the same than at that mean, above the "same" mean never less.
  const double p_diff_mean = posterior(m.diff_mean);
  for (int b = 0; b <= bins; ++b) {
    const double x = lo_ + (hi_ - lo_) * b / bins;
    double p = posterior(x);
    if (x <= m.diff_mean) p = std::min(p, p_diff_mean);
    if (x >= m.same_mean) p = std::max(p, 0.5);
    run = std::max(run, p);
    table_[b] = run;
    if (!crossed && run >= 0.5) {
      threshold_ = x;
      crossed = true;
    }
  }
}

double SameProbability::operator()(double s) const {
  if (table_.empty()) return 0.5;
  const double t = (s - lo_) / (hi_ - lo_) * double(table_.size() - 1);
  if (t <= 0) return table_.front();
  if (t >= double(table_.size() - 1)) return table_.back();
  const size_t i = static_cast<size_t>(t);
  const double f = t - double(i);
  return table_[i] * (1 - f) + table_[i + 1] * f;
}

namespace {

// Pairs sampled for the fit: every row_stride-th row with all its real, non-self neighbours.
// Each pair also gets an anchor from the overlap of the two faces' neighbour lists, which
// depends only on neighbour order (not on the similarity scale): two faces sharing at least
// half their lists are taken as the same person, sharing under a tenth as different people
// (docs/calibration.md). A class with too few anchors is left free.
constexpr double kSameOverlap = 0.5, kDiffOverlap = 0.1;

struct PairSample {
  std::vector<float> sim;
  std::vector<int8_t> anchor;
  int64_t anchored_same = 0, anchored_diff = 0;
  bool same_free = false, diff_free = false;  // too few anchors: the class was left free
};

// The ids of one neighbour list, for membership tests (open addressing, at most half full).
class RowSet {
 public:
  explicit RowSet(int k) {
    size_t cap = 16;
    while (cap < 2 * static_cast<size_t>(k)) cap *= 2;
    slot_.assign(cap, -1);
  }
  void fill(const int32_t* ids, int k) {
    std::fill(slot_.begin(), slot_.end(), -1);
    for (int j = 0; j < k; ++j)
      if (ids[j] >= 0) {
        size_t h = hash(ids[j]);
        while (slot_[h] >= 0 && slot_[h] != ids[j]) h = (h + 1) & (slot_.size() - 1);
        slot_[h] = ids[j];
      }
  }
  bool contains(int32_t id) const {
    for (size_t h = hash(id);; h = (h + 1) & (slot_.size() - 1)) {
      if (slot_[h] == id) return true;
      if (slot_[h] < 0) return false;
    }
  }

 private:
  size_t hash(int32_t id) const { return (static_cast<uint32_t>(id) * 2654435761u) & (slot_.size() - 1); }
  std::vector<int32_t> slot_;
};

PairSample sample_pairs(const KnnGraph& g, double same_overlap, double diff_overlap) {
  const int64_t row_stride = std::max<int64_t>(1, g.n * g.k / 2000000);
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < g.n; i += row_stride) rows.push_back(i);
  std::vector<std::vector<float>> sims(rows.size());
  std::vector<std::vector<int8_t>> anchors(rows.size());
#pragma omp parallel if (rows.size() > 2000)
  {
    RowSet members(g.k);
#pragma omp for schedule(dynamic, 64)
    for (size_t r = 0; r < rows.size(); ++r) {
      const int64_t i = rows[r];
      const int32_t* nb = g.nbr_row(i);
      const float* d = g.dist_row(i);
      members.fill(nb, g.k);
      for (int j = 0; j < g.k; ++j) {
        if (nb[j] < 0 || nb[j] == i) continue;
        const int32_t* other = g.nbr_row(nb[j]);
        int shared = 0;
        for (int l = 0; l < g.k; ++l) shared += other[l] >= 0 && members.contains(other[l]);
        const double overlap = double(shared) / g.k;
        sims[r].push_back(1.f - d[j]);
        anchors[r].push_back(overlap >= same_overlap ? 1 : overlap < diff_overlap ? 0 : -1);
      }
    }
  }
  PairSample out;
  for (size_t r = 0; r < rows.size(); ++r) {
    out.sim.insert(out.sim.end(), sims[r].begin(), sims[r].end());
    out.anchor.insert(out.anchor.end(), anchors[r].begin(), anchors[r].end());
  }
  for (int8_t a : out.anchor) out.anchored_same += a == 1, out.anchored_diff += a == 0;
  const int64_t enough = std::max<int64_t>(100, static_cast<int64_t>(out.sim.size() / 200));
  out.same_free = out.anchored_same < enough;
  out.diff_free = out.anchored_diff < enough;
  for (int8_t& a : out.anchor)
    if ((a == 1 && out.same_free) || (a == 0 && out.diff_free)) a = -1;
  return out;
}

}  // namespace

Calibration calibrate_graph(const KnnGraph& g, const GraphParams& base) {
  float lo = 1e30f, hi = -1e30f;
  for (int64_t i = 0; i < g.n; ++i) {
    const int32_t* nb = g.nbr_row(i);
    const float* d = g.dist_row(i);
    for (int j = 0; j < g.k; ++j) {
      if (nb[j] < 0 || nb[j] == i) continue;
      lo = std::min(lo, 1.f - d[j]);
      hi = std::max(hi, 1.f - d[j]);
    }
  }
  const PairSample ps = sample_pairs(g, kSameOverlap, kDiffOverlap);
  const std::vector<float>& sim = ps.sim;
  FC_CHECK(sim.size() >= 10, "calibration: the graph has too few neighbour pairs (" << sim.size() << ")");
  Calibration c;
  c.mixture = fit_mixture(sim, ps.anchor);
  {
    std::vector<float> dist(sim.size());
    for (size_t i = 0; i < sim.size(); ++i) dist[i] = 1.f - sim[i];
    std::nth_element(dist.begin(), dist.begin() + dist.size() / 2, dist.end());
    c.order_scale = std::max(1e-6, double(dist[dist.size() / 2]));
    c.order_weight = base.tpdi_sigma;
  }
  c.same = SameProbability(c.mixture, lo, hi);
  c.params = base;
  const Mixture& m = c.mixture;
  c.notes.push_back(fmt("similarity mixture: same identity mean %.3f sd %.3f, different mean %.3f sd %.3f, same share %.2f",
                        m.same_mean, m.same_sd, m.diff_mean, m.diff_sd, m.same_weight));
  c.notes.push_back(fmt("mixture anchored by shared neighbours: of %.0f sampled pairs, %.0f share >= half their lists "
                        "(held as same), %.0f share < a tenth (held as different)",
                        double(sim.size()), double(ps.anchored_same), double(ps.anchored_diff)) +
                    (ps.same_free || ps.diff_free ? "; too few to hold the " +
                                                        std::string(ps.same_free && ps.diff_free ? "classes"
                                                                    : ps.same_free             ? "same class"
                                                                                               : "different class") +
                                                        ", left free"
                                                  : ""));
  c.notes.push_back(fmt("distances replaced by 1 - P(same | similarity) + %.3f x distance / %.3f (the median kNN "
                        "distance: the order within a class, at the TPDi temperature); P(same) = 0.5 at similarity %.3f",
                        c.order_weight, c.order_scale, c.same.threshold()));
  return c;
}

KnnGraph apply_calibration(const KnnGraph& g, const Calibration& c) {
  KnnGraph out = g;
#pragma omp parallel for schedule(static) if (g.n > 5000)
  for (int64_t i = 0; i < g.n; ++i) {
    const int32_t* nb = g.nbr_row(i);
    float* d = out.dist_row(i);
    for (int j = 0; j < g.k; ++j) {
      if (nb[j] < 0) continue;
      const double raw = g.dist_row(i)[j];
      d[j] = nb[j] == i ? 0.f : static_cast<float>(1.0 - c.same(1.0 - raw) + c.order_weight * raw / c.order_scale);
      if (j > 0 && d[j] < d[j - 1]) d[j] = d[j - 1];  // keep rows sorted where self sits late
    }
  }
  return out;
}

double stable_tau(const Links& links, std::string* note, double depth) {
  const int bins = 200;  // 0.005 wide
  std::vector<int64_t> cum(bins + 1, 0);  // cum[b] = links with TPDi < b / bins
  for (size_t i = 0; i < links.parent.size(); ++i) {
    if (links.parent[i] < 0 || !std::isfinite(links.dist[i])) continue;
    const double t = std::clamp(static_cast<double>(links.dist[i]), 0.0, 1.0);
    cum[std::min(bins, static_cast<int>(std::ceil(t * bins)))] += 1;
  }
  for (int b = 1; b <= bins; ++b) cum[b] += cum[b - 1];
  // Links in the window of width 0.05 centred at b / bins.
  const int half = 5;
  auto window = [&](int b) { return cum[std::min(bins, b + half)] - cum[std::max(0, b - half)]; };
  const int lo = bins / 2, hi = bins * 95 / 100;
  const int64_t ref = window(lo - half);  // links with TPDi in [0.45, 0.5)
  int64_t least = window(lo);
  for (int b = lo; b <= hi; ++b) least = std::min(least, window(b));
  // Where the valley is: the middle of the first run at the minimum of windows twice as wide,
  // so that a few stray links inside a long empty stretch do not pin tau to its edge.
  auto wide = [&](int b) { return cum[std::min(bins, b + 2 * half)] - cum[std::max(0, b - 2 * half)]; };
  int64_t least_wide = wide(lo);
  for (int b = lo; b <= hi; ++b) least_wide = std::min(least_wide, wide(b));
  int first = lo;
  while (wide(first) != least_wide) ++first;
  int last = first;
  while (last + 1 <= hi && wide(last + 1) == least_wide) ++last;
  const double valley = (first + last) / 2.0 / bins;
  // Too few links below the midpoint at all: nothing to judge stability against. Few links just
  // below 0.5 but many further down is no reason to stop at 0.5: the same-identity links have
  // already thinned out, and a floor as low as the minimum count makes the valley deep.
  const bool judged = cum[lo] >= 20;
  const bool deep = judged && static_cast<double>(least) <= depth * static_cast<double>(std::max<int64_t>(ref, 20));
  // Without a deep valley: where the links thin out to the floor (at most twice the fewest).
  int floor_start = lo;
  while (floor_start < hi && window(floor_start) > 2 * least) ++floor_start;
  const double tau = !judged ? 0.5 : deep ? valley : static_cast<double>(floor_start) / bins;
  if (note) {
    if (!judged)
      *note = fmt("tau 0.5: too few links below the calibrated midpoint to judge stability (%.0f); "
                  "link when calibrated neighbourhoods overlap by more than half", double(cum[lo]));
    else if (deep)
      *note = fmt("tau %.3f: the clustering is most stable there (%.0f links per 0.05 of tau, against %.0f just "
                  "below 0.5)", valley, double(least), double(ref));
    else
      *note = fmt("tau %.3f: no deep stable plateau (at best %.0f links per 0.05 of tau, against %.0f just below 0.5); "
                  "link up to where the links thin out to that floor", tau, double(least), double(ref));
  }
  return tau;
}

}  // namespace facecluster
