/*
 * gradpack — compressed, topology-aware gradient communication.
 *
 * This is the C ABI of libgradpack.so. It is usable from C and C++ and is the only header a
 * program needs. Every function reports failure through a gp_status_t; the detail of the last
 * failure on the calling thread is available from gp_last_error(). Nothing in this API throws.
 *
 * Thread-safety: functions without an object argument are thread-safe. A gp_codec_t keeps state
 * (the stochastic-rounding stream and scratch space), so one codec must not be used by two
 * threads at once; create one per thread. gp_codec_decode() takes no codec and is thread-safe.
 */
#ifndef GRADPACK_GRADPACK_H_
#define GRADPACK_GRADPACK_H_

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define GP_API
#else
#define GP_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define GRADPACK_VERSION_MAJOR 0
#define GRADPACK_VERSION_MINOR 1
#define GRADPACK_VERSION_PATCH 0

/* Result of every call. Values are part of the ABI: never renumbered. */
typedef enum gp_status_t {
  GP_OK = 0,
  GP_ERR_INVALID_ARGUMENT = 1, /* the caller passed something wrong: fix the call */
  GP_ERR_CORRUPT_DATA = 2,     /* bytes that arrived (a frame) are malformed or inconsistent */
  GP_ERR_UNSUPPORTED = 3,      /* valid request this build or machine cannot do */
  GP_ERR_SYSTEM = 4,           /* the OS or a driver failed (errno, CUDA) */
  GP_ERR_REMOTE = 5,           /* a peer failed or disconnected */
  GP_ERR_TIMEOUT = 6,          /* a wait ran past its bound */
  GP_ERR_INTERNAL = 7          /* a bug in gradpack: please report it */
} gp_status_t;

/* Element types. Values are part of the ABI and of the wire format. */
typedef enum gp_dtype_t {
  GP_FLOAT32 = 0,
  GP_FLOAT16 = 1,
  GP_BFLOAT16 = 2,
  GP_FLOAT64 = 3,
  GP_INT32 = 4,
  GP_INT64 = 5,
  GP_INT8 = 6,
  GP_UINT8 = 7
} gp_dtype_t;

/* A short, static name of a status ("GP_ERR_CORRUPT_DATA"). Never NULL. */
GP_API const char* gp_status_string(gp_status_t status);

/* The message of the last failure on this thread ("" if none). Valid until the next gradpack call
 * on this thread. */
GP_API const char* gp_last_error(void);

/* Size in bytes of one element of dtype, or 0 for an unknown value. */
GP_API size_t gp_dtype_size(gp_dtype_t dtype);

/* "0.1.0": the library's version, which may differ from the header's GRADPACK_VERSION_*. */
GP_API const char* gp_version(void);

/* ---------------------------------------------------------------------------------------------
 * Codecs (docs/codecs.md, docs/wire-format.md)
 *
 * A codec turns `count` elements into one self-describing frame and back. Specs:
 *   "none"                       the input's own bytes (lossless)
 *   "fp16", "bf16"               16-bit floats, round to nearest even, finite values saturate
 *   "q<b>[:block=N][:round=nearest|stochastic][:seed=S]"   b in 2..16, N a multiple of 8
 *   "topk:<fraction>[+q<b>[:block=N][:round=..][:seed=S]]" the `fraction` largest |v|, values
 *                                  fp32 or quantized, indices delta-varint or bitmap
 * Lossy codecs take GP_FLOAT32, GP_FLOAT16 and GP_BFLOAT16; "none" takes every dtype.
 * ------------------------------------------------------------------------------------------- */
typedef struct gp_codec gp_codec_t;

/* Parses `spec` and creates a codec. A bad spec gives GP_ERR_INVALID_ARGUMENT and a message that
 * names the bad part. The caller owns *out and frees it with gp_codec_destroy(). */
GP_API gp_status_t gp_codec_create(const char* spec, gp_codec_t** out);

/* Frees a codec. NULL is ignored. */
GP_API void gp_codec_destroy(gp_codec_t* codec);

/* The spec of a codec in canonical form, every parameter spelled out (static for the codec's life).
 */
GP_API const char* gp_codec_spec(const gp_codec_t* codec);

/* An upper bound on the frame size gp_codec_encode() writes for `count` elements of `dtype`;
 * 0 if the codec cannot encode that dtype. */
GP_API size_t gp_codec_max_encoded_bytes(const gp_codec_t* codec, size_t count, gp_dtype_t dtype);

/* Encodes in[0..count) into one frame in out[0..out_capacity), setting *out_bytes to its size.
 *
 * residual: NULL for no error feedback; otherwise `count` floats of error-feedback state that the
 * caller keeps between steps (start with zeros). The codec encodes v = in + residual and stores
 * v - decode(frame) back into residual, where decode is bit-for-bit what gp_codec_decode() gives a
 * receiver, so over any number of steps sum(decoded) + residual == sum(inputs) up to float
 * rounding. A NaN or Inf in v reaches the receivers (as itself, or as NaN for its whole quantized
 * block) and never enters the residual: those elements keep their previous residual
 * (docs/codecs.md "Non-finite values").
 *
 * Errors: GP_ERR_INVALID_ARGUMENT (NULL pointers with count > 0, out_capacity too small: nothing is
 * written and residual is unchanged), GP_ERR_UNSUPPORTED (dtype the codec cannot take). */
GP_API gp_status_t gp_codec_encode(gp_codec_t* codec, const void* in, size_t count,
                                   gp_dtype_t dtype, float* residual, void* out,
                                   size_t out_capacity, size_t* out_bytes);

/* Decodes the frame in[0..in_bytes) into out[0..count) as `dtype`; accumulate = 0 overwrites out,
 * 1 adds the decoded values into out (the sum in fp32, rounded once to dtype).
 *
 * Trusts nothing: a truncated, oversized, inconsistent or random frame gives GP_ERR_CORRUPT_DATA,
 * a frame of a different element count gives GP_ERR_INVALID_ARGUMENT; neither writes to out nor
 * reads outside in[0..in_bytes). Lossy frames decode into any of the three float dtypes; "none"
 * frames of non-float data need the same dtype. */
GP_API gp_status_t gp_codec_decode(const void* in, size_t in_bytes, void* out, size_t count,
                                   gp_dtype_t dtype, int accumulate);

/* What a frame holds, read from its header after full validation of the header and its lengths. */
typedef struct gp_frame_info_t {
  char spec[64];        /* canonical codec spec that produced it */
  gp_dtype_t dtype;     /* dtype of the encoder's input */
  uint64_t count;       /* elements */
  uint64_t kept;        /* top-k: elements sent; otherwise count */
  uint64_t frame_bytes; /* header + payload */
} gp_frame_info_t;

/* Fills *info from a frame. Errors as for gp_codec_decode(). */
GP_API gp_status_t gp_frame_info(const void* in, size_t in_bytes, gp_frame_info_t* info);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* GRADPACK_GRADPACK_H_ */
