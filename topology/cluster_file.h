// SPDX-License-Identifier: Apache-2.0
// Cluster files: Slurm's topology.conf (topology/tree plugin) and gradpack's own format, which
// adds link rates and latencies. docs/topology.md describes both with examples.
//
// Slurm (one switch per line; keys case-insensitive, as Slurm reads them):
//   SwitchName=s0 Nodes=h[0-3] LinkSpeed=500mbit
//   SwitchName=s2 Switches=s[0-1] LinkSpeed=125mbit
// LinkSpeed (Slurm leaves its unit to the site) is taken as the rate of the links below the
// switch — its nodes' links, or its child switches' uplinks — in the rate syntax below; a bare
// number is Mbit/s.
//
// gradpack (one switch or host per line, in any order; ranges allowed in a line's NAME):
//   switch core
//   switch rack0 parent=core uplink=125mbit latency=5us
//   host gpvc[0-3] switch=rack0 link=500mbit latency=2us
//
// Rates: a decimal number and a unit of tc's (as scripts/vcluster.sh takes them): bit, kbit,
// mbit, gbit, tbit (also k, m, g, t), or bps, kbps, mbps, gbps — bytes per second, as in tc: 1mbps
// is 8 Mbit/s; no unit: Mbit/s. Latencies: ns, us, ms, s; no unit: microseconds. 0 is unknown.
//
// Every error is kInvalidArgument, starts with "SOURCE:LINE: " and says what is wrong; nothing is
// accepted silently: unknown keys, bad ranges, names defined twice, a host under two switches, a
// switch under two parents, cycles and switches referenced but never defined are all errors.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "topology/cluster.h"

namespace gradpack::topology {

enum class ClusterFormat { kSlurm, kGradpack };
const char* format_name(ClusterFormat format);  // "slurm", "gradpack"

// Expands a Slurm host list: comma-separated names with bracket groups of ranges,
// "h[0-3,7]", "node[01-04]" (the lower bound's zero padding is kept), "r[0-1]n[0-1]" (every
// combination, leftmost group slowest). Errors say what is wrong (no source or line: the caller
// adds them). At most 1,000,000 names.
Status expand_host_list(std::string_view text, std::vector<std::string>* out);

// "25gbit" -> 25000 (Mbit/s); "2us" -> 2 (us). See the units above.
Status parse_rate(std::string_view text, double* mbps);
Status parse_latency(std::string_view text, double* us);
// The inverse, as the writer spells them: "25gbit", "12.5mbit"; "2us". Exact: parsing the text
// gives back the same double.
std::string rate_text(double mbps);
std::string latency_text(double us);

// Parses one format (source names the file in messages).
Status parse_slurm_topology(std::string_view text, const std::string& source, Cluster* out);
Status parse_gradpack_cluster(std::string_view text, const std::string& source, Cluster* out);
// Either, told apart by the first line that is not blank or a comment: a Key=Value token starts
// Slurm's, the word `switch` or `host` gradpack's. `format` (may be null) says which it was.
Status parse_cluster_text(std::string_view text, const std::string& source, Cluster* out,
                          ClusterFormat* format);
// Reads and parses the file at `path`.
Status load_cluster_file(const std::string& path, Cluster* out, ClusterFormat* format = nullptr);

// The cluster in the gradpack format, one line per switch then one per host, in index order, with
// every known rate and latency; parse_gradpack_cluster of it gives back an equal Cluster.
std::string cluster_file_text(const Cluster& cluster);
// Writes cluster_file_text to `path` (replacing it).
Status write_cluster_file(const Cluster& cluster, const std::string& path);

}  // namespace gradpack::topology
