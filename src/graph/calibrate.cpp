#include "facecluster/calibrate.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <utility>

#include "facecluster/error.h"
#include "facecluster/log.h"

namespace facecluster {
namespace {

double normal_pdf(double x, double mean, double sd) {
  const double z = (x - mean) / sd;
  return std::exp(-0.5 * z * z) / (sd * 2.5066282746310002);
}

// The two classes' weighted densities at similarity s: (same weight x same pdf, the same for
// "different"); Bayes' rule divides the first by their sum.
std::pair<double, double> class_densities(const Mixture& m, double s) {
  return {m.same_weight * m.same_pdf(s), (1 - m.same_weight) * m.diff_pdf(s)};
}

std::string fmt(const char* f, double a, double b = 0, double c = 0, double d = 0, double e = 0) {
  char buf[512];
  std::snprintf(buf, sizeof buf, f, a, b, c, d, e);
  return buf;
}

// One class's two Gaussians at s, each weighted by its share (the second has `share`).
std::pair<double, double> class_parts(double s, double mean, double sd, double share, double second_mean,
                                      double second_sd) {
  return {(1 - share) * normal_pdf(s, mean, sd), share > 0 ? share * normal_pdf(s, second_mean, second_sd) : 0.0};
}

}  // namespace

std::pair<double, double> Mixture::same_parts(double s) const {
  return class_parts(s, same_mean, same_sd, loose_share, loose_mean, loose_sd);
}

std::pair<double, double> Mixture::diff_parts(double s) const {
  return class_parts(s, diff_mean, diff_sd, tail_share, tail_mean, tail_sd);
}

double Mixture::same_pdf(double s) const {
  const auto [tight, loose] = same_parts(s);
  return tight + loose;
}

double Mixture::diff_pdf(double s) const {
  const auto [core, tail] = diff_parts(s);
  return core + tail;
}

int overlap_bin(double overlap) {
  // Shares are multiples of 1 / k; the tolerance puts one that float rounding left a hair under
  // a bin edge on the edge.
  return std::clamp(static_cast<int>(std::floor(overlap * kOverlapBins + 1e-6)), 0, kOverlapBins - 1);
}

float clamped_log_odds(double p) {
  p = std::clamp(p, kMinPairProbability, 1 - kMinPairProbability);
  return static_cast<float>(std::log(p / (1 - p)));
}

namespace {

// One pair under a fit: P(same | s, overlap), and the shares of its same-class weight in the
// loose part and of its stranger weight in the upper part (the E-step within each class). All
// from the same four densities, once.
struct PairTerms {
  double same = 0, loose = 0, tail = 0;
};
PairTerms pair_terms(const TwoViewMixture& f, double s, double overlap) {
  const Mixture& m = f.similarity;
  const auto [tight, loose] = m.same_parts(s);
  const auto [core, tail] = m.diff_parts(s);
  const size_t bin = static_cast<size_t>(overlap_bin(overlap));
  const double a = m.same_weight * (tight + loose) * f.overlap_same[bin];
  const double b = (1 - m.same_weight) * (core + tail) * f.overlap_diff[bin];
  PairTerms t;
  t.same = a + b > 0 ? a / (a + b) : (s > (m.same_mean + m.diff_mean) / 2 ? 1.0 : 0.0);
  t.loose = tight + loose > 0 ? loose / (tight + loose) : (s < m.same_mean ? 1.0 : 0.0);
  if (m.tail_share > 0) t.tail = core + tail > 0 ? tail / (core + tail) : (s > m.diff_mean ? 1.0 : 0.0);
  return t;
}

}  // namespace

double TwoViewMixture::posterior(double s, double overlap) const { return pair_terms(*this, s, overlap).same; }

namespace {

// EM from responsibilities r (one per pair, P(same)) until they settle; returns the fit of the
// last M-step. `f` holds the parameters each class is split by (the same class's tight and
// loose parts; with stranger_tail the strangers' core and upper part); before the first fit
// (same_sd 0) the same pairs are split at similarity `first_split`, and before the strangers have
// an upper part they are split at `first_tail_split`.
TwoViewMixture run_two_view_em(const std::vector<float>& s, const std::vector<float>& overlap, std::vector<double>& r,
                               TwoViewMixture f, double first_split, double first_tail_split, bool stranger_tail,
                               double min_sd, int max_iter) {
  const size_t n = s.size();
  std::vector<int> bin(n);
  for (size_t i = 0; i < n; ++i)
    bin[i] = overlap_bin(overlap[i]);
  const bool first = f.similarity.same_sd <= 0;
  std::vector<double> split(n);  // each pair's share of its same-class weight in the loose part
  std::vector<double> upper(n);  // and of its stranger weight in the upper part (0 without a tail)
  for (size_t i = 0; i < n; ++i) {
    const PairTerms t = first ? PairTerms{} : pair_terms(f, s[i], overlap[i]);
    split[i] = first ? (s[i] < first_split ? 1.0 : 0.0) : t.loose;
    upper[i] = !stranger_tail ? 0.0 : f.similarity.tail_share <= 0 ? (s[i] >= first_tail_split ? 1.0 : 0.0) : t.tail;
  }
  f.overlap_same.assign(kOverlapBins, 0);
  f.overlap_diff.assign(kOverlapBins, 0);
  for (int it = 0; it < max_iter; ++it) {
    check_interrupt();
    Mixture& m = f.similarity;
    // M-step: class weight, two Gaussians for the same class and one or two for strangers over
    // similarity, a histogram per class for overlap (one pseudo-count per bin, so no bin is
    // impossible for either class).
    double w1 = 0, s1 = 0, wl = 0, sl = 0, w0 = 0, s0 = 0, wt = 0, st = 0;
    std::vector<double> h1(kOverlapBins, 1.0), h0(kOverlapBins, 1.0);
    for (size_t i = 0; i < n; ++i) {
      const double loose = r[i] * split[i], tight = r[i] - loose;
      const double tail = (1 - r[i]) * upper[i], core = (1 - r[i]) - tail;
      w1 += tight, s1 += tight * s[i], wl += loose, sl += loose * s[i], w0 += core, s0 += core * s[i];
      wt += tail, st += tail * s[i];
      h1[bin[i]] += r[i], h0[bin[i]] += 1 - r[i];
    }
    m.same_weight = std::clamp((w1 + wl) / double(n), 1e-4, 1 - 1e-4);
    m.loose_share = w1 + wl > 1e-9 ? wl / (w1 + wl) : 0.0;
    m.tail_share = w0 + wt > 1e-9 ? wt / (w0 + wt) : 0.0;
    m.same_mean = w1 > 1e-9 ? s1 / w1 : m.same_mean;
    m.loose_mean = wl > 1e-9 ? sl / wl : m.loose_mean;
    m.diff_mean = w0 > 1e-9 ? s0 / w0 : m.diff_mean;
    m.tail_mean = wt > 1e-9 ? st / wt : m.tail_mean;
    double v1 = 0, vl = 0, v0 = 0, vt = 0;
    for (size_t i = 0; i < n; ++i) {
      const double loose = r[i] * split[i], tail = (1 - r[i]) * upper[i];
      v1 += (r[i] - loose) * (s[i] - m.same_mean) * (s[i] - m.same_mean);
      vl += loose * (s[i] - m.loose_mean) * (s[i] - m.loose_mean);
      v0 += ((1 - r[i]) - tail) * (s[i] - m.diff_mean) * (s[i] - m.diff_mean);
      vt += tail * (s[i] - m.tail_mean) * (s[i] - m.tail_mean);
    }
    m.same_sd = std::max(min_sd, std::sqrt(w1 > 1e-9 ? v1 / w1 : 0.0));
    m.loose_sd = std::max(min_sd, std::sqrt(wl > 1e-9 ? vl / wl : 0.0));
    m.diff_sd = std::max(min_sd, std::sqrt(w0 > 1e-9 ? v0 / w0 : 0.0));
    m.tail_sd = std::max(min_sd, std::sqrt(wt > 1e-9 ? vt / wt : 0.0));
    const double t1 = std::accumulate(h1.begin(), h1.end(), 0.0), t0 = std::accumulate(h0.begin(), h0.end(), 0.0);
    for (int b = 0; b < kOverlapBins; ++b) f.overlap_same[b] = h1[b] / t1, f.overlap_diff[b] = h0[b] / t0;
    m.iterations = it + 1;
    // E-step: P(same) and the split within the class, from the new parameters.
    double change = 0;
#pragma omp parallel for schedule(static) reduction(max : change) if (n > 50000)
    for (size_t i = 0; i < n; ++i) {
      const PairTerms t = pair_terms(f, s[i], overlap[i]);
      change = std::max(change, std::fabs(t.same - r[i]));
      r[i] = t.same, split[i] = t.loose, upper[i] = t.tail;
    }
    if (change < 1e-6) break;
  }
  return f;
}

}  // namespace

namespace {

// What both fits start from. EM settles on a subsample (every stride-th pair, about 200K) and is
// then refined on all pairs. Start: pairs sharing at least half their lists are the same person,
// under a tenth strangers, the rest undecided (same_share 1 / 0 / 0.5); the start-same pairs are
// split at their median similarity (tight above, loose or middle below). Spreads are floored at
// 1/200 of the 5-95% similarity range.
struct EmStart {
  size_t stride = 1;
  std::vector<float> sub_s, sub_o;
  std::vector<double> same_share;  // per subsampled pair
  double split = 0, min_sd = 0;
};
EmStart em_start(const std::vector<float>& s, const std::vector<float>& overlap) {
  FC_CHECK(s.size() >= 10, "calibration needs at least 10 similarity values, got " << s.size());
  FC_CHECK(overlap.size() == s.size(), "calibration: " << overlap.size() << " overlaps for " << s.size() << " similarity values");
  EmStart e;
  std::vector<float> sorted = s;
  std::sort(sorted.begin(), sorted.end());
  e.min_sd = std::max(1e-4, double(sorted[sorted.size() * 95 / 100] - sorted[sorted.size() * 5 / 100])) / 200;
  e.stride = std::max<size_t>(1, s.size() / 200000);
  for (size_t i = 0; i < s.size(); i += e.stride) e.sub_s.push_back(s[i]), e.sub_o.push_back(overlap[i]);
  std::vector<float> start_same;
  for (size_t i = 0; i < e.sub_s.size(); ++i) {
    const float o = e.sub_o[i];
    e.same_share.push_back(o >= kStartSameOverlap ? 1.0 : o < kStartDiffOverlap ? 0.0 : 0.5);
    if (e.same_share.back() > 0.5) start_same.push_back(e.sub_s[i]);
  }
  if (start_same.empty()) start_same = e.sub_s;
  std::nth_element(start_same.begin(), start_same.begin() + start_same.size() / 2, start_same.end());
  e.split = start_same[start_same.size() / 2];
  return e;
}

// Keeps "same" the higher-similarity class and each class's parts in order (the tight part and
// the strangers' upper part above).
void normalize_two_view(TwoViewMixture& f, bool stranger_tail) {
  Mixture& m = f.similarity;
  if (stranger_tail && m.same_class_mean() < m.diff_class_mean()) {  // swap the classes, part for part
    std::swap(m.same_mean, m.tail_mean), std::swap(m.same_sd, m.tail_sd);  // upper parts
    std::swap(m.loose_mean, m.diff_mean), std::swap(m.loose_sd, m.diff_sd);  // lower parts
    const double loose_share = 1 - m.tail_share, tail_share = 1 - m.loose_share;
    m.loose_share = loose_share, m.tail_share = tail_share;
    std::swap(f.overlap_same, f.overlap_diff);
    m.same_weight = 1 - m.same_weight;
  }
  if (m.loose_share > 0 && m.loose_mean > m.same_mean) {  // keep the tight part the upper one
    std::swap(m.same_mean, m.loose_mean);
    std::swap(m.same_sd, m.loose_sd);
    m.loose_share = 1 - m.loose_share;
  }
  if (m.tail_share > 0 && m.tail_mean < m.diff_mean) {  // and the strangers' upper part theirs
    std::swap(m.diff_mean, m.tail_mean);
    std::swap(m.diff_sd, m.tail_sd);
    m.tail_share = 1 - m.tail_share;
  }
  if (!stranger_tail && m.same_class_mean() < m.diff_mean) {  // keep "same" as the higher-similarity class
    // The class fitted as two Gaussians becomes "different": one Gaussian with its moments.
    const double mean = m.same_class_mean(), q = m.loose_share;
    const double var = (1 - q) * (m.same_sd * m.same_sd + (m.same_mean - mean) * (m.same_mean - mean)) +
                       q * (m.loose_sd * m.loose_sd + (m.loose_mean - mean) * (m.loose_mean - mean));
    m.same_mean = m.diff_mean, m.same_sd = m.diff_sd, m.loose_share = 0;
    m.diff_mean = mean, m.diff_sd = std::sqrt(var);
    std::swap(f.overlap_same, f.overlap_diff);
    m.same_weight = 1 - m.same_weight;
  }
}

// EM on the subsample from responsibilities r, then refined on all pairs.
TwoViewMixture two_view_em(const std::vector<float>& s, const std::vector<float>& overlap, const EmStart& st,
                           std::vector<double>& r, const TwoViewMixture& from, double tail_split, bool stranger_tail) {
  TwoViewMixture f = run_two_view_em(st.sub_s, st.sub_o, r, from, st.split, tail_split, stranger_tail, st.min_sd, 500);
  if (st.stride > 1) {
    std::vector<double> all(s.size());
    for (size_t i = 0; i < s.size(); ++i) all[i] = f.posterior(s[i], overlap[i]);
    f = run_two_view_em(s, overlap, all, f, st.split, tail_split, stranger_tail, st.min_sd, 50);
  }
  return f;
}

// With stranger_tail, the fit with one Gaussian for strangers is fitted first and the strangers'
// upper part then grows from it: its stranger pairs split at their median similarity (core
// below, upper part above). Started from the anchors directly, the upper part starts with half of
// every undecided pair and can end holding a large identity's loose pairs (a worse optimum: on
// the shape of Calibrate.KeepsTheLoosePairsOfTheSamePersonWithIt, log-likelihood -73761 against
// -70810 from the nested start).
TwoViewMixture two_view_from(const std::vector<float>& s, const std::vector<float>& overlap, const EmStart& st,
                             bool stranger_tail) {
  std::vector<double> r = st.same_share;
  TwoViewMixture f = two_view_em(s, overlap, st, r, TwoViewMixture{}, 0.0, false);
  normalize_two_view(f, false);
  if (!stranger_tail) return f;
  std::vector<float> strangers;
  for (size_t i = 0; i < st.sub_s.size(); ++i) {
    r[i] = f.posterior(st.sub_s[i], st.sub_o[i]);
    if (r[i] < 0.5) strangers.push_back(st.sub_s[i]);
  }
  if (strangers.empty()) return f;
  std::nth_element(strangers.begin(), strangers.begin() + strangers.size() / 2, strangers.end());
  f = two_view_em(s, overlap, st, r, f, strangers[strangers.size() / 2], true);
  normalize_two_view(f, true);
  return f;
}

}  // namespace

TwoViewMixture fit_two_view(const std::vector<float>& s, const std::vector<float>& overlap, bool stranger_tail) {
  return two_view_from(s, overlap, em_start(s, overlap), stranger_tail);
}

void ThreePartMixture::responsibilities(double s, double overlap, double out[kParts]) const {
  const size_t bin = static_cast<size_t>(overlap_bin(overlap));
  double total = 0;
  for (int c = 0; c < kParts; ++c)
    total += out[c] = part[c].weight * normal_pdf(s, part[c].mean, part[c].sd) * part[c].overlap[bin];
  for (int c = 0; c < kParts; ++c) out[c] = total > 0 ? out[c] / total : (c == kParts - 1 ? 1.0 : 0.0);
}

namespace {

// EM for the three parts from responsibilities r (kParts per pair) until they settle.
ThreePartMixture run_three_part_em(const std::vector<float>& s, const std::vector<float>& overlap, std::vector<double>& r,
                                   double min_sd, int max_iter) {
  constexpr int P = ThreePartMixture::kParts;
  const size_t n = s.size();
  std::vector<int> bin(n);
  for (size_t i = 0; i < n; ++i) bin[i] = overlap_bin(overlap[i]);
  ThreePartMixture f;
  for (int it = 0; it < max_iter; ++it) {
    check_interrupt();
    // M-step in one pass: each part's weight, moments about its previous mean, and overlap
    // histogram (one pseudo-count per bin, as in the two-class fit).
    // Summed in fixed chunks, then the chunks in order: the same fit whatever the thread count.
    double shift[P];
    for (int c = 0; c < P; ++c) shift[c] = f.part[c].mean;
    constexpr size_t kChunk = size_t{1} << 15;
    constexpr int kSums = P * (3 + kOverlapBins);  // per part: weight, d1, d2, then the histogram
    const size_t chunks = (n + kChunk - 1) / kChunk;
    std::vector<double> partial(chunks * kSums, 0.0);
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (size_t ch = 0; ch < chunks; ++ch) {
      double* acc = &partial[ch * kSums];
      for (size_t i = ch * kChunk; i < std::min(n, (ch + 1) * kChunk); ++i)
        for (int c = 0; c < P; ++c) {
          const double ri = r[i * P + c], d = s[i] - shift[c];
          acc[c] += ri, acc[P + c] += ri * d, acc[2 * P + c] += ri * d * d, acc[3 * P + c * kOverlapBins + bin[i]] += ri;
        }
    }
    double w[P] = {}, d1[P] = {}, d2[P] = {};
    std::vector<double> h(P * kOverlapBins, 1.0);
    for (size_t ch = 0; ch < chunks; ++ch) {
      const double* acc = &partial[ch * kSums];
      for (int c = 0; c < P; ++c) w[c] += acc[c], d1[c] += acc[P + c], d2[c] += acc[2 * P + c];
      for (int b = 0; b < P * kOverlapBins; ++b) h[static_cast<size_t>(b)] += acc[3 * P + b];
    }
    for (int c = 0; c < P; ++c) {
      ThreePartMixture::Part& q = f.part[c];
      const double mean_shift = w[c] > 1e-9 ? d1[c] / w[c] : 0.0;
      q.mean = shift[c] + mean_shift;
      q.sd = std::max(min_sd, std::sqrt(w[c] > 1e-9 ? std::max(0.0, d2[c] / w[c] - mean_shift * mean_shift) : 0.0));
      q.weight = std::max(w[c] / double(n), 1e-9);
      const double t = std::accumulate(h.begin() + c * kOverlapBins, h.begin() + (c + 1) * kOverlapBins, 0.0);
      q.overlap.resize(kOverlapBins);
      for (int b = 0; b < kOverlapBins; ++b) q.overlap[b] = h[c * kOverlapBins + b] / t;
    }
    double change = 0;
#pragma omp parallel for schedule(static) reduction(max : change) if (n > 50000)
    for (size_t i = 0; i < n; ++i) {
      double next[P];
      f.responsibilities(s[i], overlap[i], next);
      for (int c = 0; c < P; ++c) change = std::max(change, std::fabs(next[c] - r[i * P + c])), r[i * P + c] = next[c];
    }
    if (change < 1e-6) break;
  }
  return f;
}

// From the two-class fit's start, its same pairs split in two.
ThreePartMixture three_part_from(const std::vector<float>& s, const std::vector<float>& overlap, const EmStart& st) {
  constexpr int P = ThreePartMixture::kParts;
  std::vector<double> r(st.sub_s.size() * P);
  for (size_t i = 0; i < st.sub_s.size(); ++i) {
    const double same = st.same_share[i];
    r[i * P + 0] = st.sub_s[i] >= st.split ? same : 0.0;
    r[i * P + 1] = st.sub_s[i] >= st.split ? 0.0 : same;
    r[i * P + 2] = 1 - same;
  }
  ThreePartMixture f = run_three_part_em(st.sub_s, st.sub_o, r, st.min_sd, 500);
  if (st.stride > 1) {
    r.assign(s.size() * P, 0.0);
    for (size_t i = 0; i < s.size(); ++i) f.responsibilities(s[i], overlap[i], &r[i * P]);
    f = run_three_part_em(s, overlap, r, st.min_sd, 50);
  }
  std::sort(std::begin(f.part), std::end(f.part),
            [](const ThreePartMixture::Part& x, const ThreePartMixture::Part& y) { return x.mean > y.mean; });
  return f;
}

}  // namespace

ThreePartMixture fit_three_part(const std::vector<float>& s, const std::vector<float>& overlap) {
  return three_part_from(s, overlap, em_start(s, overlap));
}

SameProbability::SameProbability(const Mixture& m, double lo, double hi) : lo_(lo), hi_(std::max(hi, lo + 1e-9)) {
  const int bins = 4096;
  table_.resize(bins + 1);
  double run = 0;
  threshold_ = hi_;
  bool crossed = false;
  auto posterior = [&](double x) {
    const auto [a, c] = class_densities(m, x);
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

// The ids of a few neighbour lists, for membership tests (open addressing, at most half full).
class RowSet {
 public:
  explicit RowSet(int capacity) {
    size_t cap = 16;
    while (cap < 2 * static_cast<size_t>(capacity)) cap *= 2;
    slot_.assign(cap, -1);
  }
  void clear() { std::fill(slot_.begin(), slot_.end(), -1); }
  void add(const int32_t* ids, int k) {
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

}  // namespace

int64_t calibration_row_stride(int64_t n, int k) { return std::max<int64_t>(1, n * k / 2000000); }

std::vector<int64_t> calibration_sampled_rows(int64_t first_row, int64_t count, int64_t n, int k) {
  const int64_t row_stride = calibration_row_stride(n, k);
  std::vector<int64_t> sampled;
  for (int64_t i = (first_row + row_stride - 1) / row_stride * row_stride; i < first_row + count; i += row_stride)
    sampled.push_back(i - first_row);
  return sampled;
}

PairSample sample_pairs(const KnnGraph& rows, int64_t first_row, int64_t n, const NeighbourLookup& nbrs_of) {
  const int k = rows.k;
  const std::vector<int64_t> sampled = calibration_sampled_rows(first_row, rows.n, n, k);
  std::vector<std::vector<float>> sims(sampled.size()), overlaps(sampled.size());
  std::vector<std::vector<int32_t>> others(sampled.size());
  std::atomic<bool> interrupted{false};  // an exception may not leave the parallel loop
#pragma omp parallel if (sampled.size() > 2000)
  {
    RowSet members((kOverlapReach + 1) * k);
#pragma omp for schedule(dynamic, 64)
    for (size_t r = 0; r < sampled.size(); ++r) {
      if (interrupted.load(std::memory_order_relaxed)) continue;
      if ((r & 1023) == 0 && omp_get_thread_num() == 0 && interrupt_requested()) interrupted = true;
      const int64_t i = first_row + sampled[r];
      const int32_t* nb = rows.nbr_row(sampled[r]);
      const float* d = rows.dist_row(sampled[r]);
      // i's neighbourhood: its list and the lists of its kOverlapReach nearest other faces.
      members.clear();
      members.add(nb, k);
      for (int j = 0, reached = 0; j < k && reached < kOverlapReach; ++j)
        if (nb[j] >= 0 && nb[j] != i) members.add(nbrs_of(nb[j]), k), ++reached;
      for (int j = 0; j < k; ++j) {
        if (nb[j] < 0 || nb[j] == i) continue;
        const int32_t* other = nbrs_of(nb[j]);
        int shared = 0;
        for (int l = 0; l < k; ++l) shared += other[l] >= 0 && members.contains(other[l]);
        sims[r].push_back(1.f - d[j]);
        overlaps[r].push_back(static_cast<float>(shared) / static_cast<float>(k));
        others[r].push_back(nb[j]);
      }
    }
  }
  if (interrupted) throw Interrupted();
  PairSample out;
  for (size_t r = 0; r < sampled.size(); ++r) {
    out.a.insert(out.a.end(), others[r].size(), static_cast<int32_t>(first_row + sampled[r]));
    out.b.insert(out.b.end(), others[r].begin(), others[r].end());
    out.sim.insert(out.sim.end(), sims[r].begin(), sims[r].end());
    out.overlap.insert(out.overlap.end(), overlaps[r].begin(), overlaps[r].end());
  }
  return out;
}

SimilarityRange similarity_range(const KnnGraph& rows, int64_t first_row) {
  SimilarityRange range;
  for (int64_t r = 0; r < rows.n; ++r) {
    const int32_t* nb = rows.nbr_row(r);
    const float* d = rows.dist_row(r);
    for (int j = 0; j < rows.k; ++j) {
      if (nb[j] < 0 || nb[j] == first_row + r) continue;
      range.lo = std::min(range.lo, 1.f - d[j]);
      range.hi = std::max(range.hi, 1.f - d[j]);
    }
  }
  return range;
}

Calibration calibrate_graph(const KnnGraph& g, const GraphParams& base) {
  const PairSample ps = sample_pairs(g, 0, g.n, [&](int32_t j) { return g.nbr_row(j); });
  return calibration_from_sample(ps, similarity_range(g, 0), base);
}

Calibration calibration_from_sample(const PairSample& ps, const SimilarityRange& range, const GraphParams& base) {
  const float lo = range.lo, hi = range.hi;
  const std::vector<float>& sim = ps.sim;
  FC_CHECK(static_cast<int64_t>(sim.size()) >= kMinCalibrationPairs,
           "calibration: the graph has too few neighbour pairs (" << sim.size() << "; " << kMinCalibrationPairs
                                                                  << " needed): give --calibrate off with a --tau");
  Calibration c;
  const EmStart start = em_start(sim, ps.overlap);  // one start for both fits
  c.fit = two_view_from(sim, ps.overlap, start, true);
  {
    std::vector<float> dist(sim.size());
    for (size_t i = 0; i < sim.size(); ++i) dist[i] = 1.f - sim[i];
    std::nth_element(dist.begin(), dist.begin() + dist.size() / 2, dist.end());
    c.order_scale = std::max(1e-6, double(dist[dist.size() / 2]));
    c.order_weight = base.tpdi_sigma;
  }
  c.same = SameProbability(c.fit.similarity, lo, hi);
  c.params = base;
  c.pairs.resize(sim.size());
  c.three_part = three_part_from(sim, ps.overlap, start);
  c.part_shares.resize(sim.size());
  double expected_same = 0;
  for (size_t i = 0; i < sim.size(); ++i) {
    const double p = c.fit.posterior(sim[i], ps.overlap[i]);
    c.pairs[i] = {ps.a[i], ps.b[i], clamped_log_odds(p)};
    expected_same += std::clamp(p, kMinPairProbability, 1 - kMinPairProbability);
    double part[ThreePartMixture::kParts];
    c.three_part.responsibilities(sim[i], ps.overlap[i], part);
    c.part_shares[i] = {static_cast<float>(part[0]), static_cast<float>(part[1])};
  }
  const Mixture& m = c.fit.similarity;
  c.notes.push_back(fmt("pair mixture (similarity and shared neighbours): same identity, tight pairs mean %.3f sd %.3f "
                        "(%.0f%%) and ",
                        m.same_mean, m.same_sd, 100 * (1 - m.loose_share)) +
                    fmt("loose pairs mean %.3f sd %.3f (%.0f%%), ", m.loose_mean, m.loose_sd, 100 * m.loose_share) +
                    fmt("strangers mean %.3f sd %.3f (%.0f%%) and ", m.diff_mean, m.diff_sd, 100 * (1 - m.tail_share)) +
                    fmt("upper part mean %.3f sd %.3f (%.0f%%), same share %.2f", m.tail_mean, m.tail_sd,
                        100 * m.tail_share, m.same_weight));
  auto typical_overlap = [](const std::vector<double>& h) {
    double mean = 0;
    for (size_t b = 0; b < h.size(); ++b) mean += h[b] * (double(b) + 0.5) / double(h.size());
    return mean;
  };
  c.notes.push_back(fmt("of %.0f sampled neighbour pairs, %.0f are expected to be the same person; %.2f of one's list "
                        "lies in the other's neighbourhood on average for them, %.2f for strangers",
                        double(sim.size()), expected_same, typical_overlap(c.fit.overlap_same),
                        typical_overlap(c.fit.overlap_diff)));
  c.notes.push_back(fmt("distances replaced by -2s log(P + (1 - P) exp(-1/(2s))), P = P(same | similarity), s = %.3f "
                        "(the TPDi temperature: each neighbour's square-root transition weight, what TPDi adds up, is "
                        "its expected value over the two classes) + %.3f x distance / %.3f (the median kNN distance: "
                        "the order within a class); P(same) = 0.5 at similarity %.3f",
                        c.params.tpdi_sigma, c.order_weight, c.order_scale, c.same.threshold()));
  c.decision = fmt("distances calibrated: %.0f%% of %.0f sampled neighbour pairs look like the same person; "
                   "even odds at similarity %.3f",
                   100 * expected_same / double(sim.size()), double(sim.size()), c.same.threshold());
  return c;
}

KnnGraph apply_calibration(const KnnGraph& g, const Calibration& c, int64_t first_row) {
  KnnGraph out = g;
  calibrate_distances(out, c, first_row);
  return out;
}

namespace {
// expected_root_weight_distance at one temperature, with a stranger's square-root weight
// exp(-1 / (2 sigma)) computed once per graph rather than once per entry.
struct ExpectedRootWeight {
  double sigma, stranger_root;
  explicit ExpectedRootWeight(double temperature) : sigma(temperature), stranger_root(std::exp(-0.5 / temperature)) {}
  double distance(double p_same) const { return -2 * sigma * std::log(p_same + (1 - p_same) * stranger_root); }
};
}  // namespace

double expected_root_weight_distance(double p_same, double sigma) { return ExpectedRootWeight(sigma).distance(p_same); }

DistanceMap distance_map(const Calibration& c) {
  DistanceMap m;
  m.similarity = c.fit.similarity;
  m.lo = c.same.lo();
  m.hi = c.same.hi();
  m.order_weight = c.order_weight;
  m.order_scale = c.order_scale;
  m.params = c.params;
  return m;
}

Calibration calibration_from_map(const DistanceMap& m) {
  Calibration c;
  c.fit.similarity = m.similarity;
  c.same = SameProbability(m.similarity, m.lo, m.hi);
  c.order_weight = m.order_weight;
  c.order_scale = m.order_scale;
  c.params = m.params;
  return c;
}

namespace {
// Row `self`'s distances d (its list nb) calibrated in place.
void calibrate_row(const int32_t* nb, float* d, int k, int64_t self, const Calibration& c, const ExpectedRootWeight& root_weight) {
  for (int j = 0; j < k; ++j) {
    if (nb[j] < 0) continue;
    const double raw = d[j];
    // The row itself, and a twin at raw distance 0 (the same embedding), stay at 0.
    d[j] = nb[j] == self || raw <= 0
               ? 0.f
               : static_cast<float>(root_weight.distance(c.same(1.0 - raw)) + c.order_weight * raw / c.order_scale);
    if (j > 0 && d[j] < d[j - 1]) d[j] = d[j - 1];  // keep rows sorted where self sits late
  }
}
}  // namespace

void calibrate_distances(KnnGraph& g, const Calibration& c, int64_t first_row) {
  const ExpectedRootWeight root_weight(c.params.tpdi_sigma);
#pragma omp parallel for schedule(static) if (g.n > 5000)
  for (int64_t i = 0; i < g.n; ++i) calibrate_row(g.nbr_row(i), g.dist_row(i), g.k, first_row + i, c, root_weight);
}

void calibrate_rows(const KnnGraph& g, const Calibration& c, const std::vector<int64_t>& rows, std::vector<float>& out) {
  FC_CHECK(out.size() == g.dists.size(), "internal: " << out.size() << " calibrated distances for a graph of " << g.dists.size());
  const ExpectedRootWeight root_weight(c.params.tpdi_sigma);
  const int64_t k = g.k, count = static_cast<int64_t>(rows.size());
#pragma omp parallel for schedule(static) if (count > 5000)
  for (int64_t r = 0; r < count; ++r) {
    const int64_t i = rows[static_cast<size_t>(r)];
    float* d = out.data() + i * k;
    std::copy(g.dist_row(i), g.dist_row(i) + k, d);
    calibrate_row(g.nbr_row(i), d, g.k, i, c, root_weight);
  }
}

int64_t neighbour_pairs(const KnnGraph& g) {
  int64_t pairs = 0;
  for (int64_t i = 0; i < g.n; ++i)
    for (int a = 0; a < g.k; ++a) pairs += g.nbr_row(i)[a] >= 0 && g.nbr_row(i)[a] != i;
  return pairs;
}

namespace {

// For each pair, the first step (tau = step / kSteps) whose clustering puts its two faces
// together; kSteps if none does. One pass: links are added in order of the first step that
// keeps them; to find the pairs a union joins, every component keeps a list of its pairs' ends
// and a union walks the smaller list only (each end is walked O(log P) times), so the cost is
// O(N + P log P) instead of one labelling per step.
std::vector<int32_t> pair_join_steps(const Links& links, const std::vector<PairEvidence>& pairs) {
  FC_CHECK(!pairs.empty(), "internal: the likelihood cut needs calibrated pairs");
  constexpr int kSteps = LikelihoodCurve::kSteps;
  const int64_t n = static_cast<int64_t>(links.parent.size()) / links.max_conn;
  const int64_t np = static_cast<int64_t>(pairs.size());
  FC_CHECK(2 * np < (int64_t{1} << 31), "internal: too many calibrated pairs (" << np << ")");
  auto first_step = [](float d) {  // the first step whose tau keeps a link at distance d (d < tau)
    if (!(d < 1.0f)) return kSteps;
    int step = std::max(1, static_cast<int>(std::floor(double(d) * kSteps)) + 1);
    while (step < kSteps && !(double(d) < step / double(kSteps))) ++step;
    while (step > 1 && double(d) < (step - 1) / double(kSteps)) --step;
    return step;
  };
  std::vector<std::vector<std::pair<int32_t, int32_t>>> added(kSteps);  // links by the step that keeps them
  for (int64_t e = 0; e < static_cast<int64_t>(links.parent.size()); ++e) {
    const int32_t j = links.parent[static_cast<size_t>(e)];
    if (j < 0) continue;
    const int step = first_step(links.dist[static_cast<size_t>(e)]);
    if (step < kSteps) added[static_cast<size_t>(step)].emplace_back(static_cast<int32_t>(e / links.max_conn), j);
  }
  std::vector<int32_t> root(static_cast<size_t>(n)), head(static_cast<size_t>(n), -1), tail(static_cast<size_t>(n), -1),
      ends(static_cast<size_t>(n), 0), next(static_cast<size_t>(2 * np), -1);
  std::iota(root.begin(), root.end(), 0);
  auto find = [&](int32_t x) {
    while (root[static_cast<size_t>(x)] != x) {
      root[static_cast<size_t>(x)] = root[static_cast<size_t>(root[static_cast<size_t>(x)])];
      x = root[static_cast<size_t>(x)];
    }
    return x;
  };
  for (int64_t q = 0; q < 2 * np; ++q) {  // end q: pair q / 2, at its face a (q even) or b (q odd)
    const PairEvidence& e = pairs[static_cast<size_t>(q / 2)];
    const int32_t v = q % 2 == 0 ? e.a : e.b;
    FC_CHECK(v >= 0 && v < n, "internal: calibrated pair names face " << v << " of " << n);
    if (tail[static_cast<size_t>(v)] < 0) head[static_cast<size_t>(v)] = static_cast<int32_t>(q);
    else next[static_cast<size_t>(tail[static_cast<size_t>(v)])] = static_cast<int32_t>(q);
    tail[static_cast<size_t>(v)] = static_cast<int32_t>(q);
    ++ends[static_cast<size_t>(v)];
  }
  std::vector<int32_t> join_step(static_cast<size_t>(np), kSteps);
  for (int step = 1; step < kSteps; ++step) {
    for (const auto& [i, j] : added[static_cast<size_t>(step)]) {
      int32_t big = find(i), small = find(j);
      if (big == small) continue;
      if (ends[static_cast<size_t>(big)] < ends[static_cast<size_t>(small)]) std::swap(big, small);
      for (int32_t q = head[static_cast<size_t>(small)]; q >= 0; q = next[static_cast<size_t>(q)]) {
        const PairEvidence& e = pairs[static_cast<size_t>(q / 2)];
        if (find(q % 2 == 0 ? e.b : e.a) == big) join_step[static_cast<size_t>(q / 2)] = step;
      }
      if (head[static_cast<size_t>(small)] >= 0) {
        if (tail[static_cast<size_t>(big)] < 0) head[static_cast<size_t>(big)] = head[static_cast<size_t>(small)];
        else next[static_cast<size_t>(tail[static_cast<size_t>(big)])] = head[static_cast<size_t>(small)];
        tail[static_cast<size_t>(big)] = tail[static_cast<size_t>(small)];
      }
      ends[static_cast<size_t>(big)] += ends[static_cast<size_t>(small)];
      root[static_cast<size_t>(small)] = big;
    }
  }
  return join_step;
}

}  // namespace

namespace {

// Every tau = step / 200 gives a clustering (the links below it); each is scored by the
// log-likelihood of the sampled pairs: log P(same) over pairs put together, log P(different)
// over pairs kept apart, which up to a constant is the sum of the log-odds of the pairs put
// together.
LikelihoodCurve curve_from_join_steps(const std::vector<int32_t>& join_step, const std::vector<PairEvidence>& pairs) {
  FC_CHECK(join_step.size() == pairs.size(), "internal: " << join_step.size() << " join steps for " << pairs.size() << " pairs");
  constexpr int kSteps = LikelihoodCurve::kSteps;
  std::vector<double> gain(kSteps + 1, 0.0);  // log-odds of the pairs joined at each step
  std::vector<int64_t> joined(kSteps + 1, 0);
  for (size_t q = 0; q < pairs.size(); ++q)
    gain[static_cast<size_t>(join_step[q])] += pairs[q].log_odds, ++joined[static_cast<size_t>(join_step[q])];
  LikelihoodCurve c;
  c.log_likelihood.assign(kSteps, 0.0);
  c.together.assign(kSteps, 0);
  for (int step = 1; step < kSteps; ++step) {
    c.log_likelihood[static_cast<size_t>(step)] = c.log_likelihood[static_cast<size_t>(step - 1)] + gain[static_cast<size_t>(step)];
    c.together[static_cast<size_t>(step)] = c.together[static_cast<size_t>(step - 1)] + joined[static_cast<size_t>(step)];
  }
  return c;
}

double tau_of_curve(const LikelihoodCurve& c, size_t pairs, std::string* note) {
  int best = 1;
  for (int step = 2; step < LikelihoodCurve::kSteps; ++step)
    if (c.log_likelihood[static_cast<size_t>(step)] > c.log_likelihood[static_cast<size_t>(best)]) best = step;
  const double tau = best / double(LikelihoodCurve::kSteps);
  if (note)
    *note = fmt("tau %.3f: the clustering most likely under the calibrated pair probabilities (it puts %.0f of the %.0f "
                "sampled neighbour pairs together)",
                tau, double(c.together[static_cast<size_t>(best)]), double(pairs));
  return tau;
}

}  // namespace

LikelihoodCurve likelihood_curve(const Links& links, const std::vector<PairEvidence>& pairs) {
  return curve_from_join_steps(pair_join_steps(links, pairs), pairs);
}

CutEvidence cut_evidence(const Links& links, const Calibration& c, std::string* note) {
  FC_CHECK(c.part_shares.size() == c.pairs.size(), "internal: " << c.part_shares.size() << " part shares for "
                                                                 << c.pairs.size() << " calibrated pairs");
  constexpr int kSteps = LikelihoodCurve::kSteps;
  std::vector<int32_t> join_step = pair_join_steps(links, c.pairs);
  auto pair_probability = [&](size_t i, double theta) {
    return std::clamp(double(c.part_shares[i].first) + theta * double(c.part_shares[i].second), kMinPairProbability,
                      1 - kMinPairProbability);
  };
  // For each theta, the log-likelihood of the pairs under the best clustering on the path: every
  // pair apart (the sum of log(1 - P)) plus the best running sum of the log-odds joined by a step.
  std::vector<double> best_at(kMiddleShareSteps + 1);
#pragma omp parallel for schedule(dynamic, 1) if (c.pairs.size() > 100000)
  for (int t = 0; t <= kMiddleShareSteps; ++t) {
    const double theta = t / double(kMiddleShareSteps);
    std::vector<double> gain(kSteps + 1, 0.0);
    double apart = 0;
    for (size_t i = 0; i < c.pairs.size(); ++i) {
      const double p = pair_probability(i, theta), log_apart = std::log1p(-p);
      apart += log_apart;
      gain[static_cast<size_t>(join_step[i])] += std::log(p) - log_apart;
    }
    double run = 0, best = -HUGE_VAL;
    for (int step = 1; step < kSteps; ++step) best = std::max(best, run += gain[static_cast<size_t>(step)]);
    best_at[static_cast<size_t>(t)] = apart + best;
  }
  const int best_t = static_cast<int>(std::max_element(best_at.begin(), best_at.end()) - best_at.begin());
  const double joint_share = best_t / double(kMiddleShareSteps);
  // The two-class fit's own share: its mean same-person probability over the middle part.
  double middle_mass = 0, middle_same = 0;
  for (size_t i = 0; i < c.pairs.size(); ++i) {
    middle_mass += c.part_shares[i].second;
    middle_same += c.part_shares[i].second / (1 + std::exp(-double(c.pairs[i].log_odds)));
  }
  const double fit_share = middle_mass > 0 ? middle_same / middle_mass : 0;
  const bool middle_is_same = best_at.back() > best_at.front();
  CutEvidence out{middle_is_same ? 0.5 * (joint_share + fit_share) : fit_share, middle_is_same, c.pairs,
                  std::move(join_step)};
  for (size_t i = 0; i < out.pairs.size(); ++i) out.pairs[i].log_odds = clamped_log_odds(pair_probability(i, out.middle_share));
  if (note) {
    const ThreePartMixture::Part& mid = c.three_part.part[1];
    *note = fmt("three-part fit: tight pairs mean %.3f (%.0f%%), ", c.three_part.part[0].mean, 100 * c.three_part.part[0].weight) +
            fmt("middle part mean %.3f sd %.3f (%.0f%%), ", mid.mean, mid.sd, 100 * mid.weight) +
            fmt("strangers mean %.3f (%.0f%%); ", c.three_part.part[2].mean, 100 * c.three_part.part[2].weight) +
            "read as the same person, the middle part explains the pairs " + (out.middle_is_same ? "better" : "worse") +
            " than read as strangers " +
            fmt("(best clustering's log-likelihood %.0f against %.0f): ", best_at.back(), best_at.front()) +
            (out.middle_is_same ? fmt("its share of same-person pairs is %.3f, midway between the share by maximum "
                                      "likelihood with the clustering (%.2f) and the two-class fit's own (%.3f)",
                                      out.middle_share, joint_share, fit_share)
                                : fmt("its share of same-person pairs is the two-class fit's own, %.3f", fit_share));
  }
  return out;
}

double likelihood_tau(const Links& links, const std::vector<PairEvidence>& pairs, std::string* note) {
  return tau_of_curve(likelihood_curve(links, pairs), pairs.size(), note);
}

double likelihood_tau(const CutEvidence& e, std::string* note) {
  return tau_of_curve(curve_from_join_steps(e.join_step, e.pairs), e.pairs.size(), note);
}

}  // namespace facecluster
