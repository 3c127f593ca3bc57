// SPDX-License-Identifier: Apache-2.0
#include "collectives/codec_set.h"

#include "common/crc32c.h"

namespace gradpack::coll {

Status make_codec_set(const CodecSpec& spec, int rank, CodecSet* out) {
  CodecSet c;
  c.canonical = spec.canonical();
  c.topk = spec.kind == CodecKind::kTopk;
  c.lossless = spec.kind == CodecKind::kNone ||
               (spec.kind == CodecKind::kTopk && spec.fraction >= 1.0 && spec.quant.bits == 0);
  CodecSpec worker = spec;
  worker.quant.seed += static_cast<uint64_t>(rank) * 0x9E3779B97F4A7C15ull;
  GP_RETURN_IF_ERROR(Codec::create(worker, &c.worker));
  CodecSpec server = spec;
  if (c.topk) {
    server = CodecSpec{};
    if (spec.quant.bits > 0) {
      server.kind = CodecKind::kQuant;
      server.quant = spec.quant;
    }
  }
  GP_RETURN_IF_ERROR(Codec::create(server, &c.server));
  const std::string both = c.canonical + "|" + server.canonical();
  c.hash = crc32c(both.data(), both.size()) | 1u;
  *out = std::move(c);
  return OkStatus();
}

}  // namespace gradpack::coll
