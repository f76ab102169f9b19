// safetensors read and written directly: round trips, the dtypes transformers writes, and
// every way a header can lie about the file (each a UserError naming file and tensor).
#include "hf/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "core/check.h"

namespace rt {
namespace {

std::string temp_path(const std::string& name) {
  return testing::TempDir() + "st_" + std::to_string(::getpid()) + "_" + name;
}

// A file of an 8-byte length, the header text and the data bytes, as given.
std::string craft(const std::string& name, const std::string& header, const std::string& data) {
  const std::string path = temp_path(name);
  std::ofstream out(path, std::ios::binary);
  uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header << data;
  return path;
}

TEST(Safetensors, RoundTripsF32AndBf16WithMetadata) {
  const std::vector<float> a = {1.5f, -2.25f, 3.0f, 1e-3f, 65504.0f, -0.0f};
  const std::vector<float> b = {0.1f, 0.2f, 0.3f};
  for (StDType dtype : {StDType::F32, StDType::BF16}) {
    const std::string path = temp_path(cat("rt", name_of(dtype)));
    write_safetensors(path, {{"w.a", {2, 3}, a.data()}, {"w.b", {3}, b.data()}}, dtype,
                      {{"format", "pt"}});
    const SafetensorsReader r(path);
    ASSERT_EQ(r.tensors().size(), 2u);
    EXPECT_EQ(r.metadata().at("format"), "pt");
    const SafeTensorInfo* t = r.find("w.a");
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->dtype, dtype);
    EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 3}));
    std::vector<float> got(6);
    r.read_f32(*t, got.data());
    for (size_t i = 0; i < a.size(); ++i)
      if (dtype == StDType::F32)
        EXPECT_EQ(got[i], a[i]);
      else  // bf16 keeps 8 bits of mantissa: within 2^-8 relative
        EXPECT_NEAR(got[i], a[i], std::abs(a[i]) * 0x1p-8) << i;
    // The data starts 8-byte aligned, as the format recommends.
    std::ifstream in(path, std::ios::binary);
    uint64_t n = 0;
    in.read(reinterpret_cast<char*>(&n), 8);
    EXPECT_EQ(n % 8, 0u);
    std::remove(path.c_str());
  }
}

TEST(Safetensors, ReadsF16AndF64) {
  const uint16_t half[] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00, 0x3555};
  const double wide[] = {0.1, -1e30};
  std::string data(reinterpret_cast<const char*>(half), sizeof half);
  data.append(reinterpret_cast<const char*>(wide), sizeof wide);
  const std::string path = craft("f16",
                                 R"({"h":{"dtype":"F16","shape":[6],"data_offsets":[0,12]},)"
                                 R"("d":{"dtype":"F64","shape":[2],"data_offsets":[12,28]}})",
                                 data);
  const SafetensorsReader r(path);
  std::vector<float> h(6), d(2);
  r.read_f32(*r.find("h"), h.data());
  r.read_f32(*r.find("d"), d.data());
  EXPECT_EQ(h[0], 1.0f);
  EXPECT_EQ(h[1], -2.0f);
  EXPECT_EQ(h[2], 65504.0f);
  EXPECT_EQ(h[3], std::ldexp(1.0f, -24));  // the smallest subnormal
  EXPECT_TRUE(std::isinf(h[4]));
  EXPECT_NEAR(h[5], 1.0f / 3.0f, 1e-3f);
  EXPECT_EQ(d[0], 0.1f);
  EXPECT_EQ(d[1], -1e30f);
  std::remove(path.c_str());
}

// Every lie a header can tell, and the words that must name it.
TEST(Safetensors, RefusesEveryMalformedHeader) {
  const std::string data(16, '\0');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json", "the header is not a JSON object"},
      {R"({"a":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}})",
       "tensor a: dtype \"I8\" is not supported"},
      {R"({"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})",
       "tensor a: shape [-4] holds a non-size"},
      {R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,99]}})",
       "tensor a: data_offsets [0, 99] lie outside the data (16 bytes)"},
      {R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[8,4]}})",
       "tensor a: data_offsets [8, 4] lie outside"},
      {R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})",
       "tensor a: data_offsets [0, 16] hold 16 bytes; shape [3] of F32 needs 12"},
      {R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}})",
       "is too large"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       "tensors a and b overlap"},
      {R"({"a":{"dtype":"F32","shape":[2]}})",
       "tensor a: expected an object with dtype, shape and data_offsets"},
      {R"({"__metadata__":{"k":3}})", "__metadata__.k is not a string"},
  };
  for (const auto& [header, expected] : cases) {
    const std::string path = craft("bad", header, data);
    try {
      SafetensorsReader r(path);
      ADD_FAILURE() << "accepted: " << header;
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos)
          << "header " << header << "\n  message " << e.what();
    }
    std::remove(path.c_str());
  }
}

TEST(Safetensors, RefusesTruncatedFiles) {
  const std::string short_file = temp_path("short");
  std::ofstream(short_file) << "abc";
  EXPECT_THROW(SafetensorsReader{short_file}, UserError);
  // A length that promises more header than the file holds.
  const std::string path =
      craft("long", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "");
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    const uint64_t lie = 1 << 20;
    f.write(reinterpret_cast<const char*>(&lie), 8);
  }
  try {
    SafetensorsReader r(path);
    ADD_FAILURE() << "accepted a header length past the end";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("header length 1048576 exceeds"), std::string::npos)
        << e.what();
  }
  std::remove(short_file.c_str());
  std::remove(path.c_str());
}

TEST(Safetensors, AWriteThatCannotStartIsARunError) {
  const std::string dir = temp_path("nodir") + "/missing/sub";
  const float x = 1.0f;
  EXPECT_THROW(write_safetensors(dir + "/m.safetensors", {{"x", {1}, &x}}, StDType::F32), RunError);
}

}  // namespace
}  // namespace rt
