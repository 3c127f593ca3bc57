// SPDX-License-Identifier: Apache-2.0
#include "collectives/residuals.h"

#include <algorithm>
#include <cstring>

#include "common/crc32c.h"
#include "common/little_endian.h"

namespace gradpack::coll {

namespace {

constexpr uint8_t kMagic[4] = {'G', 'P', 'R', 'S'};
constexpr size_t kHeaderBytes = 24;      // magic, version, reserved, nranks, rank, entries
constexpr size_t kEntryFixedBytes = 20;  // key length, count, bits, padding
// Keys longer than this are refused on load (a corrupt length must not allocate gigabytes).
constexpr size_t kMaxKeyBytes = 4096;

size_t value_bytes(size_t count, int bits) { return count * static_cast<size_t>(bits) / 8; }

}  // namespace

Status ResidualStore::get(const std::string& key, size_t count, int bits, Residual** out) {
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    Residual r;
    r.count = count;
    r.bits = bits;
    r.data.assign(value_bytes(count, bits), 0);
    it = entries_.emplace(key, std::move(r)).first;
  } else if (it->second.count != count || it->second.bits != bits) {
    return InvalidArgument("the residual of bucket \"" + key + "\" holds " +
                           std::to_string(it->second.count) + " elements at " +
                           std::to_string(it->second.bits) + " bits, this call has " +
                           std::to_string(count) + " at " + std::to_string(bits) +
                           ": give each gradient bucket its own key (gp_allreduce_opts_t.key), "
                           "or gp_residuals_reset() after changing the layout");
  }
  *out = &it->second;
  return OkStatus();
}

Residual* ResidualStore::find(const std::string& key) {
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : &it->second;
}

uint64_t ResidualStore::bytes() const {
  uint64_t total = 0;
  for (const auto& [key, r] : entries_) total += r.data.size();
  return total;
}

size_t ResidualStore::serialized_bytes() const {
  size_t total = kHeaderBytes + 4;
  for (const auto& [key, r] : entries_) total += kEntryFixedBytes + key.size() + r.data.size();
  return total;
}

void ResidualStore::serialize(uint8_t* out) const {
  uint8_t* p = out;
  std::memcpy(p, kMagic, 4);
  store_le<uint16_t>(p + 4, kResidualFormatVersion);
  store_le<uint16_t>(p + 6, 0);
  store_le<uint32_t>(p + 8, static_cast<uint32_t>(nranks_));
  store_le<uint32_t>(p + 12, static_cast<uint32_t>(rank_));
  store_le<uint64_t>(p + 16, entries_.size());
  p += kHeaderBytes;
  for (const auto& [key, r] : entries_) {
    store_le<uint32_t>(p, static_cast<uint32_t>(key.size()));
    store_le<uint64_t>(p + 4, r.count);
    p[12] = static_cast<uint8_t>(r.bits);
    std::memset(p + 13, 0, 7);
    p += kEntryFixedBytes;
    std::copy(key.begin(), key.end(), p);
    p += key.size();
    if (!r.data.empty()) std::memcpy(p, r.data.data(), r.data.size());
    p += r.data.size();
  }
  store_le<uint32_t>(p, crc32c(out, static_cast<size_t>(p - out)));
}

