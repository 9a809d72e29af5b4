//===- CheckpointTest.cpp - Tests of the safetensors reader ---------------===//

#include "TestUtil.h"

#include "dsv3/Model/Checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

using namespace dsv3;
using namespace dsv3::test;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

namespace {

std::string bytesOf(std::initializer_list<int> values) {
  std::string s;
  for (int v : values)
    s.push_back(static_cast<char>(v));
  return s;
}

/// Opens `path` expecting failure; returns the error.
std::string openError(const std::string &path) {
  CheckpointOpenResult r = Checkpoint::open(path);
  EXPECT_FALSE(r) << "unexpectedly opened " << path;
  EXPECT_EQ(r.error.find('\n'), std::string::npos) << "one line expected";
  return r.error;
}

/// A file with header `header` (verbatim) and `dataBytes` zero bytes; returns
/// the error of opening it.
std::string headerError(const TempDir &dir, const std::string &header,
                        size_t dataBytes = 0) {
  std::string path =
      dir.write("model.safetensors",
                rawSafetensors(header, std::string(dataBytes, '\0')));
  return openError(path);
}

//===----------------------------------------------------------------------===//
// Reading
//===----------------------------------------------------------------------===//

TEST(DType, NamesAndSizes) {
  EXPECT_STREQ(dtypeName(DType::F8E4M3), "F8_E4M3");
  EXPECT_EQ(dtypeSize(DType::F8E4M3), 1u);
  EXPECT_EQ(dtypeSize(DType::BF16), 2u);
  EXPECT_EQ(dtypeSize(DType::F32), 4u);
  EXPECT_EQ(dtypeSize(DType::I64), 8u);
  EXPECT_EQ(parseDType("BF16"), DType::BF16);
  EXPECT_EQ(parseDType("BOOL"), DType::Bool);
  EXPECT_FALSE(parseDType("bf16").has_value());
  EXPECT_FALSE(parseDType("F4").has_value());
  EXPECT_TRUE(isFloatWeightDType(DType::F16));
  EXPECT_FALSE(isFloatWeightDType(DType::F8E4M3));
}

TEST(Checkpoint, ReadsSingleFile) {
  TempDir dir;
  std::string f32 = bytesOf({0, 0, 128, 63, 0, 0, 0,   64, 0, 0, 64,  64,
                             0, 0, 128, 64, 0, 0, 160, 64, 0, 0, 192, 64});
  std::string path =
      dir.write("model.safetensors",
                safetensorsBytes(
                    {{"z.weight", "F32", {2, 3}, f32},
                     {"a.norm", "BF16", {4}, bytesOf({1, 2, 3, 4, 5, 6, 7, 8})},
                     {"m.fp8", "F8_E4M3", {2, 2}, bytesOf({9, 10, 11, 12})},
                     {"empty", "F32", {0, 5}, ""}},
                    {{"format", "pt"}, {"note", "x"}}));
  CheckpointOpenResult r = Checkpoint::open(dir.path());
  ASSERT_TRUE(r) << r.error;
  const Checkpoint &ckpt = *r.checkpoint;
  EXPECT_EQ(ckpt.path(), dir.path());
  ASSERT_EQ(ckpt.tensors().size(), 4u);
  // Sorted by name.
  EXPECT_EQ(ckpt.tensors()[0].name, "a.norm");
  EXPECT_EQ(ckpt.tensors()[3].name, "z.weight");

  const TensorInfo *w = ckpt.find("z.weight");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->dtype, DType::F32);
  EXPECT_THAT(w->shape, ElementsAre(2, 3));
  EXPECT_EQ(w->numElements(), 6);
  EXPECT_EQ(w->numBytes, 24u);
  EXPECT_EQ(w->file, path);
  float values[6];
  std::memcpy(values, w->data, sizeof(values));
  EXPECT_EQ(values[0], 1.0f);
  EXPECT_EQ(values[5], 6.0f);

