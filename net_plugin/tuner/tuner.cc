// The tuner entry points (tuner.h). One rule today: when the CollNet all-reduce is compressed
// (GRADPACK_COLLNET_COMPRESS) and gradpack's cost model predicts that compressing an all-reduce
// of nBytes across nNodes wins, CollNetChain/SIMPLE is made the cheapest entry of NCCL's table, so
// NCCL sends that all-reduce through the compressed CollNet.
//
// Table rules (reference §3): an entry NCCL disabled (-1) is never enabled, no entry is disabled,
// nChannels is left alone, and getCollInfo always returns ncclSuccess (2.28.9 fails the collective
// otherwise). init never fails either (a failing tuner init fails NCCL's comm init): a bad setting
// is logged and the tuner then changes nothing.
#include "net_plugin/tuner/tuner.h"

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <new>
#include <string>

#include "collectives/auto_model.h"
#include "common/log.h"
#include "common/settings.h"
#include "compression/codec.h"
#include "compression/spec.h"

extern char** environ;

namespace gradpack::plugin::tuner {

namespace {

// The model's figures where nothing was measured (documented in docs/plugin.md "Tuner"):
constexpr double kDefaultLinkMbps = 10000;  // NCCL's own guess for an unknown NIC
constexpr double kLatencyS = 100e-6;        // a small all-reduce among nodes over TCP
constexpr double kEncodeBps = 2e9;          // input bytes/s a CPU core quantizes (q8, AVX2)
constexpr double kDecodeBps = 4e9;          // input bytes/s it dequantizes and accumulates
constexpr size_t kMinProbe = 1024;
constexpr size_t kMaxProbe = size_t{1} << 32;

struct Context {
  bool enabled = false;
  size_t nodes = 1;
  // The smallest all-reduce (bytes) the model predicts compression to win for; SIZE_MAX: never.
  size_t collnet_threshold = std::numeric_limits<size_t>::max();
};

void log_to(ncclDebugLogger_t logger, ncclDebugLogLevel level, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_to(ncclDebugLogger_t logger, ncclDebugLogLevel level, const char* fmt, ...) {
  char text[512];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(text, sizeof(text), fmt, args);
  va_end(args);
  if (logger != nullptr) {
    logger(level, NCCL_TUNING, __FILE__, __LINE__, "gradpack tuner: %s", text);
  } else if (level == NCCL_LOG_WARN) {
    GP_LOG_WARN(kPlugin, "tuner: %s", text);
  } else {
    GP_LOG_INFO(kPlugin, "tuner: %s", text);
  }
}

std::map<std::string, std::string> environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const char* eq = std::strchr(*e, '=');
    if (eq != nullptr) env.emplace(std::string(*e, static_cast<size_t>(eq - *e)), eq + 1);
  }
  return env;
}

// The smallest power-of-two all-reduce size from which the model predicts that `spec` wins on
// `nodes` nodes linked at `mbps`; SIZE_MAX if it never does up to kMaxProbe.
Status compression_threshold(const std::string& spec, size_t nodes, double mbps, size_t* out) {
  *out = std::numeric_limits<size_t>::max();
  CodecSpec parsed;
  GP_RETURN_IF_ERROR(parse_codec_spec(spec, &parsed));
  std::unique_ptr<Codec> codec;
  GP_RETURN_IF_ERROR(Codec::create(parsed.canonical(), &codec));
  coll::LinkModel model;
  model.nranks = static_cast<int>(nodes);
  model.latency_s = kLatencyS;
  model.link_Bps = mbps * 1e6 / 8;
  model.encode_Bps = kEncodeBps;
  model.decode_Bps = kDecodeBps;
  for (size_t bytes = kMinProbe; bytes <= kMaxProbe; bytes *= 2) {
    const size_t wire = codec->max_encoded_bytes(bytes / 4, GP_FLOAT32);
    if (wire == 0) return OkStatus();  // a codec that cannot take fp32: never
    if (coll::predict(model, bytes, wire, parsed.kind == CodecKind::kTopk).compress) {
      *out = bytes;
      return OkStatus();
    }
  }
  return OkStatus();
}

}  // namespace

