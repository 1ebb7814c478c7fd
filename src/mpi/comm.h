// MPI for the distributed run (private to src/mpi): the row partition, typed collectives over
// std::vector, the bytes each process sends per stage, and the rule that a failure on any
// process ends every process with one message.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "facecluster/error.h"

namespace facecluster::mpi {

// Rows [first(r), first(r + 1)) belong to process r: consecutive, as even as can be; with
// align > 1, each slice starts at a multiple of align (the even cut rounded up), and a slice
// may be empty.
struct RowPartition {
  int64_t n = 0;
  int parts = 1;
  int64_t align = 1;
  int64_t first(int r) const {
    const int64_t even = n * r / parts;
    return align == 1 ? even : std::min(n, (even + align - 1) / align * align);
  }
  int64_t count(int r) const { return first(r + 1) - first(r); }
  int owner(int64_t row) const;
};

class Comm {
 public:
  Comm();
  int rank() const { return rank_; }
  int size() const { return size_; }
  MPI_Comm handle() const { return MPI_COMM_WORLD; }

  // Runs f (work of this process only, no collective inside) and then agrees with every process
  // on whether all succeeded. When one failed, the lowest failing process rethrows its error and
  // every other one throws FailedElsewhere, so all leave together and one message is printed.
  template <class F>
  void step(F&& f) {
    std::exception_ptr err;
    try {
      f();
    } catch (...) {
      err = std::current_exception();
    }
    agree(err);
  }
  bool failure_agreed() const { return failure_agreed_; }

  // Bytes this process sent, by stage name (for the scale report).
  void count_sent(const std::string& stage, int64_t bytes) { sent_[stage] += bytes; }
  const std::map<std::string, int64_t>& sent() const { return sent_; }
  std::string stage = "setup";  // the stage the collectives below are counted under

  // Every process's `mine`, joined in rank order (so in row order when each holds its rows).
  template <class T>
  std::vector<T> allgather(const std::vector<T>& mine);
  // Process 0 gets every process's `mine` joined in rank order; the others get nothing.
  template <class T>
  std::vector<T> gather_to_root(const std::vector<T>& mine);
  // send[r] goes to process r; returns what each process sent here, by source rank.
  template <class T>
  std::vector<std::vector<T>> exchange(const std::vector<std::vector<T>>& send);

  // v combined over every process by op (MPI_MIN, MPI_MAX, ...).
  float all_reduce(float v, MPI_Op op);
  int64_t all_reduce(int64_t v, MPI_Op op);
  // Process 0 gets the element-wise sum of every process's v (all the same length); the others get v.
  std::vector<int64_t> sum_to_root(const std::vector<int64_t>& v);
  // The sum of v over the processes before this one (0 on process 0).
  int64_t exclusive_sum(int64_t v);

 private:
  void agree(const std::exception_ptr& err);
  // Counts of `bytes` per process with their displacements, checked to fit MPI's int.
  static std::vector<int> as_counts(const std::vector<int64_t>& bytes, std::vector<int>* displs, const char* what);