  const TensorInfo *n = ckpt.find("a.norm");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->dtype, DType::BF16);
  EXPECT_EQ(std::string(reinterpret_cast<const char *>(n->data), n->numBytes),
            bytesOf({1, 2, 3, 4, 5, 6, 7, 8}));
  const TensorInfo *q = ckpt.find("m.fp8");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->dtype, DType::F8E4M3);
  EXPECT_EQ(q->data[3], 12);
  const TensorInfo *e = ckpt.find("empty");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->numBytes, 0u);
  EXPECT_EQ(e->numElements(), 0);

  EXPECT_EQ(ckpt.find("nope"), nullptr);
  ASSERT_EQ(ckpt.files().size(), 1u);
  EXPECT_EQ(ckpt.files()[0].path, path);
  EXPECT_EQ(ckpt.files()[0].metadata.at("format"), "pt");
  EXPECT_EQ(ckpt.files()[0].metadata.at("note"), "x");
}

TEST(Checkpoint, OpensFilePathAndOnlySafetensorsInDirectory) {
  TempDir dir;
  std::string path = dir.write("weights.safetensors",
                               safetensorsBytes({{"t", "BF16", {2}, ""}}));
  CheckpointOpenResult byDir = Checkpoint::open(dir.path());
  ASSERT_TRUE(byDir) << byDir.error;
  EXPECT_EQ(byDir.checkpoint->find("t")->file, path);
  CheckpointOpenResult byFile = Checkpoint::open(path);
  ASSERT_TRUE(byFile) << byFile.error;
  EXPECT_NE(byFile.checkpoint->find("t"), nullptr);
}

TEST(Checkpoint, HeaderWithoutTensorsOrMetadata) {
  TempDir dir;
  dir.write("model.safetensors", rawSafetensors("{}      "));
  CheckpointOpenResult r = Checkpoint::open(dir.path());
  ASSERT_TRUE(r) << r.error;
  EXPECT_TRUE(r.checkpoint->tensors().empty());
}

TEST(Checkpoint, GapsBetweenTensorsAreAccepted) {
  TempDir dir;
  dir.write(
      "model.safetensors",
      rawSafetensors(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                     R"("b":{"dtype":"U8","shape":[2],"data_offsets":[6,8]}})",
                     "abcdefghXX"));
  CheckpointOpenResult r = Checkpoint::open(dir.path());
  ASSERT_TRUE(r) << r.error;
  EXPECT_EQ(r.checkpoint->find("b")->data[0], 'g');
}

TEST(Checkpoint, ReadsShardedCheckpoint) {
  TempDir dir;
  dir.write("model-00001-of-00002.safetensors",
            safetensorsBytes({{"a", "F32", {2}, ""},
                              {"b", "BF16", {3}, bytesOf({1, 2, 3, 4, 5, 6})},
                              // Present but not in weight_map: not exposed.
                              {"stray", "U8", {1}, ""}}));
  std::string second =
      dir.write("model-00002-of-00002.safetensors",
                safetensorsBytes({{"c", "F8_E4M3", {4, 2}, ""}}));
  std::string index = dir.write("model.safetensors.index.json", R"({
    "metadata": {"total_size": 22},
    "weight_map": {"a": "model-00001-of-00002.safetensors",
                   "b": "model-00001-of-00002.safetensors",
                   "c": "model-00002-of-00002.safetensors"}})");
  for (const std::string &path : {dir.path(), index}) {
    CheckpointOpenResult r = Checkpoint::open(path);
    ASSERT_TRUE(r) << r.error;
    const Checkpoint &ckpt = *r.checkpoint;
    ASSERT_EQ(ckpt.tensors().size(), 3u);
    EXPECT_EQ(ckpt.find("stray"), nullptr);
    EXPECT_EQ(ckpt.files().size(), 2u);
    const TensorInfo *c = ckpt.find("c");
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->file, second);
    EXPECT_EQ(c->dtype, DType::F8E4M3);
    EXPECT_THAT(c->shape, ElementsAre(4, 2));
    EXPECT_EQ(ckpt.find("b")->data[5], 6);
  }
}

