#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "facecluster/error.h"
#include "facecluster/io.h"

namespace facecluster {
namespace fs = std::filesystem;

void check_parent_dir(const std::string& path) {
  FC_CHECK(!path.empty(), "output path is empty");
  fs::path p(path);
  fs::path parent = p.parent_path();
  if (parent.empty()) parent = ".";
  FC_CHECK(fs::is_directory(parent), "cannot write " << path << ": folder " << parent.string() << " does not exist");
}

void write_atomically(const std::string& path, const std::function<void(const std::string&)>& fill) {
  check_parent_dir(path);
  std::random_device rd;
  std::ostringstream tmp;
  tmp << path << ".tmp." << ::getpid() << "." << std::hex << rd();
  const std::string tmp_path = tmp.str();
  try {
    fill(tmp_path);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp_path, ec);
    throw;
  }
  std::error_code ec;
  fs::rename(tmp_path, path, ec);
  if (ec) {
    fs::remove(tmp_path, ec);
    FC_FAIL("cannot write " << path << ": rename failed (" << ec.message() << ")");
  }
}

void write_text_file(const std::string& path, const std::string& content) {
  write_atomically(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary);
    FC_CHECK(out, "cannot open " << tmp << " for writing");
    out << content;
    out.close();
    FC_CHECK(out, "write to " << path << " failed (disk full?)");
  });
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  FC_CHECK(in, "cannot open " << path << ": " << (fs::exists(path) ? "permission denied or not a file" : "no such file"));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace facecluster
