// avx2 kernels: being written; until then this build reports no avx2 table.
#include "compression/cpu/kernels.h"

namespace gradpack::cpu {
const CpuKernels* avx2_kernels() { return nullptr; }
}  // namespace gradpack::cpu
