// SPDX-License-Identifier: Apache-2.0
// gradpack-topo: the topology gradpack would use, printed as a tree (or JSON), and written as a
// cluster file on request. The cluster comes from --cluster FILE or, as the library takes it, from
// GRADPACK_TOPOLOGY; run as the ranks of a job (GRADPACK_WORLD_SIZE set, as gradpack-run does), it
// is the cluster their communicator follows, which auto measures among them (the cluster probe),
// read through gp_comm_topology() and printed by rank 0.
//
// Unlike the other tools it links the topology room (gradpack_topology) besides libgradpack.so:
// the cluster model and its files are not part of the C ABI (the communicator hands its cluster
// over as cluster-file text). The banner's version is gp_version(), as every tool's.
#include <charconv>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/settings.h"
#include "gradpack/gradpack.h"
#include "tools/json_string.h"
#include "topology/cluster.h"
#include "topology/cluster_file.h"
#include "topology/cluster_source.h"
#include "topology/node.h"

namespace {

using gradpack::Status;
using gradpack::tools::json_string;
using gradpack::topology::Cluster;
using gradpack::topology::ClusterChoice;
using gradpack::topology::ClusterHost;
using gradpack::topology::ClusterSwitch;
using gradpack::topology::Link;

constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

constexpr const char* kHelp =
    R"(usage: gradpack-topo [--cluster FILE] [--write FILE] [--json] [--help]

Prints the cluster topology gradpack would use: every switch and host as an indented tree, with
link rates (Mbit/s or Gbit/s; ? where unknown), latencies, and the oversubscription of each switch
(the rates of the links below it over its uplink's rate; 16:1 means the uplink carries a sixteenth
of what the hosts below could send). Cluster files are Slurm's topology.conf or gradpack's own
format (docs/topology.md).

Options:
  --cluster FILE   read the cluster from FILE (either format); default: as the library does, from
                   GRADPACK_TOPOLOGY (auto: measured by the cluster probe among the ranks of a
                   job, so flat when run alone; off: flat; else a file path)
  --write FILE     also write the cluster to FILE in the gradpack format (parses back the same)
  --json           one JSON object instead of the tree
  -h, --help       this text

Run as the ranks of a job (GRADPACK_WORLD_SIZE set: `gradpack-run -n 8 --vcluster --
gradpack-topo`), it joins them in a communicator and rank 0 prints the cluster that communicator
follows: with GRADPACK_TOPOLOGY=auto, the racks the probe found, with the rates it measured and
the time it took; --write keeps them as a cluster file. The other ranks print nothing.

After the cluster comes this node, as hwloc sees it (HWLOC_XMLFILE=FILE: a captured topology
instead): packages, cores, NUMA nodes with their CPUs and memory, every NIC and GPU with its NUMA
node, near CPUs and PCI path, and each GPU's nearest NICs with their PCIe distance (PIX, PXB,
PHB, NODE, SYS, as NCCL names them; docs/node-topology.md).

Exit status: 0 printed; 1 the cluster could not be read or written (the message names the file
and line), or the job's communicator could not be made; 2 usage error.
)";

struct Options {
  std::string cluster_path;  // empty: GRADPACK_TOPOLOGY
  std::string write_path;
  bool json = false;
};

// Returns an error message, or an empty string; *help when --help was asked for.
std::string parse_args(int argc, char** argv, Options* out, bool* help) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      *help = true;
      return "";
    }
    if (arg == "--json") {
      out->json = true;
      continue;
    }
    std::string_view name = arg;
    std::string_view value;
    if (const size_t eq = arg.find('='); arg.substr(0, 2) == "--" && eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    } else if (arg == "--cluster" || arg == "--write") {
      if (i + 1 >= argc) return std::string(arg) + " needs a FILE";
      value = argv[++i];
    }
    if (name == "--cluster" || name == "--write") {
      if (value.empty()) return std::string(name) + " needs a FILE";
      (name == "--cluster" ? out->cluster_path : out->write_path) = std::string(value);
      continue;
    }
    return "unknown argument '" + std::string(arg) + "'";
  }
  return "";
}

