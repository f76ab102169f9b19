// The exit-code promise on the input paths an outside tester broke (issue 12), through the real
// binary: every bad input is one line on stderr and exit code 2 (3 for non-finite values), and
// no checkpoint ever holds a non-finite value.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "data/corpus.h"
#include "data/decompose.h"
#include "data/h5.h"
#include "tests/trainer/process.h"

namespace rt {
namespace {

namespace fs = std::filesystem;
using testing::run_ringtrain;

class Robustness : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ringtrain-robust-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string write(const std::string& name, const std::string& content) const {
    std::ofstream(path(name), std::ios::binary) << content;
    return path(name);
  }
  fs::path dir_;
};

// A corpus, a recipe of `pattern`, and a run of it that leaves a checkpoint after step 2.
class TrainRobustness : public Robustness {
 protected:
  void SetUp() override {
    Robustness::SetUp();
    std::string text;
    for (int i = 0; i < 300; ++i)
      text += "the quick brown fox " + std::to_string(i % 17) + " jumps.\n";
    const testing::Outcome imported =
        run_ringtrain({"data", "import", "--out", path("c.h5"), write("t.txt", text)});
    ASSERT_EQ(imported.code, 0) << imported.err;
    write("r.yaml", "run: {name: r, out_dir: " + path("run") +
                        "}\n"
                        "model: {pattern: \"*-*-*-*-\", d_model: 32, heads: 2}\n"
                        "data: {corpus: " +
                        path("c.h5") +
                        ", seq_len: 32}\n"
                        "train: {steps: 4, tokens_per_step: 256}\n"
                        "log: {peak_gflops: 100}\n");
  }
  testing::Outcome train(std::vector<std::string> extra) {
    std::vector<std::string> args = {"train", path("r.yaml")};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_ringtrain(args);
  }
  std::string checkpoint_after_two() {
    const testing::Outcome o = train({"--stop-at=2"});
    EXPECT_EQ(o.code, 0) << o.err;
    return path("run/checkpoints/step-0000002.h5");
  }
};

TEST_F(TrainRobustness, ACheckpointOfAnotherModelIsRefused) {
  checkpoint_after_two();
  // 8 layers into 4: the first tensor the recipe's model lacks, with its shape.
  EXPECT_ONE_LINE_ERROR(
      train({"--resume", "--set", "model.pattern=*-"}), 2,
      "holds parameter 'layers.2.attn.wk' [32, 32] that the recipe's model does not have");
  // 8 layers where 10 are needed: the first missing one.
  EXPECT_ONE_LINE_ERROR(
      train({"--resume", "--set", "model.pattern=*-*-*-*-*-"}), 2,
      "has no parameter 'layers.8.norm.weight' [32] that the recipe's model needs");
  // Another width: both shapes.
  EXPECT_ONE_LINE_ERROR(
      train({"--resume", "--set", "model.d_model=48", "--set", "model.heads=3"}), 2,
      "parameter 'embed.weight' has shape [258, 32], the recipe's model expects [258, 48]");
  // The same model resumes.
  EXPECT_EQ(train({"--resume"}).code, 0);
}

TEST_F(TrainRobustness, CorruptCheckpointAttributesAreRefused) {
  const std::string ckpt = checkpoint_after_two();
  const std::string copy = path("bad.h5");
  auto with = [&](const std::string& object, const std::string& name, auto value) {
    fs::copy_file(ckpt, copy, fs::copy_options::overwrite_existing);
    h5::File f = h5::File::open_write(copy);
    f.set_attr(object, name, value);
    f.close();
    return train({"--resume=" + copy});
  };
  EXPECT_ONE_LINE_ERROR(with("/", "step", int64_t(-5)), 2,
                        "corrupt checkpoint: attribute step is -5; expected 0 to 2^62");
  EXPECT_ONE_LINE_ERROR(with("/", "tokens_seen", int64_t(-1)), 2, "attribute tokens_seen is -1");
  EXPECT_ONE_LINE_ERROR(with("/", "sp", int64_t(3)), 2,
                        "attribute sp is 3; expected a power of two");
  EXPECT_ONE_LINE_ERROR(with("/", "dp", int64_t(0)), 2, "attribute dp is 0");
  EXPECT_ONE_LINE_ERROR(with("/data", "mode", std::string("shuffled")), 2,
                        "attribute /data/mode is 'shuffled'");
  EXPECT_ONE_LINE_ERROR(with("/data", "step", int64_t(7)), 2,
                        "the data cursor /data/step 7 differs from step 2");
  EXPECT_ONE_LINE_ERROR(with("/", "step", std::string("two")), 2,
                        "attribute step is not an integer");
  EXPECT_ONE_LINE_ERROR(run_ringtrain({"inspect", copy}), 2, "attribute step is not an integer");
}

TEST_F(TrainRobustness, AModelThatDoesNotFitIsRefusedBeforeAllocating) {
  const testing::Outcome o = train({"--set", "model.d_model=10000000", "--set", "model.heads=1"});
  EXPECT_ONE_LINE_ERROR(o, 2, "r.yaml: the plan needs ~");
  EXPECT_NE(o.err.find("(parameters, gradients and AdamW state "), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("of host memory per rank"), std::string::npos) << o.err;
  // The dry run says so and succeeds (a plan for another machine).
  const testing::Outcome dry =
      train({"--set", "model.d_model=10000000", "--set", "model.heads=1", "--dry-run"});
  EXPECT_EQ(dry.code, 0) << dry.err;
  EXPECT_NE(dry.out.find("warning: " + path("r.yaml") + ": the plan needs"), std::string::npos)
      << dry.out;
  EXPECT_NE(train({"--dry-run"}).out.find("memory check: ~"), std::string::npos);
}

TEST_F(TrainRobustness, AnUpdateThatOverflowsStopsBeforeAnyCheckpoint) {
  // lr 1e39 is infinite in f32: the loss and gradients of step 1 are finite, its update is not.
  const testing::Outcome o = train({"--set", "optim.lr=1e39", "--set", "checkpoint.every=1"});
  EXPECT_ONE_LINE_ERROR(
      o, 3,
      "step 1: after the update (lr 1e+39) parameter 'embed.weight' holds a non-finite value");
  EXPECT_FALSE(fs::exists(path("run/checkpoints")));
}

TEST_F(TrainRobustness, ANonFiniteMomentInACheckpointIsNeverCarriedOn) {
  const std::string ckpt = checkpoint_after_two();
  {
    h5::File f = h5::File::open_write(ckpt);
    const std::string m = "/optim/layers.1.mlp.w_down/m";
    std::vector<float> values = f.read_all<float>(m);
    values[5] = std::nanf("");
    f.remove(m);
    f.write(m, values.data(), f.info("/params/layers.1.mlp.w_down").dims);
  }
  const testing::Outcome o = train({"--resume"});
  EXPECT_ONE_LINE_ERROR(o, 3,
                        "step-0000002.h5: /optim/layers.1.mlp.w_down/m holds a non-finite value");
  // Nothing was written after it: latest still names step 2, no step 3 or 4.
  std::ifstream latest(path("run/checkpoints/latest"));
  std::string name;
  std::getline(latest, name);
  EXPECT_EQ(name, "step-0000002.h5");
  EXPECT_FALSE(fs::exists(path("run/checkpoints/step-0000003.h5")));
}

TEST_F(TrainRobustness, EmptyOrOutOfRangeBucketsAreACorpusError) {
  // Documents of 26 tokens (25 pairs) and buckets from 2^5 up: every bucket is empty.
  std::string text;
  for (int i = 0; i < 40; ++i)
    text += "{\"text\": \"short document number " + std::to_string(100 + i) + "\"}\n";
  ASSERT_EQ(
      run_ringtrain({"data", "import", "--out", path("short.h5"), write("s.jsonl", text)}).code, 0);
  // data decompose refuses to write buckets that would all be empty...
  EXPECT_ONE_LINE_ERROR(
      run_ringtrain({"data", "decompose", path("short.h5"), "--min-len", "32", "--max-len", "64"}),
      2, "its longest document has 26 tokens, fewer than --min-len 32 + 1");
  // ...and the trainer refuses such buckets where another tool wrote them.
  {
    const std::vector<uint64_t> offsets = Corpus::open(path("short.h5"), "test").doc_offsets();
    write_buckets(path("short.h5"), decompose_documents(offsets, 5, 6));
  }
  EXPECT_ONE_LINE_ERROR(
      train({"--set", "data.corpus=" + path("short.h5"), "--set", "data.mode=decomposed"}), 2,
      "data.corpus: " + path("short.h5") + ": every bucket 2^5..2^6 is empty");
  // A start beyond the tokens (a corrupt or foreign index).
  {
    h5::File f = h5::File::open_write(path("short.h5"));
    f.remove("/buckets/5/starts");
    const std::vector<uint64_t> starts = {1000000};
    f.write_vector("/buckets/5/starts", starts);
  }
  EXPECT_ONE_LINE_ERROR(
      train({"--set", "data.corpus=" + path("short.h5"), "--set", "data.mode=decomposed"}), 2,
      "/buckets/5/starts[0] = 1000000 starts a sequence of 33 tokens beyond the corpus's");
}

// Grows a chunked dataset's extent to `extent` without writing: the file stays small and
// claims 2^60 values (what a corrupt or hostile file can do).
void lie_about_extent(const std::string& file, const std::string& dataset, hsize_t extent) {
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  const hid_t d = H5Dopen2(f, dataset.c_str(), H5P_DEFAULT);
  ASSERT_GE(d, 0);
  EXPECT_GE(H5Dset_extent(d, &extent), 0);
  H5Dclose(d);
  H5Fclose(f);
}

// A chunked, unlimited 1-d dataset (as data import writes /tokens).
void write_chunked(const std::string& file, const std::string& dataset,
                   const std::vector<uint64_t>& values) {
  h5::File f = h5::File::open_write(file);
  f.remove(dataset);
  f.create_appendable<uint64_t>(dataset, 16);
  f.append(dataset, values.data(), values.size());
}

TEST_F(TrainRobustness, AFileThatLiesAboutItsSizesIsRefusedBeforeAllocating) {
  // /doc_offsets claiming 2^60 entries: it was read whole (2^63 bytes).
  fs::copy_file(path("c.h5"), path("offsets.h5"));
  {
    const std::vector<uint64_t> offsets =
        h5::File::open_read(path("c.h5")).read_all<uint64_t>("/doc_offsets");
    write_chunked(path("offsets.h5"), "/doc_offsets", offsets);
  }
  lie_about_extent(path("offsets.h5"), "/doc_offsets", hsize_t(1) << 60);
  EXPECT_ONE_LINE_ERROR(train({"--set", "data.corpus=" + path("offsets.h5")}), 2,
                        "/doc_offsets declares 1152921504606846975 documents for");
  // /tokens claiming 2^60 tokens (and offsets that agree): the tokens are not in the file.
  fs::copy_file(path("c.h5"), path("tokens.h5"));
  write_chunked(path("tokens.h5"), "/doc_offsets", {0, uint64_t(1) << 60});
  lie_about_extent(path("tokens.h5"), "/tokens", hsize_t(1) << 60);
  EXPECT_ONE_LINE_ERROR(train({"--set", "data.corpus=" + path("tokens.h5")}), 2,
                        "/tokens declares 1152921504606846976 values (");
  EXPECT_ONE_LINE_ERROR(
      run_ringtrain({"data", "decompose", path("tokens.h5"), "--min-len", "32", "--max-len", "64"}),
      2, "but the file stores");
  // An op input of 2^30 x 8 floats.
  {
    h5::File f = h5::File::create(path("op.h5"));
    hsize_t dims[2] = {16, 8}, max[2] = {H5S_UNLIMITED, 8}, chunk[2] = {16, 8};
    const hid_t space = H5Screate_simple(2, dims, max), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 2, chunk);
    f.close();
    const hid_t fid = H5Fopen(path("op.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    const hid_t d = H5Dcreate2(fid, "x", H5T_NATIVE_FLOAT, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    std::vector<float> zeros(16 * 8, 0.0f);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros.data());
    hsize_t huge[2] = {hsize_t(1) << 30, 8};
    H5Dset_extent(d, huge);
    H5Dclose(d);
    H5Sclose(space);
    H5Pclose(dcpl);
    H5Fclose(fid);
  }
  EXPECT_ONE_LINE_ERROR(run_ringtrain({"op", "mlp", "--in", path("op.h5"), "--out", path("o.h5")}),
                        2, "/x declares 8589934592 values");
}

TEST_F(Robustness, JsonlNestedAMillionLevelsIsOneLine) {
  const std::string deep =
      write("deep.jsonl", "{\"text\": \"ok\"}\n{\"a\": " + std::string(1000000, '[') + "\n");
  EXPECT_ONE_LINE_ERROR(run_ringtrain({"data", "import", "--out", path("c.h5"), deep}), 2,
                        "deep.jsonl:2: nested deeper than 256 levels at column 262");
  EXPECT_FALSE(fs::exists(path("c.h5")));
  EXPECT_FALSE(fs::exists(path("c.h5.tmp")));
}

}  // namespace
}  // namespace rt
