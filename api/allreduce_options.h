// SPDX-License-Identifier: Apache-2.0
// The C ABI's all-reduce options, read once: a caller's gp_allreduce_opts_t becomes the library's
// coll::AllreduceOptions here and nowhere else.
#pragma once

#include "collectives/options.h"
#include "common/status.h"
#include "gradpack/gradpack.h"

namespace gradpack::api {

// Fields past the caller's struct_size keep their defaults (code built against an older header);
// enums and sentinels are checked and the codec text is parsed, each error naming the field. NULL
// options are the defaults.
Status from_c_options(const gp_allreduce_opts_t* opts, coll::AllreduceOptions* out);

}  // namespace gradpack::api
