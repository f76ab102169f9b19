#include "data/h5.h"

#include <mutex>

#include "core/check.h"
#include "data/memory.h"

namespace rt::h5 {

namespace {

void silence_hdf5() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

hid_t check(hid_t id, const std::string& what) {
  if (id < 0) throw Error(what);
  return id;
}

void check_status(herr_t status, const std::string& what) {
  if (status < 0) throw Error(what);
}

}  // namespace

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    if (id_ >= 0 && closer_) closer_(id_);
    id_ = o.id_;
    closer_ = o.closer_;
    o.id_ = -1;
  }
  return *this;
}

Handle::~Handle() {
  if (id_ >= 0 && closer_) closer_(id_);
}

template <>
hid_t native_type<uint16_t>() {
  return H5T_NATIVE_UINT16;
}
template <>
hid_t native_type<uint32_t>() {
  return H5T_NATIVE_UINT32;
}
template <>
hid_t native_type<uint64_t>() {
  return H5T_NATIVE_UINT64;
}
template <>
hid_t native_type<int32_t>() {
  return H5T_NATIVE_INT32;
}
template <>
hid_t native_type<int64_t>() {
  return H5T_NATIVE_INT64;
}
template <>
hid_t native_type<float>() {
  return H5T_NATIVE_FLOAT;
}
template <>
hid_t native_type<double>() {
  return H5T_NATIVE_DOUBLE;
}

File File::create(const std::string& path) {
  silence_hdf5();
  File f;
  f.path_ = path;
  f.file_ = Handle(check(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT),
                         "cannot create HDF5 file"),
                   H5Fclose);
  return f;
}

File File::open_read(const std::string& path) {
  silence_hdf5();
  File f;
  f.path_ = path;
  htri_t is_hdf5 = H5Fis_hdf5(path.c_str());  // 1.10: H5Fis_accessible came in 1.12
  if (is_hdf5 <= 0) throw Error("not a readable HDF5 file (truncated, corrupt or another format)");
  f.file_ = Handle(check(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT),
                         "not a readable HDF5 file (truncated, corrupt or another format)"),
                   H5Fclose);
  return f;
}

File File::open_write(const std::string& path) {
  silence_hdf5();
  if (H5Fis_hdf5(path.c_str()) <= 0)
    throw Error("not a readable HDF5 file (truncated, corrupt or another format)");
  File f;
  f.path_ = path;
  f.file_ = Handle(
      check(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), "cannot open for writing"), H5Fclose);
  return f;
}

void File::remove(const std::string& object) {
  if (exists(object))
    check_status(H5Ldelete(file_.id(), object.c_str(), H5P_DEFAULT), "cannot remove " + object);
}

bool File::exists(const std::string& object) const {
  if (object == "/") return true;
  // H5Lexists needs every intermediate link to exist: walk them one by one.
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = object.find('/', pos + 1);
    const std::string prefix = object.substr(0, pos);
    if (prefix.empty() || prefix == "/") continue;
    if (H5Lexists(file_.id(), prefix.c_str(), H5P_DEFAULT) <= 0) return false;
  }
  return true;
}

std::vector<std::string> File::children(const std::string& group) const {
  if (!exists(group)) throw Error("missing group " + group);
  Handle g(check(H5Gopen2(file_.id(), group.c_str(), H5P_DEFAULT), group + " is not a group"),
           H5Gclose);
  std::vector<std::string> names;
  auto collect = [](hid_t, const char* name, const H5L_info_t*, void* out) -> herr_t {
    static_cast<std::vector<std::string>*>(out)->push_back(name);
    return 0;
  };
  check_status(H5Literate(g.id(), H5_INDEX_NAME, H5_ITER_INC, nullptr, collect, &names),
               "cannot list " + group);
  return names;
}

void File::create_groups(const std::string& path) {
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    const std::string prefix = path.substr(0, pos);
    if (prefix.empty() || prefix == "/" || exists(prefix)) continue;
    Handle g(check(H5Gcreate2(file_.id(), prefix.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                   "cannot create group " + prefix),
             H5Gclose);
  }
}