  int rank_ = 0, size_ = 1;
  bool failure_agreed_ = false;
  std::map<std::string, int64_t> sent_;
};

template <class T>
std::vector<T> Comm::allgather(const std::vector<T>& mine) {
  static_assert(std::is_trivially_copyable_v<T>);
  int64_t my_bytes = static_cast<int64_t>(mine.size() * sizeof(T));
  std::vector<int64_t> bytes(static_cast<size_t>(size_));
  MPI_Allgather(&my_bytes, 1, MPI_INT64_T, bytes.data(), 1, MPI_INT64_T, handle());
  std::vector<int> displs;
  const std::vector<int> counts = as_counts(bytes, &displs, "allgather");
  int64_t total = 0;
  for (int64_t b : bytes) total += b;
  std::vector<T> out(static_cast<size_t>(total / static_cast<int64_t>(sizeof(T))));
  MPI_Allgatherv(mine.data(), static_cast<int>(my_bytes), MPI_BYTE, out.data(), counts.data(), displs.data(), MPI_BYTE,
                 handle());
  count_sent(stage, my_bytes * (size_ - 1));
  return out;
}

template <class T>
std::vector<T> Comm::gather_to_root(const std::vector<T>& mine) {
  static_assert(std::is_trivially_copyable_v<T>);
  int64_t my_bytes = static_cast<int64_t>(mine.size() * sizeof(T));
  std::vector<int64_t> bytes(static_cast<size_t>(size_));
  MPI_Gather(&my_bytes, 1, MPI_INT64_T, bytes.data(), 1, MPI_INT64_T, 0, handle());
  std::vector<int> displs, counts;
  int64_t total = 0;
  if (rank_ == 0) {
    counts = as_counts(bytes, &displs, "gather");
    for (int64_t b : bytes) total += b;
  }
  std::vector<T> out(static_cast<size_t>(total / static_cast<int64_t>(sizeof(T))));
  MPI_Gatherv(mine.data(), static_cast<int>(my_bytes), MPI_BYTE, out.data(), counts.data(), displs.data(), MPI_BYTE, 0,
              handle());
  if (rank_ != 0) count_sent(stage, my_bytes);
  return out;
}

template <class T>
std::vector<std::vector<T>> Comm::exchange(const std::vector<std::vector<T>>& send) {
  static_assert(std::is_trivially_copyable_v<T>);
  std::vector<int64_t> send_bytes(static_cast<size_t>(size_)), recv_bytes(static_cast<size_t>(size_));
  std::vector<T> flat;
  for (int r = 0; r < size_; ++r) {
    send_bytes[static_cast<size_t>(r)] = static_cast<int64_t>(send[static_cast<size_t>(r)].size() * sizeof(T));
    flat.insert(flat.end(), send[static_cast<size_t>(r)].begin(), send[static_cast<size_t>(r)].end());
    if (r != rank_) count_sent(stage, send_bytes[static_cast<size_t>(r)]);
  }
  MPI_Alltoall(send_bytes.data(), 1, MPI_INT64_T, recv_bytes.data(), 1, MPI_INT64_T, handle());
  std::vector<int> sdispls, rdispls;
  const std::vector<int> scounts = as_counts(send_bytes, &sdispls, "exchange");
  const std::vector<int> rcounts = as_counts(recv_bytes, &rdispls, "exchange");
  int64_t total = 0;
  for (int64_t b : recv_bytes) total += b;
  std::vector<T> got(static_cast<size_t>(total / static_cast<int64_t>(sizeof(T))));
  MPI_Alltoallv(flat.data(), scounts.data(), sdispls.data(), MPI_BYTE, got.data(), rcounts.data(), rdispls.data(), MPI_BYTE,
                handle());
  std::vector<std::vector<T>> out(static_cast<size_t>(size_));
  for (int r = 0; r < size_; ++r) {
    const auto* at = got.data() + rdispls[static_cast<size_t>(r)] / static_cast<int>(sizeof(T));
    out[static_cast<size_t>(r)].assign(at, at + rcounts[static_cast<size_t>(r)] / static_cast<int>(sizeof(T)));
  }
  return out;
}

// Ids in the order ask_holders wants them: ascending, once each.
inline std::vector<int64_t> sorted_unique(std::vector<int64_t> ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

// Sends each id (ascending, once each) to the process holding it; returns, per process, the ids
// it asked of this one.
inline std::vector<std::vector<int64_t>> ask_holders(Comm& c, const RowPartition& part, const std::vector<int64_t>& ids) {
  std::vector<std::vector<int64_t>> ask(static_cast<size_t>(c.size()));
  for (int64_t j : ids) ask[static_cast<size_t>(part.owner(j))].push_back(j);
  return c.exchange(ask);
}

// Answers what every process asked (ask_holders) with `width` values per row, row_of(local row)
// pointing at them; returns the answers to this process's own ask. Its ids ascend and holders
// hold ascending ranges, so the answers joined by holder are in id order.
template <class T, class RowOf>
std::vector<T> answer_asked(Comm& c, const std::vector<std::vector<int64_t>>& asked, int64_t lo, int64_t width,
                            RowOf row_of) {
  std::vector<std::vector<T>> out(static_cast<size_t>(c.size()));
  for (int r = 0; r < c.size(); ++r)
    for (int64_t j : asked[static_cast<size_t>(r)]) {
      const T* row = row_of(j - lo);
      out[static_cast<size_t>(r)].insert(out[static_cast<size_t>(r)].end(), row, row + width);
    }
  std::vector<T> joined;
  for (const auto& got : c.exchange(out)) joined.insert(joined.end(), got.begin(), got.end());
  return joined;
}

}  // namespace facecluster::mpi
