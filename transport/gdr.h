// SPDX-License-Identifier: Apache-2.0
// GPUDirect RDMA: whether an RDMA device may be handed GPU memory, decided from facts that can be
// read without any GPU library (the net plugin never links CUDA).
//
// The facts are the ones NCCL's own IB transport looks at (NCCL 2.28.9 src/transport/net_ib.cc,
// ibGdrSupportInitOnce and ncclIbDmaBufSupport):
// - a peer-memory module is loaded: /sys/kernel/mm/memory_peers/nv_mem/version or
//   .../nv_mem_nc/version (the legacy nv_peer_mem) or /sys/module/nvidia_peermem/version. Then
//   ibv_reg_mr accepts a CUDA device pointer.
// - DMA-BUF: the loaded libibverbs exports ibv_reg_dmabuf_mr (rdma-core 34 and later) and the
//   device's kernel driver implements it: a probe registration with fd -1 fails with EBADF (or
//   anything but EOPNOTSUPP / EPROTONOSUPPORT). Then NCCL can register GPU memory by its dma-buf fd.
// Whether the GPU and its driver can export a dma-buf is NCCL's own check, made before it calls
// regMrDmaBuf; the plugin only says what the NIC side can do.
#pragma once

#include <string>

#include "common/status.h"

namespace gradpack::transport {

enum class GdrMode { kAuto, kOff };  // GRADPACK_GDR

// "auto" or "off"; kInvalidArgument naming GRADPACK_GDR otherwise.
Status parse_gdr_mode(const std::string& text, GdrMode* out);

struct GdrFacts {
  bool peer_memory = false;    // nvidia-peermem / nv_peer_mem loaded
  bool dmabuf_verbs = false;   // libibverbs exports ibv_reg_dmabuf_mr
  bool dmabuf_kernel = false;  // the device's driver accepted the probe
};

struct GdrSupport {
  bool cuda = false;    // NCCL_PTR_CUDA: ibv_reg_mr of a device pointer, iflush needed
  bool dmabuf = false;  // NCCL_PTR_DMABUF: regMrDmaBuf
  bool operator==(const GdrSupport&) const = default;
};

// The one rule, for every ibverbs device. off: nothing. auto: DMA-BUF needs both the symbol and
// the kernel; CUDA memory needs a peer-memory module or DMA-BUF (as NCCL's IB transport reports
// CUDA|DMABUF for a DMA-BUF capable device without nvidia-peermem).
GdrSupport decide_gdr(GdrMode mode, const GdrFacts& facts);

// True when one of the peer-memory files exists under `sysfs_root` ("/sys" on a real machine;
// tests pass a directory of their own).
bool peer_memory_loaded(const std::string& sysfs_root = "/sys");

// "none", "cuda", "cuda+dmabuf" for logs.
const char* gdr_name(const GdrSupport& support);

}  // namespace gradpack::transport
