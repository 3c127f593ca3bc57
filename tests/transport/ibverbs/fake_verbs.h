// SPDX-License-Identifier: Apache-2.0
// A software HCA behind a VerbsApi, for testing the ib connection protocol on a machine without
// RDMA hardware. One device with one InfiniBand port; RC queue pairs of this process are connected
// by QP number. RDMA writes copy at post time (after checking rkey and bounds), SENDs consume the
// peer's next posted receive. Protocol errors a real HCA would punish are errors here too: a SEND
// without a posted receive (RNR), a send queue or CQ overrun, posting on a QP not at RTS, an
// unknown key; a send to a destroyed or never-connected QP completes with a retry error. RDMA reads
// copy at post time too (the flush of GPUDirect receives reads through a QP connected to itself).
#pragma once

#include <infiniband/verbs.h>

#include <cstdint>
#include <memory>
#include <string>

#include "transport/ibverbs/verbs_loader.h"

namespace gradpack::transport::fake {

struct Options {
  uint32_t max_msg_sz = 1 << 30;
  int max_qp_wr = 1024;
  // Exports ibv_reg_dmabuf_mr and accepts it (the probe with fd -1 fails with EBADF, as a DMA-BUF
  // capable kernel does; any open fd is taken for a dma-buf and [iova, iova + length) registered).
  bool dmabuf = false;
};

// Installs a fresh fake (replacing any previous one) and returns its VerbsApi.
std::shared_ptr<const VerbsApi> install(const Options& options);

// Counters for leak and protocol checks.
struct Stats {
  int live_mrs = 0;
  int live_qps = 0;
  int live_cqs = 0;
  int rdma_writes = 0;
  int rdma_reads = 0;
  int dmabuf_mrs = 0;  // registered through ibv_reg_dmabuf_mr (live or not)
  int sends = 0;
  uint64_t max_write_bytes = 0;
  std::string violation;  // first protocol violation seen, "" if none
};
Stats stats();

}  // namespace gradpack::transport::fake
