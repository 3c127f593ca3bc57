// SPDX-License-Identifier: Apache-2.0
// The process-wide object behind libnccl-net-gradpack.so, and the wall where gradpack's Status
// becomes NCCL's ncclResult_t (NCCL 2.28.9: nccl.h's result codes; src/plugin/net.cc's init and
// finalize per communicator).
//
// Lifetime. NCCL calls init/finalize once per communicator (v11) and dlcloses the library when the
// last one is finalized, possibly dlopening it again later. So: acquire() on every successful
// init, release() on every finalize; the first acquire discovers the devices, the last release
// joins every thread this library started (pending connects, transport progress threads) and
// drops the transports, so nothing runs when the code is unmapped. Everything here lives in one
// function-local static object; its destructor frees only what no thread can still be using.
//
// Devices: every device of transport::open (GRADPACK_TRANSPORT's one policy, transport/open.h),
// named and ordered by topology::list_devices. No device: init fails.
//
// Handles. The 128 bytes NCCL carries from listen() to connect() are a 16-byte header (magic,
// version, backend, CRC-32C of everything else) followed by the first 112 bytes of the transport's
// handle (both transports use fewer than 50). Garbage, a truncated copy or a flipped byte fails the
// checksum and is refused before anything is dialled.
//
// Threads. Every function is thread-safe. Errors are logged once, as a WARN through NCCL's logger
// (which copies it into NCCL's "last error"), or gradpack's own log before init.
#pragma once

#include <array>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "net_plugin/nccl/nccl_abi.h"
#include "transport/open.h"
#include "transport/transport.h"

namespace gradpack::plugin {

inline constexpr char kPluginName[] = "gradpack";
inline constexpr size_t kPluginHandleHeader = 16;
inline constexpr size_t kPluginHandleBytes = NCCL_NET_HANDLE_MAXSIZE;
static_assert(kPluginHandleBytes == transport::kHandleBytes);

using transport::Backend;

// Wraps a transport handle into NCCL's 128 bytes. kInternal when the transport used bytes the
// wrapper has no room for (a transport change that this header must follow).
Status encode_plugin_handle(Backend backend, const transport::Handle& inner, void* out);
// kInvalidArgument (naming what is wrong) for anything encode_plugin_handle did not write.
Status decode_plugin_handle(const void* in, Backend* backend, transport::Handle* inner);

// One device as the plugin numbers them: which transport, and its index there.
struct DeviceRef {
  Backend backend = Backend::kTcp;
  transport::Transport* transport = nullptr;  // valid while a reference is held
  int local = 0;
};

// Something a face created that must not outlive the plugin's transports (a comm NCCL forgot to
// close). The last release() destroys what is still tracked, with a WARN.
class Tracked {
 public:
  virtual ~Tracked() = default;
};

// References (init/finalize). The first acquire discovers devices; failure leaves no reference.
// `logger` (may be null) becomes the sink of every gradpack log message and WARN.
Status acquire(ncclDebugLogger_t logger);
void release();
int reference_count();

// Device table; kInternal before init.
Status device_count(int* ndev);
Status device(int dev, DeviceRef* out);
Status properties(int dev, ncclNetProperties_v11_t* out);

// Non-blocking connect: the first call for (dev, handle bytes) validates the handle and starts the
// dial on a helper thread; later calls with the same bytes return the connection once it exists
// (*out null meanwhile) or the dial's error. A kTimeout dial is retried until GRADPACK_TIMEOUT_MS.
Status poll_connect(int dev, const void* handle, std::unique_ptr<transport::SendConnection>* out);

void track(Tracked* object);
void untrack(Tracked* object);
bool is_tracked(const Tracked* object);

// The v8–v10 tables have no ctx and no finalize: they share one process-default context per face,
// created by the first init of that face. When the library is unloaded (NCCL < 2.28 dlcloses it
// after the last communicator) and the net face's default context is the only user left, with
// every comm closed, `finalize` runs for it so the transport threads are joined before the code
// is unmapped. With comms still open (a process exiting mid-job) nothing is touched.
enum class LegacyFace { kNet = 0, kCollNet = 1 };
// Runs `init` (which fills a ctx) once per face; later calls return the same ctx.
ncclResult_t legacy_init(LegacyFace face, ncclResult_t (*init)(void** ctx, void* arg), void* arg,
                         ncclResult_t (*finalize)(void* ctx), void** ctx);
void* legacy_ctx(LegacyFace face);

// Logging through NCCL's logger (gradpack's stderr log when none was given).
void warn(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void info(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// The wall: network/OS → ncclSystemError, peer → ncclRemoteError, bad argument →
// ncclInvalidArgument, bad data from a peer (truncated message, tag mismatch) → ncclInvalidUsage,
// unsupported request or broken invariant → ncclInternalError. Logs a WARN naming `where`.
ncclResult_t to_result(const Status& status, const char* where);
ncclResult_t exception_result(const char* where, const char* what, bool out_of_memory);

// Runs `body` (returning Status) so that nothing throws across the ABI.
template <typename F>
ncclResult_t guard(const char* where, F&& body) noexcept {
  try {
    Status status = body();
    if (status.ok()) return ncclSuccess;
    return to_result(status, where);
  } catch (const std::bad_alloc&) {
    return exception_result(where, "out of memory", true);
  } catch (const std::exception& e) {
    return exception_result(where, e.what(), false);
  } catch (...) {
    return exception_result(where, "unknown exception", false);
  }
}

}  // namespace gradpack::plugin
