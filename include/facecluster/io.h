// Reading and writing the release's formats (SPEC section 1). Every reader checks sizes and
// content and throws facecluster::Error naming the file; every writer writes a temporary file
// in the target folder and renames it, so no half-written output is ever left behind.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "facecluster/types.h"

namespace facecluster {

// Raw little-endian float32, no header; N = bytes / (4 * dim).
Matrix read_features_bin(const std::string& path, int64_t dim);
void write_features_bin(const std::string& path, const Matrix& m);

// numpy .npy, 2-D, float32 or float64, C order.
Matrix read_features_npy(const std::string& path);
void write_features_npy(const std::string& path, const Matrix& m);

// By extension: .npy reads its own shape; anything else is .bin and needs dim > 0.
Matrix read_features(const std::string& path, int64_t dim);

// The shape of a feature file (read as read_features does) without reading its rows, and rows
// [first, first + count) of it alone: each process of a distributed run reads only its slice.
struct FeatureShape {
  int64_t rows = 0, cols = 0;
};
FeatureShape feature_shape(const std::string& path, int64_t dim);
Matrix read_feature_rows(const std::string& path, int64_t dim, int64_t first, int64_t count);

// Checks for NaN/Inf and all-zero rows, then scales every row to unit length. Messages name
// rows from first_row (the slice's place in the file).
void normalize_rows(Matrix& m, const std::string& source, int64_t first_row = 0);
// Only the NaN/Inf/zero-row check.
void check_finite_rows(const Matrix& m, const std::string& source, int64_t first_row = 0);

// One integer label per line.
Labels read_labels(const std::string& path);
void write_labels(const std::string& path, const Labels& labels);
std::string format_labels(const Labels& labels);  // the .meta text

// kNN cache: .npz with array `data` of shape (N, 2, k), float32 or float64. Rows are sorted by
// distance on load; tiny negative distances (> -1e-3) are clamped to 0. expected_n < 0 skips
// the row-count check.
KnnGraph read_knn_npz(const std::string& path, int64_t expected_n = -1);
void write_knn_npz(const std::string& path, const KnnGraph& g, bool compress = false);

// Checks that `path` is a sound zip archive: its structure is consistent and every entry reads
// to the end with a matching CRC-32. Throws naming `what` and the path otherwise. (Model
// checkpoints are zip archives; this keeps corrupt ones away from libtorch's reader.)
void check_zip_archive(const std::string& path, const std::string& what);

// Writes a file atomically: `fill` writes to the temporary path it is given; on success the
// temporary file replaces `path`, on failure (exception or interrupt) it is removed. A target
// that exists and is not a regular file (a folder, a device such as /dev/null) is refused.
// Stale temporaries of this naming (<name>.tmp.<pid>.<hex>) left by a killed process are
// removed from the folder first.
void write_atomically(const std::string& path, const std::function<void(const std::string& tmp_path)>& fill);

// Writes several files as one set: every temporary is written first, then all are renamed, so a
// failure or an interrupt while writing leaves the old set (or none) untouched.
void write_text_files(const std::vector<std::pair<std::string, std::string>>& path_and_content);

// Refuses (throws naming both) when `output` is the same file as one of the inputs, compared by
// device and inode (links and other spellings of a path included). Inputs that do not exist
// are skipped.
struct NamedPath {
  std::string what, path;
};
void check_not_an_input(const std::string& output, const std::vector<NamedPath>& inputs);

// A numpy array of float, double, int32_t or int64_t (the files of an incremental clustering's
// state), written in place (the caller makes the set appear at once). The reader checks the
// dtype, the size and each dimension of `shape` that is >= 0 (any number of dimensions when
// `shape` is empty), names the file in every message, and returns the shape in `shape`.
template <class T>
void write_npy_array(const std::string& path, const T* values, const std::vector<int64_t>& shape);
template <class T>
std::vector<T> read_npy_array(const std::string& path, std::vector<int64_t>& shape);
// Text output helpers (atomic).
void write_text_file(const std::string& path, const std::string& content);
std::string read_text_file(const std::string& path);

// Throws if the folder holding `path` does not exist.
void check_parent_dir(const std::string& path);
// Creates a folder and any missing parents (create_directories); a failure names what the folder
// is for ("results folder (-o)") and the reason, in one line.
void make_folders(const std::string& path, const std::string& what);

}  // namespace facecluster
