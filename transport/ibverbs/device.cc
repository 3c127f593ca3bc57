// SPDX-License-Identifier: Apache-2.0
#include "transport/ibverbs/device.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <fstream>

#include "common/log.h"

namespace gradpack::transport {

RegistrationCache::RegistrationCache(Registrar registrar, size_t page_size)
    : registrar_(registrar), page_size_(page_size == 0 ? 4096 : page_size) {}

RegistrationCache::~RegistrationCache() {
  for (auto& [id, entry] : entries_) registrar_.dereg(registrar_.context, entry.handle);
}

Status RegistrationCache::acquire(const void* addr, size_t size, Key* out) {
  const uintptr_t start = reinterpret_cast<uintptr_t>(addr);
  if (start > UINTPTR_MAX - 2 * page_size_ || size > UINTPTR_MAX - 2 * page_size_ - start) {
    return InvalidArgument("cannot register a buffer that wraps the address space");
  }
  const uintptr_t begin = start / page_size_ * page_size_;
  // A zero-byte buffer still gets one page, so it has keys to put in a work request.
  const uintptr_t end =
      (start + std::max<size_t>(size, 1) + page_size_ - 1) / page_size_ * page_size_;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, entry] : entries_) {
    if (entry.begin <= begin && end <= entry.end) {
      ++entry.refs;
      *out = Key{entry.lkey, entry.rkey, id};
      return OkStatus();
    }
  }
  Entry entry;
  entry.begin = begin;
  entry.end = end;
  entry.refs = 1;
  GP_RETURN_IF_ERROR(registrar_.reg(registrar_.context, reinterpret_cast<void*>(begin), end - begin,
                                    &entry.lkey, &entry.rkey, &entry.handle));
  const uint64_t id = next_id_++;
  entries_.emplace(id, entry);
  *out = Key{entry.lkey, entry.rkey, id};
  return OkStatus();
}

void RegistrationCache::release(uint64_t id) {
  void* handle = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return;
    if (--it->second.refs > 0) return;
    handle = it->second.handle;
    entries_.erase(it);
  }
  registrar_.dereg(registrar_.context, handle);
}

size_t RegistrationCache::entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

int RegistrationCache::refs(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  return it == entries_.end() ? 0 : it->second.refs;
}

IbContext::~IbContext() {
  if (pd != nullptr) api->dealloc_pd(pd);
  if (context != nullptr) api->close_device(context);
}

namespace {

// REMOTE_READ: iflush reads a few bytes of a received GPU buffer back through the NIC.
constexpr int kMrAccess = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;

Status verbs_reg(void* context, void* addr, size_t size, uint32_t* lkey, uint32_t* rkey,
                 void** handle) {
  auto* hca = static_cast<IbContext*>(context);
  errno = 0;
  ibv_mr* mr = hca->api->reg_mr(hca->pd, addr, size, kMrAccess);
  if (mr == nullptr) {
    return SystemError("ibv_reg_mr of " + std::to_string(size) + " bytes on " + hca->name +
                       " failed (check ulimit -l)");
  }
  *lkey = mr->lkey;
  *rkey = mr->rkey;
  *handle = mr;
  return OkStatus();
}

void verbs_dereg(void* context, void* handle) {
  auto* hca = static_cast<IbContext*>(context);
  if (hca->api->dereg_mr(static_cast<ibv_mr*>(handle)) != 0) {
    GP_LOG_WARN(kNet, "ib: ibv_dereg_mr on %s failed", hca->name.c_str());
  }
}

std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

bool gid_is_zero(const ibv_gid& gid) {
  static const uint8_t zero[16] = {};
  return std::memcmp(gid.raw, zero, 16) == 0;
}

bool gid_is_ipv4_mapped(const ibv_gid& gid) {
  static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(gid.raw, prefix, 12) == 0;
}

}  // namespace

IbDevice::IbDevice(std::shared_ptr<IbContext> hca, uint8_t port, const ibv_port_attr& attr,
                   int gid_index, const ibv_gid& gid, DeviceInfo info)
    : hca_(std::move(hca)),
      port_(port),
      port_attr_(attr),
      gid_index_(gid_index),
      gid_(gid),
      info_(std::move(info)) {
  const long page = sysconf(_SC_PAGESIZE);
  cache_ = std::make_shared<RegistrationCache>(Registrar{hca_.get(), verbs_reg, verbs_dereg},
                                               page > 0 ? static_cast<size_t>(page) : 4096);
}

IbMemoryRegion::IbMemoryRegion(std::shared_ptr<IbContext> hca, ibv_mr* mr)
    : key_{mr->lkey, mr->rkey, 0}, hca_(std::move(hca)), mr_(mr), gpu_(true) {}

IbMemoryRegion::~IbMemoryRegion() {
  if (mr_ != nullptr) {
    verbs_dereg(hca_.get(), mr_);
  } else {
    cache_->release(key_.id);
  }
}

