"""The HostNetwork adapter in a real network namespace, over a fake sysfs tree (a veth end stands in for VF0)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from dpf_core.controllers.hostnetwork import BRIDGE, hostnetwork_step

if TYPE_CHECKING:
    from conftest import FakeSysfs, Netns

    from dpf_hw.netlink import NetlinkHostNetwork

PF0, PF1 = "0000:04:00.0", "0000:04:00.1"
VF0 = "ens1f0v0"


@pytest.fixture
def host(netns: Netns, fake_sysfs: FakeSysfs) -> Iterator[NetlinkHostNetwork]:
    from dpf_hw.netlink import NetlinkHostNetwork

    fake_sysfs.function(PF0, netdevs=("ens1f0np0",), num_vfs=0, vf0=VF0)
    fake_sysfs.function(PF1, netdevs=("ens1f1np1",), num_vfs=0)
    netns.veth(VF0, "vf0-peer")
    adapter = NetlinkHostNetwork(fake_sysfs.root, netns=netns.name)
    try:
        yield adapter
    finally:
        adapter.close()


def flags(netns: Netns, name: str) -> set[str]:
    first = netns.link(name).splitlines()[0]
    return set(first.split("<", 1)[1].split(">", 1)[0].split(","))


def test_sriov_numvfs_under_the_configured_sysfs_root(host: NetlinkHostNetwork, fake_sysfs: FakeSysfs) -> None:
    assert host.num_vfs(PF0) == 0
    host.set_num_vfs(PF0, 16)
    assert (fake_sysfs.devices / PF0 / "sriov_numvfs").read_text().strip() == "16"
    assert host.num_vfs(PF0) == 16
    assert host.device_id(PF1) == "a2dc"
    assert host.pf_netdev(PF0) == "ens1f0np0" and host.vf0_netdev(PF0) == VF0 and host.vf0_netdev(PF1) is None
    with pytest.raises(OSError):
        host.num_vfs("0000:09:00.0")
    assert host.device_id("0000:09:00.0") is None


def test_br_dpu_found_or_created_with_an_ipv4(host: NetlinkHostNetwork, netns: Netns) -> None:
    assert not host.bridge_has_ipv4(BRIDGE)
    index = host.ensure_bridge(BRIDGE, "192.0.2.10/24")
    assert host.bridge_has_ipv4(BRIDGE)
    assert host.ensure_bridge(BRIDGE, "192.0.2.10/24") == index  # found, not re-made; address not doubled
    assert netns.ip("-4", "-o", "addr", "show", "dev", BRIDGE).count("192.0.2.10/24") == 1
    assert "bridge" in netns.link(BRIDGE)
    assert "UP" in flags(netns, BRIDGE)


def test_a_non_bridge_named_br_dpu_is_refused(host: NetlinkHostNetwork, netns: Netns) -> None:
    from dpf_core.ports.ops import OpError

    netns.veth(BRIDGE, "not-a-bridge")
    with pytest.raises(OpError, match="not a bridge"):
        host.ensure_bridge(BRIDGE)


def test_enslave_vf0_sets_master_mtu_up_and_is_idempotent(host: NetlinkHostNetwork, netns: Netns) -> None:
    host.ensure_bridge(BRIDGE, "192.0.2.10/24")
    assert not host.vf0_enslaved(PF0, BRIDGE)
    host.enslave_vf0(PF0, BRIDGE, 9000)
    assert host.vf0_enslaved(PF0, BRIDGE)
    assert netns.master_of(VF0) == BRIDGE and netns.mtu_of(VF0) == 9000 and "UP" in flags(netns, VF0)
    before = netns.link(VF0)
    host.enslave_vf0(PF0, BRIDGE, 9000)
    assert netns.link(VF0) == before
    host.release_vf0(PF0, BRIDGE)
    assert netns.master_of(VF0) is None and not host.vf0_enslaved(PF0, BRIDGE)


def test_enslave_creates_a_missing_bridge(host: NetlinkHostNetwork, netns: Netns) -> None:
    host.enslave_vf0(PF0, BRIDGE, 1500)
    assert netns.master_of(VF0) == BRIDGE


def test_no_vf0_yet_is_not_an_error_and_stays_unenslaved(host: NetlinkHostNetwork, netns: Netns) -> None:
    host.ensure_bridge(BRIDGE, "192.0.2.10/24")
    host.enslave_vf0(PF1, BRIDGE, 1500)  # PF1 has no virtfn0 in the tree
    assert not host.vf0_enslaved(PF1, BRIDGE)
    assert netns.ip("link", "show", "master", BRIDGE).strip() == ""


def test_the_core_hostnetwork_step_over_the_real_adapter(host: NetlinkHostNetwork, netns: Netns, fake_sysfs: FakeSysfs) -> None:
    # Pass 1: VFs on both PFs (PF1 is a BlueField function), then it waits for br-dpu's address.
    assert hostnetwork_step(host, "0000:04:00", num_vfs=8, vf_mtu=1450) is False
    assert host.num_vfs(PF0) == 8 and host.num_vfs(PF1) == 8
    assert not host.vf0_enslaved(PF0, BRIDGE)
    # The operator's bridge appears (with DHCP or a static address): pass 2 enslaves VF0.
    host.ensure_bridge(BRIDGE, "198.51.100.7/24")
    assert hostnetwork_step(host, "0000:04:00", num_vfs=8, vf_mtu=1450) is True
    assert netns.master_of(VF0) == BRIDGE and netns.mtu_of(VF0) == 1450
    # Pass 3 changes nothing: VF counts are only written from 0.
    (fake_sysfs.devices / PF0 / "sriov_numvfs").write_text("8\n")
    assert hostnetwork_step(host, "0000:04:00", num_vfs=16, vf_mtu=1450) is True
    assert host.num_vfs(PF0) == 8
