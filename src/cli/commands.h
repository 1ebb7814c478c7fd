// Subcommands of the facecluster program (private to the CLI).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace facecluster::cli {

// Each adds its subcommand to the app and returns the function that runs it.
std::function<void()> add_synth(CLI::App& app);
std::function<void()> add_evaluate(CLI::App& app);
std::function<void()> add_knn(CLI::App& app);
std::function<void()> add_cluster(CLI::App& app);
std::function<void()> add_demo(CLI::App& app);
std::function<void()> add_add(CLI::App& app);
#ifdef FC_WITH_TORCH
std::function<void()> add_train(CLI::App& app);
std::function<void()> add_eval(CLI::App& app);
std::function<void()> add_export(CLI::App& app);
#endif

}  // namespace facecluster::cli
