// SPDX-License-Identifier: Apache-2.0
// The algorithm selector: which Algorithm make_plan should use for a request when the user did
// not force one (GRADPACK_ALGO, gp_allreduce_opts_t.algorithm). The rule and its alpha-beta
// reasons are in docs/algorithms.md.
#pragma once

#include "collectives/codec_set.h"
#include "collectives/plan.h"
#include "gradpack/gradpack.h"

namespace gradpack::coll {

// Never returns kAuto. Depends only on fields that are equal on every rank (collective, nranks,
// count, elem_size, host_of_rank), so all ranks choose the same algorithm.
Algorithm select_algorithm(const PlanRequest& request);

// `forced` if it is not kAuto, else GRADPACK_ALGO if set to other than auto, else
// select_algorithm(request). Errors only from reading the settings.
Status resolve_algorithm(Algorithm forced, const PlanRequest& request, Algorithm* out);

// The algorithm of a compressed all-reduce of `shape` with `codecs`. `requested`: the options' or
// GRADPACK_ALGO's choice (kAuto: choose). hd and tree have no compressed form: asked by the options
// (`from_options`) that is an error, from GRADPACK_ALGO the choice is left open; sparse needs a
// top-k codec. Chosen: hier where hosts hold several ranks (select_algorithm's rule), else direct,
// and sparse instead for top-k where its all-gather moves fewer bytes (topology::sparse_wins).
Status select_compressed_algorithm(Algorithm requested, bool from_options, const PlanRequest& shape,
                                   const CodecSet& codecs, gp_dtype_t dtype, Algorithm* out);

// The algorithm of an all-reduce that is sent uncompressed. direct and sparse exist only
// compressed: asked by the options of a call that cannot compress (no codec, not auto) that is an
// error; otherwise (GRADPACK_ALGO, or auto deciding not to compress) the choice is left open.
Status uncompressed_algorithm(Algorithm requested, bool from_options, bool automatic,
                              Algorithm* out);

}  // namespace gradpack::coll
