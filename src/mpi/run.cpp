// The distributed run (include/facecluster/distributed.h, docs/distributed.md).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "comm.h"
#include "components.h"
#include "facecluster/calibrate.h"
#include "facecluster/distributed.h"
#include "facecluster/duplicates.h"
#include "facecluster/io.h"
#include "facecluster/knn.h"
#include "facecluster/log.h"
#include "facecluster/metrics.h"
#include "facecluster/pipeline.h"
#include "facecluster/report.h"

namespace facecluster {

namespace {
bool g_session = false, g_run_started = false;
int g_rank = 0;
}  // namespace

bool started_by_mpirun() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"})
    if (std::getenv(v)) return true;
  return false;
}

MpiSession::MpiSession(int* argc, char*** argv) {
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  g_session = true;
  g_rank = rank_;
}

MpiSession::~MpiSession() {
  MPI_Finalize();
  g_session = false;
}

bool mpi_active() { return g_session; }
int mpi_rank() { return g_rank; }
bool distributed_run_started() { return g_run_started; }

namespace {
using mpi::answer_asked;
using mpi::ask_holders;
using mpi::Comm;
using mpi::RowPartition;

void check_plan(const RunPlan& plan) {
  FC_CHECK(!plan.features.empty(), "under mpirun the features must come from a file (--features)");
  // auto means exact here: the ring of shards is the distributed search.
  FC_CHECK(plan.knn.index == KnnIndex::Flat || plan.knn.index == KnnIndex::Auto, "under mpirun the kNN graph is exact: --index "
                                                 << knn_index_name(plan.knn.index) << " is not distributed (use flat)");
  FC_CHECK(plan.graph.density == Density::OneStep,
           "under mpirun the density is the one-step NDDE (approximate_NDDe); the full diffusion (NDDe) is not distributed");
}

// One in-edge on the wire (row ids fit int32: at most 2^31 - 1 rows).
struct WireEdge {
  int32_t target, source;
  float weight;
};

bool held_here(int64_t j, int64_t lo, int64_t n_own) { return j >= lo && j < lo + n_own; }

// The neighbour lists of the rows that this process's calibration sample names elsewhere
// (ids ascending), so that every sampled pair's list overlap can be counted.
struct SampleLists {
  std::vector<int64_t> ids;
  std::vector<int32_t> nbrs;
};
SampleLists fetch_sample_lists(Comm& c, const RowPartition& part, const KnnGraph& g, int64_t lo, int64_t n) {
  SampleLists s;
  for (int64_t i : calibration_sampled_rows(lo, g.n, n, g.k))
    for (int j = 0; j < g.k; ++j) {
      const int32_t t = g.nbr_row(i)[j];
      if (t >= 0 && !held_here(t, lo, g.n)) s.ids.push_back(t);
    }
  s.ids = mpi::sorted_unique(std::move(s.ids));
  s.nbrs = answer_asked<int32_t>(c, ask_holders(c, part, s.ids), lo, g.k, [&](int64_t i) { return g.nbr_row(i); });
  return s;
}

// Blocks of this process's rows for work that needs the rows they name elsewhere (a halo):
// one block when every row named fits budget_bytes at row_bytes each, else blocks of rows whose
// k names each fit it, a multiple of `align` rows each. `rounds`: the most blocks any process has
// (every process runs them all, answering the others' questions in each).
struct RowBlocks {
  int64_t size = 1, rounds = 1;
};
RowBlocks plan_blocks(Comm& c, const RowPartition& part, const KnnGraph& g, int64_t lo, int64_t row_bytes,
                      int64_t budget_bytes, int64_t align = 1) {
  const int64_t n_own = g.n;
  int64_t named = 0;
  std::vector<bool> seen(static_cast<size_t>(part.n));
  for (int32_t j : g.nbrs)
    if (j >= 0 && !held_here(j, lo, n_own) && !seen[static_cast<size_t>(j)]) {
      seen[static_cast<size_t>(j)] = true;
      ++named;
    }
  RowBlocks b;
  if (named * row_bytes <= budget_bytes) {
    b.size = std::max<int64_t>(n_own, 1);
  } else {
    const int64_t fit = std::max<int64_t>(256, budget_bytes / (int64_t{g.k} * row_bytes));
    b.size = std::max(align, fit / align * align);
  }
  b.rounds = c.all_reduce((n_own + b.size - 1) / b.size, MPI_MAX);
  return b;
}

// Block b of plan_blocks (empty past this process's last one): its rows [s, e) (local), their
// lists as a graph of their own, the rows those lists name outside the block (ascending, held
// here or elsewhere) and, of those, the ones other processes hold (to be asked of them).
struct Block {
  int64_t s = 0, e = 0;
  KnnGraph g;
  std::vector<int64_t> named, foreign;
};
Block block_of(const KnnGraph& g, int64_t lo, const RowBlocks& rb, int64_t b) {
  Block out;
  out.s = std::min(g.n, b * rb.size);
  out.e = std::min(g.n, out.s + rb.size);
  out.g = KnnGraph(out.e - out.s, g.k);
  std::copy(g.nbr_row(out.s), g.nbr_row(out.e), out.g.nbrs.begin());
  std::copy(g.dist_row(out.s), g.dist_row(out.e), out.g.dists.begin());
  out.named = halo_ids(out.g, lo + out.s);
  for (int64_t j : out.named)
    if (!held_here(j, lo, g.n)) out.foreign.push_back(j);
  return out;
}

// Parents of this process's rows, linked in blocks (plan_blocks): each block's halo (the rows its
// lists name, with their lists, sqrt(q) and density) is assembled from this process's rows and
// from their holders, used and dropped.
struct BlockedLinks {
  Links links;
  int64_t fetched_rows = 0, blocks = 0, most_held = 0;  // most_held: the largest block's halo rows
};
BlockedLinks link_in_blocks(Comm& c, const RowPartition& part, const KnnGraph& g, int64_t lo, const std::vector<float>& sq,
                            const std::vector<double>& rho, const GraphParams& params, int64_t budget_bytes) {
  const int64_t n_own = g.n, k = g.k;
  const bool tpdi = !sq.empty();
  // A halo row: its list, sqrt(q), density and id, held twice (as fetched, then in the part).
  const int64_t row_bytes = 2 * (k * (tpdi ? 8 : 4) + 24);
  const RowBlocks rb = plan_blocks(c, part, g, lo, row_bytes, budget_bytes);
  BlockedLinks out;
  out.blocks = rb.rounds;
  out.links.max_conn = params.max_conn;
  Progress prog("link blocks", out.blocks);
  for (int64_t b = 0; b < out.blocks; ++b) {
    const Block blk = block_of(g, lo, rb, b);
    const int64_t s = blk.s, e = blk.e, nb = e - s;
    HaloRows h;
    h.ids = blk.named;
    const auto asked = ask_holders(c, part, blk.foreign);
    const auto f_nbrs = answer_asked<int32_t>(c, asked, lo, k, [&](int64_t i) { return g.nbr_row(i); });
    const auto f_sq = tpdi ? answer_asked<float>(c, asked, lo, k, [&](int64_t i) { return sq.data() + i * k; })
                           : std::vector<float>();
    const auto f_rho = answer_asked<double>(c, asked, lo, 1, [&](int64_t i) { return rho.data() + i; });
    out.fetched_rows += static_cast<int64_t>(blk.foreign.size());
    out.most_held = std::max(out.most_held, static_cast<int64_t>(h.ids.size()));
    if (c.rank() == 0) prog.update(b + 1);
    c.step([&] {
      if (nb == 0) return;
      size_t f = 0;  // the next fetched row: fetched rows come in id order, as h.ids lists them
      for (int64_t j : h.ids) {
        const bool here = held_here(j, lo, n_own);
        const int32_t* list = here ? g.nbr_row(j - lo) : f_nbrs.data() + f * k;
        h.nbrs.insert(h.nbrs.end(), list, list + k);
        if (tpdi) {
          const float* q = here ? sq.data() + (j - lo) * k : f_sq.data() + f * k;
          h.sq.insert(h.sq.end(), q, q + k);
        }
        h.density.push_back(here ? rho[static_cast<size_t>(j - lo)] : f_rho[f]);
        if (!here) ++f;
      }
      const std::vector<float> sq_block = tpdi ? std::vector<float>(sq.begin() + s * k, sq.begin() + e * k) : std::vector<float>();
      const std::vector<double> rho_block(rho.begin() + s, rho.begin() + e);
      const Links lb = select_parents_part(make_graph_part(blk.g, lo + s, sq_block, rho_block, h), params);
      out.links.parent.insert(out.links.parent.end(), lb.parent.begin(), lb.parent.end());
      out.links.dist.insert(out.links.dist.end(), lb.dist.begin(), lb.dist.end());
    });
  }
  return out;
}

// The learned similarity over this process's rows. An anchor's scores depend, in their last bit,
// on the batch it runs in (BLAS products round by a row's place in them: measured under
// OpenBLAS's Haswell kernels), so every anchor runs in the batch it runs in on one process: rows
// [jB, (j + 1)B) for batch size B. Process r runs the batches that start in its slice (`runs`:
// the slices rounded up to multiples of B), so it runs, past its slice's end, fewer than B rows
// whose lists and features it fetches, and its first (fewer than B) rows come from the process
// that ran them. The runs go in blocks of anchors (plan_blocks, within the halo budget, whole
// batches): the features of the rows a block names outside it are fetched (a halo of features),
// and the model's lists come back in global ids.
KnnGraph learned_rows(Comm& c, const RunPlan& plan, const RowPartition& part, KnnGraph g, const Matrix& x, int64_t lo) {
  const int64_t n_own = g.n, hi = lo + n_own, d = x.cols, k = g.k;
  const int64_t batch = plan.inference.batch_size;
  const RowPartition runs{part.n, part.parts, batch};
  const int64_t a = runs.first(c.rank()), a_end = a + runs.count(c.rank());
  const int64_t ran_here_end = std::min(a_end, hi);  // rows [a, ran_here_end) are run and held here

  // The rows run here past this slice: their lists and features, from their holders.
  std::vector<int64_t> past;
  for (int64_t j = std::max(a, hi); j < a_end; ++j) past.push_back(j);
  const auto asked_past = ask_holders(c, part, past);
  const auto past_nbrs = answer_asked<int32_t>(c, asked_past, lo, k, [&](int64_t i) { return g.nbr_row(i); });
  const auto past_dists = answer_asked<float>(c, asked_past, lo, k, [&](int64_t i) { return g.dist_row(i); });
  const auto past_x = answer_asked<float>(c, asked_past, lo, d, [&](int64_t i) { return x.row(i); });
  // g becomes the lists of the rows run here: [a, a_end).
  const int64_t skipped = std::max<int64_t>(0, std::min(a, hi) - lo);
  g.nbrs.erase(g.nbrs.begin(), g.nbrs.begin() + skipped * k);
  g.dists.erase(g.dists.begin(), g.dists.begin() + skipped * k);
  g.nbrs.insert(g.nbrs.end(), past_nbrs.begin(), past_nbrs.end());
  g.dists.insert(g.dists.end(), past_dists.begin(), past_dists.end());
  g.n = a_end - a;
  auto features_of = [&](int64_t j) {  // a row run here
    return j < hi ? x.row(j - lo) : past_x.data() + (j - hi) * d;
  };

  const RowBlocks rb = plan_blocks(c, part, g, a, 2 * (d * 4 + 8), plan.halo_mib << 20, batch);
  if (c.rank() == 0 && rb.rounds > 1)
    log_info("  model: anchors in " + std::to_string(rb.rounds) + " blocks (their neighbours' features within --halo-mib)");
  KnnGraph ran;
  ran.n = g.n;
  ran.k = g.k;
  for (int64_t b = 0; b < rb.rounds; ++b) {
    const Block blk = block_of(g, a, rb, b);
    const int64_t s = blk.s, e = blk.e, nb = e - s;
    const std::vector<int64_t>& ids = blk.named;
    const std::vector<float> fetched =
        answer_asked<float>(c, ask_holders(c, part, blk.foreign), lo, d, [&](int64_t i) { return x.row(i); });
    c.step([&] {
      if (nb == 0) return;
      Matrix xl(nb + static_cast<int64_t>(ids.size()), d);
      for (int64_t i = 0; i < nb; ++i) {
        const float* row = features_of(a + s + i);
        std::copy(row, row + d, xl.row(i));
      }
      size_t f = 0;
      for (size_t h = 0; h < ids.size(); ++h) {
        const float* row = held_here(ids[h], a, g.n) ? features_of(ids[h]) : fetched.data() + (f++) * d;
        std::copy(row, row + d, xl.data.begin() + (nb + static_cast<int64_t>(h)) * d);
      }
      KnnGraph gl(xl.rows, g.k);  // halo rows: no list (they are never anchors)
      auto local_id = [&](int32_t j) -> int32_t {
        if (j < 0) return -1;
        if (j >= a + s && j < a + e) return static_cast<int32_t>(j - a - s);
        return static_cast<int32_t>(nb + (std::lower_bound(ids.begin(), ids.end(), int64_t{j}) - ids.begin()));
      };
      for (int64_t i = 0; i < nb * g.k; ++i) {
        gl.nbrs[static_cast<size_t>(i)] = local_id(blk.g.nbrs[static_cast<size_t>(i)]);
        gl.dists[static_cast<size_t>(i)] = blk.g.dists[static_cast<size_t>(i)];
      }
      KnnGraph lb = plan_learned_graph(plan, xl, gl, nb);
      for (int32_t& j : lb.nbrs)
        if (j >= 0) j = static_cast<int32_t>(j < nb ? a + s + j : ids[static_cast<size_t>(j - nb)]);
      ran.nbrs.insert(ran.nbrs.end(), lb.nbrs.begin(), lb.nbrs.begin() + nb * g.k);
      ran.dists.insert(ran.dists.end(), lb.dists.begin(), lb.dists.begin() + nb * g.k);
    });
  }
  g = KnnGraph();

  // This slice's first rows, run elsewhere, come from the process that ran them; the rows run
  // here past this slice go to their holders.
  std::vector<int64_t> before;
  for (int64_t j = lo; j < std::min(a, hi); ++j) before.push_back(j);
  const auto asked_before = ask_holders(c, runs, before);
  const auto before_nbrs = answer_asked<int32_t>(c, asked_before, a, k, [&](int64_t i) { return ran.nbr_row(i); });
  const auto before_dists = answer_asked<float>(c, asked_before, a, k, [&](int64_t i) { return ran.dist_row(i); });
  const int64_t kept = std::max<int64_t>(0, ran_here_end - a);
  ran.nbrs.resize(static_cast<size_t>(kept * k));
  ran.dists.resize(static_cast<size_t>(kept * k));
  ran.nbrs.insert(ran.nbrs.begin(), before_nbrs.begin(), before_nbrs.end());
  ran.dists.insert(ran.dists.begin(), before_dists.begin(), before_dists.end());
  ran.n = n_own;
  FC_CHECK(static_cast<int64_t>(ran.nbrs.size()) == n_own * k, "internal: the learned lists of " << ran.nbrs.size() / k
                                                                << " rows for a slice of " << n_own);
  return ran;
}

// Every process's peak memory and bytes sent per stage, logged by process 0.
void log_scale(Comm& c, int64_t own_rows, const BlockedLinks& linked) {
  static const char* stages[] = {"knn", "model", "halo", "calibrate", "density", "components", "gather"};
  std::vector<double> mine{peak_memory_mib(), double(own_rows), double(linked.fetched_rows), double(linked.blocks),
                           double(linked.most_held)};
  for (const char* s : stages) {
    const auto it = c.sent().find(s);
    mine.push_back(it == c.sent().end() ? 0.0 : double(it->second));
  }
  c.stage = "report";
  const std::vector<double> all = c.gather_to_root(mine);
  if (c.rank() != 0) return;
  const size_t w = mine.size();
  for (int r = 0; r < c.size(); ++r) {
    char head[160];
    std::snprintf(head, sizeof head,
                  "[mpi] process %d: peak %.0f MiB, %.0f rows, halo %.0f rows fetched in %.0f block(s), at most %.0f held; sent",
                  r, all[r * w], all[r * w + 1], all[r * w + 2], all[r * w + 3], all[r * w + 4]);
    std::string line = head;
    for (size_t s = 0; s < std::size(stages); ++s) {
      char buf[64];
      std::snprintf(buf, sizeof buf, " %s %.1f MiB", stages[s], all[r * w + 5 + s] / (1024.0 * 1024.0));
      line += buf;
    }
    log_info(line);
  }
}

ClusterReport run(const RunPlan& plan, Comm& c) {
  const bool root = c.rank() == 0;
  const int P = c.size();
  c.step([&] { check_plan(plan); });
  if (root && !plan.knn_cache.empty())
    log_warn("the kNN cache " + plan.knn_cache + " is neither read nor written under mpirun (the graph is built across processes)");
  FeatureShape shape;
  c.step([&] {
    const FeatureShape found = feature_shape(plan.features, plan.feature_dim);
    const int64_t rows = found.rows;
    FC_CHECK(rows < (int64_t{1} << 31), "features file " << plan.features << " has " << rows
                                                         << " rows; at most 2^31 - 1 are supported");
    FC_CHECK(rows >= P, "features file " << plan.features << " has " << rows << " rows, fewer than the " << P
                                         << " processes");
    shape = found;
  });
  const RowPartition part{shape.rows, P};
  const int64_t lo = part.first(c.rank()), n_own = part.count(c.rank()), n = shape.rows;
  const int k = static_cast<int>(std::min<int64_t>(plan.knn.k, n));
  if (root && k < plan.knn.k)
    log_warn("k = " + std::to_string(plan.knn.k) + " exceeds the " + std::to_string(n) + " rows; using k = " + std::to_string(k));
  if (root) log_info("[mpi] " + std::to_string(P) + " processes, " + std::to_string(n) + " rows, about " +
                     std::to_string(n / P) + " each");

  Matrix x;
  Labels gt;
  {
    StageTimer t("read rows (this process's slice)");
    c.step([&] {
      x = read_feature_rows(plan.features, plan.feature_dim, lo, n_own);
      prepare_features(plan, x, lo);
      if (root) gt = read_plan_labels(plan, n);
    });
  }

  KnnGraph g;
  {
    c.stage = "knn";
    StageTimer t("knn (exact, a ring of " + std::to_string(P) + " shards, k " + std::to_string(k) + ")");
    ShardedKnn search(x, lo, k);
    std::vector<float> shard = x.data, incoming;
    int holder = c.rank();  // whose rows `shard` holds
    Progress prog("knn ring", P);
    for (int s = 0; s < P; ++s) {
      c.step([&] { search.add_shard(shard.data(), part.count(holder), part.first(holder), x.cols); });
      if (root) prog.update(s + 1);
      if (s + 1 == P) break;
      const int from = (holder - 1 + P) % P;  // the shard the previous process holds now
      incoming.resize(static_cast<size_t>(part.count(from) * x.cols));
      FC_CHECK(shard.size() < (size_t{1} << 31) && incoming.size() < (size_t{1} << 31),
               "internal: a shard of more than 2^31 values; run with more processes");
      MPI_Sendrecv(shard.data(), static_cast<int>(shard.size()), MPI_FLOAT, (c.rank() + 1) % P, 0, incoming.data(),
                   static_cast<int>(incoming.size()), MPI_FLOAT, (c.rank() - 1 + P) % P, 0, c.handle(), MPI_STATUS_IGNORE);
      c.count_sent("knn", static_cast<int64_t>(shard.size() * sizeof(float)));
      shard.swap(incoming);
      holder = from;
    }
    g = search.finish();
  }
  // Copies of a face are grouped by the one-process run only (docs/duplicates.md); here they
  // are at least counted and named, not silently clustered as evidence of each other.
  const int64_t with_copy = c.all_reduce(rows_with_a_copy(g, lo), MPI_SUM);
  const std::string copies_warning =
      with_copy == 0 ? ""
                     : std::to_string(with_copy) + " faces have a copy (" + copy_distance_text() +
                           "); copies are clustered once only on one process: under mpirun they count as evidence of "
                           "each other and can split or join clusters; run on one process or remove the copies";
  if (!plan.model.empty()) {
    c.stage = "model";
    StageTimer t("learned similarity (this process's rows as anchors, with a halo of features)");
    g = learned_rows(c, plan, part, std::move(g), x, lo);
  }
  x = Matrix();

  Calibration cal;
  GraphParams params = plan.graph;
  if (plan.calibrate == CalibrateMode::Auto) {
    c.stage = "calibrate";
    StageTimer t("calibrate");
    SimilarityRange range = similarity_range(g, lo);
    range.lo = c.all_reduce(range.lo, MPI_MIN);
    range.hi = c.all_reduce(range.hi, MPI_MAX);
    const SampleLists lists = fetch_sample_lists(c, part, g, lo, n);
    PairSample mine;
    c.step([&] {
      mine = sample_pairs(g, lo, n, [&](int32_t j) -> const int32_t* {
        if (held_here(j, lo, n_own)) return g.nbr_row(j - lo);
        const auto it = std::lower_bound(lists.ids.begin(), lists.ids.end(), int64_t{j});
        FC_CHECK(it != lists.ids.end() && *it == j, "internal: row " << j << " is not among the sample's lists");
        return lists.nbrs.data() + (it - lists.ids.begin()) * g.k;
      });
    });
    PairSample all;
    all.a = c.allgather(mine.a);
    all.b = c.allgather(mine.b);
    all.sim = c.allgather(mine.sim);
    all.overlap = c.allgather(mine.overlap);
    c.step([&] {
      cal = calibration_from_sample(all, range, plan.graph);
      calibrate_distances(g, cal, lo);
    });
    params = cal.params;
  }

  std::vector<double> rho;
  {
    c.stage = "density";
    StageTimer t("density (approximate_NDDe, in-edges to their rows' holders)");
    std::vector<std::vector<WireEdge>> send(static_cast<size_t>(P));
    c.step([&] {
      FC_CHECK(params.ndde_k >= 1, "NDDE k must be >= 1, got " << params.ndde_k);
      const int kd = std::min(params.ndde_k, g.k);
      const std::vector<float> p = transition_probabilities(g, kd, params.ndde_sigma, false, params.threads);
      for (int64_t i = 0; i < n_own; ++i)
        for (int j = 0; j < kd; ++j) {
          const int32_t t = g.nbr_row(i)[j];
          if (t >= 0) send[static_cast<size_t>(part.owner(t))].push_back({t, static_cast<int32_t>(lo + i), p[i * kd + j]});
        }
    });
    std::vector<InEdge> in;
    for (const auto& got : c.exchange(send))
      for (const WireEdge& e : got) in.push_back({e.target, e.source, e.weight});
    send.clear();
    c.step([&] { rho = density_from_in_edges(std::move(in), lo, n_own); });
  }

  BlockedLinks linked;
  {
    c.stage = "halo";
    StageTimer t(params.use_tpdi ? "TPDi + parents (halo rows fetched in blocks)" : "parents (halo rows fetched in blocks)");
    std::vector<float> sq;
    c.step([&] {
      if (params.use_tpdi) sq = transition_probabilities(g, g.k, params.tpdi_sigma, true, params.threads);
    });
    linked = link_in_blocks(c, part, g, lo, sq, rho, params, plan.halo_mib << 20);
  }
  const Links& links = linked.links;

  ClusterReport r;
  const Labels* truth = gt.empty() ? nullptr : &gt;
  c.stage = "gather";
  std::vector<double> density = c.gather_to_root(rho);
  LinkSummary summary = summarize_links(links);
  summary.histogram = c.sum_to_root(summary.histogram);
  summary.below = c.sum_to_root(summary.below);
  c.step([&] {
    if (!root) return;
    r.plan = describe_plan(plan);
    r.plan.emplace_back("processes", std::to_string(P) + " (MPI; rows split in consecutive slices; halo blocks within " +
                                         std::to_string(plan.halo_mib) + " MiB)");
    r.warnings = plan.warnings;
    if (!copies_warning.empty()) r.warnings.push_back(copies_warning);
    r.params = params;
    if (plan.calibrate == CalibrateMode::Auto) {
      r.decisions.push_back(cal.decision);
      r.notes = cal.notes;
    }
    r.density = std::move(density);
    r.link_summary = std::move(summary);
  });

  // The automatic cut walks every link in distance order: process 0 gathers them (8 B a row),
  // chooses tau and drops them. A given tau needs no gathering.
  std::vector<double> taus = plan.taus;
  if (plan.tau_automatic) {
    std::vector<int32_t> parents = c.gather_to_root(links.parent);
    std::vector<float> link_dists = c.gather_to_root(links.dist);
    double tau = 0;
    c.step([&] {
      if (!root) return;
      r.links.max_conn = params.max_conn;
      r.links.parent = std::move(parents);
      r.links.dist = std::move(link_dists);
      tau = taus_to_run(plan, cal, r).front();
      r.links = Links();
    });
    MPI_Bcast(&tau, 1, MPI_DOUBLE, 0, c.handle());
    taus = {tau};
  }
  {
    StageTimer t("connected components across processes + score " + std::to_string(taus.size()) + " tau value(s)");
    for (size_t i = 0; i < taus.size(); ++i) {
      c.stage = "components";
      int64_t rounds = 0;
      Labels mine = mpi::distributed_components(c, part, links, lo, taus[i], &rounds);
      if (root) log_info("  tau " + std::to_string(taus[i]) + ": components settled in " + std::to_string(rounds) + " rounds");
      c.stage = "gather";
      Labels all = c.gather_to_root(mine);
      c.step([&] {
        if (root) record_tau(plan, i, taus[i], std::move(all), truth, r);
      });
    }
  }
  c.step([&] {
    if (!root) return;
    if (!gt.empty()) {
      StageTimer bins("hard-cluster bins");
      r.true_sizes = class_sizes(gt);
      r.size_bins = evaluate_by_size(r.labels, gt, plan.bins);
      const ClassCosines cc = class_mean_cosines_by_blocks(gt, shape.cols, [&](int64_t first, int64_t count) {
        Matrix m = read_feature_rows(plan.features, plan.feature_dim, first, count);
        prepare_features(plan, m, first);
        return m;
      });
      r.sparsity_bins = evaluate_by_sparsity(r.labels, gt, cc, plan.bins);
    }
    if (!plan.out_dir.empty()) {
      StageTimer w("write results to " + plan.out_dir);
      write_results(plan.out_dir, r, plan.create_out_parents);
    }
  });
  log_scale(c, n_own, linked);
  return r;
}

}  // namespace

ClusterReport run_plan_distributed(const RunPlan& plan) {
  FC_CHECK(g_session, "internal: the distributed run needs an MPI session");
  g_run_started = true;
  Comm c;
  if (c.rank() != 0) set_log_level(-1);
  try {
    return run(plan, c);
  } catch (const std::exception& e) {
    if (c.failure_agreed()) throw;
    // Not agreed: the other processes may wait in a collective for this one; end them all.
    std::fprintf(stderr, "facecluster: error: process %d of %d: %s\n", c.rank(), c.size(), e.what());
    std::fflush(stderr);
    MPI_Abort(c.handle(), 1);
    throw;
  }
}

}  // namespace facecluster
