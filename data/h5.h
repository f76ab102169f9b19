// A thin RAII layer over the HDF5 C API, used by the corpus and the checkpoints.
// Every failure throws h5::Error naming the operation and the object; callers add which file
// and which recipe key it belongs to. HDF5's own error stack printing is switched off.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace rt::h5 {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Owns one hid_t and closes it with the matching H5*close.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Handle(Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle();
  hid_t id() const { return id_; }
  hid_t release() {  // gives up ownership without closing
    hid_t id = id_;
    id_ = -1;
    return id;
  }

 private:
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

template <class T>
hid_t native_type();

struct DatasetInfo {
  std::vector<uint64_t> dims;
  H5T_class_t type_class = H5T_NO_CLASS;
  size_t type_size = 0;
  bool is_signed = false;
  uint64_t elements = 0;       // product of dims, UINT64_MAX when it overflows
  uint64_t storage_bytes = 0;  // what the file really holds for it (H5Dget_storage_size)
  bool filtered = false;       // compressed (or otherwise filtered): storage is no bound
};

class File {
 public:
  static File create(const std::string& path);      // truncates an existing file
  static File open_read(const std::string& path);   // throws Error when not readable HDF5
  static File open_write(const std::string& path);  // an existing file, read-write
  const std::string& path() const { return path_; }

  bool exists(const std::string& object) const;  // "/a/b": every link on the way exists
  std::vector<std::string> children(const std::string& group) const;  // names, in name order
  void create_groups(const std::string& path);                        // like mkdir -p
  void remove(const std::string& object);  // unlink a dataset or group (if present)

  template <class T>
  void write(const std::string& name, const T* data, const std::vector<uint64_t>& dims,
             uint64_t chunk = 0);
  template <class T>
  void write_vector(const std::string& name, const std::vector<T>& v) {
    write(name, v.data(), {v.size()});
  }
  DatasetInfo info(const std::string& name) const;
  // Throws Error when the dataset claims more values than the file stores (unfiltered data
  // must all be there: a corrupt extent is not read as fill values) or than the memory
  // available could hold as `memory_element_size`-byte values. Every read that allocates from
  // an extent calls it first.
  void check_stored(const std::string& name, const DatasetInfo& info,
                    size_t memory_element_size) const;
  // Reads elements [offset, offset + count) of a 1-D dataset, converting to T.
  template <class T>
  void read(const std::string& name, T* out, uint64_t offset, uint64_t count) const;
  // The whole dataset; check_stored first, and at most max_elements values (else Error).
  template <class T>
  std::vector<T> read_all(const std::string& name, uint64_t max_elements = UINT64_MAX) const;
  // Reads a whole dataset of any shape holding exactly `count` elements into out (after
  // check_stored).
  template <class T>
  void read_into(const std::string& name, T* out, uint64_t count) const;

  // A 1-D dataset that grows by append (chunked, unlimited).
  template <class T>
  void create_appendable(const std::string& name, uint64_t chunk);
  template <class T>
  void append(const std::string& name, const T* data, uint64_t count);

  void set_attr(const std::string& object, const std::string& name, const std::string& value);
  void set_attr(const std::string& object, const std::string& name, int64_t value);
  bool has_attr(const std::string& object, const std::string& name) const;
  std::vector<std::string> attr_names(const std::string& object) const;  // in name order
  std::string attr_string(const std::string& object, const std::string& name) const;
  // Scalar (or one-element) attributes; anything else is an Error.
  int64_t attr_int(const std::string& object, const std::string& name) const;
  double attr_double(const std::string& object, const std::string& name) const;  // int or float

  void flush();
  void close();

 private:
  Handle open_object(const std::string& object) const;
  std::string path_;
  Handle file_;
};

}  // namespace rt::h5
