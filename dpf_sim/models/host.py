"""Worker hosts: uptime and reboots as DPF's Rebooting phase sees them, and the kernel network state the
hostnetwork pod reads and writes (sysfs `sriov_numvfs`, bridge `br-dpu`, VF0 of PF0 enslaved with an MTU).

Reboots (facts 3.4):
- WarmReboot = `bf-slr.sh <pci> <cmd> arm` then `... host`: the ARM is reset (`mlxfwreset -l 1`), the script
  polls rshim for "INFO[BL31]: System Off" every 5 s, at most 30 times (OpError "Timeout" if the ARM never
  gets there), then reboots the host; the chip reset at host reboot boots the DPU again.
- PowerCycle = `ipmitool chassis power cycle|reset`: the host and its DPUs go down at once.
`skip` does nothing, as DPF's `reboot-command: skip`. While a host is down its DMS pods are unreachable and
`cat /proc/uptime` fails (uptime None); it comes back with uptime 0, VFs gone (sriov_numvfs is not
persistent) and `br-dpu` as configured (it is host configuration, e.g. netplan).
"""

from __future__ import annotations

import errno
import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import simpy
from pydantic import BaseModel, ConfigDict, Field

from dpf_core.ports.ops import EnslaveVf, OpError, PowerCycle, SetNumVfs, WarmReboot

from ..durations import Duration
from ..fleet import HostRecord
from ..rng import Streams
from .bluefield import BlueFields
from .packing import History

SKIP = "skip"
ARM_POLL_INTERVAL = 5.0
ARM_POLL_ATTEMPTS = 30
BR_DPU = "br-dpu"


class HostParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    initial_uptime: Duration = Duration.of({"dist": "uniform", "low": "1d", "high": "30d"})
    reboot_time: Duration = Duration.of({"dist": "triangular", "low": "3m", "mode": "4m", "high": "5m"})
    power_cycle_time: Duration = Duration.of({"dist": "triangular", "low": "4m", "mode": "5m", "high": "6m"})
    exec_latency: Duration = Duration.of("200ms")
    arm_reset_time: Duration = Duration.of("5s")
    arm_shutdown_time: Duration = Duration.of({"dist": "uniform", "low": "10s", "high": "40s"})
    sriov_time: Duration = Duration.of("2s")  # writing sriov_numvfs creates the VFs (driver probe per VF)
    total_vfs: int = Field(127, ge=0)
    br_dpu_ipv4: str | None = "10.0.110.10/24"
    mtu: int = Field(1500, ge=68, le=9216)
    bridges: list[str] = Field(default_factory=lambda: [BR_DPU])


@dataclass(slots=True)
class PfState:
    pci_address: str  # "0000:04:00.0"
    total_vfs: int
    num_vfs: int = 0
    vf0_bridge: str | None = None
    vf0_mtu: int = 1500
    vf0_up: bool = False


@dataclass(slots=True)
class Bridge:
    name: str
    ipv4: str | None = None


@dataclass(slots=True)
class Host:
    name: str
    record: HostRecord
    last_boot: float  # sim seconds; negative when the host booted before the run started
    up: bool = True
    generation: int = 0
    reboots: int = 0
    power_cycles: int = 0
    warm_reboots: int = 0
    pfs: dict[str, PfState] = field(default_factory=dict)
    bridges: dict[str, Bridge] = field(default_factory=dict)
    history: History = field(default_factory=History)


HostHook = Callable[[Host], None]


def pf_address(pci_address: str, pf: int = 0) -> str:
    """`0000:04:00` (or `0000-04-00`) -> `0000:04:00.<pf>`; a full function address is kept."""
    a = pci_address.replace("-", ":")
    return a if "." in a else f"{a}.{pf}"


