// Adding faces to an existing clustering (docs/incremental.md): the state a clustering leaves for
// later additions, its folder, and the addition itself. New faces get their neighbours among old
// and new faces by exact search; the old rows whose lists take them in are updated; density is
// recomputed in one pass, TPDi and parents only for the rows they can change; the calibration and
// tau stay the first run's. Cluster ids survive: a cluster the addition did not merge or split
// keeps its id, and every merge or split is reported.
#pragma once

#include <string>
#include <vector>

#include "facecluster/pipeline.h"

namespace facecluster {

// The version of the state folder's format; a state of another version is refused.
constexpr int kStateFormatVersion = 1;

// The calibration describes the faces it was fitted on: once the distinct faces have grown by a
// tenth (1 / kRecalibrateEvery) since, an addition fits it again on all of them (and, where the first run chose tau,
// chooses it again), as a run from scratch would. Measured on celebatest through face-api: 25%
// more faces moved the likelihood tau from 0.420 to 0.365, and an addition that kept the first
// fit agreed with the scratch run at pairwise F 0.956 only (docs/incremental.md).
constexpr int64_t kRecalibrateEvery = 10;

struct StateBatch {
  int64_t rows = 0;      // faces the batch brought
  int64_t distinct = 0;  // of them, not copies of an earlier face (rows of the graph)
  std::string digest;    // of its features, to refuse adding the same batch twice
};

struct ClusterState {
  // How the clustering was made (the first run's plan, calibration and tau).
  int64_t dim = 0;
  bool normalize = true;
  int k = 0;                  // neighbours per row the plan asked for (the graph's may be fewer)
  int bins = kDefaultBins;    // hard-cluster bins of the scores
  std::string knn_index;      // the first run's index (its rows' lists; added rows are exact)
  GraphParams params;         // what the graph stage runs with (after calibration)
  bool auto_calibrate = false;  // the plan calibrates (a first run on too few faces may not have yet)
  bool calibrated = false;
  DistanceMap calibration;    // when calibrated
  int64_t calibrated_on = 0;  // distinct faces the calibration was fitted on
  bool tau_automatic = false; // the plan chooses tau by the likelihood cut (again on a refit)
  double tau = 0;
  // The faces so far: one row per distinct face (copies share their first face's row).
  Matrix features;            // distinct rows, normalised
  std::vector<StateBatch> batches;
  std::vector<int64_t> row_of;   // every face's distinct row
  KnnGraph graph;                // kNN graph of the distinct rows, cosine distances
  std::vector<float> link_dists; // its distances calibrated (when calibrated): what is linked
  std::vector<double> density;   // of the distinct rows
  Links links;                   // parents of the distinct rows
  std::vector<int64_t> cluster_of;  // each distinct row's cluster id
  int64_t next_id = 0;           // the id the next new cluster gets
  Labels truth;                  // every face's true label, when every batch had them
  int64_t faces() const { return static_cast<int64_t>(row_of.size()); }
  Labels labels() const;         // every face's cluster id
  std::vector<double> face_density() const;  // every face's density (a copy, its original's)
};

// The state of a finished run: `normalized` are its features as the pipeline saw them, `r` its
// report (run_pipeline), `truth` its true labels (nullptr: none). Refuses a run with a learned
// model (not supported by `add` yet).
ClusterState state_from_run(const RunPlan& plan, const Matrix& normalized, const ClusterReport& r, const Labels* truth);

// A state folder holds CURRENT (the name of the generation folder in use) and that folder: a
// manifest (state.yaml) and numpy arrays. save_state writes a new generation beside the old one
// and then replaces CURRENT in one rename, so a kill at any point leaves the old state or the
// new one; generations no longer named are removed afterwards (or by the next save). Features
// of earlier batches are hard links to the previous generation's files where the file system
// allows. `fresh`: the folder must not hold a state yet (a first run), else it must (an addition).
void save_state(const std::string& dir, const ClusterState& s, bool fresh);
// Reads and checks a state folder; every problem (no state, another format version, a missing
// or truncated file, arrays that disagree) is one error naming the folder or file.
ClusterState load_state(const std::string& dir);
// One writer at a time: an exclusive lock on DIR/lock (flock), held while it lives. A second
// addition to the same state is refused while one runs. The folder must exist.
class StateLock {
 public:
  explicit StateLock(const std::string& dir);
  ~StateLock();
  StateLock(const StateLock&) = delete;
  StateLock& operator=(const StateLock&) = delete;

 private:
  int fd_ = -1;
};

// Whether `dir` holds a state (its CURRENT file exists).
bool holds_state(const std::string& dir);

// Adds faces (raw rows, normalised here as the state says; `truth` their true labels or
// nullptr; `source` names them in messages) and returns the report of every face so far: labels
// by cluster id, the changes made to earlier clusters, scores when every batch had labels.
// recalibrate: fit the calibration again now, whatever the growth (kRecalibrateEvery). Should it
// fail midway (an error, an interrupt) the state is put back as it was, without copying it
// (the rows it changes are kept aside).
ClusterReport add_faces(ClusterState& s, Matrix new_rows, const Labels* truth, const std::string& source,
                        bool recalibrate = false);

// The digest of a batch of rows (FNV-1a over their bytes), in hex.
std::string features_digest(const Matrix& x);

}  // namespace facecluster
