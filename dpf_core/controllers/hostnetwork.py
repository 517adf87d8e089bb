"""The host network agent: the loop of the `<dpu>-hostnetwork` pod on the DPU's host (every 5 s).

Each step: give PF0 its VFs when `sriov_numvfs` is 0 (and PF1 too when it is a BlueField function, device id
a2dc/a2d6); wait for the OOB bridge `br-dpu` to hold an IPv4 address; put VF0 of PF0 into br-dpu with the
high-speed MTU and bring it up. A step that gets that far is the readiness marker (`hostnetwork_succeed`, which
the pod's readiness probe looks for every 5 s); the DPU controller waits for that readiness.
A failing port call raises: the pod's script runs under `set -e`, so the container exits and restarts.

`hostnetwork_step` is pure over the HostNetwork port, so the twin's kubelet model and the production pod
run the very same step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dpf_core.ports import HostNetwork

LOOP_INTERVAL = 5.0
READINESS_PERIOD = 5.0
READINESS_MARKER = "hostnetwork_succeed"  # a file in the container's tmp dir
BRIDGE = "br-dpu"
DEFAULT_NUM_VFS = 16
DEFAULT_VF_MTU = 1500
DPU_DEVICE_IDS = frozenset({"a2dc", "a2d6"})  # BlueField-3, BlueField-2

ENV_DEVICE_PCI_ADDRESS = "device_pci_address"
ENV_NUM_OF_VFS = "num_of_vfs"
ENV_VF_MTU = "vf_mtu"


def device_address(pci_address: str) -> str:
    """`0000:04:00`, `0000-04-00` or a function address -> the device `0000:04:00`."""
    a = pci_address.strip().replace("-", ":")
    head, dot, tail = a.rpartition(".")
    return head if dot and tail.isdigit() and a.count(":") >= 2 else a


def _pf1_is_bluefield(port: HostNetwork, pf1: str) -> bool:
    # The HostNetwork Protocol has no device-id read; a world that offers `device_id(pci)` gets DPF's exact
    # check, the others: PF1 counts when the kernel knows it (every BlueField has two PFs).
    device_id = getattr(port, "device_id", None)
    if callable(device_id):
        dev = device_id(pf1)
        if dev is None:
            return False
        d = str(dev).strip().lower()
        return (d[2:] if d.startswith("0x") else d) in DPU_DEVICE_IDS
    try:
        port.num_vfs(pf1)
    except OSError:
        return False
    return True


def create_vfs(port: HostNetwork, pf: str, num_vfs: int) -> None:
    """Only from 0: a PF that has VFs keeps them (the kernel refuses switching between two non-zero counts)."""
    if port.num_vfs(pf) == 0:
        port.set_num_vfs(pf, num_vfs)


def hostnetwork_step(port: HostNetwork, pci_address: str, num_vfs: int = DEFAULT_NUM_VFS, vf_mtu: int = DEFAULT_VF_MTU) -> bool:
    """One pass of the agent's loop. True = configured (the readiness marker); False = br-dpu has no IPv4 yet."""
    device = device_address(pci_address)
    pf0, pf1 = f"{device}.0", f"{device}.1"
    create_vfs(port, pf0, num_vfs)
    if _pf1_is_bluefield(port, pf1):
        create_vfs(port, pf1, num_vfs)
    if not port.bridge_has_ipv4(BRIDGE):
        return False
    if not port.vf0_enslaved(pf0, BRIDGE):
        port.enslave_vf0(pf0, BRIDGE, vf_mtu)
    return True


@dataclass(frozen=True)
class HostNetworkConfig:
    """The pod's environment, as the DPU controller sets it."""

    pci_address: str
    num_vfs: int = DEFAULT_NUM_VFS
    vf_mtu: int = DEFAULT_VF_MTU


def config_from_env(env: Mapping[str, str]) -> HostNetworkConfig:
    """`device_pci_address` is required (the script exits without it); `num_of_vfs` defaults to 16."""
    pci = env.get(ENV_DEVICE_PCI_ADDRESS, "").strip()
    if not pci:
        raise ValueError(f"{ENV_DEVICE_PCI_ADDRESS} environment does not exist")
    num_vfs = int(env.get(ENV_NUM_OF_VFS) or DEFAULT_NUM_VFS)
    vf_mtu = int(env.get(ENV_VF_MTU) or DEFAULT_VF_MTU)
    return HostNetworkConfig(pci, num_vfs, vf_mtu)
