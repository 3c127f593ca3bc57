#include <cpuid.h>

#include <mutex>
#include <string>

#include "common/log.h"
#include "common/settings.h"
#include "compression/cpu/kernels.h"

namespace gradpack::cpu {

namespace {

// What the CPU and the OS support, from CPUID and XGETBV (the OS must save the wide registers).
struct CpuFeatures {
  bool avx2 = false;
  bool avx512 = false;
};

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
             f16c = c & (1u << 29);
  if (!osxsave || !avx) return f;
  unsigned xcr0_lo, xcr0_hi;
  __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  if ((xcr0_lo & 0x6u) != 0x6u) return f;  // XMM and YMM state
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  const bool avx2 = b & (1u << 5), bmi2 = b & (1u << 8);
  f.avx2 = avx2 && fma && f16c && bmi2;
  const bool avx512f = b & (1u << 16), avx512dq = b & (1u << 17), avx512bw = b & (1u << 30),
             avx512vl = b & (1u << 31), avx512vbmi = c & (1u << 1);
  const bool zmm_state = (xcr0_lo & 0xE0u) == 0xE0u;  // opmask, upper ZMM, high ZMM
  f.avx512 = f.avx2 && zmm_state && avx512f && avx512dq && avx512bw && avx512vl && avx512vbmi;
  return f;
}

const CpuFeatures& features() {
  static const CpuFeatures f = detect();
  return f;
}

}  // namespace

bool cpu_has_avx2() { return features().avx2; }
bool cpu_has_avx512() { return features().avx512; }

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