template <class T>
void File::write(const std::string& name, const T* data, const std::vector<uint64_t>& dims,
                 uint64_t chunk) {
  std::vector<hsize_t> d(dims.begin(), dims.end());
  Handle space(check(H5Screate_simple(static_cast<int>(d.size()), d.data(), nullptr),
                     "cannot make a dataspace for " + name),
               H5Sclose);
  Handle dcpl(check(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate"), H5Pclose);
  if (chunk > 0 && d.size() == 1 && d[0] > 0) {
    hsize_t c = std::min<hsize_t>(chunk, d[0]);
    check_status(H5Pset_chunk(dcpl.id(), 1, &c), "cannot chunk " + name);
  }
  Handle ds(check(H5Dcreate2(file_.id(), name.c_str(), native_type<T>(), space.id(), H5P_DEFAULT,
                             dcpl.id(), H5P_DEFAULT),
                  "cannot create dataset " + name),
            H5Dclose);
  uint64_t n = 1;
  for (auto x : dims) n *= x;
  if (n > 0)
    check_status(H5Dwrite(ds.id(), native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
                 "cannot write dataset " + name);
}

DatasetInfo File::info(const std::string& name) const {
  if (!exists(name)) throw Error("missing dataset " + name);
  Handle ds(check(H5Dopen2(file_.id(), name.c_str(), H5P_DEFAULT), name + " is not a dataset"),
            H5Dclose);
  Handle space(check(H5Dget_space(ds.id()), "cannot read the shape of " + name), H5Sclose);
  Handle type(check(H5Dget_type(ds.id()), "cannot read the type of " + name), H5Tclose);
  DatasetInfo info;
  int nd = H5Sget_simple_extent_ndims(space.id());
  if (nd < 0) throw Error("cannot read the shape of " + name);
  std::vector<hsize_t> d(nd);
  if (H5Sget_simple_extent_dims(space.id(), d.data(), nullptr) < 0)
    throw Error("cannot read the shape of " + name);
  info.dims.assign(d.begin(), d.end());
  info.type_class = H5Tget_class(type.id());
  info.type_size = H5Tget_size(type.id());
  info.is_signed = info.type_class == H5T_INTEGER && H5Tget_sign(type.id()) == H5T_SGN_2;
  info.elements = 1;
  for (uint64_t x : info.dims)
    info.elements = x != 0 && info.elements > UINT64_MAX / x ? UINT64_MAX : info.elements * x;
  info.storage_bytes = H5Dget_storage_size(ds.id());
  Handle dcpl(check(H5Dget_create_plist(ds.id()), "cannot read the layout of " + name), H5Pclose);
  info.filtered = H5Pget_nfilters(dcpl.id()) > 0;
  return info;
}

namespace {
uint64_t saturating_mul(uint64_t a, uint64_t b) {
  return a != 0 && b > UINT64_MAX / a ? UINT64_MAX : a * b;
}
}  // namespace

void File::check_stored(const std::string& name, const DatasetInfo& info,
                        size_t memory_element_size) const {
  const uint64_t file_bytes = saturating_mul(info.elements, info.type_size);
  if (!info.filtered && file_bytes > info.storage_bytes)
    throw Error(name + " declares " + std::to_string(info.elements) + " values (" +
                format_bytes(static_cast<double>(file_bytes)) + ") but the file stores " +
                std::to_string(info.storage_bytes) + " bytes of it (truncated or corrupt)");
  const uint64_t memory_bytes = saturating_mul(info.elements, memory_element_size);
  const MemoryAvailable available = host_memory_available();
  if (memory_bytes > available.bytes)
    throw Error(name + " holds " + std::to_string(info.elements) + " values, " +
                format_bytes(static_cast<double>(memory_bytes)) + " in memory, more than the " +
                format_bytes(static_cast<double>(available.bytes)) + " available (" +
                available.source + ")");
}

template <class T>
void File::read(const std::string& name, T* out, uint64_t offset, uint64_t count) const {
  Handle ds(check(H5Dopen2(file_.id(), name.c_str(), H5P_DEFAULT), "missing dataset " + name),
            H5Dclose);
  Handle space(check(H5Dget_space(ds.id()), "cannot read the shape of " + name), H5Sclose);
  hsize_t start = offset, n = count;
  check_status(H5Sselect_hyperslab(space.id(), H5S_SELECT_SET, &start, nullptr, &n, nullptr),
               "range [" + std::to_string(offset) + ", " + std::to_string(offset + count) +
                   ") is outside " + name);
  Handle mem(check(H5Screate_simple(1, &n, nullptr), "H5Screate_simple"), H5Sclose);
  check_status(H5Dread(ds.id(), native_type<T>(), mem.id(), space.id(), H5P_DEFAULT, out),
               "cannot read " + name + " [" + std::to_string(offset) + ", " +
                   std::to_string(offset + count) + ") (file truncated or corrupt)");
}

template <class T>
std::vector<T> File::read_all(const std::string& name, uint64_t max_elements) const {
  const DatasetInfo i = info(name);
  if (i.elements > max_elements)
    throw Error(name + " holds " + std::to_string(i.elements) + " values, more than the " +
                std::to_string(max_elements) + " it can have here");
  check_stored(name, i, sizeof(T));
  std::vector<T> v(i.elements);
  read_into(name, v.data(), i.elements);
  return v;
}

template <class T>
void File::read_into(const std::string& name, T* out, uint64_t count) const {
  const DatasetInfo i = info(name);
  const uint64_t n = i.elements;
  if (n != count)
    throw Error(name + " holds " + std::to_string(n) + " values, expected " +
                std::to_string(count));
  if (n == 0) return;
  check_stored(name, i, 0);  // the caller allocated `count`: only the file's side to check
  Handle ds(check(H5Dopen2(file_.id(), name.c_str(), H5P_DEFAULT), "missing dataset " + name),
            H5Dclose);
  check_status(H5Dread(ds.id(), native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out),
               "cannot read " + name + " (file truncated or corrupt)");
}

template <class T>
void File::create_appendable(const std::string& name, uint64_t chunk) {
  hsize_t zero = 0, unlimited = H5S_UNLIMITED, c = chunk;
  Handle space(check(H5Screate_simple(1, &zero, &unlimited), "H5Screate_simple"), H5Sclose);
  Handle dcpl(check(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate"), H5Pclose);
  check_status(H5Pset_chunk(dcpl.id(), 1, &c), "cannot chunk " + name);
  Handle ds(check(H5Dcreate2(file_.id(), name.c_str(), native_type<T>(), space.id(), H5P_DEFAULT,
                             dcpl.id(), H5P_DEFAULT),
                  "cannot create dataset " + name),
            H5Dclose);
}

template <class T>
void File::append(const std::string& name, const T* data, uint64_t count) {
  if (count == 0) return;
  Handle ds(check(H5Dopen2(file_.id(), name.c_str(), H5P_DEFAULT), "missing dataset " + name),
            H5Dclose);
  hsize_t old_size = 0;
  {
    Handle space(check(H5Dget_space(ds.id()), "H5Dget_space"), H5Sclose);
    H5Sget_simple_extent_dims(space.id(), &old_size, nullptr);
  }
  hsize_t new_size = old_size + count, n = count;
  check_status(H5Dset_extent(ds.id(), &new_size), "cannot grow " + name);
  Handle space(check(H5Dget_space(ds.id()), "H5Dget_space"), H5Sclose);
  check_status(H5Sselect_hyperslab(space.id(), H5S_SELECT_SET, &old_size, nullptr, &n, nullptr),
               "H5Sselect_hyperslab");
  Handle mem(check(H5Screate_simple(1, &n, nullptr), "H5Screate_simple"), H5Sclose);
  check_status(H5Dwrite(ds.id(), native_type<T>(), mem.id(), space.id(), H5P_DEFAULT, data),
               "cannot append to " + name);
}

Handle File::open_object(const std::string& object) const {
  if (!exists(object)) throw Error("missing object " + object);
  return Handle(check(H5Oopen(file_.id(), object.c_str(), H5P_DEFAULT), "cannot open " + object),
                H5Oclose);
}

void File::set_attr(const std::string& object, const std::string& name, const std::string& value) {
  Handle obj = open_object(object);
  if (H5Aexists(obj.id(), name.c_str()) > 0) H5Adelete(obj.id(), name.c_str());
  Handle type(check(H5Tcopy(H5T_C_S1), "H5Tcopy"), H5Tclose);
  check_status(H5Tset_size(type.id(), std::max<size_t>(value.size(), 1)), "H5Tset_size");
  Handle space(check(H5Screate(H5S_SCALAR), "H5Screate"), H5Sclose);
  Handle attr(
      check(H5Acreate2(obj.id(), name.c_str(), type.id(), space.id(), H5P_DEFAULT, H5P_DEFAULT),
            "cannot create attribute " + name),
      H5Aclose);
  const char* data = value.empty() ? "" : value.data();
  check_status(H5Awrite(attr.id(), type.id(), data), "cannot write attribute " + name);
}

void File::set_attr(const std::string& object, const std::string& name, int64_t value) {
  Handle obj = open_object(object);
  if (H5Aexists(obj.id(), name.c_str()) > 0) H5Adelete(obj.id(), name.c_str());
  Handle space(check(H5Screate(H5S_SCALAR), "H5Screate"), H5Sclose);
  Handle attr(check(H5Acreate2(obj.id(), name.c_str(), H5T_NATIVE_INT64, space.id(), H5P_DEFAULT,
                               H5P_DEFAULT),
                    "cannot create attribute " + name),
              H5Aclose);
  check_status(H5Awrite(attr.id(), H5T_NATIVE_INT64, &value), "cannot write attribute " + name);
}

bool File::has_attr(const std::string& object, const std::string& name) const {
  if (!exists(object)) return false;
  Handle obj = open_object(object);
  return H5Aexists(obj.id(), name.c_str()) > 0;
}

std::vector<std::string> File::attr_names(const std::string& object) const {
  Handle obj = open_object(object);
  std::vector<std::string> names;
  auto collect = [](hid_t, const char* name, const H5A_info_t*, void* out) -> herr_t {
    static_cast<std::vector<std::string>*>(out)->push_back(name);
    return 0;
  };
  hsize_t index = 0;
  check_status(H5Aiterate2(obj.id(), H5_INDEX_NAME, H5_ITER_INC, &index, collect, &names),
               "cannot list the attributes of " + object);
  return names;
}

namespace {

// An attribute read into one value must hold one value (a scalar or a 1-element array).
Handle open_single_attr(hid_t obj, const std::string& name) {
  if (H5Aexists(obj, name.c_str()) <= 0) throw Error("missing attribute " + name);
  Handle attr(check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "cannot open attribute " + name),
              H5Aclose);
  Handle space(check(H5Aget_space(attr.id()), "cannot read the shape of attribute " + name),
               H5Sclose);
  const hssize_t n = H5Sget_simple_extent_npoints(space.id());
  if (n != 1)
    throw Error("attribute " + name + " holds " + std::to_string(n) + " values, expected one");
  return attr;
}

}  // namespace

std::string File::attr_string(const std::string& object, const std::string& name) const {
  Handle obj = open_object(object);
  Handle attr = open_single_attr(obj.id(), name);
  Handle type(check(H5Aget_type(attr.id()), "H5Aget_type"), H5Tclose);
  if (H5Tget_class(type.id()) != H5T_STRING) throw Error("attribute " + name + " is not a string");
  if (H5Tis_variable_str(type.id()) > 0) {  // written by h5py, for example
    char* value = nullptr;
    Handle mem(check(H5Tget_native_type(type.id(), H5T_DIR_ASCEND), "H5Tget_native_type"),
               H5Tclose);
    check_status(H5Aread(attr.id(), mem.id(), &value), "cannot read attribute " + name);
    std::string s = value ? value : "";
    H5free_memory(value);
    return s;
  }
  // A fixed-length string: its declared size is what the attribute stores, nothing more.
  const size_t size = H5Tget_size(type.id());
  if (size == 0 || size > H5Aget_storage_size(attr.id()))
    throw Error("attribute " + name + " declares " + std::to_string(size) +
                " bytes but stores fewer (corrupt)");
  std::string s(size, '\0');
  check_status(H5Aread(attr.id(), type.id(), s.data()), "cannot read attribute " + name);
  while (!s.empty() && s.back() == '\0') s.pop_back();
  return s;
}

int64_t File::attr_int(const std::string& object, const std::string& name) const {
  Handle obj = open_object(object);
  Handle attr = open_single_attr(obj.id(), name);
  Handle type(check(H5Aget_type(attr.id()), "H5Aget_type"), H5Tclose);
  if (H5Tget_class(type.id()) != H5T_INTEGER)
    throw Error("attribute " + name + " is not an integer");
  int64_t v = 0;
  check_status(H5Aread(attr.id(), H5T_NATIVE_INT64, &v), "cannot read attribute " + name);
  return v;
}

double File::attr_double(const std::string& object, const std::string& name) const {
  Handle obj = open_object(object);
  Handle attr = open_single_attr(obj.id(), name);
  Handle type(check(H5Aget_type(attr.id()), "H5Aget_type"), H5Tclose);
  const H5T_class_t cls = H5Tget_class(type.id());
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) throw Error("attribute " + name + " is not a number");
  double v = 0;
  check_status(H5Aread(attr.id(), H5T_NATIVE_DOUBLE, &v), "cannot read attribute " + name);
  return v;
}

void File::flush() {
  check_status(H5Fflush(file_.id(), H5F_SCOPE_GLOBAL), "cannot flush " + path_);
}

void File::close() {
  if (file_.id() >= 0) check_status(H5Fclose(file_.release()), "cannot close " + path_);
}

#define RT_H5_INSTANTIATE(T)                                                               \
  template void File::write<T>(const std::string&, const T*, const std::vector<uint64_t>&, \
                               uint64_t);                                                  \
  template void File::read<T>(const std::string&, T*, uint64_t, uint64_t) const;           \
  template std::vector<T> File::read_all<T>(const std::string&, uint64_t) const;           \
  template void File::read_into<T>(const std::string&, T*, uint64_t) const;                \
  template void File::create_appendable<T>(const std::string&, uint64_t);                  \
  template void File::append<T>(const std::string&, const T*, uint64_t);
RT_H5_INSTANTIATE(uint16_t)
RT_H5_INSTANTIATE(uint32_t)
RT_H5_INSTANTIATE(uint64_t)
RT_H5_INSTANTIATE(int32_t)
RT_H5_INSTANTIATE(int64_t)
RT_H5_INSTANTIATE(float)
RT_H5_INSTANTIATE(double)
#undef RT_H5_INSTANTIATE

}  // namespace rt::h5
