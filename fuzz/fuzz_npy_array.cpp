// The typed numpy arrays of an incremental clustering's state (read_npy_array), each element type.
#include "facecluster/io.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fcfuzz::as_file(data, size, ".npy");
  fcfuzz::expect_only_errors([&] {
    std::vector<int64_t> shape;
    (void)facecluster::read_npy_array<int32_t>(path, shape);
  });
  fcfuzz::expect_only_errors([&] {
    std::vector<int64_t> shape{-1, 3};
    (void)facecluster::read_npy_array<int64_t>(path, shape);
  });
  fcfuzz::expect_only_errors([&] {
    std::vector<int64_t> shape;
    (void)facecluster::read_npy_array<float>(path, shape);
  });
  fcfuzz::expect_only_errors([&] {
    std::vector<int64_t> shape{-1};
    (void)facecluster::read_npy_array<double>(path, shape);
  });
  return 0;
}
