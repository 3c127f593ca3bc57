// SPDX-License-Identifier: Apache-2.0
// The tuner face of libnccl-net-gradpack.so (NCCL 2.28.9's ncclTuner_v5_t,
// src/include/plugin/tuner/tuner_v5.h):
// adjusts NCCL's cost table from gradpack's cost model. Never returns an error from getCollInfo;
// GRADPACK_TUNER=off leaves every table as NCCL made it.
#pragma once

#include "net_plugin/nccl/nccl_abi.h"

namespace gradpack::plugin::tuner {

ncclResult_t init(void** ctx, uint64_t commId, size_t nRanks, size_t nNodes,
                  ncclDebugLogger_t logFunction, ncclNvlDomainInfo_v5_t* nvlDomainInfo,
                  ncclTunerConstants_v5_t* constants);
ncclResult_t get_coll_info(void* context, ncclFunc_t collType, size_t nBytes, int numPipeOps,
                           float** collCostTable, int numAlgo, int numProto, int regBuff,
                           int* nChannels);
ncclResult_t finalize(void* context);

}  // namespace gradpack::plugin::tuner
