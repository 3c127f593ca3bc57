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

Status reduce_kernels_by_name(const char* isa, const ReduceKernels** out) {
  const std::string name = isa;
  if (name == "scalar") {
    *out = &scalar_reduce_kernels();
    return OkStatus();
  }
  const ReduceKernels* table = nullptr;
  bool supported = false;
  if (name == "avx2") {
    table = avx2_reduce_kernels();
    supported = cpu::cpu_has_avx2();
  } else if (name == "avx512") {
    table = avx512_reduce_kernels();
    supported = cpu::cpu_has_avx512();
  } else {
    return InvalidArgument("unknown CPU instruction set \"" + name +
                           "\"; expected scalar, avx2 or avx512");
  }
  if (table == nullptr) return Unsupported("this build has no " + name + " reduction kernels");
  if (!supported)
    return Unsupported("this CPU lacks " + name + "; set GRADPACK_CPU_ISA=auto or a narrower one");
  *out = table;
  return OkStatus();
}

Status select_reduce_kernels(const ReduceKernels** out) {
  static const ReduceKernels* chosen = nullptr;
  static Status status;
  static std::once_flag once;
  std::call_once(once, [] {
    const Settings* settings = nullptr;
    status = Settings::global(&settings);
    if (!status.ok()) return;
    const std::string& isa = settings->get(SettingId::kCpuIsa);
    if (isa != "auto") {
      status = reduce_kernels_by_name(isa.c_str(), &chosen);
    } else {
      for (const char* name : {"avx512", "avx2", "scalar"})
        if (reduce_kernels_by_name(name, &chosen).ok()) break;
    }
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
