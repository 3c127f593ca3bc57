// SPDX-License-Identifier: Apache-2.0
// The tuner entry points (tuner.h). One rule today: when the CollNet all-reduce is compressed
// (GRADPACK_COLLNET_COMPRESS) and gradpack's cost model predicts that compressing an all-reduce
// of nBytes across nNodes wins, CollNetChain/SIMPLE is made the cheapest entry of NCCL's table, so
// NCCL sends that all-reduce through the compressed CollNet.
//
// The model's figures. CollNet's connect measures the link and the codec among the nodes, and
// times small all-reduces both ways, and publishes them under NCCL's commId (measured_link.h);
// the timed calls decide the small sizes, the model the rest (combine()). Until then, and where
// they cannot be used, the tuner starts from the configured link (GRADPACK_NET_SPEED_MBPS, else
// 10 Gbit/s) and typical codec rates. getCollInfo looks for new figures with one atomic load.
//
// Every rank must reach the same decision: NCCL picks the algorithm on each rank alone, and ranks
// that picked differently would wait on each other forever. Measured figures are agreed within a
// collComm (the slowest node's), and a communicator's collComms are combined by taking the slowest
// of each figure, which does not depend on the order they arrive in. But only the ranks that head
// a CollNet channel connect, so the measured figures are used only when every rank does: one rank
// per node (nRanks == nNodes, each the head of every channel). Otherwise the configured figures
// decide, the same on every rank. NCCL connects CollNet during comm init (ncclCollNetSetup), so
// every rank has its figures before its first collective.
//
// Table rules (NCCL's src/include/plugin/tuner/tuner_v5.h): an entry NCCL disabled (-1) is never
// enabled, no entry is disabled, nChannels is left alone, and getCollInfo always returns
// ncclSuccess (2.28.9 fails the collective otherwise). init never fails either (a failing tuner
// init fails NCCL's comm init): a bad setting is logged and the tuner then changes nothing.
#include "net_plugin/tuner/tuner.h"

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <string>

#include "common/log.h"
#include "common/settings.h"
#include "compression/codec.h"
#include "compression/spec.h"
#include "net_plugin/collnet/collnet.h"
#include "net_plugin/tuner/measured_link.h"
#include "topology/cost_model.h"

