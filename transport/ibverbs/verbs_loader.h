// SPDX-License-Identifier: Apache-2.0
// libibverbs loaded at run time: gradpack never links it, so a machine without it (or with a
// library too old to have a symbol we call) gets a transport with zero devices, not a load failure.
//
// Only the exported functions are resolved here. ibv_post_send, ibv_post_recv and ibv_poll_cq are
// inline in verbs.h (they call through the context's provider ops), so they need no symbol; the
// same holds for the provider path of ibv_query_port (see VerbsApi::query_port).
#pragma once

#include <infiniband/verbs.h>

#include <memory>
#include <string>

#include "common/status.h"

namespace gradpack::transport {

inline constexpr const char* kDefaultVerbsLibrary = "libibverbs.so.1";

// The resolved entry points of one dlopen'ed libibverbs. Immutable once loaded, so it may be shared
// between threads; the library stays loaded while any VerbsApi refers to it.
struct VerbsApi {
  ~VerbsApi();

  void* library = nullptr;  // dlopen handle
  std::string path;

  ibv_device** (*get_device_list)(int* num_devices) = nullptr;
  void (*free_device_list)(ibv_device** list) = nullptr;
  ibv_context* (*open_device)(ibv_device* device) = nullptr;
  int (*close_device)(ibv_context* context) = nullptr;
  int (*query_device)(ibv_context* context, ibv_device_attr* attr) = nullptr;
  // The exported ibv_query_port fills the old (compat) layout of ibv_port_attr; call
  // query_port() below instead, which prefers the provider op as the inline in verbs.h does.
  int (*query_port_compat)(ibv_context* context, uint8_t port, ibv_port_attr* attr) = nullptr;
  int (*query_gid)(ibv_context* context, uint8_t port, int index, ibv_gid* gid) = nullptr;
  ibv_pd* (*alloc_pd)(ibv_context* context) = nullptr;
  int (*dealloc_pd)(ibv_pd* pd) = nullptr;
  // verbs.h turns ibv_reg_mr into an inline choosing between the exported ibv_reg_mr and
  // ibv_reg_mr_iova2; we use the access flags that the plain exported one accepts.
  ibv_mr* (*reg_mr)(ibv_pd* pd, void* addr, size_t length, int access) = nullptr;
  int (*dereg_mr)(ibv_mr* mr) = nullptr;
  // Optional: rdma-core 34 and later. Null on an older libibverbs, which still loads (the devices
  // then report no DMA-BUF support).
  ibv_mr* (*reg_dmabuf_mr)(ibv_pd* pd, uint64_t offset, size_t length, uint64_t iova, int fd,
                           int access) = nullptr;
  ibv_cq* (*create_cq)(ibv_context* context, int cqe, void* cq_context, ibv_comp_channel* channel,
                       int comp_vector) = nullptr;
  int (*destroy_cq)(ibv_cq* cq) = nullptr;
  ibv_qp* (*create_qp)(ibv_pd* pd, ibv_qp_init_attr* attr) = nullptr;
  int (*destroy_qp)(ibv_qp* qp) = nullptr;
  int (*modify_qp)(ibv_qp* qp, ibv_qp_attr* attr, int attr_mask) = nullptr;
  const char* (*get_device_name)(ibv_device* device) = nullptr;
  __be64 (*get_device_guid)(ibv_device* device) = nullptr;

  // ibv_query_port with the current struct layout: the provider's query_port op when the context
  // has one (what the inline in verbs.h does), else the exported compat symbol.
  int query_port(ibv_context* context, uint8_t port, ibv_port_attr* attr) const;
};

// Loads `path` (a file name searched like dlopen does, or an absolute path) and resolves every
// symbol above. kUnsupported naming the library or the first missing symbol; nothing stays loaded
// on failure.
Status load_verbs(const std::string& path, std::shared_ptr<const VerbsApi>* out);

}  // namespace gradpack::transport
