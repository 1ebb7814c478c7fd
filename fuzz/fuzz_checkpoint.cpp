#include "facecluster/model.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fcfuzz::as_file(data, size, ".fcmodel");
  fcfuzz::expect_only_errors([&] { facecluster::PairModel::load(path); });
  return 0;
}
