// SPDX-License-Identifier: Apache-2.0
// The only symbols libnccl-net-gradpack.so exports (cmake/nccl-net-plugin.map hides the rest):
// the net tables v11…v8, the CollNet tables v11…v8 and the tuner v5 table (the names NCCL 2.28.9's
// loaders, src/plugin/net.cc and tuner.cc, look up, newest first). v11 is native; the older tables
// are thin adapters over it. They have no ctx and no finalize, so they share one process-default
// ctx per face (plugin_api.h). Slots gradpack does not implement are NULL, as the reference allows:
// CollNet regMrDmaBuf, getDeviceMr, irecvConsumed, makeVDevice, setNetAttr, CollNet
// iallgather/ireducescatter. Every table names each of its fields, in declaration order (C++20
// designated initializers), so the compiler rejects an entry put in another field's slot.
#include <climits>

#include "net_plugin/collnet/collnet.h"
#include "net_plugin/nccl/nccl_abi.h"
#include "net_plugin/net_v11.h"
#include "net_plugin/plugin_api.h"
#include "net_plugin/tuner/tuner.h"

#define GP_PLUGIN_EXPORT __attribute__((visibility("default")))

namespace gradpack::plugin {
namespace {

// ---- properties: every older struct is a prefix-compatible subset of v11 ----

void to_v10(const ncclNetProperties_v11_t& in, ncclNetProperties_v10_t* out) {
  out->name = in.name;
  out->pciPath = in.pciPath;
  out->guid = in.guid;
  out->ptrSupport = in.ptrSupport;
  out->regIsGlobal = in.regIsGlobal;
  out->forceFlush = in.forceFlush;
  out->speed = in.speed;
  out->port = in.port;
  out->latency = in.latency;
  out->maxComms = in.maxComms;
  out->maxRecvs = in.maxRecvs;
  out->netDeviceType = in.netDeviceType;
  out->netDeviceVersion = in.netDeviceVersion;
  out->vProps = in.vProps;
  out->maxP2pBytes = in.maxP2pBytes;
  out->maxCollBytes = in.maxCollBytes;
}

void to_v8(const ncclNetProperties_v11_t& in, ncclNetProperties_v8_t* out) {
  out->name = in.name;
  out->pciPath = in.pciPath;
  out->guid = in.guid;
  out->ptrSupport = in.ptrSupport;
  out->regIsGlobal = in.regIsGlobal;
  out->speed = in.speed;
  out->port = in.port;
  out->latency = in.latency;
  out->maxComms = in.maxComms;
  out->maxRecvs = in.maxRecvs;
  out->netDeviceType = in.netDeviceType;
  out->netDeviceVersion = in.netDeviceVersion;
}

template <typename Props, void (*Convert)(const ncclNetProperties_v11_t&, Props*),
          ncclResult_t (*Get)(int, ncclNetProperties_v11_t*)>
ncclResult_t properties_as(int dev, Props* props) {
  if (props == nullptr) {
    warn("getProperties: props is NULL");
    return ncclInternalError;
  }
  ncclNetProperties_v11_t full{};
  ncclResult_t result = Get(dev, &full);
  if (result == ncclSuccess) Convert(full, props);
  return result;
}

// ---- net v10 / v9 / v8 ----

ncclResult_t net_init_v10(ncclDebugLogger_t logger, ncclProfilerCallback_t) {
  return net::legacy_init(logger);
}
ncclResult_t net_init_v9(ncclDebugLogger_t logger) { return net::legacy_init(logger); }

ncclResult_t net_listen_legacy(int dev, void* handle, void** listenComm) {
  return net::listen(net::legacy_ctx(), dev, handle, listenComm);
}
ncclResult_t net_connect_v10(int dev, ncclNetCommConfig_v10_t*, void* handle, void** sendComm,
                             ncclNetDeviceHandle_v10_t** sendDevComm) {
  return net::connect(net::legacy_ctx(), dev, handle, sendComm, sendDevComm);
}
ncclResult_t net_connect_v9(int dev, void* handle, void** sendComm,
                            ncclNetDeviceHandle_v9_t** sendDevComm) {
  return net::connect(net::legacy_ctx(), dev, handle, sendComm, sendDevComm);
}
ncclResult_t net_isend_v9(void* sendComm, void* data, size_t size, int tag, void* mhandle,
                          void** request) {
  return net::isend(sendComm, data, size, tag, mhandle, nullptr, request);
}
ncclResult_t net_irecv_v9(void* recvComm, int n, void** data, size_t* sizes, int* tags,
                          void** mhandles, void** request) {
  return net::irecv(recvComm, n, data, sizes, tags, mhandles, nullptr, request);
}
ncclResult_t net_isend_v8(void* sendComm, void* data, int size, int tag, void* mhandle,
                          void** request) {
  if (request != nullptr) *request = nullptr;
  if (size < 0) {
    warn("isend: negative size %d", size);
    return ncclInternalError;
  }
  return net::isend(sendComm, data, static_cast<size_t>(size), tag, mhandle, nullptr, request);
}
ncclResult_t net_irecv_v8(void* recvComm, int n, void** data, int* sizes, int* tags,
                          void** mhandles, void** request) {
  if (request != nullptr) *request = nullptr;
  if (n != 1 || sizes == nullptr || sizes[0] < 0) {
    warn("irecv: n must be 1 (maxRecvs = 1) with a size >= 0");
    return ncclInternalError;
  }
  size_t size = static_cast<size_t>(sizes[0]);
  return net::irecv(recvComm, 1, data, &size, tags, mhandles, nullptr, request);
}

// ---- CollNet v10 / v9 / v8 ----

ncclResult_t collnet_init_for_legacy(void** ctx, void* logger) {
  return collnet::init(ctx, 0, reinterpret_cast<ncclDebugLogger_t>(logger));
}
ncclResult_t collnet_init_legacy(ncclDebugLogger_t logger) {
  return legacy_init(LegacyFace::kCollNet, collnet_init_for_legacy, reinterpret_cast<void*>(logger),
                     nullptr, nullptr);
}
ncclResult_t collnet_listen_legacy(int dev, void* handle, void** listenComm) {
  return collnet::listen(legacy_ctx(LegacyFace::kCollNet), dev, handle, listenComm);
}
ncclResult_t collnet_iallreduce_v8(void* collComm, void* sendData, void* recvData, int count,
                                   ncclDataType_t dataType, ncclRedOp_t redOp, void* sendMhandle,
                                   void* recvMhandle, void** request) {
  if (request != nullptr) *request = nullptr;
  if (count < 0) {
    warn("iallreduce: negative count %d", count);
    return ncclInternalError;
  }
  return collnet::iallreduce(collComm, sendData, recvData, static_cast<size_t>(count), dataType,
                             redOp, sendMhandle, recvMhandle, request);
}

}  // namespace
}  // namespace gradpack::plugin