// The cluster found, and whether this process prints it (rank 0 of a job, or alone).
struct Found {
  ClusterChoice choice;
  double probe_seconds = 0;  // 0: no probe ran
  bool prints = true;
};

ClusterChoice::Origin origin_of(gp_topology_origin_t origin) {
  switch (origin) {
    case GP_TOPOLOGY_FILE:
      return ClusterChoice::Origin::kFile;
    case GP_TOPOLOGY_PROBE:
      return ClusterChoice::Origin::kProbe;
    case GP_TOPOLOGY_FLAT:
      break;
  }
  return ClusterChoice::Origin::kFlat;
}

Status c_error(const char* call) {
  return gradpack::Status(gradpack::Code::kInternal, std::string(call) + ": " + gp_last_error());
}

// The cluster of the job's communicator, as gp_comm_topology() hands it over.
Status cluster_of_job(Found* out) {
  gp_comm_t* raw = nullptr;
  if (gp_comm_init_from_env(&raw) != GP_OK) return c_error("gp_comm_init_from_env");
  const std::unique_ptr<gp_comm_t, gp_status_t (*)(gp_comm_t*)> comm(raw, gp_comm_destroy);
  gp_comm_topology_t info = {};
  info.struct_size = sizeof(info);
  size_t length = 0;
  if (gp_comm_topology(comm.get(), &info, nullptr, 0, &length) != GP_OK) {
    return c_error("gp_comm_topology");
  }
  std::string text(length + 1, '\0');
  if (gp_comm_topology(comm.get(), nullptr, text.data(), text.size(), &length) != GP_OK) {
    return c_error("gp_comm_topology");
  }
  text.resize(length);
  Found f;
  f.choice.origin = origin_of(info.origin);
  f.choice.detail = info.detail;
  f.probe_seconds = info.probe_seconds;
  f.prints = gp_comm_rank(comm.get()) == 0;
  GP_RETURN_IF_ERROR(gradpack::topology::parse_cluster_text(text, "the job's cluster",
                                                            &f.choice.cluster, nullptr));
  *out = std::move(f);
  return gradpack::OkStatus();
}

Status find_cluster(const Options& opts, Found* found) {
  ClusterChoice* out = &found->choice;
  if (!opts.cluster_path.empty()) {
    ClusterChoice c;
    GP_RETURN_IF_ERROR(
        gradpack::topology::load_cluster_file(opts.cluster_path, &c.cluster, &c.format));
    c.origin = ClusterChoice::Origin::kFile;
    c.detail = opts.cluster_path;
    *out = std::move(c);
    return gradpack::OkStatus();
  }
  gradpack::Settings settings;
  GP_RETURN_IF_ERROR(gradpack::Settings::from_environment(&settings));
  if (settings.is_set(gradpack::SettingId::kWorldSize)) return cluster_of_job(found);
  return gradpack::topology::cluster_from_settings(settings, out);
}

std::string number(double v) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, end) : "0";
}

std::string rate(double mbps) {
  if (mbps <= 0) return "?";
  if (mbps >= 1000) return number(mbps / 1000) + " Gbit/s";
  return number(mbps) + " Mbit/s";
}

// " 500 Mbit/s" and, when known, " 2 us".
std::string link_text(const Link& link) {
  std::string s = " " + rate(link.rate_mbps);
  if (link.latency_us > 0) s += " " + number(link.latency_us) + " us";
  return s;
}

std::string ratio(double x) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3g:1", x);
  return buf;
}

void print_switch(const Cluster& c, int sw, int depth) {
  const ClusterSwitch& s = c.switches()[static_cast<size_t>(sw)];
  const std::string indent(static_cast<size_t>(depth) * 2, ' ');
  std::string line = indent + "switch " + s.name + " (level " + std::to_string(s.level) + "): ";
  if (s.parent >= 0 || s.uplink.rate_mbps > 0) line += "uplink" + link_text(s.uplink) + ", ";
  line += "below " + rate(c.down_rate_mbps(sw));
  if (c.oversubscription(sw) > 0) line += ", oversubscription " + ratio(c.oversubscription(sw));
  std::printf("%s\n", line.c_str());
  for (int child : s.children) print_switch(c, child, depth + 1);
  for (int h : s.hosts) {
    const ClusterHost& host = c.hosts()[static_cast<size_t>(h)];
    std::printf("%s  host %s: link%s\n", indent.c_str(), host.name.c_str(),
                link_text(host.link).c_str());
  }
}

