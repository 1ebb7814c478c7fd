#include "facecluster/config.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  fcfuzz::expect_only_errors([&] {
    facecluster::Config c = facecluster::parse_config(text, "fuzz.yaml");
    facecluster::config_to_yaml(c);
  });
  return 0;
}
