// SPDX-License-Identifier: Apache-2.0
// The C ABI wall of libgradpack.so: the one place where Status becomes gp_status_t, arguments
// from C are checked, and nothing (not even std::bad_alloc) escapes to the caller.
#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "api/allreduce_options.h"
#include "collectives/communicator.h"
#include "collectives/group.h"
#include "common/dtype.h"
#include "common/status.h"
#include "compression/codec.h"
#include "gradpack/gradpack.h"
#include "topology/cluster_file.h"

struct gp_codec {
  std::unique_ptr<gradpack::Codec> impl;
};

struct gp_comm {
  std::unique_ptr<gradpack::coll::Communicator> impl;
};

namespace {

thread_local std::string t_last_error;

gp_status_t finish(const gradpack::Status& status) {
  if (status.ok()) return GP_OK;
  t_last_error = status.message();
  return static_cast<gp_status_t>(status.code());
}

template <typename F>
gp_status_t guarded(F&& body) {
  try {
    return finish(body());
  } catch (const std::bad_alloc&) {
    return finish(gradpack::SystemError("out of memory"));
  } catch (const std::exception& e) {
    return finish(gradpack::Internal(std::string("unexpected exception: ") + e.what()));
  } catch (...) {
    return finish(gradpack::Internal("unexpected exception"));
  }
}

// The open group of this thread (gradpack.h, "Groups"). Thread-local, as NCCL's: a group may span
// communicators, and calls other threads make on them at the same time are not swept into it.
struct GroupState {
  int depth = 0;
  gradpack::Status first_error;                   // a refused call spoils the group
  std::vector<gradpack::coll::CallQueue> queues;  // one per communicator, in order of first use
  std::vector<uint8_t> scratch;                   // the packed all-reduces' buffer, kept
};

thread_local GroupState t_group;

gradpack::coll::CallQueue& queue_of(gp_comm* comm) {
  for (auto& q : t_group.queues) {
    if (q.communicator() == comm->impl.get()) return q;
  }
  return t_group.queues.emplace_back(comm->impl.get());
}

gradpack::coll::CollectiveCall make_call(gradpack::coll::Collective collective, const void* send,
                                         void* recv, size_t count, gp_dtype_t dtype,
                                         gp_redop_t op) {
  gradpack::coll::CollectiveCall call;
  call.collective = collective;
  call.send = send;
  call.recv = recv;
  call.count = count;
  call.dtype = dtype;
  call.op = op;
  return call;
}

// Runs `call` now, or queues it inside a group.
gradpack::Status submit(gp_comm* comm, const gradpack::coll::CollectiveCall& call) {
  if (t_group.depth == 0) return gradpack::coll::run_call(*comm->impl, call);
  gradpack::Status st = queue_of(comm).add(call);
  if (!st.ok() && t_group.first_error.ok()) t_group.first_error = st;
  return st;
}

// The outermost gp_group_end: every communicator's queue, in order; the first error.
gradpack::Status run_group() {
  GroupState& g = t_group;
  std::vector<gradpack::coll::CallQueue> queues = std::move(g.queues);
  g.queues.clear();
  gradpack::Status first = std::move(g.first_error);
  g.first_error = gradpack::OkStatus();
  if (!first.ok()) {
    const std::string why = "gp_group_end: the group was not run, a call in it was refused: ";
    return gradpack::Status(first.code(), why + first.message());
  }
  for (auto& q : queues) {
    gradpack::Status st = q.run(&g.scratch);
    if (!st.ok() && first.ok()) first = std::move(st);
  }
  return first;
}

gp_topology_origin_t origin_of(gradpack::topology::ClusterChoice::Origin origin) {
  switch (origin) {
    case gradpack::topology::ClusterChoice::Origin::kFile:
      return GP_TOPOLOGY_FILE;
    case gradpack::topology::ClusterChoice::Origin::kProbe:
      return GP_TOPOLOGY_PROBE;
    case gradpack::topology::ClusterChoice::Origin::kFlat:
      break;
  }
  return GP_TOPOLOGY_FLAT;
}

gradpack::Status topology_info(const gradpack::coll::Communicator& comm, gp_comm_topology_t* out) {
  if (out->struct_size < sizeof(gp_comm_topology_t)) {
    return gradpack::InvalidArgument(
        "gp_comm_topology: set topology->struct_size = sizeof(gp_comm_topology_t) first");
  }
  const size_t size = out->struct_size;
  std::memset(out, 0, sizeof(gp_comm_topology_t));
  out->struct_size = size;
  out->origin = origin_of(comm.cluster_source());
  out->probe_seconds = comm.probe_seconds();
  std::snprintf(out->detail, sizeof(out->detail), "%s", comm.cluster_detail().c_str());
  return gradpack::OkStatus();
}

}  // namespace

