// The first byte picks the dimension (1-32); the rest is a raw float32 .bin file.
#include "facecluster/io.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int64_t dim = 1 + data[0] % 32;
  const std::string path = fcfuzz::as_file(data + 1, size - 1, ".bin");
  fcfuzz::expect_only_errors([&] {
    facecluster::Matrix m = facecluster::read_features(path, dim);
    facecluster::normalize_rows(m, path);
  });
  return 0;
}
