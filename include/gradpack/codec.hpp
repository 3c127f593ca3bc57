// SPDX-License-Identifier: Apache-2.0
// A C++ view of gradpack's codecs, header-only over the C ABI of gradpack.h.
//
//   gp::Codec codec("q8");                        // throws gp::Error on a bad spec
//   std::vector<uint8_t> frame(codec.max_encoded_bytes(n, GP_FLOAT32));
//   frame.resize(codec.encode(grad, n, GP_FLOAT32, residual, frame.data(), frame.size()));
//   gp::decode(frame.data(), frame.size(), sum, n, GP_FLOAT32, /*accumulate=*/true);
//
// Errors become gp::Error, which carries the gp_status_t and gp_last_error()'s message. Like
// gp_codec_t, a Codec is used by one thread at a time; gp::decode is thread-safe.
#ifndef GRADPACK_CODEC_HPP_
#define GRADPACK_CODEC_HPP_

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "gradpack/gradpack.h"

namespace gp {

class Error : public std::runtime_error {
 public:
  Error(gp_status_t status, const std::string& message)
      : std::runtime_error(std::string(gp_status_string(status)) + ": " + message),
        status_(status) {}
  gp_status_t status() const noexcept { return status_; }

 private:
  gp_status_t status_;
};

inline void check(gp_status_t status) {
  if (status != GP_OK) throw Error(status, gp_last_error());
}

class Codec {
 public:
  explicit Codec(const char* spec) { check(gp_codec_create(spec, &codec_)); }
  explicit Codec(const std::string& spec) : Codec(spec.c_str()) {}
  Codec(Codec&& other) noexcept : codec_(std::exchange(other.codec_, nullptr)) {}
  Codec& operator=(Codec&& other) noexcept {
    std::swap(codec_, other.codec_);
    return *this;
  }
  Codec(const Codec&) = delete;
  Codec& operator=(const Codec&) = delete;
  ~Codec() { gp_codec_destroy(codec_); }

  // The canonical spec, every option spelled out.
  std::string spec() const { return gp_codec_spec(codec_); }
  size_t max_encoded_bytes(size_t count, gp_dtype_t dtype) const {
    return gp_codec_max_encoded_bytes(codec_, count, dtype);
  }
  // Encodes into out; returns the frame's size. residual: nullptr for no error feedback.
  size_t encode(const void* in, size_t count, gp_dtype_t dtype, float* residual, void* out,
                size_t out_capacity) {
    size_t bytes = 0;
    check(gp_codec_encode(codec_, in, count, dtype, residual, out, out_capacity, &bytes));
    return bytes;
  }
  gp_codec_t* get() const noexcept { return codec_; }

 private:
  gp_codec_t* codec_ = nullptr;
};

inline void decode(const void* frame, size_t frame_bytes, void* out, size_t count, gp_dtype_t dtype,
                   bool accumulate) {
  check(gp_codec_decode(frame, frame_bytes, out, count, dtype, accumulate ? 1 : 0));
}

inline gp_frame_info_t frame_info(const void* frame, size_t frame_bytes) {
  gp_frame_info_t info;
  check(gp_frame_info(frame, frame_bytes, &info));
  return info;
}

}  // namespace gp

#endif  // GRADPACK_CODEC_HPP_