std::string source_text(const ClusterChoice& choice) {
  if (choice.origin == ClusterChoice::Origin::kFile) {
    return choice.detail + " (" + gradpack::topology::format_name(choice.format) + " format)";
  }
  return choice.detail;
}

void print_tree(const ClusterChoice& choice) {
  const Cluster& c = choice.cluster;
  std::printf("# gradpack-topo; gradpack %s\n", gp_version());
  if (c.empty()) {
    std::printf("# cluster: flat, every host under one switch (%s)\n", source_text(choice).c_str());
    return;
  }
  std::printf("# cluster: %s: %zu hosts, %zu switches, %d level%s%s\n", source_text(choice).c_str(),
              c.hosts().size(), c.switches().size(), c.levels(), c.levels() == 1 ? "" : "s",
              c.flat() ? " (flat)" : "");
  for (size_t s = 0; s < c.switches().size(); ++s) {
    if (c.switches()[s].parent < 0) print_switch(c, static_cast<int>(s), 0);
  }
}

std::string json_link(const char* rate_key, const Link& link) {
  return ", \"" + std::string(rate_key) + "\": " + number(link.rate_mbps) +
         ", \"latency_us\": " + number(link.latency_us);
}

std::string json_cluster(const Cluster& c) {
  std::string o = "\"levels\": " + std::to_string(c.levels()) +
                  ", \"flat\": " + (c.flat() ? "true" : "false") + ", \"switches\": [";
  for (size_t i = 0; i < c.switches().size(); ++i) {
    const ClusterSwitch& s = c.switches()[i];
    const int sw = static_cast<int>(i);
    o += i ? ",\n  {" : "\n  {";
    o += "\"name\": " + json_string(s.name) + ", \"level\": " + std::to_string(s.level);
    o += ", \"parent\": " +
         (s.parent < 0 ? "null" : json_string(c.switches()[static_cast<size_t>(s.parent)].name));
    o += json_link("uplink_mbps", s.uplink);
    o += ", \"below_mbps\": " + number(c.down_rate_mbps(sw));
    o += ", \"oversubscription\": " + number(c.oversubscription(sw)) + "}";
  }
  o += "], \"hosts\": [";
  for (size_t i = 0; i < c.hosts().size(); ++i) {
    const ClusterHost& h = c.hosts()[i];
    o += i ? ",\n  {" : "\n  {";
    o += "\"name\": " + json_string(h.name) +
         ", \"switch\": " + json_string(c.switches()[static_cast<size_t>(h.leaf)].name);
    o += json_link("link_mbps", h.link) + "}";
  }
  return o + "]";
}

std::string json_ints(const std::vector<int>& v) {
  std::string o = "[";
  for (size_t i = 0; i < v.size(); ++i) o += (i ? ", " : "") + std::to_string(v[i]);
  return o + "]";
}

std::string json_device(const gradpack::topology::PciDevice& d) {
  std::string names = "[";
  for (size_t i = 0; i < d.os_devices.size(); ++i) {
    names += (i ? ", " : "") + json_string(d.os_devices[i]);
  }
  return "{\"bus_id\": " + json_string(d.bus_id) + ", \"names\": " + names +
         "], \"numa_node\": " + std::to_string(d.numa_node) + ", \"cpus\": " + json_ints(d.cpus) +
         ", \"sysfs_path\": " + json_string(d.sysfs_path) + "}";
}

