#include <cmath>
#include <fstream>

#include "facecluster/error.h"
#include "facecluster/io.h"
#include "helpers.h"

using namespace facecluster;
using fctest::fixture;
using fctest::TempDir;

namespace {

// Expects an Error whose message contains every fragment.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> fragments) {
  try {
    f();
    FAIL() << "no error thrown";
  } catch (const Error& e) {
    for (const auto& frag : fragments) EXPECT_NE(std::string(e.what()).find(frag), std::string::npos) << e.what();
  }
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

Matrix sample_matrix(int64_t r, int64_t c) {
  Matrix m(r, c);
  for (int64_t i = 0; i < r * c; ++i) m.data[i] = static_cast<float>(std::sin(0.37 * i) + 0.1);
  return m;
}

}  // namespace

TEST(Features, BinRoundTripAnyDimension) {
  TempDir dir;
  for (int64_t d : {1, 3, 97, 256}) {
    const Matrix m = sample_matrix(7, d);
    write_features_bin(dir.file("f.bin"), m);
    const Matrix back = read_features_bin(dir.file("f.bin"), d);
    EXPECT_EQ(back.rows, 7);
    EXPECT_EQ(back.cols, d);
    EXPECT_EQ(back.data, m.data);
  }
}

TEST(Features, NpyRoundTrip) {
  TempDir dir;
  const Matrix m = sample_matrix(11, 97);
  write_features_npy(dir.file("f.npy"), m);
  const Matrix back = read_features(dir.file("f.npy"), 0);
  EXPECT_EQ(back.rows, 11);
  EXPECT_EQ(back.cols, 97);
  EXPECT_EQ(back.data, m.data);
}

TEST(Features, ReadsNumpyWrittenFloat32AndFloat64) {
  for (const char* name : {"feats_f32.npy", "feats_f64.npy"}) {
    const Matrix m = read_features_npy(fixture(name));
    ASSERT_EQ(m.rows, 5);
    ASSERT_EQ(m.cols, 3);
    for (int i = 0; i < 5; ++i)
      for (int c = 0; c < 3; ++c) EXPECT_FLOAT_EQ(m.row(i)[c], (i + 1) * 0.5f - c * 0.25f) << name;
  }
  const Matrix b = read_features_bin(fixture("feats_d3.bin"), 3);
  EXPECT_FLOAT_EQ(b.row(4)[2], 2.0f);
}

TEST(Features, BadInputs) {
  TempDir dir;
  write_bytes(dir.file("odd.bin"), std::string(10, '\0'));
  expect_error([&] { read_features_bin(dir.file("odd.bin"), 2); }, {"odd.bin", "10 bytes", "not a multiple of 4 x 2"});
  expect_error([&] { read_features_bin(dir.file("odd.bin"), 0); }, {"odd.bin", "dimension"});
  write_bytes(dir.file("empty.bin"), "");
  expect_error([&] { read_features_bin(dir.file("empty.bin"), 4); }, {"empty.bin", "empty"});
  expect_error([&] { read_features_bin(dir.file("missing.bin"), 4); }, {"missing.bin", "no such file"});
  write_bytes(dir.file("junk.npy"), "not numpy at all");
  expect_error([&] { read_features_npy(dir.file("junk.npy")); }, {"junk.npy", "magic"});
  std::string npy = read_text_file(fixture("feats_f32.npy"));
  write_bytes(dir.file("short.npy"), npy.substr(0, npy.size() - 5));
  expect_error([&] { read_features_npy(dir.file("short.npy")); }, {"short.npy", "truncated"});
}

TEST(Features, NanInfAndZeroRowsAreRejected) {
  Matrix m = sample_matrix(3, 4);
  m.row(1)[2] = std::nanf("");
  expect_error([&] { normalize_rows(m, "x.bin"); }, {"x.bin", "row 1", "NaN"});
  m = sample_matrix(3, 4);
  m.row(2)[0] = INFINITY;
  expect_error([&] { normalize_rows(m, "x.bin"); }, {"row 2"});
  m = sample_matrix(3, 4);
  for (int c = 0; c < 4; ++c) m.row(0)[c] = 0;
  expect_error([&] { normalize_rows(m, "x.bin"); }, {"row 0", "all zeros"});
  Matrix empty;
  expect_error([&] { normalize_rows(empty, "x.bin"); }, {"empty"});
}

TEST(Features, NormalizeGivesUnitRows) {
  Matrix m = sample_matrix(5, 7);
  normalize_rows(m, "m");
  for (int i = 0; i < 5; ++i) {
    double s = 0;
    for (int c = 0; c < 7; ++c) s += double(m.row(i)[c]) * m.row(i)[c];
    EXPECT_NEAR(s, 1.0, 1e-6);
  }
}

TEST(Labels, RoundTripAndNumpyFile) {
  TempDir dir;
  const Labels l = {5, -2, 1000000000000LL, 5, 0};
  write_labels(dir.file("l.meta"), l);
  EXPECT_EQ(read_labels(dir.file("l.meta")), l);
  EXPECT_EQ(read_labels(fixture("labels.meta")), (Labels{3, 3, 7, 7, 7}));
}

