#include "hf/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/files.h"
#include "kernels/bf16.h"

namespace rt {

namespace {

// The format's own limit on the header (safetensors' MAX_HEADER_SIZE).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

constexpr const char* kDTypeNames[] = {"F32", "F16", "BF16", "F64"};
constexpr int kDTypeBytes[] = {4, 2, 2, 8};

float f16_to_f32(uint16_t h) {
  const int exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  const float sign = (h & 0x8000) ? -1.0f : 1.0f;
  if (exponent == 0) return sign * std::ldexp(static_cast<float>(mantissa), -24);
  if (exponent == 31) return mantissa ? NAN : sign * INFINITY;
  return sign * std::ldexp(static_cast<float>(mantissa | 0x400), exponent - 25);
}

// Reads exactly n bytes at offset, or throws.
void read_at(int fd, const std::string& path, void* out, uint64_t n, uint64_t offset) {
  auto* p = static_cast<char*>(out);
  while (n > 0) {
    const ssize_t got = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0)
      throw UserError(cat(path, ": cannot read ", n, " bytes at offset ", offset, ": ",
                          got == 0 ? "the file ends there" : std::strerror(errno)));
    p += got;
    n -= static_cast<uint64_t>(got);
    offset += static_cast<uint64_t>(got);
  }
}

}  // namespace

const char* name_of(StDType dtype) { return kDTypeNames[static_cast<int>(dtype)]; }

uint64_t safetensors_bytes(StDType dtype, int64_t numel) {
  return static_cast<uint64_t>(numel) * static_cast<uint64_t>(kDTypeBytes[static_cast<int>(dtype)]);
}

namespace {
int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}
}  // namespace

int64_t SafeTensorInfo::numel() const { return product(shape); }
int64_t SafeTensorOut::numel() const { return product(shape); }

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY);
  if (fd_ < 0) throw UserError(cat(path, ": cannot open: ", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd_);
    throw UserError(cat(path, ": not a regular file"));
  }
  try {
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    auto bad = [&](const std::string& what) {
      return UserError(cat(path, ": not a valid safetensors file: ", what));
    };
    if (size < 8) throw bad(cat("", size, " bytes, shorter than the 8-byte header length"));
    unsigned char len_bytes[8];
    read_at(fd_, path, len_bytes, 8, 0);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = header_len << 8 | len_bytes[i];
    if (header_len > kMaxHeaderBytes || header_len > size - 8)
      throw bad(cat("header length ", header_len, " exceeds the file's ", size - 8,
                    " remaining bytes (or the format's limit of ", kMaxHeaderBytes, ")"));
    std::string header(header_len, '\0');
    read_at(fd_, path, header.data(), header_len, 8);
    data_start_ = 8 + header_len;
    data_size_ = size - data_start_;

    const nlohmann::json j = nlohmann::json::parse(header, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw bad("the header is not a JSON object");
    for (const auto& [name, entry] : j.items()) {
      if (name == "__metadata__") {
        if (!entry.is_object()) throw bad("__metadata__ is not an object");
        for (const auto& [key, value] : entry.items()) {
          if (!value.is_string()) throw bad(cat("__metadata__.", key, " is not a string"));
          metadata_[key] = value.get<std::string>();
        }
        continue;
      }
      auto bad_tensor = [&](const std::string& what) {
        return bad(cat("tensor ", name, ": ", what));
      };
      if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
          !entry.contains("data_offsets"))
        throw bad_tensor("expected an object with dtype, shape and data_offsets");
      SafeTensorInfo t;
      t.name = name;
      const nlohmann::json& dtype = entry["dtype"];
      const auto* known =
          dtype.is_string()
              ? std::find(std::begin(kDTypeNames), std::end(kDTypeNames), dtype.get<std::string>())
              : std::end(kDTypeNames);
      if (known == std::end(kDTypeNames))
        throw bad_tensor(cat("dtype ", dtype.dump(), " is not supported (F32, F16, BF16 or F64)"));
      t.dtype = static_cast<StDType>(known - std::begin(kDTypeNames));
      const nlohmann::json& shape = entry["shape"];
      if (!shape.is_array() || shape.size() > 8)
        throw bad_tensor("shape is not a list of up to 8 sizes");
      uint64_t numel = 1;
      for (const auto& d : shape) {
        if (!d.is_number_unsigned())
          throw bad_tensor(cat("shape ", shape.dump(), " holds a non-size"));
        const uint64_t dim = d.get<uint64_t>();
        if (dim != 0 && numel > (uint64_t(1) << 62) / dim)
          throw bad_tensor(cat("shape ", shape.dump(), " is too large"));
        numel *= dim;
        t.shape.push_back(static_cast<int64_t>(dim));
      }
      const nlohmann::json& off = entry["data_offsets"];
      if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
          !off[1].is_number_unsigned())
        throw bad_tensor("data_offsets is not [begin, end]");
      t.begin = off[0].get<uint64_t>();
      t.end = off[1].get<uint64_t>();
      if (t.begin > t.end || t.end > data_size_)
        throw bad_tensor(cat("data_offsets [", t.begin, ", ", t.end, "] lie outside the data (",
                             data_size_, " bytes)"));
      if (t.end - t.begin != safetensors_bytes(t.dtype, static_cast<int64_t>(numel)))
        throw bad_tensor(cat("data_offsets [", t.begin, ", ", t.end, "] hold ", t.end - t.begin,
                             " bytes; shape ", shape.dump(), " of ", name_of(t.dtype), " needs ",
                             safetensors_bytes(t.dtype, static_cast<int64_t>(numel))));
      tensors_.push_back(std::move(t));
    }
    std::vector<const SafeTensorInfo*> by_offset;
    for (const SafeTensorInfo& t : tensors_) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(),
              [](auto* a, auto* b) { return a->begin < b->begin; });
    for (size_t i = 1; i < by_offset.size(); ++i)
      if (by_offset[i]->begin < by_offset[i - 1]->end)
        throw bad(cat("tensors ", by_offset[i - 1]->name, " and ", by_offset[i]->name,
                      " overlap in the data"));
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

