/* SPDX-License-Identifier: Apache-2.0 */
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

#include "gradpack/version.h" /* GRADPACK_VERSION, GRADPACK_VERSION_MAJOR/_MINOR/_PATCH */

#if defined(_WIN32)
#define GP_API
#else
#define GP_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

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

/* The library's version, "MAJOR.MINOR.PATCH" (the GRADPACK_VERSION it was built with), which may
 * differ from the GRADPACK_VERSION of the header a program was compiled against. Never NULL. */
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

/* ---------------------------------------------------------------------------------------------
 * Communicators and collectives on host memory (docs/collectives.md, docs/algorithms.md)
 *
 * A communicator is nranks processes (or threads) that found each other through a rendezvous
 * and hold transport connections (TCP, or ibverbs where an RDMA device exists). Collectives are
 * blocking and collective: every rank calls the same ones in the same order with the same count,
 * dtype and op; ranks that disagree get GP_ERR_INVALID_ARGUMENT naming the difference, not wrong
 * data. GRADPACK_TIMEOUT_MS bounds every wait: a dead or silent peer is GP_ERR_REMOTE or
 * GP_ERR_TIMEOUT on every surviving rank. After such an error the communicator is unusable:
 * destroy it.
 *
 * Thread-safety: one communicator runs one collective at a time. A call made while another thread
 * is inside a collective of the same communicator is refused with GP_ERR_INVALID_ARGUMENT (it does
 * not wait); distinct communicators may be used from distinct threads at once.
 * ------------------------------------------------------------------------------------------- */
typedef struct gp_comm gp_comm_t;

/* Reduction operations. Values are part of the ABI and of the wire format. GP_AVG is the sum
 * divided by nranks (integers truncate toward zero). */
typedef enum gp_redop_t { GP_SUM = 0, GP_PROD = 1, GP_MIN = 2, GP_MAX = 3, GP_AVG = 4 } gp_redop_t;

/* Algorithms (docs/algorithms.md). GP_ALGO_AUTO lets the selector choose (GRADPACK_ALGO, when
 * set, overrides it). */
typedef enum gp_algo_t {
  GP_ALGO_AUTO = 0,
  GP_ALGO_RING = 1,
  GP_ALGO_HD = 2,     /* recursive halving-doubling */
  GP_ALGO_TREE = 3,   /* pipelined double binary tree */
  GP_ALGO_HIER = 4,   /* host-local reduce, inter-host algorithm among leaders, local broadcast;
                         with a codec: uncompressed inside a host, compressed between hosts */
  GP_ALGO_DIRECT = 5, /* compressed only: reduce-scatter straight to each chunk's owner, which
                         re-encodes the reduced chunk once; then all-gather of the encoded chunks */
  GP_ALGO_SPARSE = 6  /* top-k only: all-gather of every rank's sparse frame, local scatter-add */
} gp_algo_t;

/* Options of gp_allreduce(). Fill with gp_allreduce_opts_init() first, then change fields: new
 * fields are added at the end, so code written against an older header keeps working.
 *
 * Compression (docs/algorithms.md "Compressed all-reduce"): `codec` is NULL (take
 * GRADPACK_COMPRESS, "off" by default), "off" or "none" (uncompressed), any codec spec
 * ("q8", "q4:block=128", "topk:0.01+q8", ...), "auto" or "auto:<spec>" (compress with <spec>,
 * q8 by default, only where the model measured at init predicts it is faster; the decision is the
 * same on every rank). Lossy codecs take GP_FLOAT32, GP_FLOAT16 and GP_BFLOAT16 with GP_SUM or
 * GP_AVG; the result is identical on every rank. With error feedback, what a call did not send is
 * kept per `key` and added to the next call with that key, so the sum over steps is exact. */
typedef struct gp_allreduce_opts_t {
  size_t struct_size;   /* sizeof(gp_allreduce_opts_t) of the caller's header, set by init */
  gp_algo_t algorithm;  /* GP_ALGO_AUTO */
  size_t segment_bytes; /* pipelining grain; 0: the library's default */
  const char* codec;    /* NULL: GRADPACK_COMPRESS */
  int error_feedback;   /* -1: GRADPACK_ERROR_FEEDBACK (on for lossy codecs); 0 off; 1 on */
  const char* key;      /* names the gradient bucket whose residual this call uses; NULL: keyed
                           by communicator, recv address and count */
  int residual_bits;    /* 0: GRADPACK_RESIDUAL_BITS (32); 32: fp32 residuals (4 bytes per
                           element), 16: bf16 residuals (2 bytes per element) */
} gp_allreduce_opts_t;

GP_API void gp_allreduce_opts_init(gp_allreduce_opts_t* opts);

/* Joins communicator `rank` of `nranks`. rendezvous: "tcp://HOST:PORT" (rank 0 serves the store
 * on that address, the others connect to it) or "file:///PATH" (a directory every rank can
 * see). The caller owns *out and frees it with gp_comm_destroy(). */
