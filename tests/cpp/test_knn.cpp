#include <cstdio>
#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "facecluster/error.h"
#include "facecluster/knn.h"
#include "facecluster/synth.h"
#include "helpers.h"

using namespace facecluster;

namespace {
Matrix data(int64_t n, int64_t d, uint64_t seed) {
  SynthOptions o;
  o.n = n;
  o.dim = d;
  o.seed = seed;
  return make_synthetic(o).features;
}
}  // namespace

TEST(Knn, ExactFlatEqualsBruteForce) {
  for (int64_t d : {3, 97}) {
    const Matrix x = data(700, d, 3);
    KnnOptions o;
    o.k = 15;
    const KnnGraph g = build_knn(x, o);
    const KnnGraph ref = brute_force_knn(x, 15);
    ASSERT_EQ(g.k, 15);
    for (int64_t i = 0; i < x.rows; ++i) {
      EXPECT_EQ(g.nbr_row(i)[0], i);
      for (int j = 0; j < g.k; ++j) ASSERT_NEAR(g.dist_row(i)[j], ref.dist_row(i)[j], 2e-5) << "row " << i;
      // same neighbour sets, except where a tie sits at the k-th distance
      std::set<int32_t> a(g.nbr_row(i), g.nbr_row(i) + g.k), b(ref.nbr_row(i), ref.nbr_row(i) + g.k);
      if (ref.dist_row(i)[g.k - 1] - ref.dist_row(i)[g.k - 2] > 1e-5) {
        EXPECT_EQ(a, b) << "row " << i;
      }
    }
    EXPECT_NEAR(knn_recall(x, g, x.rows), 1.0, 1e-9);
  }
}

TEST(Knn, ApproximateIndexesReachDocumentedRecall) {
  const Matrix x = data(6000, 64, 5);
  KnnOptions o;
  o.k = 30;
  o.index = KnnIndex::Hnsw;
  const double hnsw = knn_recall(x, build_knn(x, o), 300);
  EXPECT_GE(hnsw, 0.97);
  o.index = KnnIndex::Ivf;
  const double ivf = knn_recall(x, build_knn(x, o), 300);
  EXPECT_GE(ivf, 0.90);
  o.ivf_nprobe = 1;
  const double ivf_low = knn_recall(x, build_knn(x, o), 300);
  EXPECT_LT(ivf_low, ivf);  // the knob matters
}

TEST(Knn, KLargerThanNClampsAndUnknownIndexIsNamed) {
  const Matrix x = data(10, 8, 1);
  KnnOptions o;
  o.k = 80;
  const KnnGraph g = build_knn(x, o);
  EXPECT_EQ(g.k, 10);
  try {
    parse_knn_index("hnws");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown knn index 'hnws'; expected auto, flat, ivf, hnsw, blocked"), std::string::npos);
  }
}

namespace {
// The blocked index over `lists` coarse lists, each row probing `probe` of them, k = 25.
KnnOptions blocked(int lists, int probe) {
  KnnOptions o;
  o.k = 25;
  o.index = KnnIndex::Blocked;
  o.ivf_nlist = lists;
  o.blocked_probe = probe;
  return o;
}
}  // namespace

TEST(Knn, BlockedRefinementFindsMissedNeighboursWithoutRepeats) {
  // Few probes miss neighbours in lists a row did not probe; the lists voted by the neighbours'
  // neighbours must find some of them, never offer a candidate twice, and keep the row first.
  const Matrix x = data(4000, 48, 8);
  KnnOptions o = blocked(80, 2);  // two lists of 80: many neighbours are elsewhere
  o.blocked_refine = 0;
  const double plain = knn_recall(x, build_knn(x, o), 400);
  o.blocked_refine = 16;
  const KnnGraph refined = build_knn(x, o);
  const double better = knn_recall(x, refined, 400);
  EXPECT_GT(better, plain + 0.02) << "plain " << plain << ", refined " << better;
  std::printf("blocked, 80 lists, probe 2: recall %.4f, refined %.4f\n", plain, better);
  for (int64_t i = 0; i < x.rows; ++i) {
    EXPECT_EQ(refined.nbr_row(i)[0], i);
    std::vector<int32_t> ids(refined.nbr_row(i), refined.nbr_row(i) + refined.k);
    std::sort(ids.begin(), ids.end());
    ASSERT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end()) << "row " << i << " holds a neighbour twice";
  }
}

