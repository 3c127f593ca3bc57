// SPDX-License-Identifier: Apache-2.0
// The interposer's settings and its per-call rules (net_plugin/interposer/config.h).
#include "net_plugin/interposer/config.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace gradpack::interposer {
namespace {

Config config_of(const std::map<std::string, std::string>& env) {
  Settings s;
  Status st = Settings::from_map(env, &s);
  EXPECT_TRUE(st.ok()) << st.message();
  return load_config(s);
}

Call big_call() {
  Call c;
  c.float_dtype = true;
  c.elem_size = 4;
  c.sum_or_avg = true;
  c.count = 1 << 20;
  c.nranks = 2;
  return c;
}

TEST(InterposerConfig, OffByDefault) {
  const Config c = config_of({});
  EXPECT_FALSE(c.enabled);
  EXPECT_NE(c.why.find("GRADPACK_COMPRESS"), std::string::npos) << c.why;
  EXPECT_EQ(c.min_bytes, 1u << 20);  // GRADPACK_MIN_BYTES's default
}

TEST(InterposerConfig, OffAndNoneAreOff) {
  EXPECT_FALSE(config_of({{"GRADPACK_COMPRESS", "off"}}).enabled);
  EXPECT_FALSE(config_of({{"GRADPACK_COMPRESS", "none"}}).enabled);
}

TEST(InterposerConfig, QuantSpecIsOn) {
  const Config c = config_of({{"GRADPACK_COMPRESS", "q8"},
                              {"GRADPACK_MIN_BYTES", "4096"},
                              {"GRADPACK_SEGMENT_BYTES", "65536"},
                              {"GRADPACK_ERROR_FEEDBACK", "off"}});
  ASSERT_TRUE(c.enabled) << c.why;
  EXPECT_EQ(c.spec.kind, CodecKind::kQuant);
  EXPECT_EQ(c.spec.quant.bits, 8);
  EXPECT_EQ(c.canonical, c.spec.canonical());
  EXPECT_EQ(c.min_bytes, 4096u);
  EXPECT_EQ(c.segment_bytes, 65536u);
  EXPECT_FALSE(c.error_feedback);
  const Config q4 = config_of({{"GRADPACK_COMPRESS", "q4:block=128:round=stochastic"}});
  ASSERT_TRUE(q4.enabled) << q4.why;
  EXPECT_EQ(q4.spec.quant.block, 128u);
  EXPECT_TRUE(q4.error_feedback);
}

TEST(InterposerConfig, AutoIsNotSupportedAndSaysWhatToSet) {
  for (const char* text : {"auto", "auto:q4"}) {
    const Config c = config_of({{"GRADPACK_COMPRESS", text}});
    EXPECT_FALSE(c.enabled) << text;
    EXPECT_NE(c.why.find("auto"), std::string::npos) << c.why;
    EXPECT_NE(c.why.find("q8"), std::string::npos) << c.why;
  }
}

TEST(InterposerConfig, OnlyQuantCodecs) {
  for (const char* text : {"topk:0.01+q8", "topk:0.1", "fp16", "bf16"}) {
    const Config c = config_of({{"GRADPACK_COMPRESS", text}});
    EXPECT_FALSE(c.enabled) << text;
    EXPECT_NE(c.why.find("q<b>"), std::string::npos) << c.why;
  }
}

TEST(InterposerConfig, BadSpecTurnsItOffWithTheParserMessage) {
  const Config c = config_of({{"GRADPACK_COMPRESS", "q99"}});
  EXPECT_FALSE(c.enabled);
  EXPECT_NE(c.why.find("q99"), std::string::npos) << c.why;
  EXPECT_NE(c.why.find("does not parse"), std::string::npos) << c.why;
}

TEST(InterposerEligibility, LargeFloatSumIsCompressed) {
  const Config c = config_of({{"GRADPACK_COMPRESS", "q8"}});
  Call call = big_call();
  EXPECT_EQ(candidate(call), nullptr);
  EXPECT_EQ(local_ok(c, call), nullptr);
  call.elem_size = 2;  // fp16/bf16: 2 MiB
  EXPECT_EQ(local_ok(c, call), nullptr);
}

// The argument rules: what NCCL requires to be equal on every rank.
TEST(InterposerEligibility, EachArgumentRuleSendsTheCallToNccl) {
  Call c = big_call();
  c.float_dtype = false;
  EXPECT_NE(candidate(c), nullptr);
  c = big_call();
  c.sum_or_avg = false;
  EXPECT_NE(candidate(c), nullptr);
  c = big_call();
  c.nranks = 1;
  EXPECT_NE(candidate(c), nullptr);
  c = big_call();
  c.count = 0;
  EXPECT_NE(candidate(c), nullptr);
}

// This rank's own rules are only a vote: compression off or a small call is a "no".
TEST(InterposerEligibility, LocalRulesAreThisRanksVote) {
  EXPECT_STREQ(local_ok(config_of({}), big_call()), "compression is off on this rank");
  EXPECT_EQ(candidate(big_call()), nullptr);  // still a candidate: every rank votes on it
}

TEST(InterposerEligibility, MinBytesIsInclusive) {
  const Config c = config_of({{"GRADPACK_COMPRESS", "q8"}, {"GRADPACK_MIN_BYTES", "4096"}});
  Call call = big_call();
  call.count = 1024;  // exactly 4096 bytes of fp32
  EXPECT_EQ(local_ok(c, call), nullptr);
  call.count = 1023;
  EXPECT_STREQ(local_ok(c, call), "smaller than GRADPACK_MIN_BYTES");
  call.elem_size = 2;
  call.count = 2047;
  EXPECT_STREQ(local_ok(c, call), "smaller than GRADPACK_MIN_BYTES");
}

// The agreement compares wire hashes: equal for settings whose frames and schedules fit
// together, different otherwise.
TEST(InterposerConfig, WireHashCoversCodecAndSegmentOnly) {
  const Config q8 = config_of({{"GRADPACK_COMPRESS", "q8"}});
  EXPECT_EQ(q8.wire_hash, config_of({{"GRADPACK_COMPRESS", "q8"}, {"GRADPACK_MIN_BYTES", "1"},
                                     {"GRADPACK_ERROR_FEEDBACK", "off"}})
                              .wire_hash);
  EXPECT_NE(q8.wire_hash, config_of({{"GRADPACK_COMPRESS", "q4"}}).wire_hash);
  EXPECT_NE(q8.wire_hash, config_of({{"GRADPACK_COMPRESS", "q8:block=128"}}).wire_hash);
  EXPECT_NE(q8.wire_hash,
            config_of({{"GRADPACK_COMPRESS", "q8"}, {"GRADPACK_SEGMENT_BYTES", "65536"}}).wire_hash);
  EXPECT_NE(q8.wire_hash, config_of({}).wire_hash);
}

TEST(InterposerConfig, ResidualSettings) {
  const Config d = config_of({{"GRADPACK_COMPRESS", "q8"}});
  EXPECT_EQ(d.residual_bits, 32);
  EXPECT_EQ(d.residual_max_bytes, 8ull << 30);
  const Config c = config_of({{"GRADPACK_COMPRESS", "q8"},
                              {"GRADPACK_RESIDUAL_BITS", "16"},
                              {"GRADPACK_RESIDUAL_MAX_BYTES", "1048576"}});
  EXPECT_EQ(c.residual_bits, 16);
  EXPECT_EQ(c.residual_max_bytes, 1048576u);
}

}  // namespace
}  // namespace gradpack::interposer
