"""dpudetector labels and the hostnetwork agent's step."""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

import pytest

from dpf_core.api.external import Node
from dpf_core.controllers import dpu_detector
from dpf_core.controllers.dpu_detector import PciDevice, detect_labels, label_patch
from dpf_core.controllers.hostnetwork import config_from_env, device_address, hostnetwork_step
from dpf_core.runtime import Manager, ManualClock, SyncDriver
from dpf_core.store import MemoryStore

P = "feature.node.kubernetes.io/"


@dataclass
class FakeInventory:
    devs: list[PciDevice] = field(default_factory=list)
    oob: bool = True

    def devices(self) -> list[PciDevice]:
        return list(self.devs)

    def oob_bridge_configured(self) -> bool:
        return self.oob


BF3 = [
    PciDevice("0000:04:00.1", "15b3", "a2dc", "ens1f1np1", "MT_0000000375"),
    PciDevice("0000:04:00.0", "0x15b3", "0xa2dc", "ens1f0np0", "MT_0000000375"),
]
BF2 = [PciDevice("0000:81:00.0", "15b3", "a2d6", "ens5f0np0", "MT_0000000540")]
NOT_DPUS = [
    PciDevice("0000:03:00.0", "15b3", "1021", "ens3f0np0"),  # a ConnectX-7 NIC
    PciDevice("0000:05:00.0", "8086", "a2dc", "eno1"),  # the right device id, the wrong vendor
]


def test_detect_labels_indexes_bluefields_in_pci_order() -> None:
    labels = detect_labels(FakeInventory(BF2 + NOT_DPUS + BF3))
    assert labels == {
        P + "dpu-enabled": "true",
        P + "dpu-0-pci-address": "0000-04-00",
        P + "dpu-0-pf0-name": "ens1f0np0",
        P + "dpu-0-ps-id": "MT_0000000375",
        P + "dpu-1-pci-address": "0000-81-00",
        P + "dpu-1-pf0-name": "ens5f0np0",
        P + "dpu-1-ps-id": "MT_0000000540",
        P + "dpu-oob-bridge-configured": "",
    }


def test_detect_labels_without_dpus_oob_or_psid() -> None:
    assert detect_labels(FakeInventory(NOT_DPUS, oob=False)) == {}
    labels = detect_labels(FakeInventory(BF3, oob=False), collect_psid=False)
    assert labels == {P + "dpu-enabled": "true", P + "dpu-0-pci-address": "0000-04-00", P + "dpu-0-pf0-name": "ens1f0np0"}


def test_label_patch_removes_only_stale_detector_labels() -> None:
    current = {P + "dpu-1-pci-address": "0000-81-00", P + "dpu-0-pci-address": "0000-04-00", P + "cpu-model": "x", "role": "w"}
    desired = {P + "dpu-0-pci-address": "0000-04-00", P + "dpu-enabled": "true"}
    assert label_patch(current, desired) == {P + "dpu-enabled": "true", P + "dpu-1-pci-address": None}


def test_detector_reconciler_labels_its_node_every_minute() -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock.now)
    inventory = FakeInventory(BF3, oob=False)
    mgr = Manager(store, clock)
    mgr.add(dpu_detector.controller(node_name="host-1", inventory=inventory))
    store.create(Node.model_validate({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "host-1", "labels": {P + "dpu-3-pci-address": "old", "role": "w"}}}))
    store.create(Node.new("host-2"))
    driver = SyncDriver(mgr)
    driver.run_for(1)
    labels = store.get(Node, "host-1").metadata.labels
    assert labels == {"role": "w", P + "dpu-enabled": "true", P + "dpu-0-pci-address": "0000-04-00",
                      P + "dpu-0-pf0-name": "ens1f0np0", P + "dpu-0-ps-id": "MT_0000000375"}
    assert store.get(Node, "host-2").metadata.labels == {}  # another host's detector labels that one
    inventory.oob = True  # br-dpu got its default route; the next minute sees it
    driver.run_for(30)
    assert P + "dpu-oob-bridge-configured" not in store.get(Node, "host-1").metadata.labels
    driver.run_for(31)
    assert store.get(Node, "host-1").metadata.labels[P + "dpu-oob-bridge-configured"] == ""


def test_detector_controller_for_many_hosts() -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock.now)
    inventories = {"a": FakeInventory(BF3), "b": FakeInventory(BF2, oob=False)}
    mgr = Manager(store, clock)
    mgr.add(dpu_detector.controller(inventory_for=inventories.get))
    for n in ("a", "b", "c"):
        store.create(Node.new(n))
    SyncDriver(mgr).run_for(1)
    assert store.get(Node, "a").metadata.labels[P + "dpu-0-pci-address"] == "0000-04-00"
    assert store.get(Node, "b").metadata.labels[P + "dpu-0-pci-address"] == "0000-81-00"
    assert store.get(Node, "c").metadata.labels == {}


