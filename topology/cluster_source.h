// SPDX-License-Identifier: Apache-2.0
// Where the cluster topology comes from (GRADPACK_TOPOLOGY) and what this host is called in it
// (GRADPACK_HOSTNAME). docs/topology.md describes both.
#pragma once

#include <string>

#include "common/settings.h"
#include "common/status.h"
#include "topology/cluster.h"
#include "topology/cluster_file.h"

namespace gradpack::topology {

// GRADPACK_TOPOLOGY, parsed once: auto, off, or a file path.
struct TopologySetting {
  enum class Mode { kAuto, kOff, kFile };
  Mode mode = Mode::kAuto;
  std::string path;  // kFile only
};
// An empty value is an error (unset means auto): it would otherwise name no file silently.
Status parse_topology_setting(const std::string& value, TopologySetting* out);

// The cluster found, and how.
struct ClusterChoice {
  enum class Origin { kFile, kProbe, kFlat };
  Cluster cluster;  // empty when flat
  Origin origin = Origin::kFlat;
  ClusterFormat format = ClusterFormat::kGradpack;  // kFile only
  std::string detail;  // the file's path, what the probe found, or why the cluster is flat
  // auto: the cluster is for the probe to find among the ranks of a communicator
  // (cluster_probe.h); until it has run, flat.
  bool probe = false;
};
const char* origin_name(ClusterChoice::Origin origin);  // "file", "probe", "flat"

// Reads GRADPACK_TOPOLOGY: a file is loaded (its errors returned, with the setting named); off is
// flat; auto is flat with `probe` set: the communicator measures it among its ranks at init
// (topology/cluster_probe.h), where the ranks exist.
Status cluster_from_settings(const Settings& settings, ClusterChoice* out);

// This host's name as the cluster file knows it: GRADPACK_HOSTNAME when set, else gethostname().
// Each rank publishes it (with default_host_id()) for place_ranks (cluster.h).
std::string local_host_name(const Settings& settings);

}  // namespace gradpack::topology
