#include <csignal>
#include <cstdio>
#include <new>
#include <string>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "commands.h"
#include "options.h"
#include "facecluster/build_info.h"
#include "facecluster/error.h"
#include "facecluster/log.h"
#ifdef FC_WITH_MPI
#include "facecluster/distributed.h"
#endif

namespace {
// The signal that asked to stop (SIGINT or SIGTERM), 0 while none did. Long loops see it through
// the interrupt hook, stop, and remove what they were writing.
volatile std::sig_atomic_t g_signal = 0;
void on_stop_signal(int sig) { g_signal = sig; }
bool interrupted() { return g_signal != 0; }
int interrupted_exit_code() { return 128 + (g_signal ? int(g_signal) : SIGINT); }  // 130 or 143

// The first line of a parse error, printable: it may quote raw input.
std::string one_line(const std::string& s) { return facecluster::printable(s.substr(0, s.find_first_of("\r\n")), 200); }
}  // namespace

namespace facecluster::cli {
std::optional<int64_t>& global_threads() {
  static std::optional<int64_t> threads;
  return threads;
}
}  // namespace facecluster::cli

int main(int argc, char** argv) {
  // Under mpirun every process parses the same command line and resolves the same plan: only
  // process 0 reports what fails there. Once the distributed run has begun, the process whose
  // step failed reports it (the others end quietly with FailedElsewhere).
  bool other_process = false;
#ifdef FC_WITH_MPI
  std::unique_ptr<facecluster::MpiSession> mpi;
  if (facecluster::started_by_mpirun()) {
    mpi = std::make_unique<facecluster::MpiSession>(&argc, &argv);
    other_process = mpi->rank() > 0;
  }
  auto reports = [&] { return !other_process || facecluster::distributed_run_started(); };
#else
  auto reports = [&] { return !other_process; };
#endif
  CLI::App app{"facecluster: cluster face embeddings by identity (NDDE density, TPDi distance, density-peak linking)"};
  app.set_version_flag("--version", facecluster::build_info_line());
  app.require_subcommand(1);
  app.fallthrough();
  bool quiet = false;
  app.add_option("--threads", facecluster::cli::global_threads(), "worker threads (0: all cores; default: the config's threads, else 0)");
  app.add_flag("-q,--quiet", quiet, "no stage log lines");
  std::map<CLI::App*, std::function<void()>> runs;
  using namespace facecluster::cli;
  std::vector<std::function<void()> (*)(CLI::App&)> adders{add_synth, add_evaluate, add_knn, add_cluster, add_add, add_demo};
#ifdef FC_WITH_TORCH
  adders.push_back(add_train);
  adders.push_back(add_eval);
  adders.push_back(add_export);
#endif
  for (auto add : adders) {
    auto run = add(app);
    runs[app.get_subcommands({}).back()] = run;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return other_process ? 0 : app.exit(e);  // --help
    if (reports()) std::fprintf(stderr, "facecluster: error: %s (see --help)\n", one_line(e.what()).c_str());
    return 1;
  }
  facecluster::set_log_level(other_process ? -1 : quiet ? 0 : 1);
#ifdef FC_WITH_MPI
  if (mpi && mpi->size() > 1 && app.get_subcommands().front()->get_name() != "cluster") {
    if (reports()) std::fprintf(stderr, "facecluster: error: only `facecluster cluster` runs across processes under mpirun\n");
    return 1;
  }
#endif
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  // A file size limit (ulimit -f, a quota) makes a write fail with EFBIG, which is reported and
  // cleaned up like any failed write, instead of killing the process where it stands.
  std::signal(SIGXFSZ, SIG_IGN);
  facecluster::set_interrupt_hook(&interrupted);
  try {
    for (auto* sub : app.get_subcommands()) runs.at(sub)();
  } catch (const facecluster::FailedElsewhere&) {
    return 1;
  } catch (const facecluster::Interrupted&) {
    if (reports()) std::fprintf(stderr, "facecluster: interrupted\n");
    return interrupted_exit_code();
  } catch (const std::bad_alloc&) {
    if (reports()) std::fprintf(stderr, "facecluster: error: out of memory (the input is too large for this machine)\n");
    return 1;
  } catch (const std::exception& e) {
    if (reports()) std::fprintf(stderr, "facecluster: error: %s\n", facecluster::escape_controls(e.what()).c_str());
    return 1;
  }
  if (interrupted()) {  // a signal after the last check: the run did not finish as asked
    std::fprintf(stderr, "facecluster: interrupted\n");
    return interrupted_exit_code();
  }
  return 0;
}
