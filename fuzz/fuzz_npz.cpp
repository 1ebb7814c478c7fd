#include "facecluster/graph.h"
#include "facecluster/io.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fcfuzz::as_file(data, size, ".npz");
  fcfuzz::expect_only_errors([&] {
    const facecluster::KnnGraph g = facecluster::read_knn_npz(path);
    facecluster::validate_graph(g, path);
  });
  return 0;
}
