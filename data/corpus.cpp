#include "data/corpus.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/check.h"
#include "core/hash.h"
#include "data/h5.h"
#include "data/jsonl.h"
#include "data/tokenizer.h"

namespace rt {

struct Corpus::Impl {
  h5::File file;
};

namespace {

constexpr uint64_t kTokenChunk = uint64_t(1) << 20;
constexpr const char* kHowToMake = "make corpora with 'ringtrain data import'";

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

Corpus::~Corpus() { delete impl_; }
Corpus::Corpus(Corpus&& o) noexcept : impl_(o.impl_), info_(std::move(o.info_)) {
  o.impl_ = nullptr;
}
Corpus& Corpus::operator=(Corpus&& o) noexcept {
  if (this != &o) {
    delete impl_;
    impl_ = o.impl_;
    info_ = std::move(o.info_);
    o.impl_ = nullptr;
  }
  return *this;
}

Corpus Corpus::open(const std::string& path, const std::string& key) {
  auto bad = [&](const std::string& what) { return UserError(cat(key, ": ", path, ": ", what)); };
  if (!file_exists(path))
    throw UserError(cat(key, ": corpus file '", path, "' does not exist; expected an HDF5 corpus (",
                        kHowToMake, ")"));
  Corpus c;
  c.impl_ = new Impl;
  try {
    c.impl_->file = h5::File::open_read(path);
  } catch (const h5::Error& e) {
    throw bad(cat(e.what(), "; expected an HDF5 corpus (", kHowToMake, ")"));
  }
  const h5::File& f = c.impl_->file;
  CorpusInfo& info = c.info_;
  info.path = path;
  try {
    if (!f.has_attr("/", "format"))
      throw bad(
          cat("no 'format' attribute; expected format='", kCorpusFormat, "' (", kHowToMake, ")"));
    const std::string format = f.attr_string("/", "format");
    if (format != kCorpusFormat)
      throw bad(cat("format is '", format, "', expected '", kCorpusFormat, "' (", kHowToMake, ")"));
    const int64_t version = f.attr_int("/", "version");
    if (version != kCorpusVersion)
      throw bad(cat("corpus version ", version, " is not supported; expected ", kCorpusVersion));
    info.vocab_size = f.attr_int("/", "vocab_size");
    info.eos_id = f.attr_int("/", "eos_id");
    info.tokenizer = f.attr_string("/", "tokenizer");
    info.fingerprint = f.attr_string("/", "fingerprint");
    if (info.vocab_size < 2 || info.vocab_size > (int64_t(1) << 31) - 1)
      throw bad(cat("vocab_size ", info.vocab_size, " is out of range; expected 2 .. 2^31-1"));
    if (info.eos_id < 0 || info.eos_id >= info.vocab_size)
      throw bad(
          cat("eos_id ", info.eos_id, " is outside the vocabulary [0, ", info.vocab_size, ")"));

    const h5::DatasetInfo tokens = f.info("/tokens");
    if (tokens.dims.size() != 1 || tokens.type_class != H5T_INTEGER || tokens.is_signed ||
        (tokens.type_size != 2 && tokens.type_size != 4))
      throw bad("/tokens must be a 1-d u16 or u32 dataset");
    info.token_bytes = static_cast<int>(tokens.type_size);
    // Tokens are read by range, never whole, but a /tokens that claims more than the file holds
    // would be read as fill values: the extent must be real.
    f.check_stored("/tokens", tokens, 0);
    if (tokens.dims[0] > static_cast<uint64_t>(INT64_MAX))
      throw bad(cat("/tokens declares ", tokens.dims[0], " tokens; expected fewer than 2^63"));
    info.num_tokens = static_cast<int64_t>(tokens.dims[0]);

    const h5::DatasetInfo offsets = f.info("/doc_offsets");
    if (offsets.dims.size() != 1 || offsets.type_class != H5T_INTEGER || offsets.type_size != 8 ||
        offsets.dims[0] < 2)
      throw bad("/doc_offsets must be a 1-d u64 dataset of at least 2 entries");
    // Every document holds at least its <eos>: at most one offset per token, plus the first.
    if (offsets.dims[0] - 1 > static_cast<uint64_t>(info.num_tokens))
      throw bad(cat("/doc_offsets declares ", offsets.dims[0] - 1, " documents for ",
                    info.num_tokens, " tokens; expected at most one document per token"));
    info.num_docs = static_cast<int64_t>(offsets.dims[0]) - 1;
    const std::vector<uint64_t> off =
        f.read_all<uint64_t>("/doc_offsets", static_cast<uint64_t>(info.num_tokens) + 1);
    if (off.front() != 0 || off.back() != static_cast<uint64_t>(info.num_tokens))
      throw bad(cat("/doc_offsets must run from 0 to the token count ", info.num_tokens,
                    ", it runs from ", off.front(), " to ", off.back()));
    for (size_t i = 1; i < off.size(); ++i)
      if (off[i] < off[i - 1]) throw bad(cat("/doc_offsets decreases at document ", i - 1));
    if (info.num_tokens < 2) throw bad("the corpus holds fewer than 2 tokens");
  } catch (const h5::Error& e) {
    throw bad(cat(e.what(), " (", kHowToMake, ")"));
  }
  return c;
}

void Corpus::read_tokens(int64_t start, int64_t count, int32_t* out) const {
  RT_CHECK(start >= 0 && count >= 0 && start + count <= info_.num_tokens, "token range [", start,
           ", ", start + count, ") outside a corpus of ", info_.num_tokens);
  try {
    impl_->file.read<int32_t>("/tokens", out, static_cast<uint64_t>(start),
                              static_cast<uint64_t>(count));
  } catch (const h5::Error& e) {
    throw UserError(cat(info_.path, ": ", e.what()));
  }
  for (int64_t i = 0; i < count; ++i)
    if (out[i] < 0 || out[i] >= info_.vocab_size)
      throw UserError(cat(info_.path, ": token ", out[i], " at position ", start + i,
                          " is outside vocab_size ", info_.vocab_size, " (corrupt corpus?)"));
}

std::vector<uint64_t> Corpus::doc_offsets() const {
  try {
    return impl_->file.read_all<uint64_t>("/doc_offsets",
                                          static_cast<uint64_t>(info_.num_docs) + 1);
  } catch (const h5::Error& e) {
    throw UserError(cat(info_.path, ": ", e.what()));
  }
}

void Fingerprint::add_bytes(const void* data, size_t n) { h_ = fnv1a64(data, n, h_); }

std::string Fingerprint::str() const {
  char buf[40];
  std::snprintf(buf, sizeof buf, "fnv1a64:%016llx", static_cast<unsigned long long>(h_));
  return buf;
}

namespace {

bool is_jsonl_name(const std::string& path) {
  for (const char* ext : {".jsonl", ".ndjson"}) {
    const size_t n = std::strlen(ext);
    if (path.size() >= n && path.compare(path.size() - n, n, ext) == 0) return true;
  }
  return false;
}

}  // namespace

struct CorpusWriter::Impl {
  std::string out, tmp;
  TokenizerInfo tokenizer;
  h5::File file;
  bool wide = false;  // u32 tokens: a vocabulary over 2^16
  std::vector<uint16_t> buf;
  std::vector<uint32_t> buf32;
  std::vector<uint64_t> offsets{0};
  Fingerprint fp;
  int64_t count = 0, documents = 0;
  bool finished = false;

