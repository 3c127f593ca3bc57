// SPDX-License-Identifier: Apache-2.0
// Dispatch of the reduction kernels: the table is chosen once per process, like the codecs' CPU
// kernels (compression/cpu/dispatch.cc, whose CPU detection it shares).
#include "collectives/reduce/reduce.h"

#include <mutex>
#include <string>

#include "collectives/reduce/reduce_kernels.h"
#include "common/log.h"
#include "common/settings.h"
#include "compression/cpu/kernels.h"

namespace gradpack::coll {

namespace {
const cpu::IsaTables& reduce_tables() {
  static const cpu::IsaTables tables{&scalar_reduce_kernels(), avx2_reduce_kernels(),
                                     avx512_reduce_kernels(), "reduction kernels"};
  return tables;
}
}  // namespace

Status reduce_kernels_by_name(const char* isa, const ReduceKernels** out) {
  const void* table = nullptr;
  GP_RETURN_IF_ERROR(cpu::isa_table_by_name(isa, reduce_tables(), &table));
  *out = static_cast<const ReduceKernels*>(table);
  return OkStatus();
}

Status select_reduce_kernels(const ReduceKernels** out) {
  static const ReduceKernels* chosen = nullptr;
  static Status status;
  static std::once_flag once;
  std::call_once(once, [] {
    const void* table = nullptr;
    status = cpu::select_isa_table(reduce_tables(), &table);
    chosen = static_cast<const ReduceKernels*>(table);
    if (status.ok()) GP_LOG_INFO(kColl, "reduction kernels: %s", chosen->name);
  });
  *out = chosen;
  return status;
}

namespace {

// The selected table, or the scalar one where selection failed (reduce_fn() reports that
// failure; divide() and reduce_isa_name() cannot).
const ReduceKernels& active_table() {
  const ReduceKernels* table = nullptr;
  if (!select_reduce_kernels(&table).ok() || table == nullptr) return scalar_reduce_kernels();
  return *table;
}

bool valid_dtype(gp_dtype_t dtype) {
  return static_cast<unsigned>(dtype) < static_cast<unsigned>(kReduceDtypes);
}

}  // namespace

Status reduce_fn(gp_dtype_t dtype, gp_redop_t op, ReduceFn* out) {
  if (out == nullptr) return InvalidArgument("reduce_fn: out is null");
  if (!valid_dtype(dtype))
    return InvalidArgument("unknown dtype " + std::to_string(static_cast<int>(dtype)) +
                           " (expected 0..7, GP_FLOAT32..GP_UINT8)");
  if (static_cast<unsigned>(op) >= static_cast<unsigned>(kReduceOps))
    return InvalidArgument("unknown reduction op " + std::to_string(static_cast<int>(op)) +
                           " (expected 0..4, GP_SUM..GP_AVG)");
  const ReduceKernels* table = nullptr;
  GP_RETURN_IF_ERROR(select_reduce_kernels(&table));
  *out = table->reduce[dtype][op];
  return OkStatus();
}

void divide(void* data, size_t count, gp_dtype_t dtype, int n) {
  // n == 1 leaves the data as it is; n < 1 and an unknown dtype are caller bugs: logged, and the
  // data is left as it is.
  if (n == 1 || count == 0) return;
  if (n < 1 || !valid_dtype(dtype)) {
    GP_LOG_ERROR(kColl, "divide: bad arguments (dtype %d, n %d); data left unchanged",
                 static_cast<int>(dtype), n);
    return;
  }
  active_table().divide[dtype](data, count, n);
}

const char* reduce_isa_name() { return active_table().name; }

}  // namespace gradpack::coll
