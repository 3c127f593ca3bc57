// SPDX-License-Identifier: Apache-2.0
// A fake GPU runtime on the CPU, for running the interposer's control flow in CI without a GPU.
// One shared library (libgradpack_fake_gpu.so) holds its state, so the fake device, the fake NCCL
// and a test program in one process all see the same devices, streams and counters.
//
// Model:
//   - GRADPACK_FAKE_DEVICES devices (default 2); the current device is per thread (default 0).
//   - A stream is a worker thread running its queued tasks in order. nullptr, cudaStreamLegacy and
//     cudaStreamPerThread name the current device's default stream (no legacy synchronisation
//     with other streams is modelled).
//   - A task that fails becomes the stream's sticky error: the stream skips every later task
//     (like a faulted context) and every later enqueue returns that error. Host tasks
//     (enqueue_host) still run, so queued frees are not lost.
//   - An event marks "everything enqueued on its stream so far"; a stream waiting on it runs its
//     later tasks only once that point has completed. An event never recorded is complete.
//   - Capture: while a stream captures, enqueue() records instead of running; event records and
//     waits become nodes too. graph_launch() replays the nodes on a stream (every launch again):
//     task nodes run, record nodes record their event at that point of the launch, wait nodes wait
//     for the event's state at launch time. Capture spans one stream only. Host waits on a
//     capturing stream, or on an event last recorded in a capture, are errors (as in CUDA).
//   - Device memory is 256-byte aligned host memory that remembers its device.
//   - Failure injection: GRADPACK_FAKE_FAIL_ALLOC=N makes the N-th device_malloc of the process
//     (counting from 1, from library load) fail with kSystem "out of memory";
//     GRADPACK_FAKE_FAIL_LAUNCH=N makes the N-th count_launch fail with kSystem. Each fires once.
//     fail_alloc_after(n) and fail_launch_after(n) arm the same from now (n = 1: the next call;
//     n <= 0: disarm).
// Thread-safe throughout; stream handles and events may be used from any thread.
#pragma once

#include <cuda_runtime_api.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "common/status.h"

// Exported from libgradpack_fake_gpu.so whatever the including target's visibility.
#pragma GCC visibility push(default)
namespace gradpack::fake {

// Devices.
int device_count();
int current_device();
Status set_current_device(int device);

// Streams. stream_create: kInvalidArgument for a device that does not exist (returns null then).
cudaStream_t stream_create(int device);
// Runs what is queued, then joins the worker. Default streams are never destroyed.
void stream_destroy(cudaStream_t stream);
// -1 for a handle that is not a stream.
int stream_device(cudaStream_t stream);
// Queues `task` (or records it, while capturing). `what` names it in errors. Returns the stream's
// sticky error instead of queueing on a faulted stream.
Status enqueue(cudaStream_t stream, const char* what, std::function<Status()> task);
// A task that runs even on a faulted stream and is never captured (frees, host callbacks).
Status enqueue_host(cudaStream_t stream, const char* what, std::function<void()> task);
// The first failed task's status (ok while none failed).
Status stream_error(cudaStream_t stream);
// Every later task of the stream sleeps `per_task` before it runs (tests make one stream slow).
void set_stream_delay(cudaStream_t stream, std::chrono::microseconds per_task);
// Blocks until everything enqueued so far has run; a host wait (counted).
Status stream_synchronize(cudaStream_t stream);

// Capture.
struct Graph;
Status begin_capture(cudaStream_t stream);
bool is_capturing(cudaStream_t stream);
Status end_capture(cudaStream_t stream, Graph** out);
Status graph_launch(Graph* graph, cudaStream_t stream);
void graph_destroy(Graph* graph);

// Events.
cudaEvent_t event_create();
void event_destroy(cudaEvent_t event);
Status event_record(cudaEvent_t event, cudaStream_t stream);
Status stream_wait_event(cudaStream_t stream, cudaEvent_t event);
// Never blocks; an event last recorded in a capture is not complete.
bool event_query(cudaEvent_t event);
// The same, with the error CUDA gives for an event last recorded in a capture.
Status event_status(cudaEvent_t event, bool* done);
// Blocks until the event's last recorded point has run; a host wait (counted).
Status event_synchronize(cudaEvent_t event);

// Memory.
Status device_malloc(size_t bytes, void** out);  // on the current device
void device_free(void* ptr);
// The device of fake device memory holding `ptr` (anywhere inside an allocation); -1 otherwise.
int pointer_device(const void* ptr);
Status host_malloc(size_t bytes, void** out);  // pinned-host stand-in, never freed by the fake
void host_free(void* ptr);

// Counters, process-wide.
struct Counters {
  std::atomic<uint64_t> host_waits{0};  // stream_synchronize + event_synchronize
  std::atomic<uint64_t> launches{0};    // count_launch calls
  std::atomic<uint64_t> allocs{0};      // successful device_malloc
  std::atomic<uint64_t> frees{0};       // device_free
  std::atomic<uint64_t> tasks_run{0};   // tasks that ran (not skipped)
  std::atomic<uint64_t> graph_launches{0};
};
Counters& counters();
void reset_counters();

// Failure injection (see the top of the file).
void fail_alloc_after(int n);
void fail_launch_after(int n);
// Called by the fake device once per kernel launch: counts it and returns the injected failure.
Status count_launch(const char* what);

}  // namespace gradpack::fake
#pragma GCC visibility pop
