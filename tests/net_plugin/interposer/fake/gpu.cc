// SPDX-License-Identifier: Apache-2.0
// The fake GPU runtime (gpu.h): one process-wide Runtime under one mutex. Streams are worker
// threads popping Nodes from their queue; a stream's `completed` count is what events and host
// waits compare against. Simplicity over speed: every state change notifies one condition
// variable that all waiters share.
#include "tests/net_plugin/interposer/fake/gpu.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace gradpack::fake {
namespace {

struct StreamState;

// A piece of stream work, queued or captured.
struct Node {
  enum class Kind { kTask, kHost, kRecord, kWait } kind = Kind::kTask;
  std::string what;
  std::function<Status()> task;  // kTask
  std::function<void()> host;    // kHost
  cudaEvent_t event = nullptr;   // kRecord, kWait in a graph
  // kWait when queued: the point of `wait_stream` to wait for.
  std::shared_ptr<StreamState> wait_stream;
  uint64_t wait_point = 0;
};

struct StreamState {
  int device = 0;
  std::deque<Node> queue;
  uint64_t enqueued = 0;
  uint64_t completed = 0;
  bool stop = false;
  Status error;
  std::chrono::microseconds delay{0};
  bool capturing = false;
  std::vector<Node> captured;
  std::condition_variable cv;  // queue not empty, or stop
  std::thread worker;
};

struct EventState {
  std::shared_ptr<StreamState> stream;  // null: never recorded
  uint64_t point = 0;
  bool captured = false;  // last recorded in a capture
};

struct Allocation {
  size_t bytes = 0;
  int device = 0;
};

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

struct Runtime {
  std::mutex mu;
  std::condition_variable done_cv;  // a stream completed a node
  std::map<cudaStream_t, std::shared_ptr<StreamState>> streams;
  std::vector<std::shared_ptr<StreamState>> defaults;
  std::map<cudaEvent_t, std::shared_ptr<EventState>> events;
  std::map<uintptr_t, Allocation> allocations;
  int devices = env_int("GRADPACK_FAKE_DEVICES", 2);
  std::atomic<int> fail_alloc{env_int("GRADPACK_FAKE_FAIL_ALLOC", 0)};
  std::atomic<int> fail_launch{env_int("GRADPACK_FAKE_FAIL_LAUNCH", 0)};
  Counters counters;
};

// Never destroyed: worker threads may outlive static destruction.
Runtime& rt() {
  static Runtime* r = new Runtime();
  return *r;
}
[[maybe_unused]] const bool kLoaded = (rt(), true);  // the injection counts start at library load

thread_local int t_device = 0;

// Counts down an armed injection; true on the call that fires it.
bool fire(std::atomic<int>& armed) {
  int n = armed.load();
  while (n > 0) {
    if (armed.compare_exchange_weak(n, n - 1)) return n == 1;
  }
  return false;
}

cudaStream_t handle_of(StreamState* s) { return reinterpret_cast<cudaStream_t>(s); }

void run_node(std::unique_lock<std::mutex>& lock, StreamState* s, Node& node) {
  switch (node.kind) {
    case Node::Kind::kRecord:
      break;  // the point was taken when it was queued
    case Node::Kind::kWait: {
      StreamState* other = node.wait_stream.get();
      const uint64_t point = node.wait_point;
      rt().done_cv.wait(lock, [&] { return other->completed >= point; });
      break;
    }
    case Node::Kind::kHost:
      lock.unlock();
      node.host();
      lock.lock();
      break;
    case Node::Kind::kTask: {
      if (!s->error.ok()) break;  // a faulted stream runs no more kernels
      const auto delay = s->delay;
      lock.unlock();
      if (delay.count() > 0) std::this_thread::sleep_for(delay);
      Status st = node.task();
      lock.lock();
      ++rt().counters.tasks_run;
      if (!st.ok() && s->error.ok()) s->error = Status(st.code(), node.what + ": " + st.message());
      break;
    }
  }
}

void worker_loop(StreamState* s) {
  std::unique_lock<std::mutex> lock(rt().mu);
  for (;;) {
    s->cv.wait(lock, [&] { return s->stop || !s->queue.empty(); });
    if (s->queue.empty()) return;  // stopped and drained
    Node node = std::move(s->queue.front());
    s->queue.pop_front();
    run_node(lock, s, node);
    ++s->completed;
    rt().done_cv.notify_all();
  }
}

std::shared_ptr<StreamState> start_stream(int device) {
  auto s = std::make_shared<StreamState>();
  s->device = device;
  s->worker = std::thread(worker_loop, s.get());
  return s;
}

// Callers hold rt().mu. Null for a handle that is not a stream.
std::shared_ptr<StreamState> resolve(cudaStream_t h) {
  Runtime& r = rt();
  if (h == nullptr || h == cudaStreamLegacy || h == cudaStreamPerThread) {
    if (r.defaults.empty()) r.defaults.resize(static_cast<size_t>(r.devices));
    auto& d = r.defaults[static_cast<size_t>(t_device)];
    if (d == nullptr) d = start_stream(t_device);
    return d;
  }
  auto it = r.streams.find(h);
  return it == r.streams.end() ? nullptr : it->second;
}

Status not_a_stream(cudaStream_t h) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%p", static_cast<void*>(h));
  return InvalidArgument(std::string("fake gpu: ") + buf + " is not a stream");
}

