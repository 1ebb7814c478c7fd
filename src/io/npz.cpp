// The kNN cache: a numpy .npz archive holding `data` of shape (N, 2, k), read and written with
// libzip (Debian's), so both numpy.savez (stored) and savez_compressed (deflate) archives work.
#include <zip.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <numeric>

#include "facecluster/error.h"
#include "facecluster/io.h"
#include "npy.h"

namespace facecluster {
namespace {

struct ZipCloser {
  void operator()(zip_t* z) const {
    if (z) zip_discard(z);
  }
};
struct ZipFileCloser {
  void operator()(zip_file_t* f) const {
    if (f) zip_fclose(f);
  }
};

std::string zip_error_text(int code) {
  zip_error_t e;
  zip_error_init_with_code(&e, code);
  std::string s = zip_error_strerror(&e);
  zip_error_fini(&e);
  return s;
}

void read_exact(zip_file_t* f, char* dst, size_t n, const std::string& path) {
  size_t got = 0;
  while (got < n) {
    zip_int64_t r = zip_fread(f, dst + got, n - got);
    FC_CHECK(r > 0, "kNN cache " << path << " is truncated or corrupt: array 'data' ends early ("
                                 << (r < 0 ? zip_error_strerror(zip_file_get_error(f)) : "end of entry") << ")");
    got += static_cast<size_t>(r);
  }
}

// Sorts one row by distance (stable), moving -1 padding to the end.
void sort_row(int32_t* nb, float* d, int k, std::vector<int>& perm, std::vector<int32_t>& tn, std::vector<float>& td) {
  bool sorted = true;
  for (int j = 1; j < k && sorted; ++j) {
    const bool pad_prev = nb[j - 1] < 0, pad_cur = nb[j] < 0;
    if ((pad_prev && !pad_cur) || (!pad_prev && !pad_cur && d[j] < d[j - 1])) sorted = false;
  }
  if (sorted) return;
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(), [&](int a, int b) {
    const bool pa = nb[a] < 0, pb = nb[b] < 0;
    if (pa != pb) return pb;  // real neighbours before padding
    return !pa && d[a] < d[b];
  });
  for (int j = 0; j < k; ++j) {
    tn[j] = nb[perm[j]];
    td[j] = d[perm[j]];
  }
  std::copy(tn.begin(), tn.end(), nb);
  std::copy(td.begin(), td.end(), d);
}

}  // namespace

void check_zip_archive(const std::string& path, const std::string& what) {
  int err = 0;
  std::unique_ptr<zip_t, ZipCloser> z(zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &err));
  FC_CHECK(z, what << " " << path << " is not a readable archive (" << zip_error_text(err) << "): truncated or corrupt");
  const zip_int64_t entries = zip_get_num_entries(z.get(), 0);
  std::vector<char> buf(1 << 16);
  for (zip_int64_t i = 0; i < entries; ++i) {
    std::unique_ptr<zip_file_t, ZipFileCloser> f(zip_fopen_index(z.get(), static_cast<zip_uint64_t>(i), 0));
    FC_CHECK(f, what << " " << path << " is corrupt: entry " << i << " cannot be opened (" << zip_strerror(z.get()) << ")");
    zip_int64_t got = 0;
    while ((got = zip_fread(f.get(), buf.data(), buf.size())) > 0) {
    }
    FC_CHECK(got == 0, what << " " << path << " is corrupt: entry " << i << " fails to read ("
                            << zip_file_strerror(f.get()) << ")");
  }
}

