// Shared test helpers: temporary folders, fixture paths, random graphs.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <random>
#include <string>

#include "facecluster/types.h"

namespace fctest {
namespace fs = std::filesystem;

inline std::string fixture(const std::string& name) { return std::string(FC_FIXTURE_DIR) + "/" + name; }
inline std::string shared_data(const std::string& name) { return std::string(FC_SHARED_DATA_DIR) + "/" + name; }

// A fresh temporary folder removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("fctest_" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  // Names of the files inside (to check that nothing half-written was left behind).
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (auto& e : fs::directory_iterator(path_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  fs::path path_;
};

// A random valid graph: distances drawn from a few discrete levels (so ties happen), optional
// duplicate rows (distance-0 twins), self usually first but sometimes behind a zero-distance twin.
inline facecluster::KnnGraph random_graph(int64_t n, int k, uint64_t seed, bool with_ties = true) {
  std::mt19937_64 rng(seed);
  facecluster::KnnGraph g(n, k);
  std::uniform_int_distribution<int64_t> pick(0, n - 1);
  std::uniform_int_distribution<int> level(1, with_ties ? 6 : 1000000);
  for (int64_t i = 0; i < n; ++i) {
    std::vector<int64_t> others;
    while (static_cast<int>(others.size()) < k - 1) {
      const int64_t j = pick(rng);
      if (j != i && std::find(others.begin(), others.end(), j) == others.end()) others.push_back(j);
    }
    std::vector<float> d(static_cast<size_t>(k - 1));
    for (auto& v : d) v = static_cast<float>(level(rng)) / (with_ties ? 6.f : 1e6f);
    std::sort(d.begin(), d.end());
    const bool twin_first = (rng() % 7) == 0;
    if (twin_first) d[0] = 0.f;
    int32_t* nb = g.nbr_row(i);
    float* dist = g.dist_row(i);
    int pos = 0;
    if (twin_first) {
      nb[pos] = static_cast<int32_t>(others[0]);
      dist[pos++] = 0.f;
      nb[pos] = static_cast<int32_t>(i);
      dist[pos++] = 0.f;
      for (int j = 1; j < k - 1; ++j, ++pos) {
        nb[pos] = static_cast<int32_t>(others[j]);
        dist[pos] = d[j];
      }
    } else {
      nb[pos] = static_cast<int32_t>(i);
      dist[pos++] = 0.f;
      for (int j = 0; j < k - 1; ++j, ++pos) {
        nb[pos] = static_cast<int32_t>(others[j]);
        dist[pos] = d[j];
      }
    }
  }
  return g;
}

}  // namespace fctest
