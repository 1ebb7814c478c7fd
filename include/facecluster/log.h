// Progress and per-stage logging: one line per stage with wall time and peak memory.
#pragma once

#include <chrono>
#include <string>

namespace facecluster {

// Verbosity: -1 nothing (the other processes of a distributed run), 0 warnings only, 1 stage
// lines (default), 2 detail.
void set_log_level(int level);
int log_level();
void log_info(const std::string& msg);
void log_warn(const std::string& msg);

// Peak resident memory of this process in MiB (VmHWM).
double peak_memory_mib();

// Logs "[stage] name: 1.23 s, peak 456 MiB" when it goes out of scope (or at stop()).
class StageTimer {
 public:
  explicit StageTimer(std::string name);
  ~StageTimer();
  double seconds() const;
  double stop();

 private:
  std::string name_;
  std::chrono::steady_clock::time_point start_;
  bool stopped_ = false;
  double elapsed_ = 0;
};

// Throttled progress line for long loops: "name: 45% (123/456), 2.1 s, ETA 2.6 s".
class Progress {
 public:
  Progress(std::string name, int64_t total);
  void update(int64_t done);  // thread-safe only from one thread at a time

 private:
  std::string name_;
  int64_t total_;
  std::chrono::steady_clock::time_point start_, last_;
};

// Interrupt support: long loops call check_interrupt(), which throws Interrupted when the hook
// (set by the Python module or the CLI's SIGINT handler) reports a pending interrupt.
using InterruptHook = bool (*)();
void set_interrupt_hook(InterruptHook hook);
void check_interrupt();
bool interrupt_requested();  // the same question without throwing (for callbacks of other libraries)

}  // namespace facecluster
