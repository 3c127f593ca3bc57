// SPDX-License-Identifier: Apache-2.0
// Loading a NodeTopology with hwloc: the one file of gradpack that includes hwloc.h. Everything it
// learns is copied into node.h's plain structs, so nothing else holds an hwloc handle.
#include "gradpack/config.h"
#include "topology/node.h"

#if GRADPACK_HAVE_HWLOC

#include <hwloc.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "common/log.h"

namespace gradpack::topology {
namespace {

constexpr uint16_t kNvidiaVendor = 0x10de;

struct TopologyCloser {
  void operator()(hwloc_topology* t) const { hwloc_topology_destroy(t); }
};
using TopologyPtr = std::unique_ptr<hwloc_topology, TopologyCloser>;

std::vector<int> cpu_list(hwloc_const_bitmap_t set) {
  std::vector<int> cpus;
  if (set == nullptr) return cpus;
  for (int i = hwloc_bitmap_first(set); i >= 0; i = hwloc_bitmap_next(set, i)) cpus.push_back(i);
  return cpus;
}

std::string bus_id(const hwloc_obj_attr_u::hwloc_pcidev_attr_s& pci) {
  char text[32];
  std::snprintf(text, sizeof(text), "%04x:%02x:%02x.%01x", static_cast<unsigned>(pci.domain),
                pci.bus, pci.dev, pci.func);
  return text;
}

// The hops from the host bridge down to `obj`'s parent.
std::vector<PciHop> pci_path(hwloc_obj_t obj) {
  std::vector<PciHop> hops;
  for (hwloc_obj_t p = obj->parent; p != nullptr && p->type == HWLOC_OBJ_BRIDGE; p = p->parent) {
    PciHop hop;
    if (p->attr->bridge.upstream_type == HWLOC_OBJ_BRIDGE_HOST) {
      char text[32];
      std::snprintf(text, sizeof(text), "pci%04x:%02x",
                    static_cast<unsigned>(p->attr->bridge.downstream.pci.domain),
                    p->attr->bridge.downstream.pci.secondary_bus);
      hop.kind = PciHop::Kind::kHostBridge;
      hop.id = text;
    } else {
      hop.kind = PciHop::Kind::kPciBridge;
      hop.id = bus_id(p->attr->bridge.upstream.pci);
    }
    hops.insert(hops.begin(), std::move(hop));
  }
  return hops;
}

// The NUMA node of a locality: the one node of its nodeset, -1 if it spans several or none.
int numa_of(hwloc_obj_t locality) {
  if (locality == nullptr || locality->nodeset == nullptr) return -1;
  if (hwloc_bitmap_weight(locality->nodeset) != 1) return -1;
  return hwloc_bitmap_first(locality->nodeset);
}

PciDevice describe_pci(hwloc_topology_t t, hwloc_obj_t obj) {
  const hwloc_obj_attr_u::hwloc_pcidev_attr_s& pci = obj->attr->pcidev;
  PciDevice d;
  d.bus_id = bus_id(pci);
  d.vendor_id = pci.vendor_id;
  d.device_id = pci.device_id;
  d.class_id = pci.class_id;
  for (hwloc_obj_t c = obj->io_first_child; c != nullptr; c = c->next_sibling) {
    if (c->type == HWLOC_OBJ_OS_DEVICE && c->name != nullptr) d.os_devices.emplace_back(c->name);
  }
  hwloc_obj_t locality = hwloc_get_non_io_ancestor_obj(t, obj);
  if (locality != nullptr) d.cpus = cpu_list(locality->cpuset);
  d.numa_node = numa_of(locality);
  d.path = pci_path(obj);
  if (!d.path.empty() && d.path.front().kind == PciHop::Kind::kHostBridge) {
    d.sysfs_path = "/sys/devices";
    for (const PciHop& hop : d.path) d.sysfs_path += "/" + hop.id;
    d.sysfs_path += "/" + d.bus_id;
  }
  return d;
}

void read_counts(hwloc_topology_t t, NodeTopology* node) {
  node->packages = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PACKAGE);
  node->cores = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE);
  node->pus = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU);
  for (hwloc_obj_t n = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, nullptr); n != nullptr;
       n = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, n)) {
    NumaNode numa;
    numa.os_index = static_cast<int>(n->os_index);
    numa.cpus = cpu_list(n->cpuset);
    numa.memory_bytes = n->attr->numanode.local_memory;
    node->numa_nodes.push_back(std::move(numa));
  }
}