TEST(Checkpoint, MoveKeepsMappingsAlive) {
  TempDir dir;
  dir.write("model.safetensors",
            safetensorsBytes({{"t", "U8", {3}, bytesOf({7, 8, 9})}}));
  CheckpointOpenResult r = Checkpoint::open(dir.path());
  ASSERT_TRUE(r) << r.error;
  Checkpoint moved = std::move(*r.checkpoint);
  r.checkpoint.reset(); // destroys the moved-from object: must not unmap
  ASSERT_NE(moved.find("t"), nullptr);
  EXPECT_EQ(moved.find("t")->data[2], 9);

  TempDir other;
  other.write("model.safetensors",
              safetensorsBytes({{"u", "U8", {1}, bytesOf({5})}}));
  CheckpointOpenResult r2 = Checkpoint::open(other.path());
  ASSERT_TRUE(r2) << r2.error;
  moved = std::move(*r2.checkpoint); // unmaps the first file
  EXPECT_EQ(moved.find("t"), nullptr);
  EXPECT_EQ(moved.find("u")->data[0], 5);
}

//===----------------------------------------------------------------------===//
// File-level errors
//===----------------------------------------------------------------------===//

TEST(CheckpointError, TruncatedFile) {
  TempDir dir;
  std::string path = dir.write("model.safetensors", "12345");
  EXPECT_EQ(openError(dir.path()),
            path + ": file is 5 bytes, too short for the 8-byte header length");
}

TEST(CheckpointError, HeaderLengthPastEnd) {
  TempDir dir;
  std::string path =
      dir.write("model.safetensors", littleEndian64(1000) + "{}");
  EXPECT_EQ(openError(dir.path()),
            path + ": header length 1000 runs past the end of the file (2 "
                   "bytes follow the 8-byte length)");
}

TEST(CheckpointError, HeaderOverCap) {
  TempDir dir;
  std::string path =
      dir.write("model.safetensors", littleEndian64(100000001) + "{}");
  EXPECT_EQ(openError(dir.path()),
            path + ": header length 100000001 exceeds the limit of 100000000 "
                   "bytes");
  dir.write("model.safetensors", littleEndian64(~0ull) + "{}");
  EXPECT_THAT(openError(dir.path()), HasSubstr("exceeds the limit"));
}

TEST(CheckpointError, NonObjectHeader) {
  TempDir dir;
  EXPECT_EQ(headerError(dir, "[1, 2]"),
            dir.file("model.safetensors") +
                ": header must be a JSON object starting with '{'");
  EXPECT_THAT(headerError(dir, " {}"), HasSubstr("starting with '{'"));
  EXPECT_THAT(headerError(dir, ""), HasSubstr("starting with '{'"));
}

TEST(CheckpointError, InvalidJsonHeader) {
  TempDir dir;
  EXPECT_THAT(headerError(dir, R"({"a": })"),
              StartsWith(dir.file("model.safetensors") +
                         ": header is not valid JSON: parse error at line 1"));
  // Padding with anything but whitespace is not JSON.
  EXPECT_THAT(headerError(dir, std::string("{}\0\0", 4)),
              HasSubstr("header is not valid JSON"));
}

TEST(CheckpointError, BadMetadata) {
  TempDir dir;
  EXPECT_EQ(headerError(dir, R"({"__metadata__": {"format": 1}})"),
            dir.file("model.safetensors") +
                ": __metadata__ entry 'format' must be a string, got an "
                "integer");
  EXPECT_THAT(headerError(dir, R"({"__metadata__": []})"),
              HasSubstr("__metadata__ must be an object of strings"));
}

TEST(CheckpointError, NoSafetensorsInDirectory) {
  TempDir dir;
  EXPECT_THAT(openError(dir.path()),
              HasSubstr("no model.safetensors.index.json and no "
                        "*.safetensors file"));
  dir.write("a.safetensors", safetensorsBytes({}));
  dir.write("b.safetensors", safetensorsBytes({}));
  EXPECT_THAT(openError(dir.path()), HasSubstr("2 *.safetensors files but no "
                                               "model.safetensors.index.json"));
  EXPECT_THAT(openError(dir.file("missing.safetensors")),
              HasSubstr("missing.safetensors: cannot open"));
}

//===----------------------------------------------------------------------===//
// Tensor-level errors: each names the file and the tensor
//===----------------------------------------------------------------------===//

