// Errors that every rank agrees on. Validation and I/O that can fail on some ranks run inside
// these helpers: when any rank fails, every rank throws the same AgreedError (the lowest
// failing rank's message and exit code), so the job stops together, prints one line (rank 0)
// and never leaves ranks waiting in a collective for a peer that gave up.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>

#include "parallel/comm.h"

namespace rt {

struct AgreedError : std::runtime_error {
  AgreedError(const std::string& what, int code) : std::runtime_error(what), exit_code(code) {}
  int exit_code;
};

// Runs fn on every rank, then agrees on the outcome.
void on_every_rank(Communicator& comm, const std::function<void()>& fn);
// Runs fn on rank 0 only, then agrees on the outcome.
void on_root(Communicator& comm, const std::function<void()>& fn);

// The exit code and one-line message of an exception (UserError 2, RunError its code, other 1).
int exit_code_of(const std::exception& e);
std::string message_of(const std::exception& e);

}  // namespace rt
