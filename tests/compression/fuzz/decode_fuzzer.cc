// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the frame decoder. Every byte of a frame comes from a peer, so no input may
// crash, overflow or hang the decoder, and a decode that fails must not have written to the
// output (gp_codec_decode's contract in include/gradpack/gradpack.h).
//
// Each input is tried as it is and, when it is at least a header long, again with the header's
// CRC-32C recomputed: a mutation almost never keeps the checksum right, and without the fix-up
// the fuzzer would spend its time on the checksum check alone.
//
// It calls gradpack::read_frame_info and gradpack::decode_frame, the functions behind
// gp_frame_info and gp_codec_decode (the C API adds only its NULL checks and the wall that turns
// exceptions into GP_ERR_INTERNAL). Linking the static library rather than libgradpack.so lets
// the sanitizer build instrument the decoder itself, and an exception escapes as a crash.
//
// Invariants (abort() on a violation, with a line on stderr saying which):
//  - frame info succeeds => its fields agree with the input: a non-empty, terminated spec, a
//    known dtype, kept <= count, frame_bytes == the input's size;
//  - a decode succeeds => frame info succeeded and the count is the frame's;
//  - a decode fails => the output is byte for byte as it was, and the status is not
//    GP_ERR_INTERNAL; into the three float dtypes, with or without accumulate, a frame either
//    always decodes or never does;
//  - the values: decoding into fp32 gives X; into fp16/bf16 gives X rounded once; accumulating
//    onto P gives P + X summed in fp32 and rounded once (NaN matches any NaN); a "none" frame of
//    a non-float dtype decodes to its payload bytes;
//  - without AddressSanitizer (the gcc replay build), the bytes past each output stay intact.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/crc32c.h"
#include "common/dtype.h"
#include "common/float16.h"
#include "common/status.h"
#include "compression/codec.h"
#include "compression/wire.h"
#include "gradpack/gradpack.h"

#if defined(__SANITIZE_ADDRESS__)
#define GP_FUZZ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GP_FUZZ_ASAN 1
#endif
#endif
#ifndef GP_FUZZ_ASAN
#define GP_FUZZ_ASAN 0
#endif

namespace {

using gradpack::Code;
using gradpack::Status;

// Frames of more elements are checked (frame info) but not decoded: the output buffers are
// count-sized, and a top-k header can claim 2^56 elements in a few bytes.
constexpr uint64_t kMaxDecodeCount = uint64_t{1} << 20;
// ASan sees an overflow of an exactly-sized buffer; without it, a guard zone catches writes.
constexpr size_t kGuardBytes = GP_FUZZ_ASAN ? 0 : 64;
constexpr uint8_t kGuardByte = 0xA7;
constexpr size_t kCrcOffset = 52;
constexpr gp_dtype_t kFloatTypes[] = {GP_FLOAT32, GP_FLOAT16, GP_BFLOAT16};

const char* g_variant = "";  // which form of the input is being checked, for the report
size_t g_size = 0;

[[noreturn]] void violated(const char* what) {
  std::fprintf(stderr, "decode_fuzzer: invariant violated: %s (input of %zu bytes, %s)\n", what,
               g_size, g_variant);
  std::abort();
}

void require(bool ok, const char* what) {
  if (!ok) violated(what);
}

bool is_float(gp_dtype_t d) { return d == GP_FLOAT32 || d == GP_FLOAT16 || d == GP_BFLOAT16; }

// An output buffer: count elements of dtype, filled with a known pattern, plus the guard zone.
struct Output {
  gp_dtype_t dtype;
  size_t count;
  std::vector<uint8_t> bytes;

