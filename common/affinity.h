// SPDX-License-Identifier: Apache-2.0
// CPU lists and thread affinity: the mechanism only. Which CPUs a thread should run on is decided
// above (topology/placement.h picks the CPUs near a NIC); the transport applies the decision to its
// progress threads through set_thread_cpus without knowing where it came from.
//
// A CPU list is the kernel's text form ("0-3,8,10-11", as in /sys/.../local_cpulist and hwloc's
// list syntax); in memory it is a sorted vector of distinct CPU numbers.
#pragma once

#include <pthread.h>

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace gradpack {

// "0-3,8" for {0,1,2,3,8}; "" for none. `cpus` must be sorted and distinct.
std::string format_cpu_list(const std::vector<int>& cpus);

// Parses the kernel's list syntax (blanks and a trailing newline tolerated). A malformed list or a
// CPU number outside [0, 65535] is kInvalidArgument naming the text.
Status parse_cpu_list(std::string_view text, std::vector<int>* out);

// The CPUs the calling thread may run on (sched_getaffinity), sorted: the process's cgroup and
// taskset, and what threads it creates inherit.
Status allowed_cpus(std::vector<int>* out);

// `a` ∩ `b`, both sorted.
std::vector<int> intersect_cpus(const std::vector<int>& a, const std::vector<int>& b);

// Restricts `thread` to `cpus` (pthread_setaffinity_np). An empty list is kInvalidArgument; a CPU
// the kernel refuses is kSystem. Callers that pin as an optimisation log the error and go on.
Status set_thread_cpus(pthread_t thread, const std::vector<int>& cpus);

}  // namespace gradpack
