"""The fleet: racks of hosts with BlueFields, ToR switches, a core switch and BFB server(s), as a graph.

    bfb-server-0 ─┐
                  core ── tor-0 ── worker-0-0 ── worker-0-0-0000-04-00 (DPU)
    bfb-server-1 ─┘     └─ tor-1 ── ...

Node ids are the names the rest of the twin uses: host nodes are Kubernetes Node names, DPU nodes are the DPU
object names DPF's DPUSet controller creates (`lower(node)-<pci label>`, e.g. `worker-0-0-0000-04-00`), so a
DPU object, its BlueField model and its graph node share one name.

Links are full duplex: each edge is two directed links (`"a->b"`, `"b->a"`) of the edge's bandwidth, so a
download into a rack never competes with traffic leaving it.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Literal

import networkx as nx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .durations import Rate, parse_rate

NFD = "feature.node.kubernetes.io/"
DPU_ENABLED_LABEL = NFD + "dpu-enabled"
DPU_OOB_BRIDGE_CONFIGURED_LABEL = NFD + "dpu-oob-bridge-configured"

# PCI device ids of the NodeFeatureRule `dpu-detection-rule` (vendor 15b3).
DEVICE_BF3: Literal["a2dc"] = "a2dc"
DEVICE_BF2: Literal["a2d6"] = "a2d6"
MELLANOX_VENDOR = "15b3"

Kind = Literal["host", "dpu", "tor", "core", "bfb-server"]
CORE = "core"

_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PCI = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}$")


def link_id(a: str, b: str) -> str:
    return f"{a}->{b}"


def pci_label(pci_address: str) -> str:
    """`0000:04:00` -> `0000-04-00`, the form dpudetector puts in labels and DPF puts in DPU names."""
    return pci_address.replace(":", "-")


def dpu_name(host: str, pci_address: str) -> str:
    """The DPU object name DPF's DPUSet controller gives the DPU at `pci_address` on `host`."""
    return f"{host.lower()}-{pci_label(pci_address)}"



# Paths kept (a path is computed from the graph once and a rollout asks it a few times): ~190 bytes each, so a
# 100k fleet would otherwise keep ~40 MB of them for the whole run.
_PATHS_KEPT = 16384