namespace gp = gradpack::plugin;

extern "C" {

GP_PLUGIN_EXPORT ncclNet_v11_t ncclNetPlugin_v11 = {
    .name = gp::kPluginName,
    .init = gp::net::init,
    .devices = gp::net::devices,
    .getProperties = gp::net::get_properties,
    .listen = gp::net::listen,
    .connect = gp::net::connect,
    .accept = gp::net::accept,
    .regMr = gp::net::reg_mr,
    .regMrDmaBuf = gp::net::reg_mr_dma_buf,
    .deregMr = gp::net::dereg_mr,
    .isend = gp::net::isend,
    .irecv = gp::net::irecv,
    .iflush = gp::net::iflush,
    .test = gp::net::test,
    .closeSend = gp::net::close_send,
    .closeRecv = gp::net::close_recv,
    .closeListen = gp::net::close_listen,
    .getDeviceMr = nullptr,
    .irecvConsumed = nullptr,
    .makeVDevice = nullptr,
    .finalize = gp::net::finalize,
    .setNetAttr = nullptr,
};

GP_PLUGIN_EXPORT ncclNet_v10_t ncclNetPlugin_v10 = {
    .name = gp::kPluginName,
    .init = gp::net_init_v10,
    .devices = gp::net::devices,
    .getProperties =
        gp::properties_as<ncclNetProperties_v10_t, gp::to_v10, gp::net::get_properties>,
    .listen = gp::net_listen_legacy,
    .connect = gp::net_connect_v10,
    .accept = gp::net::accept,
    .regMr = gp::net::reg_mr,
    .regMrDmaBuf = gp::net::reg_mr_dma_buf,
    .deregMr = gp::net::dereg_mr,
    .isend = gp::net::isend,
    .irecv = gp::net::irecv,
    .iflush = gp::net::iflush,
    .test = gp::net::test,
    .closeSend = gp::net::close_send,
    .closeRecv = gp::net::close_recv,
    .closeListen = gp::net::close_listen,
    .getDeviceMr = nullptr,
    .irecvConsumed = nullptr,
    .makeVDevice = nullptr,
};

GP_PLUGIN_EXPORT ncclNet_v9_t ncclNetPlugin_v9 = {
    .name = gp::kPluginName,
    .init = gp::net_init_v9,
    .devices = gp::net::devices,
    .getProperties = gp::properties_as<ncclNetProperties_v9_t, gp::to_v10, gp::net::get_properties>,
    .listen = gp::net_listen_legacy,
    .connect = gp::net_connect_v9,
    .accept = gp::net::accept,
    .regMr = gp::net::reg_mr,
    .regMrDmaBuf = gp::net::reg_mr_dma_buf,
    .deregMr = gp::net::dereg_mr,
    .isend = gp::net_isend_v9,
    .irecv = gp::net_irecv_v9,
    .iflush = gp::net::iflush,
    .test = gp::net::test,
    .closeSend = gp::net::close_send,
    .closeRecv = gp::net::close_recv,
    .closeListen = gp::net::close_listen,
    .getDeviceMr = nullptr,
    .irecvConsumed = nullptr,
    .makeVDevice = nullptr,
};

GP_PLUGIN_EXPORT ncclNet_v8_t ncclNetPlugin_v8 = {
    .name = gp::kPluginName,
    .init = gp::net_init_v9,
    .devices = gp::net::devices,
    .getProperties = gp::properties_as<ncclNetProperties_v8_t, gp::to_v8, gp::net::get_properties>,
    .listen = gp::net_listen_legacy,
    .connect = gp::net_connect_v9,
    .accept = gp::net::accept,
    .regMr = gp::net::reg_mr,
    .regMrDmaBuf = gp::net::reg_mr_dma_buf,
    .deregMr = gp::net::dereg_mr,
    .isend = gp::net_isend_v8,
    .irecv = gp::net_irecv_v8,
    .iflush = gp::net::iflush,
    .test = gp::net::test,
    .closeSend = gp::net::close_send,
    .closeRecv = gp::net::close_recv,
    .closeListen = gp::net::close_listen,
    .getDeviceMr = nullptr,
    .irecvConsumed = nullptr,
};

GP_PLUGIN_EXPORT ncclCollNet_v11_t ncclCollNetPlugin_v11 = {
    .name = gp::kPluginName,
    .init = gp::collnet::init,
    .devices = gp::collnet::devices,
    .getProperties = gp::collnet::get_properties,
    .listen = gp::collnet::listen,
    .connect = gp::collnet::connect,
    .reduceSupport = gp::collnet::reduce_support,
    .regMr = gp::collnet::reg_mr,
    .regMrDmaBuf = nullptr,
    .deregMr = gp::collnet::dereg_mr,
    .iallreduce = gp::collnet::iallreduce,
    .iallgather = nullptr,
    .ireducescatter = nullptr,
    .iflush = gp::collnet::iflush,
    .test = gp::collnet::test,
    .closeColl = gp::collnet::close_coll,
    .closeListen = gp::collnet::close_listen,
    .makeVDevice = nullptr,
    .finalize = gp::collnet::finalize,
};

GP_PLUGIN_EXPORT ncclCollNet_v10_t ncclCollNetPlugin_v10 = {
    .name = gp::kPluginName,
    .init = gp::collnet_init_legacy,
    .devices = gp::collnet::devices,
    .getProperties =
        gp::properties_as<ncclNetProperties_v10_t, gp::to_v10, gp::collnet::get_properties>,
    .listen = gp::collnet_listen_legacy,
    .connect = gp::collnet::connect,
    .reduceSupport = gp::collnet::reduce_support,
    .regMr = gp::collnet::reg_mr,
    .regMrDmaBuf = nullptr,
    .deregMr = gp::collnet::dereg_mr,
    .iallreduce = gp::collnet::iallreduce,
    .iallgather = nullptr,
    .ireducescatter = nullptr,
    .iflush = gp::collnet::iflush,
    .test = gp::collnet::test,
    .closeColl = gp::collnet::close_coll,
    .closeListen = gp::collnet::close_listen,
    .makeVDevice = nullptr,
};

GP_PLUGIN_EXPORT ncclCollNet_v9_t ncclCollNetPlugin_v9 = {
    .name = gp::kPluginName,
    .init = gp::collnet_init_legacy,
    .devices = gp::collnet::devices,
    .getProperties =
        gp::properties_as<ncclNetProperties_v9_t, gp::to_v10, gp::collnet::get_properties>,
    .listen = gp::collnet_listen_legacy,
    .connect = gp::collnet::connect,
    .reduceSupport = gp::collnet::reduce_support,
    .regMr = gp::collnet::reg_mr,
    .regMrDmaBuf = nullptr,
    .deregMr = gp::collnet::dereg_mr,
    .iallreduce = gp::collnet::iallreduce,
    .iallgather = nullptr,
    .ireducescatter = nullptr,
    .iflush = gp::collnet::iflush,
    .test = gp::collnet::test,
    .closeColl = gp::collnet::close_coll,
    .closeListen = gp::collnet::close_listen,
    .makeVDevice = nullptr,
};

GP_PLUGIN_EXPORT ncclCollNet_v8_t ncclCollNetPlugin_v8 = {
    .name = gp::kPluginName,
    .init = gp::collnet_init_legacy,
    .devices = gp::collnet::devices,
    .getProperties =
        gp::properties_as<ncclNetProperties_v8_t, gp::to_v8, gp::collnet::get_properties>,
    .listen = gp::collnet_listen_legacy,
    .connect = gp::collnet::connect,
    .reduceSupport = gp::collnet::reduce_support,
    .regMr = gp::collnet::reg_mr,
    .regMrDmaBuf = nullptr,
    .deregMr = gp::collnet::dereg_mr,
    .iallreduce = gp::collnet_iallreduce_v8,
    .iallgather = nullptr,
    .ireducescatter = nullptr,
    .iflush = gp::collnet::iflush,
    .test = gp::collnet::test,
    .closeColl = gp::collnet::close_coll,
    .closeListen = gp::collnet::close_listen,
};

GP_PLUGIN_EXPORT ncclTuner_v5_t ncclTunerPlugin_v5 = {
    .name = gp::kPluginName,
    .init = gp::tuner::init,
    .getCollInfo = gp::tuner::get_coll_info,
    .finalize = gp::tuner::finalize,
};

}  // extern "C"