Status IbDevice::register_memory(const void* data, size_t size, MemoryKind kind,
                                 std::unique_ptr<MemoryRegion>* out) {
  if (kind == MemoryKind::kCuda && !info_.cuda_memory) {
    return Unsupported("ib: " + info_.name +
                       " cannot register CUDA memory: GPUDirect RDMA is off (GRADPACK_GDR=off, "
                       "or neither nvidia-peermem nor DMA-BUF support was found)");
  }
  RegistrationCache::Key key;
  GP_RETURN_IF_ERROR(cache_->acquire(data, size, &key));
  *out = std::make_unique<IbMemoryRegion>(cache_, key, kind == MemoryKind::kCuda);
  return OkStatus();
}

Status IbDevice::register_dmabuf(const void* data, size_t size, uint64_t offset, int fd,
                                 std::unique_ptr<MemoryRegion>* out) {
  if (fd < 0 || size == 0) {
    return InvalidArgument("ib: dma-buf registration needs an fd >= 0 and a size > 0 (got fd " +
                           std::to_string(fd) + ", size " + std::to_string(size) + ")");
  }
  if (!info_.dmabuf || api().reg_dmabuf_mr == nullptr) {
    return Unsupported("ib: " + info_.name +
                       " cannot register dma-buf memory (GRADPACK_GDR=off, a libibverbs without "
                       "ibv_reg_dmabuf_mr, or a kernel driver without DMA-BUF)");
  }
  errno = 0;
  ibv_mr* mr = api().reg_dmabuf_mr(pd(), offset, size, reinterpret_cast<uintptr_t>(data), fd,
                                   kMrAccess);
  if (mr == nullptr) {
    return SystemError("ibv_reg_dmabuf_mr of " + std::to_string(size) + " bytes at offset " +
                       std::to_string(offset) + " of fd " + std::to_string(fd) + " on " +
                       info_.name + " failed (is the fd a dma-buf exported by the GPU driver?)");
  }
  *out = std::make_unique<IbMemoryRegion>(hca_, mr);
  return OkStatus();
}

int ib_speed_mbps(uint32_t active_speed, uint8_t active_width) {
  int lane = 0;  // Mbps per lane
  switch (active_speed) {
    case 1:  // SDR
      lane = 2500;
      break;
    case 2:  // DDR
      lane = 5000;
      break;
    case 4:  // QDR
    case 8:  // FDR10
      lane = 10000;
      break;
    case 16:  // FDR
      lane = 14000;
      break;
    case 32:  // EDR
      lane = 25000;
      break;
    case 64:  // HDR
      lane = 50000;
      break;
    case 128:  // NDR
      lane = 100000;
      break;
    case 256:  // XDR
      lane = 200000;
      break;
    default:
      lane = 0;
  }
  int lanes = 0;
  switch (active_width) {
    case 1:
      lanes = 1;
      break;
    case 2:
      lanes = 4;
      break;
    case 4:
      lanes = 8;
      break;
    case 8:
      lanes = 12;
      break;
    case 16:
      lanes = 2;
      break;
    default:
      lanes = 0;
  }
  return lane * lanes;
}

int pick_roce_gid(const std::vector<GidCandidate>& candidates) {
  int best = -1;
  int best_rank = 0;
  for (const GidCandidate& c : candidates) {
    if (gid_is_zero(c.gid)) continue;
    const bool v2 = c.type.find("v2") != std::string::npos;
    const bool v4 = gid_is_ipv4_mapped(c.gid);
    const bool link_local = c.gid.raw[0] == 0xfe && (c.gid.raw[1] & 0xc0) == 0x80;
    // Higher is better; ties keep the lowest index.
    const int rank = v2 ? (v4 ? 4 : (link_local ? 2 : 3)) : 1;
    if (rank > best_rank) {
      best_rank = rank;
      best = c.index;
    }
  }
  return best;
}

