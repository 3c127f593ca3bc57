// SPDX-License-Identifier: Apache-2.0
#include "common/affinity.h"

#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <iterator>

namespace gradpack {
namespace {

constexpr int kMaxCpu = 65535;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

bool parse_cpu(std::string_view s, int* out) {
  s = trim(s);
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, *out);
  return !s.empty() && ec == std::errc() && ptr == end && *out >= 0 && *out <= kMaxCpu;
}

}  // namespace

std::string format_cpu_list(const std::vector<int>& cpus) {
  std::string out;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(cpus[i]);
    if (j > i) out += '-' + std::to_string(cpus[j]);
    i = j + 1;
  }
  return out;
}

Status parse_cpu_list(std::string_view text, std::vector<int>* out) {
  out->clear();
  std::vector<int> cpus;
  std::string_view rest = trim(text);
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    size_t dash = item.find('-');
    int first = 0;
    int last = 0;
    bool ok = dash == std::string_view::npos
                  ? parse_cpu(item, &first) && parse_cpu(item, &last)
                  : parse_cpu(item.substr(0, dash), &first) &&
                        parse_cpu(item.substr(dash + 1), &last) && first <= last;
    if (!ok) {
      return InvalidArgument("CPU list \"" + std::string(text) + "\": bad item \"" +
                             std::string(item) + "\" (expected N or N-M, e.g. 0-3,8)");
    }
    for (int cpu = first; cpu <= last; ++cpu) cpus.push_back(cpu);
  }
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  *out = std::move(cpus);
  return OkStatus();
}

Status allowed_cpus(std::vector<int>* out) {
  out->clear();
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return SystemError("sched_getaffinity");
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) out->push_back(cpu);
  }
  return OkStatus();
}

std::vector<int> intersect_cpus(const std::vector<int>& a, const std::vector<int>& b) {
  std::vector<int> out;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

Status set_thread_cpus(pthread_t thread, const std::vector<int>& cpus) {
  if (cpus.empty()) return InvalidArgument("set_thread_cpus: the CPU list is empty");
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int cpu : cpus) {
    if (cpu < 0 || cpu >= CPU_SETSIZE) {
      return InvalidArgument("set_thread_cpus: CPU " + std::to_string(cpu) + " is beyond " +
                             std::to_string(CPU_SETSIZE - 1));
    }
    CPU_SET(cpu, &set);
  }
  int rc = pthread_setaffinity_np(thread, sizeof(set), &set);
  if (rc != 0) {
    errno = rc;
    return SystemError("pthread_setaffinity_np(" + format_cpu_list(cpus) + ")");
  }
  return OkStatus();
}

}  // namespace gradpack
