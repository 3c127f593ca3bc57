// SPDX-License-Identifier: Apache-2.0
// Memory the interposer gives back without waiting for the device: a communicator's buffers are
// released once the event of its last call has completed (polled at each interposer call, never
// waited on), so destroying or aborting a communicator never blocks on a hung kernel or a dead
// peer, and never frees memory a queued kernel still uses. After an abort whose work never
// completes, the memory is kept: a leak, not a crash.
//
// Pinned host memory is never returned to CUDA at all (cudaFreeHost waits for the device): the
// interposer's small host slots go to a free list and serve the next communicator.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/status.h"
#include "net_plugin/interposer/device.h"

namespace gradpack::interposer {

struct Release {
  int device = 0;
  cudaEvent_t after = nullptr;  // null: nothing queued uses the memory; destroyed with the rest
  std::vector<void*> memory;    // Device::alloc'd
  std::unique_ptr<Scratch> scratch;
  uint8_t* host_slot = nullptr;  // take_host_slot's
};

// Queues `r`; what is already due is released now.
void release_later(Release r);
// Releases every queued item whose event has completed; never blocks. Cheap when none is queued.
void release_due();
// Items still waiting (tests).
size_t releases_pending();

inline constexpr size_t kHostSlotBytes = 256;
// A pinned host slot of kHostSlotBytes.
Status take_host_slot(uint8_t** out);

}  // namespace gradpack::interposer
