// The pipeline across MPI processes (docs/distributed.md), in builds configured with
// -DFACECLUSTER_WITH_MPI=ON and started by `mpirun -np P facecluster cluster ...`.
//
// Process r holds rows [N r / P, N (r + 1) / P): it reads only that slice of the features and
// keeps only those rows of the kNN graph. The exact kNN passes the shards round a ring; the
// calibration joins every process's sampled pairs in row order; density, TPDi and parents fetch
// the neighbouring rows other processes hold (the halo); process 0 gathers the links (N x
// max_conn), cuts, scores and writes. The labels are those of the one-process run.
#pragma once

#include "facecluster/plan.h"
#include "facecluster/report.h"

namespace facecluster {

// True when this process was started by mpirun (its environment says so).
bool started_by_mpirun();

// MPI for the life of the object.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  int rank() const { return rank_; }
  int size() const { return size_; }

 private:
  int rank_ = 0, size_ = 1;
};

// Whether an MpiSession is open, this process's rank in it (0 without one), and whether
// run_plan_distributed has begun (from then on each process reports its own errors).
bool mpi_active();
int mpi_rank();
bool distributed_run_started();

// Every process calls it with the same plan. Process 0 returns the report (and writes
// plan.out_dir); the others return an empty one. When any process fails, all end: the first
// failing one throws its error, the others FailedElsewhere; a failure outside the agreed steps
// (a bug) prints its message and aborts the whole run.
ClusterReport run_plan_distributed(const RunPlan& plan);

}  // namespace facecluster