EventState* event_of(cudaEvent_t e) {
  auto it = rt().events.find(e);
  return it == rt().events.end() ? nullptr : it->second.get();
}

void push(StreamState& s, Node node) {
  if (s.capturing) {
    s.captured.push_back(std::move(node));
    return;
  }
  s.queue.push_back(std::move(node));
  ++s.enqueued;
  s.cv.notify_one();
}

// Callers hold rt().mu; s is not capturing.
void record_at(EventState& ev, const std::shared_ptr<StreamState>& s) {
  ev.stream = s;
  ev.point = s->enqueued;
  ev.captured = false;
}

// Callers hold rt().mu; s is not capturing.
Status wait_on(StreamState& s, const EventState& ev) {
  if (ev.captured) return InvalidArgument("fake gpu: waiting on an event recorded in a capture");
  if (ev.stream == nullptr) return OkStatus();  // never recorded: complete
  Node node;
  node.kind = Node::Kind::kWait;
  node.what = "wait event";
  node.wait_stream = ev.stream;
  node.wait_point = ev.point;
  push(s, std::move(node));
  return OkStatus();
}

}  // namespace

struct Graph {
  std::vector<Node> nodes;
};

int device_count() { return rt().devices; }
int current_device() { return t_device; }

Status set_current_device(int device) {
  if (device < 0 || device >= device_count()) {
    return InvalidArgument("fake gpu: device " + std::to_string(device) + " does not exist (" +
                           std::to_string(device_count()) + " devices; GRADPACK_FAKE_DEVICES)");
  }
  t_device = device;
  return OkStatus();
}

cudaStream_t stream_create(int device) {
  if (device < 0 || device >= device_count()) return nullptr;
  auto s = start_stream(device);
  std::lock_guard<std::mutex> lock(rt().mu);
  rt().streams[handle_of(s.get())] = s;
  return handle_of(s.get());
}

void stream_destroy(cudaStream_t stream) {
  std::shared_ptr<StreamState> s;
  {
    std::lock_guard<std::mutex> lock(rt().mu);
    auto it = rt().streams.find(stream);
    if (it == rt().streams.end()) return;  // a default stream, or not a stream
    s = it->second;
    rt().streams.erase(it);
    s->stop = true;
    s->cv.notify_one();
  }
  s->worker.join();
}

int stream_device(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(rt().mu);
  auto s = resolve(stream);
  return s == nullptr ? -1 : s->device;
}

Status enqueue(cudaStream_t stream, const char* what, std::function<Status()> task) {
  std::lock_guard<std::mutex> lock(rt().mu);
  auto s = resolve(stream);
  if (s == nullptr) return not_a_stream(stream);
  if (!s->error.ok()) return s->error;
  Node node;
  node.what = what;
  node.task = std::move(task);
  push(*s, std::move(node));
  return OkStatus();
}

Status enqueue_host(cudaStream_t stream, const char* what, std::function<void()> task) {
  std::lock_guard<std::mutex> lock(rt().mu);
  auto s = resolve(stream);
  if (s == nullptr) return not_a_stream(stream);
  Node node;
  node.kind = Node::Kind::kHost;
  node.what = what;
  node.host = std::move(task);
  s->queue.push_back(std::move(node));  // never captured
  ++s->enqueued;
  s->cv.notify_one();
  return OkStatus();
}