class FleetSpec(BaseModel):
    """What a scenario says about the hardware. Defaults: one rack of four hosts, one BlueField-3 each."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    racks: int = Field(1, ge=1, le=10_000)
    hosts_per_rack: int | None = Field(None, ge=0, le=10_000)
    hosts: int | None = Field(None, ge=0, le=1_000_000, description="total hosts, spread evenly over the racks")
    dpus_per_host: int = Field(1, ge=1, le=2)
    dpu_device_id: Literal["a2dc", "a2d6"] = DEVICE_BF3
    pci_addresses: list[str] = Field(default_factory=lambda: ["0000:04:00", "0000:05:00"])
    host_name_pattern: str = "worker-{rack}-{index}"
    pf0_names: list[str] = Field(default_factory=lambda: ["ens1f0np0", "ens2f0np0"])
    psid: str = "MT_0000000884"
    oob_bridge_configured: bool = True
    host_uplink: Rate = parse_rate("25Gbit/s")
    tor_uplink: Rate = parse_rate("100Gbit/s")
    bfb_server_uplink: Rate = parse_rate("10Gbit/s")
    dpu_link: Rate = parse_rate("200Gbit/s")
    bfb_servers: int = Field(1, ge=1, le=64)
    bfb_share: str | None = Field(None, description="graph node holding the BFB PVC (NFS); default bfb-server-0")

    @field_validator("pci_addresses")
    @classmethod
    def _pci(cls, v: list[str]) -> list[str]:
        for a in v:
            if not _PCI.match(a):
                raise ValueError(f"PCI address {a!r} is not <domain>:<bus>:<device> like 0000:04:00")
        if len(set(v)) != len(v):
            raise ValueError("PCI addresses must differ")
        return v

    @model_validator(mode="after")
    def _fits(self) -> FleetSpec:
        if len(self.pci_addresses) < self.dpus_per_host:
            raise ValueError(f"{self.dpus_per_host} DPUs per host need as many pci_addresses")
        if len(self.pf0_names) < self.dpus_per_host:
            raise ValueError(f"{self.dpus_per_host} DPUs per host need as many pf0_names")
        if self.hosts_per_rack is not None and self.hosts is not None:
            raise ValueError("give hosts_per_rack or hosts, not both")
        try:
            sample = self.host_name_pattern.format(rack=0, index=0, n=0)
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"host_name_pattern may use {{rack}}, {{index}} and {{n}} only: {e}") from e
        if not _DNS_NAME.match(sample) or len(sample) > 63:
            raise ValueError(f"host_name_pattern gives {sample!r}, not a lowercase DNS name")
        return self

    def rack_sizes(self) -> list[int]:
        if self.hosts is not None:
            per, extra = divmod(self.hosts, self.racks)
            return [per + (1 if r < extra else 0) for r in range(self.racks)]
        return [4 if self.hosts_per_rack is None else self.hosts_per_rack] * self.racks


@dataclass(frozen=True, slots=True)
class DpuRecord:
    name: str
    host: str
    index: int
    pci_address: str  # "0000:04:00"
    pf0_name: str
    psid: str
    device_id: str

    @property
    def pf0_pci_address(self) -> str:
        return self.pci_address + ".0"


@dataclass(frozen=True, slots=True)
class HostRecord:
    name: str
    rack: int
    index: int
    dpus: tuple[DpuRecord, ...]
    labels: dict[str, str] = field(hash=False)


class Fleet:
    """The built topology plus the host and DPU records. Paths are cached (a tree has one path per pair)."""

    def __init__(self, spec: FleetSpec, graph: nx.Graph, hosts: dict[str, HostRecord], share: str) -> None:
        self.spec = spec
        self.graph = graph
        self.hosts = hosts
        self.dpus: dict[str, DpuRecord] = dict(sorted((d.name, d) for h in hosts.values() for d in h.dpus))
        self.bfb_servers = [f"bfb-server-{i}" for i in range(spec.bfb_servers)]
        self.tors = [f"tor-{r}" for r in range(spec.racks)]
        self.bfb_share = share
        self._bandwidth: dict[str, float] = {}
        for a, b, bw in graph.edges(data="bandwidth"):
            self._bandwidth[link_id(a, b)] = float(bw)
            self._bandwidth[link_id(b, a)] = float(bw)
        self._paths: dict[tuple[str, str], tuple[str, ...]] = {}

    def kind(self, node: str) -> str:
        return str(self.graph.nodes[node]["kind"])

    def links(self) -> list[str]:
        return sorted(self._bandwidth)

    def bandwidth(self, link: str) -> float:
        """Bytes per second of one direction of a link."""
        return self._bandwidth[link]

    def path(self, a: str, b: str) -> tuple[str, ...]:
        """Directed link ids from `a` to `b` (empty when a == b)."""
        key = (a, b)
        p = self._paths.get(key)
        if p is None:
            if a not in self.graph or b not in self.graph:
                raise KeyError(f"no node {a if a not in self.graph else b!r} in the fleet")
            p = tuple(link_id(x, y) for x, y in itertools.pairwise(self._tree_path(a, b)))
            if len(self._paths) >= _PATHS_KEPT:
                self._paths.clear()  # a DPU's own paths are asked for in one rollout, rarely again
            self._paths[key] = p
        return p

    def _up(self, node: str) -> list[str]:
        """`node` and its ancestors up to the core. The fleet is a tree (build_fleet) whose node data name each
        node's parent, so this is a few dict lookups where a shortest-path search from a host would walk its
        ToR's every host (and, at 100k hosts, the core's every ToR): ~0.1 ms a path at 5k hosts, growing with the fleet."""
        chain = [node]
        nodes = self.graph.nodes
        while node != CORE:
            data = nodes[node]
            kind = data["kind"]
            if kind == "dpu":
                node = data["host"]
            elif kind == "host":
                node = f"tor-{data['rack']}"
            else:  # a ToR or a BFB server
                node = CORE
            chain.append(node)
        return chain

    def _tree_path(self, a: str, b: str) -> list[str]:
        """The nodes from `a` to `b`, both included: up to their lowest common ancestor, then down."""
        up_a, up_b = self._up(a), self._up(b)
        on_b = {n: i for i, n in enumerate(up_b)}
        for i, n in enumerate(up_a):
            j = on_b.get(n)
            if j is not None:
                return up_a[: i + 1] + up_b[:j][::-1]
        raise KeyError(f"no path from {a!r} to {b!r} in the fleet")  # cannot happen in a tree rooted at the core

    def host_of(self, dpu: str) -> str:
        return self.dpus[dpu].host

    def dpu_at(self, host: str, pci_address: str) -> DpuRecord | None:
        """The DPU at a PCI address of a host; accepts `0000:04:00`, `0000:04:00.0`, `0000-04-00` and the
        bus:device form DPF hands to bf-slr and dmsd (`04:00`, domain 0000)."""
        want = pci_address.replace("-", ":").split(".")[0]
        if want.count(":") == 1:
            want = "0000:" + want
        rec = self.hosts.get(host)
        if rec is None:
            return None
        for d in rec.dpus:
            if d.pci_address == want:
                return d
        return None

    def nodes_of_kind(self, kind: str) -> list[str]:
        return sorted(n for n, k in self.graph.nodes(data="kind") if k == kind)


def nfd_labels(dpus: list[DpuRecord], oob_bridge_configured: bool) -> dict[str, str]:
    """The labels NFD puts on a host from its NodeFeatureRule and dpudetector's feature file (facts 1.11)."""
    labels = {DPU_ENABLED_LABEL: "true"}
    for d in dpus:
        labels[f"{NFD}dpu-{d.index}-pci-address"] = pci_label(d.pci_address)
        labels[f"{NFD}dpu-{d.index}-pf0-name"] = d.pf0_name
        labels[f"{NFD}dpu-{d.index}-ps-id"] = d.psid
    if oob_bridge_configured:
        labels[DPU_OOB_BRIDGE_CONFIGURED_LABEL] = ""
    return dict(sorted(labels.items()))