GP_API gp_status_t gp_comm_init(int rank, int nranks, const char* rendezvous, gp_comm_t** out);

/* gp_comm_init() from the environment: GRADPACK_RANK, GRADPACK_WORLD_SIZE and GRADPACK_ROOT
 * (HOST:PORT, or a rendezvous URL); else torchrun's RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT;
 * else Open MPI's OMPI_COMM_WORLD_RANK/SIZE or Slurm's SLURM_PROCID/SLURM_NTASKS with
 * GRADPACK_ROOT or MASTER_ADDR/MASTER_PORT. */
GP_API gp_status_t gp_comm_init_from_env(gp_comm_t** out);

/* Closes the connections and frees comm (NULL is a no-op). */
GP_API gp_status_t gp_comm_destroy(gp_comm_t* comm);

/* -1 for a NULL comm. */
GP_API int gp_comm_rank(const gp_comm_t* comm);
GP_API int gp_comm_size(const gp_comm_t* comm);

/* recv[i] = send[i] of rank 0 (op) ... (op) send[i] of rank nranks-1, on every rank. In place when
 * send == recv. opts may be NULL (defaults). */
GP_API gp_status_t gp_allreduce(gp_comm_t* comm, const void* send, void* recv, size_t count,
                                gp_dtype_t dtype, gp_redop_t op, const gp_allreduce_opts_t* opts);

/* send holds nranks*recvcount elements; rank r receives the reduction of block r. In place when
 * recv == (char*)send + rank*recvcount*size. */
GP_API gp_status_t gp_reduce_scatter(gp_comm_t* comm, const void* send, void* recv,
                                     size_t recvcount, gp_dtype_t dtype, gp_redop_t op);

/* recv holds nranks*sendcount elements: block r is rank r's send. In place when
 * send == (char*)recv + rank*sendcount*size. */
GP_API gp_status_t gp_allgather(gp_comm_t* comm, const void* send, void* recv, size_t sendcount,
                                gp_dtype_t dtype);

/* recv = root's send on every rank (send is read on the root only; in place when send == recv). */
GP_API gp_status_t gp_broadcast(gp_comm_t* comm, const void* send, void* recv, size_t count,
                                gp_dtype_t dtype, int root);

/* Point-to-point, called by every rank (like nccl-tests' sendrecv): sends count elements of send
 * to rank send_peer and receives count elements from rank recv_peer into recv, both at once.
 * Every rank passes the same count and dtype; send and recv must not overlap. A rank whose peers
 * are itself copies. */
GP_API gp_status_t gp_sendrecv(gp_comm_t* comm, const void* send, int send_peer, void* recv,
                               int recv_peer, size_t count, gp_dtype_t dtype);

/* Returns once every rank has entered it. */
GP_API gp_status_t gp_barrier(gp_comm_t* comm);

/* ---------------------------------------------------------------------------------------------
 * Groups (docs/collectives.md "Groups"), as NCCL's ncclGroupStart/ncclGroupEnd
 *
 * Between gp_group_start() and the matching gp_group_end() the collectives a thread calls
 * (gp_allreduce, gp_reduce_scatter, gp_allgather, gp_broadcast, gp_sendrecv, gp_barrier) are
 * checked and queued, not run: each returns GP_OK once queued. gp_group_end() runs them. The
 * uncompressed all-reduces of a group on one communicator (codec off, or "none" with an
 * uncompressed algorithm) that share dtype, op, algorithm and segment_bytes are packed into one
 * buffer and reduced by one all-reduce (buffers of at most GRADPACK_GROUP_FUSE_BYTES; a larger
 * call runs on its own), so many small all-reduces cost about one's latency. Every other call
 * (compressed or "auto" all-reduces, a bucket that still owes an error-feedback residual, the
 * other collectives) runs on its own, in the order it was queued. The results are those of the
 * same calls made one by one.
 *
 * The group belongs to the calling thread (like NCCL's): it may span communicators, whose queues
 * run one communicator after the other in the order each was first used in the group; calls of
 * other threads are not part of it. Groups nest: only the outermost gp_group_end() runs the
 * calls. Every rank must make the same calls in the same groups (the collective rule above).
 *
 * The calls of a group are independent: no call may read or write memory another call of the
 * group writes. Their buffers must stay valid, and unchanged, until gp_group_end() returns.
 * In-place (send == recv) and out-of-place calls mix freely, counts of 0 included.
 *
 * Errors: a call that is invalid (NULL buffers, dtype, op, root, peers, options) is refused when
 * it is made, with its error, and spoils the group: the outermost gp_group_end() then runs
 * nothing (on this thread), discards the queue and returns that first error. Ranks whose calls
 * were valid will run theirs and fail like any collective a peer does not join. An error while
 * the group runs stops that communicator's queue (a failed collective breaks the communicator);
 * gp_group_end() returns the first error. gp_comm_stats counts a packed all-reduce once. The
 * other calls of this API (init, destroy, statistics, residuals) run at once inside a group;
 * destroying a communicator drops its calls from this thread's group.
 * ------------------------------------------------------------------------------------------- */