Status stream_error(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(rt().mu);
  auto s = resolve(stream);
  if (s == nullptr) return not_a_stream(stream);
  return s->error;
}

void set_stream_delay(cudaStream_t stream, std::chrono::microseconds per_task) {
  std::lock_guard<std::mutex> lock(rt().mu);
  auto s = resolve(stream);
  if (s != nullptr) s->delay = per_task;
}

Status stream_synchronize(cudaStream_t stream) {
  std::unique_lock<std::mutex> lock(rt().mu);
  auto s = resolve(stream);
  if (s == nullptr) return not_a_stream(stream);
  if (s->capturing) return InvalidArgument("fake gpu: synchronizing a capturing stream");
  ++rt().counters.host_waits;
  const uint64_t target = s->enqueued;
  rt().done_cv.wait(lock, [&] { return s->completed >= target; });
  return s->error;
}

Status begin_capture(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(rt().mu);
  auto s = resolve(stream);
  if (s == nullptr) return not_a_stream(stream);
  if (s->capturing) return InvalidArgument("fake gpu: the stream is already capturing");
  s->capturing = true;
  s->captured.clear();
  return OkStatus();
}

bool is_capturing(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(rt().mu);
  auto s = resolve(stream);
  return s != nullptr && s->capturing;
}

Status end_capture(cudaStream_t stream, Graph** out) {
  std::lock_guard<std::mutex> lock(rt().mu);
  auto s = resolve(stream);
  if (s == nullptr) return not_a_stream(stream);
  if (!s->capturing) return InvalidArgument("fake gpu: end_capture on a stream not capturing");
  s->capturing = false;
  *out = new Graph{std::move(s->captured)};
  s->captured.clear();
  return OkStatus();
}

Status graph_launch(Graph* graph, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(rt().mu);
  auto s = resolve(stream);
  if (s == nullptr) return not_a_stream(stream);
  if (graph == nullptr) return InvalidArgument("fake gpu: graph_launch of a null graph");
  if (s->capturing) return Unsupported("fake gpu: launching a graph into a capture");
  if (!s->error.ok()) return s->error;
  ++rt().counters.graph_launches;
  for (const Node& node : graph->nodes) {
    EventState* ev = node.event == nullptr ? nullptr : event_of(node.event);
    if (node.kind == Node::Kind::kRecord) {
      if (ev != nullptr) record_at(*ev, s);
    } else if (node.kind == Node::Kind::kWait) {
      if (ev != nullptr) GP_RETURN_IF_ERROR(wait_on(*s, *ev));
    } else {
      push(*s, node);
    }
  }
  return OkStatus();
}

void graph_destroy(Graph* graph) { delete graph; }

cudaEvent_t event_create() {
  auto ev = std::make_shared<EventState>();
  auto h = reinterpret_cast<cudaEvent_t>(ev.get());
  std::lock_guard<std::mutex> lock(rt().mu);
  rt().events[h] = std::move(ev);
  return h;
}

void event_destroy(cudaEvent_t event) {
  std::lock_guard<std::mutex> lock(rt().mu);
  rt().events.erase(event);
}

Status event_record(cudaEvent_t event, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(rt().mu);
  auto s = resolve(stream);
  if (s == nullptr) return not_a_stream(stream);
  EventState* ev = event_of(event);
  if (ev == nullptr) return InvalidArgument("fake gpu: event_record of an unknown event");
  if (s->capturing) {
    Node node;
    node.kind = Node::Kind::kRecord;
    node.what = "record event";
    node.event = event;
    s->captured.push_back(std::move(node));
    ev->stream = nullptr;
    ev->captured = true;
    return OkStatus();
  }
  record_at(*ev, s);
  return OkStatus();
}

Status stream_wait_event(cudaStream_t stream, cudaEvent_t event) {
  std::lock_guard<std::mutex> lock(rt().mu);
  auto s = resolve(stream);
  if (s == nullptr) return not_a_stream(stream);
  EventState* ev = event_of(event);
  if (ev == nullptr) return InvalidArgument("fake gpu: stream_wait_event on an unknown event");
  if (s->capturing) {
    Node node;
    node.kind = Node::Kind::kWait;
    node.what = "wait event";
    node.event = event;
    s->captured.push_back(std::move(node));
    return OkStatus();
  }
  return wait_on(*s, *ev);
}