void read_pci(hwloc_topology_t t, NodeTopology* node) {
  for (hwloc_obj_t obj = hwloc_get_next_pcidev(t, nullptr); obj != nullptr;
       obj = hwloc_get_next_pcidev(t, obj)) {
    const uint16_t base_class = obj->attr->pcidev.class_id >> 8;
    if (base_class == 0x02) {
      node->nics.push_back(describe_pci(t, obj));
    } else if (base_class == 0x03 && obj->attr->pcidev.vendor_id == kNvidiaVendor) {
      node->gpus.push_back(describe_pci(t, obj));
    }
  }
}

// init → `configure` (the source) → load → copy out. `what` names the source in messages.
template <typename Configure>
Status load_with(const std::string& what, Configure configure, NodeTopology* out) {
  *out = NodeTopology();
  out->source = what;
  hwloc_topology_t raw = nullptr;
  if (hwloc_topology_init(&raw) != 0) return SystemError("hwloc_topology_init");
  TopologyPtr t(raw);
  // PCI devices and their OS devices are filtered out by default; bridges are needed for paths.
  hwloc_topology_set_io_types_filter(raw, HWLOC_TYPE_FILTER_KEEP_ALL);
#if HWLOC_API_VERSION >= 0x00020100
  // Not the libpciaccess component: it leaks a few hundred bytes at every load (LeakSanitizer
  // finds them in the plugin's ASan run), and hwloc's linux component reads the same PCI tree from
  // sysfs (same devices and bridges on this VM).
  hwloc_topology_set_components(raw, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, "pci");
#endif
  if (configure(raw) != 0) return InvalidArgument(what + ": hwloc does not accept it");
  if (hwloc_topology_load(raw) != 0) {
    return InvalidArgument(what + ": hwloc could not load it (hwloc_topology_load failed)");
  }
  out->this_system = hwloc_topology_is_thissystem(raw) != 0;
  read_counts(raw, out);
  read_pci(raw, out);
  out->known = true;
  return OkStatus();
}

}  // namespace

bool node_topology_supported() { return true; }

NodeTopology load_node_topology() {
  // hwloc itself reads HWLOC_XMLFILE when no source was set; only the name we log depends on it.
  const char* xml = std::getenv("HWLOC_XMLFILE");
  std::string what = xml != nullptr && *xml != '\0' ? std::string("HWLOC_XMLFILE=") + xml
                                                    : std::string("this machine");
  NodeTopology node;
  Status st = load_with(
      what, [](hwloc_topology_t) { return 0; }, &node);
  if (!st.ok()) {
    node = NodeTopology();
    node.source = what;
    node.reason = st.message();
    GP_LOG_INFO(kTopo, "node topology unknown: %s", node.reason.c_str());
  }
  return node;
}

Status load_node_topology_xml_file(const std::string& path, NodeTopology* out) {
  return load_with(
      "xml file " + path,
      [&](hwloc_topology_t t) { return hwloc_topology_set_xml(t, path.c_str()); }, out);
}

Status load_node_topology_xml(std::string_view xml, NodeTopology* out) {
  const std::string text(xml);  // hwloc wants the terminating NUL counted in the size
  return load_with(
      "xml text",
      [&](hwloc_topology_t t) {
        return hwloc_topology_set_xmlbuffer(t, text.c_str(), static_cast<int>(text.size() + 1));
      },
      out);
}

}  // namespace gradpack::topology

#else  // !GRADPACK_HAVE_HWLOC

namespace gradpack::topology {
namespace {
constexpr const char* kWithoutHwloc =
    "gradpack was built without hwloc (GRADPACK_WITH_HWLOC=OFF or libhwloc-dev missing)";
}  // namespace

bool node_topology_supported() { return false; }

NodeTopology load_node_topology() {
  NodeTopology node;
  node.source = "this machine";
  node.reason = kWithoutHwloc;
  return node;
}

Status load_node_topology_xml_file(const std::string& path, NodeTopology* out) {
  *out = NodeTopology();
  return Unsupported("cannot read the hwloc XML file " + path + ": " + kWithoutHwloc);
}

Status load_node_topology_xml(std::string_view, NodeTopology* out) {
  *out = NodeTopology();
  return Unsupported(std::string("cannot read hwloc XML: ") + kWithoutHwloc);
}

}  // namespace gradpack::topology

#endif  // GRADPACK_HAVE_HWLOC
