// SPDX-License-Identifier: Apache-2.0
// The codecs of one compressed all-reduce spec on one rank, made once per communicator and spec.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "compression/codec.h"
#include "compression/spec.h"

namespace gradpack::coll {

struct CodecSet {
  // Encodes this rank's own data (Stage::kWorker frames). Stochastic rounding is seeded per rank,
  // so the ranks' rounding noise averages out in the sum.
  std::unique_ptr<Codec> worker;
  // Encodes reduced chunks (Stage::kServer frames): the same codec, except top-k's, whose reduced
  // chunks are dense and go through its value quantizer (or uncompressed).
  std::unique_ptr<Codec> server;
  std::string canonical;  // the spec's canonical form
  uint32_t hash = 0;      // of both stages' specs, never 0 (0 means uncompressed in a header)
  bool topk = false;
  bool lossless =
      false;  // nothing to keep a residual for ("none", top-k of everything unquantized)
};

Status make_codec_set(const CodecSpec& spec, int rank, CodecSet* out);

}  // namespace gradpack::coll
