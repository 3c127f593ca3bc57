// SPDX-License-Identifier: Apache-2.0
// Top-k internals shared by the codec and its tests: how many elements are kept and where the
// threshold sample is read. The definition these serve is in compression/topk/README.md.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gradpack::topk {

// Inputs up to this many elements are selected exactly over all of them, without a sample.
constexpr uint64_t kExactLimit = 1 << 16;

// k = 0 for count 0, else min(count, max(1, llround(fraction * count))).
uint64_t kept_count(double fraction, uint64_t count);

// The threshold sample: runs of kSampleRun consecutive elements (a run costs one cache miss),
// one run in each of sample_runs(n) equal strides (none when n <= kExactLimit), run j starting
// at sample_run_start(sample_stride(n), j).
constexpr size_t kSampleRun = 4;
size_t sample_runs(uint64_t n);
uint64_t sample_stride(uint64_t n);
uint64_t sample_run_start(uint64_t stride, size_t j);

}  // namespace gradpack::topk