namespace {

// The GID index this port uses: 0 on InfiniBand, the pick_roce_gid choice on Ethernet.
int choose_gid(const VerbsApi& api, ibv_context* context, const std::string& hca, uint8_t port,
               const ibv_port_attr& attr, ibv_gid* gid) {
  if (attr.link_layer != IBV_LINK_LAYER_ETHERNET) {
    if (api.query_gid(context, port, 0, gid) != 0) std::memset(gid, 0, sizeof(*gid));
    return 0;
  }
  std::vector<GidCandidate> candidates;
  const int count = std::min(attr.gid_tbl_len, 256);
  for (int i = 0; i < count; ++i) {
    GidCandidate c;
    c.index = i;
    if (api.query_gid(context, port, i, &c.gid) != 0) continue;
    c.type = read_line("/sys/class/infiniband/" + hca + "/ports/" + std::to_string(port) +
                       "/gid_attrs/types/" + std::to_string(i));
    candidates.push_back(c);
  }
  const int index = pick_roce_gid(candidates);
  for (const GidCandidate& c : candidates) {
    if (c.index == index) *gid = c.gid;
  }
  return index;
}

// The DMA-BUF probe of NCCL's IB transport (src/transport/net_ib.cc, ncclIbDmaBufSupport): a
// registration with fd -1 can only fail; EOPNOTSUPP or EPROTONOSUPPORT says the kernel driver
// lacks DMA-BUF, any other error (EBADF) that it has it.
GdrSupport probe_gdr(const VerbsApi& api, ibv_pd* pd, GdrMode mode, bool peer_memory) {
  GdrFacts facts;
  facts.peer_memory = peer_memory;
  facts.dmabuf_verbs = api.reg_dmabuf_mr != nullptr;
  if (facts.dmabuf_verbs && mode != GdrMode::kOff) {
    errno = 0;
    ibv_mr* mr = api.reg_dmabuf_mr(pd, 0, 0, 0, -1, 0);
    const int error = errno;
    if (mr != nullptr) api.dereg_mr(mr);
    facts.dmabuf_kernel = mr != nullptr || (error != EOPNOTSUPP && error != EPROTONOSUPPORT);
  }
  return decide_gdr(mode, facts);
}

DeviceInfo port_info(const VerbsApi& api, ibv_device* device, const std::string& hca,
                     uint8_t port, const ibv_port_attr& attr, const GdrSupport& gdr) {
  DeviceInfo info;
  info.name = hca + ":" + std::to_string(port);
  info.pci_path = pci_function_path("/sys/class/infiniband/" + hca + "/device");
  // GUIDs are big-endian on the wire; the port is folded in so each port is unique.
  info.guid = (be64toh(api.get_device_guid(device)) << 8) ^ port;
  info.speed_mbps = ib_speed_mbps(attr.active_speed, attr.active_width);
  info.latency_us = 2;
  info.port = port;
  info.max_comms = 65536;
  info.max_recvs = 1;
  info.max_message_bytes = uint64_t{1} << 62;
  info.cuda_memory = gdr.cuda;
  info.dmabuf = gdr.dmabuf;
  return info;
}

}  // namespace

void enumerate_devices(const std::shared_ptr<const VerbsApi>& api, GdrMode gdr,
                       std::vector<std::shared_ptr<IbDevice>>* out) {
  out->clear();
  const bool peer_memory = peer_memory_loaded();
  int count = 0;
  ibv_device** list = api->get_device_list(&count);
  if (list == nullptr) {
    // ENOSYS: no kernel verbs support at all, the usual case on a machine without RDMA.
    GP_LOG_INFO(kNet, "ib: ibv_get_device_list found no RDMA devices (%s)", strerror(errno));
    return;
  }
  for (int d = 0; d < count; ++d) {
    ibv_device* device = list[d];
    const char* raw_name = api->get_device_name(device);
    const std::string name = raw_name != nullptr ? raw_name : "ibv" + std::to_string(d);
    auto hca = std::make_shared<IbContext>();
    hca->api = api;
    hca->name = name;
    hca->context = api->open_device(device);
    if (hca->context == nullptr) {
      GP_LOG_INFO(kNet, "ib: cannot open %s (%s): skipped", name.c_str(), strerror(errno));
      continue;
    }
    if (api->query_device(hca->context, &hca->attr) != 0) {
      GP_LOG_INFO(kNet, "ib: ibv_query_device on %s failed: skipped", name.c_str());
      continue;
    }
    for (uint8_t port = 1; port <= hca->attr.phys_port_cnt; ++port) {
      ibv_port_attr attr{};
      if (api->query_port(hca->context, port, &attr) != 0) {
        GP_LOG_INFO(kNet, "ib: ibv_query_port %s:%u failed: skipped", name.c_str(), port);
        continue;
      }
      if (attr.state != IBV_PORT_ACTIVE) continue;
      if (attr.link_layer != IBV_LINK_LAYER_INFINIBAND &&
          attr.link_layer != IBV_LINK_LAYER_ETHERNET) {
        continue;
      }
      ibv_gid gid{};
      const int gid_index = choose_gid(*api, hca->context, name, port, attr, &gid);
      if (gid_index < 0) {
        GP_LOG_INFO(kNet, "ib: %s:%u is RoCE without a usable GID: skipped", name.c_str(), port);
        continue;
      }
      if (hca->pd == nullptr) {
        hca->pd = api->alloc_pd(hca->context);
        if (hca->pd == nullptr) {
          GP_LOG_INFO(kNet, "ib: ibv_alloc_pd on %s failed: skipped", name.c_str());
          break;
        }
      }
      const GdrSupport support = probe_gdr(*api, hca->pd, gdr, peer_memory);
      DeviceInfo info = port_info(*api, device, name, port, attr, support);
      GP_LOG_INFO(kNet, "ib: device %s, %s, %d Mbps, GID index %d, GPUDirect RDMA %s",
                  info.name.c_str(),
                  attr.link_layer == IBV_LINK_LAYER_ETHERNET ? "RoCE" : "InfiniBand",
                  info.speed_mbps, gid_index, gdr_name(support));
      out->push_back(std::make_shared<IbDevice>(hca, port, attr, gid_index, gid, std::move(info)));
    }
  }
  api->free_device_list(list);
}

}  // namespace gradpack::transport
