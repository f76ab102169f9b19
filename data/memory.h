// How much memory this process may still take, for the checks that refuse a recipe or a file
// before allocating (a d_model of 10^7, a dataset whose extent claims 2^60 values).
#pragma once

#include <cstdint>
#include <string>

namespace rt {

struct MemoryAvailable {
  uint64_t bytes = 0;  // the smallest of the limits found
  std::string source;  // where the figure comes from: "MemAvailable", "cgroup memory.max", ...
};

// Host memory: MemAvailable of /proc/meminfo, or the cgroup's limit less its usage when that
// is lower (a container or a Slurm job). Unknown limits count as unlimited.
MemoryAvailable host_memory_available();

// "1.5 GiB", "730 MiB": sizes in messages.
std::string format_bytes(double bytes);

}  // namespace rt