KnnGraph read_knn_npz(const std::string& path, int64_t expected_n) {
  FC_CHECK(std::filesystem::exists(path), "cannot open kNN cache " << path << ": no such file");
  int err = 0;
  std::unique_ptr<zip_t, ZipCloser> z(zip_open(path.c_str(), ZIP_RDONLY, &err));
  FC_CHECK(z, "kNN cache " << path << " is not a readable .npz archive (" << zip_error_text(err)
                           << "); truncated or not written by numpy.savez?");
  zip_int64_t idx = zip_name_locate(z.get(), "data.npy", 0);
  if (idx < 0) {
    std::string names;
    for (zip_int64_t i = 0; i < zip_get_num_entries(z.get(), 0); ++i) {
      if (!names.empty()) names += ", ";
      names += zip_get_name(z.get(), static_cast<zip_uint64_t>(i), 0);
    }
    FC_FAIL("kNN cache " << path << " has no array 'data' (it holds: " << (names.empty() ? "nothing" : names) << ")");
  }
  zip_stat_t st;
  zip_stat_init(&st);
  FC_CHECK(zip_stat_index(z.get(), static_cast<zip_uint64_t>(idx), 0, &st) == 0, "kNN cache " << path << ": cannot stat 'data'");
  std::unique_ptr<zip_file_t, ZipFileCloser> f(zip_fopen_index(z.get(), static_cast<zip_uint64_t>(idx), 0));
  FC_CHECK(f, "kNN cache " << path << ": cannot open array 'data' (" << zip_strerror(z.get()) << ")");

  // The header is at most a few hundred bytes; read the fixed prefix first, then the rest.
  std::string head(10, '\0');
  read_exact(f.get(), head.data(), 10, path);
  FC_CHECK(std::memcmp(head.data(), "\x93NUMPY", 6) == 0, "kNN cache " << path << ": 'data' is not a .npy array");
  size_t header_len = 0;
  if (head[6] == 1) {
    header_len = static_cast<unsigned char>(head[8]) | (static_cast<unsigned char>(head[9]) << 8);
  } else {
    head.resize(12);
    read_exact(f.get(), head.data() + 10, 2, path);
    uint32_t len;
    std::memcpy(&len, head.data() + 8, 4);
    header_len = len;
  }
  const size_t pre = head.size();
  FC_CHECK(header_len < (1u << 20), "kNN cache " << path << ": implausible .npy header length " << header_len);
  head.resize(pre + header_len);
  read_exact(f.get(), head.data() + pre, header_len, path);
  NpyHeader h = parse_npy_header(head.data(), head.size(), path);
  FC_CHECK(h.shape.size() == 3 && h.shape[1] == 2,
           "kNN cache " << path << ": 'data' must have shape (N, 2, k), got " << h.shape.size() << "-D array"
                        << (h.shape.size() == 3 ? " with second axis " + std::to_string(h.shape[1]) : std::string()));
  FC_CHECK(h.kind == 'f' && (h.word == 4 || h.word == 8),
           "kNN cache " << path << ": 'data' must be float32 or float64, got " << h.kind << h.word);
  const int64_t n = h.shape[0];
  const int64_t k = h.shape[2];
  FC_CHECK(n > 0 && k > 0, "kNN cache " << path << " is empty (N = " << n << ", k = " << k << ")");
  FC_CHECK(k < (1 << 15), "kNN cache " << path << ": k = " << k << " is too large");
  FC_CHECK(expected_n < 0 || n == expected_n,
           "kNN cache " << path << " has " << n << " rows but the features have " << expected_n
                        << " (stale cache? set is_reload: True or --reload to rebuild)");

  KnnGraph g(n, static_cast<int>(k));
  const size_t row_bytes = static_cast<size_t>(2 * k * h.word);
  const int64_t rows_per_chunk = std::max<int64_t>(1, (8 << 20) / static_cast<int64_t>(row_bytes));
  std::vector<char> buf(static_cast<size_t>(rows_per_chunk) * row_bytes);
  std::vector<float> vals(static_cast<size_t>(rows_per_chunk * 2 * k));
  std::vector<int> perm(static_cast<size_t>(k));
  std::vector<int32_t> tn(static_cast<size_t>(k));
  std::vector<float> td(static_cast<size_t>(k));
  for (int64_t r0 = 0; r0 < n; r0 += rows_per_chunk) {
    const int64_t rows = std::min(rows_per_chunk, n - r0);
    read_exact(f.get(), buf.data(), static_cast<size_t>(rows) * row_bytes, path);
    npy_convert_to_float(h, buf.data(), rows * 2 * k, vals.data(), path);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = r0 + r;
      const float* idx_in = vals.data() + r * 2 * k;
      const float* dist_in = idx_in + k;
      int32_t* nb = g.nbr_row(i);
      float* d = g.dist_row(i);
      for (int64_t j = 0; j < k; ++j) {
        const float v = idx_in[j];
        FC_CHECK(std::isfinite(v) && v == std::floor(v) && v >= -1 && v < static_cast<float>(n),
                 "kNN cache " << path << ": row " << i << " neighbour " << j << " has index " << v
                              << ", outside [0, " << n << ")");
        nb[j] = static_cast<int32_t>(v);
        float dv = dist_in[j];
        if (nb[j] < 0) dv = std::numeric_limits<float>::infinity();
        FC_CHECK(!std::isnan(dv), "kNN cache " << path << ": row " << i << " neighbour " << j << " has a NaN distance");
        FC_CHECK(nb[j] < 0 || (std::isfinite(dv) && dv <= kMaxDistance),
                 "kNN cache " << path << ": row " << i << " neighbour " << j << " has distance " << dv
                              << ", outside [0, 2] (distances are 1 - cosine similarity)");
        FC_CHECK(dv > -1e-3f, "kNN cache " << path << ": row " << i << " neighbour " << j << " has negative distance "
                                           << dv);
        d[j] = dv < 0 ? 0.f : dv;
      }
      sort_row(nb, d, static_cast<int>(k), perm, tn, td);
    }
  }
  // Reading on to the end makes libzip compare the entry's CRC-32 with its content.
  char extra = 0;
  const zip_int64_t more = zip_fread(f.get(), &extra, 1);
  FC_CHECK(more >= 0, "kNN cache " << path << " is corrupt: array 'data' fails its checksum ("
                                   << zip_file_strerror(f.get()) << ")");
  FC_CHECK(more == 0, "kNN cache " << path << ": array 'data' holds more bytes than its shape says");
  return g;
}

