// Connected components of the links across processes (private to src/mpi).
#pragma once

#include "comm.h"
#include "facecluster/graph.h"
#include "facecluster/types.h"

namespace facecluster::mpi {

// The labels of this process's rows [lo, lo + n) at `tau`, each process holding its rows' links
// (parents in global ids): components of the links with distance below tau, numbered 0..C-1 in
// order of each component's first row, as link_components numbers them on the whole graph.
// Minimum-label propagation with pointer jumping: every row starts with its own id; each round
// takes, across every link, the smaller label of its two ends and then each row's label's label,
// until no label changes anywhere. A label is always a row of the same component and never
// grows, so at the end every row holds its component's first row. `rounds` (optional) gets the
// number of rounds run.
Labels distributed_components(Comm& c, const RowPartition& part, const Links& own, int64_t lo, double tau,
                              int64_t* rounds = nullptr);

}  // namespace facecluster::mpi
