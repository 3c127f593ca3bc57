// SPDX-License-Identifier: Apache-2.0
// An ibverbs device as the transport sees it: one ACTIVE port of one HCA ("mlx5_0:1"), with the
// opened context and protection domain shared by every connection on it, and the registration
// cache of that protection domain.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "transport/gdr.h"
#include "transport/ibverbs/verbs_loader.h"
#include "transport/transport.h"

namespace gradpack::transport {

// The registrar behind a RegistrationCache: registers [addr, addr + size) and fills the keys and an
// opaque handle, or releases a handle. Function pointers so the cache logic is tested without
// verbs (tests/transport/ibverbs/reg_cache_test.cc).
struct Registrar {
  void* context = nullptr;
  Status (*reg)(void* context, void* addr, size_t size, uint32_t* lkey, uint32_t* rkey,
                void** handle) = nullptr;
  void (*dereg)(void* context, void* handle) = nullptr;
};

// MRs by page-aligned address range, reference counted: registering a buffer that an existing
// entry covers only takes a reference; the last release deregisters (no lazy eviction, so memory
// the application frees is never left pinned by us). Overlapping entries that do not cover each
// other coexist. Thread-safe.
//
// Caveat shared with every registration cache without memory hooks: a buffer freed and reallocated
// at the same address while a reference is still held keeps the old pages pinned; callers release
// their MemoryRegion before freeing the buffer.
class RegistrationCache {
 public:
  struct Key {
    uint32_t lkey = 0;
    uint32_t rkey = 0;
    uint64_t id = 0;  // for release()
  };

  RegistrationCache(Registrar registrar, size_t page_size);
  ~RegistrationCache();  // deregisters whatever is left

  Status acquire(const void* addr, size_t size, Key* out);
  void release(uint64_t id);

  size_t entries() const;
  int refs(uint64_t id) const;  // 0 when the entry is gone

 private:
  struct Entry {
    uintptr_t begin = 0;
    uintptr_t end = 0;
    uint32_t lkey = 0;
    uint32_t rkey = 0;
    void* handle = nullptr;
    int refs = 0;
  };
  Registrar registrar_;
  size_t page_size_;
  mutable std::mutex mu_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Entry> entries_;  // by id
};

struct IbContext;

// A MemoryRegion handed to the caller: one reference on a cache entry, or (dma-buf) an MR of its
// own, deregistered with it. `gpu` marks memory that receives need flushed (iflush).
class IbMemoryRegion : public MemoryRegion {
 public:
  IbMemoryRegion(std::shared_ptr<RegistrationCache> cache, RegistrationCache::Key key,
                 bool gpu = false)
      : cache_(std::move(cache)), key_(key), gpu_(gpu) {}
  IbMemoryRegion(std::shared_ptr<IbContext> hca, ibv_mr* mr);
  ~IbMemoryRegion() override;
  uint32_t lkey() const { return key_.lkey; }
  uint32_t rkey() const { return key_.rkey; }
  bool gpu() const { return gpu_; }

 private:
  std::shared_ptr<RegistrationCache> cache_;
  RegistrationCache::Key key_;
  std::shared_ptr<IbContext> hca_;  // own MR only
  ibv_mr* mr_ = nullptr;
  bool gpu_ = false;
};

// An opened HCA: the context and protection domain shared by its ports.
struct IbContext {
  ~IbContext();
  std::shared_ptr<const VerbsApi> api;
  ibv_context* context = nullptr;
  ibv_pd* pd = nullptr;
  std::string name;  // "mlx5_0"
  ibv_device_attr attr{};
};

class ProgressEngine;

// One ACTIVE port.
class IbDevice {
 public:
  IbDevice(std::shared_ptr<IbContext> hca, uint8_t port, const ibv_port_attr& attr, int gid_index,
           const ibv_gid& gid, DeviceInfo info);

  const VerbsApi& api() const { return *hca_->api; }
  ibv_context* context() const { return hca_->context; }
  ibv_pd* pd() const { return hca_->pd; }
  const ibv_device_attr& device_attr() const { return hca_->attr; }
  uint8_t port() const { return port_; }
  const ibv_port_attr& port_attr() const { return port_attr_; }
  bool ethernet() const { return port_attr_.link_layer == IBV_LINK_LAYER_ETHERNET; }
  int gid_index() const { return gid_index_; }
  const ibv_gid& gid() const { return gid_; }
  const DeviceInfo& info() const { return info_; }
  const std::shared_ptr<RegistrationCache>& cache() const { return cache_; }

  // kCuda only where info().cuda_memory (GPUDirect RDMA, transport/gdr.h).
  Status register_memory(const void* data, size_t size, MemoryKind kind,
                         std::unique_ptr<MemoryRegion>* out);
  // ibv_reg_dmabuf_mr of [offset, offset + size) of the dma-buf `fd`, at address `data`; only
  // where info().dmabuf. Not cached: the fd, not the address, names the memory.
  Status register_dmabuf(const void* data, size_t size, uint64_t offset, int fd,
                         std::unique_ptr<MemoryRegion>* out);
  // The device's progress thread, created on first use (defined in connection.cc).
  ProgressEngine& engine();
  // Where that thread runs (Transport::set_progress_cpus): now if it exists, else at its start.
  void set_progress_cpus(std::vector<int> cpus);

 private:
  std::shared_ptr<IbContext> hca_;
  uint8_t port_;
  ibv_port_attr port_attr_;
  int gid_index_;
  ibv_gid gid_;
  DeviceInfo info_;
  std::shared_ptr<RegistrationCache> cache_;
  std::once_flag engine_once_;
  std::shared_ptr<ProgressEngine> engine_;
  std::mutex cpus_mu_;
  std::vector<int> cpus_;        // guarded by cpus_mu_; empty: not pinned
  bool engine_started_ = false;  // guarded by cpus_mu_
};

// Link speed in Mbps from the port's active_speed and active_width codes (0 when unknown).
int ib_speed_mbps(uint32_t active_speed, uint8_t active_width);

// Picks the GID index for a RoCE port from the sysfs type and value of each index: RoCE v2 with an
// IPv4-mapped address first, then any RoCE v2, then RoCE v1/IB; -1 when none is usable.
struct GidCandidate {
  int index = 0;
  std::string type;  // sysfs gid_attrs/types/<index>: "RoCE v2", "IB/RoCE v1"
  ibv_gid gid{};
};
int pick_roce_gid(const std::vector<GidCandidate>& candidates);

// Every ACTIVE port of every device that `api` sees. An HCA that cannot be opened or queried is
// skipped with an info line; an empty result is not an error. Each device's GPUDirect support is
// decide_gdr(gdr, facts found on this machine) (DeviceInfo::cuda_memory and dmabuf).
void enumerate_devices(const std::shared_ptr<const VerbsApi>& api, GdrMode gdr,
                       std::vector<std::shared_ptr<IbDevice>>* out);

}  // namespace gradpack::transport
