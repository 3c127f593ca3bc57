// SPDX-License-Identifier: Apache-2.0
// The transport interface: how gradpack moves bytes between two processes. Two backends implement
// it with the same file set, tcp/ and ibverbs/; the host collectives use it directly and the NCCL
// net plugin maps NCCL's v8-v11 net API onto it one call to one call.
//
// The model is NCCL's: connections are one-way. A receiver listens on a device and publishes the
// listener's Handle (at most 128 bytes, copied through any rendezvous store); a sender connects
// with that handle and gets a SendConnection; the listener accepts it as a RecvConnection.
// Messages are matched in posting order: the k-th isend on a connection fills the k-th irecv on
// the other side, whose tag must be equal and whose capacity must hold the message (otherwise the
// receive fails with kCorruptData naming both). Zero-byte and multi-GiB messages are allowed.
//
// The handle carries a random session key. A connection that does not present the key of the
// listener it reached (a port scanner, a stray client, garbage bytes) is closed and logged, and
// never stalls or crashes the listener.
//
// Threads: each device has one progress thread that does the I/O; isend/irecv only queue work,
// Request::test only reads its state. One connection is used by one thread at a time; distinct
// connections may be used from distinct threads. An error found by the progress thread is stored
// on its connection and returned by the next call on it (and by every pending request's test).
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace gradpack::transport {

inline constexpr size_t kHandleBytes = 128;

// The backends. The values travel in the NCCL plugin's handles: never renumber.
enum class Backend : uint8_t { kTcp = 0, kIb = 1 };
const char* backend_name(Backend backend);  // "tcp", "ib"

// What a listener publishes for its peers: backend, address and session key, opaque to callers.
struct Handle {
  std::array<uint8_t, kHandleBytes> bytes{};
};

struct DeviceInfo {
  std::string name;      // "eth0", "mlx5_0:1"
  std::string pci_path;  // sysfs path of the device, "" if none (veth, loopback)
  uint64_t guid = 0;     // unique per device on this host
  int speed_mbps = 0;    // link speed: measured where the backend measures it, else reported
  float latency_us = 0;  // one-way latency estimate
  int port = 0;
  int max_comms = 65536;
  int max_recvs = 1;  // receives one irecv may group (1: no grouping)
  // GPUDirect RDMA (ibverbs only, transport/gdr.h): register_memory accepts kCuda device
  // pointers, and register_dmabuf a dma-buf fd. Both false on TCP, which reads memory with the CPU.
  bool cuda_memory = false;
  bool dmabuf = false;
  uint64_t max_message_bytes = uint64_t{1} << 62;
};

enum class MemoryKind : uint8_t { kHost, kCuda };

// A registered buffer. TCP needs none (register_memory gives a trivial region); ibverbs pins it.
class MemoryRegion {
 public:
  virtual ~MemoryRegion() = default;
};

class Request {
 public:
  virtual ~Request() = default;
  // Never blocks. *done becomes true once the message is fully sent or received; *bytes is then
  // the message size. A failure of the connection is returned here (and *done stays false).
  virtual Status test(bool* done, size_t* bytes) = 0;
};

class SendConnection {
 public:
  virtual ~SendConnection() = default;
  virtual Status register_memory(void* data, size_t size, MemoryKind kind,
                                 std::unique_ptr<MemoryRegion>* out) = 0;
  // Queues a message; `data` must stay valid and unchanged until the request is done. mr may be
  // null for host memory on backends that need no registration (TCP).
  virtual Status isend(const void* data, size_t size, uint64_t tag, MemoryRegion* mr,
                       std::unique_ptr<Request>* out) = 0;
  // Registers GPU memory [data, data + size) by the dma-buf `fd` that exports it, `offset` bytes
  // into the dma-buf. kUnsupported where DeviceInfo::dmabuf is false (the default).
  virtual Status register_dmabuf(void* data, size_t size, uint64_t offset, int fd,
                                 std::unique_ptr<MemoryRegion>* out);
};

class RecvConnection {
 public:
  virtual ~RecvConnection() = default;
  virtual Status register_memory(void* data, size_t size, MemoryKind kind,
                                 std::unique_ptr<MemoryRegion>* out) = 0;
  // Queues a receive of the next message into data[0, capacity).
  virtual Status irecv(void* data, size_t capacity, uint64_t tag, MemoryRegion* mr,
                       std::unique_ptr<Request>* out) = 0;
  virtual Status register_dmabuf(void* data, size_t size, uint64_t offset, int fd,
                                 std::unique_ptr<MemoryRegion>* out);
  // Makes the bytes of a completed receive into GPU memory visible to the GPU (GPUDirect RDMA
  // writes may still sit in the PCIe path when the completion arrives). *out stays null when there
  // is nothing to do: host memory, or a backend that never writes GPU memory (the default).
  virtual Status iflush(void* data, size_t size, MemoryRegion* mr, std::unique_ptr<Request>* out);
  // The 64-bit value the sender passed to connect() (the collectives send their rank).
  virtual uint64_t hello() const = 0;
};

class Listener {
 public:
  virtual ~Listener() = default;
  // Waits up to `timeout` (zero: only looks) for the next connection that presented this
  // listener's key. *out stays null when none is complete yet: that is not an error.
  virtual Status accept(std::chrono::milliseconds timeout,
                        std::unique_ptr<RecvConnection>* out) = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual const char* name() const = 0;  // "tcp", "ib"
  virtual int device_count() const = 0;
  virtual Status device_info(int dev, DeviceInfo* out) const = 0;
  virtual Status listen(int dev, Handle* handle, std::unique_ptr<Listener>* out) = 0;
  // Connects to the listener that made `handle`, presenting its key and `hello`. Returns once the
  // connection is established on this side; it never waits for the remote accept() call. A
  // listener that does not answer within `timeout` is kTimeout, a refused one kRemote.
  virtual Status connect(int dev, const Handle& handle, uint64_t hello,
                         std::chrono::milliseconds timeout,
                         std::unique_ptr<SendConnection>* out) = 0;

  // Sleeping instead of spinning: progress_epoch() is a counter the backend bumps whenever a
  // request of `dev` completes or fails; wait_progress() returns once it differs from `seen`,
  // when a message a caller reads itself (TCP's small receives) may have arrived, or when `until`
  // passes, and may return spuriously. A caller reads the epoch, tests its requests, and waits
  // only if none was done.
  // The defaults suit backends whose requests progress inside test(): no sleep at all.
  virtual uint64_t progress_epoch(int dev) const {
    (void)dev;
    return 0;
  }
  virtual void wait_progress(int dev, uint64_t seen, std::chrono::steady_clock::time_point until) {
    (void)dev, (void)seen, (void)until;
  }

  // Where `dev`'s progress thread should run: a sorted CPU list (common/affinity.h), usually the
  // CPUs near the device's NIC as topology/placement.h decides. Applied when the thread starts,
  // or at once if it runs. Pinning is an optimisation: a CPU set the kernel refuses is logged at
  // debug and the thread runs unpinned; an empty list or a bad `dev` is ignored. The default (a
  // backend without progress threads) does nothing.
  virtual void set_progress_cpus(int dev, const std::vector<int>& cpus) { (void)dev, (void)cpus; }
};

// What every backend's device bookkeeping is the same for: a list of devices, each of which
// describes itself (Device::info() returns a DeviceInfo), and the check of a device index.
template <typename Device>
class DeviceListTransport : public Transport {
 public:
  int device_count() const final { return static_cast<int>(devices_.size()); }
  Status device_info(int dev, DeviceInfo* out) const final {
    GP_RETURN_IF_ERROR(check_device(dev));
    *out = devices_[static_cast<size_t>(dev)]->info();
    return OkStatus();
  }

 protected:
  explicit DeviceListTransport(std::vector<std::shared_ptr<Device>> devices)
      : devices_(std::move(devices)) {}
  // kInvalidArgument naming the backend and how many devices it has.
  Status check_device(int dev) const {
    if (dev < 0 || dev >= device_count()) {
      return InvalidArgument(std::string(name()) + ": device " + std::to_string(dev) +
                             " does not exist (" + std::to_string(device_count()) + " devices)");
    }
    return OkStatus();
  }
  // dev must have passed check_device.
  const std::shared_ptr<Device>& device(int dev) const {
    return devices_[static_cast<size_t>(dev)];
  }

 private:
  std::vector<std::shared_ptr<Device>> devices_;
};

// The sysfs path of the PCI function behind `sysfs_link` (e.g. /sys/class/net/eth0/device or
// /sys/class/infiniband/mlx5_0/device), as NCCL expects in ncclNetProperties_t::pciPath: the link
// resolved, then cut back to the nearest component that is a PCI bus id ("0000:00:03.0"), so a
// virtio NIC's ".../0000:00:03.0/virtio2" becomes ".../0000:00:03.0". "" when the link does not
// exist (loopback, veth, bridges) or leads to no PCI function.
std::string pci_function_path(const std::string& sysfs_link);

// Waits (polling test) until the request is done or the deadline passes (kTimeout).
Status wait(Request& request, std::chrono::steady_clock::time_point deadline,
            size_t* bytes = nullptr);

}  // namespace gradpack::transport
