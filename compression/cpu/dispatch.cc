#include <mutex>
#include <string>

#include "common/log.h"
#include "common/settings.h"
#include "compression/cpu/kernels.h"

namespace gradpack::cpu {

bool cpu_has_avx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2");
}

bool cpu_has_avx512() {
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vbmi");
}

Status kernels_by_name(const char* isa, const CpuKernels** out) {
  std::string name = isa;
  if (name == "scalar") {
    *out = &scalar_kernels();
    return OkStatus();
  }
  const CpuKernels* table = nullptr;
  bool supported = false;
  if (name == "avx2") {
    table = avx2_kernels();
    supported = cpu_has_avx2();
  } else if (name == "avx512") {
    table = avx512_kernels();
    supported = cpu_has_avx512();
  } else {
    return InvalidArgument("unknown CPU instruction set \"" + name +
                           "\"; expected scalar, avx2 or avx512");
  }
  if (table == nullptr) return Unsupported("this build has no " + name + " kernels");
  if (!supported)
    return Unsupported("this CPU lacks " + name + "; set GRADPACK_CPU_ISA=auto or a narrower one");
  *out = table;
  return OkStatus();
}

Status select_kernels(const CpuKernels** out) {
  static const CpuKernels* chosen = nullptr;
  static Status status;
  static std::once_flag once;
  std::call_once(once, [] {
    const Settings* settings = nullptr;
    status = Settings::global(&settings);
    if (!status.ok()) return;
    const std::string& isa = settings->get(SettingId::kCpuIsa);
    if (isa != "auto") {
      status = kernels_by_name(isa.c_str(), &chosen);
    } else {
      for (const char* name : {"avx512", "avx2", "scalar"})
        if (kernels_by_name(name, &chosen).ok()) break;
    }
    if (status.ok()) GP_LOG_INFO(kCodec, "CPU kernels: %s", chosen->name);
  });
  *out = chosen;
  return status;
}

}  // namespace gradpack::cpu
