// SPDX-License-Identifier: Apache-2.0
#include "net_plugin/plugin_api.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "common/crc32c.h"
#include "common/little_endian.h"
#include "common/log.h"
#include "common/settings.h"
#include "topology/devices.h"
#include "topology/placement.h"

namespace gradpack::plugin {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kHandleMagic = 0x504e5047;  // "GPNP" in little-endian byte order
constexpr uint16_t kHandleVersion = 1;
constexpr size_t kInnerBytes = kPluginHandleBytes - kPluginHandleHeader;
// A dial that times out is retried in slices of this length, so the last release() never waits
// longer than one slice for a helper thread.
constexpr std::chrono::milliseconds kDialSlice{1000};

uint32_t handle_checksum(const uint8_t* p) {
  uint32_t crc = crc32c(p, 12);
  return crc32c(p + kPluginHandleHeader, kInnerBytes, crc);
}

// The NCCL logger of the latest init. Plain atomics: constant-initialized, so they are valid at
// any time, including while the library is being loaded again.
std::atomic<ncclDebugLogger_t> g_logger{nullptr};

void nccl_sink(LogLevel level, Subsys subsys, const char* message) {
  ncclDebugLogger_t logger = g_logger.load();
  if (logger == nullptr) {
    std::fprintf(stderr, "gradpack %s: %s\n", log::subsys_name(subsys), message);
    return;
  }
  ncclDebugLogLevel nccl_level = level <= LogLevel::kWarn   ? NCCL_LOG_WARN
                                 : level == LogLevel::kInfo ? NCCL_LOG_INFO
                                                            : NCCL_LOG_TRACE;
  logger(nccl_level, NCCL_NET, "gradpack", 0, "NET/gradpack %s: %s", log::subsys_name(subsys),
         message);
}

void vlog(ncclDebugLogLevel level, const char* fmt, va_list args) {
  char buffer[1024];
  std::vsnprintf(buffer, sizeof buffer, fmt, args);
  ncclDebugLogger_t logger = g_logger.load();
  if (logger != nullptr) {
    logger(level, level == NCCL_LOG_WARN ? ~0ul : NCCL_NET | NCCL_INIT, "gradpack", 0,
           "NET/gradpack: %s", buffer);
  } else if (level == NCCL_LOG_WARN) {
    GP_LOG_WARN(kPlugin, "%s", buffer);
  } else {
    GP_LOG_INFO(kPlugin, "%s", buffer);
  }
}

struct Device {
  Backend backend;
  transport::Transport* transport;
  int local;
  const char* name;      // interned: stays valid for the life of the process
  const char* pci_path;  // interned, or null
  int speed_mbps;
  int port;
  int ptr_support;  // NCCL_PTR_*: host, plus CUDA/DMABUF where the transport can (transport/gdr.h)
};

// What NCCL is told a device can register (NCCL 2.28.9 src/transport/net_ib.cc getProperties
// reports CUDA|DMABUF the same way, per device).
int ptr_support_of(const transport::DeviceInfo& info) {
  int support = NCCL_PTR_HOST;
  if (info.cuda_memory) support |= NCCL_PTR_CUDA;
  if (info.dmabuf) support |= NCCL_PTR_DMABUF;
  return support;
}

struct PendingConnect {
  std::thread worker;
  std::atomic<bool> done{false};
  std::atomic<bool> cancel{false};
  Status status;  // written before done turns true
  std::unique_ptr<transport::SendConnection> connection;
};

using ConnectKey = std::pair<int, std::array<uint8_t, kPluginHandleBytes>>;

class Plugin {
 public:
  static Plugin& get() {
    static Plugin plugin;
    return plugin;
  }

  // Runs at dlclose or exit. After the last finalize there is nothing left to free but the
  // interned names. A process that exits (or unloads) while references are held still has
  // threads running, possibly inside NCCL's calls: those objects are left alone, never joined or
  // destroyed here.
  ~Plugin() {
    std::lock_guard<std::mutex> lock(mu_);
    if (refs_ > 0 || !connects_.empty() || !tracked_.empty()) {
      for (auto& transport : transports_) (void)transport.release();
      for (auto& [key, pending] : connects_) {
        if (pending->worker.joinable()) pending->worker.detach();  // it owns its state
      }
      tracked_.clear();
    }
  }

