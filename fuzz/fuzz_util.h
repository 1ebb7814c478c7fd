// Shared by the fuzz targets: the input as a file (the readers take paths), and the rule that
// a reader may only fail with facecluster::Error.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "facecluster/error.h"
#include "facecluster/log.h"

namespace fcfuzz {

// One file per process, rewritten for each input.
inline std::string as_file(const uint8_t* data, size_t size, const char* suffix) {
  static const std::string base = "/tmp/fcfuzz." + std::to_string(::getpid());
  const std::string path = base + suffix;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) __builtin_trap();
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
  return path;
}

// Runs a reader: facecluster::Error is the expected way to refuse input; anything else that
// escapes (another exception type) is a bug and aborts, so the fuzzer reports it.
template <class F>
void expect_only_errors(F&& f) {
  facecluster::set_log_level(0);
  try {
    f();
  } catch (const facecluster::Error&) {
  }
}

}  // namespace fcfuzz
