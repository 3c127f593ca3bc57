// SPDX-License-Identifier: Apache-2.0
// The decoder trusts nothing: every malformed frame is GP_ERR_CORRUPT_DATA and leaves out
// untouched.
#include "compression/wire.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "common/crc32c.h"
#include "compression/codec.h"

namespace gradpack {
namespace {

std::vector<uint8_t> make_frame(const std::string& spec, size_t n) {
  std::unique_ptr<Codec> codec;
  EXPECT_TRUE(Codec::create(spec, &codec).ok());
  std::vector<float> x(n);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  for (float& v : x) v = normal(rng);
  std::vector<uint8_t> frame(codec->max_encoded_bytes(n, GP_FLOAT32));
  size_t bytes = 0;
  EXPECT_TRUE(
      codec->encode(x.data(), n, GP_FLOAT32, nullptr, frame.data(), frame.size(), &bytes).ok());
  frame.resize(bytes);
  return frame;
}

void reseal(std::vector<uint8_t>& f) {
  uint32_t crc = crc32c(f.data(), 52);
  std::memcpy(f.data() + 52, &crc, 4);
}

Code decode_code(const std::vector<uint8_t>& f, size_t n) {
  std::vector<float> out(n, 42.0f);
  Status st = decode_frame(f.data(), f.size(), out.data(), n, GP_FLOAT32, false);
  if (!st.ok()) {
    for (float v : out) EXPECT_EQ(v, 42.0f) << "a rejected frame wrote to the output";
  }
  return st.code();
}

const char* kSpecs[] = {"none", "fp16", "bf16", "q8", "q5:block=24", "topk:0.05", "topk:0.3+q4"};

TEST(Wire, HeaderIsFiftySixBytesLittleEndian) {
  auto f = make_frame("q8", 1000);
  ASSERT_GE(f.size(), kFrameHeaderBytes);
  EXPECT_EQ(std::memcmp(f.data(), "GPKW", 4), 0);
  EXPECT_EQ(f[4], 1);
  EXPECT_EQ(f[5], static_cast<uint8_t>(CodecKind::kQuant));
  EXPECT_EQ(f[8], 8);
  uint64_t count;
  std::memcpy(&count, f.data() + 16, 8);
  EXPECT_EQ(count, 1000u);
  EXPECT_EQ(f.size(), 56u + 4 * 4 + 1000);  // 4 blocks of 256: scales, then 1 byte per code
}

// A q<b> header follows from spec, count and input dtype: the NCCL interposer builds it on the
// host and checks received frames against it, so it must be byte for byte the encoder's.
TEST(Wire, QuantHeaderIsKnownBeforeTheFrame) {
  for (const char* text : {"q8", "q4:block=128", "q2:round=stochastic", "q16:block=4096"}) {
    for (gp_dtype_t dtype : {GP_FLOAT32, GP_FLOAT16, GP_BFLOAT16}) {
      for (size_t count : {size_t{1}, size_t{1000}, size_t{70001}}) {
        std::unique_ptr<Codec> codec;
        ASSERT_TRUE(Codec::create(text, &codec).ok()) << text;
        std::vector<uint8_t> in(count * dtype_size(dtype), 0);
        std::vector<uint8_t> frame(codec->max_encoded_bytes(count, dtype));
        size_t bytes = 0;
        ASSERT_TRUE(codec->encode(in.data(), count, dtype, nullptr, frame.data(), frame.size(),
                                  &bytes)
                        .ok());
        uint8_t expected[kFrameHeaderBytes];
        write_frame_header(quant_frame_header(codec->spec().quant, count, dtype), expected);
        EXPECT_EQ(std::memcmp(expected, frame.data(), kFrameHeaderBytes), 0)
            << text << " dtype " << dtype << " count " << count;
        EXPECT_EQ(bytes, frame.size());
      }
    }
  }
}

TEST(Wire, TruncatedAndOversizedFramesAreRejected) {
  for (const char* spec : kSpecs) {
    auto f = make_frame(spec, 777);
    for (size_t len : {size_t{0}, size_t{10}, size_t{55}, size_t{56}, f.size() - 1}) {
      std::vector<uint8_t> cut(f.begin(), f.begin() + len);
      EXPECT_EQ(decode_code(cut, 777), Code::kCorruptData) << spec << " len " << len;
    }
    auto longer = f;
    longer.push_back(0);
    EXPECT_EQ(decode_code(longer, 777), Code::kCorruptData) << spec;
  }
}

TEST(Wire, HeaderDamageIsRejected) {
  auto f = make_frame("q8", 500);
  auto g = f;
  g[0] = 'X';
  EXPECT_EQ(decode_code(g, 500), Code::kCorruptData);
  g = f;
  g[4] = 2;  // a future version
  EXPECT_EQ(decode_code(g, 500), Code::kCorruptData);
  reseal(g);
  EXPECT_EQ(decode_code(g, 500), Code::kCorruptData);
  // Any single flipped header bit fails the checksum.
  for (size_t bit = 0; bit < 56 * 8; ++bit) {
    g = f;
    g[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    EXPECT_EQ(decode_code(g, 500), Code::kCorruptData) << "bit " << bit;
  }
}

// Fields that disagree with each other, behind a valid checksum.
TEST(Wire, InconsistentFieldsAreRejected) {
  auto f = make_frame("q8", 500);
  struct Edit {
    size_t offset;
    uint8_t value;
  };
  for (Edit e : {Edit{5, 9}, Edit{6, 200}, Edit{7, 0x80}, Edit{8, 1}, Edit{8, 17}, Edit{9, 1},
                 Edit{10, 1}, Edit{12, 7}, Edit{16, 0x00}, Edit{24, 3}, Edit{32, 1}, Edit{40, 1},
                 Edit{48, 1}, Edit{23, 0x10}, Edit{47, 0x80}}) {
    auto g = f;
    g[e.offset] = e.value;
    reseal(g);
    EXPECT_EQ(decode_code(g, 500), Code::kCorruptData) << "offset " << e.offset;
  }
  // A negative or infinite scale.
  auto g = f;
  float bad = -1.0f;
  std::memcpy(g.data() + 56, &bad, 4);
  EXPECT_EQ(decode_code(g, 500), Code::kCorruptData);
  bad = std::numeric_limits<float>::infinity();
  std::memcpy(g.data() + 56, &bad, 4);
  EXPECT_EQ(decode_code(g, 500), Code::kCorruptData);
}

TEST(Wire, CodePaddingMustBeZero) {
  auto f = make_frame("q3", 5);  // 15 bits of codes: one pad bit
  f.back() |= 0x80;
  EXPECT_EQ(decode_code(f, 5), Code::kCorruptData);
}

TEST(Wire, RandomBytesAreRejected) {
  std::mt19937 rng(2);
  for (int t = 0; t < 2000; ++t) {
    std::vector<uint8_t> g(rng() % 300);
    for (auto& b : g) b = static_cast<uint8_t>(rng());
    if (g.size() >= 4 && t % 2) std::memcpy(g.data(), "GPKW", 4);
    EXPECT_EQ(decode_code(g, 64), Code::kCorruptData);
  }
}

TEST(Wire, CorruptedPayloadNeverReadsOrWritesOutOfBounds) {
  // Mutated payloads behind valid headers either decode or fail; run under ASan to see bounds.
  std::mt19937 rng(3);
  for (const char* spec : kSpecs) {
    auto f = make_frame(spec, 300);
    for (int t = 0; t < 300; ++t) {
      auto g = f;
      for (int k = 0; k < 4 && g.size() > 56; ++k) g[56 + rng() % (g.size() - 56)] = rng();
      std::vector<float> out(300);
      Status st = decode_frame(g.data(), g.size(), out.data(), 300, GP_FLOAT32, false);
      EXPECT_TRUE(st.ok() || st.code() == Code::kCorruptData) << spec << ": " << st.to_string();
    }
  }
}

}  // namespace
}  // namespace gradpack
