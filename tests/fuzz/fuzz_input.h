// What the harnesses share: a reader of fuzz bytes (integers, choices, bounded sizes; zeros once
// the bytes run out), HDF5 files edited by a script the bytes spell, and the rule that decides
// what a harness may throw. Every harness exports LLVMFuzzerTestOneInput: built with
// -fsanitize=fuzzer it is a libFuzzer target (scripts/fuzz.sh), otherwise replay_main.cpp
// replays files and directories of inputs through it (the fuzz_replay_* tests).
#pragma once

#include <hdf5.h>

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/check.h"

namespace rt::fuzz {

// The harnesses run as on a machine of 1 GiB (data/memory.h): what needs more is refused by
// the memory checks under test instead of exhausting libFuzzer's RSS limit.
inline const bool kMemoryLimitSet = [] {
  return ::setenv("RINGTRAIN_MEMORY_LIMIT", "1073741824", 0) == 0;
}();

class Bytes {
 public:
  Bytes(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  size_t left() const { return size_ - pos_; }
  uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint64_t u64(int nbytes = 8) {
    uint64_t v = 0;
    for (int i = 0; i < nbytes; ++i) v |= uint64_t(byte()) << (8 * i);
    return v;
  }
  // 0 <= x < n (n >= 1).
  uint64_t below(uint64_t n) {
    return n <= 1 ? 0 : (n <= 256 ? byte() % n : u64(n <= 65536 ? 2 : 8) % n);
  }
  template <class T, size_t N>
  const T& pick(const T (&items)[N]) {
    return items[below(N)];
  }
  std::string text(size_t max) {
    const size_t n = below(max + 1);
    std::string s;
    for (size_t i = 0; i < n && !empty(); ++i) s.push_back(static_cast<char>(byte()));
    return s;
  }
  std::string rest() {
    std::string s(reinterpret_cast<const char*>(data_ + pos_), size_ - pos_);
    pos_ = size_;
    return s;
  }
  std::vector<uint8_t> raw(size_t n) {
    std::vector<uint8_t> v(n, 0);
    for (size_t i = 0; i < n && !empty(); ++i) v[i] = byte();
    return v;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// A file for this process (tmpfs when there is one: the harnesses write one per input).
inline std::string temp_path(const std::string& name) {
  const std::filesystem::path dir =
      std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
  return (dir / ("ringtrain-fuzz-" + std::to_string(::getpid()) + "-" + name)).string();
}

inline void write_file(const std::string& path, const void* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
}

inline std::vector<char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The promise under test: bad input is a UserError (exit 2), a non-finite value a RunError of
// exit code 3. Anything else (an internal error, another exception) is a bug: abort, which
// libFuzzer reports as a crash with the input.
template <class Fn>
void expect_only_user_errors(const char* harness, Fn&& fn) {
  try {
    fn();
  } catch (const UserError&) {
  } catch (const RunError& e) {
    if (e.exit_code != kExitDiverged) {
      std::fprintf(stderr, "%s: RunError with exit code %d: %s\n", harness, e.exit_code, e.what());
      std::abort();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: not a user error: %s\n", harness, e.what());
    std::abort();
  }
}

// ---- HDF5 files edited by the bytes ------------------------------------------------------
// Each step of the script: create or replace a dataset (a type, rank 0..3, sizes 0..12, values
// from the bytes; sometimes chunked and grown past what it stores), set an attribute (int,
// float, string, or an array of two), create a group, or unlink an object. Names come from the
// harness's table (the names its reader looks for) or, rarely, from the bytes.
struct Names {
  std::vector<std::string> datasets;  // full paths, e.g. "/tokens"
  std::vector<std::string> groups;    // attribute holders and parents, e.g. "/", "/data"
  std::vector<std::string> attributes;
  // > 0: finite float values are clamped to [-limit, limit] (NaN and inf stay): the op harness
  // checks the readers, not f32 overflow inside the kernels (reported separately).
  double float_limit = 0;
};

inline void ensure_parents(hid_t file, const std::string& path) {
  for (size_t pos = path.find('/', 1); pos != std::string::npos; pos = path.find('/', pos + 1)) {
    const std::string prefix = path.substr(0, pos);
    if (H5Lexists(file, prefix.c_str(), H5P_DEFAULT) <= 0) {
      const hid_t g = H5Gcreate2(file, prefix.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      if (g >= 0) H5Gclose(g);
    }
  }
}

inline hid_t pick_type(Bytes& b) {
  static const hid_t* types[] = {&H5T_NATIVE_UINT16_g, &H5T_NATIVE_UINT32_g, &H5T_NATIVE_UINT64_g,
                                 &H5T_NATIVE_INT32_g,  &H5T_NATIVE_INT64_g,  &H5T_NATIVE_FLOAT_g,
                                 &H5T_NATIVE_DOUBLE_g, &H5T_NATIVE_UINT8_g};
  H5open();
  return *b.pick(types);
}

template <class T>
void clamp_values(std::vector<uint8_t>& bytes, double limit) {
  for (size_t i = 0; i + sizeof(T) <= bytes.size(); i += sizeof(T)) {
    T v;
    std::memcpy(&v, &bytes[i], sizeof v);
    if (v == v && v - v == 0)
      v = static_cast<T>(std::fmod(static_cast<double>(v), limit));  // finite
    std::memcpy(&bytes[i], &v, sizeof v);
  }
}

inline void script_dataset(hid_t file, Bytes& b, const std::string& name, double float_limit) {
  const int rank = static_cast<int>(b.below(4));
  hsize_t dims[3] = {1, 1, 1}, max[3];
  hsize_t n = 1;
  for (int i = 0; i < rank; ++i) {
    dims[i] = b.below(13);
    n *= dims[i];
  }
  const hid_t type = pick_type(b);
  const bool lie = rank > 0 && b.below(8) == 0;  // chunked, then grown past what is written
  for (int i = 0; i < rank; ++i) max[i] = lie ? H5S_UNLIMITED : dims[i];
  ensure_parents(file, name);
  if (H5Lexists(file, name.c_str(), H5P_DEFAULT) > 0) H5Ldelete(file, name.c_str(), H5P_DEFAULT);
  const hid_t space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, max);
  const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (lie) {
    hsize_t chunk[3] = {4, 4, 4};
    H5Pset_chunk(dcpl, rank, chunk);
  }
  const hid_t ds = H5Dcreate2(file, name.c_str(), type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (ds >= 0) {
    const size_t size = H5Tget_size(type);
    std::vector<uint8_t> values = b.raw(static_cast<size_t>(n) * size);
    if (float_limit > 0 && H5Tequal(type, H5T_NATIVE_FLOAT) > 0)
      clamp_values<float>(values, float_limit);
    if (float_limit > 0 && H5Tequal(type, H5T_NATIVE_DOUBLE) > 0)
      clamp_values<double>(values, float_limit);
    if (n > 0) H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
    if (lie) {
      hsize_t grown[3];
      for (int i = 0; i < rank; ++i) grown[i] = dims[i] + (hsize_t(1) << b.below(62));
      H5Dset_extent(ds, grown);
    }
    H5Dclose(ds);
  }
  H5Pclose(dcpl);
  H5Sclose(space);
}

inline void script_attribute(hid_t file, Bytes& b, const std::string& object,
                             const std::string& name) {
  const hid_t obj = H5Oopen(file, object.c_str(), H5P_DEFAULT);
  if (obj < 0) return;
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
  const int kind = static_cast<int>(b.below(6));
  hsize_t two = 2;
  const hid_t space = kind == 5 ? H5Screate_simple(1, &two, nullptr) : H5Screate(H5S_SCALAR);
  if (kind == 2 || kind == 3) {  // a fixed or variable-length string
    std::string value = b.text(24);
    const hid_t type = H5Tcopy(H5T_C_S1);
    if (kind == 2) {
      H5Tset_size(type, std::max<size_t>(value.size(), 1));
      value.resize(std::max<size_t>(value.size(), 1));
    } else {
      H5Tset_size(type, H5T_VARIABLE);
    }
    const hid_t attr = H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr >= 0) {
      const char* p = value.c_str();
      H5Awrite(attr, type,
               kind == 2 ? static_cast<const void*>(value.data()) : static_cast<const void*>(&p));
      H5Aclose(attr);
    }
    H5Tclose(type);
  } else {
    const hid_t type = kind == 1 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64;
    const hid_t attr = H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr >= 0) {
      int64_t ints[2];
      double reals[2];
      for (int i = 0; i < 2; ++i) {
        // Small values most of the time (they pass the first checks), any value sometimes.
        const uint64_t raw = b.u64(b.below(4) == 0 ? 8 : 1);
        ints[i] = b.below(4) == 0 ? -static_cast<int64_t>(raw & 0xff) : static_cast<int64_t>(raw);
        std::memcpy(&reals[i], &raw, sizeof raw);
        if (b.below(2)) reals[i] = static_cast<double>(ints[i]);
      }
      H5Awrite(attr, type,
               kind == 1 ? static_cast<const void*>(reals) : static_cast<const void*>(ints));
      H5Aclose(attr);
    }
  }
  H5Sclose(space);
  H5Oclose(obj);
}

// Applies the rest of the bytes as a script to the file at `path` (which exists).
inline void run_script(const std::string& path, Bytes& b, const Names& names) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  if (file < 0) return;
  for (int step = 0; step < 24 && !b.empty(); ++step) {
    switch (b.below(5)) {
      case 0:
      case 1: {
        std::string name = names.datasets[b.below(names.datasets.size())];
        if (b.below(16) == 0) name = "/" + b.text(8);
        if (name.size() > 1 && name.find('\0') == std::string::npos)
          script_dataset(file, b, name, names.float_limit);
        break;
      }
      case 2: {
        const std::string& object = names.groups[b.below(names.groups.size())];
        std::string name = names.attributes[b.below(names.attributes.size())];
        if (b.below(16) == 0) name = b.text(8);
        if (!name.empty() && name.find('\0') == std::string::npos)
          script_attribute(file, b, object, name);
        break;
      }
      case 3: {
        const std::string& g = names.groups[b.below(names.groups.size())];
        if (g != "/" && H5Lexists(file, g.c_str(), H5P_DEFAULT) <= 0) {
          ensure_parents(file, g + "/x");
        }
        break;
      }
      default: {
        const std::string& victim = b.below(2) ? names.datasets[b.below(names.datasets.size())]
                                               : names.groups[b.below(names.groups.size())];
        if (victim != "/" && H5Lexists(file, victim.c_str(), H5P_DEFAULT) > 0)
          H5Ldelete(file, victim.c_str(), H5P_DEFAULT);
      }
    }
  }
  H5Fclose(file);
}

// The file a harness reads: the fuzz bytes themselves after a first byte 'R', else the valid
// `base` file edited by the bytes' script.
inline void make_input_file(const std::string& path, const uint8_t* data, size_t size, Bytes& b,
                            const std::vector<char>& base, const Names& names) {
  if (size > 0 && data[0] == 'R') {
    write_file(path, data + 1, size - 1);
    return;
  }
  write_file(path, base.data(), base.size());
  run_script(path, b, names);
}

}  // namespace rt::fuzz