// "node": what hwloc found (known false: reason says why).
std::string json_node(const gradpack::topology::NodeTopology& n) {
  std::string o = "\"node\": {\"known\": " + std::string(n.known ? "true" : "false") +
                  ", \"source\": " + json_string(n.source);
  if (!n.known) return o + ", \"reason\": " + json_string(n.reason) + "}";
  o += ", \"packages\": " + std::to_string(n.packages) + ", \"cores\": " + std::to_string(n.cores) +
       ", \"pus\": " + std::to_string(n.pus) + ", \"numa_nodes\": [";
  for (size_t i = 0; i < n.numa_nodes.size(); ++i) {
    o += std::string(i ? ", " : "") + "{\"os_index\": " + std::to_string(n.numa_nodes[i].os_index) +
         ", \"cpus\": " + json_ints(n.numa_nodes[i].cpus) +
         ", \"memory_bytes\": " + std::to_string(n.numa_nodes[i].memory_bytes) + "}";
  }
  o += "], \"nics\": [";
  for (size_t i = 0; i < n.nics.size(); ++i) o += (i ? ", " : "") + json_device(n.nics[i]);
  o += "], \"gpus\": [";
  for (size_t i = 0; i < n.gpus.size(); ++i) o += (i ? ", " : "") + json_device(n.gpus[i]);
  return o + "]}";
}

void print_json(const Found& found) {
  const ClusterChoice& choice = found.choice;
  std::string o = "{\"tool\": \"gradpack-topo\", \"version\": " + json_string(gp_version());
  o += ", \"cluster\": {\"origin\": " + json_string(gradpack::topology::origin_name(choice.origin));
  o += ", \"source\": " + json_string(choice.detail);
  if (found.probe_seconds > 0) o += ", \"probe_seconds\": " + number(found.probe_seconds);
  if (choice.origin == ClusterChoice::Origin::kFile) {
    o += ", \"format\": " + json_string(gradpack::topology::format_name(choice.format));
  }
  o += ", " + json_cluster(choice.cluster) + "}";
  o += ", " + json_node(gradpack::topology::load_node_topology()) + "}\n";
  std::fputs(o.c_str(), stdout);
}

// This node (topology/node.h): what hwloc found, then each GPU's nearest NICs.
void print_node_section() {
  using gradpack::topology::PciDevice;
  const gradpack::topology::NodeTopology node = gradpack::topology::load_node_topology();
  std::string out = "\n# node\n" + gradpack::topology::describe(node);
  for (const PciDevice& gpu : node.gpus) {
    const std::vector<const PciDevice*> near = gradpack::topology::nearest_nics(node, gpu);
    out += "  GPU " + gpu.bus_id + " nearest NIC(s):";
    for (const PciDevice* nic : near) {
      out += " " + (nic->os_devices.empty() ? nic->bus_id : nic->os_devices.front()) + " (" +
             gradpack::topology::pci_distance_name(gradpack::topology::pci_distance(gpu, *nic)) +
             ")";
    }
    out += near.empty() ? " none\n" : "\n";
  }
  std::fputs(out.c_str(), stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Options opts;
  bool help = false;
  if (const std::string err = parse_args(argc, argv, &opts, &help); !err.empty()) {
    std::fprintf(stderr, "gradpack-topo: %s\nTry 'gradpack-topo --help'.\n", err.c_str());
    return kExitUsage;
  }
  if (help) {
    std::fputs(kHelp, stdout);
    return 0;
  }
  Found found;
  if (Status st = find_cluster(opts, &found); !st.ok()) {
    std::fprintf(stderr, "gradpack-topo: %s\n", st.message().c_str());
    return kExitRuntime;
  }
  if (!found.prints) return 0;
  const ClusterChoice& choice = found.choice;
  if (opts.json) {
    print_json(found);
  } else {
    print_tree(choice);
    print_node_section();
  }
  if (!opts.write_path.empty()) {
    if (Status st = gradpack::topology::write_cluster_file(choice.cluster, opts.write_path);
        !st.ok()) {
      std::fprintf(stderr, "gradpack-topo: %s\n", st.message().c_str());
      return kExitRuntime;
    }
    std::fprintf(stderr, "gradpack-topo: wrote %s (gradpack format)\n", opts.write_path.c_str());
  }
  return 0;
}
