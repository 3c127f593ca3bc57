// SPDX-License-Identifier: Apache-2.0
// Top-k sparsification ("topk:<f>", "topk:<f>+q<b>..."): selection of the kept set, the index
// sections, frame assembly and decoding. compression/topk/README.md states the definition every
// implementation follows bit for bit (the CUDA one included) and how this one finds the set.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/float16.h"
#include "compression/codec_impl.h"
#include "compression/quantize/quant_codec.h"
#include "compression/quantize/quant_ref.h"
#include "compression/topk/topk_scan.h"
#include "compression/topk/topk_select.h"

namespace gradpack {
namespace topk {

uint64_t kept_count(double fraction, uint64_t count) {
  if (count == 0) return 0;
  const long long rounded = std::llround(fraction * static_cast<double>(count));
  return std::min<uint64_t>(count, static_cast<uint64_t>(std::max(1LL, rounded)));
}

size_t sample_runs(uint64_t n) {
  if (n <= kExactLimit) return 0;
  return static_cast<size_t>(std::clamp<uint64_t>(n / 2048, 1024, 4096));
}

uint64_t sample_stride(uint64_t n) { return n / sample_runs(n); }

uint64_t sample_run_start(uint64_t stride, size_t j) {
  // A hashed offset inside stride j (which holds at least 64 elements), scaled without a
  // division, rounded down to a multiple of the run.
  const unsigned __int128 h = quant::mix32(static_cast<uint32_t>(j) ^ 0xA511E9B3u);
  const uint64_t offset = static_cast<uint64_t>((h * (stride - kSampleRun + 1)) >> 32);
  return j * stride + offset / kSampleRun * kSampleRun;
}

}  // namespace topk

namespace {

using topk::kTopKey;

// Elements per call of the streaming pass for fp32 input (16-bit input goes by kStageElements).
constexpr size_t kScanChunk = 1 << 16;
// Room the SIMD scans may write past their last candidate.
constexpr size_t kScanSlack = 16;
// How many sample runs ahead the sampling prefetches.
constexpr size_t kSamplePrefetch = 16;
// How far ahead the residual updates of kept elements prefetch their cache lines.
constexpr uint64_t kPrefetch = 32;

Status corrupt(const std::string& why) { return CorruptData("frame rejected: " + why); }

inline uint32_t key_of(float v) {
  const uint32_t u = float_bits(v) & topk::kAbsMask;
  return u < kTopKey ? u : kTopKey;
}

// Typed arrays carved out of the codec's scratch vector. That memory stays with the codec, so after
// the first call an encode touches no fresh pages (on some machines the page faults of a fresh
// buffer cost as much as the streaming pass). The arrays of other types are reached through
// may_alias pointers; offsets are counted in floats and kept 8-byte aligned.
typedef uint64_t __attribute__((__may_alias__)) CountWord;
typedef uint32_t __attribute__((__may_alias__)) Count32;
using topk::IndexWord;
using topk::KeyWord;

class Arena {
 public:
  explicit Arena(std::vector<float>& storage) : storage_(storage) {}
  // Places n elements of T after the previous ones; valid after commit().
  template <typename T>
  size_t add(size_t n) {
    const size_t off = (used_ + 1) / 2 * 2;
    used_ = off + (n * sizeof(T) + sizeof(float) - 1) / sizeof(float);
    return off;
  }
  void commit() {
    if (storage_.size() < used_) storage_.resize(used_);
  }
  template <typename T>
  T* at(size_t off) {
    return reinterpret_cast<T*>(storage_.data() + off);
  }

