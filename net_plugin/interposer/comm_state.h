// SPDX-License-Identifier: Apache-2.0
// What the interposer keeps per NCCL communicator, and the three steps of a compressed call:
//
//   1. Agreement, once per call shape (count, dtype): this rank prepares what the shape needs
//      (plan, NCCL schedule, frames, accumulator, codec scratch) and votes; one tiny
//      pncclAllReduce of (ok, hash, ~hash) with ncclMin tells every rank whether all voted yes
//      with the same wire settings. The result is the path of that shape on every rank: gradpack
//      or NCCL, all together. This is the one host wait of the interposer, once per shape.
//      After it, a failure is an error returned to the caller, never a silent switch to NCCL
//      (peers are already in the other path).
//   2. The call, with no host wait: ordered after the previous call on the communicator (an
//      event, when it came on another stream: calls share the frames), the plan's groups and
//      kernels on the caller's stream, the sticky decode check copied back, an event recorded.
//   3. A later call (or ncclCommGetAsyncError) reads the copied check once that event has
//      completed: a bad frame becomes a sticky error of the communicator.
//
// Error feedback: one residual per key (the caller's key from gradpackNcclSetResidualKey, else the
// output buffer's address) and count and dtype, fp32 or bf16 (GRADPACK_RESIDUAL_BITS), in a
// least-recently-used cache capped at GRADPACK_RESIDUAL_MAX_BYTES.
//
// Lifetime: shared by the interposer's table and each call in flight; abort marks it and drops
// the table's reference without waiting; memory is released once the last call's event has
// completed (release.h), never by waiting for the device.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "common/status.h"
#include "net_plugin/interposer/config.h"
#include "net_plugin/interposer/device.h"
#include "net_plugin/interposer/nccl_api.h"
#include "net_plugin/interposer/nccl_executor.h"

namespace gradpack::interposer {

enum class Path { kUnknown, kGradpack, kNccl };

// One compressed call as the state runs it.
struct CallArgs {
  const void* send = nullptr;
  void* recv = nullptr;
  size_t count = 0;
  gp_dtype_t dtype = GP_FLOAT32;
  bool avg = false;
  uint64_t key = 0;  // 0: keyed by recv
  cudaStream_t stream = nullptr;
  bool capturing = false;
};

class CommState {
 public:
  CommState(const NcclApi& api, ncclComm_t comm, int rank, int nranks, int device,
            const Config& config);
  ~CommState();
  CommState(const CommState&) = delete;
  CommState& operator=(const CommState&) = delete;

  int device_id() const { return device_; }

  // The agreed path of a shape; kUnknown before its agreement.
  Path path(size_t count, gp_dtype_t dtype);
  // Step 1 for a shape still kUnknown. `vote_no`: why this rank will not compress (null: it
  // will, if it can prepare). *path: what every rank does. An error (NCCL failed, the
  // communicator was aborted) leaves the shape kUnknown.
  Status agree(size_t count, gp_dtype_t dtype, const char* vote_no, cudaStream_t stream,
               Path* path);
  // Step 2 for a kGradpack shape.
  Status all_reduce(const CallArgs& call);

  // Any thread, never blocks: in-flight and later calls fail.
  void abort() { aborted_.store(true); }
  // Step 3 without a call: the sticky error if the checks copied back so far show one.
  Status async_error();
  // Drops every residual: the next call starts error feedback from zero (and frees them on its
  // stream).
  void reset_residuals();

 private:
  struct Prepared;
  struct Residual {
    void* data = nullptr;
    size_t bytes = 0;
  };
  using ShapeKey = std::pair<size_t, int>;
  using ResidualKey = std::tuple<uint64_t, size_t, int>;

  Status prepare(size_t count, gp_dtype_t dtype, cudaStream_t stream,
                 std::unique_ptr<Prepared>* out);
  Status grow(void** buffer, size_t* have, size_t want, cudaStream_t stream);
  Status vote(bool yes, cudaStream_t stream, bool* all_yes);
  Status poll_check();
  // The residual of this call (allocated on first use unless capturing); null when error
  // feedback is off or its memory could not be had (this call then runs without it).
  void* residual_for(const CallArgs& call);
  // Frees the least recently used residuals until at most `target` bytes remain.
  void evict_residuals_to(size_t target, cudaStream_t stream);
  void finish_call(cudaStream_t stream, bool capturing);
  // The previous call's end, waited for on `stream` when it ran on another; done_ recorded on
  // `stream` as the latest end.
  Status after_previous(cudaStream_t stream, bool capturing);
  Status mark_done(cudaStream_t stream, bool capturing);
  void remember_path(const ShapeKey& key, Path path, std::unique_ptr<Prepared> prepared);

  const NcclApi& api_;
  ncclComm_t comm_;
  int rank_;
  int nranks_;
  int device_;
  Config config_;
  CodecSpec worker_spec_;  // the rank's own stochastic-rounding stream (as the communicator)
  CodecSpec server_spec_;
  uint64_t worker_encodes_ = 0;
  uint64_t server_encodes_ = 0;
  std::atomic<bool> aborted_{false};

  std::mutex mu_;  // one call at a time per communicator (NCCL's own rule too)
  // Agreed shapes, oldest first; the same calls on every rank give the same table, so a shape
  // dropped for room is agreed again on every rank alike.
  std::map<ShapeKey, std::pair<Path, std::unique_ptr<Prepared>>> paths_;
  std::list<ShapeKey> path_order_;
  // Residuals, most recently used first.
  std::list<std::pair<ResidualKey, Residual>> residuals_;
  std::map<ResidualKey, std::list<std::pair<ResidualKey, Residual>>::iterator> residual_index_;
  size_t residual_bytes_ = 0;
  uint64_t residuals_created_ = 0;
  uint64_t residuals_evicted_ = 0;
  bool warned_no_residual_ = false;
  bool reset_pending_ = false;

  // Device memory shared by every shape (grown stream-ordered).
  void* frames_ = nullptr;
  size_t frames_bytes_ = 0;
  void* accum_ = nullptr;
  size_t accum_bytes_ = 0;
  void* wide_residual_ = nullptr;  // fp32 scratch of a bf16 residual's segment
  size_t wide_residual_bytes_ = 0;
  void* vote_ = nullptr;   // 3 uint64 of the agreement
  void* check_ = nullptr;  // sticky decode check
  std::unique_ptr<Scratch> scratch_;
  // Pinned host memory: [0, 64) the vote, [64, 64 + check_bytes) the check's copy.
  uint8_t* host_ = nullptr;
  cudaEvent_t done_ = nullptr;  // recorded at the end of every call
  bool has_previous_ = false;
  bool check_copied_ = false;  // a call has copied the check back since (read once done_ is)
  cudaStream_t last_stream_ = nullptr;
  Status sticky_;
};

}  // namespace gradpack::interposer
