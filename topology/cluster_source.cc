// SPDX-License-Identifier: Apache-2.0
#include "topology/cluster_source.h"

#include <unistd.h>

namespace gradpack::topology {

Status parse_topology_setting(const std::string& value, TopologySetting* out) {
  TopologySetting t;
  if (value == "auto") {
    t.mode = TopologySetting::Mode::kAuto;
  } else if (value == "off") {
    t.mode = TopologySetting::Mode::kOff;
  } else if (value.empty()) {
    return InvalidArgument(
        "GRADPACK_TOPOLOGY is empty: set it to auto, off, or the path of a cluster file "
        "(docs/topology.md), or unset it (auto)");
  } else {
    t.mode = TopologySetting::Mode::kFile;
    t.path = value;
  }
  *out = std::move(t);
  return OkStatus();
}

const char* origin_name(ClusterChoice::Origin origin) {
  switch (origin) {
    case ClusterChoice::Origin::kFile:
      return "file";
    case ClusterChoice::Origin::kProbe:
      return "probe";
    case ClusterChoice::Origin::kFlat:
      break;
  }
  return "flat";
}

Status cluster_from_settings(const Settings& settings, ClusterChoice* out) {
  TopologySetting t;
  GP_RETURN_IF_ERROR(parse_topology_setting(settings.get(SettingId::kTopology), &t));
  ClusterChoice c;
  switch (t.mode) {
    case TopologySetting::Mode::kFile: {
      Status st = load_cluster_file(t.path, &c.cluster, &c.format);
      if (!st.ok()) return Status(st.code(), "GRADPACK_TOPOLOGY: " + st.message());
      c.origin = ClusterChoice::Origin::kFile;
      c.detail = t.path;
      break;
    }
    case TopologySetting::Mode::kOff:
      c.detail = "GRADPACK_TOPOLOGY=off";
      break;
    case TopologySetting::Mode::kAuto:
      // The probe needs the ranks: the communicator runs it once they are connected.
      c.probe = true;
      c.detail = "GRADPACK_TOPOLOGY=auto: not measured (the probe runs among a job's ranks)";
      break;
  }
  *out = std::move(c);
  return OkStatus();
}

std::string local_host_name(const Settings& settings) {
  const std::string& set = settings.get(SettingId::kHostname);
  if (!set.empty()) return set;
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "localhost";
  return name;
}

}  // namespace gradpack::topology