namespace gradpack::plugin::tuner {

namespace {

// The model's figures until CollNet has measured them (documented in docs/plugin.md "Tuner"):
constexpr double kDefaultLinkMbps = 10000;  // NCCL's own guess for an unknown NIC
constexpr double kLatencyS = 100e-6;        // a small all-reduce among nodes over TCP
constexpr double kEncodeBps = 2e9;          // input bytes/s a CPU core quantizes (q8, AVX2)
constexpr double kDecodeBps = 4e9;          // input bytes/s it dequantizes and accumulates
constexpr size_t kNever = topology::kNeverCompress;
constexpr uint64_t kNoGeneration = std::numeric_limits<uint64_t>::max();

struct Context {
  bool enabled = false;
  uint64_t comm_id = 0;
  size_t nodes = 1;
  bool use_measured = false;  // one rank per node: every rank measured (see the file comment)
  std::string codec;          // the CollNet codec, canonical ("" uncompressed: nothing to do)
  ncclDebugLogger_t logger = nullptr;
  // The smallest all-reduce (bytes) the model predicts compression to win for; kNever: never.
  std::atomic<size_t> collnet_threshold{kNever};
  // The measured_link_generation() the threshold reflects (kNoGeneration: not looked yet).
  std::atomic<uint64_t> seen{kNoGeneration};
  std::mutex refresh_mu;
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

// The smallest all-reduce size from which the model predicts that `spec` wins (kNever: never).
Status compression_threshold(const std::string& spec, const topology::LinkModel& model,
                             size_t* out) {
  *out = kNever;
  CodecSpec parsed;
  GP_RETURN_IF_ERROR(parse_codec_spec(spec, &parsed));
  std::unique_ptr<Codec> codec;
  GP_RETURN_IF_ERROR(Codec::create(parsed, &codec));
  *out = topology::compression_threshold(
      model, [&](size_t bytes) { return codec->max_encoded_bytes(bytes / 4, GP_FLOAT32); },
      parsed.kind == CodecKind::kTopk);
  return OkStatus();
}

void log_threshold(const Context& ctx, const char* source) {
  const size_t threshold = ctx.collnet_threshold.load();
  if (threshold == kNever) {
    log_to(ctx.logger, NCCL_LOG_INFO, "%zu nodes, %s (%s): compression never wins, NCCL decides",
           ctx.nodes, source, ctx.codec.c_str());
  } else {
    log_to(ctx.logger, NCCL_LOG_INFO,
           "%zu nodes, %s: all-reduces of at least %zu bytes prefer the compressed CollNet (%s)",
           ctx.nodes, source, threshold, ctx.codec.c_str());
  }
}

std::string bytes_text(size_t bytes) {
  if (bytes == kNever) return "never";
  if (bytes == 0) return "none";
  return std::to_string(bytes) + " B";
}

// The threshold from the model's (`modelled`) and the timed small calls' (`probed`, see
// MeasuredLink) answers. The timed calls decide within and just above their sizes, where the model
// is least sure; beyond them, and whenever the model says compression never wins, the model does.
size_t combine(size_t modelled, size_t probed) {
  constexpr size_t kProbedUpTo = size_t{1} << 20;  // twice the largest probe
  if (modelled == kNever || probed == 0) return modelled;
  if (probed == MeasuredLink::kNoProbedWin) return std::max(modelled, kProbedUpTo);
  return modelled <= kProbedUpTo ? probed : modelled;
}

// Recomputes the threshold when CollNet has published figures for these nodes and codec since
// the last look. Cheap when nothing changed (NCCL calls getCollInfo for every collective).
void refresh(Context* ctx) {
  const uint64_t generation = measured_link_generation();
  if (ctx->seen.load(std::memory_order_acquire) == generation) return;
  std::lock_guard<std::mutex> lock(ctx->refresh_mu);
  if (ctx->seen.load() == generation) return;
  MeasuredLink link;
  if (ctx->use_measured &&
      measured_link(ctx->comm_id, static_cast<int>(ctx->nodes), ctx->codec, &link)) {
    size_t modelled = kNever;
    Status st = compression_threshold(ctx->codec, link.model, &modelled);
    if (st.ok()) {
      const size_t threshold = combine(modelled, link.probed_win_bytes);
      ctx->collnet_threshold.store(threshold);
      char source[256];
      std::snprintf(source, sizeof(source),
                    "measured by CollNet (link %.0f MB/s, latency %.0f us, encode %.0f MB/s; "
                    "model from %s, timed calls from %s)",
                    link.model.link_Bps / 1e6, link.model.latency_s * 1e6,
                    link.model.encode_Bps / 1e6, bytes_text(modelled).c_str(),
                    bytes_text(link.probed_win_bytes).c_str());
      log_threshold(*ctx, source);
    }
  }
  ctx->seen.store(generation, std::memory_order_release);
}

}  // namespace

ncclResult_t init(void** ctx, uint64_t commId, size_t nRanks, size_t nNodes,
                  ncclDebugLogger_t logFunction, ncclNvlDomainInfo_v5_t* nvlDomainInfo,
                  ncclTunerConstants_v5_t* constants) {
  (void)nvlDomainInfo, (void)constants;
  if (ctx == nullptr) return ncclSuccess;  // nothing to keep; getCollInfo of NULL changes nothing
  auto* context = new (std::nothrow) Context;
  *ctx = context;
  if (context == nullptr) return ncclSuccess;
  context->comm_id = commId;
  context->nodes = nNodes;
  context->use_measured = nRanks == nNodes;
  context->logger = logFunction;
  Settings settings;
  Status st = Settings::from_environment(&settings);
  if (!st.ok()) {
    log_to(logFunction, NCCL_LOG_WARN, "%s; the tuner changes nothing", st.message().c_str());
    return ncclSuccess;
  }
  if (settings.get(SettingId::kTuner) == "off") return ncclSuccess;
  context->enabled = true;
  st = collnet::codec_from_setting(settings.get(SettingId::kCollnetCompress), &context->codec);
  if (!st.ok()) {
    log_to(logFunction, NCCL_LOG_WARN, "%s; the tuner changes nothing", st.message().c_str());
    context->codec.clear();
    return ncclSuccess;
  }
  if (context->codec.empty() || nNodes < 2) return ncclSuccess;
  // Until CollNet has measured: the configured link rate, else NCCL's own guess. Not this
  // machine's NIC speed: a figure that may differ between nodes could split the decision.
  double mbps = static_cast<double>(settings.get_int(SettingId::kNetSpeedMbps));
  const char* source = "link of GRADPACK_NET_SPEED_MBPS";
  if (mbps <= 0) {
    mbps = kDefaultLinkMbps;
    source = "link assumed at 10 Gbit/s";
  }
  topology::LinkModel model;
  model.nranks = static_cast<int>(nNodes);
  model.latency_s = kLatencyS;
  model.link_Bps = mbps * 1e6 / 8;
  model.encode_Bps = kEncodeBps;
  model.decode_Bps = kDecodeBps;
  size_t threshold = kNever;
  st = compression_threshold(context->codec, model, &threshold);
  if (!st.ok()) {
    log_to(logFunction, NCCL_LOG_WARN, "GRADPACK_COLLNET_COMPRESS: %s; the tuner changes nothing",
           st.message().c_str());
    context->codec.clear();
    return ncclSuccess;
  }
  context->collnet_threshold.store(threshold);
  char text[192];
  std::snprintf(text, sizeof(text), "%s (%.0f Mbit/s)%s", source, mbps,
                context->use_measured ? ", until CollNet measures it"
                                      : "; several ranks per node: not measured");
  log_threshold(*context, text);
  return ncclSuccess;
}

ncclResult_t get_coll_info(void* context, ncclFunc_t collType, size_t nBytes, int numPipeOps,
                           float** collCostTable, int numAlgo, int numProto, int regBuff,
                           int* nChannels) {
  (void)numPipeOps, (void)regBuff, (void)nChannels;
  auto* ctx = static_cast<Context*>(context);
  if (ctx == nullptr || !ctx->enabled || ctx->codec.empty() || collCostTable == nullptr) {
    return ncclSuccess;
  }
  refresh(ctx);
  if (collType != ncclFuncAllReduce || ctx->nodes < 2 || nBytes < ctx->collnet_threshold.load()) {
    return ncclSuccess;
  }
  // The table is float[numAlgo][numProto] behind a float** (tuner_v5.h); other shapes are a
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
  auto* ctx = static_cast<Context*>(context);
  if (ctx != nullptr) forget_measured_links(ctx->comm_id);
  delete ctx;
  return ncclSuccess;
}

}  // namespace gradpack::plugin::tuner
