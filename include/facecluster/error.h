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
