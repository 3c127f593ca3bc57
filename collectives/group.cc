// SPDX-License-Identifier: Apache-2.0
#include "collectives/group.h"

#include <cstring>
#include <tuple>

#include "common/dtype.h"
#include "common/settings.h"

namespace gradpack::coll {
namespace {

// What must be equal for two all-reduces to share a packed buffer.
using FusionKey = std::tuple<int, int, int, size_t>;

FusionKey fusion_key(const CollectiveCall& call) {
  return {static_cast<int>(call.dtype), static_cast<int>(call.op),
          static_cast<int>(call.options.algorithm), call.options.segment_bytes};
}

size_t call_bytes(const CollectiveCall& call) { return call.count * dtype_size(call.dtype); }

}  // namespace

Status run_call(Communicator& comm, const CollectiveCall& call) {
  switch (call.collective) {
    case Collective::kAllReduce:
      return comm.allreduce(call.send, call.recv, call.count, call.dtype, call.op, call.options);
    case Collective::kReduceScatter:
      return comm.reduce_scatter(call.send, call.recv, call.count, call.dtype, call.op);
    case Collective::kAllGather:
      return comm.allgather(call.send, call.recv, call.count, call.dtype);
    case Collective::kBroadcast:
      return comm.broadcast(call.send, call.recv, call.count, call.dtype, call.root);
    case Collective::kSendRecv:
      return comm.sendrecv(call.send, call.send_peer, call.recv, call.recv_peer, call.count,
                           call.dtype);
    case Collective::kBarrier:
      return comm.barrier();
  }
  return Internal("run_call: unknown collective");
}

Status CallQueue::add(const CollectiveCall& call) {
  Entry entry;
  entry.call = call;
  GP_RETURN_IF_ERROR(comm_->check_call(call, &entry.fusable));
  entries_.push_back(std::move(entry));
  return OkStatus();
}

// Fusable calls of one key fill a batch in the order they were queued until the next would pass
// fuse_bytes; a call larger than fuse_bytes on its own runs alone.
void CallQueue::assign_batches(size_t fuse_bytes) {
  std::vector<std::pair<FusionKey, int>> open;  // the batch each key fills now
  for (size_t i = 0; i < entries_.size(); ++i) {
    Entry& e = entries_[i];
    const size_t bytes = call_bytes(e.call);
    if (!e.fusable || fuse_bytes == 0 || bytes > fuse_bytes) {
      e.fusable = false;
      continue;
    }
    const FusionKey key = fusion_key(e.call);
    auto it = open.begin();
    while (it != open.end() && it->first != key) ++it;
    if (it == open.end() || batches_[static_cast<size_t>(it->second)].bytes + bytes > fuse_bytes) {
      batches_.emplace_back();
      const int index = static_cast<int>(batches_.size() - 1);
      if (it == open.end()) {
        open.emplace_back(key, index);
      } else {
        it->second = index;
      }
      it = open.end();
      e.batch = index;
    } else {
      e.batch = it->second;
    }
    Batch& batch = batches_[static_cast<size_t>(e.batch)];
    batch.members.push_back(i);
    batch.bytes += bytes;
  }
}

Status CallQueue::run_batch(Batch& batch, std::vector<uint8_t>* scratch) {
  batch.done = true;
  if (batch.members.size() == 1) return run_call(*comm_, entries_[batch.members[0]].call);
  if (batch.bytes == 0) return OkStatus();  // every member has count 0: nothing to reduce
  const CollectiveCall& first = entries_[batch.members[0]].call;
  if (scratch->size() < batch.bytes) scratch->resize(batch.bytes);
  uint8_t* packed = scratch->data();
  size_t offset = 0;
  for (size_t m : batch.members) {
    const CollectiveCall& call = entries_[m].call;
    const size_t bytes = call_bytes(call);
    if (bytes > 0) std::memcpy(packed + offset, call.send, bytes);
    offset += bytes;
  }
  AllreduceOptions options = AllreduceOptions::uncompressed();
  options.algorithm = first.options.algorithm;
  options.segment_bytes = first.options.segment_bytes;
  GP_RETURN_IF_ERROR(comm_->allreduce(packed, packed, batch.bytes / dtype_size(first.dtype),
                                      first.dtype, first.op, options));
  offset = 0;
  for (size_t m : batch.members) {
    const CollectiveCall& call = entries_[m].call;
    const size_t bytes = call_bytes(call);
    if (bytes > 0) std::memcpy(call.recv, packed + offset, bytes);
    offset += bytes;
  }
  return OkStatus();
}

Status CallQueue::run(std::vector<uint8_t>* scratch) {
  const Settings* settings = nullptr;
  GP_RETURN_IF_ERROR(Settings::global(&settings));
  assign_batches(static_cast<size_t>(settings->get_int(SettingId::kGroupFuseBytes)));
  for (Entry& e : entries_) {
    if (e.batch < 0) {
      GP_RETURN_IF_ERROR(run_call(*comm_, e.call));
      continue;
    }
    Batch& batch = batches_[static_cast<size_t>(e.batch)];
    if (!batch.done) GP_RETURN_IF_ERROR(run_batch(batch, scratch));
  }
  return OkStatus();
}

}  // namespace gradpack::coll
