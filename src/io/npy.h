// numpy .npy header parsing and writing (private to the io stage).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace facecluster {

// The first bytes of every .npy file.
constexpr char kNpyMagic[] = "\x93NUMPY";
constexpr size_t kNpyMagicBytes = sizeof kNpyMagic - 1;

struct NpyHeader {
  char kind = 'f';      // 'f' float, 'i' signed int, 'u' unsigned int
  int word = 4;         // bytes per element
  bool fortran = false;
  std::vector<int64_t> shape;
  size_t data_offset = 0;  // bytes from the start of the file to the data
  int64_t count() const {
    int64_t c = 1;
    for (auto s : shape) c *= s;
    return c;
  }
};

// Parses the header at the start of `bytes` (which must hold at least the whole header).
NpyHeader parse_npy_header(const char* bytes, size_t size, const std::string& source);

// Converts `count` elements of a float32/float64 (little-endian) payload to float.
void npy_convert_to_float(const NpyHeader& h, const char* payload, int64_t count, float* out,
                          const std::string& source);

// A v1.0 header (padded to 64 bytes) for a C-order array.
std::string npy_header(const std::string& descr, const std::vector<int64_t>& shape);

}  // namespace facecluster