TEST(CheckpointError, SizeMismatch) {
  TempDir dir;
  EXPECT_EQ(headerError(dir,
                        R"({"model.norm.weight":{"dtype":"BF16","shape":[128],)"
                        R"("data_offsets":[0,10]}})",
                        10),
            dir.file("model.safetensors") +
                ": tensor 'model.norm.weight': data_offsets [0, 10) hold 10 "
                "bytes but BF16 [128] needs 256");
}

TEST(CheckpointError, OffsetsPastDataSection) {
  TempDir dir;
  EXPECT_EQ(headerError(dir,
                        R"({"w":{"dtype":"F32","shape":[4],)"
                        R"("data_offsets":[8,24]}})",
                        20),
            dir.file("model.safetensors") +
                ": tensor 'w': data_offsets [8, 24) run past the end of the "
                "data section (20 bytes)");
}

TEST(CheckpointError, OverlappingRanges) {
  TempDir dir;
  EXPECT_EQ(
      headerError(
          dir,
          R"({"first":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
          R"("second":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
          24),
      dir.file("model.safetensors") +
          ": tensor 'second': data_offsets [8, 24) overlap tensor "
          "'first' at [0, 16)");
  // Containment, listed in the other key order.
  EXPECT_THAT(
      headerError(dir,
                  R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[4,6]},)"
                  R"("b":{"dtype":"U8","shape":[10],"data_offsets":[0,10]}})",
                  10),
      HasSubstr(
          "tensor 'a': data_offsets [4, 6) overlap tensor 'b' at [0, 10)"));
}

TEST(CheckpointError, UnknownDtype) {
  TempDir dir;
  EXPECT_EQ(
      headerError(
          dir, R"({"w":{"dtype":"Q4_K","shape":[4],"data_offsets":[0,4]}})", 4),
      dir.file("model.safetensors") + ": tensor 'w': unknown dtype 'Q4_K'");
}

TEST(CheckpointError, MalformedEntries) {
  TempDir dir;
  std::string file = dir.file("model.safetensors");
  EXPECT_EQ(headerError(dir, R"({"w": 3})"),
            file + ": tensor 'w': expected an object with dtype, shape and "
                   "data_offsets, got an integer");
  EXPECT_EQ(headerError(dir, R"({"w":{"shape":[1],"data_offsets":[0,1]}})", 1),
            file + ": tensor 'w': missing 'dtype'");
  EXPECT_EQ(headerError(dir, R"({"w":{"dtype":"U8","data_offsets":[0,1]}})", 1),
            file + ": tensor 'w': missing 'shape'");
  EXPECT_EQ(headerError(dir, R"({"w":{"dtype":"U8","shape":[1]}})", 1),
            file + ": tensor 'w': missing 'data_offsets'");
  EXPECT_EQ(headerError(dir,
                        R"({"w":{"dtype":5,"shape":[1],"data_offsets":[0,1]}})",
                        1),
            file + ": tensor 'w': 'dtype' must be a string, got an integer");
  EXPECT_EQ(
      headerError(
          dir, R"({"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", 1),
      file + ": tensor 'w': 'shape' must hold non-negative integers, got [-1]");
  EXPECT_EQ(
      headerError(
          dir, R"({"w":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}})", 1),
      file +
          ": tensor 'w': 'shape' must hold non-negative integers, got [1.5]");
  EXPECT_EQ(
      headerError(dir, R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0]}})",
                  1),
      file + ": tensor 'w': 'data_offsets' must be [begin, end] with "
             "non-negative integers, got [0]");
  EXPECT_EQ(
      headerError(
          dir, R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[1,0]}})", 1),
      file + ": tensor 'w': data_offsets [1, 0) end before they begin");
  EXPECT_THAT(
      headerError(dir, R"({"w":{"dtype":"F64","shape":[4294967296,4294967296],)"
                       R"("data_offsets":[0,0]}})"),
      HasSubstr("tensor 'w': shape [4294967296, 4294967296] is too large"));
}

//===----------------------------------------------------------------------===//
// Index errors
//===----------------------------------------------------------------------===//