def test_detector_controller_needs_an_inventory() -> None:
    with pytest.raises(ValueError):
        dpu_detector.controller(node_name="x")


# --- hostnetwork ------------------------------------------------------------------------------------------


@dataclass
class FakeHostNetwork:
    """A host's kernel: PFs with sriov_numvfs, bridges with or without an IPv4, VF0 enslavement."""

    pfs: dict[str, int] = field(default_factory=lambda: {"0000:04:00.0": 0, "0000:04:00.1": 0})
    bridge_ipv4: bool = False
    enslaved: dict[str, tuple[str, int]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def num_vfs(self, pci_address: str) -> int:
        if pci_address not in self.pfs:
            raise OSError(errno.ENODEV, f"no {pci_address}")
        return self.pfs[pci_address]

    def set_num_vfs(self, pci_address: str, count: int) -> None:
        self.calls.append(f"sriov {pci_address} {count}")
        self.pfs[pci_address] = count

    def bridge_has_ipv4(self, bridge: str) -> bool:
        return bridge == "br-dpu" and self.bridge_ipv4

    def enslave_vf0(self, pci_address: str, bridge: str, mtu: int) -> None:
        self.calls.append(f"enslave {pci_address} {bridge} {mtu}")
        self.enslaved[pci_address] = (bridge, mtu)

    def vf0_enslaved(self, pci_address: str, bridge: str) -> bool:
        return self.enslaved.get(pci_address, ("", 0))[0] == bridge


@dataclass
class FakeHostNetworkWithDeviceIds(FakeHostNetwork):
    device_ids: dict[str, str] = field(default_factory=dict)

    def device_id(self, pci_address: str) -> str | None:
        return self.device_ids.get(pci_address)


def test_step_creates_vfs_waits_for_bridge_then_enslaves_vf0() -> None:
    host = FakeHostNetwork()
    assert hostnetwork_step(host, "0000:04:00", num_vfs=46, vf_mtu=9000) is False
    assert host.pfs == {"0000:04:00.0": 46, "0000:04:00.1": 46}
    assert host.enslaved == {}
    host.bridge_ipv4 = True
    assert hostnetwork_step(host, "0000:04:00", num_vfs=46, vf_mtu=9000) is True
    assert host.enslaved == {"0000:04:00.0": ("br-dpu", 9000)}
    # Steady state: the loop keeps running and changes nothing.
    assert hostnetwork_step(host, "0000:04:00", num_vfs=46, vf_mtu=9000) is True
    assert host.calls == ["sriov 0000:04:00.0 46", "sriov 0000:04:00.1 46", "enslave 0000:04:00.0 br-dpu 9000"]


def test_step_leaves_existing_vfs_alone() -> None:
    host = FakeHostNetwork(pfs={"0000:04:00.0": 8, "0000:04:00.1": 0}, bridge_ipv4=True)
    assert hostnetwork_step(host, "0000-04-00", num_vfs=16) is True
    assert host.pfs == {"0000:04:00.0": 8, "0000:04:00.1": 16}


def test_step_skips_pf1_that_is_missing_or_not_a_bluefield() -> None:
    single = FakeHostNetwork(pfs={"0000:04:00.0": 0}, bridge_ipv4=True)
    assert hostnetwork_step(single, "0000:04:00") is True
    assert single.pfs == {"0000:04:00.0": 16}

    other = FakeHostNetworkWithDeviceIds(device_ids={"0000:04:00.0": "0xa2dc", "0000:04:00.1": "0x1021"}, bridge_ipv4=True)
    hostnetwork_step(other, "0000:04:00")
    assert other.pfs == {"0000:04:00.0": 16, "0000:04:00.1": 0}
    bf2 = FakeHostNetworkWithDeviceIds(device_ids={"0000:04:00.1": "0xa2d6"})
    hostnetwork_step(bf2, "0000:04:00")
    assert bf2.pfs["0000:04:00.1"] == 16


def test_step_propagates_kernel_errors() -> None:
    host = FakeHostNetwork(pfs={}, bridge_ipv4=True)
    with pytest.raises(OSError):
        hostnetwork_step(host, "0000:04:00")


def test_pod_environment() -> None:
    cfg = config_from_env({"device_pci_address": "0000:04:00", "num_of_vfs": "46", "vf_mtu": "1500"})
    assert (cfg.pci_address, cfg.num_vfs, cfg.vf_mtu) == ("0000:04:00", 46, 1500)
    assert config_from_env({"device_pci_address": "0000:04:00"}).num_vfs == 16
    with pytest.raises(ValueError, match="device_pci_address"):
        config_from_env({})
    assert device_address("0000-04-00") == device_address("0000:04:00.1") == "0000:04:00"