// Past 20,480 lists the coarse lists come from a two-level quantizer (cells, then lists per cell;
// nearest lists among those nearest the home list). Its graph must be a sound kNN graph (row
// first, no repeats) with a recall near that of the flat quantizer one list below the switch.
TEST(Knn, TwoLevelListsFindNeighboursAlmostAsWellAsFlatLists) {
  const Matrix x = data(45000, 24, 12);
  KnnOptions o = blocked(20480, 64);  // the flat quantizer's largest case
  const double flat = knn_recall(x, build_knn(x, o), 300);
  o.ivf_nlist = 20481;                // the two-level quantizer's smallest
  const KnnGraph two = build_knn(x, o);
  const double two_level = knn_recall(x, two, 300);
  std::printf("blocked, 20,480 flat lists: recall %.4f; 20,481 two-level: %.4f\n", flat, two_level);
  EXPECT_GT(two_level, flat - 0.05);
  EXPECT_GT(two_level, 0.5);
  for (int64_t i = 0; i < x.rows; ++i) {
    EXPECT_EQ(two.nbr_row(i)[0], i);
    std::vector<int32_t> ids(two.nbr_row(i), two.nbr_row(i) + two.k);
    std::sort(ids.begin(), ids.end());
    ASSERT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end()) << "row " << i << " holds a neighbour twice";
  }
}

TEST(Knn, BlockedProbingEveryListIsExactAndFewerListsTradeRecall) {
  const Matrix x = data(4000, 48, 8);
  KnnOptions o = blocked(20, 20);  // every list: the products cover all pairs
  const KnnGraph all = build_knn(x, o);
  const KnnGraph ref = brute_force_knn(x, 25);
  for (int64_t i = 0; i < x.rows; ++i) {
    EXPECT_EQ(all.nbr_row(i)[0], i);
    for (int j = 0; j < all.k; ++j) ASSERT_NEAR(all.dist_row(i)[j], ref.dist_row(i)[j], 2e-5) << "row " << i;
  }
  o.blocked_refine = 0;  // the probes alone (the refinement has its own test)
  o.blocked_probe = 4;
  const double some = knn_recall(x, build_knn(x, o), 400);
  o.blocked_probe = 1;
  const double one = knn_recall(x, build_knn(x, o), 400);
  EXPECT_GE(some, 0.85);
  EXPECT_LT(one, some);
  EXPECT_EQ(parse_knn_index("blocked"), KnnIndex::Blocked);
}

// bf16 products (where the CPU has them) re-rank their candidates in fp32 with a margin that
// bounds the bf16 error. Rows near-duplicated so that their inner products differ by far less than
// bf16 resolves near 1 (2^-8): ranked by bf16 alone the k nearest would be scrambled; re-ranked,
// probing every list must give exact search's graph, as fp32 products do.
TEST(Knn, Bf16ProductsReRankedInFp32GiveTheExactGraph) {
  EXPECT_EQ(parse_knn_precision("auto"), KnnPrecision::Auto);
  EXPECT_EQ(parse_knn_precision("fp32"), KnnPrecision::Fp32);
  EXPECT_FALSE(knn_uses_bf16(KnnPrecision::Fp32));
  try {
    parse_knn_precision("bf32");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown knn precision 'bf32'; expected auto, fp32, bf16"), std::string::npos);
  }
  if (!knn_uses_bf16(KnnPrecision::Bf16)) GTEST_SKIP() << "no native bf16 products here (AVX512-BF16 or AMX-BF16, and oneDNN)";
  Matrix x(3000, 64);
  std::mt19937 rng(21);
  std::normal_distribution<float> nd;
  std::vector<float> centre(64);
  for (int64_t i = 0; i < x.rows; ++i) {
    if (i % 150 == 0)
      for (float& v : centre) v = nd(rng);
    float* r = x.row(i);
    double norm = 0;
    for (int64_t j = 0; j < 64; ++j) {
      r[j] = centre[j] + 0.1f * nd(rng);
      norm += double(r[j]) * r[j];
    }
    for (int64_t j = 0; j < 64; ++j) r[j] = static_cast<float>(r[j] / std::sqrt(norm));
  }
  const KnnGraph ref = brute_force_knn(x, 26);  // the 26th: how far the first row left out is
  KnnOptions o = blocked(20, 20);                // every list: the products cover all pairs
  int ranked_apart = 0, checked = 0;             // rows whose 25 nearest lie closer together than bf16 resolves
  for (KnnPrecision p : {KnnPrecision::Bf16, KnnPrecision::Fp32}) {
    o.precision = p;
    const KnnGraph g = build_knn(x, o);
    ASSERT_EQ(g.k, 25);
    for (int64_t i = 0; i < x.rows; ++i) {
      ASSERT_EQ(g.nbr_row(i)[0], i);
      for (int j = 0; j < g.k; ++j) ASSERT_NEAR(g.dist_row(i)[j], ref.dist_row(i)[j], 2e-5) << "row " << i;
      // the same neighbours, except where the 25th and the 26th are closer than fp32 resolves
      if (ref.dist_row(i)[25] - ref.dist_row(i)[24] < 2e-5) continue;
      std::set<int32_t> a(g.nbr_row(i), g.nbr_row(i) + g.k), b(ref.nbr_row(i), ref.nbr_row(i) + g.k);
      EXPECT_EQ(a, b) << knn_precision_name(p) << ", row " << i;
      checked += p == KnnPrecision::Bf16;
      if (p == KnnPrecision::Bf16) ranked_apart += ref.dist_row(i)[25] - ref.dist_row(i)[1] < 1.0 / 256;
    }
  }
  std::printf("bf16 re-ranking: %d rows checked, %d of them with their 26 nearest within 2^-8\n", checked, ranked_apart);
  EXPECT_GT(checked, x.rows / 3);         // (about 58% of the rows: the others have near-ties at the 25th)
  EXPECT_GT(ranked_apart, checked * 3 / 4);  // the data does test the re-ranking
}

