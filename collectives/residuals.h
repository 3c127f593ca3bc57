// SPDX-License-Identifier: Apache-2.0
// Error-feedback residuals of one communicator, by bucket key, and their checkpoint format.
//
// A residual is what earlier compressed all-reduces of a bucket did not deliver; the next call
// with the same key adds it to its input (docs/algorithms.md "Error feedback"). It is per rank and
// layout-free: whichever algorithm ran, the residual is the amount this rank still owes the sum,
// so a bucket may change algorithm or codec between steps and nothing is lost.
//
// Checkpoint format (little endian, docs/algorithms.md "Checkpointing residuals"):
//   "GPRS" u16 version u16 0  u32 nranks  u32 rank  u64 entries
//   per entry: u32 key bytes, key, u64 count, u8 bits (32 or 16), 7 zero bytes, count*bits/8 bytes
//   u32 crc32c of everything before it
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "compression/cpu/kernels.h"
#include "gradpack/gradpack.h"

namespace gradpack::coll {

constexpr uint16_t kResidualFormatVersion = 1;

struct Residual {
  size_t count = 0;
  int bits = 32;              // 32: fp32 elements, 16: bf16
  std::vector<uint8_t> data;  // count * bits / 8 bytes, zero at creation
  void* values() { return data.data(); }
};

class ResidualStore {
 public:
  ResidualStore(int rank, int nranks) : rank_(rank), nranks_(nranks) {}

  // The residual of `key` for a call of `count` elements kept in `bits`, created (zero) on first
  // use. A key that holds another count or width is refused with a message naming both.
  Status get(const std::string& key, size_t count, int bits, Residual** out);
  // The residual of `key` if there is one (null otherwise).
  Residual* find(const std::string& key);
  void erase(const std::string& key) { entries_.erase(key); }
  void clear() { entries_.clear(); }

  size_t keys() const { return entries_.size(); }
  uint64_t bytes() const;

  // Serialized size and form; load replaces every entry, or changes nothing on error.
  size_t serialized_bytes() const;
  void serialize(uint8_t* out) const;
  Status load(const uint8_t* in, size_t size);

 private:
  int rank_;
  int nranks_;
  std::map<std::string, Residual> entries_;
};

// What an uncompressed call of a bucket sends when the bucket still owes a residual from earlier
// compressed calls: *merged = send + owed, in the call's dtype (fp32, fp16 or bf16; the sum is
// taken in fp32 and rounded to nearest once), through the SIMD kernels `k`.
void fold_residual(const Residual& owed, const void* send, size_t count, gp_dtype_t dtype,
                   const cpu::CpuKernels& k, std::vector<uint8_t>* merged);

}  // namespace gradpack::coll
