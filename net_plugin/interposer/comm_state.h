// SPDX-License-Identifier: Apache-2.0
// What the interposer keeps per NCCL communicator: the compressed direct plan and its NCCL
// schedule per (count, dtype), device memory for frames and the fp32 accumulator, the
// error-feedback residuals keyed by (recvbuff, count, dtype), and the CUDA codecs' workspace.
// Created at the communicator's first eligible call, freed when the communicator is destroyed or
// aborted.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "net_plugin/interposer/nccl_executor.h"
#include "common/status.h"
#include "compression/cuda/codec_cuda.h"
#include "net_plugin/interposer/config.h"
#include "net_plugin/interposer/nccl_api.h"

namespace gradpack::interposer {

// cudaMalloc'd memory that frees itself; grows by reallocating (contents not kept).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  Status reserve(size_t bytes);
  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

class CommState {
 public:
  CommState(ncclComm_t comm, int rank, int nranks, const Config& config);
  CommState(const CommState&) = delete;
  CommState& operator=(const CommState&) = delete;

  int nranks() const { return nranks_; }

  // Runs one eligible all-reduce (sum, or avg: the sum divided by nranks) on `stream`.
  // *issued_messages tells whether peers may already be waiting on this rank (see
  // run_nccl_schedule): when false after an error the caller can still hand the call to NCCL.
  Status all_reduce(const NcclApi& api, const void* send, void* recv, size_t count,
                    gp_dtype_t dtype, bool avg, cudaStream_t stream, bool* issued_messages);

 private:
  struct Prepared {
    coll::Plan plan;
    coll::NcclSchedule schedule;
    std::vector<size_t> frame_offset;  // bytes into frames_, 256-byte aligned
    size_t frame_bytes = 0;
  };
  Status prepare(size_t count, gp_dtype_t dtype, Prepared** out);

  ncclComm_t comm_;
  int rank_;
  int nranks_;
  Config config_;
  CodecSpec worker_spec_;  // the rank's own stochastic-rounding stream (as the communicator)
  CodecSpec server_spec_;
  uint64_t worker_encodes_ = 0;
  uint64_t server_encodes_ = 0;
  std::mutex mu_;  // one call at a time per communicator (NCCL's own rule too)
  std::map<std::pair<size_t, int>, std::unique_ptr<Prepared>> prepared_;
  std::map<std::tuple<void*, size_t, int>, std::unique_ptr<DeviceBuffer>> residuals_;
  DeviceBuffer frames_;
  DeviceBuffer accum_;
  cuda::Workspace workspace_;
};

}  // namespace gradpack::interposer