def build_fleet(spec: FleetSpec) -> Fleet:
    g = nx.Graph()
    g.add_node(CORE, kind="core")
    for i in range(spec.bfb_servers):
        name = f"bfb-server-{i}"
        g.add_node(name, kind="bfb-server")
        g.add_edge(name, CORE, bandwidth=spec.bfb_server_uplink)
    hosts: dict[str, HostRecord] = {}
    n = 0
    for rack, size in enumerate(spec.rack_sizes()):
        tor = f"tor-{rack}"
        g.add_node(tor, kind="tor", rack=rack)
        g.add_edge(tor, CORE, bandwidth=spec.tor_uplink)
        for index in range(size):
            host = spec.host_name_pattern.format(rack=rack, index=index, n=n)
            n += 1
            if not _DNS_NAME.match(host) or len(host) > 253:
                raise ValueError(f"host name {host!r} is not a lowercase DNS name")
            if host in hosts or host in g:
                raise ValueError(f"host_name_pattern gives {host!r} twice (or clashes with a switch/server name)")
            # dpudetector numbers DPUs in PCI order; the spec's list order is the slot order.
            dpus = tuple(
                DpuRecord(
                    name=dpu_name(host, pci),
                    host=host,
                    index=i,
                    pci_address=pci,
                    pf0_name=spec.pf0_names[i],
                    psid=spec.psid,
                    device_id=spec.dpu_device_id,
                )
                for i, pci in enumerate(sorted(spec.pci_addresses[: spec.dpus_per_host]))
            )
            for d in dpus:
                # The DPU's name is its Linux hostname and DPU-cluster Node name (bf.cfg): a DNS name (FQDN host
                # names give dotted DPU names, as in DPF) within HOST_NAME_MAX.
                if not _DNS_NAME.match(d.name) or len(d.name) > 63:
                    raise ValueError(f"DPU name {d.name!r} is not a hostname of at most 63 characters "
                                     "(shorten host_name_pattern)")
            hosts[host] = HostRecord(host, rack, index, dpus, nfd_labels(list(dpus), spec.oob_bridge_configured))
            g.add_node(host, kind="host", rack=rack)
            g.add_edge(host, tor, bandwidth=spec.host_uplink)
            for d in dpus:
                g.add_node(d.name, kind="dpu", rack=rack, host=host, pci_address=d.pci_address)
                g.add_edge(d.name, host, bandwidth=spec.dpu_link)
    share = spec.bfb_share or "bfb-server-0"
    if share not in g:
        raise ValueError(f"bfb_share {share!r} is not a node of the fleet")
    return Fleet(spec, g, dict(sorted(hosts.items())), share)
