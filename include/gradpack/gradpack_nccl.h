/* SPDX-License-Identifier: Apache-2.0 */
/* What a framework may tell libgradpack-nccl.so (the ncclAllReduce interposer) without
 * environment variables. Each function is exported by the interposer only, so a framework that
 * must also run without it looks them up at run time:
 *
 *   typedef void (*set_key_fn)(uint64_t);
 *   set_key_fn set_key = (set_key_fn)dlsym(RTLD_DEFAULT, "gradpackNcclSetResidualKey");
 *   if (set_key) set_key(bucket_index + 1);
 *   ncclAllReduce(...);
 *
 * Error feedback keeps, per communicator, one residual (what compression left out, added to the
 * next call's input) per key. Without a key it is the output buffer's address, which a caching
 * allocator may give to another tensor (which then inherits the residual) and which changes when
 * buckets are rebuilt (each rebuild leaving a model's worth of residuals behind until
 * GRADPACK_RESIDUAL_MAX_BYTES drops them). A stable key per bucket avoids both. */
#ifndef GRADPACK_GRADPACK_NCCL_H_
#define GRADPACK_GRADPACK_NCCL_H_

#include <nccl.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The residual key of the next ncclAllReduce issued by the calling thread (one call only; 0:
 * the output buffer's address, the default). Keys are per communicator, count and dtype. */
void gradpackNcclSetResidualKey(uint64_t key);

/* Drops every residual of comm: its next calls start error feedback from zero (after loading a
 * checkpoint, say). ncclInvalidArgument for a NULL comm; ncclSuccess when comm has none. */
ncclResult_t gradpackNcclResetResiduals(ncclComm_t comm);

#ifdef __cplusplus
}
#endif

#endif /* GRADPACK_GRADPACK_NCCL_H_ */
