//===- AdversarialTest.cpp - Hostile inputs to the Model library ----------===//
//
// The classes of docs/reliability.md that concern config.json, the
// safetensors header and index, the files around them, and the NaN/infinity
// policy for weights. Each case asserts one error line naming what is wrong
// and, by running at all, that nothing crashed, hung or allocated what the
// input claims before it was validated (the tests run under ASan/UBSan in
// scripts/test.sh --sanitize).
//
//===----------------------------------------------------------------------===//

#include "TestConfigs.h"
#include "TestUtil.h"

#include "dsv3/Model/Checkpoint.h"
#include "dsv3/Model/JsonLimits.h"
#include "dsv3/Model/ModelConfig.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <sys/stat.h>
#include <unistd.h>

using namespace dsv3;
using namespace dsv3::test;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::StartsWith;

namespace {

std::string openError(const std::string &path) {
  CheckpointOpenResult r = Checkpoint::open(path);
  EXPECT_FALSE(r) << "unexpectedly opened " << path;
  EXPECT_EQ(r.error.find('\n'), std::string::npos) << r.error;
  return r.error;
}

std::string headerError(const TempDir &dir, const std::string &header,
                        size_t dataBytes = 0) {
  dir.write("model.safetensors",
            rawSafetensors(header, std::string(dataBytes, '\0')));
  return openError(dir.path());
}

std::string with(const std::string &key, json value,
                 const char *base = kConfigTinyV3) {
  return configWith(base, key, std::move(value));
}

std::string nested(size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

//===----------------------------------------------------------------------===//
// Safetensors header
//===----------------------------------------------------------------------===//

TEST(AdversarialSafetensors, HeaderLengthPastFileOr2To63) {
  TempDir dir;
  std::string file = dir.file("model.safetensors");
  dir.write("model.safetensors", littleEndian64(uint64_t(1) << 63) + "{}");
  EXPECT_EQ(openError(dir.path()),
            file + ": header length 9223372036854775808 exceeds the limit of "
                   "100000000 bytes");
  // Under the cap but one byte past the end of the file.
  dir.write("model.safetensors", littleEndian64(3) + "{}");
  EXPECT_EQ(openError(dir.path()),
            file + ": header length 3 runs past the end of the file (2 bytes "
                   "follow the 8-byte length)");
}

TEST(AdversarialSafetensors, ShapeProductsThatOverflow) {
  TempDir dir;
  // 2^32 * 2^32 elements wraps to 0 in 64 bits: with data_offsets [0, 0] a
  // reader that multiplies without checking would accept it.
  EXPECT_THAT(
      headerError(dir, R"({"w":{"dtype":"U8","shape":[4294967296,4294967296],)"
                       R"("data_offsets":[0,0]}})"),
      HasSubstr("tensor 'w': shape [4294967296, 4294967296] is too large"));
  // The element count fits, the byte count does not (2^62 F32 elements).
  EXPECT_THAT(
      headerError(dir, R"({"w":{"dtype":"F32","shape":[4611686018427387904],)"
                       R"("data_offsets":[0,0]}})"),
      HasSubstr("is too large"));
  // A dimension past int64.
  EXPECT_THAT(
      headerError(dir, R"({"w":{"dtype":"U8","shape":[9223372036854775808],)"
                       R"("data_offsets":[0,0]}})"),
      HasSubstr("'shape' must hold non-negative integers"));
  // Many dims of 2: the product overflows only at the 64th.
  std::string dims;
  for (int i = 0; i < 64; ++i)
    dims += (i ? "," : "") + std::string("2");
  EXPECT_THAT(headerError(dir, R"({"w":{"dtype":"U8","shape":[)" + dims +
                                   R"(],"data_offsets":[0,0]}})"),
              HasSubstr("is too large"));
}

TEST(AdversarialSafetensors, OffsetsOutOfRangeReversedOverlapping) {
  TempDir dir;
  std::string file = dir.file("model.safetensors");
  EXPECT_THAT(headerError(dir,
                          R"({"w":{"dtype":"U8","shape":[1],)"
                          R"("data_offsets":[9223372036854775808,)"
                          R"(9223372036854775809]}})",
                          1),
              HasSubstr("'data_offsets' must be [begin, end] with "
                        "non-negative integers"));
  EXPECT_THAT(headerError(dir,
                          R"({"w":{"dtype":"U8","shape":[1],)"
                          R"("data_offsets":[-1,0]}})",
                          1),
              HasSubstr("'data_offsets' must be [begin, end]"));
  EXPECT_EQ(headerError(dir,
                        R"({"w":{"dtype":"U8","shape":[4],)"
                        R"("data_offsets":[1000000,1000004]}})",
                        4),
            file + ": tensor 'w': data_offsets [1000000, 1000004) run past "
                   "the end of the data section (4 bytes)");
  EXPECT_EQ(headerError(dir,
                        R"({"w":{"dtype":"U8","shape":[0],)"
                        R"("data_offsets":[4,0]}})",
                        4),
            file + ": tensor 'w': data_offsets [4, 0) end before they begin");
  // Identical ranges are an overlap too.
  EXPECT_THAT(headerError(dir,
                          R"({"a":{"dtype":"U8","shape":[4],)"
                          R"("data_offsets":[0,4]},)"
                          R"("b":{"dtype":"U8","shape":[4],)"
                          R"("data_offsets":[0,4]}})",
                          4),
              HasSubstr("tensor 'b': data_offsets [0, 4) overlap tensor 'a' "
                        "at [0, 4)"));
}

TEST(AdversarialSafetensors, DuplicateNames) {
  TempDir dir;
  EXPECT_EQ(headerError(dir,
                        R"({"w":{"dtype":"U8","shape":[1],)"
                        R"("data_offsets":[0,1]},)"
                        R"("w":{"dtype":"U8","shape":[2],)"
                        R"("data_offsets":[1,3]}})",
                        3),
            dir.file("model.safetensors") +
                ": header is not valid JSON: duplicate key 'w'");
  // Inside a tensor's entry as well (two dtypes).
  EXPECT_THAT(headerError(dir,
                          R"({"w":{"dtype":"U8","dtype":"F32","shape":[1],)"
                          R"("data_offsets":[0,1]}})",
                          1),
              HasSubstr("duplicate key 'dtype'"));
  // A weight_map cannot name one tensor twice either.
  dir.write("s.safetensors", safetensorsBytes({{"a", "F32", {1}, ""}}));
  dir.write("model.safetensors.index.json",
            R"({"weight_map": {"a": "s.safetensors", "a": "t.safetensors"}})");
  EXPECT_THAT(openError(dir.path()), HasSubstr("duplicate key 'a'"));
}

TEST(AdversarialSafetensors, ControlCharactersInNamesStayOnOneLine) {
  TempDir dir;
  std::string e = headerError(dir, "{\"a\\nb\\u0000c\":{\"dtype\":\"Q\","
                                   "\"shape\":[1],\"data_offsets\":[0,1]}}",
                              1);
  EXPECT_THAT(e, HasSubstr("tensor 'a\\nb\\x00c': unknown dtype 'Q'"));
}

TEST(AdversarialSafetensors, DeeplyNestedJson) {
  TempDir dir;
  // A million levels: would overflow the stack when printed in a message.
  EXPECT_THAT(headerError(dir, "{\"w\":{\"dtype\":\"U8\",\"shape\":" +
                                   nested(1000000) + "}}"),
              HasSubstr("header is not valid JSON: JSON nests deeper than 64 "
                        "levels"));
  dir.write("model.safetensors.index.json",
            "{\"weight_map\":" + nested(100000) + "}");
  EXPECT_THAT(openError(dir.path()), HasSubstr("nests deeper than 64"));
  // 64 levels are fine as far as nesting goes.
  EXPECT_EQ(checkJsonNesting(nested(64)), "");
  EXPECT_NE(checkJsonNesting(nested(65)), "");
  // Brackets inside strings do not count.
  EXPECT_EQ(checkJsonNesting("[\"" + std::string(100, '[') + "\\\"\"]"), "");
}

TEST(AdversarialSafetensors, HugeShapeListIsQuotedShort) {
  TempDir dir;
  std::string dims;
  for (int i = 0; i < 100000; ++i)
    dims += "1,";
  std::string e = headerError(
      dir, R"({"w":{"dtype":"U8","shape":[)" + dims +
               R"(-1],"data_offsets":[0,1]}})",
      1);
  EXPECT_THAT(e, HasSubstr("'shape' must hold non-negative integers, got "));
  EXPECT_LT(e.size(), 400u);
}

//===----------------------------------------------------------------------===//
// Files that are not what they should be
//===----------------------------------------------------------------------===//

TEST(AdversarialFiles, DirectoryWhereAFileShouldBe) {
  TempDir dir;
  ASSERT_EQ(::mkdir(dir.file("model.safetensors").c_str(), 0700), 0);
  EXPECT_EQ(openError(dir.path()),
            dir.file("model.safetensors") + ": not a regular file");
  TempDir sharded;
  ASSERT_EQ(::mkdir(sharded.file("s1.safetensors").c_str(), 0700), 0);
  sharded.write("model.safetensors.index.json",
                R"({"weight_map": {"a": "s1.safetensors"}})");
  EXPECT_EQ(openError(sharded.path()),
            sharded.file("s1.safetensors") + ": not a regular file");
  TempDir index;
  ASSERT_EQ(::mkdir(index.file("model.safetensors.index.json").c_str(), 0700),
            0);
  EXPECT_EQ(openError(index.path()),
            index.file("model.safetensors.index.json") +
                ": not a regular file");
  TempDir config;
  ASSERT_EQ(::mkdir(config.file("config.json").c_str(), 0700), 0);
  ConfigParseResult r = loadModelConfig(config.path());
  EXPECT_EQ(r.error, config.file("config.json") + ": not a regular file");
}

TEST(AdversarialFiles, SymlinkLoops) {
  TempDir dir;
  ASSERT_EQ(::symlink("model.safetensors", dir.file("model.safetensors").c_str()),
            0);
  EXPECT_THAT(openError(dir.path()),
              HasSubstr("Too many levels of symbolic links"));
  TempDir sharded;
  ASSERT_EQ(::symlink("b.safetensors", sharded.file("a.safetensors").c_str()),
            0);
  ASSERT_EQ(::symlink("a.safetensors", sharded.file("b.safetensors").c_str()),
            0);
  sharded.write("model.safetensors.index.json",
                R"({"weight_map": {"x": "a.safetensors"}})");
  EXPECT_THAT(openError(sharded.path()),
              HasSubstr("Too many levels of symbolic links"));
  ASSERT_EQ(::symlink("config.json", sharded.file("config.json").c_str()), 0);
  ConfigParseResult r = loadModelConfig(sharded.path());
  EXPECT_FALSE(r);
  EXPECT_THAT(r.error, HasSubstr("config.json"));
}

TEST(AdversarialFiles, FifosDoNotHang) {
  // Opening a FIFO for reading blocks until a writer appears; every reader
  // must refuse it instead (the test would hang otherwise).
  TempDir dir;
  ASSERT_EQ(::mkfifo(dir.file("model.safetensors").c_str(), 0600), 0);
  EXPECT_EQ(openError(dir.path()),
            dir.file("model.safetensors") + ": not a regular file");
  TempDir index;
  ASSERT_EQ(::mkfifo(index.file("model.safetensors.index.json").c_str(), 0600),
            0);
  EXPECT_THAT(openError(index.path()), HasSubstr("not a regular file"));
  TempDir config;
  ASSERT_EQ(::mkfifo(config.file("config.json").c_str(), 0600), 0);
  EXPECT_THAT(loadModelConfig(config.path()).error,
              HasSubstr("not a regular file"));
}

//===----------------------------------------------------------------------===//
// config.json
//===----------------------------------------------------------------------===//

TEST(AdversarialConfig, EverySizeZeroNegativeHugeWrongTypeNull) {
  const char *sizes[] = {"vocab_size",        "hidden_size",
                         "intermediate_size", "num_hidden_layers",
                         "num_attention_heads", "kv_lora_rank",
                         "qk_nope_head_dim",  "qk_rope_head_dim",
                         "v_head_dim",        "moe_intermediate_size",
                         "num_experts_per_tok"};
  std::vector<json> values = {0,
                              -1,
                              int64_t(1) << 31,
                              std::numeric_limits<int64_t>::max(),
                              std::numeric_limits<int64_t>::min(),
                              std::numeric_limits<uint64_t>::max(),
                              1.5,
                              "8",
                              true,
                              nullptr,
                              json::array({8}),
                              json::object({{"v", 8}})};
  for (const char *field : sizes)
    for (const json &value : values) {
      std::string e = configParseError(with(field, value));
      EXPECT_THAT(e, HasSubstr(std::string("field '") + field + "'"))
          << field << " = " << value.dump();
    }
  // 1e400 is not a double: the JSON parser refuses it.
  EXPECT_THAT(configParseError(std::string(kConfigTinyV3).replace(
                  std::string(kConfigTinyV3).find("\"vocab_size\": 512"), 17,
                  "\"vocab_size\": 1e400")),
              HasSubstr("config.json: "));
}

TEST(AdversarialConfig, ProductsOfDimensionsThatOverflow) {
  // Each size alone is legal (at most 2^31 - 1); their products are not.
  json j = json::parse(kConfigTinyV3);
  j["vocab_size"] = 2147483647;
  j["hidden_size"] = 2147483647; // embedding: 2^62 elements, 2^64 bytes in f32
  EXPECT_THAT(configParseError(j.dump()),
              HasSubstr("the model would have more than 2^46"));
  j = json::parse(kConfigTinyV3);
  j["num_hidden_layers"] = 2147483647;
  j["first_k_dense_replace"] = 2147483647;
  EXPECT_THAT(configParseError(j.dump()),
              HasSubstr("field 'num_hidden_layers': 2147483647 layers would "
                        "hold more than 4194304 weight tensors"));
  j = json::parse(kConfigTinyV3);
  j["n_routed_experts"] = 1 << 30;
  j["n_group"] = 1;
  j["topk_group"] = 1;
  EXPECT_THAT(configParseError(j.dump()),
              HasSubstr("field 'n_routed_experts': the model would hold more "
                        "than 4194304 weight tensors"));
  // heads * head dims past 2^31 (the projection widths).
  j = json::parse(kConfigTinyV3);
  j["num_attention_heads"] = 1 << 20;
  j["v_head_dim"] = 1 << 12;
  EXPECT_THAT(configParseError(j.dump()),
              HasSubstr("field 'num_attention_heads': the attention "
                        "projection sizes exceed"));
  // 32-bit products: hidden * intermediate = 2^32 is fine (the limits are on
  // tensors and parameters, and generated code indexes with 64 bits).
  j = json::parse(kConfigTinyV3);
  j["hidden_size"] = 65536;
  j["intermediate_size"] = 65536;
  EXPECT_TRUE(parseModelConfig(j.dump())) << parseModelConfig(j.dump()).error;
  // The real 671B model passes the limits with room to spare.
  EXPECT_TRUE(parseModelConfig(kConfig671B));
}

TEST(AdversarialConfig, DeeplyNestedAndDuplicateKeys) {
  EXPECT_THAT(configParseError("{\"model_type\":" + nested(1000000) + "}"),
              HasSubstr("config.json: invalid JSON: JSON nests deeper than 64 "
                        "levels"));
  json j = json::parse(kConfigTinyV3);
  j["rope_scaling"]["extra"] = json::parse(nested(60));
  EXPECT_TRUE(parseModelConfig(j.dump())) << "60 levels are within the limit";
  std::string twice = std::string(kConfigTinyV3);
  twice.insert(twice.find('{') + 1, "\"vocab_size\": 9999999,");
  EXPECT_EQ(configParseError(twice),
            "config.json: invalid JSON: duplicate key 'vocab_size'");
}

TEST(AdversarialConfig, ControlCharactersInValuesStayOnOneLine) {
  std::string e = configParseError(with("model_type", "llama\n\r\x01"));
  EXPECT_THAT(e, HasSubstr("'llama\\n\\r\\x01'"));
}

//===----------------------------------------------------------------------===//
// NaN and infinity in weights
//===----------------------------------------------------------------------===//

template <typename T> std::string bytesOf(const std::vector<T> &values) {
  std::string s(values.size() * sizeof(T), '\0');
  std::memcpy(s.data(), values.data(), s.size());
  return s;
}

TEST(AdversarialWeights, FindNonFiniteEveryDtype) {
  auto find = [](DType dtype, const std::string &bytes) {
    return findNonFinite(dtype, reinterpret_cast<const uint8_t *>(bytes.data()),
                         bytes.size());
  };
  EXPECT_EQ(find(DType::F32, bytesOf<float>({1.f, -2.f, 3e38f, 0.f})), -1);
  EXPECT_EQ(find(DType::F32, bytesOf<float>({1.f, NAN, 3.f})), 1);
  EXPECT_EQ(find(DType::F32, bytesOf<float>({1.f, 2.f, -INFINITY})), 2);
  EXPECT_EQ(find(DType::F64, bytesOf<double>({1.0, INFINITY})), 1);
  // bf16: 0x7f80 = +inf, 0xffc1 = NaN, 0x7f7f = the largest finite.
  EXPECT_EQ(find(DType::BF16, bytesOf<uint16_t>({0x3f80, 0x7f7f, 0x7f80})), 2);
  EXPECT_EQ(find(DType::BF16, bytesOf<uint16_t>({0xffc1})), 0);
  EXPECT_EQ(find(DType::BF16, bytesOf<uint16_t>({0x7f7f, 0xff7f})), -1);
  // f16: 0x7c00 = +inf, 0x7bff = 65504.
  EXPECT_EQ(find(DType::F16, bytesOf<uint16_t>({0x7bff, 0xfc00})), 1);
  EXPECT_EQ(find(DType::F16, bytesOf<uint16_t>({0x7bff, 0xfbff})), -1);
  // e4m3fn: NaN is S.1111.111; 0x7e = 448 is finite.
  EXPECT_EQ(find(DType::F8E4M3, bytesOf<uint8_t>({0x7e, 0xfe, 0x00, 0xff})), 3);
  EXPECT_EQ(find(DType::F8E4M3, bytesOf<uint8_t>({0x7e, 0xfe, 0x78})), -1);
  // e5m2: 0x7c = +inf.
  EXPECT_EQ(find(DType::F8E5M2, bytesOf<uint8_t>({0x7b, 0x7c})), 1);
  // Integers have neither.
  EXPECT_EQ(find(DType::I32, bytesOf<uint32_t>({0x7f800000})), -1);
  // Unaligned data (the checkpoint promises only byte alignment).
  std::string shifted = "x" + bytesOf<float>({1.f, NAN});
  EXPECT_EQ(findNonFinite(DType::F32,
                          reinterpret_cast<const uint8_t *>(shifted.data()) + 1,
                          8),
            1);
}

TEST(AdversarialWeights, CopyFindsTheFirstAcrossChunks) {
  // 100000 f32 = 400 KB: several 64 KB chunks; bad values in the third and
  // the fifth chunk.
  std::vector<float> values(100000, 0.5f);
  values[40000] = INFINITY;
  values[70000] = NAN;
  std::string src = bytesOf(values);
  std::string dst(src.size(), '\0');
  EXPECT_EQ(copyAndFindNonFinite(
                DType::F32, reinterpret_cast<uint8_t *>(dst.data()),
                reinterpret_cast<const uint8_t *>(src.data()), src.size()),
            40000);
  EXPECT_EQ(std::memcmp(dst.data(), src.data(), src.size()), 0)
      << "the whole tensor is copied";
  values[40000] = 0.f;
  values[70000] = 0.f;
  src = bytesOf(values);
  EXPECT_EQ(copyAndFindNonFinite(
                DType::F32, reinterpret_cast<uint8_t *>(dst.data()),
                reinterpret_cast<const uint8_t *>(src.data()), src.size()),
            -1);
}

TEST(AdversarialWeights, PolicyScansFloatWeightsNotFp8Payloads) {
  EXPECT_TRUE(isScannedForNonFinite(DType::F32));
  EXPECT_TRUE(isScannedForNonFinite(DType::BF16));
  EXPECT_TRUE(isScannedForNonFinite(DType::F16));
  EXPECT_TRUE(isScannedForNonFinite(DType::F64));
  EXPECT_FALSE(isScannedForNonFinite(DType::F8E4M3));
  EXPECT_FALSE(isScannedForNonFinite(DType::I64));
  std::string fp8 = bytesOf<uint8_t>({0x10, 0x7f, 0xff});
  std::string dst(fp8.size(), '\0');
  auto in = [](const std::string &s) {
    return reinterpret_cast<const uint8_t *>(s.data());
  };
  EXPECT_EQ(checkWeightValues(DType::F8E4M3, in(fp8), fp8.size()), -1);
  EXPECT_EQ(copyWeightValues(DType::F8E4M3,
                             reinterpret_cast<uint8_t *>(dst.data()), in(fp8),
                             fp8.size()),
            -1);
  EXPECT_EQ(dst, fp8);
  std::string bf16 = bytesOf<uint16_t>({0x3f80, 0x7fc0});
  dst.assign(bf16.size(), '\0');
  EXPECT_EQ(checkWeightValues(DType::BF16, in(bf16), bf16.size()), 1);
  EXPECT_EQ(copyWeightValues(DType::BF16,
                             reinterpret_cast<uint8_t *>(dst.data()), in(bf16),
                             bf16.size()),
            1);
  EXPECT_EQ(dst, bf16);
}

TEST(AdversarialWeights, ErrorNamesTensorElementAndKind) {
  TempDir dir;
  std::string file = dir.write(
      "model.safetensors",
      safetensorsBytes({{"model.norm.weight", "BF16", {2, 2},
                         bytesOf<uint16_t>({0x3f80, 0x3f80, 0x3f80, 0xff80})},
                        {"x", "F32", {2}, bytesOf<float>({NAN, 0.f})}}));
  CheckpointOpenResult r = Checkpoint::open(dir.path());
  ASSERT_TRUE(r) << r.error;
  const TensorInfo *norm = r.checkpoint->find("model.norm.weight");
  int64_t at = findNonFinite(norm->dtype, norm->data, norm->numBytes);
  EXPECT_EQ(at, 3);
  EXPECT_EQ(nonFiniteWeightError(*norm, at),
            file + ": tensor 'model.norm.weight': element 3 of BF16 [2, 2] is "
                   "-inf; weights must be finite (docs/reliability.md)");
  const TensorInfo *x = r.checkpoint->find("x");
  EXPECT_THAT(nonFiniteWeightError(*x, 0), HasSubstr("element 0 of F32 [2] is "
                                                     "NaN"));
}

} // namespace
