// SPDX-License-Identifier: Apache-2.0
// The CollNet face of libnccl-net-gradpack.so (NCCL 2.28.9's ncclCollNet_v11_t,
// src/include/plugin/net/net_v11.h): NCCL's node
// leaders form a gradpack communicator in connect(), and iallreduce() runs gradpack's host
// all-reduce on NCCL's staging chunks, optionally compressed (GRADPACK_COLLNET_COMPRESS).
//
// These are the v11 entry points; net_plugin/plugin_exports.cc puts them (and adapters for
// v8–v10) into the exported ncclCollNetPlugin_v* tables. Every function returns an ncclResult_t
// and never throws.
#pragma once

#include <string>

#include "common/status.h"
#include "net_plugin/nccl/nccl_abi.h"

namespace gradpack::plugin::collnet {

// GRADPACK_COLLNET_COMPRESS -> the canonical codec spec CollNet's all-reduce uses ("" for
// uncompressed), with stochastic rounding forced for quantizers (collnet.cc says why). The tuner
// uses it too, to find the figures CollNet measured with that codec.
Status codec_from_setting(const std::string& text, std::string* out);

ncclResult_t init(void** ctx, uint64_t commId, ncclDebugLogger_t logFunction);
ncclResult_t devices(int* ndev);
ncclResult_t get_properties(int dev, ncclNetProperties_v11_t* props);
ncclResult_t listen(void* ctx, int dev, void* handle, void** listenComm);
ncclResult_t connect(void* handles[], int nranks, int rank, void* listenComm, void** collComm);
ncclResult_t reduce_support(ncclDataType_t dataType, ncclRedOp_t redOp, int* supported);
ncclResult_t reg_mr(void* collComm, void* data, size_t size, int type, void** mhandle);
ncclResult_t dereg_mr(void* collComm, void* mhandle);
ncclResult_t iallreduce(void* collComm, void* sendData, void* recvData, size_t count,
                        ncclDataType_t dataType, ncclRedOp_t redOp, void* sendMhandle,
                        void* recvMhandle, void** request);
ncclResult_t iflush(void* collComm, void* data, int size, void* mhandle, void** request);
ncclResult_t test(void* request, int* done, int* size);
ncclResult_t close_coll(void* collComm);
ncclResult_t close_listen(void* listenComm);
ncclResult_t finalize(void* ctx);

}  // namespace gradpack::plugin::collnet