void write_knn_npz(const std::string& path, const KnnGraph& g, bool compress) {
  const int64_t n = g.n, k = g.k;
  const std::string header = npy_header("<f4", {n, 2, k});
  std::vector<char> blob(header.size() + static_cast<size_t>(n * 2 * k) * 4);
  std::memcpy(blob.data(), header.data(), header.size());
  float* out = reinterpret_cast<float*>(blob.data() + header.size());
  for (int64_t i = 0; i < n; ++i) {
    float* o = out + i * 2 * k;
    const int32_t* nb = g.nbr_row(i);
    const float* d = g.dist_row(i);
    for (int64_t j = 0; j < k; ++j) {
      o[j] = static_cast<float>(nb[j]);
      o[k + j] = nb[j] < 0 ? 1.0f : d[j];
    }
  }
  write_atomically(path, [&](const std::string& tmp) {
    int err = 0;
    zip_t* z = zip_open(tmp.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
    FC_CHECK(z, "cannot create " << tmp << ": " << zip_error_text(err));
    zip_source_t* src = zip_source_buffer(z, blob.data(), blob.size(), 0);
    if (!src) {
      zip_discard(z);
      FC_FAIL("cannot write " << path << ": " << zip_strerror(z));
    }
    zip_int64_t idx = zip_file_add(z, "data.npy", src, ZIP_FL_OVERWRITE);
    if (idx < 0) {
      zip_source_free(src);
      std::string e = zip_strerror(z);
      zip_discard(z);
      FC_FAIL("cannot write " << path << ": " << e);
    }
    zip_set_file_compression(z, static_cast<zip_uint64_t>(idx), compress ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0);
    if (zip_close(z) != 0) {
      std::string e = zip_strerror(z);
      zip_discard(z);
      FC_FAIL("cannot write " << path << ": " << e);
    }
  });
}

}  // namespace facecluster
