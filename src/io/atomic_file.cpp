#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include <cstdio>
#include <filesystem>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <random>
#include <sstream>

#include "facecluster/error.h"
#include "facecluster/io.h"
#include "facecluster/log.h"

namespace facecluster {
namespace fs = std::filesystem;

void check_parent_dir(const std::string& path) {
  FC_CHECK(!path.empty(), "output path is empty");
  fs::path p(path);
  fs::path parent = p.parent_path();
  if (parent.empty()) parent = ".";
  FC_CHECK(fs::is_directory(parent), "cannot write " << path << ": folder " << parent.string() << " does not exist");
}

namespace {

void check_target(const std::string& path) {
  check_parent_dir(path);
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (fs::exists(st))
    FC_CHECK(fs::is_regular_file(st), "cannot write " << path << ": it exists and is "
                                                      << (fs::is_directory(st) ? "a folder" : "not a regular file")
                                                      << "; give a file path");
}

constexpr size_t kTempTagDigits = 8;  // a random 32-bit tag in hex

// Removes <name>.tmp.<pid>.<hex tag> files in the target's folder whose process is gone.
void sweep_stale_temporaries(const std::string& path) {
  const fs::path p(path);
  const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  const std::string prefix = p.filename().string() + ".tmp.";
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    char* rest = nullptr;
    const long pid = std::strtol(name.c_str() + prefix.size(), &rest, 10);
    // Only a name this program makes: the pid, a dot and a tag of 1 to kTempTagDigits lowercase
    // hex digits (earlier versions did not pad it), nothing after.
    const size_t tag = std::strlen(rest + (*rest == '.'));
    if (pid <= 0 || *rest != '.' || tag < 1 || tag > kTempTagDigits || std::strspn(rest + 1, "0123456789abcdef") != tag)
      continue;
    if (::kill(static_cast<pid_t>(pid), 0) == -1 && errno == ESRCH) {
      std::error_code rm;
      fs::remove(it->path(), rm);
    }
  }
}

std::string temporary_for(const std::string& path) {
  std::random_device rd;
  std::ostringstream tmp;
  tmp << path << ".tmp." << ::getpid() << "." << std::hex << std::setw(kTempTagDigits) << std::setfill('0') << rd();
  return tmp.str();
}

void remove_all(const std::vector<std::string>& paths) {
  for (const auto& t : paths) {
    std::error_code ec;
    fs::remove(t, ec);
  }
}

}  // namespace

void write_atomically(const std::string& path, const std::function<void(const std::string&)>& fill) {
  check_target(path);
  sweep_stale_temporaries(path);
  const std::string tmp_path = temporary_for(path);
  try {
    fill(tmp_path);
    check_interrupt();  // a Ctrl-C or SIGTERM during the write: keep the old file
  } catch (...) {
    remove_all({tmp_path});
    throw;
  }
  std::error_code ec;
  fs::rename(tmp_path, path, ec);
  if (ec) {
    const std::string why = ec.message();
    remove_all({tmp_path});
    FC_FAIL("cannot write " << path << ": rename failed (" << why << ")");
  }
}

void write_text_files(const std::vector<std::pair<std::string, std::string>>& files) {
  std::vector<std::string> temps;
  try {
    for (const auto& [path, content] : files) {
      check_target(path);
      sweep_stale_temporaries(path);
      temps.push_back(temporary_for(path));
      std::ofstream out(temps.back(), std::ios::binary);
      FC_CHECK(out, "cannot open " << temps.back() << " for writing");
      out << content;
      out.close();
      FC_CHECK(out, "write to " << path << " failed (disk full or file too large?)");
    }
    check_interrupt();
  } catch (...) {
    remove_all(temps);
    throw;
  }
  // The set is swapped in one file at a time; should a rename fail midway, the files already
  // replaced are put back from a second name of each old file (a hard link, else a copy), so the
  // folder holds the old set or the new one, never a mix.
  std::vector<std::string> backups(files.size());
  for (size_t i = 0; i < files.size(); ++i) {
    std::error_code ec;
    if (!fs::exists(files[i].first, ec)) continue;
    backups[i] = temporary_for(files[i].first);
    fs::create_hard_link(files[i].first, backups[i], ec);
    if (ec) fs::copy_file(files[i].first, backups[i], ec);
    if (ec) {
      const std::string why = ec.message();
      remove_all(temps);
      remove_all(backups);
      FC_FAIL("cannot write " << files[i].first << ": cannot keep the old file while the new set goes in (" << why << ")");
    }
  }
  for (size_t i = 0; i < files.size(); ++i) {
    std::error_code ec;
    fs::rename(temps[i], files[i].first, ec);
    if (ec) {
      const std::string why = ec.message();
      for (size_t j = 0; j < i; ++j) {
        std::error_code undo;
        if (backups[j].empty())
          fs::remove(files[j].first, undo);
        else
          fs::rename(backups[j], files[j].first, undo);
      }
      remove_all(temps);
      remove_all(backups);
      FC_FAIL("cannot write " << files[i].first << ": rename failed (" << why << "); the earlier files are as they were");
    }
  }
  remove_all(backups);
}

void check_not_an_input(const std::string& output, const std::vector<NamedPath>& inputs) {
  std::error_code ec;
  if (!fs::exists(output, ec)) return;
  for (const auto& in : inputs) {
    if (in.path.empty()) continue;
    std::error_code e2;
    if (fs::exists(in.path, e2) && fs::equivalent(output, in.path, e2))
      FC_FAIL("refusing to write " << output << ": it is the " << in.what << " " << in.path
                                   << " given as input (inputs are never overwritten); choose another output path");
  }
}

void write_text_file(const std::string& path, const std::string& content) { write_text_files({{path, content}}); }

std::string read_text_file(const std::string& path) {
  std::error_code ec;
  FC_CHECK(!fs::exists(path, ec) || fs::is_regular_file(path, ec), "cannot read " << path << ": it is not a file");
  std::ifstream in(path, std::ios::binary);
  FC_CHECK(in, "cannot open " << path << ": " << (fs::exists(path) ? "permission denied or not a file" : "no such file"));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void make_folders(const std::string& path, const std::string& what) {
  std::error_code ec;
  fs::create_directories(path, ec);
  FC_CHECK(!ec, "cannot create " << what << " " << path << ": " << ec.message());
}

}  // namespace facecluster
