// The C ABI wall of libgradpack.so: the one place where Status becomes gp_status_t, arguments
// from C are checked, and nothing (not even std::bad_alloc) escapes to the caller.
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "common/dtype.h"
#include "common/status.h"
#include "compression/codec.h"
#include "gradpack/gradpack.h"

struct gp_codec {
  std::unique_ptr<gradpack::Codec> impl;
};

namespace {

thread_local std::string t_last_error;

gp_status_t finish(const gradpack::Status& status) {
  if (status.ok()) return GP_OK;
  t_last_error = status.message();
  return static_cast<gp_status_t>(status.code());
}

template <typename F>
gp_status_t guarded(F&& body) {
  try {
    return finish(body());
  } catch (const std::bad_alloc&) {
    return finish(gradpack::SystemError("out of memory"));
  } catch (const std::exception& e) {
    return finish(gradpack::Internal(std::string("unexpected exception: ") + e.what()));
  } catch (...) {
    return finish(gradpack::Internal("unexpected exception"));
  }
}

}  // namespace

extern "C" {

const char* gp_status_string(gp_status_t status) {
  switch (status) {
    case GP_OK:
    case GP_ERR_INVALID_ARGUMENT:
    case GP_ERR_CORRUPT_DATA:
    case GP_ERR_UNSUPPORTED:
    case GP_ERR_SYSTEM:
    case GP_ERR_REMOTE:
    case GP_ERR_TIMEOUT:
    case GP_ERR_INTERNAL:
      return gradpack::code_name(static_cast<gradpack::Code>(status));
  }
  return "GP_ERR_UNKNOWN";
}

const char* gp_last_error(void) { return t_last_error.c_str(); }

size_t gp_dtype_size(gp_dtype_t dtype) { return gradpack::dtype_size(dtype); }

const char* gp_version(void) { return "0.1.0"; }

gp_status_t gp_codec_create(const char* spec, gp_codec_t** out) {
  return guarded([&] {
    if (out == nullptr) return gradpack::InvalidArgument("out is NULL");
    *out = nullptr;
    if (spec == nullptr) return gradpack::InvalidArgument("spec is NULL");
    auto codec = std::make_unique<gp_codec>();
    GP_RETURN_IF_ERROR(gradpack::Codec::create(spec, &codec->impl));
    *out = codec.release();
    return gradpack::OkStatus();
  });
}

void gp_codec_destroy(gp_codec_t* codec) { delete codec; }

const char* gp_codec_spec(const gp_codec_t* codec) {
  return codec ? codec->impl->canonical().c_str() : "";
}

size_t gp_codec_max_encoded_bytes(const gp_codec_t* codec, size_t count, gp_dtype_t dtype) {
  return codec ? codec->impl->max_encoded_bytes(count, dtype) : 0;
}

gp_status_t gp_codec_encode(gp_codec_t* codec, const void* in, size_t count, gp_dtype_t dtype,
                            float* residual, void* out, size_t out_capacity, size_t* out_bytes) {
  return guarded([&] {
    if (codec == nullptr) return gradpack::InvalidArgument("codec is NULL");
    return codec->impl->encode(in, count, dtype, residual, out, out_capacity, out_bytes);
  });
}

gp_status_t gp_codec_decode(const void* in, size_t in_bytes, void* out, size_t count,
                            gp_dtype_t dtype, int accumulate) {
  return guarded([&] {
    if (accumulate != 0 && accumulate != 1)
      return gradpack::InvalidArgument("accumulate must be 0 or 1");
    return gradpack::decode_frame(in, in_bytes, out, count, dtype, accumulate == 1);
  });
}

gp_status_t gp_frame_info(const void* in, size_t in_bytes, gp_frame_info_t* info) {
  return guarded([&] {
    if (info == nullptr) return gradpack::InvalidArgument("info is NULL");
    return gradpack::read_frame_info(in, in_bytes, info);
  });
}

}  // extern "C"