  Output(size_t n, gp_dtype_t d)
      : dtype(d), count(n), bytes(n * gradpack::dtype_size(d) + kGuardBytes) {
    for (size_t i = 0; i < n; ++i) {
      // Small, mostly non-zero values: a write of zeros shows, and integer sums stay small.
      const int small = static_cast<int>(i % 13) - 6;
      const float f = 0.375f * static_cast<float>(small);
      switch (d) {
        case GP_FLOAT32:
          put(i, f);
          break;
        case GP_FLOAT16:
          put(i, gradpack::f32_to_f16(f));
          break;
        case GP_BFLOAT16:
          put(i, gradpack::f32_to_bf16(f));
          break;
        case GP_FLOAT64:
          put(i, static_cast<double>(f));
          break;
        case GP_INT32:
          put(i, static_cast<int32_t>(small));
          break;
        case GP_INT64:
          put(i, static_cast<int64_t>(small));
          break;
        case GP_INT8:
          put(i, static_cast<int8_t>(small));
          break;
        case GP_UINT8:
          put(i, static_cast<uint8_t>(i));
          break;
      }
    }
    if (kGuardBytes > 0) std::memset(bytes.data() + payload_bytes(), kGuardByte, kGuardBytes);
  }

  template <typename T>
  void put(size_t i, T v) {
    std::memcpy(bytes.data() + i * sizeof(T), &v, sizeof(T));
  }
  template <typename T>
  T get(size_t i) const {
    T v;
    std::memcpy(&v, bytes.data() + i * sizeof(T), sizeof(T));
    return v;
  }
  size_t payload_bytes() const { return count * gradpack::dtype_size(dtype); }
  // Element i as fp32 (float dtypes only).
  float value(size_t i) const {
    switch (dtype) {
      case GP_FLOAT16:
        return gradpack::f16_to_f32(get<uint16_t>(i));
      case GP_BFLOAT16:
        return gradpack::bf16_to_f32(get<uint16_t>(i));
      default:
        return get<float>(i);
    }
  }
  void check_guard() const {
    for (size_t i = 0; i < kGuardBytes; ++i)
      require(bytes[payload_bytes() + i] == kGuardByte, "decode wrote past the end of the output");
  }
};

Status decode(const uint8_t* frame, size_t size, Output* out, bool accumulate) {
  // A zero-sized vector may hold a null pointer; the decoder accepts null only for count 0.
  return gradpack::decode_frame(frame, size, out->bytes.data(), out->count, out->dtype, accumulate);
}

// Decodes into out and checks the failure invariants. Returns whether the decode succeeded.
bool decode_checked(const uint8_t* frame, size_t size, Output* out, bool accumulate) {
  const std::vector<uint8_t> before = out->bytes;
  const Status st = decode(frame, size, out, accumulate);
  out->check_guard();
  if (st.ok()) return true;
  require(st.code() != Code::kInternal, "decode reported an internal error (a gradpack bug)");
  require(out->bytes == before, "a failed decode changed the output");
  return false;
}

// fp32 value -> element of dtype, the one rounding the decoder does.
uint16_t round_to(gp_dtype_t dtype, float v) {
  return dtype == GP_FLOAT16 ? gradpack::f32_to_f16(v) : gradpack::f32_to_bf16(v);
}

bool same_float(float a, float b) { return a == b || (std::isnan(a) && std::isnan(b)); }
bool same_half(gp_dtype_t dtype, uint16_t a, uint16_t b) {
  if (a == b) return true;
  const float fa = dtype == GP_FLOAT16 ? gradpack::f16_to_f32(a) : gradpack::bf16_to_f32(a);
  const float fb = dtype == GP_FLOAT16 ? gradpack::f16_to_f32(b) : gradpack::bf16_to_f32(b);
  return std::isnan(fa) && std::isnan(fb);
}

// out (decoded with accumulate or not, from pattern `start`) against the fp32 decode x.
void check_values(const Output& start, const Output& out, const Output& x, bool accumulate) {
  for (size_t i = 0; i < out.count; ++i) {
    const float want = accumulate ? start.value(i) + x.get<float>(i) : x.get<float>(i);
    if (out.dtype == GP_FLOAT32) {
      require(same_float(out.get<float>(i), want),
              accumulate ? "fp32 accumulate is not start + decoded" : "fp32 decode is unstable");
    } else {
      require(same_half(out.dtype, out.get<uint16_t>(i), round_to(out.dtype, want)),
              accumulate ? "16-bit accumulate is not the fp32 sum rounded once"
                         : "16-bit decode is not the fp32 decode rounded once");
    }
  }
}

void check_info(const gp_frame_info_t& info, size_t size) {
  require(std::memchr(info.spec, '\0', sizeof info.spec) != nullptr,
          "frame info spec unterminated");
  require(info.spec[0] != '\0', "frame info spec is empty");
  require(gradpack::dtype_size(info.dtype) != 0, "frame info dtype is unknown");
  require(info.kept <= info.count, "frame info kept > count");
  require(info.count <= gradpack::kMaxFrameCount, "frame info count above the largest frame");
  require(info.frame_bytes == size, "frame info frame_bytes is not the input's size");
}

void check_frame(const uint8_t* frame, size_t size) {
  g_size = size;
  gp_frame_info_t info;
  std::memset(&info, 0xCD, sizeof info);
  const Status info_status = gradpack::read_frame_info(frame, size, &info);
  if (!info_status.ok()) {
    require(info_status.code() != Code::kInternal, "frame info reported an internal error");
    // A frame whose header is refused never decodes, whatever count the caller expects.
    for (size_t count : {size_t{0}, size_t{1}, size_t{67}}) {
      for (gp_dtype_t dtype : kFloatTypes) {
        for (bool accumulate : {false, true}) {
          Output out(count, dtype);
          require(!decode_checked(frame, size, &out, accumulate),
                  "decode succeeded where frame info failed");
        }
      }
    }
    return;
  }
  check_info(info, size);
  if (info.count > kMaxDecodeCount) return;
  const size_t count = static_cast<size_t>(info.count);

  // The three float outputs, overwritten and accumulated: all succeed or all fail.
  Output x(count, GP_FLOAT32);
  const bool decodes = decode_checked(frame, size, &x, false);
  for (gp_dtype_t dtype : kFloatTypes) {
    for (bool accumulate : {false, true}) {
      const Output start(count, dtype);
      Output out = start;
      const bool ok = decode_checked(frame, size, &out, accumulate);
      require(ok == decodes, "a frame decodes into one float dtype or mode but not another");
      if (ok) check_values(start, out, x, accumulate);
    }
  }
  require(!decodes || is_float(info.dtype), "a non-float frame decoded into a float dtype");

  // A frame of raw non-float data decodes into its own dtype only, to its payload's bytes.
  if (!is_float(info.dtype)) {
    for (bool accumulate : {false, true}) {
      Output out(count, info.dtype);
      if (decode_checked(frame, size, &out, accumulate) && !accumulate && count > 0)
        require(std::memcmp(out.bytes.data(), frame + gradpack::kFrameHeaderBytes,
                            out.payload_bytes()) == 0,
                "a raw frame did not decode to its payload");
    }
  }

  // A count other than the frame's is refused without a write.
  const gp_dtype_t own = is_float(info.dtype) ? GP_FLOAT32 : info.dtype;
  Output more(count + 1, own);
  require(!decode_checked(frame, size, &more, false), "decode accepted a count above the frame's");
  if (count > 0) {
    Output fewer(count - 1, own);
    require(!decode_checked(frame, size, &fewer, true),
            "decode accepted a count below the frame's");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  g_variant = "as given";
  check_frame(data, size);
  if (size >= gradpack::kFrameHeaderBytes) {
    // An exactly-sized copy, so reads past the end still hit the sanitizer's redzone.
    std::vector<uint8_t> fixed(data, data + size);
    const uint32_t crc = gradpack::crc32c(fixed.data(), kCrcOffset);
    for (int i = 0; i < 4; ++i) fixed[kCrcOffset + i] = static_cast<uint8_t>(crc >> (8 * i));
    if (std::memcmp(fixed.data() + kCrcOffset, data + kCrcOffset, 4) != 0) {
      g_variant = "header checksum recomputed";
      check_frame(fixed.data(), size);
    }
  }
  return 0;
}
