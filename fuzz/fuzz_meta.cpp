#include "facecluster/io.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fcfuzz::as_file(data, size, ".meta");
  fcfuzz::expect_only_errors([&] { facecluster::read_labels(path); });
  return 0;
}
