// The watchdog: no rank waits forever for a peer.
//
// Every blocking communication runs inside a Watchdog::Blocking scope naming the operation.
// A thread wakes every 50 ms and looks at the operation in progress:
//   - blocked longer than the deadline (parallel.timeout_s): a peer died or stopped answering.
//     It prints "rank R: no answer in OP at CONTEXT after T s ..." and ends the process with
//     exit code 4; the launcher (mpirun, srun --kill-on-bad-exit) then ends the others, whose
//     own watchdogs would otherwise fire at their deadline.
//   - a stop signal (SIGTERM/SIGINT/SIGUSR1) arrived while blocked: it says so once, naming the
//     operation (when a launcher tears a job down after a rank died, this is the survivors'
//     last word); if the wait then lasts grace seconds more, the peers are gone: exit code 4.
// In a healthy job the signal only marks the step as the last: the loop saves and stops.
#pragma once

#include <atomic>
#include <functional>
#include <string>

namespace rt {

class Watchdog {
 public:
  struct Options {
    double timeout_s = 600;  // longest wait for a peer
    double grace_s = 10;     // longest wait for a peer once a stop signal has arrived
    int rank = 0;
  };

  // Starts the thread (once per process); later calls update the options.
  static void start(const Options& options);
  // What the process is doing, for messages: "step 17".
  static void set_context(const std::string& context);

  // Runs before the watchdog ends a stuck process: releases what a wait is blocked on (NCCL's
  // ncclCommAbort, so the GPU's kernels end too). Called from the watchdog's thread.
  static void on_give_up(std::function<void()> hook);
  static double timeout_seconds();

  // SIGTERM, SIGINT and SIGUSR1 set the stop flag (a second one ends the process at once).
  // SIGUSR1 because OpenMPI's mpirun forwards it to every rank at once, where a SIGTERM to
  // mpirun reaches the ranks only after odls_base_sigkill_timeout and kills them as long after.
  static void install_signal_handlers();
  static int stop_signal();  // 0 or the signal number
  // Seconds a rank started by OpenMPI's mpirun has between the SIGTERM mpirun passes on and its
  // SIGKILL: odls_base_sigkill_timeout (1, or OMPI_MCA_odls_base_sigkill_timeout, which mpirun
  // exports to its ranks). 0 when no mpirun started the process (srun, a single process).
  static double mpirun_sigterm_grace_seconds();

  // Marks a blocking wait for the watchdog. Nested scopes keep the outermost operation.
  class Blocking {
   public:
    explicit Blocking(const char* op);
    ~Blocking();
    Blocking(const Blocking&) = delete;
    Blocking& operator=(const Blocking&) = delete;

   private:
    bool outermost_;
  };
};

}  // namespace rt
