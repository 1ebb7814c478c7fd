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

Mixture fit_mixture(const std::vector<float>& s) {
  FC_CHECK(s.size() >= 10, "calibration needs at least 10 similarity values, got " << s.size());
  std::vector<float> sorted = s;
  std::sort(sorted.begin(), sorted.end());
  auto q = [&](double p) { return double(sorted[static_cast<size_t>(p * double(sorted.size() - 1))]); };
  const double spread = std::max(1e-4, q(0.95) - q(0.05));
  // Start EM from Otsu's split of the histogram (robust when one side dominates the counts).
  const int bins = 256;
  const double lo = sorted.front(), hi = std::max(double(sorted.back()), lo + 1e-6);
  std::vector<double> hist(bins, 0.0);
  for (float v : s) hist[std::min(bins - 1, static_cast<int>((v - lo) / (hi - lo) * bins))] += 1;
  double total = 0, total_mu = 0;
  for (int b = 0; b < bins; ++b) {
    total += hist[b];
    total_mu += hist[b] * (b + 0.5);
  }
  double w0 = 0, mu0 = 0, best = -1;
  int split = bins / 2;
  for (int b = 0; b < bins - 1; ++b) {
    w0 += hist[b];
    mu0 += hist[b] * (b + 0.5);
    const double w1 = total - w0;
    if (w0 <= 0 || w1 <= 0) continue;
    const double m0 = mu0 / w0, m1 = (total_mu - mu0) / w1;
    const double between = w0 * w1 * (m0 - m1) * (m0 - m1);
    if (between > best) {
      best = between;
      split = b + 1;
    }
  }
  const double cut = lo + (hi - lo) * split / bins;
  double a0 = 0, a1 = 0, q0 = 0, q1 = 0, c0 = 0, c1 = 0;
  for (float v : s) {
    if (v < cut) a0 += v, q0 += double(v) * v, c0 += 1;
    else a1 += v, q1 += double(v) * v, c1 += 1;
  }
  Mixture m;
  m.diff_mean = c0 > 0 ? a0 / c0 : q(0.3);
  m.same_mean = c1 > 0 ? a1 / c1 : q(0.9);
  m.diff_sd = c0 > 1 ? std::sqrt(std::max(1e-12, q0 / c0 - m.diff_mean * m.diff_mean)) : spread / 4;
  m.same_sd = c1 > 1 ? std::sqrt(std::max(1e-12, q1 / c1 - m.same_mean * m.same_mean)) : spread / 4;
  m.same_weight = std::clamp(c1 / double(s.size()), 0.01, 0.99);
  const double min_sd = spread / 200;
  const size_t n = s.size();
  for (int it = 0; it < 500; ++it) {
    double w1 = 0, s1 = 0, ss1 = 0, w0 = 0, s0 = 0, ss0 = 0;
    for (size_t i = 0; i < n; ++i) {
      const double x = s[i];
      const double a = m.same_weight * normal_pdf(x, m.same_mean, m.same_sd);
      const double b = (1 - m.same_weight) * normal_pdf(x, m.diff_mean, m.diff_sd);
      const double r = a + b > 0 ? a / (a + b) : (x > (m.same_mean + m.diff_mean) / 2 ? 1.0 : 0.0);
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
  for (int b = 0; b <= bins; ++b) {
    const double x = lo_ + (hi_ - lo_) * b / bins;
    const double a = m.same_weight * normal_pdf(x, m.same_mean, m.same_sd);
    const double c = (1 - m.same_weight) * normal_pdf(x, m.diff_mean, m.diff_sd);
    double p = a + c > 0 ? a / (a + c) : (x > m.same_mean ? 1.0 : 0.0);
    if (x >= m.same_mean) p = std::max(p, 0.5);  // far tails: stay on the same side
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

}  // namespace facecluster
