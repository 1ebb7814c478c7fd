#include "facecluster/log.h"

#include <atomic>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>

#include "facecluster/error.h"

namespace facecluster {
namespace {
std::atomic<int> g_level{1};
std::mutex g_mutex;
std::atomic<InterruptHook> g_hook{nullptr};

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

void set_log_level(int level) { g_level = level; }
int log_level() { return g_level; }

void log_info(const std::string& msg) {
  if (g_level < 1) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fprintf(stderr, "%s\n", msg.c_str());
}

void log_warn(const std::string& msg) {
  if (g_level < 0) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fprintf(stderr, "warning: %s\n", msg.c_str());
}

double peak_memory_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      std::istringstream ss(line.substr(6));
      double kib = 0;
      ss >> kib;
      return kib / 1024.0;
    }
  }
  return 0.0;
}

StageTimer::StageTimer(std::string name) : name_(std::move(name)), start_(std::chrono::steady_clock::now()) {}
StageTimer::~StageTimer() {
  if (!stopped_) stop();
}
double StageTimer::seconds() const { return stopped_ ? elapsed_ : since(start_); }
double StageTimer::stop() {
  if (stopped_) return elapsed_;
  elapsed_ = since(start_);
  stopped_ = true;
  char buf[256];
  std::snprintf(buf, sizeof buf, "[stage] %s: %.2f s, peak %.0f MiB", name_.c_str(), elapsed_, peak_memory_mib());
  log_info(buf);
  return elapsed_;
}

Progress::Progress(std::string name, int64_t total)
    : name_(std::move(name)), total_(total), start_(std::chrono::steady_clock::now()), last_(start_) {}

void Progress::update(int64_t done) {
  if (g_level < 1) return;
  auto now = std::chrono::steady_clock::now();
  if (std::chrono::duration<double>(now - last_).count() < 2.0) return;
  last_ = now;
  double el = since(start_);
  double frac = total_ > 0 ? double(done) / double(total_) : 1.0;
  double eta = frac > 0 ? el / frac - el : 0.0;
  char buf[256];
  if (done <= 0) {
    std::snprintf(buf, sizeof buf, "  %s: 0%% (0/%lld), %.1f s", name_.c_str(), (long long)total_, el);
  } else {
    std::snprintf(buf, sizeof buf, "  %s: %.0f%% (%lld/%lld), %.1f s, ETA %.1f s", name_.c_str(), 100 * frac,
                  (long long)done, (long long)total_, el, eta);
  }
  log_info(buf);
}


void set_interrupt_hook(InterruptHook hook) { g_hook = hook; }
bool interrupt_requested() {
  InterruptHook h = g_hook.load();
  return h && h();
}
void check_interrupt() {
  if (interrupt_requested()) throw Interrupted();
}

}  // namespace facecluster