 private:
  std::vector<float>& storage_;
  size_t used_ = 0;
};

// Elements that may be kept, in ascending index order, with their v and (with error feedback)
// their residual from before the call. The streaming pass has already set the residual of every
// element to v, except for candidates whose v is NaN or Inf.
struct Candidates {
  IndexWord* idx = nullptr;
  float* val = nullptr;
  float* old = nullptr;  // null without error feedback
  size_t size = 0;
};

// Where a kept set ends: every key above `key`, and the first `need` (lowest index) equal to it.
struct Cut {
  uint32_t key = 0;
  uint64_t need = 0;
};

constexpr uint32_t kHighBins = (kTopKey >> 16) + 1;
constexpr uint32_t kLowBins = 1 << 16;
// Counts of a histogram: the high one twice over (see radix_cut), then the low one.
constexpr size_t kHistogramCounts = 2 * kHighBins + kLowBins;

// The cut that keeps the k largest keys of those visit(f) passes to f, from two histograms: the
// high 16 bits of every key, then the low 16 bits of the keys in the high bin that holds the k-th.
// Needs 1 <= k <= the number of keys, which Count must hold; hist has room for kHistogramCounts.
template <typename Count, typename Visit>
Cut radix_cut(const Visit& visit, uint64_t k, Count* hist) {
  // Alternate keys count into two copies of the high histogram: runs of equal keys are common,
  // and two increments of one counter in a row wait on each other.
  Count* high = hist;
  Count* low = hist + 2 * kHighBins;
  std::fill(hist, hist + kHistogramCounts, 0);
  size_t parity = 0;
  visit([&](uint32_t key) { ++high[2 * (key >> 16) + (parity++ & 1)]; });
  uint64_t above = 0;
  uint32_t bin = kHighBins - 1;
  for (;; --bin) {
    const uint64_t here = static_cast<uint64_t>(high[2 * bin]) + high[2 * bin + 1];
    if (above + here >= k) break;
    above += here;
  }
  // Branch-free: keys of other bins add 0 (a branch here mispredicts as often as it is taken).
  visit([&](uint32_t key) { low[key & 0xFFFFu] += (key >> 16) == bin; });
  uint32_t lo = kLowBins - 1;
  while (above + low[lo] < k) above += low[lo--];
  return {bin << 16 | lo, k - above};
}

// Up to this many values, find_cut selects with nth_element; above, with histograms.
constexpr size_t kSmallCut = 4096;
// find_cut's first histogram: bins of key >> 16 (1/128 of an octave) from just below the floor
// of the keys, the last bin taking every higher key. All candidates have keys at or above the
// scan's threshold, and the k-th largest lies a fraction of an octave above it: 2048 bins span
// 16 octaves, and only they are zeroed and walked (not all 32641 high bins of a key).
constexpr uint32_t kCutBins = 2048;
// The second histogram, over the keys of the bin that holds the k-th largest: bits 8..15.
constexpr uint32_t kFineBins = 256;
// Up to this many keys in that bin, they are selected among directly.
constexpr size_t kFineCut = 512;
// Copies of each histogram (see count_bins).
constexpr size_t kCopies = 4;
constexpr size_t kCutCounts = kCopies * (kCutBins + kFineBins);

// Scratch words find_cut needs for up to c values.
size_t cut_words(size_t c) {
  if (c <= kSmallCut) return (c + 1) / 2;
  return kCutCounts + (c + kScanSlack + 1) / 2;  // the counts (64 bits at most), c keys, slack
}

// The k-th largest of c keys (1 <= k <= c, reordering them) and how many of the k largest equal it.
Cut select_keys(KeyWord* keys, size_t c, uint64_t k) {
  std::nth_element(keys, keys + (k - 1), keys + c, std::greater<>());
  const uint32_t t = keys[k - 1];
  uint64_t above = 0;
  for (size_t i = 0; i < c; ++i) above += keys[i] > t;
  return {t, k - above};
}

// The bin of a count histogram (kCopies copies, interleaved) that holds the k-th largest, walking
// down from the top, and how many counted above it.
template <typename Count>
uint32_t bin_of_kth(const Count* hist, uint32_t bins, uint64_t k, uint64_t* above) {
  uint32_t bin = bins - 1;
  for (;; --bin) {
    uint64_t here = 0;
    for (size_t j = 0; j < kCopies; ++j) here += hist[kCopies * bin + j];
    if (*above + here >= k) return bin;
    *above += here;
  }
}

// Counts bin_of(i) for i < c into kCopies interleaved copies of a histogram (hist[kCopies * bin +
// copy]). The bins of a block are worked out first (a loop the compiler vectorizes); the copies
// take the increments in turn, as runs of equal bins are common and two increments of one
// counter in a row wait on each other.
template <typename Count, typename BinOf>
void count_bins(size_t c, const BinOf& bin_of, Count* hist) {
  constexpr size_t kBlock = 256;
  uint32_t bins[kBlock];
  for (size_t i0 = 0; i0 < c; i0 += kBlock) {
    const size_t b = std::min(kBlock, c - i0);
    for (size_t i = 0; i < b; ++i) bins[i] = static_cast<uint32_t>(kCopies * bin_of(i0 + i));
    size_t i = 0;
    for (; i + kCopies <= b; i += kCopies)
      for (size_t j = 0; j < kCopies; ++j) ++hist[bins[i + j] + j];
    for (; i < b; ++i) ++hist[bins[i]];
  }
}

// The cut keeping the k largest of c values (1 <= k <= c) whose keys are mostly at or above
// `floor` (any below it are still counted right, in the lowest bin; 0: no floor); work holds
// cut_words(c) words. A histogram of the keys' high 16 bits finds the bin that holds the k-th
// largest, then the keys of that bin are gathered and, when many, narrowed by a histogram of
// their bits 8..15, and selected among.
template <typename Count>
Cut find_cut_in_bins(const float* val, size_t c, uint64_t k, uint32_t floor, Count* hist,
                     KeyWord* gathered) {
  // Bin 0 is for keys below the floor's high bits (none when the floor holds): a key at or above
  // the floor lands in a bin of its own high bits, or in the top bin. Without a floor (every
  // element a candidate), the bins end at the largest finite key instead.
  uint32_t base = (floor >> 16) > 0 ? (floor >> 16) - 1 : 0;
  if (floor == 0) {
    uint32_t top = 0;
    for (size_t i = 0; i < c; ++i) {
      const uint32_t key = key_of(val[i]);
      top = std::max(top, key < kTopKey ? key : 0u);
    }
    base = std::max(top >> 16, kCutBins - 2) - (kCutBins - 2);
  }
  Count* coarse = hist;
  Count* fine = hist + kCopies * kCutBins;
  std::fill(hist, hist + kCutCounts, 0);
  count_bins(
      c,
      [&](size_t i) { return std::min(std::max(key_of(val[i]) >> 16, base) - base, kCutBins - 1); },
      coarse);
  uint64_t above = 0;
  const uint32_t bin = bin_of_kth(coarse, kCutBins, k, &above);
  // The keys of that bin.
  const uint32_t lo = bin == 0 ? 0 : (base + bin) << 16;
  const uint32_t hi = bin == kCutBins - 1 ? kTopKey : ((base + bin) << 16) | 0xFFFFu;
  const size_t m = topk::select_gather()(val, c, lo, hi, gathered);
  // A bin of one value of key >> 16 (not the lowest or the top one, which may hold more) is
  // ordered by bits 8..15 next.
  if (m <= kFineCut || bin == 0 || bin == kCutBins - 1) return select_keys(gathered, m, k - above);
  for (size_t i = 0; i < m; ++i) ++fine[kCopies * ((gathered[i] >> 8) & 0xFFu) + (i % kCopies)];
  const uint32_t sub = bin_of_kth(fine, kFineBins, k, &above);
  size_t f = 0;
  for (size_t i = 0; i < m; ++i) {  // in place: f <= i
    const uint32_t key = gathered[i];
    gathered[f] = key;
    f += ((key >> 8) & 0xFFu) == sub;
  }
  return select_keys(gathered, f, k - above);
}

Cut find_cut(const float* val, size_t c, uint64_t k, uint32_t floor, CountWord* work) {
  if (c <= kSmallCut) {
    KeyWord* keys = reinterpret_cast<KeyWord*>(work);
    for (size_t i = 0; i < c; ++i) keys[i] = key_of(val[i]);
    return select_keys(keys, c, k);
  }
  if (c < (uint64_t{1} << 32)) {
    KeyWord* gathered = reinterpret_cast<KeyWord*>(work + kCutCounts / 2);
    return find_cut_in_bins(val, c, k, floor, reinterpret_cast<Count32*>(work), gathered);
  }
  KeyWord* far = reinterpret_cast<KeyWord*>(work + kCutCounts);
  return find_cut_in_bins(val, c, k, floor, work, far);
}

// Keeps the candidates inside the cut. The others are not sent, so their residual is v, as the
// streaming pass left it (a NaN or Inf v keeps its previous residual).
void apply_cut(Candidates& cand, Cut cut) {
  cand.size = topk::select_cut()(cand.idx, cand.val, cand.old, cand.size, cut.key, cut.need);
}

// v of element i, read on its own (for the sample).
float value_at(const EncodeArgs& a, uint64_t i) {
  float x = 0.0f;
  switch (a.dtype) {
    case GP_FLOAT16:
      x = f16_to_f32(static_cast<const uint16_t*>(a.in)[i]);
      break;
    case GP_BFLOAT16:
      x = bf16_to_f32(static_cast<const uint16_t*>(a.in)[i]);
      break;
    default:
      x = static_cast<const float*>(a.in)[i];
      break;
  }
  return a.residual != nullptr ? x + a.residual[i] : x;
}

// The sample's histogram: bins of key >> 21 (4 per octave; keys are below 2^31).
constexpr uint32_t kSampleShift = 21;
constexpr uint32_t kSampleBins = (kTopKey >> kSampleShift) + 1;

struct ScanPlan {
  uint32_t thr = 0;  // the first candidate key
  size_t cap = 0;    // candidates held before the buffer is cut down to k
};

// The streaming threshold, from the keys of a fixed sample: one whose expected count of elements
// at or above it is k plus five standard errors of the sample's estimate (and a little more), so
// that missing k is far beyond chance. Elements of a run may be alike (neighbouring weights of
// one layer), which makes the estimate less certain than that of as many independent elements:
// the margin grows by the design effect measured on the runs. Small inputs take every element as
// a candidate.
ScanPlan plan_scan(const EncodeArgs& a, uint64_t k) {
  const uint64_t n = a.count;
  const size_t runs = topk::sample_runs(n);
  if (runs == 0) return {0, n};
  const size_t s = runs * topk::kSampleRun;
  Arena arena(a.scratch);
  const size_t keys_at = arena.add<KeyWord>(s);
  const size_t order_at = arena.add<KeyWord>(s);
  const size_t hist_at = arena.add<Count32>(kCopies * kSampleBins);
  arena.commit();
  KeyWord* keys = arena.at<KeyWord>(keys_at);    // in run order
  KeyWord* order = arena.at<KeyWord>(order_at);  // the keys of one bin, for nth_element
  Count32* hist = arena.at<Count32>(hist_at);
  const uint64_t stride = topk::sample_stride(n);
  const size_t width = dtype_size(a.dtype);
  for (size_t j = 0; j < runs; ++j) {
    // Each run is on its own page: prefetching a few runs ahead overlaps their TLB misses.
    if (j + kSamplePrefetch < runs) {
      const uint64_t ahead = topk::sample_run_start(stride, j + kSamplePrefetch);
      __builtin_prefetch(static_cast<const char*>(a.in) + ahead * width);
      if (a.residual != nullptr) __builtin_prefetch(a.residual + ahead);
    }
    const uint64_t start = topk::sample_run_start(stride, j);
    for (size_t e = 0; e < topk::kSampleRun; ++e)
      keys[j * topk::kSampleRun + e] = key_of(value_at(a, start + e));
  }
  const double mean = static_cast<double>(k) * static_cast<double>(s) / static_cast<double>(n);
  // The key of sample rank `rank` (1 = largest), or 0 past the sample: a histogram of the keys'
  // top bits finds the bin that holds it, and it is selected among the keys of that bin (a full
  // nth_element over the sample cost as much as reading it).
  std::fill(hist, hist + kCopies * kSampleBins, 0);
  count_bins(
      s, [&](size_t i) { return keys[i] >> kSampleShift; }, hist);
  auto key_at_rank = [&](double rank) -> uint32_t {
    if (rank >= static_cast<double>(s)) return 0;
    uint64_t above = 0;
    const uint32_t bin = bin_of_kth(hist, kSampleBins, static_cast<uint64_t>(rank), &above);
    size_t m = 0;
    for (size_t i = 0; i < s; ++i) {  // branch-free
      order[m] = keys[i];
      m += (keys[i] >> kSampleShift) == bin;
    }
    const size_t j = static_cast<size_t>(rank) - 1 - above;
    std::nth_element(order, order + j, order + m, std::greater<>());
    return order[j];
  };
  constexpr double kZ = 5.0;
  double rank = std::ceil(mean + kZ * std::sqrt(mean) + 8.0);
  uint32_t thr = key_at_rank(rank);
  if (thr != 0) {
    // Design effect: the variance of the per-run counts at or above thr over a binomial's.
    double sum = 0, sum_sq = 0;
    for (size_t j = 0; j < runs; ++j) {
      double c = 0;
      for (size_t e = 0; e < topk::kSampleRun; ++e) c += keys[j * topk::kSampleRun + e] >= thr;
      sum += c;
      sum_sq += c * c;
    }
    const double m = static_cast<double>(runs), run = static_cast<double>(topk::kSampleRun);
    const double p = sum / static_cast<double>(s);
    const double variance = (sum_sq - sum * sum / m) / (m - 1);
    const double binomial = run * p * (1 - p);
    const double effect = binomial > 0 ? std::clamp(variance / binomial, 1.0, run) : 1.0;
    // Below 1.25 the measured effect is within its own noise, and z = 5 has room for it.
    if (effect > 1.25) {
      rank = std::ceil(mean + kZ * std::sqrt(mean * effect) + 8.0);
      thr = key_at_rank(rank);
    }
  }
  if (thr == 0) return {0, n};
  const double expected = rank / static_cast<double>(s) * static_cast<double>(n);
  const double cap = std::max(2.0 * expected, static_cast<double>(k) + 4.0 * kScanChunk);
  return {thr, static_cast<size_t>(std::min(cap, static_cast<double>(n)))};
}

// Where one encode keeps its arrays.
struct Workspace {
  float* stage = nullptr;  // 16-bit input converted to fp32, one chunk
  Candidates cand;         // room for `room` entries
  size_t room = 0;
  CountWord* work = nullptr;  // find_cut's words, then the quantized section and its decode
  uint32_t floor = 0;         // no candidate's key is below it
};

Workspace make_workspace(const EncodeArgs& a, uint64_t k, size_t chunk, size_t cap) {
  Workspace w;
  w.room = cap + chunk + kScanSlack;
  const bool quantized = a.spec.quant.bits != 0;
  const size_t section_words =
      quantized ? (quant_section_bytes(k, a.spec.quant.bits, a.spec.quant.block) + 7) / 8 : 0;
  const size_t decoded_words = quantized && a.residual != nullptr ? (k + 1) / 2 : 0;
  const size_t work_words = std::max(cut_words(w.room), section_words + decoded_words);
  Arena arena(a.scratch);
  const size_t stage_at = arena.add<float>(a.dtype == GP_FLOAT32 ? 0 : chunk);
  const size_t idx_at = arena.add<IndexWord>(w.room);
  const size_t val_at = arena.add<float>(w.room);
  const size_t old_at = arena.add<float>(a.residual != nullptr ? w.room : 0);
  const size_t work_at = arena.add<CountWord>(work_words);
  arena.commit();
  w.stage = arena.at<float>(stage_at);
  w.cand.idx = arena.at<IndexWord>(idx_at);
  w.cand.val = arena.at<float>(val_at);
  w.cand.old = a.residual != nullptr ? arena.at<float>(old_at) : nullptr;
  w.work = arena.at<CountWord>(work_at);
  return w;
}

// The streaming pass over all elements: computes v, collects the candidates and sets r = v. When
// the buffer outgrows its plan (ties, or a skewed sample) it is cut down to the k best so far and
// the threshold rises past the cut: a later element can only beat them with a strictly larger
// key, as it loses ties by its higher index.
Workspace scan_all(const EncodeArgs& a, uint64_t k) {
  const uint64_t n = a.count;
  const ScanPlan plan = plan_scan(a, k);
  const size_t chunk = a.dtype == GP_FLOAT32 ? kScanChunk : kStageElements;
  Workspace w = make_workspace(a, k, chunk, plan.cap);
  w.floor = plan.thr;
  Candidates& cand = w.cand;
  uint32_t thr = plan.thr;
  const topk::ScanFn scan = topk::select_scan();
  for (uint64_t off = 0; off < n; off += chunk) {
    const size_t m = static_cast<size_t>(std::min<uint64_t>(chunk, n - off));
    const float* x = load_f32(a.k, a.in, a.dtype, off, m, w.stage);
    cand.size += scan(x, a.residual ? a.residual + off : nullptr, m, thr, off, cand.idx + cand.size,
                      cand.val + cand.size, cand.old != nullptr ? cand.old + cand.size : nullptr);
    if (cand.size > plan.cap) {
      const Cut cut = find_cut(cand.val, cand.size, k, plan.thr, w.work);
      apply_cut(cand, cut);
      // Never above the top key: NaN and Inf must stay candidates, whose residual the scan keeps.
      thr = std::min(cut.key + 1, topk::kTopKey);
    }
  }
  return w;
}

// The sample put the threshold too high: fewer than k elements reached it. The rest of the kept
// set is the best of the other elements, whose v is now in the residual (or is the input), found
// by a radix cut over them and merged in. Their residual from before the call is gone, which
// matters only for a kept element in a quantized block holding NaN or Inf (see README.md).
void rescan(const EncodeArgs& a, uint64_t k, Workspace& w) {
  const uint64_t n = a.count;
  Candidates& cand = w.cand;
  std::vector<float> stage(a.residual == nullptr && a.dtype != GP_FLOAT32 ? kStageElements : 0);
  // f(i, v) for every element that is not a candidate, in index order.
  auto visit_others = [&](const auto& f) {
    size_t p = 0;
    for (uint64_t off = 0; off < n; off += kStageElements) {
      const size_t m = static_cast<size_t>(std::min<uint64_t>(kStageElements, n - off));
      const float* v = a.residual != nullptr ? a.residual + off
                                             : load_f32(a.k, a.in, a.dtype, off, m, stage.data());
      for (size_t i = 0; i < m; ++i) {
        if (p < cand.size && cand.idx[p] == off + i) {
          ++p;
          continue;
        }
        f(off + i, v[i]);
      }
    }
  };
  const uint64_t more = k - cand.size;
  std::vector<uint64_t> hist(kHistogramCounts);
  Cut cut =
      radix_cut([&](const auto& f) { visit_others([&](uint64_t, float v) { f(key_of(v)); }); },
                more, hist.data());
  std::vector<uint64_t> extra_idx;
  std::vector<float> extra_val;
  extra_idx.reserve(more);
  extra_val.reserve(more);
  visit_others([&](uint64_t i, float v) {
    const uint32_t key = key_of(v);
    bool keep = key > cut.key;
    if (key == cut.key && cut.need > 0) {
      keep = true;
      --cut.need;
    }
    if (keep) {
      extra_idx.push_back(i);
      extra_val.push_back(v);
    }
  });
  // Merge, from the back, into the candidate arrays (room >= k).
  size_t i = cand.size, j = more, out = k;
  while (j > 0) {
    if (i > 0 && cand.idx[i - 1] > extra_idx[j - 1]) {
      --i;
      --out;
      cand.idx[out] = cand.idx[i];
      cand.val[out] = cand.val[i];
      if (cand.old != nullptr) cand.old[out] = cand.old[i];
    } else {
      --j;
      --out;
      cand.idx[out] = extra_idx[j];
      cand.val[out] = extra_val[j];
      if (cand.old != nullptr) cand.old[out] = extra_val[j];  // the residual now holds v
    }
  }
  cand.size = k;
}

// The kept set, exactly: k candidates in ascending index order.
Workspace select_kept(const EncodeArgs& a, uint64_t k) {
  Workspace w = scan_all(a, k);
  if (w.cand.size > k) {
    Cut cut = find_cut(w.cand.val, w.cand.size, k, w.floor, w.work);
    apply_cut(w.cand, cut);
  } else if (w.cand.size < k) {
    rescan(a, k, w);
  }
  return w;
}

int varint_length(uint64_t v) { return v < 128 ? 1 : (std::bit_width(v) + 6) / 7; }

// Writes the varint section if it is at most `limit` bytes and returns its size; otherwise stops
// and returns limit + 1. May write one byte past the section (the values overwrite it).
uint64_t write_varints(const IndexWord* idx, uint64_t kept, uint64_t limit, uint8_t* out) {
  uint64_t pos = 0, next = 0;
  for (uint64_t j = 0; j < kept; ++j) {
    uint64_t gap = idx[j] - next;
    next = idx[j] + 1;
    if (gap < (1u << 14)) {
      // Most gaps take one or two bytes: both are stored, the position moves by the length
      // (without a branch, which would mispredict on every other gap at 1 % density).
      const uint64_t two = gap >> 7 != 0;
      if (pos + 1 + two > limit) return limit + 1;
      out[pos] = static_cast<uint8_t>((gap & 0x7F) | two << 7);
      out[pos + 1] = static_cast<uint8_t>(gap >> 7);
      pos += 1 + two;
      continue;
    }
    if (pos + static_cast<uint64_t>(varint_length(gap)) > limit) return limit + 1;
    while (gap >= 0x80) {
      out[pos++] = static_cast<uint8_t>(gap | 0x80);
      gap >>= 7;
    }
    out[pos++] = static_cast<uint8_t>(gap);
  }
  return pos;
}

void write_bitmap(const IndexWord* idx, uint64_t kept, uint64_t count, uint8_t* out) {
  std::memset(out, 0, (count + 7) / 8);
  for (uint64_t j = 0; j < kept; ++j) out[idx[j] / 8] |= static_cast<uint8_t>(1u << (idx[j] % 8));
}

Status parse_varints(const uint8_t* in, uint64_t bytes, uint64_t kept, uint64_t count,
                     uint64_t* idx) {
  uint64_t pos = 0, next = 0;
  for (uint64_t j = 0; j < kept; ++j) {
    uint64_t gap = 0;
    for (int len = 0;; ++len) {
      if (pos == bytes)
        return corrupt("the varint index section ends inside index " + std::to_string(j) + " of " +
                       std::to_string(kept));
      const uint8_t b = in[pos++];
      if (len == 9 && b > 1)
        return corrupt((b & 0x80) != 0 ? "an index varint is longer than 10 bytes"
                                       : "an index varint overflows 64 bits");
      gap |= static_cast<uint64_t>(b & 0x7F) << (7 * len);
      if ((b & 0x80) == 0) break;
    }
    if (gap >= count - next)
      return corrupt("index " + std::to_string(j) + " is not below the count " +
                     std::to_string(count));
    idx[j] = next + gap;
    next = idx[j] + 1;
  }
  if (pos != bytes)
    return corrupt("the varint index section has " + std::to_string(bytes - pos) +
                   " bytes after its " + std::to_string(kept) + " indices");
  return OkStatus();
}

Status parse_bitmap(const uint8_t* in, uint64_t count, uint64_t kept, uint64_t* idx) {
  const uint64_t bytes = (count + 7) / 8;
  if (count % 8 != 0 && (in[bytes - 1] >> (count % 8)) != 0)
    return corrupt("the index bitmap has pad bits set");
  uint64_t set = 0;
  for (uint64_t i = 0; i < bytes; ++i) set += static_cast<uint64_t>(std::popcount(in[i]));
  if (set != kept)
    return corrupt("the index bitmap marks " + std::to_string(set) + " elements but the header " +
                   "says " + std::to_string(kept) + " are kept");
  uint64_t c = 0;
  for (uint64_t i = 0; i < bytes; ++i) {
    unsigned b = in[i];
    while (b != 0) {
      idx[c++] = i * 8 + static_cast<uint64_t>(std::countr_zero(b));
      b &= b - 1;
    }
  }
  return OkStatus();
}

// Writes the kept values: out[idx[j]] = val[j] (or += it, summed in fp32 and rounded once), and
// zero everywhere else when not accumulating.
void scatter(const uint64_t* idx, const float* val, uint64_t kept, uint64_t count, void* out,
             gp_dtype_t dtype, bool accumulate) {
  if (!accumulate && count > 0) std::memset(out, 0, count * dtype_size(dtype));
  if (dtype == GP_FLOAT32) {
    float* o = static_cast<float*>(out);
    for (uint64_t j = 0; j < kept; ++j) o[idx[j]] = accumulate ? o[idx[j]] + val[j] : val[j];
    return;
  }
  uint16_t* o = static_cast<uint16_t*>(out);
  if (dtype == GP_FLOAT16) {
    for (uint64_t j = 0; j < kept; ++j)
      o[idx[j]] = f32_to_f16(accumulate ? f16_to_f32(o[idx[j]]) + val[j] : val[j]);
  } else {
    for (uint64_t j = 0; j < kept; ++j)
      o[idx[j]] = f32_to_bf16(accumulate ? bf16_to_f32(o[idx[j]]) + val[j] : val[j]);
  }
}

}  // namespace

size_t topk_max_payload(const CodecSpec& spec, size_t count) {
  const uint64_t k = topk::kept_count(spec.fraction, count);
  // The encoder sends the smaller of the two index sections, so either size bounds it; no gap
  // exceeds count - 1.
  const uint64_t bitmap = (count + 7) / 8;
  const uint64_t varint = k * static_cast<uint64_t>(varint_length(count > 0 ? count - 1 : 0));
  const uint64_t values =
      spec.quant.bits == 0 ? 4 * k : quant_section_bytes(k, spec.quant.bits, spec.quant.block);
  return std::min(bitmap, varint) + values;
}

Status topk_encode(const EncodeArgs& a) {
  const uint64_t n = a.count;
  const uint64_t k = topk::kept_count(a.spec.fraction, n);
  const bool quantized = a.spec.quant.bits != 0;
  const cpu::QuantParams p = quant_params(a.spec.quant, a.key);
  FrameHeader& h = *a.header;
  if (quantized) {
    h.bits = static_cast<uint8_t>(p.bits);
    h.block = p.block;
    h.flags = p.stochastic ? kFlagStochastic : 0;
  }
  h.kept = k;

  Workspace w;
  if (k > 0) w = select_kept(a, k);
  const IndexWord* idx = w.cand.idx;
  const float* val = w.cand.val;

  // The bitmap only when strictly smaller than the varints.
  const uint64_t bitmap_bytes = (n + 7) / 8;
  const uint64_t varint_bytes = write_varints(idx, k, bitmap_bytes, a.payload);
  if (varint_bytes > bitmap_bytes) {
    h.index_encoding = IndexEncoding::kBitmap;
    h.index_bytes = bitmap_bytes;
    write_bitmap(idx, k, n, a.payload);
  } else {
    h.index_encoding = IndexEncoding::kDeltaVarint;
    h.index_bytes = varint_bytes;
  }
  uint8_t* values = a.payload + h.index_bytes;
  float* r = a.residual;

  if (!quantized) {
    h.payload_bytes = h.index_bytes + 4 * k;
    if (k > 0) std::memcpy(values, val, 4 * k);
    for (uint64_t j = 0; j < k; ++j) {
      if (r != nullptr && j + kPrefetch < k) __builtin_prefetch(r + idx[j + kPrefetch], 1);
      // The receiver gets val[j] exactly. A NaN or Inf is sent, and its residual, which the
      // streaming pass left alone, stays.
      if (key_of(val[j]) == kTopKey) {
        ++a.stats->nonfinite_blocks;
      } else if (r != nullptr) {
        r[idx[j]] = val[j] - val[j];
      }
    }
    return OkStatus();
  }

  const uint64_t section_bytes = quant_section_bytes(k, p.bits, p.block);
  h.payload_bytes = h.index_bytes + section_bytes;
  if (k == 0) return OkStatus();
  // The section follows the indices at any byte offset: it is built aligned in the workspace (the
  // kernels store its scales as floats), then copied. fp32 values need no staging vector.
  float* scales = reinterpret_cast<float*>(w.work);
  uint8_t* sec = reinterpret_cast<uint8_t*>(scales);
  std::vector<float> unused;
  a.stats->nonfinite_blocks +=
      quant_encode_values(a.k, val, GP_FLOAT32, k, nullptr, p, unused, sec);
  std::memcpy(values, sec, section_bytes);
  if (r == nullptr) return OkStatus();
  // r = v - what the receiver decodes; a block with scale NaN keeps the residual from before.
  float* d = scales + (section_bytes + 7) / 8 * 2;
  quant_decode_values(a.k, sec, k, p, d, GP_FLOAT32, false, unused);
  const float* old = w.cand.old;
  for (uint64_t b0 = 0, b = 0; b0 < k; b0 += p.block, ++b) {
    const uint64_t end = std::min<uint64_t>(k, b0 + p.block);
    const bool poisoned = std::isnan(scales[b]);
    for (uint64_t j = b0; j < end; ++j) {
      if (j + kPrefetch < k) __builtin_prefetch(r + idx[j + kPrefetch], 1);
      r[idx[j]] = poisoned ? old[j] : val[j] - d[j];
    }
  }
  return OkStatus();
}

Status topk_decode(const DecodeArgs& a) {
  const FrameHeader& h = a.h;
  const uint64_t n = h.count, kept = h.kept;
  // Sizes are bounded by the frame: read_frame_header proved its sections are all present.
  std::vector<uint64_t> idx(kept);
  const uint8_t* index = a.payload + a.l.index_offset;
  if (h.index_encoding == IndexEncoding::kBitmap) {
    GP_RETURN_IF_ERROR(parse_bitmap(index, n, kept, idx.data()));
  } else {
    GP_RETURN_IF_ERROR(parse_varints(index, a.l.index_bytes, kept, n, idx.data()));
  }
  std::vector<float> val(kept);
  if (h.bits == 0) {
    if (kept > 0) std::memcpy(val.data(), a.payload + a.l.values_offset, 4 * kept);
  } else {
    cpu::QuantParams p;
    p.bits = h.bits;
    p.block = h.block;
    const uint64_t section_bytes = a.l.blocks * 4 + a.l.codes_bytes;
    const uint8_t* section = a.payload + a.l.scales_offset;
    // The section may start at any byte offset; the kernels read its scales as floats.
    std::vector<float> aligned;
    if (reinterpret_cast<uintptr_t>(section) % alignof(float) != 0) {
      aligned.resize((section_bytes + 3) / 4);
      std::memcpy(aligned.data(), section, section_bytes);
      section = reinterpret_cast<const uint8_t*>(aligned.data());
    }
    GP_RETURN_IF_ERROR(quant_check_values(section, kept, p.bits, p.block));
    std::vector<float> scratch;
    if (kept > 0)
      quant_decode_values(a.k, section, kept, p, val.data(), GP_FLOAT32, false, scratch);
  }
  scatter(idx.data(), val.data(), kept, n, a.out, a.dtype, a.accumulate);
  return OkStatus();
}

}  // namespace gradpack