  Status acquire(ncclDebugLogger_t logger) {
    std::lock_guard<std::mutex> lock(mu_);
    if (logger != nullptr) g_logger.store(logger);
    if (refs_ == 0) {
      // NCCL's logger first: discovery's messages (transport::open's) go through it too.
      previous_sink_ = log::set_sink(nccl_sink);
      Status status = discover();
      if (!status.ok()) {
        log::set_sink(previous_sink_);
        return status;
      }
    }
    ++refs_;
    return OkStatus();
  }

  void release() {
    std::unique_lock<std::mutex> lock(mu_);
    if (refs_ == 0) return;
    if (--refs_ > 0) return;
    // Last reference: stop and join the dial threads, destroy what NCCL left open, then the
    // transports (their progress threads are joined once no connection holds their device).
    std::map<ConnectKey, std::shared_ptr<PendingConnect>> connects;
    connects.swap(connects_);
    std::unordered_set<Tracked*> leftovers;
    leftovers.swap(tracked_);
    std::vector<std::unique_ptr<transport::Transport>> transports;
    transports.swap(transports_);
    devices_.clear();
    // gradpack's own messages go back to stderr (set under the lock, so a concurrent first
    // acquire() cannot have its sink undone).
    log::set_sink(previous_sink_);
    lock.unlock();
    for (auto& [key, pending] : connects) {
      pending->cancel = true;
      if (pending->worker.joinable()) pending->worker.join();
    }
    connects.clear();
    if (!leftovers.empty()) {
      warn("finalize: %zu comm(s) were never closed; closing them now", leftovers.size());
    }
    for (Tracked* object : leftovers) delete object;
    transports.clear();
  }

  int refs() {
    std::lock_guard<std::mutex> lock(mu_);
    return refs_;
  }

  Status device_count(int* ndev) {
    std::lock_guard<std::mutex> lock(mu_);
    GP_RETURN_IF_ERROR(check_init());
    *ndev = static_cast<int>(devices_.size());
    return OkStatus();
  }

  Status device(int dev, DeviceRef* out) {
    std::lock_guard<std::mutex> lock(mu_);
    GP_RETURN_IF_ERROR(check_device(dev));
    const Device& d = devices_[static_cast<size_t>(dev)];
    *out = DeviceRef{d.backend, d.transport, d.local};
    return OkStatus();
  }

  Status properties(int dev, ncclNetProperties_v11_t* out) {
    std::lock_guard<std::mutex> lock(mu_);
    GP_RETURN_IF_ERROR(check_device(dev));
    const Device& d = devices_[static_cast<size_t>(dev)];
    *out = ncclNetProperties_v11_t{};
    out->name = const_cast<char*>(d.name);
    out->pciPath = const_cast<char*>(d.pci_path);
    out->guid = static_cast<uint64_t>(dev);
    out->ptrSupport = d.ptr_support;
    out->regIsGlobal = 0;
    out->forceFlush = 0;
    out->speed = d.speed_mbps;
    out->port = d.port;
    out->latency = 0;
    out->maxComms = 65536;
    out->maxRecvs = 1;
    out->netDeviceType = NCCL_NET_DEVICE_HOST;
    out->netDeviceVersion = NCCL_NET_DEVICE_INVALID_VERSION;
    out->vProps.ndevs = 1;
    out->vProps.devs[0] = dev;
    out->maxP2pBytes = NCCL_MAX_NET_SIZE_BYTES;
    out->maxCollBytes = NCCL_MAX_NET_SIZE_BYTES;
    out->maxMultiRequestSize = 1;
    return OkStatus();
  }

