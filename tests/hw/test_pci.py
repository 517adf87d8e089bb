"""The DPU detector's PciInventory over a fake sysfs tree (and br-dpu + default route in a real netns)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dpf_core.api.provisioning import DPU_ENABLED_LABEL, DPU_OOB_BRIDGE_CONFIGURED_LABEL, NFD_LABEL_PREFIX
from dpf_core.controllers.dpu_detector import PciDevice, detect_labels
from dpf_hw.pci import SysfsPciInventory

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import FakeSysfs, Netns


def host_with_two_bluefields(sysfs: FakeSysfs) -> None:
    # A BlueField-3 at 04:00 (PSID from the mlx5 RDMA device), a BlueField-2 at 0b:00 (no RDMA driver),
    # a ConnectX-7 NIC (same vendor, not a DPU) and an Intel function.
    sysfs.function("0000:04:00.0", device="0xa2dc", netdevs=("ens1f0np0",), board_id="MT_0000000884")
    sysfs.function("0000:04:00.1", device="0xa2dc", netdevs=("ens1f1np1",))
    sysfs.function("0000:0b:00.0", device="0xa2d6", netdevs=("enp11s0f0np0",))
    sysfs.function("0000:0b:00.1", device="0xa2d6")
    sysfs.function("0000:31:00.0", device="0x1021", netdevs=("ens7np0",))
    sysfs.function("0000:00:1f.6", vendor="0x8086", device="0x15bb", netdevs=("eno1",))


def labels_without_oob(inventory: SysfsPciInventory) -> dict[str, str]:
    labels = detect_labels(inventory)
    labels.pop(DPU_OOB_BRIDGE_CONFIGURED_LABEL, None)  # the host's own br-dpu is not this test's business
    return labels


def test_devices_reads_vendor_device_pf0_netdev_and_psid(fake_sysfs: FakeSysfs, tmp_path: Path) -> None:
    host_with_two_bluefields(fake_sysfs)
    psids = tmp_path / "psid"
    psids.mkdir()
    (psids / "0000:0b:00.0").write_text("MT_0000000375\n")
    inventory = SysfsPciInventory(fake_sysfs.root, psid_dir=psids)
    devices = {d.pci_address: d for d in inventory.devices()}
    assert sorted(devices) == ["0000:00:1f.6", "0000:04:00.0", "0000:04:00.1", "0000:0b:00.0", "0000:0b:00.1", "0000:31:00.0"]
    # Function .1 reports the PF0 netdev and PSID of its device, as DPF labels a device by its PF0.
    assert devices["0000:04:00.1"] == PciDevice("0000:04:00.1", "15b3", "a2dc", "ens1f0np0", "MT_0000000884")
    assert devices["0000:0b:00.0"] == PciDevice("0000:0b:00.0", "15b3", "a2d6", "enp11s0f0np0", "MT_0000000375")
    assert devices["0000:31:00.0"] == PciDevice("0000:31:00.0", "15b3", "1021")
    assert devices["0000:00:1f.6"].vendor == "8086"


def test_detect_labels_gives_the_nfd_labels(fake_sysfs: FakeSysfs) -> None:
    host_with_two_bluefields(fake_sysfs)
    labels = labels_without_oob(SysfsPciInventory(fake_sysfs.root))
    p = NFD_LABEL_PREFIX
    assert labels == {
        DPU_ENABLED_LABEL: "true",
        f"{p}dpu-0-pci-address": "0000-04-00",
        f"{p}dpu-0-pf0-name": "ens1f0np0",
        f"{p}dpu-0-ps-id": "MT_0000000884",
        f"{p}dpu-1-pci-address": "0000-0b-00",
        f"{p}dpu-1-pf0-name": "enp11s0f0np0",
    }


def test_no_bluefield_no_dpu_labels(fake_sysfs: FakeSysfs) -> None:
    fake_sysfs.function("0000:31:00.0", device="0x1021", netdevs=("ens7np0",))
    assert labels_without_oob(SysfsPciInventory(fake_sysfs.root)) == {}
    assert SysfsPciInventory(fake_sysfs.root / "nowhere").devices() == []


def test_oob_bridge_needs_a_bridge_with_a_default_route_metric_above_2(fake_sysfs: FakeSysfs, netns: Netns) -> None:
    inventory = SysfsPciInventory(fake_sysfs.root, netns=netns.name)
    try:
        assert not inventory.oob_bridge_configured()  # no br-dpu
        netns.ip("link", "add", "br-dpu", "type", "bridge")
        netns.ip("addr", "add", "192.0.2.10/24", "dev", "br-dpu")
        netns.ip("link", "set", "br-dpu", "up")
        assert not inventory.oob_bridge_configured()  # a bridge, but no default route
        netns.ip("route", "add", "default", "via", "192.0.2.1", "dev", "br-dpu", "metric", "2")
        assert not inventory.oob_bridge_configured()  # metric 2 is not above 2
        netns.ip("route", "del", "default", "via", "192.0.2.1", "dev", "br-dpu", "metric", "2")
        netns.ip("route", "add", "default", "via", "192.0.2.1", "dev", "br-dpu", "metric", "100")
        assert inventory.oob_bridge_configured()
        fake_sysfs.function("0000:04:00.0", device="0xa2dc", netdevs=("ens1f0np0",))
        assert detect_labels(inventory)[DPU_OOB_BRIDGE_CONFIGURED_LABEL] == ""
    finally:
        inventory.close()


def test_oob_bridge_must_be_a_bridge(fake_sysfs: FakeSysfs, netns: Netns) -> None:
    inventory = SysfsPciInventory(fake_sysfs.root, netns=netns.name)
    try:
        netns.veth("br-dpu", "not-a-bridge")
        netns.ip("addr", "add", "192.0.2.10/24", "dev", "br-dpu")
        netns.ip("link", "set", "br-dpu", "up")
        netns.ip("route", "add", "default", "via", "192.0.2.1", "dev", "br-dpu", "metric", "100")
        assert not inventory.oob_bridge_configured()
    finally:
        inventory.close()