// With fewer probes the lists matter: bf16 k-means and assignment (the quantizer) find lists as
// good as fp32's.
TEST(Knn, Bf16QuantizerFindsListsAsGoodAsFp32) {
  if (!knn_uses_bf16(KnnPrecision::Bf16)) GTEST_SKIP() << "no native bf16 products here (AVX512-BF16 or AMX-BF16, and oneDNN)";
  const Matrix x = data(6000, 48, 8);
  KnnOptions o = blocked(60, 4);
  o.blocked_refine = 0;
  o.precision = KnnPrecision::Fp32;
  const double fp32 = knn_recall(x, build_knn(x, o), 400);
  o.precision = KnnPrecision::Bf16;
  const double bf16 = knn_recall(x, build_knn(x, o), 400);
  std::printf("blocked, 60 lists, probe 4: recall fp32 %.4f, bf16 %.4f\n", fp32, bf16);
  EXPECT_GT(bf16, fp32 - 0.01);
  EXPECT_LT(bf16, 0.99);  // probe 4 of 60 must miss some: the lists decide
}

// The default index: exact while rows^2 x dim <= 1e13 multiply-adds, blocked above, exact on a
// GPU at any size; explicit choices are kept. On a small set it is the flat graph itself.
TEST(Knn, AutoIndexIsExactUpToTheWorkLimitAndBlockedAbove) {
  EXPECT_EQ(parse_knn_index("auto"), KnnIndex::Auto);
  EXPECT_EQ(resolve_knn_index(KnnIndex::Auto, 197000, 256, "cpu"), KnnIndex::Flat);     // 9.94e12
  EXPECT_EQ(resolve_knn_index(KnnIndex::Auto, 198000, 256, "cpu"), KnnIndex::Blocked);  // 1.004e13
  EXPECT_EQ(resolve_knn_index(KnnIndex::Auto, 279000, 128, "cpu"), KnnIndex::Flat);
  EXPECT_EQ(resolve_knn_index(KnnIndex::Auto, 5210000, 256, "cpu"), KnnIndex::Blocked);
  EXPECT_EQ(resolve_knn_index(KnnIndex::Auto, 5210000, 256, "cuda:0"), KnnIndex::Flat);
  EXPECT_EQ(resolve_knn_index(KnnIndex::Ivf, 100, 256, "cpu"), KnnIndex::Ivf);
  EXPECT_EQ(resolve_knn_index(KnnIndex::Flat, 5210000, 256, "cpu"), KnnIndex::Flat);
  const Matrix x = data(1500, 32, 11);
  KnnOptions o;
  o.k = 10;
  ASSERT_EQ(o.index, KnnIndex::Auto);
  const KnnGraph a = build_knn(x, o);
  o.index = KnnIndex::Flat;
  const KnnGraph f = build_knn(x, o);
  EXPECT_EQ(a.nbrs, f.nbrs);
  EXPECT_EQ(a.dists, f.dists);
}