TEST(Labels, BadLines) {
  TempDir dir;
  write_bytes(dir.file("bad.meta"), "1\n2\nabc\n");
  expect_error([&] { read_labels(dir.file("bad.meta")); }, {"bad.meta", "line 3", "not an integer", "abc"});
  write_bytes(dir.file("float.meta"), "1\n2.5\n");
  expect_error([&] { read_labels(dir.file("float.meta")); }, {"line 2"});
  write_bytes(dir.file("gap.meta"), "1\n\n2\n");
  expect_error([&] { read_labels(dir.file("gap.meta")); }, {"line 2", "empty"});
  write_bytes(dir.file("empty.meta"), "");
  expect_error([&] { read_labels(dir.file("empty.meta")); }, {"empty.meta", "empty"});
  write_bytes(dir.file("crlf.meta"), "4\r\n5\r\n\n");
  EXPECT_EQ(read_labels(dir.file("crlf.meta")), (Labels{4, 5}));
}

TEST(KnnCache, ReadsNumpySavezAndSavezCompressed) {
  for (const char* name : {"knn_f32.npz", "knn_f64_compressed.npz"}) {
    const KnnGraph g = read_knn_npz(fixture(name), 6);
    ASSERT_EQ(g.n, 6);
    ASSERT_EQ(g.k, 4);
    for (int i = 0; i < 6; ++i)
      for (int j = 0; j < 4; ++j) {
        EXPECT_EQ(g.nbr_row(i)[j], (i + j) % 6) << name;
        EXPECT_NEAR(g.dist_row(i)[j], 0.01 * j + 0.001 * i, 1e-7) << name;
      }
  }
}

TEST(KnnCache, RoundTripStoredAndCompressed) {
  TempDir dir;
  KnnGraph g(4, 3);
  const int32_t nb[] = {0, 2, 1, 1, 0, -1, 2, 3, 0, 3, 2, 1};
  const float d[] = {0.f, 0.1f, 0.2f, 0.f, 0.5f, 0.f, 0.f, 0.25f, 0.25f, 0.f, 0.3f, 0.9f};
  std::copy(nb, nb + 12, g.nbrs.begin());
  std::copy(d, d + 12, g.dists.begin());
  for (bool compress : {false, true}) {
    write_knn_npz(dir.file("g.npz"), g, compress);
    const KnnGraph back = read_knn_npz(dir.file("g.npz"), 4);
    EXPECT_EQ(back.nbrs, g.nbrs);
    for (int i = 0; i < 12; ++i)
      if (g.nbrs[i] >= 0) {
        EXPECT_EQ(back.dists[i], g.dists[i]);
      }
  }
}

TEST(KnnCache, SortsRowsAndClampsTinyNegatives) {
  TempDir dir;
  KnnGraph g(3, 3);
  const int32_t nb[] = {1, 0, 2, 1, 2, 0, 2, 1, 0};
  const float d[] = {0.4f, -1e-7f, 0.2f, 0.f, 0.3f, 0.1f, 0.f, 0.2f, 0.2f};
  std::copy(nb, nb + 9, g.nbrs.begin());
  std::copy(d, d + 9, g.dists.begin());
  write_knn_npz(dir.file("g.npz"), g);
  const KnnGraph back = read_knn_npz(dir.file("g.npz"));
  EXPECT_EQ(std::vector<int32_t>(back.nbr_row(0), back.nbr_row(0) + 3), (std::vector<int32_t>{0, 2, 1}));
  EXPECT_EQ(back.dist_row(0)[0], 0.f);
  EXPECT_EQ(std::vector<int32_t>(back.nbr_row(1), back.nbr_row(1) + 3), (std::vector<int32_t>{1, 0, 2}));
  // ties keep their stored order
  EXPECT_EQ(std::vector<int32_t>(back.nbr_row(2), back.nbr_row(2) + 3), (std::vector<int32_t>{2, 1, 0}));
}

TEST(KnnCache, BadArchives) {
  TempDir dir;
  expect_error([&] { read_knn_npz(fixture("knn_no_data.npz")); }, {"knn_no_data.npz", "no array 'data'", "other.npy"});
  expect_error([&] { read_knn_npz(fixture("knn_bad_shape.npz")); }, {"knn_bad_shape.npz", "(N, 2, k)"});
  expect_error([&] { read_knn_npz(fixture("knn_index_out_of_range.npz")); },
               {"knn_index_out_of_range.npz", "row 2", "index 17", "outside [0, 6)"});
  expect_error([&] { read_knn_npz(fixture("knn_f32.npz"), 7); }, {"knn_f32.npz", "6 rows", "7"});
  const std::string bytes = read_text_file(fixture("knn_f32.npz"));
  write_bytes(dir.file("trunc.npz"), bytes.substr(0, bytes.size() / 2));
  expect_error([&] { read_knn_npz(dir.file("trunc.npz")); }, {"trunc.npz"});
  write_bytes(dir.file("junk.npz"), "hello");
  expect_error([&] { read_knn_npz(dir.file("junk.npz")); }, {"junk.npz", "not a readable .npz"});
  expect_error([&] { read_knn_npz(dir.file("none.npz")); }, {"none.npz", "no such file"});
}

