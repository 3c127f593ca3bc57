// SPDX-License-Identifier: Apache-2.0
#include "net_plugin/interposer/nccl_api.h"

#include <dlfcn.h>
#include <link.h>

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "common/log.h"

namespace gradpack::interposer {

namespace {

// Looks each alias up with `find` (a dlsym on some handle). Returns the name of the first
// required one that is missing, "" if none.
template <typename Find>
std::string fill(NcclApi* api, Find find) {
  std::string missing;
  auto get = [&](auto* out, const char* alias, bool required) {
    void* sym = find(alias);
    *out = reinterpret_cast<std::remove_pointer_t<decltype(out)>>(sym);
    if (sym == nullptr && required && missing.empty()) missing = alias;
  };
  get(&api->all_reduce, "pncclAllReduce", true);
  get(&api->comm_destroy, "pncclCommDestroy", true);
  get(&api->comm_abort, "pncclCommAbort", true);
  get(&api->send, "pncclSend", true);
  get(&api->recv, "pncclRecv", true);
  get(&api->group_start, "pncclGroupStart", true);
  get(&api->group_end, "pncclGroupEnd", true);
  get(&api->comm_count, "pncclCommCount", true);
  get(&api->comm_user_rank, "pncclCommUserRank", true);
  get(&api->comm_cu_device, "pncclCommCuDevice", false);
  get(&api->error_string, "pncclGetErrorString", false);
  get(&api->comm_get_async_error, "pncclCommGetAsyncError", false);
  get(&api->group_simulate_end, "pncclGroupSimulateEnd", false);
  return missing;
}

// The loaded objects that export pncclAllReduce, in load order (their paths).
std::vector<std::string> loaded_nccls() {
  std::vector<std::string> found;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        if (info->dlpi_name == nullptr || info->dlpi_name[0] == '\0') return 0;
        void* h = dlopen(info->dlpi_name, RTLD_LAZY | RTLD_NOLOAD);
        if (h == nullptr) return 0;
        // dlsym on a handle also searches the object's dependencies: only count the object
        // that defines the symbol itself.
        void* sym = dlsym(h, "pncclAllReduce");
        Dl_info where{};
        if (sym != nullptr && dladdr(sym, &where) != 0 && where.dli_fname != nullptr &&
            std::string(where.dli_fname) == info->dlpi_name) {
          static_cast<std::vector<std::string>*>(data)->push_back(info->dlpi_name);
        }
        dlclose(h);
        return 0;
      },
      &found);
  return found;
}

// Resolves the table for the object containing `caller`; empty `missing` on success.
std::unique_ptr<NcclApi> resolve(const void* caller, std::string* missing) {
  auto api = std::make_unique<NcclApi>();
  Dl_info info{};
  if (caller != nullptr && dladdr(caller, &info) != 0 && info.dli_fname != nullptr) {
    // RTLD_NOLOAD: only an object already loaded; the handle is kept (it pins nothing new).
    void* h = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
    if (h != nullptr) {
      *missing = fill(api.get(), [h](const char* s) { return dlsym(h, s); });
      if (missing->empty()) {
        api->origin = info.dli_fname;
        return api;
      }
    }
  }
  *missing = fill(api.get(), [](const char* s) { return dlsym(RTLD_DEFAULT, s); });
  if (missing->empty()) {
    api->origin = "the global scope";
    return api;
  }
  const std::vector<std::string> nccls = loaded_nccls();
  if (nccls.empty()) return api;
  void* h = dlopen(nccls[0].c_str(), RTLD_LAZY | RTLD_NOLOAD);
  if (h == nullptr) return api;
  *missing = fill(api.get(), [h](const char* s) { return dlsym(h, s); });
  api->origin = nccls[0];
  if (nccls.size() > 1) {
    GP_LOG_WARN(kPlugin,
                "ncclAllReduce interposer: %zu loaded libraries export NCCL (%s, %s, ...) and the "
                "caller's own is not in its dependencies: using %s",
                nccls.size(), nccls[0].c_str(), nccls[1].c_str(), nccls[0].c_str());
  }
  return api;
}

}  // namespace

const NcclApi& nccl_api_for(const void* caller, std::string* why) {
  // One table per calling object (by its load address); tables are never freed, so references
  // handed out stay valid. Failed lookups are not kept: libnccl may be loaded later.
  static std::mutex mu;
  static auto* tables = new std::map<const void*, std::unique_ptr<NcclApi>>();
  // The last caller of this thread and its table: a training loop calls from one place.
  thread_local const void* last_caller = nullptr;
  thread_local const NcclApi* last_table = nullptr;
  if (caller != nullptr && caller == last_caller) {
    if (why) why->clear();
    return *last_table;
  }
  thread_local NcclApi incomplete;
  Dl_info info{};
  const void* base = nullptr;
  if (caller != nullptr && dladdr(caller, &info) != 0) base = info.dli_fbase;
  std::lock_guard<std::mutex> lock(mu);
  auto it = tables->find(base);
  if (it != tables->end()) {
    if (why) why->clear();
    last_caller = caller;
    last_table = it->second.get();
    return *it->second;
  }
  std::string missing;
  std::unique_ptr<NcclApi> api = resolve(caller, &missing);
  if (!missing.empty()) {
    if (why) *why = "NCCL does not export " + missing + " (is libnccl loaded?)";
    incomplete = *api;
    return incomplete;
  }
  if (why) why->clear();
  GP_LOG_DEBUG(kPlugin, "ncclAllReduce interposer: NCCL for %s is %s",
               info.dli_fname ? info.dli_fname : "?", api->origin.c_str());
  last_caller = caller;
  last_table = tables->emplace(base, std::move(api)).first->second.get();
  return *last_table;
}

bool nccl_api_complete(const NcclApi& api) {
  return api.all_reduce && api.send && api.recv && api.group_start && api.group_end &&
         api.comm_count && api.comm_user_rank && api.comm_destroy && api.comm_abort;
}

}  // namespace gradpack::interposer