// A distributed run sees the rows one shard at a time (each rank starts with its own shard and
// passes them round a ring): the merged top k must be build_knn's exact graph bit for bit.
TEST(Knn, ShardedExactSearchEqualsFlatBitForBit) {
  const Matrix x = data(8000, 64, 11);  // float ties at the k-th place happen in dozens of rows
  KnnOptions o;
  o.k = 40;
  const KnnGraph whole = build_knn(x, o);
  for (int parts : {1, 3, 4}) {
    for (int q = 0; q < parts; ++q) {
      const int64_t lo = x.rows * q / parts, hi = x.rows * (q + 1) / parts;
      const Matrix queries = Matrix::borrow(x.row(lo), hi - lo, x.cols);
      ShardedKnn search(queries, lo, o.k);
      for (int s = 0; s < parts; ++s) {  // ring order: own shard first, then the one before, ...
        const int r = (q - s + parts) % parts;
        const int64_t a = x.rows * r / parts, b = x.rows * (r + 1) / parts;
        search.add_shard(x.row(a), b - a, a, x.cols);
      }
      const KnnGraph got = search.finish();
      for (int64_t i = lo; i < hi; ++i)
        for (int j = 0; j < o.k; ++j) {
          ASSERT_EQ(got.nbr_row(i - lo)[j], whole.nbr_row(i)[j]) << "parts " << parts << " row " << i << " col " << j;
          ASSERT_EQ(got.dist_row(i - lo)[j], whole.dist_row(i)[j]) << "parts " << parts << " row " << i << " col " << j;
        }
    }
  }
}

// Equal distances are listed by row id, wherever the rows sit: five copies of each of 300
// points give every query tie groups of five, the k-th place (k 12) inside one of them.
TEST(Knn, ExactTiesAreInRowIdOrderWholeOrSharded) {
  const Matrix base = data(300, 16, 2);
  Matrix x(1500, 16);
  for (int64_t i = 0; i < x.rows; ++i) std::copy(base.row(i % 300), base.row(i % 300) + 16, x.row(i));
  KnnOptions o;
  o.k = 12;
  const KnnGraph whole = build_knn(x, o);
  const Matrix queries = Matrix::borrow(x.row(600), 300, x.cols);
  ShardedKnn search(queries, 600, o.k);
  for (int64_t a : {600, 300, 900, 0, 1200}) search.add_shard(x.row(a), 300, a, x.cols);
  const KnnGraph got = search.finish();
  for (int64_t i = 0; i < x.rows; ++i) {
    const int32_t* nb = whole.nbr_row(i);
    EXPECT_EQ(nb[0], i);
    for (int j = 2; j < o.k; ++j) {  // after the query itself: ascending id within equal distances
      if (whole.dist_row(i)[j] == whole.dist_row(i)[j - 1]) {
        EXPECT_LT(nb[j - 1], nb[j]) << "row " << i;
      }
    }
    // Its four copies (distance 0) come right after it, then the next group of five.
    for (int j = 1; j < 5; ++j) EXPECT_EQ(nb[j] % 300, i % 300) << "row " << i;
    if (i >= 600 && i < 900) {
      for (int j = 0; j < o.k; ++j) ASSERT_EQ(got.nbr_row(i - 600)[j], nb[j]) << "row " << i;
    }
  }
}

#ifdef FC_TEST_WITH_TORCH
// The libtorch exact search (the GPU build's kNN) on the CPU: faiss flat's neighbours and
// distances, ties listed by row id; bf16 candidates re-ranked in fp32 lose almost nothing.
TEST(Knn, TorchExactSearchMatchesFaissFlat) {
  const Matrix x = data(3000, 64, 13);
  KnnOptions o;
  o.k = 30;
  const KnnGraph ref = build_knn(x, o);
  const KnnGraph got = torch_exact_knn(x, o.k, "cpu");
  ASSERT_EQ(got.n, ref.n);
  ASSERT_EQ(got.k, ref.k);
  int64_t same = 0;
  for (int64_t i = 0; i < x.rows; ++i) {
    EXPECT_EQ(got.nbr_row(i)[0], i);
    for (int j = 0; j < o.k; ++j) ASSERT_NEAR(got.dist_row(i)[j], ref.dist_row(i)[j], 2e-6) << "row " << i;
    std::set<int32_t> a(got.nbr_row(i), got.nbr_row(i) + o.k), b(ref.nbr_row(i), ref.nbr_row(i) + o.k);
    same += a == b;
  }
  EXPECT_GE(same, x.rows - 30);  // sets differ only where float rounding reorders a tie at the k-th place
  EXPECT_GE(knn_recall(x, torch_exact_knn(x, o.k, "cpu", true), 500), 0.995);
  EXPECT_THROW(torch_exact_knn(x, o.k, "tpu"), Error);
}
#endif
