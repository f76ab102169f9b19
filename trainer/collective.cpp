#include "trainer/collective.h"

#include <vector>

#include "core/check.h"

namespace rt {

int exit_code_of(const std::exception& e) {
  if (auto* a = dynamic_cast<const AgreedError*>(&e)) return a->exit_code;
  if (dynamic_cast<const UserError*>(&e)) return kExitUserError;
  if (auto* r = dynamic_cast<const RunError*>(&e)) return r->exit_code;
  return 1;
}

std::string message_of(const std::exception& e) {
  if (dynamic_cast<const InternalError*>(&e))
    return cat("internal error: ", e.what(), " (a bug in ringtrain; please report it)");
  return e.what();
}

namespace {

void agree(Communicator& comm, bool participates, const std::function<void()>& fn) {
  int code = 0;
  std::string message;
  if (participates) {
    try {
      fn();
    } catch (const std::exception& e) {
      code = exit_code_of(e);
      message = message_of(e);
    }
  }
  if (comm.size() == 1) {
    if (code) throw AgreedError(message, code);
    return;
  }
  // The lowest failing rank speaks for all: max of (size - rank) over the failing ranks.
  double first = code ? static_cast<double>(comm.size() - comm.rank()) : 0.0;
  comm.allreduce_max(&first, 1, "allreduce(error check)");
  if (first == 0.0) return;
  const int root = comm.size() - static_cast<int>(first);
  int64_t header[2] = {code, static_cast<int64_t>(message.size())};
  comm.broadcast(header, sizeof header, root);
  message.resize(static_cast<size_t>(header[1]));
  comm.broadcast(message.data(), header[1], root);
  throw AgreedError(message, static_cast<int>(header[0]));
}

}  // namespace

void on_every_rank(Communicator& comm, const std::function<void()>& fn) { agree(comm, true, fn); }

void on_root(Communicator& comm, const std::function<void()>& fn) {
  agree(comm, comm.rank() == 0, fn);
}

}  // namespace rt
