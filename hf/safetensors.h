// safetensors files, read and written directly (the format of Hugging Face checkpoints):
//   u64 little-endian N | N bytes of JSON header | data
//   header: {"NAME": {"dtype": "F32", "shape": [d0, ...], "data_offsets": [begin, end]}, ...,
//            "__metadata__": {"key": "string", ...}}   (offsets relative to the data's start)
// Every offset, size and shape is checked against the file before a byte is read: a damaged or
// hostile file is a UserError naming the file and the tensor, never a read out of bounds.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace rt {

enum class StDType { F32, F16, BF16, F64 };

struct SafeTensorInfo {
  std::string name;
  StDType dtype = StDType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range within the data section
  int64_t numel() const;
};

class SafetensorsReader {
 public:
  // Opens and checks the header of `path` (UserError on anything malformed).
  explicit SafetensorsReader(const std::string& path);
  ~SafetensorsReader();
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<SafeTensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafeTensorInfo* find(const std::string& name) const;
  // The tensor's values as f32 (F16, BF16 and F64 are converted) into out[numel].
  void read_f32(const SafeTensorInfo& t, float* out) const;

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t data_start_ = 0, data_size_ = 0;
  std::vector<SafeTensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A tensor to write: f32 values stored as F32, or rounded to BF16.
struct SafeTensorOut {
  std::string name;
  std::vector<int64_t> shape;
  const float* data = nullptr;
  int64_t numel() const;
};

// Writes `path` (through path.tmp, fsync and rename) with the tensors in the given order.
// RunError (exit 1) naming the file when the write fails; nothing at `path` is replaced then.
void write_safetensors(const std::string& path, const std::vector<SafeTensorOut>& tensors,
                       StDType dtype, const std::map<std::string, std::string>& metadata = {});

// Bytes a tensor of numel elements takes in the file.
uint64_t safetensors_bytes(StDType dtype, int64_t numel);
const char* name_of(StDType dtype);

}  // namespace rt
