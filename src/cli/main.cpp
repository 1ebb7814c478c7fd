#include <csignal>
#include <cstdio>
#include <map>
#include <optional>
#include <vector>

#include "commands.h"
#include "options.h"
#include "facecluster/error.h"
#include "facecluster/log.h"

namespace {
volatile std::sig_atomic_t g_interrupted = 0;
void on_sigint(int) { g_interrupted = 1; }
bool interrupted() { return g_interrupted != 0; }
}  // namespace

namespace facecluster::cli {
std::optional<int64_t>& global_threads() {
  static std::optional<int64_t> threads;
  return threads;
}
}  // namespace facecluster::cli

int main(int argc, char** argv) {
  CLI::App app{"facecluster: cluster face embeddings by identity (NDDE density, TPDi distance, density-peak linking)"};
  app.require_subcommand(1);
  app.fallthrough();
  bool quiet = false;
  app.add_option("--threads", facecluster::cli::global_threads(), "worker threads (0: all cores; default: the config's threads, else 0)");
  app.add_flag("-q,--quiet", quiet, "no stage log lines");
  std::map<CLI::App*, std::function<void()>> runs;
  using namespace facecluster::cli;
  std::vector<std::function<void()> (*)(CLI::App&)> adders{add_synth, add_evaluate, add_knn, add_cluster, add_demo};
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
    return app.exit(e);
  }
  facecluster::set_log_level(quiet ? 0 : 1);
  std::signal(SIGINT, on_sigint);
  facecluster::set_interrupt_hook(&interrupted);
  try {
    for (auto* sub : app.get_subcommands()) runs.at(sub)();
  } catch (const facecluster::Interrupted&) {
    std::fprintf(stderr, "facecluster: interrupted\n");
    return 130;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "facecluster: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
