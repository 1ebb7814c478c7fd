#include "npy.h"

#include <cstring>
#include <sstream>

#include "facecluster/error.h"

namespace facecluster {
namespace {

// Value of `key` in the header dict: the text after "'key':" up to the next top-level comma.
std::string dict_value(const std::string& dict, const std::string& key, const std::string& source) {
  const std::string pat = "'" + key + "'";
  size_t p = dict.find(pat);
  FC_CHECK(p != std::string::npos, source << ": .npy header has no " << quote_input(key) << " entry");
  p = dict.find(':', p + pat.size());
  FC_CHECK(p != std::string::npos, source << ": malformed .npy header");
  ++p;
  while (p < dict.size() && dict[p] == ' ') ++p;
  size_t end = p;
  if (p < dict.size() && dict[p] == '(') {
    end = dict.find(')', p);
    FC_CHECK(end != std::string::npos, source << ": malformed shape in .npy header");
    return dict.substr(p, end - p + 1);
  }
  while (end < dict.size() && dict[end] != ',' && dict[end] != '}') ++end;
  return dict.substr(p, end - p);
}

}  // namespace

NpyHeader parse_npy_header(const char* bytes, size_t size, const std::string& source) {
  FC_CHECK(size >= 10 && std::memcmp(bytes, kNpyMagic, kNpyMagicBytes) == 0, source << ": not a .npy array (bad magic bytes)");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len = 0, pre = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    pre = 10;
  } else if (major == 2 || major == 3) {
    FC_CHECK(size >= 12, source << ": truncated .npy header");
    uint32_t len = 0;
    std::memcpy(&len, bytes + 8, 4);
    header_len = len;
    pre = 12;
  } else {
    FC_FAIL(source << ": unsupported .npy format version " << major);
  }
  FC_CHECK(pre + header_len <= size, source << ": truncated .npy header");
  const std::string dict(bytes + pre, header_len);

  NpyHeader h;
  h.data_offset = pre + header_len;
  std::string descr = dict_value(dict, "descr", source);
  FC_CHECK(descr.empty() || (descr.front() != '[' && descr.front() != '{'),
           source << ": structured (record) arrays are not supported; save a plain float32 (N, D) array");
  // strip quotes
  if (descr.size() >= 2 && (descr.front() == '\'' || descr.front() == '"')) descr = descr.substr(1, descr.size() - 2);
  FC_CHECK(descr.size() >= 3, source << ": unsupported dtype " << quote_input(descr));
  const char order = descr[0];
  FC_CHECK(order == '<' || order == '|' || order == '=',
           source << ": big-endian arrays are not supported (dtype " << quote_input(descr) << ")");
  h.kind = descr[1];
  h.word = std::atoi(descr.c_str() + 2);
  FC_CHECK((h.kind == 'f' || h.kind == 'i' || h.kind == 'u') && h.word > 0,
           source << ": unsupported dtype " << quote_input(descr));
  const std::string fortran = dict_value(dict, "fortran_order", source);
  h.fortran = fortran.find("True") != std::string::npos;
  FC_CHECK(!h.fortran, source << ": Fortran-order arrays are not supported; save with np.ascontiguousarray");

  std::string shape = dict_value(dict, "shape", source);
  FC_CHECK(shape.size() >= 2 && shape.front() == '(', source << ": malformed shape in .npy header");
  std::string inner = shape.substr(1, shape.size() - 2);
  std::stringstream ss(inner);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t a = item.find_first_not_of(' ');
    if (a == std::string::npos) continue;  // the empty item after a 1-tuple's comma
    size_t b = item.find_last_not_of(' ');
    if (item[b] == 'L') --b;  // Python 2 long
    const std::string digits = item.substr(a, b + 1 - a);
    FC_CHECK(!digits.empty() && digits.size() <= 15 && digits.find_first_not_of("0123456789") == std::string::npos,
             source << ": malformed shape " << quote_input(shape) << " in .npy header");
    h.shape.push_back(std::stoll(digits));
  }
  return h;
}

void npy_convert_to_float(const NpyHeader& h, const char* payload, int64_t count, float* out,
                          const std::string& source) {
  if (h.kind == 'f' && h.word == 4) {
    std::memcpy(out, payload, static_cast<size_t>(count) * 4);
  } else if (h.kind == 'f' && h.word == 8) {
    for (int64_t i = 0; i < count; ++i) {
      double v;
      std::memcpy(&v, payload + 8 * i, 8);
      out[i] = static_cast<float>(v);
    }
  } else {
    FC_FAIL(source << ": expected float32 or float64 data, got " << h.kind << h.word);
  }
}

std::string npy_header(const std::string& descr, const std::vector<int64_t>& shape) {
  std::ostringstream d;
  d << "{'descr': '" << descr << "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.size(); ++i) d << shape[i] << (shape.size() == 1 || i + 1 < shape.size() ? ", " : "");
  d << "), }";
  std::string dict = d.str();
  size_t total = 10 + dict.size() + 1;
  size_t pad = (64 - total % 64) % 64;
  dict.append(pad, ' ');
  dict.push_back('\n');
  std::string out("\x93NUMPY", 6);
  out.push_back(1);
  out.push_back(0);
  const uint16_t len = static_cast<uint16_t>(dict.size());
  out.push_back(static_cast<char>(len & 0xff));
  out.push_back(static_cast<char>(len >> 8));
  return out + dict;
}

}  // namespace facecluster
