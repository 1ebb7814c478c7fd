// The graph stage (SPEC sections 4 and 5): transition probabilities, NDDE density, TPDi
// distance, density-peak parent selection, and connected components. Memory O(N k); OpenMP
// across rows; results do not depend on the number of threads.
#pragma once

#include <string>
#include <vector>

#include "facecluster/config.h"
#include "facecluster/types.h"

namespace facecluster {

// The density estimate: the release's one diffusion step from unit mass ("approximate_NDDe"),
// or the paper's full diffusion to convergence ("NDDe").
enum class Density { OneStep, Full };
Density parse_density(const std::string& name);  // throws naming the accepted names
const char* density_name(Density d);

// Defaults are the release's (DensityArgs and ClusterArgs in config.h hold them).
struct GraphParams {
  Density density = Density::OneStep;
  int ndde_k = DensityArgs{}.ndde_k;                // neighbours used for the density
  double ndde_sigma = DensityArgs{}.ndde_sigma;     // density temperature
  double ndde_d = DensityArgs{}.ndde_d;             // full NDDE: damping (mass kept per step)
  double ndde_epsilon = DensityArgs{}.ndde_epsilon; // full NDDE: stop when the L1 change is below this
  int ndde_max_iter = DensityArgs{}.ndde_max_iter;  // full NDDE: safety cap on iterations
  bool use_tpdi = DensityArgs{}.tpdi;               // link by TPDi (else by the kNN / learned distance)
  double tpdi_sigma = DensityArgs{}.tpdi_sigma;     // TPDi temperature, over all k neighbours
  int max_conn = ClusterArgs{}.max_conn;            // parents per row
  int threads = 0;                                  // 0: OpenMP default
  bool reorder_rows = true;  // TPDi over rows renumbered for locality (same values; faster on shuffled input)
};

// Checks a graph before the stage runs: index range, -1 padding only at a row's end, no NaN or
// negative distance, rows sorted ascending. `source` names the input in the message.
void validate_graph(const KnnGraph& g, const std::string& source);

// Row-normalised transition probabilities over the first k entries of each row:
// p_ij = exp(-d_ij / sigma) / (sum_l exp(-d_il / sigma) + 1e-5). Returns n * k values
// (0 for padding). With take_sqrt, returns sqrt(p_ij) (what TPDi needs).
std::vector<float> transition_probabilities(const KnnGraph& g, int k, double sigma, bool take_sqrt, int threads = 0);

// NDDE as the release runs it: one diffusion step from unit mass, rho_j = sum_i p_ij.
std::vector<double> density_one_step(const KnnGraph& g, int k, double sigma, int threads = 0);

// NDDE as the paper defines it: rho <- d rho + (1 - d) P^T rho from rho = 1/N with P's
// diagonal zeroed, until the L1 change < epsilon. Sparse, O(N k). Reports iterations used.
std::vector<double> density_full(const KnnGraph& g, int k, double sigma, double d, double epsilon, int max_iter,
                                 int threads = 0, int* iterations = nullptr);

// One-step NDDE of rows first_row..first_row + rows - 1 from their in-edges (target, source,
// p_source,target), gathered from whichever process holds each source row: summed in source
// order as density_one_step sums them, so the values are its values bit for bit.
struct InEdge {
  int64_t target = 0, source = 0;
  float weight = 0;
};
std::vector<double> density_from_in_edges(std::vector<InEdge> edges, int64_t first_row, int64_t rows);

std::vector<double> compute_density(const KnnGraph& g, const GraphParams& p);

// TPDi(i, j) = 1 - sum over l in N(i) and N(j) of sqrt(q_il q_jl), for one pair; sq holds
// sqrt(q) from transition_probabilities(g, g.k, tpdi_sigma, true). Slow; for tools and tests.
double tpdi_pair(const KnnGraph& g, const std::vector<float>& sq, int64_t i, int64_t j);

// Parents of each row: the first max_conn neighbours j != i, in ascending linking distance
// (TPDi, or the graph distance when use_tpdi is off; ties keep neighbour rank order), with
// density[j] >= density[i]. parent[i * max_conn + c] = -1 when there is none.
struct Links {
  int max_conn = 1;
  std::vector<int32_t> parent;
  std::vector<float> dist;
};
Links select_parents(const KnnGraph& g, const std::vector<double>& density, const GraphParams& p);

// A part of a graph for the linking stage of a distributed run: local rows 0..own-1 are the
// rows to link, the rest (the halo) their neighbours held by other processes. Entries are local
// row ids, with rows() (one past the last row) for padding and for entries outside the part;
// sq (sqrt(q) at tpdi_sigma) and density were computed by each row's owner on the whole graph.
struct GraphPart {
  int64_t own = 0;
  int k = 0;
  std::vector<int64_t> global;  // the global id of each local row, own rows first
  std::vector<int32_t> nbrs;    // rows() x k
  std::vector<float> sq;        // rows() x k (TPDi)
  std::vector<float> dists;     // own x k graph distances (linking without TPDi)
  std::vector<double> density;  // rows()
  int64_t rows() const { return static_cast<int64_t>(global.size()); }
};
// Parents of the own rows in global ids: the values select_parents gives those rows on the whole
// graph, bit for bit.
Links select_parents_part(const GraphPart& part, const GraphParams& p);

// Rows held elsewhere that a part needs (its halo): global ids ascending, their neighbour lists
// (global ids), sqrt(q) and density, k values per row.
struct HaloRows {
  std::vector<int64_t> ids;
  std::vector<int32_t> nbrs;
  std::vector<float> sq;
  std::vector<double> density;
};
// The ids that rows first_row..first_row + own.n - 1 name outside themselves, ascending, once each.
std::vector<int64_t> halo_ids(const KnnGraph& own, int64_t first_row);
// The part of those rows (own: their lists in global ids and graph distances; own_sq empty
// when linking without TPDi) and their halo.
GraphPart make_graph_part(const KnnGraph& own, int64_t first_row, const std::vector<float>& own_sq,
                          const std::vector<double>& own_density, const HaloRows& halo);

// Connected components of the edges i -> parent with dist < tau. Labels are 0..C-1 in order of
// each component's first row.
Labels link_components(const Links& links, double tau);

struct GraphResult {
  std::vector<double> density;
  Links links;
};
GraphResult run_graph_stage(const KnnGraph& g, const GraphParams& p);

// The graph stage of a graph that grew (rows added at the end) and whose rows `changed` (the
// new rows need not be listed) have other lists or distances than the graph r was computed on:
// r becomes run_graph_stage(g, p), bit for bit. One-step density is recomputed in one pass over
// the lists (O(N k), a small share of the stage); TPDi and parents only for the rows that can
// change: those that changed or whose density did, and the rows that name one of them. Full
// NDDE moves every density: the whole stage runs again. Returns the rows recomputed, ascending.
std::vector<int64_t> update_graph_stage(const KnnGraph& g, const std::vector<int64_t>& changed, const GraphParams& p,
                                        GraphResult& r);

}  // namespace facecluster
