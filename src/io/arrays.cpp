// Typed numpy arrays: the files an incremental clustering's state is kept in (readable from
// numpy as they are).
#include <cstring>
#include <fstream>
#include <type_traits>

#include "facecluster/error.h"
#include "facecluster/io.h"
#include "npy.h"

namespace facecluster {
namespace {

template <class T>
const char* descr_of() {
  if constexpr (std::is_same_v<T, float>) return "<f4";
  if constexpr (std::is_same_v<T, double>) return "<f8";
  if constexpr (std::is_same_v<T, int32_t>) return "<i4";
  if constexpr (std::is_same_v<T, int64_t>) return "<i8";
}

template <class T>
char kind_of() {
  return std::is_floating_point_v<T> ? 'f' : 'i';
}

int64_t count_of(const std::vector<int64_t>& shape) {
  int64_t c = 1;
  for (int64_t s : shape) c *= s;
  return c;
}

}  // namespace

template <class T>
void write_npy_array(const std::string& path, const T* values, const std::vector<int64_t>& shape) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  FC_CHECK(out, "cannot open " << path << " for writing");
  const std::string header = npy_header(descr_of<T>(), shape);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(reinterpret_cast<const char*>(values), static_cast<std::streamsize>(count_of(shape) * sizeof(T)));
  out.close();
  FC_CHECK(out, "write to " << path << " failed (disk full?)");
}

template <class T>
std::vector<T> read_npy_array(const std::string& path, std::vector<int64_t>& shape) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  FC_CHECK(in, "cannot open " << path);
  const auto size = static_cast<size_t>(in.tellg());
  in.seekg(0);
  std::string head(std::min<size_t>(size, 4096), '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  const NpyHeader h = parse_npy_header(head.data(), head.size(), path);
  FC_CHECK(h.kind == kind_of<T>() && h.word == static_cast<int>(sizeof(T)),
           path << ": holds " << h.kind << h.word << " values, " << descr_of<T>() + 1 << " expected");
  FC_CHECK(shape.empty() || shape.size() == h.shape.size(), path << ": an array of " << h.shape.size()
                                                                 << " dimensions, " << shape.size() << " expected");
  for (size_t d = 0; d < shape.size(); ++d)
    FC_CHECK(shape[d] < 0 || shape[d] == h.shape[d],
             path << ": dimension " << d << " is " << h.shape[d] << ", " << shape[d] << " expected");
  shape = h.shape;
  // The element count, checked against the file's size as it is multiplied out (no overflow).
  int64_t count = 1;
  const int64_t most = static_cast<int64_t>(size / sizeof(T));
  for (int64_t dim : h.shape) {
    FC_CHECK(dim >= 0 && (dim == 0 || count <= most / dim), path << ": its header's shape holds more values than its "
                                                                 << size << " bytes");
    count *= dim;
  }
  FC_CHECK(size == h.data_offset + static_cast<size_t>(count) * sizeof(T),
           path << ": " << size << " bytes, but its header says " << h.data_offset + static_cast<size_t>(count) * sizeof(T)
                << " (truncated or padded)");
  std::vector<T> values(static_cast<size_t>(count));
  in.seekg(static_cast<std::streamoff>(h.data_offset));
  in.read(reinterpret_cast<char*>(values.data()), static_cast<std::streamsize>(values.size() * sizeof(T)));
  FC_CHECK(in, path << ": read failed");
  return values;
}

#define FC_NPY_ARRAY(T)                                                                         \
  template void write_npy_array<T>(const std::string&, const T*, const std::vector<int64_t>&); \
  template std::vector<T> read_npy_array<T>(const std::string&, std::vector<int64_t>&);
FC_NPY_ARRAY(float)
FC_NPY_ARRAY(double)
FC_NPY_ARRAY(int32_t)
FC_NPY_ARRAY(int64_t)
#undef FC_NPY_ARRAY

}  // namespace facecluster
