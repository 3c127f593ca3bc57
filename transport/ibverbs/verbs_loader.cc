// SPDX-License-Identifier: Apache-2.0
#include "transport/ibverbs/verbs_loader.h"

#include <dlfcn.h>

#include <cstring>

namespace gradpack::transport {
namespace {

template <typename Fn>
bool resolve(void* library, const char* symbol, Fn* out, std::string* missing) {
  void* address = dlsym(library, symbol);
  if (address == nullptr) {
    if (missing->empty()) *missing = symbol;
    return false;
  }
  *out = reinterpret_cast<Fn>(address);
  return true;
}

}  // namespace

VerbsApi::~VerbsApi() {
  if (library != nullptr) dlclose(library);
}

int VerbsApi::query_port(ibv_context* context, uint8_t port, ibv_port_attr* attr) const {
  verbs_context* vctx = verbs_get_ctx_op(context, query_port);
  if (vctx != nullptr) return vctx->query_port(context, port, attr, sizeof(*attr));
  std::memset(attr, 0, sizeof(*attr));
  return query_port_compat(context, port, attr);
}

Status load_verbs(const std::string& path, std::shared_ptr<const VerbsApi>* out) {
  out->reset();
  void* library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    const char* why = dlerror();
    return Unsupported("cannot load " + path + ": " + (why != nullptr ? why : "dlopen failed"));
  }
  auto api = std::make_shared<VerbsApi>();
  api->library = library;
  api->path = path;
  std::string missing;
  resolve(library, "ibv_get_device_list", &api->get_device_list, &missing);
  resolve(library, "ibv_free_device_list", &api->free_device_list, &missing);
  resolve(library, "ibv_open_device", &api->open_device, &missing);
  resolve(library, "ibv_close_device", &api->close_device, &missing);
  resolve(library, "ibv_query_device", &api->query_device, &missing);
  // The exported name of the function that verbs.h wraps in the ibv_query_port macro.
  resolve(library, "ibv_query_port", &api->query_port_compat, &missing);
  resolve(library, "ibv_query_gid", &api->query_gid, &missing);
  resolve(library, "ibv_alloc_pd", &api->alloc_pd, &missing);
  resolve(library, "ibv_dealloc_pd", &api->dealloc_pd, &missing);
  resolve(library, "ibv_reg_mr", &api->reg_mr, &missing);
  resolve(library, "ibv_dereg_mr", &api->dereg_mr, &missing);
  resolve(library, "ibv_create_cq", &api->create_cq, &missing);
  resolve(library, "ibv_destroy_cq", &api->destroy_cq, &missing);
  resolve(library, "ibv_create_qp", &api->create_qp, &missing);
  resolve(library, "ibv_destroy_qp", &api->destroy_qp, &missing);
  resolve(library, "ibv_modify_qp", &api->modify_qp, &missing);
  resolve(library, "ibv_get_device_name", &api->get_device_name, &missing);
  resolve(library, "ibv_get_device_guid", &api->get_device_guid, &missing);
  // Optional, so not through resolve(): its absence is not a load failure.
  api->reg_dmabuf_mr = reinterpret_cast<decltype(api->reg_dmabuf_mr)>(
      dlsym(library, "ibv_reg_dmabuf_mr"));
  if (!missing.empty()) {
    return Unsupported(path + " lacks the symbol " + missing +
                       " (libibverbs too old or not libibverbs)");
  }
  *out = std::move(api);
  return OkStatus();
}

}  // namespace gradpack::transport
