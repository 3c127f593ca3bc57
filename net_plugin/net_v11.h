// SPDX-License-Identifier: Apache-2.0
// The net face of libnccl-net-gradpack.so: NCCL's v11 net API (NCCL 2.28.9's ncclNet_v11_t,
// §1.6) mapped onto gradpack's transport one call to one call. plugin_exports.cc puts these into
// ncclNetPlugin_v11 and builds the v8–v10 tables as adapters over them.
//
// What NCCL may rely on:
// - listen, connect and accept never block. connect/accept return ncclSuccess with a NULL comm
//   while the connection is being made; NCCL calls again with the same handle bytes.
// - Each comm allows NCCL_NET_MAX_REQUESTS (32) requests in flight; a further isend/irecv returns
//   ncclSuccess with *request NULL, and NCCL retries. irecv always overwrites *request (NCCL may
//   preset it to 0x1, the "optional completion" hint).
// - Messages match in posting order; the receive's tag must equal the send's and its size must
//   hold the message: otherwise test() fails with ncclInvalidUsage and a WARN (never a write past
//   the posted buffer). A peer that closes mid-transfer fails test() with ncclRemoteError.
// - Memory: ptrSupport is NCCL_PTR_HOST on TCP devices; on ibverbs devices it adds NCCL_PTR_CUDA
//   (and NCCL_PTR_DMABUF) where GPUDirect RDMA was detected and GRADPACK_GDR is not off
//   (transport/gdr.h). regMr of CUDA memory on a device without it is ncclInternalError;
//   regMrDmaBuf with a type other than NCCL_PTR_CUDA, fd < 0 or size 0 is ncclInvalidArgument.
// - iflush: a request that test() completes once a receive into GPU memory is visible to the GPU
//   (ibverbs: a one-byte RDMA read on a loopback QP); *request NULL when there is nothing to do.
// - close* with requests in flight is safe; the requests die with the comm.
// Every function returns an ncclResult_t and never throws.
#pragma once

#include "net_plugin/nccl/nccl_abi.h"

namespace gradpack::plugin::net {

ncclResult_t init(void** ctx, uint64_t commId, ncclNetCommConfig_v11_t* config,
                  ncclDebugLogger_t logFunction, ncclProfilerCallback_t profFunction);
ncclResult_t devices(int* ndev);
ncclResult_t get_properties(int dev, ncclNetProperties_v11_t* props);
ncclResult_t listen(void* ctx, int dev, void* handle, void** listenComm);
ncclResult_t connect(void* ctx, int dev, void* handle, void** sendComm,
                     ncclNetDeviceHandle_v11_t** sendDevComm);
ncclResult_t accept(void* listenComm, void** recvComm, ncclNetDeviceHandle_v11_t** recvDevComm);
ncclResult_t reg_mr(void* comm, void* data, size_t size, int type, void** mhandle);
ncclResult_t reg_mr_dma_buf(void* comm, void* data, size_t size, int type, uint64_t offset, int fd,
                            void** mhandle);
ncclResult_t dereg_mr(void* comm, void* mhandle);
ncclResult_t isend(void* sendComm, void* data, size_t size, int tag, void* mhandle, void* phandle,
                   void** request);
ncclResult_t irecv(void* recvComm, int n, void** data, size_t* sizes, int* tags, void** mhandles,
                   void** phandles, void** request);
ncclResult_t iflush(void* recvComm, int n, void** data, int* sizes, void** mhandles,
                    void** request);
ncclResult_t test(void* request, int* done, int* sizes);
ncclResult_t close_send(void* sendComm);
ncclResult_t close_recv(void* recvComm);
ncclResult_t close_listen(void* listenComm);
// Safe with a NULL ctx and after a failed init (which leaves *ctx NULL).
ncclResult_t finalize(void* ctx);

// The process-default ctx of the v8–v10 tables (created by their init, never finalized).
ncclResult_t legacy_init(ncclDebugLogger_t logFunction);
void* legacy_ctx();

}  // namespace gradpack::plugin::net
