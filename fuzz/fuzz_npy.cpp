#include "facecluster/io.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fcfuzz::as_file(data, size, ".npy");
  fcfuzz::expect_only_errors([&] {
    facecluster::Matrix m = facecluster::read_features_npy(path);
    facecluster::normalize_rows(m, path);
  });
  return 0;
}
