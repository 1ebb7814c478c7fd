// Errors and checks shared by every stage.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace facecluster {

// Every user-facing failure (bad input, bad config, I/O) is an Error whose message names the
// file or setting and the problem. The CLI prints it and exits non-zero.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Raised when a long call is interrupted (Ctrl-C in Python, SIGINT in the CLI).
class Interrupted : public Error {
 public:
  Interrupted() : Error("interrupted") {}
};

// Raised on the other processes of a distributed run when one process failed and reports the
// error itself: they end non-zero without a second message.
class FailedElsewhere : public Error {
 public:
  FailedElsewhere() : Error("another process of the run failed") {}
};

// s with the bytes below 0x20, 0x7f and (unless keep_high) those from 0x80 written as \xNN,
// cut after ~max_chars characters ("... (N bytes)").
inline std::string escape_bytes(const std::string& s, size_t max_chars, bool keep_high) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (out.size() >= max_chars) return out + "... (" + std::to_string(s.size()) + " bytes)";
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != 0x7f && (keep_high || c < 0x80)) {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// Raw text made safe for one terminal line: printable ASCII only (others as \xNN), at most
// ~max_chars characters (then "... (N bytes)"). Binary bytes or a 1 MB line never reach the terminal.
inline std::string printable(const std::string& s, size_t max_chars = 80) { return escape_bytes(s, max_chars, false); }

// A message as one terminal line: control characters (a newline in a file name, say) are
// written as \xNN, so no input can start a line of its own; other bytes (UTF-8 names) stay.
inline std::string escape_controls(const std::string& s) { return escape_bytes(s, std::string::npos, true); }

// Raw input quoted in a message: printable(s) in single quotes.
inline std::string quote_input(const std::string& s, size_t max_chars = 80) {
  return "'" + printable(s, max_chars) + "'";
}

}  // namespace facecluster

// FC_CHECK(cond, "features file " << path << " has " << n << " bytes") throws facecluster::Error
// with the streamed message when cond is false.
#define FC_CHECK(cond, msg)                          \
  do {                                               \
    if (!(cond)) {                                   \
      std::ostringstream fc_check_stream_;           \
      fc_check_stream_ << msg;                       \
      throw ::facecluster::Error(fc_check_stream_.str()); \
    }                                                \
  } while (0)

#define FC_FAIL(msg) FC_CHECK(false, msg)
