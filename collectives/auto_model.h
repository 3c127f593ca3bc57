// The cost model behind codec "auto" and the top-k algorithm choice (docs/algorithms.md
// "Automatic bypass"). Pure functions of figures every rank agreed on, so every rank decides the
// same thing without talking.
#pragma once

#include <cstddef>

namespace gradpack::coll {

// Measured once per communicator (Communicator::measure_link), then agreed: every figure is the
// slowest rank's.
struct LinkModel {
  int nranks = 1;
  double latency_s = 0;   // an 8-byte uncompressed all-reduce
  // A compressed all-reduce of one quantization block per rank with the codec (0: unknown, then
  // estimated from latency_s and the message count).
  double compressed_latency_s = 0;
  double link_Bps = 0;    // bytes/s one rank sends to its ring neighbour while every rank does
  double encode_Bps = 0;  // input bytes/s the codec encodes with error feedback
  double decode_Bps = 0;  // input bytes/s it decodes and accumulates
};

struct Prediction {
  double uncompressed_s = 0;
  double compressed_s = 0;
  bool compress = false;
};

// Compressing must be predicted this much faster before "auto" compresses: the model's error is
// the rest of the 5 % the bypass may lose.
inline constexpr double kAutoMargin = 0.9;

// `bytes`: the buffer; `wire_bytes`: the frames of the whole buffer; `sparse`: the all-gather of
// top-k frames (else the direct reduce-scatter + all-gather).
Prediction predict(const LinkModel& model, size_t bytes, size_t wire_bytes, bool sparse);

// Top-k: true when the all-gather of sparse frames moves fewer bytes per rank than the direct
// path (top-k frames to the owners, quantized dense frames back): (n-1)·sparse < (n-1)/n·(sparse
// + dense), i.e. below the density f* = dense / ((n-1)·(bytes per kept element)).
bool sparse_wins(int nranks, size_t sparse_frame_bytes, size_t dense_frame_bytes);

}  // namespace gradpack::coll
