#include <unistd.h>

#include "facecluster/synth.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <sstream>

#include "facecluster/error.h"
#include "facecluster/metrics.h"

namespace facecluster {
namespace {

uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t z = a * 0x9E3779B97F4A7C15ULL + b + 0x632BE59BD9B4E019ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

void scale_to_unit(float* x, int64_t d) {
  double ss = 0;
  for (int64_t j = 0; j < d; ++j) ss += double(x[j]) * x[j];
  const float inv = static_cast<float>(1.0 / std::sqrt(ss));
  for (int64_t j = 0; j < d; ++j) x[j] *= inv;
}

void random_unit(std::mt19937_64& rng, float* out, int64_t d) {
  std::normal_distribution<float> nd(0.f, 1.f);
  for (int64_t j = 0; j < d; ++j) out[j] = nd(rng);
  scale_to_unit(out, d);
}

// A unit vector at cosine `c` from unit `base`.
void unit_at_cosine(std::mt19937_64& rng, const float* base, double c, float* out, int64_t d) {
  std::vector<float> u(static_cast<size_t>(d));
  random_unit(rng, u.data(), d);
  double dot = 0;
  for (int64_t j = 0; j < d; ++j) dot += double(u[j]) * base[j];
  double ss = 0;
  for (int64_t j = 0; j < d; ++j) {
    u[j] = static_cast<float>(u[j] - dot * base[j]);
    ss += double(u[j]) * u[j];
  }
  const double inv = ss > 0 ? 1.0 / std::sqrt(ss) : 0.0;
  const double s = std::sqrt(std::max(0.0, 1 - c * c));
  for (int64_t j = 0; j < d; ++j) out[j] = static_cast<float>(c * base[j] + s * u[j] * inv);
}

std::vector<int64_t> identity_sizes(const SynthOptions& opt, int64_t ids, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> uni(0, 1);
  std::normal_distribution<double> nd(0, 1);
  std::vector<int64_t> size(static_cast<size_t>(ids), 0);
  std::vector<double> weight(static_cast<size_t>(ids), 0);
  int64_t small_total = 0;
  double wsum = 0;
  for (int64_t c = 0; c < ids; ++c) {
    if (opt.single_share > 0 && uni(rng) < opt.single_share) {  // no draw at 0: older seeds keep their bytes
      size[c] = 1;
      small_total += 1;
    } else if (uni(rng) < opt.small_share) {
      size[c] = 1 + static_cast<int64_t>(uni(rng) * 5);
      small_total += size[c];
    } else {
      weight[c] = std::exp(opt.size_sigma * nd(rng));
      wsum += weight[c];
    }
  }
  const int64_t rest = opt.n - small_total;
  for (int64_t c = 0; c < ids; ++c)
    if (weight[c] > 0)
      size[c] = std::clamp<int64_t>(std::llround(weight[c] / wsum * double(std::max<int64_t>(rest, 0))), 1, opt.max_size);
  // Fix the total exactly: grow or shrink random identities within [1, max_size].
  int64_t total = std::accumulate(size.begin(), size.end(), int64_t{0});
  std::uniform_int_distribution<int64_t> pick(0, ids - 1);
  int64_t guard = 0;
  while (total != opt.n) {
    const int64_t c = pick(rng);
    if (total < opt.n && size[c] < opt.max_size && (weight[c] > 0 || ++guard > 50 * ids)) {
      ++size[c];
      ++total;
    } else if (total > opt.n && size[c] > 1) {
      --size[c];
      --total;
    }
  }
  return size;
}

// 1 / E[cos^2] of two independent directions normalize(sqrt(lambda) * g), g standard normal:
// the dimension d' in which uniformly random directions spread as much (their cos^2 averages
// 1 / d'). For Gaussian g, E[g_k^2 / sum_j lambda_j g_j^2] = c_k = integral over t > 0 of
// prod_j (1 + 2 t lambda_j)^(-1/2) / (1 + 2 t lambda_k), so E[cos^2] = sum_k lambda_k^2 c_k^2.
double spread_dimension(const std::vector<double>& lambda) {
  constexpr int kSteps = 1001;  // t = e^s, s in [-25, 25]: the integrand is negligible outside
  const double ds = 50.0 / (kSteps - 1);
  std::vector<double> c(lambda.size(), 0.0);
  for (int i = 0; i < kSteps; ++i) {
    const double t = std::exp(-25.0 + ds * i);
    double log_prod = 0;
    for (double l : lambda) log_prod -= 0.5 * std::log1p(2 * t * l);
    const double w = std::exp(log_prod) * t * ds;  // dt = t ds
    for (size_t k = 0; k < lambda.size(); ++k) c[k] += w / (1 + 2 * t * lambda[k]);
  }
  double e = 0;
  for (size_t k = 0; k < lambda.size(); ++k) e += lambda[k] * lambda[k] * c[k] * c[k];
  return 1.0 / e;
}

// Per-axis spreads sqrt(k^-alpha), k = 1..d, with alpha chosen so that the centres spread as
// random directions in `centre_dim` dimensions would. Cosines are rotation invariant, so
// axis-aligned anisotropy stands for any rotated one.
std::vector<float> centre_axis_spreads(int64_t d, double centre_dim) {
  auto spectrum = [d](double alpha) {
    std::vector<double> lambda(static_cast<size_t>(d));
    double sum = 0;
    for (int64_t k = 1; k <= d; ++k) sum += lambda[k - 1] = std::pow(double(k), -alpha);
    for (double& l : lambda) l /= sum;
    return lambda;
  };
  double lo = 0, hi = 16;  // the spread dimension falls from d at alpha 0 towards 1
  for (int it = 0; it < 40; ++it) {
    const double mid = 0.5 * (lo + hi);
    (spread_dimension(spectrum(mid)) > centre_dim ? lo : hi) = mid;
  }
  std::vector<float> spread(static_cast<size_t>(d));
  for (int64_t k = 1; k <= d; ++k) spread[k - 1] = static_cast<float>(std::pow(double(k), -0.5 * lo));
  return spread;
}

}  // namespace

SynthData make_synthetic(const SynthOptions& opt) {
  FC_CHECK(opt.n >= 1, "synth: number of faces must be >= 1, got " << opt.n);
  FC_CHECK(opt.dim >= 1 && opt.dim <= 65536, "synth: dimension must be in [1, 65536], got " << opt.dim);
  FC_CHECK(opt.n < (int64_t{1} << 31), "synth: at most 2^31 - 1 faces, got " << opt.n);
  {
    const double need = double(opt.n) * double(opt.dim) * 4.0 * 2.0;  // the features and one working copy
    const double have = double(::sysconf(_SC_PHYS_PAGES)) * double(::sysconf(_SC_PAGE_SIZE));
    FC_CHECK(have <= 0 || need < have, "synth: " << opt.n << " x " << opt.dim << " faces need about " << need / (1 << 30)
                                                 << " GiB; this machine has " << have / (1 << 30) << " GiB");
  }
  for (const auto& [name, share] : {std::pair<const char*, double>{"single_share", opt.single_share}, {"small_share", opt.small_share},
                                    {"two_mode_share", opt.two_mode_share},
                                    {"near_dup_share", opt.near_dup_share},
                                    {"mislabel_share", opt.mislabel_share}})
    FC_CHECK(share >= 0 && share <= 1, "synth: " << name << " is a share and must be in [0, 1], got " << share);
  FC_CHECK(opt.cos_min > 0 && opt.cos_max < 1 && opt.cos_min <= opt.cos_max,
           "synth: need 0 < cos_min <= cos_max < 1, got " << opt.cos_min << " and " << opt.cos_max);
  FC_CHECK(opt.max_size >= 1, "synth: max_size must be >= 1");
  FC_CHECK(opt.centre_dim == 0 || (opt.centre_dim >= 1 && opt.centre_dim <= double(opt.dim)),
           "synth: centre_dim must be 0 (isotropic) or in [1, dim = " << opt.dim << "], got " << opt.centre_dim);
  int64_t ids = opt.identities > 0 ? opt.identities : std::max<int64_t>(1, opt.n / 68);
  ids = std::min(ids, opt.n);
  FC_CHECK(ids * opt.max_size >= opt.n, "synth: " << ids << " identities of at most " << opt.max_size
                                                  << " faces cannot hold " << opt.n << " faces");
  const int64_t d = opt.dim;
  std::mt19937_64 rng(mix(opt.seed, 0));
  std::uniform_real_distribution<double> uni(0, 1);
  const std::vector<int64_t> size = identity_sizes(opt, ids, rng);

  // Identity centres, crowded into fewer effective dimensions when centre_dim is set (the same
  // draws either way, so isotropic seeds keep their bytes); a few are placed near an earlier
  // identity (near-duplicate pairs).
  Matrix centres(ids, d);
  const std::vector<float> spread = opt.centre_dim > 0 ? centre_axis_spreads(d, opt.centre_dim) : std::vector<float>{};
  for (int64_t c = 0; c < ids; ++c) {
    if (c > 0 && uni(rng) < opt.near_dup_share) {
      const int64_t other = static_cast<int64_t>(uni(rng) * c);
      unit_at_cosine(rng, centres.row(other), opt.near_dup_cos, centres.row(c), d);
    } else {
      float* mu = centres.row(c);
      random_unit(rng, mu, d);
      if (!spread.empty()) {
        for (int64_t j = 0; j < d; ++j) mu[j] *= spread[j];
        scale_to_unit(mu, d);
      }
    }
  }
  std::vector<double> target(static_cast<size_t>(ids));
  std::vector<char> two_mode(static_cast<size_t>(ids));
  for (int64_t c = 0; c < ids; ++c) {
    target[c] = opt.cos_min + (opt.cos_max - opt.cos_min) * uni(rng);
    two_mode[c] = uni(rng) < opt.two_mode_share;
  }
  // Rows are placed at shuffled positions so that files are not sorted by identity.
  std::vector<int64_t> perm(static_cast<size_t>(opt.n));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<int64_t> start(static_cast<size_t>(ids) + 1, 0);
  for (int64_t c = 0; c < ids; ++c) start[c + 1] = start[c] + size[c];

  SynthData out;
  out.features = Matrix(opt.n, d);
  out.labels.assign(static_cast<size_t>(opt.n), 0);
#pragma omp parallel for schedule(dynamic, 16) if (opt.n > 5000)
  for (int64_t c = 0; c < ids; ++c) {
    std::mt19937_64 r(mix(opt.seed, static_cast<uint64_t>(c) + 1));
    std::normal_distribution<float> nd(0.f, 1.f);
    std::uniform_real_distribution<double> u(0, 1);
    std::vector<float> mode_b(static_cast<size_t>(d));
    if (two_mode[c]) unit_at_cosine(r, centres.row(c), opt.mode_cos, mode_b.data(), d);
    // Two samples x = mu + s g (|g|^2 ~ d) have cosine ~ 1 / (1 + s^2 d).
    const float s = static_cast<float>(std::sqrt((1.0 / target[c] - 1.0) / double(d)));
    for (int64_t t = start[c]; t < start[c + 1]; ++t) {
      const int64_t row = perm[t];
      const float* mu = (two_mode[c] && u(r) < 0.5) ? mode_b.data() : centres.row(c);
      float* x = out.features.row(row);
      const float sf = s * std::exp(static_cast<float>(opt.quality_sigma) * nd(r));
      for (int64_t j = 0; j < d; ++j) x[j] = mu[j] + sf * nd(r);
      scale_to_unit(x, d);
      out.labels[row] = c;
    }
  }
  // Mislabelled faces: the label of a random other identity.
  if (ids > 1) {
    const int64_t flips = static_cast<int64_t>(opt.mislabel_share * double(opt.n));
    std::uniform_int_distribution<int64_t> prow(0, opt.n - 1), pid(0, ids - 2);
    for (int64_t f = 0; f < flips; ++f) {
      const int64_t row = prow(rng);
      int64_t l = pid(rng);
      if (l >= out.labels[row]) ++l;
      out.labels[row] = l;
    }
  }
  if (opt.cos_map != "none" && !opt.cos_map.empty()) apply_cosine_map(out.features, opt.cos_map, opt.seed);
  return out;
}

void apply_cosine_map(Matrix& m, const std::string& spec, uint64_t seed) {
  std::stringstream ss(spec);
  std::string part;
  while (std::getline(ss, part, ',')) {
    if (part.empty() || part == "none") continue;
    const size_t colon = part.find(':');
    const std::string kind = part.substr(0, colon);
    double v = 0;
    if (colon != std::string::npos) {
      char* end = nullptr;
      v = std::strtod(part.c_str() + colon + 1, &end);
      FC_CHECK(end && *end == '\0', "cosine map " << quote_input(part) << ": the value is not a number");
    }
    if (kind == "offset") {
      FC_CHECK(colon != std::string::npos && v > 0 && v < 1, "cosine map " << quote_input(part) << ": offset needs 0 < A < 1");
      Matrix out(m.rows, m.cols + 1);
      const float a = static_cast<float>(std::sqrt(1 - v)), b = static_cast<float>(std::sqrt(v));
      for (int64_t i = 0; i < m.rows; ++i) {
        for (int64_t j = 0; j < m.cols; ++j) out.row(i)[j] = a * m.row(i)[j];
        out.row(i)[m.cols] = b;
      }
      m = std::move(out);
    } else if (kind == "noise") {
      FC_CHECK(colon != std::string::npos && v > 0, "cosine map " << quote_input(part) << ": noise needs S > 0");
      const int64_t extra = m.cols;
      Matrix out(m.rows, m.cols + extra);
      const float scale = static_cast<float>(v / std::sqrt(double(extra)));
#pragma omp parallel for schedule(static) if (m.rows > 10000)
      for (int64_t i = 0; i < m.rows; ++i) {
        std::mt19937_64 r(mix(seed ^ 0xC05u, static_cast<uint64_t>(i)));
        std::normal_distribution<float> nd(0.f, 1.f);
        float* o = out.row(i);
        double s2 = 0;
        for (int64_t j = 0; j < m.cols; ++j) {
          o[j] = m.row(i)[j];
          s2 += double(o[j]) * o[j];
        }
        for (int64_t j = 0; j < extra; ++j) {
          o[m.cols + j] = scale * nd(r);
          s2 += double(o[m.cols + j]) * o[m.cols + j];
        }
        const float inv = static_cast<float>(1.0 / std::sqrt(s2));
        for (int64_t j = 0; j < out.cols; ++j) o[j] *= inv;
      }
      m = std::move(out);
    } else {
      FC_FAIL("unknown cosine map " << quote_input(part) << "; expected none, offset:A or noise:S");
    }
  }
}

SynthStats measure_synthetic(const Matrix& x, const Labels& labels, uint64_t seed) {
  const ClassCosines cc = class_mean_cosines(x, labels);
  SynthStats st;
  st.n = x.rows;
  const int64_t nc = static_cast<int64_t>(cc.size.size()), d = x.cols;
  st.identities = nc;
  std::vector<int64_t> sorted = cc.size;
  std::sort(sorted.begin(), sorted.end());
  auto q = [&](double p) { return sorted[static_cast<size_t>(std::min<double>(double(nc - 1), p * double(nc)))]; };
  st.size_min = sorted.front();
  st.size_p50 = q(0.5);
  st.size_p90 = q(0.9);
  st.size_p99 = q(0.99);
  st.size_max = sorted.back();
  st.share_ids_1_to_5 = double(std::count_if(cc.size.begin(), cc.size.end(), [](int64_t s) { return s <= 5; })) / double(nc);
  std::vector<double> within;
  for (double v : cc.mean_cosine)
    if (!std::isnan(v)) within.push_back(v);
  if (!within.empty()) {
    std::sort(within.begin(), within.end());
    st.within_cos_p05 = within[static_cast<size_t>(0.05 * double(within.size() - 1))];
    st.within_cos_p95 = within[static_cast<size_t>(0.95 * double(within.size() - 1))];
    st.within_cos_mean = std::accumulate(within.begin(), within.end(), 0.0) / double(within.size());
  }
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> pick(0, x.rows - 1);
  std::vector<double> cross;
  for (int t = 0; t < 200000 && x.rows > 1 && nc > 1; ++t) {
    const int64_t a = pick(rng), b = pick(rng);
    if (labels[a] == labels[b]) continue;
    double dot = 0;
    for (int64_t j = 0; j < d; ++j) dot += double(x.row(a)[j]) * x.row(b)[j];
    cross.push_back(dot);
  }
  if (!cross.empty()) {
    st.cross_cos_mean = std::accumulate(cross.begin(), cross.end(), 0.0) / double(cross.size());
    std::sort(cross.begin(), cross.end());
    st.cross_cos_p99 = cross[static_cast<size_t>(0.99 * double(cross.size() - 1))];
  }
  return st;
}

std::string format_synth_stats(const SynthStats& s) {
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "faces %lld, identities %lld\n"
                "identity size: min %lld, median %lld, p90 %lld, p99 %lld, max %lld; identities with 1-5 faces: %.1f%%\n"
                "within-identity mean cosine (identities with >= 2 faces): p5 %.3f, mean %.3f, p95 %.3f\n"
                "different-identity cosine (random pairs): mean %.3f, p99 %.3f\n",
                (long long)s.n, (long long)s.identities, (long long)s.size_min, (long long)s.size_p50,
                (long long)s.size_p90, (long long)s.size_p99, (long long)s.size_max, 100 * s.share_ids_1_to_5,
                s.within_cos_p05, s.within_cos_mean, s.within_cos_p95, s.cross_cos_mean, s.cross_cos_p99);
  return buf;
}

}  // namespace facecluster
