#include <cerrno>
#include <cstdlib>
#include <sstream>

#include "facecluster/error.h"
#include "facecluster/io.h"

namespace facecluster {

Labels read_labels(const std::string& path) {
  const std::string text = read_text_file(path);
  Labels labels;
  labels.reserve(text.size() / 4);
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    ++line_no;
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    size_t a = line.find_first_not_of(" \t");
    if (a == std::string::npos) {
      // Only trailing blank lines are allowed.
      FC_CHECK(text.find_first_not_of(" \t\r\n", pos) == std::string::npos,
               "labels file " << path << ": line " << line_no << " is empty");
      break;
    }
    size_t b = line.find_last_not_of(" \t");
    const std::string tok = line.substr(a, b - a + 1);
    errno = 0;
    char* endp = nullptr;
    long long v = std::strtoll(tok.c_str(), &endp, 10);
    FC_CHECK(errno == 0 && endp == tok.c_str() + tok.size(),
             "labels file " << path << ": line " << line_no << " is not an integer: " << quote_input(tok));
    labels.push_back(v);
  }
  FC_CHECK(!labels.empty(), "labels file " << path << " is empty");
  return labels;
}

std::string format_labels(const Labels& labels) {
  std::string out;
  out.reserve(labels.size() * 6);
  for (int64_t v : labels) {
    out += std::to_string(v);
    out.push_back('\n');
  }
  return out;
}

void write_labels(const std::string& path, const Labels& labels) { write_text_file(path, format_labels(labels)); }

}  // namespace facecluster