extern "C" {

const char* gp_status_string(gp_status_t status) {
  switch (status) {
    case GP_OK:
    case GP_ERR_INVALID_ARGUMENT:
    case GP_ERR_CORRUPT_DATA:
    case GP_ERR_UNSUPPORTED:
    case GP_ERR_SYSTEM:
    case GP_ERR_REMOTE:
    case GP_ERR_TIMEOUT:
    case GP_ERR_INTERNAL:
      return gradpack::code_name(static_cast<gradpack::Code>(status));
  }
  return "GP_ERR_UNKNOWN";
}

const char* gp_last_error(void) { return t_last_error.c_str(); }

size_t gp_dtype_size(gp_dtype_t dtype) { return gradpack::dtype_size(dtype); }

const char* gp_version(void) { return GRADPACK_VERSION; }

gp_status_t gp_codec_create(const char* spec, gp_codec_t** out) {
  return guarded([&] {
    if (out == nullptr) return gradpack::InvalidArgument("out is NULL");
    *out = nullptr;
    if (spec == nullptr) return gradpack::InvalidArgument("spec is NULL");
    auto codec = std::make_unique<gp_codec>();
    GP_RETURN_IF_ERROR(gradpack::Codec::create(spec, &codec->impl));
    *out = codec.release();
    return gradpack::OkStatus();
  });
}

void gp_codec_destroy(gp_codec_t* codec) { delete codec; }

const char* gp_codec_spec(const gp_codec_t* codec) {
  return codec ? codec->impl->canonical().c_str() : "";
}

size_t gp_codec_max_encoded_bytes(const gp_codec_t* codec, size_t count, gp_dtype_t dtype) {
  return codec ? codec->impl->max_encoded_bytes(count, dtype) : 0;
}

gp_status_t gp_codec_encode(gp_codec_t* codec, const void* in, size_t count, gp_dtype_t dtype,
                            float* residual, void* out, size_t out_capacity, size_t* out_bytes) {
  return guarded([&] {
    if (codec == nullptr) return gradpack::InvalidArgument("codec is NULL");
    return codec->impl->encode(in, count, dtype, residual, out, out_capacity, out_bytes);
  });
}

gp_status_t gp_codec_decode(const void* in, size_t in_bytes, void* out, size_t count,
                            gp_dtype_t dtype, int accumulate) {
  return guarded([&] {
    if (accumulate != 0 && accumulate != 1)
      return gradpack::InvalidArgument("accumulate must be 0 or 1");
    return gradpack::decode_frame(in, in_bytes, out, count, dtype, accumulate == 1);
  });
}

gp_status_t gp_frame_info(const void* in, size_t in_bytes, gp_frame_info_t* info) {
  return guarded([&] {
    if (info == nullptr) return gradpack::InvalidArgument("info is NULL");
    return gradpack::read_frame_info(in, in_bytes, info);
  });
}

void gp_allreduce_opts_init(gp_allreduce_opts_t* opts) {
  if (opts == nullptr) return;
  std::memset(opts, 0, sizeof(*opts));
  opts->struct_size = sizeof(*opts);
  opts->algorithm = GP_ALGO_AUTO;
  opts->segment_bytes = 0;
  opts->codec = nullptr;
  opts->error_feedback = -1;
  opts->key = nullptr;
  opts->residual_bits = 0;
}

gp_status_t gp_comm_init(int rank, int nranks, const char* rendezvous, gp_comm_t** out) {
  return guarded([&] {
    if (out == nullptr) return gradpack::InvalidArgument("gp_comm_init: out is NULL");
    *out = nullptr;
    if (rendezvous == nullptr) return gradpack::InvalidArgument("gp_comm_init: rendezvous is NULL");
    auto comm = std::make_unique<gp_comm>();
    GP_RETURN_IF_ERROR(gradpack::coll::Communicator::create(rank, nranks, rendezvous, &comm->impl));
    *out = comm.release();
    return gradpack::OkStatus();
  });
}

gp_status_t gp_comm_init_from_env(gp_comm_t** out) {
  return guarded([&] {
    if (out == nullptr) return gradpack::InvalidArgument("gp_comm_init_from_env: out is NULL");
    *out = nullptr;
    auto comm = std::make_unique<gp_comm>();
    GP_RETURN_IF_ERROR(gradpack::coll::Communicator::create_from_env(&comm->impl));
    *out = comm.release();
    return gradpack::OkStatus();
  });
}

gp_status_t gp_comm_destroy(gp_comm_t* comm) {
  return guarded([&] {
    if (comm != nullptr) {  // its calls leave this thread's open group
      auto& queues = t_group.queues;
      for (auto it = queues.begin(); it != queues.end();) {
        it = it->communicator() == comm->impl.get() ? queues.erase(it) : it + 1;
      }
    }
    delete comm;
    return gradpack::OkStatus();
  });
}

int gp_comm_rank(const gp_comm_t* comm) { return comm ? comm->impl->rank() : -1; }
int gp_comm_size(const gp_comm_t* comm) { return comm ? comm->impl->size() : -1; }

gp_status_t gp_allreduce(gp_comm_t* comm, const void* send, void* recv, size_t count,
                         gp_dtype_t dtype, gp_redop_t op, const gp_allreduce_opts_t* opts) {
  return guarded([&] {
    if (comm == nullptr) return gradpack::InvalidArgument("gp_allreduce: comm is NULL");
    auto call = make_call(gradpack::coll::Collective::kAllReduce, send, recv, count, dtype, op);
    GP_RETURN_IF_ERROR(gradpack::api::from_c_options(opts, &call.options));
    return submit(comm, call);
  });
}

gp_status_t gp_reduce_scatter(gp_comm_t* comm, const void* send, void* recv, size_t recvcount,
                              gp_dtype_t dtype, gp_redop_t op) {
  return guarded([&] {
    if (comm == nullptr) return gradpack::InvalidArgument("gp_reduce_scatter: comm is NULL");
    return submit(comm, make_call(gradpack::coll::Collective::kReduceScatter, send, recv, recvcount,
                                  dtype, op));
  });
}

gp_status_t gp_allgather(gp_comm_t* comm, const void* send, void* recv, size_t sendcount,
                         gp_dtype_t dtype) {
  return guarded([&] {
    if (comm == nullptr) return gradpack::InvalidArgument("gp_allgather: comm is NULL");
    return submit(comm, make_call(gradpack::coll::Collective::kAllGather, send, recv, sendcount,
                                  dtype, GP_SUM));
  });
}

gp_status_t gp_broadcast(gp_comm_t* comm, const void* send, void* recv, size_t count,
                         gp_dtype_t dtype, int root) {
  return guarded([&] {
    if (comm == nullptr) return gradpack::InvalidArgument("gp_broadcast: comm is NULL");
    auto call = make_call(gradpack::coll::Collective::kBroadcast, send, recv, count, dtype, GP_SUM);
    call.root = root;
    return submit(comm, call);
  });
}

gp_status_t gp_sendrecv(gp_comm_t* comm, const void* send, int send_peer, void* recv, int recv_peer,
                        size_t count, gp_dtype_t dtype) {
  return guarded([&] {
    if (comm == nullptr) return gradpack::InvalidArgument("gp_sendrecv: comm is NULL");
    auto call = make_call(gradpack::coll::Collective::kSendRecv, send, recv, count, dtype, GP_SUM);
    call.send_peer = send_peer;
    call.recv_peer = recv_peer;
    return submit(comm, call);
  });
}

gp_status_t gp_barrier(gp_comm_t* comm) {
  return guarded([&] {
    if (comm == nullptr) return gradpack::InvalidArgument("gp_barrier: comm is NULL");
    return submit(comm, make_call(gradpack::coll::Collective::kBarrier, nullptr, nullptr, 0,
                                  GP_UINT8, GP_SUM));
  });
}

gp_status_t gp_group_start(void) {
  ++t_group.depth;
  return GP_OK;
}

gp_status_t gp_group_end(void) {
  return guarded([&] {
    if (t_group.depth == 0) {
      return gradpack::InvalidArgument("gp_group_end without gp_group_start on this thread");
    }
    if (--t_group.depth > 0) return gradpack::OkStatus();  // nested: the outermost end runs it
    return run_group();
  });
}

gp_status_t gp_comm_stats(const gp_comm_t* comm, gp_comm_stats_t* stats) {
  return guarded([&] {
    if (comm == nullptr || stats == nullptr) {
      return gradpack::InvalidArgument("gp_comm_stats: comm and stats must not be NULL");
    }
    // Headers before 0.2 end at last_codec: their callers get the fields they know.
    constexpr size_t kFirstSize = offsetof(gp_comm_stats_t, plan_rebuilds);
    if (stats->struct_size < kFirstSize) {
      return gradpack::InvalidArgument(
          "gp_comm_stats: set stats->struct_size = sizeof(gp_comm_stats_t) first");
    }
    const size_t size = std::min(stats->struct_size, sizeof(gp_comm_stats_t));
    gp_comm_stats_t all;
    std::memset(&all, 0, sizeof(all));
    comm->impl->stats(&all);
    std::memcpy(stats, &all, size);
    stats->struct_size = size;
    return gradpack::OkStatus();
  });
}


gp_status_t gp_comm_topology(const gp_comm_t* comm, gp_comm_topology_t* topology,
                             char* cluster_text, size_t capacity, size_t* length) {
  return guarded([&] {
    if (comm == nullptr) return gradpack::InvalidArgument("gp_comm_topology: comm is NULL");
    const gradpack::coll::Communicator& c = *comm->impl;
    const std::string text =
        c.cluster().empty() ? "" : gradpack::topology::cluster_file_text(c.cluster());
    if (length != nullptr) *length = text.size();
    if (cluster_text != nullptr || capacity != 0) {
      if (cluster_text == nullptr || capacity < text.size() + 1) {
        return gradpack::InvalidArgument("gp_comm_topology: the cluster text needs " +
                                         std::to_string(text.size() + 1) +
                                         " bytes with its NUL, the buffer holds " +
                                         std::to_string(cluster_text == nullptr ? 0 : capacity));
      }
    }
    if (topology != nullptr) GP_RETURN_IF_ERROR(topology_info(c, topology));
    if (cluster_text != nullptr) std::memcpy(cluster_text, text.c_str(), text.size() + 1);
    return gradpack::OkStatus();
  });
}

gp_status_t gp_residuals_save_buffer(gp_comm_t* comm, void* buffer, size_t capacity, size_t* size) {
  return guarded([&] {
    if (comm == nullptr || size == nullptr) {
      return gradpack::InvalidArgument("gp_residuals_save_buffer: comm and size must not be NULL");
    }
    const gradpack::coll::ResidualStore& store = comm->impl->residuals();
    *size = store.serialized_bytes();
    if (buffer == nullptr && capacity == 0) return gradpack::OkStatus();
    if (buffer == nullptr || capacity < *size) {
      return gradpack::InvalidArgument("gp_residuals_save_buffer: the residuals need " +
                                       std::to_string(*size) + " bytes, the buffer holds " +
                                       std::to_string(buffer == nullptr ? 0 : capacity));
    }
    store.serialize(static_cast<uint8_t*>(buffer));
    return gradpack::OkStatus();
  });
}

gp_status_t gp_residuals_load_buffer(gp_comm_t* comm, const void* buffer, size_t size) {
  return guarded([&] {
    if (comm == nullptr || (buffer == nullptr && size > 0)) {
      return gradpack::InvalidArgument(
          "gp_residuals_load_buffer: comm and buffer must not be NULL");
    }
    return comm->impl->residuals().load(static_cast<const uint8_t*>(buffer), size);
  });
}

gp_status_t gp_residuals_save(gp_comm_t* comm, const char* path) {
  return guarded([&] {
    if (comm == nullptr || path == nullptr) {
      return gradpack::InvalidArgument("gp_residuals_save: comm and path must not be NULL");
    }
    const gradpack::coll::ResidualStore& store = comm->impl->residuals();
    std::vector<uint8_t> bytes(store.serialized_bytes());
    store.serialize(bytes.data());
    // Written beside the target and renamed, so a crash never leaves half a checkpoint.
    const std::string tmp = std::string(path) + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (f == nullptr) {
      return gradpack::Status(gradpack::Code::kSystem, "gp_residuals_save: cannot create " + tmp +
                                                           ": " + std::strerror(errno));
    }
    const bool written = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
    const bool closed = std::fclose(f) == 0;
    if (!written || !closed || std::rename(tmp.c_str(), path) != 0) {
      const int err = errno;
      std::remove(tmp.c_str());
      return gradpack::Status(
          gradpack::Code::kSystem,
          std::string("gp_residuals_save: cannot write ") + path + ": " + std::strerror(err));
    }
    return gradpack::OkStatus();
  });
}

gp_status_t gp_residuals_load(gp_comm_t* comm, const char* path) {
  return guarded([&] {
    if (comm == nullptr || path == nullptr) {
      return gradpack::InvalidArgument("gp_residuals_load: comm and path must not be NULL");
    }
    FILE* f = std::fopen(path, "rb");
    if (f == nullptr) {
      return gradpack::InvalidArgument(std::string("gp_residuals_load: cannot open ") + path +
                                       ": " + std::strerror(errno));
    }
    std::vector<uint8_t> bytes;
    uint8_t chunk[1 << 16];
    size_t n = 0;
    while ((n = std::fread(chunk, 1, sizeof(chunk), f)) > 0)
      bytes.insert(bytes.end(), chunk, chunk + n);
    const bool failed = std::ferror(f) != 0;
    std::fclose(f);
    if (failed) {
      return gradpack::Status(gradpack::Code::kSystem,
                              std::string("gp_residuals_load: cannot read ") + path);
    }
    gradpack::Status st = comm->impl->residuals().load(bytes.data(), bytes.size());
    if (!st.ok()) return gradpack::Status(st.code(), std::string(path) + ": " + st.message());
    return st;
  });
}

gp_status_t gp_residuals_reset(gp_comm_t* comm) {
  return guarded([&] {
    if (comm == nullptr) return gradpack::InvalidArgument("gp_residuals_reset: comm is NULL");
    comm->impl->residuals().clear();
    return gradpack::OkStatus();
  });
}

}  // extern "C"
