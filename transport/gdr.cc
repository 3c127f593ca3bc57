// SPDX-License-Identifier: Apache-2.0
#include "transport/gdr.h"

#include <unistd.h>

namespace gradpack::transport {

Status parse_gdr_mode(const std::string& text, GdrMode* out) {
  if (text == "auto") {
    *out = GdrMode::kAuto;
  } else if (text == "off") {
    *out = GdrMode::kOff;
  } else {
    return InvalidArgument("GRADPACK_GDR=" + text + " is not one of auto, off");
  }
  return OkStatus();
}

GdrSupport decide_gdr(GdrMode mode, const GdrFacts& facts) {
  GdrSupport support;
  if (mode == GdrMode::kOff) return support;
  support.dmabuf = facts.dmabuf_verbs && facts.dmabuf_kernel;
  support.cuda = facts.peer_memory || support.dmabuf;
  return support;
}

bool peer_memory_loaded(const std::string& sysfs_root) {
  // The files NCCL's IB transport checks (src/transport/net_ib.cc, ibGdrSupportInitOnce).
  static const char* const kFiles[] = {
      "/kernel/mm/memory_peers/nv_mem/version",
      "/kernel/mm/memory_peers/nv_mem_nc/version",
      "/module/nvidia_peermem/version",
  };
  for (const char* file : kFiles) {
    if (access((sysfs_root + file).c_str(), F_OK) == 0) return true;
  }
  return false;
}

const char* gdr_name(const GdrSupport& support) {
  if (support.dmabuf) return "cuda+dmabuf";
  return support.cuda ? "cuda" : "none";
}

}  // namespace gradpack::transport
