// SPDX-License-Identifier: Apache-2.0
// The scalar streaming pass and cut (the references the SIMD versions are tested against) and
// the choice of version.
#include "compression/topk/topk_scan.h"

#include <cstring>
#include <mutex>
#include <string>

#include "common/settings.h"
#include "compression/cpu/kernels.h"

namespace gradpack::topk {
namespace {

inline uint32_t key_of(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  u &= kAbsMask;
  return u < kTopKey ? u : kTopKey;
}

}  // namespace

size_t scan_scalar(const float* x, float* r, size_t n, uint32_t thr, uint64_t base, IndexWord* idx,
                   float* val, float* old) {
  constexpr size_t kGroup = 16;
  size_t c = 0;
  size_t i = 0;
  // Groups of 16: the first loop has no data-dependent branch, so the compiler can vectorize it;
  // candidates are rare, and only a group that holds one is walked again.
  for (; i + kGroup <= n; i += kGroup) {
    float v[kGroup], prev[kGroup];
    uint32_t any = 0;
    for (size_t j = 0; j < kGroup; ++j) {
      prev[j] = r ? r[i + j] : 0.0f;
      v[j] = r ? x[i + j] + prev[j] : x[i + j];
      const uint32_t key = key_of(v[j]);
      any |= key >= thr;
      if (r) r[i + j] = key == kTopKey && key >= thr ? prev[j] : v[j];
    }
    if (any == 0) continue;
    for (size_t j = 0; j < kGroup; ++j) {
      if (key_of(v[j]) < thr) continue;
      idx[c] = base + i + j;
      val[c] = v[j];
      if (r) old[c] = prev[j];
      ++c;
    }
  }
  for (; i < n; ++i) {
    const float v = r ? x[i] + r[i] : x[i];
    const uint32_t key = key_of(v);
    if (key >= thr) {
      idx[c] = base + i;
      val[c] = v;
      if (r) old[c] = r[i];
      ++c;
    }
    if (r && !(key == kTopKey && key >= thr)) r[i] = v;
  }
  return c;
}

size_t cut_scalar(IndexWord* idx, float* val, float* old, size_t c, uint32_t cut_key,
                  uint64_t need) {
  // Branch-free: every candidate is copied down, and the output position advances when it stays.
  size_t out = 0;
  for (size_t i = 0; i < c; ++i) {
    const uint32_t key = key_of(val[i]);
    const bool tie = key == cut_key && need > 0;
    need -= tie;
    const bool keep = key > cut_key || tie;
    const uint64_t index = idx[i];
    const float v = val[i];
    idx[out] = index;
    val[out] = v;
    if (old != nullptr) old[out] = old[i];
    out += keep;
  }
  return out;
}

size_t gather_scalar(const float* val, size_t c, uint32_t lo, uint32_t hi, KeyWord* keys) {
  // Branch-free: every key is written, the position advances past those in range.
  size_t m = 0;
  for (size_t i = 0; i < c; ++i) {
    const uint32_t key = key_of(val[i]);
    keys[m] = key;
    m += key >= lo && key <= hi;
  }
  return m;
}

namespace {

enum class Isa { kScalar, kAvx2, kAvx512 };

// The widest instruction set this CPU has, narrowed by GRADPACK_CPU_ISA when that names one.
Isa chosen_isa() {
  static Isa chosen = Isa::kScalar;
  static std::once_flag once;
  std::call_once(once, [] {
    std::string isa = "auto";
    const Settings* settings = nullptr;
    // A bad setting is reported by the kernel table selection; here it just means "auto".
    if (Settings::global(&settings).ok()) isa = settings->get(SettingId::kCpuIsa);
    const bool allow512 = isa == "auto" || isa == "avx512";
    const bool allow2 = allow512 || isa == "avx2";
    if (allow512 && cpu::cpu_has_avx512()) {
      chosen = Isa::kAvx512;
    } else if (allow2 && cpu::cpu_has_avx2()) {
      chosen = Isa::kAvx2;
    }
  });
  return chosen;
}

}  // namespace

ScanFn select_scan() {
  switch (chosen_isa()) {
    case Isa::kAvx512:
      return scan_avx512;
    case Isa::kAvx2:
      return scan_avx2;
    default:
      return scan_scalar;
  }
}

CutFn select_cut() { return chosen_isa() == Isa::kAvx512 ? cut_avx512 : cut_scalar; }

GatherFn select_gather() { return chosen_isa() == Isa::kAvx512 ? gather_avx512 : gather_scalar; }

}  // namespace gradpack::topk