  void flush() {
    if (wide)
      file.append("/tokens", buf32.data(), buf32.size());
    else
      file.append("/tokens", buf.data(), buf.size());
    buf.clear();
    buf32.clear();
  }
};

CorpusWriter::CorpusWriter(const std::string& out_path, const TokenizerInfo& tokenizer)
    : impl_(new Impl) {
  impl_->out = out_path;
  impl_->tmp = out_path + ".tmp";
  impl_->tokenizer = tokenizer;
  impl_->wide = tokenizer.vocab_size > 65536;
  try {
    impl_->file = h5::File::create(impl_->tmp);
    if (impl_->wide)
      impl_->file.create_appendable<uint32_t>("/tokens", kTokenChunk);
    else
      impl_->file.create_appendable<uint16_t>("/tokens", kTokenChunk);
  } catch (const h5::Error& e) {
    delete impl_;
    throw UserError(
        cat("--out ", out_path, ": cannot create ", out_path, ".tmp: ", std::strerror(errno)));
  }
}

CorpusWriter::~CorpusWriter() {
  if (!impl_->finished) {
    impl_->file = h5::File();
    std::remove(impl_->tmp.c_str());
  }
  delete impl_;
}

void CorpusWriter::add(const std::vector<int32_t>& document) {
  for (int32_t t : document) {
    RT_CHECK(t >= 0 && t < impl_->tokenizer.vocab_size, "token ", t, " past the vocabulary");
    const uint32_t wide = static_cast<uint32_t>(t);
    if (impl_->wide)
      impl_->buf32.push_back(wide);
    else
      impl_->buf.push_back(static_cast<uint16_t>(t));
    impl_->fp.add_bytes(&wide, sizeof wide);
  }
  impl_->count += static_cast<int64_t>(document.size());
  impl_->offsets.push_back(static_cast<uint64_t>(impl_->count));
  ++impl_->documents;
  if (impl_->buf.size() + impl_->buf32.size() >= kTokenChunk) impl_->flush();
}

int64_t CorpusWriter::documents() const { return impl_->documents; }

ImportStats CorpusWriter::finish() {
  if (impl_->documents == 0) throw UserError("the input holds no non-empty document");
  Impl& w = *impl_;
  w.flush();
  w.file.write_vector("/doc_offsets", w.offsets);
  for (uint64_t o : w.offsets) w.fp.add_bytes(&o, sizeof o);
  ImportStats stats;
  stats.documents = w.documents;
  stats.tokens = w.count;
  stats.fingerprint = w.fp.str();
  w.file.set_attr("/", "format", std::string(kCorpusFormat));
  w.file.set_attr("/", "version", kCorpusVersion);
  w.file.set_attr("/", "vocab_size", w.tokenizer.vocab_size);
  w.file.set_attr("/", "eos_id", w.tokenizer.eos_id);
  w.file.set_attr("/", "tokenizer", w.tokenizer.name);
  w.file.set_attr("/", "fingerprint", stats.fingerprint);
  w.file.close();
  if (std::rename(w.tmp.c_str(), w.out.c_str()) != 0)
    throw UserError(cat("--out ", w.out, ": cannot rename ", w.tmp, ": ", std::strerror(errno)));
  w.finished = true;
  return stats;
}

namespace {

// Inputs that would import as garbage or as nothing: a directory, a compressed file (whose
// bytes would become a "document" of binary noise).
void refuse_unreadable_input(const std::string& path) {
  if (std::filesystem::is_directory(path))
    throw UserError(
        cat(path, ": is a directory; expected text or JSONL files (e.g. ", path, "/*.jsonl)"));
  std::ifstream in(path, std::ios::binary);
  unsigned char magic[4] = {0, 0, 0, 0};
  in.read(reinterpret_cast<char*>(magic), 4);
  const bool gzip = in.gcount() >= 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  const bool zstd = in.gcount() == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f &&
                    magic[3] == 0xfd;
  const bool bzip2 = in.gcount() >= 3 && magic[0] == 'B' && magic[1] == 'Z' && magic[2] == 'h';
  const bool xz =
      in.gcount() >= 4 && magic[0] == 0xfd && magic[1] == '7' && magic[2] == 'z' && magic[3] == 'X';
  if (gzip || zstd || bzip2 || xz)
    throw UserError(cat(path, ": is ",
                        gzip    ? "gzip"
                        : zstd  ? "zstd"
                        : bzip2 ? "bzip2"
                                : "xz",
                        "-compressed; expected plain text or JSONL: decompress it first (e.g. ",
                        gzip    ? "gunzip -k "
                        : zstd  ? "zstd -d "
                        : bzip2 ? "bunzip2 -k "
                                : "unxz -k ",
                        path, ")"));
}

}  // namespace

ImportStats import_corpus(const std::vector<std::string>& files, const std::string& out_path,
                          ImportFormat format, const TextTokenizer& tokenizer) {
  if (files.empty())
    throw UserError("data import: no input files; expected FILE... after the options");
  CorpusWriter writer(out_path, tokenizer.info());
  int64_t empty = 0;
  std::vector<int32_t> doc;
  auto add_document = [&](std::string_view text) {
    if (text.empty()) {
      ++empty;
      return;
    }
    doc.clear();
    tokenizer.encode(text, doc);
    doc.push_back(static_cast<int32_t>(tokenizer.info().eos_id));
    writer.add(doc);
  };
  for (const std::string& path : files) {
    refuse_unreadable_input(path);
    std::ifstream in(path, std::ios::binary);
    if (!in) throw UserError(cat(path, ": cannot read input file: ", std::strerror(errno)));
    const bool jsonl =
        format == ImportFormat::Jsonl || (format == ImportFormat::Auto && is_jsonl_name(path));
    if (!jsonl) {
      std::ostringstream s;
      s << in.rdbuf();
      add_document(s.str());
      continue;
    }
    std::string line, error;
    for (int64_t lineno = 1; std::getline(in, line); ++lineno) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      auto text = jsonl_text_field(line, error);
      if (!text)
        throw UserError(cat(path, ":", lineno, ": ", error,
                            "; expected one JSON object per line with a \"text\" string"));
      add_document(*text);
    }
  }
  if (writer.documents() == 0)
    throw UserError("data import: the input files hold no non-empty document");
  ImportStats stats = writer.finish();
  stats.empty_skipped = empty;
  return stats;
}

}  // namespace rt