ncclResult_t init(void** ctx, uint64_t commId, size_t nRanks, size_t nNodes,
                  ncclDebugLogger_t logFunction, ncclNvlDomainInfo_v5_t* nvlDomainInfo,
                  ncclTunerConstants_v5_t* constants) {
  (void)commId, (void)nvlDomainInfo, (void)constants;
  if (ctx == nullptr) return ncclSuccess;  // nothing to keep; getCollInfo of NULL changes nothing
  auto* context = new (std::nothrow) Context;
  *ctx = context;
  if (context == nullptr) return ncclSuccess;
  context->nodes = nNodes;
  Settings settings;
  Status st = Settings::from_map(environment(), &settings);
  if (!st.ok()) {
    log_to(logFunction, NCCL_LOG_WARN, "%s; the tuner changes nothing", st.message().c_str());
    return ncclSuccess;
  }
  if (settings.get(SettingId::kTuner) == "off") return ncclSuccess;
  context->enabled = true;
  const std::string& codec = settings.get(SettingId::kCollnetCompress);
  if (codec.empty() || codec == "off" || codec == "none" || nNodes < 2) return ncclSuccess;
  const int64_t mbps = settings.get_int(SettingId::kNetSpeedMbps);
  st = compression_threshold(codec, nNodes, mbps > 0 ? static_cast<double>(mbps) : kDefaultLinkMbps,
                             &context->collnet_threshold);
  if (!st.ok()) {
    log_to(logFunction, NCCL_LOG_WARN, "GRADPACK_COLLNET_COMPRESS: %s; the tuner changes nothing",
           st.message().c_str());
    context->collnet_threshold = std::numeric_limits<size_t>::max();
    return ncclSuccess;
  }
  if (context->collnet_threshold != std::numeric_limits<size_t>::max()) {
    log_to(logFunction, NCCL_LOG_INFO,
           "%zu ranks on %zu nodes: all-reduces of at least %zu bytes prefer the compressed "
           "CollNet (%s)",
           nRanks, nNodes, context->collnet_threshold, codec.c_str());
  }
  return ncclSuccess;
}

ncclResult_t get_coll_info(void* context, ncclFunc_t collType, size_t nBytes, int numPipeOps,
                           float** collCostTable, int numAlgo, int numProto, int regBuff,
                           int* nChannels) {
  (void)numPipeOps, (void)regBuff, (void)nChannels;
  const auto* ctx = static_cast<const Context*>(context);
  if (ctx == nullptr || !ctx->enabled || collCostTable == nullptr) return ncclSuccess;
  if (collType != ncclFuncAllReduce || ctx->nodes < 2 || nBytes < ctx->collnet_threshold) {
    return ncclSuccess;
  }
  // The table is float[numAlgo][numProto] behind a float** (reference §3); other shapes are a
  // different NCCL than the one this was written for: leave them alone.
  if (numAlgo != NCCL_NUM_ALGORITHMS || numProto != NCCL_NUM_PROTOCOLS) return ncclSuccess;
  auto table = reinterpret_cast<float(*)[NCCL_NUM_PROTOCOLS]>(collCostTable);
  float& chain = table[NCCL_ALGO_COLLNET_CHAIN][NCCL_PROTO_SIMPLE];
  if (chain < 0) return ncclSuccess;  // CollNet is off for this comm: never enable it
  float lowest = chain;
  for (int a = 0; a < numAlgo; ++a) {
    for (int p = 0; p < numProto; ++p) {
      if (table[a][p] >= 0 && table[a][p] < lowest) lowest = table[a][p];
    }
  }
  chain = lowest * 0.5f;  // strictly below every other entry unless they are all 0
  return ncclSuccess;
}

ncclResult_t finalize(void* context) {
  delete static_cast<Context*>(context);
  return ncclSuccess;
}

}  // namespace gradpack::plugin::tuner