  Status poll_connect(int dev, const void* handle,
                      std::unique_ptr<transport::SendConnection>* out) {
    out->reset();
    Backend backend;
    transport::Handle inner;
    GP_RETURN_IF_ERROR(decode_plugin_handle(handle, &backend, &inner));
    ConnectKey key{dev, {}};
    std::memcpy(key.second.data(), handle, kPluginHandleBytes);
    std::unique_lock<std::mutex> lock(mu_);
    GP_RETURN_IF_ERROR(check_device(dev));
    const Device& d = devices_[static_cast<size_t>(dev)];
    if (d.backend != backend) {
      return InvalidArgument(std::string("the handle was made by a ") + backend_name(backend) +
                             " listener but connect was called on " + backend_name(d.backend) +
                             " device " + std::to_string(dev) + " (" + d.name + ")");
    }
    auto it = connects_.find(key);
    if (it == connects_.end()) {
      const Settings* settings = nullptr;
      GP_RETURN_IF_ERROR(Settings::global(&settings));
      auto budget = std::chrono::milliseconds(settings->get_int(SettingId::kTimeoutMs));
      auto pending = std::make_shared<PendingConnect>();
      transport::Transport* transport = d.transport;
      int local = d.local;
      // The thread owns a reference to the state, never to the plugin: release() joins it.
      pending->worker = std::thread([pending, transport, local, inner, budget] {
        const Clock::time_point deadline = Clock::now() + budget;
        Status status;
        for (;;) {
          auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
          auto slice = std::max(std::chrono::milliseconds(1), std::min(left, kDialSlice));
          status = transport->connect(local, inner, 0, slice, &pending->connection);
          if (status.code() != Code::kTimeout || pending->cancel || Clock::now() >= deadline) {
            break;
          }
        }
        pending->status = std::move(status);
        pending->done = true;
      });
      connects_.emplace(std::move(key), std::move(pending));
      return OkStatus();
    }
    if (!it->second->done) return OkStatus();
    std::shared_ptr<PendingConnect> pending = std::move(it->second);
    connects_.erase(it);
    lock.unlock();
    pending->worker.join();
    GP_RETURN_IF_ERROR(pending->status);
    *out = std::move(pending->connection);
    return OkStatus();
  }

  void track(Tracked* object) {
    std::lock_guard<std::mutex> lock(mu_);
    tracked_.insert(object);
  }
  void untrack(Tracked* object) {
    std::lock_guard<std::mutex> lock(mu_);
    tracked_.erase(object);
  }
  bool is_tracked(const Tracked* object) {
    std::lock_guard<std::mutex> lock(mu_);
    return tracked_.count(const_cast<Tracked*>(object)) != 0;
  }

  ncclResult_t legacy_init(LegacyFace face, ncclResult_t (*init)(void**, void*), void* arg,
                           ncclResult_t (*finalize)(void*), void** ctx) {
    std::lock_guard<std::mutex> lock(legacy_mu_);
    void*& slot = legacy_[static_cast<int>(face)];
    if (!legacy_done_[static_cast<int>(face)]) {
      void* made = nullptr;
      ncclResult_t result = init(&made, arg);
      if (result != ncclSuccess) return result;
      slot = made;
      legacy_fini_[static_cast<int>(face)] = finalize;
      legacy_done_[static_cast<int>(face)] = true;
    }
    if (ctx != nullptr) *ctx = slot;
    return ncclSuccess;
  }

  void* legacy_ctx(LegacyFace face) {
    std::lock_guard<std::mutex> lock(legacy_mu_);
    return legacy_[static_cast<int>(face)];
  }

  // At unload: finalizes the net face's default ctx when it is all that is left (see the header).
  void unload() {
    std::lock_guard<std::mutex> legacy_lock(legacy_mu_);
    const int net = static_cast<int>(LegacyFace::kNet);
    if (!legacy_done_[net] || legacy_fini_[net] == nullptr) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      // The default ctx holds one reference and is the one tracked object.
      if (refs_ != 1 || tracked_.size() != 1 || connects_.size() != 0) return;
    }
    legacy_fini_[net](legacy_[net]);
    legacy_[net] = nullptr;
    legacy_done_[net] = false;
  }

 private:
  Status check_init() const {
    if (refs_ == 0) return Internal("the net plugin was used before init (or after finalize)");
    return OkStatus();
  }