TEST(CheckpointError, IndexPointsAtMissingShard) {
  TempDir dir;
  std::string index = dir.write(
      "model.safetensors.index.json",
      R"({"weight_map": {"model.norm.weight": "model-00009-of-00009.safetensors"}})");
  std::string e = openError(dir.path());
  EXPECT_THAT(e, StartsWith(index + ": tensor 'model.norm.weight': shard "
                                    "'model-00009-of-00009.safetensors' "
                                    "cannot be opened ("));
  EXPECT_THAT(e, HasSubstr("No such file or directory"));
}

TEST(CheckpointError, TensorMissingFromNamedShard) {
  TempDir dir;
  dir.write("s1.safetensors", safetensorsBytes({{"a", "F32", {1}, ""}}));
  dir.write("s2.safetensors", safetensorsBytes({{"b", "F32", {1}, ""}}));
  std::string index = dir.write("model.safetensors.index.json",
                                R"({"weight_map": {"a": "s1.safetensors",
                                                   "b": "s1.safetensors"}})");
  EXPECT_EQ(openError(dir.path()),
            index + ": tensor 'b': weight_map names shard 's1.safetensors', "
                    "which does not contain it");
}

TEST(CheckpointError, InvalidShardIsReportedWithItsName) {
  TempDir dir;
  std::string shard = dir.write("s1.safetensors", "tiny");
  dir.write("model.safetensors.index.json",
            R"({"weight_map": {"a": "s1.safetensors"}})");
  EXPECT_THAT(openError(dir.path()), StartsWith(shard + ": file is 4 bytes"));
}

TEST(CheckpointError, MalformedIndex) {
  TempDir dir;
  std::string index = dir.file("model.safetensors.index.json");
  dir.write("model.safetensors.index.json", "{");
  EXPECT_THAT(openError(dir.path()), StartsWith(index + ": invalid JSON: "));
  dir.write("model.safetensors.index.json", "[]");
  EXPECT_EQ(openError(dir.path()),
            index + ": top level must be a JSON object, got an array");
  dir.write("model.safetensors.index.json", R"({"metadata": {}})");
  EXPECT_EQ(openError(dir.path()), index + ": missing 'weight_map'");
  dir.write("model.safetensors.index.json", R"({"weight_map": {"a": 3}})");
  EXPECT_EQ(openError(dir.path()),
            index + ": tensor 'a': weight_map value must be a shard file "
                    "name, got an integer");
  dir.write("model.safetensors.index.json",
            R"({"weight_map": {"a": "../elsewhere.safetensors"}})");
  EXPECT_EQ(openError(dir.path()),
            index + ": tensor 'a': shard '../elsewhere.safetensors' must be a "
                    "relative path inside the checkpoint directory");
}

//===----------------------------------------------------------------------===//
// Robustness: damaged files give errors, never crashes
//===----------------------------------------------------------------------===//

TEST(CheckpointError, DamagedFilesNeverCrash) {
  TempDir dir;
  std::string good = safetensorsBytes({{"a", "F32", {2, 2}, ""},
                                       {"b", "BF16", {3}, ""},
                                       {"c", "F8_E4M3", {5}, ""}});
  int opened = 0;
  // Every truncation.
  for (size_t len = 0; len < good.size(); ++len) {
    dir.write("model.safetensors", good.substr(0, len));
    CheckpointOpenResult r = Checkpoint::open(dir.path());
    EXPECT_FALSE(r) << "truncated to " << len;
    EXPECT_THAT(r.error, HasSubstr("model.safetensors"));
  }
  // Every byte of the length and header replaced by a few values.
  for (size_t pos = 0; pos < good.size() - 26; ++pos) {
    for (char c : {'\0', '"', '9', '}', '\xff'}) {
      std::string bad = good;
      bad[pos] = c;
      dir.write("model.safetensors", bad);
      CheckpointOpenResult r = Checkpoint::open(dir.path());
      if (r) {
        // The byte was unchanged, inside a name or metadata string, or in
        // the data section: the header still describes consistent tensors.
        ++opened;
        for (const TensorInfo &t : r.checkpoint->tensors())
          EXPECT_EQ(t.numBytes,
                    static_cast<size_t>(t.numElements()) * dtypeSize(t.dtype));
      } else {
        EXPECT_FALSE(r.error.empty());
      }
    }
  }
  EXPECT_GT(opened, 0);
}

} // namespace