SafetensorsReader::~SafetensorsReader() {
  if (fd_ >= 0) ::close(fd_);
}

const SafeTensorInfo* SafetensorsReader::find(const std::string& name) const {
  for (const SafeTensorInfo& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

void SafetensorsReader::read_f32(const SafeTensorInfo& t, float* out) const {
  const int64_t n = t.numel();
  const uint64_t offset = data_start_ + t.begin;
  if (t.dtype == StDType::F32) return read_at(fd_, path_, out, t.end - t.begin, offset);
  // Other types are read in blocks and widened.
  constexpr int64_t kBlock = 1 << 20;
  std::vector<unsigned char> buf(
      static_cast<size_t>(safetensors_bytes(t.dtype, std::min(n, kBlock))));
  for (int64_t i = 0; i < n; i += kBlock) {
    const int64_t m = std::min(kBlock, n - i);
    read_at(fd_, path_, buf.data(), safetensors_bytes(t.dtype, m),
            offset + safetensors_bytes(t.dtype, i));
    for (int64_t k = 0; k < m; ++k) {
      if (t.dtype == StDType::F64) {
        double d;
        std::memcpy(&d, buf.data() + 8 * k, 8);
        out[i + k] = static_cast<float>(d);
      } else {
        uint16_t h;
        std::memcpy(&h, buf.data() + 2 * k, 2);
        out[i + k] = t.dtype == StDType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
      }
    }
  }
}

void write_safetensors(const std::string& path, const std::vector<SafeTensorOut>& tensors,
                       StDType dtype, const std::map<std::string, std::string>& metadata) {
  RT_CHECK(dtype == StDType::F32 || dtype == StDType::BF16, "writing ", name_of(dtype));
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const SafeTensorOut& t : tensors) {
    const uint64_t bytes = safetensors_bytes(dtype, t.numel());
    header[t.name] = {
        {"dtype", name_of(dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  auto write = [&](std::FILE* f) {
    unsigned char len_bytes[8];
    for (int i = 0; i < 8; ++i)
      len_bytes[i] = static_cast<unsigned char>(uint64_t(text.size()) >> (8 * i));
    bool ok = std::fwrite(len_bytes, 1, 8, f) == 8 &&
              std::fwrite(text.data(), 1, text.size(), f) == text.size();
    std::vector<uint16_t> half;
    for (const SafeTensorOut& t : tensors) {
      const int64_t n = t.numel();
      if (dtype == StDType::F32) {
        ok = ok && std::fwrite(t.data, 4, static_cast<size_t>(n), f) == static_cast<size_t>(n);
      } else {
        half.resize(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) half[i] = f32_to_bf16(t.data[i]);
        ok = ok && std::fwrite(half.data(), 2, half.size(), f) == half.size();
      }
    }
    return ok;
  };
  try {
    write_file(path, write);
  } catch (const std::exception& e) {
    throw RunError(cat(path, " not written: ", e.what()), 1);
  }
}

}  // namespace rt
