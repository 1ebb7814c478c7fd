#include "components.h"

#include <algorithm>
#include <numeric>

namespace facecluster::mpi {

namespace {

// Each id's value where its holder keeps it (vals of the rows [lo, lo + vals.size())); ids ascending, once each.
std::vector<int64_t> values_of(Comm& c, const RowPartition& part, const std::vector<int64_t>& ids, int64_t lo,
                               const std::vector<int64_t>& vals) {
  return answer_asked<int64_t>(c, ask_holders(c, part, ids), lo, 1, [&](int64_t i) { return vals.data() + i; });
}

int64_t position(const std::vector<int64_t>& sorted, int64_t id) {
  return std::lower_bound(sorted.begin(), sorted.end(), id) - sorted.begin();
}

struct Proposal {
  int64_t row, label;
};

}  // namespace

Labels distributed_components(Comm& c, const RowPartition& part, const Links& own, int64_t lo, double tau, int64_t* rounds) {
  FC_CHECK(tau > 0 && tau <= 1, "tau must be in (0, 1], got " << tau);
  const int64_t n = static_cast<int64_t>(own.parent.size()) / own.max_conn;
  std::vector<int64_t> label(static_cast<size_t>(n));
  std::iota(label.begin(), label.end(), lo);
  // The links below tau: (own row, the other end's global id).
  std::vector<std::pair<int64_t, int64_t>> edges;
  for (int64_t i = 0; i < n; ++i)
    for (int m = 0; m < own.max_conn; ++m) {
      const int64_t e = i * own.max_conn + m;
      if (own.parent[e] >= 0 && own.dist[e] < tau) edges.emplace_back(i, own.parent[e]);
    }
  std::vector<int64_t> ends;
  for (const auto& e : edges) ends.push_back(e.second);
  ends = sorted_unique(std::move(ends));
  const auto here = [&](int64_t j) { return j >= lo && j < lo + n; };
  const auto labels_held_elsewhere = [&] {
    std::vector<int64_t> ids;
    for (int64_t l : label)
      if (!here(l)) ids.push_back(l);
    return sorted_unique(std::move(ids));
  };

  int64_t round = 0;
  for (;; ++round) {
    // Labels never grow and a path's length halves with each jump: ~log2 of the longest path.
    FC_CHECK(round < 200, "internal: connected components did not settle in 200 rounds");
    int64_t changed = 0;
    // Across each link: both ends take the smaller label (the far end's by a proposal to its holder).
    const std::vector<int64_t> far = values_of(c, part, ends, lo, label);
    std::vector<std::vector<Proposal>> propose(static_cast<size_t>(c.size()));
    for (const auto& [i, j] : edges) {
      const int64_t lj = far[static_cast<size_t>(position(ends, j))];
      const int64_t m = std::min(label[static_cast<size_t>(i)], lj);
      if (m < label[static_cast<size_t>(i)]) {
        label[static_cast<size_t>(i)] = m;
        ++changed;
      }
      if (m < lj) propose[static_cast<size_t>(part.owner(j))].push_back({j, m});
    }
    for (const auto& got : c.exchange(propose))
      for (const Proposal& p : got) {
        int64_t& l = label[static_cast<size_t>(p.row - lo)];
        if (p.label < l) {
          l = p.label;
          ++changed;
        }
      }
    // Pointer jumping: each row takes its label's label.
    const std::vector<int64_t> targets = labels_held_elsewhere();
    const std::vector<int64_t> jumped = values_of(c, part, targets, lo, label);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t l = label[static_cast<size_t>(i)];
      const int64_t ll = here(l) ? label[static_cast<size_t>(l - lo)] : jumped[static_cast<size_t>(position(targets, l))];
      if (ll < l) {
        label[static_cast<size_t>(i)] = ll;
        ++changed;
      }
    }
    if (c.all_reduce(changed, MPI_SUM) == 0) break;
  }
  if (rounds) *rounds = round + 1;

  // Number the components by their first rows: each process numbers the first rows it holds
  // after those of the processes before it.
  std::vector<int64_t> number(static_cast<size_t>(n), -1);
  int64_t firsts = 0;
  for (int64_t i = 0; i < n; ++i)
    if (label[static_cast<size_t>(i)] == lo + i) number[static_cast<size_t>(i)] = firsts++;
  const int64_t before = c.exclusive_sum(firsts);
  for (int64_t& v : number)
    if (v >= 0) v += before;
  const std::vector<int64_t> targets = labels_held_elsewhere();
  const std::vector<int64_t> far_number = values_of(c, part, targets, lo, number);
  Labels out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t l = label[static_cast<size_t>(i)];
    out[static_cast<size_t>(i)] = here(l) ? number[static_cast<size_t>(l - lo)] : far_number[static_cast<size_t>(position(targets, l))];
  }
  return out;
}

}  // namespace facecluster::mpi