  Status check_device(int dev) const {
    GP_RETURN_IF_ERROR(check_init());
    if (dev < 0 || static_cast<size_t>(dev) >= devices_.size()) {
      return InvalidArgument("device " + std::to_string(dev) + " does not exist (the plugin has " +
                             std::to_string(devices_.size()) + ")");
    }
    return OkStatus();
  }

  const char* intern(const std::string& s) { return names_.insert(s).first->c_str(); }

  Status discover() {
    const Settings* settings = nullptr;
    GP_RETURN_IF_ERROR(Settings::global(&settings));
    std::vector<transport::OpenedTransport> opened;
    GP_RETURN_IF_ERROR(transport::open(*settings, &opened));
    topology::place_progress_threads(opened, *settings);  // near each NIC; never fails
    std::vector<topology::NetDevice> listed;
    GP_RETURN_IF_ERROR(
        topology::list_devices(opened, settings->get_int(SettingId::kNetSpeedMbps), &listed));
    devices_.clear();
    std::string list;
    for (const topology::NetDevice& n : listed) {
      Device d;
      d.backend = n.backend;
      d.transport = n.transport;
      d.local = n.local;
      d.name = intern(n.name);
      d.pci_path = n.pci_path.empty() ? nullptr : intern(n.pci_path);
      d.speed_mbps = n.speed_mbps;
      d.port = n.port;
      transport::DeviceInfo info;
      GP_RETURN_IF_ERROR(n.transport->device_info(n.local, &info));
      d.ptr_support = ptr_support_of(info);
      devices_.push_back(d);
      const char* gdr = (d.ptr_support & NCCL_PTR_DMABUF) != 0 ? ", GPUDirect RDMA + DMA-BUF"
                        : (d.ptr_support & NCCL_PTR_CUDA) != 0  ? ", GPUDirect RDMA"
                                                                : "";
      list += (list.empty() ? "" : ", ") + n.name + " (" + backend_name(n.backend) + ", " +
              std::to_string(n.speed_mbps) + " Mbit/s" + gdr + ")";
    }
    transports_.clear();
    for (transport::OpenedTransport& t : opened) transports_.push_back(std::move(t.transport));
    info("%zu device(s): %s", devices_.size(), list.c_str());
    return OkStatus();
  }

  std::mutex mu_;
  int refs_ = 0;
  LogSink previous_sink_ = nullptr;
  std::vector<std::unique_ptr<transport::Transport>> transports_;
  std::vector<Device> devices_;
  std::set<std::string> names_;  // never shrinks: properties hand out pointers into it
  std::map<ConnectKey, std::shared_ptr<PendingConnect>> connects_;
  std::unordered_set<Tracked*> tracked_;

  std::mutex legacy_mu_;
  void* legacy_[2] = {nullptr, nullptr};
  bool legacy_done_[2] = {false, false};
  ncclResult_t (*legacy_fini_[2])(void*) = {nullptr, nullptr};
};

}  // namespace

Status encode_plugin_handle(Backend backend, const transport::Handle& inner, void* out) {
  for (size_t i = kInnerBytes; i < transport::kHandleBytes; ++i) {
    if (inner.bytes[i] != 0) {
      return Internal("the " + std::string(backend_name(backend)) +
                      " transport handle uses its last 16 bytes, which the NCCL plugin handle "
                      "has no room for");
    }
  }
  uint8_t p[kPluginHandleBytes] = {};
  store_le<uint32_t>(p, kHandleMagic);
  store_le<uint16_t>(p + 4, kHandleVersion);
  p[6] = static_cast<uint8_t>(backend);
  std::memcpy(p + kPluginHandleHeader, inner.bytes.data(), kInnerBytes);
  store_le<uint32_t>(p + 12, handle_checksum(p));
  std::memcpy(out, p, kPluginHandleBytes);
  return OkStatus();
}

