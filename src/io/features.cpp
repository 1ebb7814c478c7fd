#include <cmath>
#include <cstring>
#include <filesystem>
#include <algorithm>
#include <fstream>
#include <vector>

#include "facecluster/error.h"
#include "facecluster/io.h"
#include "npy.h"

namespace facecluster {
namespace fs = std::filesystem;

static void require_file(const std::string& path) {
  FC_CHECK(fs::exists(path), "cannot open " << path << ": no such file");
  FC_CHECK(fs::is_regular_file(path), "cannot open " << path << ": not a regular file");
}

namespace {

// What a feature file holds and where its rows start: .npy by its header, anything else as raw
// float32 rows of `dim` values.
struct FeatureLayout {
  int64_t rows = 0, cols = 0;
  size_t data_offset = 0;
  NpyHeader npy;  // word 4 for .bin
};

FeatureLayout bin_layout(const std::string& path, int64_t dim) {
  FC_CHECK(dim > 0, "features file " << path << ": the feature dimension must be given and > 0 (got " << dim << ")");
  require_file(path);
  const auto bytes = static_cast<int64_t>(fs::file_size(path));
  FC_CHECK(bytes > 0, "features file " << path << " is empty");
  {  // A .npy under another name would read its header as row 0.
    std::ifstream in(path, std::ios::binary);
    char magic[kNpyMagicBytes] = {};
    in.read(magic, sizeof magic);
    FC_CHECK(!(in && std::memcmp(magic, kNpyMagic, kNpyMagicBytes) == 0),
             "features file " << path << " is a .npy file (it starts with the NPY header), not raw float32: name it .npy");
  }
  const int64_t row_bytes = 4 * dim;
  FC_CHECK(bytes % row_bytes == 0, "features file " << path << " has " << bytes << " bytes, not a multiple of 4 x "
                                                    << dim << " (wrong feature_dim?)");
  FeatureLayout l;
  l.rows = bytes / row_bytes;
  l.cols = dim;
  return l;
}

FeatureLayout npy_layout(const std::string& path) {
  require_file(path);
  const auto bytes = static_cast<size_t>(fs::file_size(path));
  std::ifstream in(path, std::ios::binary);
  FC_CHECK(in, "cannot open " << path);
  std::string head(std::min<size_t>(bytes, 1 << 16), '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  NpyHeader h = parse_npy_header(head.data(), head.size(), path);
  FC_CHECK(h.shape.size() == 2, "features file " << path << ": expected a 2-D array, got " << h.shape.size() << "-D");
  FC_CHECK(h.shape[0] > 0 && h.shape[1] > 0,
           "features file " << path << " is empty (shape " << h.shape[0] << " x " << h.shape[1] << ")");
  FC_CHECK(h.kind == 'f' && (h.word == 4 || h.word == 8),
           "features file " << path << ": expected float32 or float64, got " << h.kind << h.word);
  const size_t payload = static_cast<size_t>(h.count()) * h.word;
  FC_CHECK(bytes >= h.data_offset + payload, "features file " << path << " is truncated: " << bytes << " bytes, need "
                                                            << h.data_offset + payload);
  FeatureLayout l;
  l.rows = h.shape[0];
  l.cols = h.shape[1];
  l.data_offset = h.data_offset;
  l.npy = h;
  return l;
}

// Rows [first, first + count) of a file of layout l.
Matrix read_rows(const std::string& path, const FeatureLayout& l, int64_t first, int64_t count) {
  FC_CHECK(first >= 0 && count >= 0 && first + count <= l.rows,
           "features file " << path << ": rows " << first << " to " << first + count << " asked, it has " << l.rows);
  Matrix m(count, l.cols);
  std::ifstream in(path, std::ios::binary);
  FC_CHECK(in, "cannot open " << path);
  const int64_t word = l.npy.word;
  in.seekg(static_cast<std::streamoff>(l.data_offset + static_cast<size_t>(first * l.cols * word)));
  const int64_t values = count * l.cols;
  if (word == 4) {
    in.read(reinterpret_cast<char*>(m.data.data()), static_cast<std::streamsize>(values * 4));
    FC_CHECK(in, "features file " << path << ": short read");
  } else {
    const int64_t chunk = 1 << 20;
    std::vector<char> buf(static_cast<size_t>(chunk) * 8);
    for (int64_t done = 0; done < values; done += chunk) {
      const int64_t c = std::min(chunk, values - done);
      in.read(buf.data(), c * 8);
      FC_CHECK(in, "features file " << path << ": short read");
      npy_convert_to_float(l.npy, buf.data(), c, m.data.data() + done, path);
    }
  }
  return m;
}

FeatureLayout layout_of(const std::string& path, int64_t dim) {
  std::error_code ec;
  FC_CHECK(!fs::exists(path, ec) || fs::is_regular_file(path, ec), "features " << path << " is not a file");
  if (fs::path(path).extension() != ".npy") return bin_layout(path, dim);
  FeatureLayout l = npy_layout(path);
  FC_CHECK(dim <= 0 || l.cols == dim, "features file " << path << " has dimension " << l.cols << " but " << dim
                                                        << " was configured");
  return l;
}

}  // namespace

Matrix read_features_bin(const std::string& path, int64_t dim) {
  const FeatureLayout l = bin_layout(path, dim);
  return read_rows(path, l, 0, l.rows);
}

void write_features_bin(const std::string& path, const Matrix& m) {
  write_atomically(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary);
    FC_CHECK(out, "cannot open " << tmp << " for writing");
    out.write(reinterpret_cast<const char*>(m.row(0)), static_cast<std::streamsize>(m.rows * m.cols * 4));
    out.close();
    FC_CHECK(out, "write to " << path << " failed (disk full?)");
  });
}

