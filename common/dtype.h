// SPDX-License-Identifier: Apache-2.0
// Element sizes of the C API's dtypes, for code inside the library.
#pragma once

#include <cstddef>

#include "gradpack/gradpack.h"

namespace gradpack {

constexpr size_t dtype_size(gp_dtype_t dtype) {
  switch (dtype) {
    case GP_INT8:
    case GP_UINT8:
      return 1;
    case GP_FLOAT16:
    case GP_BFLOAT16:
      return 2;
    case GP_FLOAT32:
    case GP_INT32:
      return 4;
    case GP_FLOAT64:
    case GP_INT64:
      return 8;
  }
  return 0;
}

}  // namespace gradpack