class Hosts:
    """Every host of the fleet. `on_down` / `on_up` are the composition's hooks (Node NotReady, pods restart)."""

    def __init__(self, env: simpy.Environment, bluefields: BlueFields, params: HostParams | None = None,
                 streams: Streams | None = None, on_down: HostHook | None = None, on_up: HostHook | None = None) -> None:
        self.env = env
        self.bluefields = bluefields
        self.fleet = bluefields.fleet
        self.params = params or HostParams()
        # Per-host streams are lazy (rng.py): a host draws a few numbers per reboot.
        self.streams = (streams or Streams(0)).child("host")
        self.on_down = on_down
        self.on_up = on_up
        self.hosts: dict[str, Host] = {}
        for name, rec in self.fleet.hosts.items():
            h = Host(name, rec, last_boot=env.now - self.params.initial_uptime.sample(self.streams.lazy(name)))
            for d in rec.dpus:
                # BlueField-2 and -3 expose two PFs; the hostnetwork pod configures PF1 too on these device ids.
                for pf in (0, 1):
                    addr = pf_address(d.pci_address, pf)
                    h.pfs[addr] = PfState(addr, self.params.total_vfs, vf0_mtu=self.params.mtu)
            for b in self.params.bridges:
                h.bridges[b] = Bridge(b, self.params.br_dpu_ipv4 if b == BR_DPU else None)
            self.hosts[name] = h
        bluefields.hosts = self

    def get(self, name: str) -> Host:
        h = self.hosts.get(name)
        if h is None:
            raise KeyError(f"no host {name!r} in the fleet")
        return h

    def is_up(self, name: str) -> bool:
        h = self.hosts.get(name)
        return h is not None and h.up

    def uptime(self, name: str) -> float | None:
        """`cat /proc/uptime` in the DMS pod: None while the host is down (the exec fails)."""
        h = self.hosts.get(name)
        if h is None or not h.up:
            return None
        return float(self.env.now) - h.last_boot

    # --- reboots -------------------------------------------------------------------------------------------
    def reboot(self, name: str, duration: float, *, power_cycle: bool = False) -> None:
        """Take the host down now and bring it back after `duration`; its DPUs reset with it."""
        h = self.get(name)
        h.generation += 1
        h.up = False
        h.reboots += 1
        if power_cycle:
            h.power_cycles += 1
        h.history.append((self.env.now, "power cycle" if power_cycle else "reboot"))
        for pf in h.pfs.values():
            pf.num_vfs = 0
            pf.vf0_bridge = None
            pf.vf0_up = False
        for d in h.record.dpus:
            self.bluefields.reboot(d.name)
        if self.on_down is not None:
            self.on_down(h)
        self.env.process(self._come_back(h, h.generation, duration))

    def _come_back(self, h: Host, gen: int, duration: float) -> Generator[Any, Any, None]:
        yield self.env.timeout(duration)
        if gen != h.generation:
            return
        h.up = True
        h.last_boot = float(self.env.now)
        for d in h.record.dpus:
            self.bluefields.disturb(d.name)  # their DMS answers again
        h.history.append((self.env.now, "up"))
        if self.on_up is not None:
            self.on_up(h)

    def register(self, executor: Any) -> None:
        executor.register(WarmReboot, self.warm_reboot)
        executor.register(PowerCycle, self.power_cycle)
        executor.register(SetNumVfs, self.set_num_vfs_op)
        executor.register(EnslaveVf, self.enslave_vf_op)

    def _exec_host(self, node: str) -> Host:
        h = self.hosts.get(node)
        if h is None:
            raise OpError(f"node {node!r} not found", "NotFound")
        if not h.up:
            raise OpError(f"exec in DMS pod on {node}: host is down", "Unavailable")
        return h

    def warm_reboot(self, op: WarmReboot) -> Generator[Any, Any, None]:
        h = self._exec_host(op.node)
        rng = self.streams.lazy(op.node)
        dpu = self.fleet.dpu_at(op.node, op.pci_address)
        if dpu is None:
            raise OpError(f"bf-slr: no BlueField at {op.pci_address} on {op.node}", "NotFound")
        yield self.env.timeout(self.params.exec_latency.sample(rng))
        if op.command == SKIP:
            return
        yield self.env.timeout(self.params.arm_reset_time.sample(rng))
        self.bluefields.arm_off(dpu.name)
        shutdown = self.params.arm_shutdown_time.sample(rng)
        polls = max(1, math.ceil(shutdown / ARM_POLL_INTERVAL))
        if polls > ARM_POLL_ATTEMPTS:
            yield self.env.timeout(ARM_POLL_ATTEMPTS * ARM_POLL_INTERVAL)
            raise OpError(f"bf-slr: ARM of {op.pci_address} did not reach System Off in "
                          f"{ARM_POLL_ATTEMPTS}x{ARM_POLL_INTERVAL:g}s", "Timeout")
        yield self.env.timeout(polls * ARM_POLL_INTERVAL)
        if not h.up:
            raise OpError(f"exec in DMS pod on {op.node}: host is down", "Unavailable")
        h.warm_reboots += 1
        self.reboot(op.node, self.params.reboot_time.sample(rng))

    def power_cycle(self, op: PowerCycle) -> Generator[Any, Any, None]:
        self._exec_host(op.node)
        rng = self.streams.lazy(op.node)
        yield self.env.timeout(self.params.exec_latency.sample(rng))
        if op.command == SKIP:
            return
        self.reboot(op.node, self.params.power_cycle_time.sample(rng), power_cycle=True)

    # --- kernel network state (the HostNetwork port and ops) ---------------------------------------------
    def _pf(self, node: str, pci_address: str) -> PfState:
        h = self.get(node)
        pf = h.pfs.get(pf_address(pci_address))
        if pf is None:
            raise OSError(errno.ENODEV, f"no PCI device {pci_address} on {node}")
        return pf

    def num_vfs(self, node: str, pci_address: str) -> int:
        return self._pf(node, pci_address).num_vfs

    def set_num_vfs(self, node: str, pci_address: str, count: int) -> None:
        """Write `sriov_numvfs`: the kernel refuses a change between two non-zero counts (EBUSY) and counts
        above `sriov_totalvfs` (ERANGE), so callers reset to 0 first, as real tooling does."""
        if not self.is_up(node):
            raise OSError(errno.EHOSTDOWN, f"host {node} is down")
        pf = self._pf(node, pci_address)
        if count < 0 or count > pf.total_vfs:
            raise OSError(errno.ERANGE, f"{count} VFs out of range 0..{pf.total_vfs}")
        if pf.num_vfs != 0 and count != 0 and count != pf.num_vfs:
            raise OSError(errno.EBUSY, f"{pf.pci_address} already has {pf.num_vfs} VFs")
        pf.num_vfs = count
        if count == 0:
            pf.vf0_bridge = None
            pf.vf0_up = False

    def bridge_has_ipv4(self, node: str, bridge: str) -> bool:
        b = self.get(node).bridges.get(bridge)
        return b is not None and b.ipv4 is not None

    def set_bridge_ipv4(self, node: str, bridge: str, ipv4: str | None) -> None:
        """Scenario knob: configure (or break) the host's br-dpu, e.g. DHCP not answering."""
        h = self.get(node)
        h.bridges.setdefault(bridge, Bridge(bridge)).ipv4 = ipv4

    def enslave_vf0(self, node: str, pci_address: str, bridge: str, mtu: int) -> None:
        if not self.is_up(node):
            raise OSError(errno.EHOSTDOWN, f"host {node} is down")
        pf = self._pf(node, pci_address)
        if pf.num_vfs == 0:
            raise OSError(errno.ENODEV, f"{pf.pci_address} has no VF0")
        if bridge not in self.get(node).bridges:
            raise OSError(errno.ENODEV, f"no bridge {bridge} on {node}")
        pf.vf0_bridge = bridge
        pf.vf0_mtu = mtu
        pf.vf0_up = True

    def vf0_enslaved(self, node: str, pci_address: str, bridge: str) -> bool:
        pf = self._pf(node, pci_address)
        return pf.vf0_bridge == bridge and pf.vf0_up

    def _op_node(self, op: Any) -> str:
        # SetNumVfs / EnslaveVf name no node (the real pod runs on its host); in a shared executor the op
        # must carry one, or the fleet must have a single host.
        node = getattr(op, "node", None)
        if node:
            return str(node)
        if len(self.hosts) == 1:
            return next(iter(self.hosts))
        raise OpError(f"{type(op).__name__} names no node and the fleet has {len(self.hosts)} hosts", "InvalidArgument")

    def set_num_vfs_op(self, op: SetNumVfs) -> Generator[Any, Any, None]:
        node = self._op_node(op)
        yield self.env.timeout(self.params.sriov_time.sample(self.streams.lazy(node)))
        try:
            self.set_num_vfs(node, op.pci_address, op.num_vfs)
        except OSError as e:
            raise OpError(str(e), errno.errorcode.get(e.errno or 0, "OSError")) from e

    def enslave_vf_op(self, op: EnslaveVf) -> Generator[Any, Any, None]:
        node = self._op_node(op)
        yield self.env.timeout(0)
        try:
            self.enslave_vf0(node, op.pci_address, op.bridge, op.mtu)
        except OSError as e:
            raise OpError(str(e), errno.errorcode.get(e.errno or 0, "OSError")) from e
