// SPDX-License-Identifier: Apache-2.0
#include "transport/transport.h"

#include <climits>
#include <cstdlib>
#include <string>
#include <string_view>
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

namespace {
// "dddd:bb:dd.f" in hex: the name sysfs gives a PCI function's directory.
bool is_pci_bus_id(std::string_view name) {
  static constexpr std::string_view kShape = "xxxx:xx:xx.x";
  if (name.size() != kShape.size()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (kShape[i] == 'x' ? !hex : c != kShape[i]) return false;
  }
  return true;
}
}  // namespace

std::string pci_function_path(const std::string& sysfs_link) {
  char resolved[PATH_MAX];
  if (realpath(sysfs_link.c_str(), resolved) == nullptr) return "";
  std::string path = resolved;
  while (!path.empty()) {
    const size_t slash = path.rfind('/');
    if (slash == std::string::npos) break;
    if (is_pci_bus_id(std::string_view(path).substr(slash + 1))) return path;
    path.resize(slash);
  }
  return "";
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
