#include "data/memory.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>

namespace rt {

namespace {

// The first number of a file ("max" and absent files are no limit).
bool read_number(const std::string& path, uint64_t& out) {
  std::ifstream in(path);
  std::string word;
  if (!(in >> word) || word == "max") return false;
  try {
    size_t used = 0;
    out = std::stoull(word, &used);
    return used == word.size();
  } catch (...) {
    return false;
  }
}

// This process's cgroup (v2: one "0::/path" line; v1: the memory controller's line).
std::string cgroup_path(bool v2) {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    if (v2 ? line.compare(0, a, "0") == 0 && controllers.empty()
           : controllers.find("memory") != std::string::npos)
      return line.substr(b + 1);
  }
  return "";
}

}  // namespace

MemoryAvailable host_memory_available() {
  MemoryAvailable m{std::numeric_limits<uint64_t>::max(), "no limit found"};
  {
    std::ifstream in("/proc/meminfo");
    std::string key;
    uint64_t kib = 0;
    std::string unit;
    while (in >> key >> kib) {
      std::getline(in, unit);
      if (key == "MemAvailable:") {
        m = {kib * 1024, "MemAvailable in /proc/meminfo"};
        break;
      }
    }
  }
  // RINGTRAIN_MEMORY_LIMIT (bytes): a lower limit by hand (the fuzz harnesses set one, so that
  // inputs asking for more are refused as on a small machine).
  if (const char* env = std::getenv("RINGTRAIN_MEMORY_LIMIT")) {
    char* end = nullptr;
    const unsigned long long limit = std::strtoull(env, &end, 10);
    if (end != env && *end == '\0' && limit < m.bytes) m = {limit, "RINGTRAIN_MEMORY_LIMIT"};
  }
  // cgroup v2, then v1: the limit less what the group already uses.
  for (bool v2 : {true, false}) {
    const std::string rel = cgroup_path(v2);
    if (v2 && rel.empty()) continue;
    const std::string base = v2 ? "/sys/fs/cgroup" + rel : "/sys/fs/cgroup/memory" + rel;
    uint64_t limit = 0, usage = 0;
    const bool has_limit = v2 ? read_number(base + "/memory.max", limit)
                              : read_number(base + "/memory.limit_in_bytes", limit);
    if (!has_limit || limit >= (uint64_t(1) << 60)) continue;  // v1 writes "no limit" as ~2^63
    if (!(v2 ? read_number(base + "/memory.current", usage)
             : read_number(base + "/memory.usage_in_bytes", usage)))
      usage = 0;
    const uint64_t left = limit > usage ? limit - usage : 0;
    if (left < m.bytes)
      m = {left, v2 ? "the cgroup's memory.max" : "the cgroup's memory.limit_in_bytes"};
    break;
  }
  return m;
}

std::string format_bytes(double bytes) {
  char buf[64];
  if (bytes >= 1024.0 * 1024 * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f TiB", bytes / (1024.0 * 1024 * 1024 * 1024));
  else if (bytes >= 1024.0 * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f GiB", bytes / (1024.0 * 1024 * 1024));
  else
    std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024));
  return buf;
}

}  // namespace rt
