// SPDX-License-Identifier: Apache-2.0
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

Status isa_table_by_name(const char* isa, const IsaTables& tables, const void** out) {
  const std::string name = isa;
  if (name == "scalar") {
    *out = tables.scalar;
    return OkStatus();
  }
  const void* table = nullptr;
  bool supported = false;
  if (name == "avx2") {
    table = tables.avx2;
    supported = cpu_has_avx2();
  } else if (name == "avx512") {
    table = tables.avx512;
    supported = cpu_has_avx512();
  } else {
    return InvalidArgument("unknown CPU instruction set \"" + name +
                           "\"; expected scalar, avx2 or avx512");
  }
  if (table == nullptr) {
    return Unsupported("this build has no " + name + " " + tables.what);
  }
  if (!supported)
    return Unsupported("this CPU lacks " + name + "; set GRADPACK_CPU_ISA=auto or a narrower one");
  *out = table;
  return OkStatus();
}

Status select_isa_table(const IsaTables& tables, const void** out) {
  const Settings* settings = nullptr;
  GP_RETURN_IF_ERROR(Settings::global(&settings));
  const std::string& isa = settings->get(SettingId::kCpuIsa);
  if (isa != "auto") return isa_table_by_name(isa.c_str(), tables, out);
  for (const char* name : {"avx512", "avx2", "scalar"}) {
    if (isa_table_by_name(name, tables, out).ok()) break;
  }
  return OkStatus();
}

namespace {
const IsaTables& codec_tables() {
  static const IsaTables tables{&scalar_kernels(), avx2_kernels(), avx512_kernels(), "kernels"};
  return tables;
}
}  // namespace

Status kernels_by_name(const char* isa, const CpuKernels** out) {
  const void* table = nullptr;
  GP_RETURN_IF_ERROR(isa_table_by_name(isa, codec_tables(), &table));
  *out = static_cast<const CpuKernels*>(table);
  return OkStatus();
}

Status select_kernels(const CpuKernels** out) {
  static const CpuKernels* chosen = nullptr;
  static Status status;
  static std::once_flag once;
  std::call_once(once, [] {
    const void* table = nullptr;
    status = select_isa_table(codec_tables(), &table);
    chosen = static_cast<const CpuKernels*>(table);  // set exactly when status is ok
    if (chosen != nullptr) GP_LOG_INFO(kCodec, "CPU kernels: %s", chosen->name);
  });
  *out = chosen;
  return status;
}

}  // namespace gradpack::cpu
