// Every benchmark prints the CPU's vector features in its context header: kernels are chosen at
// run time (bf16 products need AVX512-BF16 or AMX), so numbers from different machines only
// compare with these in view.
#pragma once

#include <benchmark/benchmark.h>

#include <fstream>
#include <sstream>
#include <string>

namespace fcbench {

inline std::string cpu_vector_features() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, 5, "flags") != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::string w, out;
    for (; words >> w;)
      for (const char* want : {"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                               "avx512_bf16", "amx_tile", "amx_bf16"})
        if (w == want) out += (out.empty() ? "" : " ") + w;
    return out.empty() ? "(none of the listed)" : out;
  }
  return "(unknown: no /proc/cpuinfo flags)";
}

inline const int kContextRegistered = (benchmark::AddCustomContext("cpu_features", cpu_vector_features()), 0);

}  // namespace fcbench