Status decode_plugin_handle(const void* in, Backend* backend, transport::Handle* inner) {
  if (in == nullptr) return InvalidArgument("the connection handle is NULL");
  uint8_t p[kPluginHandleBytes];
  std::memcpy(p, in, kPluginHandleBytes);
  if (load_le<uint32_t>(p) != kHandleMagic) {
    return InvalidArgument(
        "not a gradpack connection handle (wrong magic): was it made by "
        "another plugin's listen, or not copied whole?");
  }
  if (load_le<uint16_t>(p + 4) != kHandleVersion) {
    return InvalidArgument("gradpack connection handle of version " +
                           std::to_string(load_le<uint16_t>(p + 4)) + "; this plugin reads " +
                           std::to_string(kHandleVersion) + " (mixed gradpack versions?)");
  }
  if (load_le<uint32_t>(p + 12) != handle_checksum(p)) {
    return InvalidArgument(
        "gradpack connection handle fails its checksum: it was truncated or "
        "altered on its way from listen to connect");
  }
  if (p[6] > static_cast<uint8_t>(Backend::kIb) || p[7] != 0) {
    return InvalidArgument("gradpack connection handle names an unknown backend " +
                           std::to_string(p[6]));
  }
  *backend = static_cast<Backend>(p[6]);
  inner->bytes.fill(0);
  std::memcpy(inner->bytes.data(), p + kPluginHandleHeader, kInnerBytes);
  return OkStatus();
}

Status acquire(ncclDebugLogger_t logger) { return Plugin::get().acquire(logger); }
void release() { Plugin::get().release(); }
int reference_count() { return Plugin::get().refs(); }
Status device_count(int* ndev) { return Plugin::get().device_count(ndev); }
Status device(int dev, DeviceRef* out) { return Plugin::get().device(dev, out); }
Status properties(int dev, ncclNetProperties_v11_t* out) {
  return Plugin::get().properties(dev, out);
}
Status poll_connect(int dev, const void* handle, std::unique_ptr<transport::SendConnection>* out) {
  return Plugin::get().poll_connect(dev, handle, out);
}
void track(Tracked* object) { Plugin::get().track(object); }
void untrack(Tracked* object) { Plugin::get().untrack(object); }
bool is_tracked(const Tracked* object) { return Plugin::get().is_tracked(object); }

ncclResult_t legacy_init(LegacyFace face, ncclResult_t (*init)(void**, void*), void* arg,
                         ncclResult_t (*finalize)(void*), void** ctx) {
  try {
    return Plugin::get().legacy_init(face, init, arg, finalize, ctx);
  } catch (...) {
    return exception_result("init", "the default context could not be made", false);
  }
}

namespace {
// Runs at dlclose (and exit) before this library's static objects are destroyed.
__attribute__((destructor)) void on_unload() {
  try {
    Plugin::get().unload();
  } catch (...) {
  }
}
}  // namespace
void* legacy_ctx(LegacyFace face) {
  try {
    return Plugin::get().legacy_ctx(face);
  } catch (...) {
    return nullptr;  // the call that uses it then reports the missing init
  }
}

void warn(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vlog(NCCL_LOG_WARN, fmt, args);
  va_end(args);
}

void info(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vlog(NCCL_LOG_INFO, fmt, args);
  va_end(args);
}

ncclResult_t to_result(const Status& status, const char* where) {
  if (status.ok()) return ncclSuccess;
  warn("%s: %s", where, status.to_string().c_str());
  switch (status.code()) {
    case Code::kOk:
      return ncclSuccess;
    case Code::kInvalidArgument:
      return ncclInvalidArgument;
    case Code::kCorruptData:
      return ncclInvalidUsage;
    case Code::kSystem:
    case Code::kTimeout:
      return ncclSystemError;
    case Code::kRemote:
      return ncclRemoteError;
    case Code::kUnsupported:
    case Code::kInternal:
      return ncclInternalError;
  }
  return ncclInternalError;
}

ncclResult_t exception_result(const char* where, const char* what, bool out_of_memory) {
  try {
    warn("%s: %s", where, what);
  } catch (...) {
  }
  return out_of_memory ? ncclSystemError : ncclInternalError;
}

}  // namespace gradpack::plugin
