// The algorithm selector: which Algorithm make_plan should use for a request when the user did
// not force one (GRADPACK_ALGO, gp_allreduce_opts_t.algorithm). The rule and its alpha-beta
// reasons are in docs/algorithms.md.
#pragma once

#include "collectives/plan.h"

namespace gradpack::coll {

// Never returns kAuto. Depends only on fields that are equal on every rank (collective, nranks,
// count, elem_size, host_of_rank), so all ranks choose the same algorithm.
Algorithm select_algorithm(const PlanRequest& request);

// `forced` if it is not kAuto, else GRADPACK_ALGO if set to other than auto, else
// select_algorithm(request). Errors only from reading the settings.
Status resolve_algorithm(Algorithm forced, const PlanRequest& request, Algorithm* out);

}  // namespace gradpack::coll