/* Opens a group (or a nested one) on the calling thread. Never fails. */
GP_API gp_status_t gp_group_start(void);

/* Closes the innermost group; the outermost runs every queued call and returns the first error
 * (see above). Without an open group: GP_ERR_INVALID_ARGUMENT. */
GP_API gp_status_t gp_group_end(void);

/* Counters of one communicator since init. Set struct_size = sizeof(gp_comm_stats_t) first. */
typedef struct gp_comm_stats_t {
  size_t struct_size;
  uint64_t collectives;      /* calls completed */
  uint64_t bytes_sent;       /* bytes this rank handed to the transport, headers included */
  uint64_t bytes_received;   /* bytes this rank received */
  uint64_t compressed_calls; /* all-reduces that ran compressed */
  uint64_t bypassed_calls;   /* all-reduces "auto" sent uncompressed */
  uint64_t residual_bytes;   /* memory held by error-feedback residuals */
  uint64_t residual_keys;    /* buckets with a residual */
  char last_algorithm[16];   /* algorithm of the last collective ("ring", "direct", ...) */
  char last_codec[64];       /* canonical codec spec of the last all-reduce ("none" if it was
                                not compressed) */
  /* Added later: a caller built with an older header (a smaller struct_size) gets the fields
     above only. */
  uint64_t plan_rebuilds;    /* times the large all-reduce plan was rebuilt after the ranks'
                                agreed link rates changed (GRADPACK_REPLAN) */
  uint64_t link_checks;      /* agreements on the measured link rates (GRADPACK_REPLAN_BYTES) */
} gp_comm_stats_t;

GP_API gp_status_t gp_comm_stats(const gp_comm_t* comm, gp_comm_stats_t* stats);

/* Where the cluster topology a communicator follows came from (GRADPACK_TOPOLOGY,
 * docs/topology.md). Never renumbered. */
typedef enum gp_topology_origin_t {
  GP_TOPOLOGY_FLAT = 0, /* no switches: off, fewer than 4 hosts, or a probe that found none */
  GP_TOPOLOGY_FILE = 1, /* a cluster file */
  GP_TOPOLOGY_PROBE = 2 /* measured at init by the cluster probe (auto) */
} gp_topology_origin_t;

/* The cluster topology of a communicator, the same on every rank. Set struct_size =
 * sizeof(gp_comm_topology_t) first. */
typedef struct gp_comm_topology_t {
  size_t struct_size;
  gp_topology_origin_t origin;
  double probe_seconds; /* wall time of the cluster probe at init (the slowest rank's); 0: none */
  char detail[512];     /* the file's path, what the probe found, or why the cluster is flat (cut
                           to fit, NUL-terminated) */
} gp_comm_topology_t;

/* Fills *topology (may be NULL), and writes the cluster as the text of a gradpack cluster file
 * (docs/topology.md; "" when flat) to cluster_text, NUL-terminated; *length (may be NULL) is its
 * length without the NUL. cluster_text == NULL with capacity 0 only sets *length; a capacity
 * below *length + 1 is GP_ERR_INVALID_ARGUMENT with *length set and nothing written. */
GP_API gp_status_t gp_comm_topology(const gp_comm_t* comm, gp_comm_topology_t* topology,
                                    char* cluster_text, size_t capacity, size_t* length);

/* Error-feedback state of a communicator, for checkpoints. Save writes every residual of this
 * rank (keys, counts, values) in a versioned format; load replaces the communicator's residuals
 * with those saved, and refuses (GP_ERR_INVALID_ARGUMENT, nothing changed) data of another format
 * version, world size or rank, or bytes that are not such data (GP_ERR_CORRUPT_DATA). A residual
 * whose count differs from the count of the call that later uses its key is refused then. Keys
 * that name a buffer address (opts.key == NULL) are saved too, but only match in a process that
 * allocates the same addresses: name your buckets to checkpoint them. Collective calls must not run
 * at the same time. */
GP_API gp_status_t gp_residuals_save(gp_comm_t* comm, const char* path);
GP_API gp_status_t gp_residuals_load(gp_comm_t* comm, const char* path);
/* The same to and from memory. buffer == NULL (capacity 0) only sets *size to the bytes needed;
 * a capacity below that is GP_ERR_INVALID_ARGUMENT with *size set. */
GP_API gp_status_t gp_residuals_save_buffer(gp_comm_t* comm, void* buffer, size_t capacity,
                                            size_t* size);
GP_API gp_status_t gp_residuals_load_buffer(gp_comm_t* comm, const void* buffer, size_t size);
/* Drops every residual (the next calls start from zero). */
GP_API gp_status_t gp_residuals_reset(gp_comm_t* comm);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* GRADPACK_GRADPACK_H_ */
