#include "parallel/watchdog.h"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "core/check.h"

namespace rt {

namespace {

using Clock = std::chrono::steady_clock;

volatile std::sig_atomic_t g_stop_signal = 0;

struct State {
  std::mutex mutex;  // guards context and options
  std::string context = "start-up";
  Watchdog::Options options;
  std::atomic<const char*> op{nullptr};
  std::atomic<int64_t> op_start_ns{0};
  std::atomic<int64_t> signal_seen_ns{0};  // when the watchdog first saw the stop flag
  bool started = false;
  std::vector<std::function<void()>> give_up_hooks;  // guarded by mutex
};

State& state() {
  static State s;
  return s;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

const char* signal_name(int sig) {
  return sig == SIGINT ? "SIGINT" : sig == SIGUSR1 ? "SIGUSR1" : "SIGTERM";
}

void on_stop_signal(int sig) {
  g_stop_signal = sig;
  std::signal(sig, SIG_DFL);  // a second signal ends the process at once
}

[[noreturn]] void give_up(const std::string& message) {
  std::fprintf(stderr, "%s\n", message.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  std::vector<std::function<void()>> hooks;  // after the message: a hook may block
  {
    std::lock_guard<std::mutex> lock(state().mutex);
    hooks = state().give_up_hooks;
  }
  for (const auto& hook : hooks) hook();
  // Not MPI_Abort: this thread does not own MPI (MPI_THREAD_FUNNELED). A non-zero exit makes
  // the launcher end the job.
  std::_Exit(kExitCommFailure);
}

void watch() {
  State& s = state();
  const char* reported_signal_op = nullptr;
  int64_t reported_signal_start = -1;
  while (true) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const char* op = s.op.load();
    const int64_t start = s.op_start_ns.load();
    const int64_t now = now_ns();
    if (g_stop_signal && s.signal_seen_ns.load() == 0) s.signal_seen_ns = now;
    if (!op) continue;
    Watchdog::Options opt;
    std::string context;
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      opt = s.options;
      context = s.context;
    }
    const double blocked = static_cast<double>(now - start) * 1e-9;
    if (blocked > opt.timeout_s)
      give_up(cat("rank ", opt.rank, ": no answer in ", op, " at ", context, " after ",
                  static_cast<int64_t>(blocked), " s (parallel.timeout_s = ", opt.timeout_s,
                  "); a peer rank died or stopped answering; ending this rank"));
    if (!g_stop_signal) continue;
    if (reported_signal_op != op || reported_signal_start != start) {
      reported_signal_op = op;
      reported_signal_start = start;
      std::fprintf(stderr,
                   "rank %d: %s while waiting in %s at %s (blocked %.1f s): the run stops after "
                   "this step; if a peer rank has died instead, this rank gives up in %.0f s\n",
                   opt.rank, signal_name(g_stop_signal), op, context.c_str(), blocked, opt.grace_s);
      std::fflush(stderr);
    }
    const double since_signal =
        static_cast<double>(now - std::max(start, s.signal_seen_ns.load())) * 1e-9;
    if (since_signal > opt.grace_s)
      give_up(cat("rank ", opt.rank, ": still no answer in ", op, " at ", context, " ",
                  static_cast<int64_t>(since_signal),
                  " s after the stop signal; a peer rank has died; ending this rank"));
  }
}

}  // namespace

void Watchdog::start(const Options& options) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.options = options;
  if (s.started) return;
  s.started = true;
  std::thread(watch).detach();
}

void Watchdog::on_give_up(std::function<void()> hook) {
  std::lock_guard<std::mutex> lock(state().mutex);
  state().give_up_hooks.push_back(std::move(hook));
}

double Watchdog::timeout_seconds() {
  std::lock_guard<std::mutex> lock(state().mutex);
  return state().options.timeout_s;
}

void Watchdog::set_context(const std::string& context) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.context = context;
}

void Watchdog::install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);  // what mpirun forwards to every rank at once
}

int Watchdog::stop_signal() { return g_stop_signal; }

double Watchdog::mpirun_sigterm_grace_seconds() {
  if (!std::getenv("OMPI_MCA_orte_hnp_uri")) return 0;  // set by mpirun's launch (ORTE) only
  const char* timeout = std::getenv("OMPI_MCA_odls_base_sigkill_timeout");
  const double seconds = timeout ? std::atof(timeout) : 0;
  return seconds > 0 ? seconds : 1;
}

Watchdog::Blocking::Blocking(const char* op) {
  State& s = state();
  const char* none = nullptr;
  outermost_ = s.op.load() == nullptr;
  if (outermost_) {
    s.op_start_ns = now_ns();
    s.op.compare_exchange_strong(none, op);
  }
}

Watchdog::Blocking::~Blocking() {
  if (outermost_) state().op = nullptr;
}

}  // namespace rt
