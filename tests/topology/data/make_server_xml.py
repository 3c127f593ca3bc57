#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Writes two-socket-8gpu-4nic.xml, the hwloc 2.x topology of a server no test machine is: 2 sockets
# of 8 cores x 2 threads, one NUMA node each, 4 PCIe switches (two per socket), each holding two
# NVIDIA GPUs and one NIC. Socket 0 hangs both switches off one host bridge; socket 1 gives each
# its own host bridge, so every distance of topology/node.h (PIX, PHB, NODE, SYS) occurs.
#   python3 make_server_xml.py > two-socket-8gpu-4nic.xml
import itertools
import xml.dom.minidom

gp = itertools.count(1)


def mask(cpus):
    value = sum(1 << c for c in cpus)
    return "0x%08x" % value


def sets(cpus, nodes):
    return ('cpuset="{c}" complete_cpuset="{c}" nodeset="{n}" complete_nodeset="{n}"'
            .format(c=mask(cpus), n=mask(nodes)))


def pci(kind, busid, vid, did, cls, body="", extra=""):
    attrs = 'pci_busid="%s" pci_type="%04x [%04x:%04x] [%04x:0000] 00" pci_link_speed="0.000000"' % (
        busid, cls, vid, did, vid)
    return '<object type="%s" gp_index="%d" %s %s>%s</object>' % (kind, next(gp), extra, attrs, body)


def osdev(name, osdev_type):
    return '<object type="OSDev" gp_index="%d" name="%s" osdev_type="%d"/>' % (next(gp), name,
                                                                              osdev_type)


def bridge(busid, secondary, subordinate, body):
    extra = 'bridge_type="1-1" depth="0" bridge_pci="0000:[%02x-%02x]"' % (secondary, subordinate)
    return pci("Bridge", busid, 0x8086, 0x2030, 0x0604, body, extra)


# One PCIe switch behind root port `root` (bus 00 of its host bridge's range): upstream port on
# bus `up`, three downstream ports, GPUs on buses up+2 and up+3, the NIC on up+4.
def switch(root, up, gpus, nic):
    down = up + 1
    gpu_objs = [pci("PCIDev", "0000:%02x:00.0" % (up + 2 + i), 0x10de, 0x20b0, 0x0302,
                    osdev("cuda%d" % g, 5) + osdev("nvml%d" % g, 1)) for i, g in enumerate(gpus)]
    nic_cls, nic_names = nic
    nic_obj = pci("PCIDev", "0000:%02x:00.0" % (up + 4), 0x15b3, 0x101d, nic_cls,
                  "".join(osdev(n, 3 if n.startswith("mlx") else 2) for n in nic_names))
    ports = [bridge("0000:%02x:%02x.0" % (down, i), up + 2 + i, up + 2 + i, obj)
             for i, obj in enumerate(gpu_objs + [nic_obj])]
    upstream = bridge("0000:%02x:00.0" % up, down, up + 4, "".join(ports))
    return bridge(root, up, up + 4, upstream)


def host_bridge(first, last, body):
    return ('<object type="Bridge" gp_index="%d" bridge_type="0-1" depth="0" '
            'bridge_pci="0000:[%02x-%02x]">%s</object>' % (next(gp), first, last, body))


def package(index, cpus, io):
    cores = ""
    for core in range(8):
        pus = [index * 8 + core, index * 8 + core + 16]
        cores += '<object type="Core" os_index="%d" %s gp_index="%d">' % (
            index * 8 + core, sets(pus, [index]), next(gp))
        for pu in pus:
            cores += '<object type="PU" os_index="%d" %s gp_index="%d"/>' % (
                pu, sets([pu], [index]), next(gp))
        cores += "</object>"
    numa = ('<object type="NUMANode" os_index="%d" %s gp_index="%d" local_memory="274877906944"/>'
            % (index, sets(cpus, [index]), next(gp)))
    return '<object type="Package" os_index="%d" %s gp_index="%d">%s%s%s</object>' % (
        index, sets(cpus, [index]), next(gp), numa, cores, io)


def main():
    socket0 = list(range(0, 8)) + list(range(16, 24))
    socket1 = list(range(8, 16)) + list(range(24, 32))
    io0 = host_bridge(0x00, 0x2f,
                      switch("0000:00:01.0", 0x01, [0, 1], (0x0207, ["mlx5_0", "ib0"])) +
                      switch("0000:00:02.0", 0x11, [2, 3], (0x0207, ["mlx5_1", "ib1"])) +
                      pci("PCIDev", "0000:00:1f.2", 0x8086, 0xa182, 0x0106) +
                      pci("PCIDev", "0000:00:1f.5", 0x102b, 0x0536, 0x0300))
    io1 = (host_bridge(0x80, 0x8f,
                       switch("0000:80:01.0", 0x81, [4, 5], (0x0200, ["mlx5_2", "ens5f0np0"]))) +
           host_bridge(0x90, 0x9f,
                       switch("0000:90:01.0", 0x91, [6, 7], (0x0200, ["mlx5_3", "ens7f0np0"]))))
    allcpus = list(range(32))
    body = package(0, socket0, io0) + package(1, socket1, io1)
    print('<?xml version="1.0" encoding="UTF-8"?>')
    print("<!-- SPDX-License-Identifier: Apache-2.0 -->")
    print("<!-- Written by make_server_xml.py (tests/topology/data); see there. -->")
    print('<!DOCTYPE topology SYSTEM "hwloc2.dtd">')
    machine = ('<topology version="2.0"><object type="Machine" os_index="0" %s allowed_cpuset="%s" '
               'allowed_nodeset="%s" gp_index="%d">%s</object></topology>' % (
                   sets(allcpus, [0, 1]), mask(allcpus), mask([0, 1]), next(gp), body))
    pretty = xml.dom.minidom.parseString(machine).documentElement.toprettyxml(indent="  ")
    print(pretty.rstrip())


main()
