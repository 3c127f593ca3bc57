// SPDX-License-Identifier: Apache-2.0
#include "stub_nccl.h"

extern "C" {

__attribute__((visibility("default"))) StubNcclLog* stub_nccl_log() {
  static StubNcclLog log;
  return &log;
}

__attribute__((visibility("default"))) ncclResult_t pncclAllReduce(const void* send, void* recv,
                                                                   size_t count,
                                                                   ncclDataType_t dtype,
                                                                   ncclRedOp_t op, ncclComm_t comm,
                                                                   cudaStream_t stream) {
  StubNcclLog* l = stub_nccl_log();
  ++l->all_reduce_calls;
  l->send = send;
  l->recv = recv;
  l->count = count;
  l->dtype = dtype;
  l->op = op;
  l->comm = comm;
  l->stream = stream;
  return l->result;
}

__attribute__((visibility("default"))) ncclResult_t pncclSend(const void*, size_t, ncclDataType_t,
                                                              int, ncclComm_t, cudaStream_t) {
  return ncclInternalError;  // a compressed call never reaches here in this test
}
__attribute__((visibility("default"))) ncclResult_t pncclRecv(void*, size_t, ncclDataType_t, int,
                                                              ncclComm_t, cudaStream_t) {
  return ncclInternalError;
}
__attribute__((visibility("default"))) ncclResult_t pncclGroupStart() {
  ++stub_nccl_log()->group_starts;
  return ncclSuccess;
}
__attribute__((visibility("default"))) ncclResult_t pncclGroupEnd() {
  ++stub_nccl_log()->group_ends;
  return ncclSuccess;
}
__attribute__((visibility("default"))) ncclResult_t pncclGroupSimulateEnd(ncclSimInfo_t*) {
  ++stub_nccl_log()->simulate_ends;
  return ncclSuccess;
}
__attribute__((visibility("default"))) ncclResult_t pncclCommGetAsyncError(ncclComm_t,
                                                                          ncclResult_t* error) {
  ++stub_nccl_log()->async_error_queries;
  *error = ncclSuccess;
  return ncclSuccess;
}
__attribute__((visibility("default"))) ncclResult_t pncclCommCount(const ncclComm_t, int* count) {
  *count = stub_nccl_log()->nranks;
  return ncclSuccess;
}
__attribute__((visibility("default"))) ncclResult_t pncclCommUserRank(const ncclComm_t, int* rank) {
  *rank = 0;
  return ncclSuccess;
}
__attribute__((visibility("default"))) ncclResult_t pncclCommDestroy(ncclComm_t) {
  ++stub_nccl_log()->destroys;
  return ncclSuccess;
}
__attribute__((visibility("default"))) ncclResult_t pncclCommAbort(ncclComm_t) {
  ++stub_nccl_log()->aborts;
  return ncclSuccess;
}
__attribute__((visibility("default"))) const char* pncclGetErrorString(ncclResult_t) {
  return "fake";
}

}  // extern "C"