Matrix read_features_npy(const std::string& path) {
  const FeatureLayout l = npy_layout(path);
  return read_rows(path, l, 0, l.rows);
}

void write_features_npy(const std::string& path, const Matrix& m) {
  write_atomically(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary);
    FC_CHECK(out, "cannot open " << tmp << " for writing");
    const std::string header = npy_header("<f4", {m.rows, m.cols});
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    out.write(reinterpret_cast<const char*>(m.row(0)), static_cast<std::streamsize>(m.rows * m.cols * 4));
    out.close();
    FC_CHECK(out, "write to " << path << " failed (disk full?)");
  });
}

Matrix read_features(const std::string& path, int64_t dim) {
  const FeatureLayout l = layout_of(path, dim);
  return read_rows(path, l, 0, l.rows);
}

FeatureShape feature_shape(const std::string& path, int64_t dim) {
  const FeatureLayout l = layout_of(path, dim);
  return {l.rows, l.cols};
}

Matrix read_feature_rows(const std::string& path, int64_t dim, int64_t first, int64_t count) {
  return read_rows(path, layout_of(path, dim), first, count);
}

void check_finite_rows(const Matrix& m, const std::string& source, int64_t first_row) {
  FC_CHECK(m.rows > 0 && m.cols > 0, source << ": no features (empty input)");
  for (int64_t i = 0; i < m.rows; ++i) {
    const float* r = m.row(i);
    double ss = 0;
    for (int64_t c = 0; c < m.cols; ++c) {
      FC_CHECK(std::isfinite(r[c]), source << ": row " << first_row + i << " column " << c << " is " << r[c] << " (NaN/Inf)");
      ss += double(r[c]) * r[c];
    }
    FC_CHECK(ss > 0, source << ": row " << first_row + i << " is all zeros and has no direction");
    // Below this the float32 values are denormal: too few bits survive to give a direction.
    FC_CHECK(std::sqrt(ss) >= 1e-30, source << ": row " << first_row + i << " has norm " << std::sqrt(ss)
                                            << ", too small to normalise in float32 (at least 1e-30 is needed)");
  }
}

void normalize_rows(Matrix& m, const std::string& source, int64_t first_row) {
  check_finite_rows(m, source, first_row);
#pragma omp parallel for schedule(static) if (m.rows > 10000)
  for (int64_t i = 0; i < m.rows; ++i) {
    float* r = m.row(i);
    double ss = 0;
    for (int64_t c = 0; c < m.cols; ++c) ss += double(r[c]) * r[c];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss));  // fits: norms below 1e-30 were refused
    for (int64_t c = 0; c < m.cols; ++c) r[c] *= inv;
  }
}

}  // namespace facecluster