Status event_status(cudaEvent_t event, bool* done) {
  std::lock_guard<std::mutex> lock(rt().mu);
  EventState* ev = event_of(event);
  if (ev == nullptr) return InvalidArgument("fake gpu: query of an unknown event");
  if (ev->captured) {
    *done = false;
    return InvalidArgument("fake gpu: query of an event recorded in a capture");
  }
  *done = ev->stream == nullptr || ev->stream->completed >= ev->point;
  return OkStatus();
}

bool event_query(cudaEvent_t event) {
  bool done = false;
  return event_status(event, &done).ok() && done;
}

Status event_synchronize(cudaEvent_t event) {
  std::unique_lock<std::mutex> lock(rt().mu);
  EventState* ev = event_of(event);
  if (ev == nullptr) return InvalidArgument("fake gpu: synchronize on an unknown event");
  if (ev->captured) return InvalidArgument("fake gpu: host wait on an event recorded in a capture");
  ++rt().counters.host_waits;
  if (ev->stream == nullptr) return OkStatus();
  std::shared_ptr<StreamState> s = ev->stream;
  const uint64_t point = ev->point;
  rt().done_cv.wait(lock, [&] { return s->completed >= point; });
  return OkStatus();
}

Status device_malloc(size_t bytes, void** out) {
  if (fire(rt().fail_alloc)) {
    return Status(Code::kSystem,
                  "fake gpu: out of memory allocating " + std::to_string(bytes) +
                      " bytes (injected: GRADPACK_FAKE_FAIL_ALLOC / fail_alloc_after)");
  }
  const size_t rounded = (bytes + 255) / 256 * 256 + 256;  // never zero-sized
  void* p = std::aligned_alloc(256, rounded);
  if (p == nullptr) return Status(Code::kSystem, "fake gpu: out of host memory");
  std::memset(p, 0xFF, rounded);  // reads as NaN: a kernel reading before writing shows
  std::lock_guard<std::mutex> lock(rt().mu);
  rt().allocations[reinterpret_cast<uintptr_t>(p)] = Allocation{bytes, t_device};
  ++rt().counters.allocs;
  *out = p;
  return OkStatus();
}

void device_free(void* ptr) {
  if (ptr == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(rt().mu);
    if (rt().allocations.erase(reinterpret_cast<uintptr_t>(ptr)) == 0) {
      std::fprintf(stderr, "fake gpu: device_free of %p, which is not device memory\n", ptr);
      return;
    }
    ++rt().counters.frees;
  }
  std::free(ptr);
}

int pointer_device(const void* ptr) {
  const auto p = reinterpret_cast<uintptr_t>(ptr);
  std::lock_guard<std::mutex> lock(rt().mu);
  auto it = rt().allocations.upper_bound(p);
  if (it == rt().allocations.begin()) return -1;
  --it;
  return p < it->first + std::max<size_t>(it->second.bytes, 1) ? it->second.device : -1;
}

Status host_malloc(size_t bytes, void** out) {
  void* p = std::aligned_alloc(256, (bytes + 255) / 256 * 256 + 256);
  if (p == nullptr) return Status(Code::kSystem, "fake gpu: out of host memory");
  *out = p;
  return OkStatus();
}

void host_free(void* ptr) { std::free(ptr); }

Counters& counters() { return rt().counters; }

void reset_counters() {
  Counters& c = rt().counters;
  c.host_waits = 0;
  c.launches = 0;
  c.allocs = 0;
  c.frees = 0;
  c.tasks_run = 0;
  c.graph_launches = 0;
}

void fail_alloc_after(int n) { rt().fail_alloc = n > 0 ? n : 0; }
void fail_launch_after(int n) { rt().fail_launch = n > 0 ? n : 0; }

Status count_launch(const char* what) {
  ++rt().counters.launches;
  if (fire(rt().fail_launch)) {
    return Status(Code::kSystem, std::string("fake gpu: launch of ") + what +
                                     " failed (injected: GRADPACK_FAKE_FAIL_LAUNCH / "
                                     "fail_launch_after)");
  }
  return OkStatus();
}

}  // namespace gradpack::fake
