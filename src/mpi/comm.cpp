#include "comm.h"

#include <algorithm>

namespace facecluster::mpi {

int RowPartition::owner(int64_t row) const {
  // The owner is the largest r with first(r) <= row (the even cut's owner is a first guess).
  int r = static_cast<int>(std::min<int64_t>(parts - 1, (row * parts) / std::max<int64_t>(1, n)));
  while (r > 0 && first(r) > row) --r;
  while (r + 1 < parts && first(r + 1) <= row) ++r;
  return r;
}

Comm::Comm() {
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

void Comm::agree(const std::exception_ptr& err) {
  const int mine = err ? rank_ : size_;
  int first = size_;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, handle());
  if (first == size_) return;
  failure_agreed_ = true;
  if (first == rank_) std::rethrow_exception(err);
  throw FailedElsewhere();
}

std::vector<int> Comm::as_counts(const std::vector<int64_t>& bytes, std::vector<int>* displs, const char* what) {
  std::vector<int> counts(bytes.size());
  displs->assign(bytes.size(), 0);
  int64_t at = 0;
  for (size_t r = 0; r < bytes.size(); ++r) {
    // MPI's counts and displacements are int: one message of a collective stays under 2 GiB.
    FC_CHECK(bytes[r] < (int64_t{1} << 31) && at < (int64_t{1} << 31),
             "internal: an MPI " << what << " of " << at + bytes[r] << " bytes exceeds 2 GiB; run with more processes");
    counts[r] = static_cast<int>(bytes[r]);
    (*displs)[r] = static_cast<int>(at);
    at += bytes[r];
  }
  return counts;
}

float Comm::all_reduce(float v, MPI_Op op) {
  float out = 0;
  MPI_Allreduce(&v, &out, 1, MPI_FLOAT, op, handle());
  return out;
}

int64_t Comm::all_reduce(int64_t v, MPI_Op op) {
  int64_t out = 0;
  MPI_Allreduce(&v, &out, 1, MPI_INT64_T, op, handle());
  return out;
}

std::vector<int64_t> Comm::sum_to_root(const std::vector<int64_t>& v) {
  std::vector<int64_t> out(v.size());
  FC_CHECK(v.size() < (size_t{1} << 31), "internal: a sum of more than 2^31 values");
  MPI_Reduce(v.data(), out.data(), static_cast<int>(v.size()), MPI_INT64_T, MPI_SUM, 0, handle());
  if (rank_ != 0) count_sent(stage, static_cast<int64_t>(v.size() * sizeof(int64_t)));
  return rank_ == 0 ? out : v;
}

int64_t Comm::exclusive_sum(int64_t v) {
  int64_t out = 0;
  MPI_Exscan(&v, &out, 1, MPI_INT64_T, MPI_SUM, handle());
  return rank_ == 0 ? 0 : out;  // MPI leaves process 0's result undefined
}

}  // namespace facecluster::mpi
