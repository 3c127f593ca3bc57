// avx512 kernels: being written; until then this build reports no avx512 table.
#include "compression/cpu/kernels.h"

namespace gradpack::cpu {
const CpuKernels* avx512_kernels() { return nullptr; }
}  // namespace gradpack::cpu
