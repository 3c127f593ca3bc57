// SPDX-License-Identifier: Apache-2.0
#include "compression/spec.h"

#include <gtest/gtest.h>

namespace gradpack {
namespace {

CodecSpec parse_ok(const char* text) {
  CodecSpec spec;
  Status st = parse_codec_spec(text, &spec);
  EXPECT_TRUE(st.ok()) << text << ": " << st.to_string();
  return spec;
}

std::string parse_error(const char* text) {
  CodecSpec spec;
  Status st = parse_codec_spec(text, &spec);
  EXPECT_EQ(st.code(), Code::kInvalidArgument) << text;
  return st.message();
}

TEST(Spec, SimpleCodecs) {
  EXPECT_EQ(parse_ok("none").kind, CodecKind::kNone);
  EXPECT_EQ(parse_ok("fp16").kind, CodecKind::kFp16);
  EXPECT_EQ(parse_ok("bf16").kind, CodecKind::kBf16);
}

TEST(Spec, EveryBitWidth) {
  for (int b = 2; b <= 16; ++b) {
    std::string text = "q" + std::to_string(b);
    CodecSpec spec = parse_ok(text.c_str());
    EXPECT_EQ(spec.kind, CodecKind::kQuant);
    EXPECT_EQ(spec.quant.bits, b);
    EXPECT_EQ(spec.quant.block, kDefaultBlock);
  }
}

TEST(Spec, QuantOptions) {
  CodecSpec s = parse_ok("q4:block=64:round=stochastic:seed=42");
  EXPECT_EQ(s.quant.bits, 4);
  EXPECT_EQ(s.quant.block, 64u);
  EXPECT_EQ(s.quant.rounding, Rounding::kStochastic);
  EXPECT_EQ(s.quant.seed, 42u);
  EXPECT_EQ(s.canonical(), "q4:block=64:round=stochastic:seed=42");
  EXPECT_EQ(parse_ok("q8").canonical(), "q8:block=256:round=nearest:seed=0");
}

TEST(Spec, Topk) {
  CodecSpec s = parse_ok("topk:0.01");
  EXPECT_EQ(s.kind, CodecKind::kTopk);
  EXPECT_DOUBLE_EQ(s.fraction, 0.01);
  EXPECT_EQ(s.quant.bits, 0);
  s = parse_ok("topk:0.01+q8:block=128");
  EXPECT_EQ(s.quant.bits, 8);
  EXPECT_EQ(s.quant.block, 128u);
  EXPECT_EQ(s.canonical(), "topk:0.01+q8:block=128:round=nearest:seed=0");
}

TEST(Spec, ErrorsNameTheBadPart) {
  EXPECT_NE(parse_error("q1").find("q1"), std::string::npos);
  EXPECT_NE(parse_error("q17").find("2..16"), std::string::npos);
  EXPECT_NE(parse_error("q8:block=12").find("block=12"), std::string::npos);
  EXPECT_NE(parse_error("q8:block=0").find("multiple of 8"), std::string::npos);
  EXPECT_NE(parse_error("q8:round=up").find("round=up"), std::string::npos);
  EXPECT_NE(parse_error("q8:colour=red").find("colour"), std::string::npos);
  EXPECT_NE(parse_error("q8:seed=-1").find("seed=-1"), std::string::npos);
  EXPECT_NE(parse_error("q8:block").find("block"), std::string::npos);
  EXPECT_NE(parse_error("topk:0").find("fraction"), std::string::npos);
  EXPECT_NE(parse_error("topk:1.5").find("1.5"), std::string::npos);
  EXPECT_NE(parse_error("topk:abc").find("abc"), std::string::npos);
  EXPECT_NE(parse_error("topk:0.1+fp16").find("fp16"), std::string::npos);
  EXPECT_NE(parse_error("zstd").find("unknown codec"), std::string::npos);
  EXPECT_NE(parse_error("").find("unknown codec"), std::string::npos);
  EXPECT_NE(parse_error("qx").find("qx"), std::string::npos);
}

}  // namespace
}  // namespace gradpack
