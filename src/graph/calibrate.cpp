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
Mixture run_em(const std::vector<float>& s, Mixture m, double min_sd, int max_iter, double* loglik) {
  const size_t n = s.size();
  double ll = 0;
  for (int it = 0; it < max_iter; ++it) {
    double w1 = 0, s1 = 0, ss1 = 0, w0 = 0, s0 = 0, ss0 = 0;
    ll = 0;
    for (size_t i = 0; i < n; ++i) {
      const double x = s[i];
      const double a = m.same_weight * normal_pdf(x, m.same_mean, m.same_sd);
      const double b = (1 - m.same_weight) * normal_pdf(x, m.diff_mean, m.diff_sd);
      const double r = a + b > 0 ? a / (a + b) : (x > (m.same_mean + m.diff_mean) / 2 ? 1.0 : 0.0);
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

Mixture fit_mixture(const std::vector<float>& s) {
  FC_CHECK(s.size() >= 10, "calibration needs at least 10 similarity values, got " << s.size());
  std::vector<float> sorted = s;
  std::sort(sorted.begin(), sorted.end());
  auto q = [&](double p) { return double(sorted[static_cast<size_t>(p * double(sorted.size() - 1))]); };
  const double spread = std::max(1e-4, q(0.95) - q(0.05));
  const double min_sd = spread / 200;
  // Several starts (splits at quantiles) on a subsample; the most likely fit is refined on all
  // values. One start is not enough: with one identity size dominating the kNN lists, a single
  // split can lock EM onto two halves of the same-identity mass.
  std::vector<float> sub;
  const size_t stride = std::max<size_t>(1, s.size() / 100000);
  for (size_t i = 0; i < s.size(); i += stride) sub.push_back(s[i]);
  Mixture best;
  double best_ll = -1e300;
  for (double p : {0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}) {
    double ll = 0;
    const Mixture m = run_em(sub, split_start(sub, q(p), spread / 4), min_sd, 150, &ll);
    if (ll > best_ll) best_ll = ll, best = m;
  }
  double ll = 0;
  Mixture m = run_em(s, best, min_sd, 300, &ll);
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

Calibration calibrate_graph(const KnnGraph& g, const GraphParams& base) {
  // Similarities of every real, non-self pair; a deterministic stride keeps at most ~2M.
  const int64_t total = g.n * g.k;
  const int64_t stride = std::max<int64_t>(1, total / 2000000);
  std::vector<float> sim;
  sim.reserve(static_cast<size_t>(total / stride + 1));
  float lo = 1e30f, hi = -1e30f;
  for (int64_t i = 0; i < g.n; ++i) {
    const int32_t* nb = g.nbr_row(i);
    const float* d = g.dist_row(i);
    for (int j = 0; j < g.k; ++j) {
      if (nb[j] < 0 || nb[j] == i) continue;
      const float s = 1.f - d[j];
      lo = std::min(lo, s);
      hi = std::max(hi, s);
      if ((i * g.k + j) % stride == 0) sim.push_back(s);
    }
  }
  FC_CHECK(sim.size() >= 10, "calibration: the graph has too few neighbour pairs (" << sim.size() << ")");
  Calibration c;
  c.mixture = fit_mixture(sim);
  c.same = SameProbability(c.mixture, lo, hi);
  c.params = base;
  const Mixture& m = c.mixture;
  c.notes.push_back(fmt("similarity mixture: same identity mean %.3f sd %.3f, different mean %.3f sd %.3f, same share %.2f",
                        m.same_mean, m.same_sd, m.diff_mean, m.diff_sd, m.same_weight));
  c.notes.push_back(fmt("distances replaced by 1 - P(same | similarity); P(same) = 0.5 at similarity %.3f",
                        c.same.threshold()));
  // On the calibrated scale TPDi = 1 - (overlap of two faces' same-identity neighbourhoods);
  // the midpoint 0.5 is the start; stable_tau() refines it once the links exist.
  c.tau = 0.5;
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
      d[j] = nb[j] == i ? 0.f : static_cast<float>(1.0 - c.same(1.0 - double(g.dist_row(i)[j])));
      if (j > 0 && d[j] < d[j - 1]) d[j] = d[j - 1];  // keep rows sorted where self sits late
    }
  }
  return out;
}

double stable_tau(const Links& links, std::string* note, double depth) {
  const int bins = 200;  // 0.005 wide
  std::vector<int64_t> cum(bins + 1, 0);  // cum[b] = links with TPDi < b / bins
  for (size_t i = 0; i < links.parent.size(); ++i) {
    if (links.parent[i] < 0) continue;
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
  // The middle of the first run of windows at the minimum.
  int first = lo;
  while (window(first) != least) ++first;
  int last = first;
  while (last + 1 <= hi && window(last + 1) == least) ++last;
  const double valley = (first + last) / 2.0 / bins;
  const bool deep = ref >= 20 && static_cast<double>(least) <= depth * static_cast<double>(ref);
  if (note)
    *note = deep ? fmt("tau %.3f: the clustering is most stable there (%.0f links per 0.05 of tau, against %.0f just "
                       "below 0.5)", valley, double(least), double(ref))
                 : fmt("tau 0.5: no stable plateau above the calibrated midpoint (at best %.0f links per 0.05 of tau, "
                       "against %.0f just below 0.5); link when calibrated neighbourhoods overlap by more than half",
                       double(least), double(ref));
  return deep ? valley : 0.5;
}

}  // namespace facecluster
