// Durable file writes: a file is written beside its destination as PATH.tmp, fsynced, renamed
// over PATH and the directory fsynced, so a crash or a full disk leaves the old file or the new
// one, never a mix. Failures throw std::runtime_error naming the path and the cause.
#pragma once

#include <cstdio>
#include <functional>
#include <string>

namespace rt {

// fsync of a file or a directory.
void sync_path(const std::string& path, bool directory);
// tmp (already written and closed) becomes path: fsync, rename, fsync of path's directory.
void commit_file(const std::string& tmp, const std::string& path);
// Writes text to path that way.
void replace_file(const std::string& path, const std::string& text);
// Writes path that way from write(FILE*), which returns false on a short write; the temporary
// file is removed on any failure.
void write_file(const std::string& path, const std::function<bool(std::FILE*)>& write);

}  // namespace rt