Status ResidualStore::load(const uint8_t* in, size_t size) {
  auto corrupt = [](const std::string& why) {
    return CorruptData("not a gradpack residual checkpoint: " + why);
  };
  if (size < kHeaderBytes + 4 || std::memcmp(in, kMagic, 4) != 0) {
    return corrupt("the data does not start with the GPRS header");
  }
  const uint16_t version = load_le<uint16_t>(in + 4);
  if (version != kResidualFormatVersion) {
    return InvalidArgument("residual checkpoint format version " + std::to_string(version) +
                           ", this gradpack reads version " +
                           std::to_string(kResidualFormatVersion) +
                           ": it was written by another gradpack; restart error feedback with "
                           "gp_residuals_reset() instead");
  }
  if (load_le<uint32_t>(in + size - 4) != crc32c(in, size - 4)) {
    return corrupt("its checksum does not match (truncated or damaged)");
  }
  const uint32_t nranks = load_le<uint32_t>(in + 8);
  const uint32_t rank = load_le<uint32_t>(in + 12);
  if (nranks != static_cast<uint32_t>(nranks_) || rank != static_cast<uint32_t>(rank_)) {
    return InvalidArgument("the residual checkpoint is of rank " + std::to_string(rank) + " of " +
                           std::to_string(nranks) + " ranks, this is rank " +
                           std::to_string(rank_) + " of " + std::to_string(nranks_) +
                           ": each rank loads its own file from a run of the same world size");
  }
  const uint64_t n = load_le<uint64_t>(in + 16);
  std::map<std::string, Residual> loaded;
  size_t at = kHeaderBytes;
  const size_t end = size - 4;
  for (uint64_t e = 0; e < n; ++e) {
    if (end - at < kEntryFixedBytes) return corrupt("entry " + std::to_string(e) + " is cut off");
    const uint32_t key_bytes = load_le<uint32_t>(in + at);
    const uint64_t count = load_le<uint64_t>(in + at + 4);
    const int bits = in[at + 12];
    at += kEntryFixedBytes;
    if (bits != 32 && bits != 16) {
      return corrupt("entry " + std::to_string(e) + " has " + std::to_string(bits) + "-bit values");
    }
    if (key_bytes > kMaxKeyBytes || end - at < key_bytes) {
      return corrupt("entry " + std::to_string(e) + " has a key longer than the data");
    }
    std::string key(reinterpret_cast<const char*>(in + at), key_bytes);
    at += key_bytes;
    if (count > (end - at) / (static_cast<size_t>(bits) / 8)) {
      return corrupt("the values of \"" + key + "\" are longer than the data");
    }
    Residual r;
    r.count = count;
    r.bits = bits;
    r.data.assign(in + at, in + at + value_bytes(count, bits));
    at += r.data.size();
    if (!loaded.emplace(std::move(key), std::move(r)).second) {
      return corrupt("a key appears twice");
    }
  }
  if (at != end) return corrupt(std::to_string(end - at) + " bytes follow the last entry");
  entries_ = std::move(loaded);
  return OkStatus();
}

void fold_residual(const Residual& owed, const void* send, size_t count, gp_dtype_t dtype,
                   const cpu::CpuKernels& k, std::vector<uint8_t>* merged) {
  std::vector<float> owed_f32, sum;  // bf16 residuals and 16-bit inputs, widened
  const float* residual = reinterpret_cast<const float*>(owed.data.data());
  if (owed.bits == 16) {
    owed_f32.resize(count);
    k.bf16_to_f32(reinterpret_cast<const uint16_t*>(owed.data.data()), owed_f32.data(), count);
    residual = owed_f32.data();
  }
  const auto* half = static_cast<const uint16_t*>(send);
  merged->resize(count * (dtype == GP_FLOAT32 ? 4 : 2));
  auto* out_half = reinterpret_cast<uint16_t*>(merged->data());
  switch (dtype) {
    case GP_FLOAT16:
      sum.resize(count);
      k.f16_to_f32(half, sum.data(), count);
      k.add_f32(residual, sum.data(), count);
      k.f32_to_f16(sum.data(), out_half, count, false);
      break;
    case GP_BFLOAT16:
      sum.resize(count);
      k.bf16_to_f32(half, sum.data(), count);
      k.add_f32(residual, sum.data(), count);
      k.f32_to_bf16(sum.data(), out_half, count, false);
      break;
    default:  // fp32: the sum is the result
      k.add3_f32(static_cast<const float*>(send), residual,
                 reinterpret_cast<float*>(merged->data()), count);
      break;
  }
}

}  // namespace gradpack::coll