TEST(KnnCache, NegativeAndNanDistancesAreRejected) {
  TempDir dir;
  KnnGraph g(2, 2);
  g.nbrs = {0, 1, 1, 0};
  g.dists = {0.f, -0.5f, 0.f, 0.1f};
  write_knn_npz(dir.file("neg.npz"), g);
  expect_error([&] { read_knn_npz(dir.file("neg.npz")); }, {"neg.npz", "row 0", "negative distance"});
  g.dists = {0.f, std::nanf(""), 0.f, 0.1f};
  write_knn_npz(dir.file("nan.npz"), g);
  expect_error([&] { read_knn_npz(dir.file("nan.npz")); }, {"nan.npz", "NaN"});
}

TEST(AtomicWrite, MissingFolderAndFailedWriteLeaveNothing) {
  TempDir dir;
  expect_error([&] { write_labels(dir.file("nope/l.meta"), {1, 2}); }, {"nope", "does not exist"});
  EXPECT_THROW(write_atomically(dir.file("x.txt"), [](const std::string& tmp) {
                 std::ofstream(tmp) << "partial";
                 throw Error("boom");
               }),
               Error);
  EXPECT_TRUE(dir.entries().empty());
  write_text_file(dir.file("ok.txt"), "fine");
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"ok.txt"}));
  EXPECT_EQ(read_text_file(dir.file("ok.txt")), "fine");
}

// Each process of a distributed run reads only its rows: any slice is those rows of the whole
// file (.bin, .npy float32 and float64), the shape comes from the file alone, and a row named in
// an error is the row of the file.
TEST(Features, SlicesAreTheRowsOfTheWholeFile) {
  struct Case {
    std::string path;
    int64_t dim;
  };
  for (const Case& c : {Case{fixture("feats_f32.npy"), 0}, Case{fixture("feats_f64.npy"), 3}, Case{fixture("feats_d3.bin"), 3}}) {
    const Matrix whole = read_features(c.path, c.dim);
    const FeatureShape shape = feature_shape(c.path, c.dim);
    ASSERT_EQ(shape.rows, whole.rows) << c.path;
    ASSERT_EQ(shape.cols, whole.cols) << c.path;
    for (int64_t first = 0; first <= whole.rows; ++first)
      for (int64_t count = 0; first + count <= whole.rows; ++count) {
        const Matrix part = read_feature_rows(c.path, c.dim, first, count);
        ASSERT_EQ(part.rows, count);
        for (int64_t i = 0; i < count; ++i)
          for (int64_t j = 0; j < whole.cols; ++j) ASSERT_EQ(part.row(i)[j], whole.row(first + i)[j]) << c.path;
      }
    EXPECT_THROW(read_feature_rows(c.path, c.dim, 2, whole.rows), Error);
  }
  Matrix m(2, 2);
  m.data = {1, 0, 0, 0};
  try {
    normalize_rows(m, "f.bin", 1000);
    FAIL() << "a zero row was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 1001 "), std::string::npos) << e.what();
  }
}

TEST(NpyArrays, RoundTripEachTypeAndRefuseWhatDoesNotMatch) {
  TempDir tmp;
  const std::vector<int32_t> ids{1, -1, 7, 2147483647, 0, 5};
  const std::vector<double> dens{0.5, 1e-300, -2.25};
  write_npy_array(tmp.file("ids.npy"), ids.data(), {2, 3});
  write_npy_array(tmp.file("d.npy"), dens.data(), {3});
  std::vector<int64_t> shape{2, -1};
  EXPECT_EQ(read_npy_array<int32_t>(tmp.file("ids.npy"), shape), ids);
  EXPECT_EQ(shape, (std::vector<int64_t>{2, 3}));
  std::vector<int64_t> any;
  EXPECT_EQ(read_npy_array<double>(tmp.file("d.npy"), any), dens);
  auto message = [&](auto read) {
    try {
      read();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(read)");
  };
  std::vector<int64_t> three{3, -1};
  EXPECT_NE(message([&] { read_npy_array<int32_t>(tmp.file("ids.npy"), three); }).find("dimension 0 is 2"), std::string::npos);
  std::vector<int64_t> none;
  EXPECT_NE(message([&] { read_npy_array<float>(tmp.file("ids.npy"), none); }).find("i4 values"), std::string::npos);
  std::filesystem::resize_file(tmp.file("d.npy"), std::filesystem::file_size(tmp.file("d.npy")) - 3);
  EXPECT_NE(message([&] { read_npy_array<double>(tmp.file("d.npy"), none); }).find("truncated"), std::string::npos);
}
