#include "core/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "core/check.h"

namespace rt {

void sync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0)
    throw std::runtime_error(cat("cannot open ", path, " to sync: ", std::strerror(errno)));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw std::runtime_error(cat("fsync ", path, ": ", std::strerror(err)));
}

void commit_file(const std::string& tmp, const std::string& path) {
  sync_path(tmp, false);
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw std::runtime_error(cat("cannot rename ", tmp, ": ", std::strerror(errno)));
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  sync_path(dir.empty() ? "." : dir.string(), true);
}

void write_file(const std::string& path, const std::function<bool(std::FILE*)>& write) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw std::runtime_error(cat("cannot create ", tmp, ": ", std::strerror(errno)));
  try {
    bool ok = write(f);
    const int err = errno;
    ok = std::fclose(f) == 0 && ok;
    f = nullptr;
    if (!ok) throw std::runtime_error(cat("cannot write ", tmp, ": ", std::strerror(err)));
    commit_file(tmp, path);
  } catch (...) {
    if (f) std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
}

void replace_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.flush();
    if (!out) throw std::runtime_error(cat("cannot write ", tmp, ": ", std::strerror(errno)));
  }
  commit_file(tmp, path);
}

}  // namespace rt
