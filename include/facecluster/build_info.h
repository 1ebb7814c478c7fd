// What this build of facecluster is: its version and how it was built (`facecluster --version`,
// Python facecluster.build_info()).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace facecluster {

// (key, value) pairs: version, commit (the source's at configure time), compiler, build type,
// and the optional parts compiled in (faiss, libtorch, oneDNN, MPI).
const std::vector<std::pair<std::string, std::string>>& build_info();
// The same on one line: "facecluster 0.1.0 (commit 1a2b3c4, GNU 12.2.0, Release; faiss, libtorch)".
std::string build_info_line();

}  // namespace facecluster
