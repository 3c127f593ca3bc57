// SPDX-License-Identifier: Apache-2.0
#include "transport/transport.h"

#include <string>
#include <thread>

namespace gradpack::transport {

const char* backend_name(Backend backend) { return backend == Backend::kIb ? "ib" : "tcp"; }

namespace {
Status no_dmabuf(int fd) {
  return Unsupported("dma-buf registration (fd " + std::to_string(fd) +
                     ") is not supported by this transport: it moves host memory only");
}
}  // namespace

Status SendConnection::register_dmabuf(void*, size_t, uint64_t, int fd,
                                       std::unique_ptr<MemoryRegion>*) {
  return no_dmabuf(fd);
}

Status RecvConnection::register_dmabuf(void*, size_t, uint64_t, int fd,
                                       std::unique_ptr<MemoryRegion>*) {
  return no_dmabuf(fd);
}

Status RecvConnection::iflush(void*, size_t, MemoryRegion*, std::unique_ptr<Request>* out) {
  out->reset();  // host memory is coherent: nothing to flush
  return OkStatus();
}

Status wait(Request& request, std::chrono::steady_clock::time_point deadline, size_t* bytes) {
  size_t got = 0;
  for (unsigned spins = 0;; ++spins) {
    bool done = false;
    GP_RETURN_IF_ERROR(request.test(&done, &got));
    if (done) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status(Code::kTimeout, "transport request did not complete before the deadline");
    }
    if (spins > 64) std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  if (bytes != nullptr) *bytes = got;
  return OkStatus();
}

}  // namespace gradpack::transport
