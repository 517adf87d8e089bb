"""The quick ports of dpf_core.ports over the twin's models: what a reconcile may ask inline."""

from __future__ import annotations

import simpy

from .models.bfbserver import BfbDirectory
from .models.bluefield import BlueFields
from .models.host import Hosts


class SimBfbStore:
    """dpf_core.ports.BfbStore over the sim BFB directory (the `/bfb` PVC)."""

    def __init__(self, directory: BfbDirectory, env: simpy.Environment | None = None) -> None:
        self.directory = directory
        self.env = env

    def exists(self, file_name: str) -> bool:
        return self.directory.exists(file_name)

    def size(self, file_name: str) -> int | None:
        return self.directory.size(file_name)

    def remove(self, file_name: str) -> None:
        self.directory.remove(file_name)

    def write(self, file_name: str, content: bytes) -> None:
        self.directory.write(file_name, content, float(self.env.now) if self.env is not None else 0.0)


class SimDms:
    """dpf_core.ports.Dms: the TCP dial to `<podIP>:9339` succeeds when that DMS pod is marked Running
    (`BlueFields.mark_dms_running`, done by the composition) and its host is up."""

    def __init__(self, bluefields: BlueFields) -> None:
        self.bluefields = bluefields

    def reachable(self, address: str) -> bool:
        return self.bluefields.dms_reachable(address)


class SimHostExec:
    """dpf_core.ports.HostExec: `cat /proc/uptime` in the host's DMS pod."""

    def __init__(self, hosts: Hosts) -> None:
        self.hosts = hosts

    def uptime(self, node: str) -> float | None:
        return self.hosts.uptime(node)


class SimHostNetwork:
    """dpf_core.ports.HostNetwork for ONE host: the port names no node because the real one is the
    hostnetwork pod's view of its own host, so the composition builds one per host agent."""

    def __init__(self, hosts: Hosts, node: str) -> None:
        hosts.get(node)  # fail at wiring time, not at the first reconcile
        self.hosts = hosts
        self.node = node

    def num_vfs(self, pci_address: str) -> int:
        return self.hosts.num_vfs(self.node, pci_address)

    def set_num_vfs(self, pci_address: str, count: int) -> None:
        self.hosts.set_num_vfs(self.node, pci_address, count)

    def bridge_has_ipv4(self, bridge: str) -> bool:
        return self.hosts.bridge_has_ipv4(self.node, bridge)

    def enslave_vf0(self, pci_address: str, bridge: str, mtu: int) -> None:
        self.hosts.enslave_vf0(self.node, pci_address, bridge, mtu)

    def vf0_enslaved(self, pci_address: str, bridge: str) -> bool:
        return self.hosts.vf0_enslaved(self.node, pci_address, bridge)
