"""NVIPAM's controller (nvidia-k8s-ipam `ipam-controller`, in each DPU cluster): per-node address blocks of the
IPPools and CIDRPools, written to `status.allocations`.

- IPPool: `subnet` cut into contiguous blocks of `perNodeBlockSize` addresses from the first host address
  (network+1); every node shares the subnet mask and `gateway`. The gateway stays inside whichever block holds
  it (the node daemon skips it when it hands out addresses, see `usable_addresses`).
- CIDRPool: `cidr` cut into `perNodeNetworkPrefix` subnets in address order; each node's gateway is the
  address `gatewayIndex` into its own prefix (none for /31 and /32 prefixes, or without an index).
  `staticAllocations` are honoured: with a nodeName that node gets that prefix (and the static gateway if
  given), without one the prefix is reserved and never handed out.
- Both: nodes are those matching `nodeSelector` (nil = every Node); a block wholly inside `exclusions` is never
  handed out; allocations that are still valid never move when the pool or the node set changes; a node that
  is gone or no longer selected frees its block; new nodes, in name order, take the lowest free block. A node
  left without a block (pool exhausted) gets a Warning event on the pool, one per such node in name order, on
  every pass (NVIPAM's `NoFreeRanges` / `NoFreePrefixes`, with its messages).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dpf_core.api.external import Allocation as IPPoolAllocation
from dpf_core.api.external import (
    CIDRPool,
    CIDRPoolAllocation,
    CIDRPoolStaticAllocation,
    ExcludeRange,
    IPPool,
    Node,
)
from dpf_core.api.meta import KubeObject, NodeSelector
from dpf_core.runtime import DONE, Context, Controller, Request, Result, Watch, labels_changed
from dpf_core.store.selectors import node_selector_matches

from .mirror import ListerCell, ListerController

NAME = "nvipam"
NAME_IPPOOL = "nvipam-ippool"
NAME_CIDRPOOL = "nvipam-cidrpool"

REASON_NO_FREE_RANGES = "NoFreeRanges"  # IPPool
REASON_NO_FREE_PREFIXES = "NoFreePrefixes"  # CIDRPool

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Block:
    first: int
    last: int

    def overlaps(self, other: Block) -> bool:
        return self.first <= other.last and other.first <= self.last


def _ranges(exclusions: Iterable[ExcludeRange]) -> list[Block]:
    out: list[Block] = []
    for r in exclusions:
        try:
            out.append(Block(int(ipaddress.ip_address(r.start_ip)), int(ipaddress.ip_address(r.end_ip))))
        except ValueError:
            continue
    return out


def _excluded(block: Block, exclusions: Sequence[Block]) -> bool:
    """The whole block lies inside the exclusions (ranges may together cover it)."""
    at = block.first
    for r in sorted(exclusions, key=lambda b: b.first):
        if r.first > at:
            break
        at = max(at, r.last + 1)
        if at > block.last:
            return True
    return at > block.last


def selected_nodes(nodes: Iterable[Node], selector: NodeSelector | None) -> list[str]:
    return sorted(
        n.name for n in nodes if node_selector_matches(selector, n.metadata.labels, {"metadata.name": n.name})
    )


def _host_range(net: Network) -> Block:
    if net.prefixlen >= net.max_prefixlen - 1:
        return Block(int(net.network_address), int(net.broadcast_address))
    return Block(int(net.network_address) + 1, int(net.broadcast_address) - 1)


def usable_addresses(first: str, last: str, gateway: str | None, exclusions: Iterable[ExcludeRange] = ()) -> list[str]:
    """The addresses of one node's block the node daemon may hand out: not the gateway, not excluded."""
    lo, hi = int(ipaddress.ip_address(first)), int(ipaddress.ip_address(last))
    version = ipaddress.ip_address(first).version
    gw = int(ipaddress.ip_address(gateway)) if gateway else None
    ranges = _ranges(exclusions)
    out: list[str] = []
    for value in range(lo, hi + 1):
        if value == gw or any(r.first <= value <= r.last for r in ranges):
            continue
        out.append(str(ipaddress.ip_address(value) if version == 4 else ipaddress.IPv6Address(value)))
    return out


def _addr(value: int, version: int) -> str:
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


# --- IPPool ----------------------------------------------------------------------------------------------------


def allocate_ippool(pool: IPPool, nodes: Sequence[str]) -> tuple[list[IPPoolAllocation], list[str]]:
    """(allocations, nodes left without a block)."""
    spec = pool.spec
    try:
        net = ipaddress.ip_network(spec.subnet, strict=False)
    except ValueError:
        return [], list(nodes)
    size = spec.per_node_block_size
    if size <= 0:
        return [], list(nodes)
    hosts = _host_range(net)
    exclusions = _ranges(spec.exclusions)
    wanted = set(nodes)
    kept: dict[str, Block] = {}
    for a in pool.status.allocations:
        if a.node_name not in wanted or a.node_name in kept:
            continue
        try:
            block = Block(int(ipaddress.ip_address(a.start_ip)), int(ipaddress.ip_address(a.end_ip)))
        except ValueError:
            continue
        valid = (
            hosts.first <= block.first
            and block.last <= hosts.last
            and block.last - block.first + 1 == size
            and not _excluded(block, exclusions)
            and not any(block.overlaps(b) for b in kept.values())
        )
        if valid:
            kept[a.node_name] = block
    unallocated: list[str] = []
    slot = 0
    for node in nodes:
        if node in kept:
            continue
        while True:
            first = hosts.first + slot * size
            block = Block(first, first + size - 1)
            if block.last > hosts.last:
                unallocated.append(node)
                break
            slot += 1
            if _excluded(block, exclusions) or any(block.overlaps(b) for b in kept.values()):
                continue
            kept[node] = block
            break
    version = net.version
    allocations = [
        IPPoolAllocation.model_validate(
            {"nodeName": node, "startIP": _addr(b.first, version), "endIP": _addr(b.last, version)}
        )
        for node, b in sorted(kept.items())
    ]
    return allocations, unallocated


# --- CIDRPool ----------------------------------------------------------------------------------------------------


def _gateway(prefix: Network, index: int | None) -> str | None:
    if index is None or prefix.prefixlen >= prefix.max_prefixlen - 1:
        return None
    if index < 0 or index >= prefix.num_addresses:
        return None
    return str(prefix.network_address + index)


def allocate_cidrpool(pool: CIDRPool, nodes: Sequence[str]) -> tuple[list[CIDRPoolAllocation], list[str]]:
    spec = pool.spec
    try:
        net = ipaddress.ip_network(spec.cidr, strict=False)
    except ValueError:
        return [], list(nodes)
    plen = spec.per_node_network_prefix
    if plen < net.prefixlen or plen > net.max_prefixlen:
        return [], list(nodes)
    step = 1 << (net.max_prefixlen - plen)
    count = 1 << (plen - net.prefixlen)
    exclusions = _ranges(spec.exclusions)
    wanted = set(nodes)

    def prefix_at(first: int) -> Network:
        return ipaddress.ip_network(f"{_addr(first, net.version)}/{plen}")

    def valid(prefix: Network) -> bool:
        return (
            prefix.prefixlen == plen
            and prefix.subnet_of(net)  # type: ignore[arg-type]
            and not _excluded(Block(int(prefix.network_address), int(prefix.broadcast_address)), exclusions)
        )

    taken: dict[int, str | None] = {}  # prefix start -> node (None = reserved by a static allocation)
    result: dict[str, tuple[Network, str | None]] = {}
    statics: list[CIDRPoolStaticAllocation] = list(spec.static_allocations)
    for s in statics:
        try:
            prefix = ipaddress.ip_network(s.prefix, strict=False)
        except ValueError:
            continue
        if prefix.version != net.version or not valid(prefix):
            continue
        start = int(prefix.network_address)
        if start in taken:
            continue
        taken[start] = s.node_name
        if s.node_name and s.node_name in wanted and s.node_name not in result:
            result[s.node_name] = (prefix, s.gateway or _gateway(prefix, spec.gateway_index))
    for a in pool.status.allocations:
        if a.node_name not in wanted or a.node_name in result:
            continue
        try:
            prefix = ipaddress.ip_network(a.prefix, strict=False)
        except ValueError:
            continue
        start = int(prefix.network_address)
        if prefix.version != net.version or not valid(prefix) or start in taken:
            continue
        taken[start] = a.node_name
        result[a.node_name] = (prefix, _gateway(prefix, spec.gateway_index))
    unallocated: list[str] = []
    index = 0
    for node in nodes:
        if node in result:
            continue
        while True:
            if index >= count:
                unallocated.append(node)
                break
            start = int(net.network_address) + index * step
            index += 1
            if start in taken:
                continue
            prefix = prefix_at(start)
            if not valid(prefix):
                continue
            taken[start] = node
            result[node] = (prefix, _gateway(prefix, spec.gateway_index))
            break
    allocations = [
        CIDRPoolAllocation.model_validate(
            {"nodeName": node, "prefix": str(prefix), **({"gateway": gw} if gw is not None else {})}
        )
        for node, (prefix, gw) in sorted(result.items())
    ]
    return allocations, unallocated


# --- reconcilers -------------------------------------------------------------------------------------------------


def _report(ctx: Context, pool: KubeObject, unallocated: Sequence[str]) -> None:
    for node in sorted(unallocated):
        if isinstance(pool, CIDRPool):
            # "allocated" is NVIPAM's own spelling: the message is matched verbatim.
            reason, message = REASON_NO_FREE_PREFIXES, f"failed to allocated prefix for Node: {node}, no free prefixes"
        else:
            reason, message = REASON_NO_FREE_RANGES, f"failed to allocate IPs on Node: {node}"
        ctx.recorder.event(pool, "Warning", reason, message)


class IPPoolReconciler:
    def reconcile(self, ctx: Context, req: Request) -> Result:
        pool = ctx.client.try_get(IPPool, req.name, req.namespace)
        if pool is None or pool.metadata.deletion_timestamp is not None:
            return DONE
        nodes = selected_nodes(ctx.client.list(Node), pool.spec.node_selector)
        allocations, unallocated = allocate_ippool(pool, nodes)
        if allocations != pool.status.allocations:
            new = pool.deepcopy()
            new.status.allocations = allocations
            ctx.client.update_status(new)
        _report(ctx, pool, unallocated)
        return DONE


class CIDRPoolReconciler:
    def reconcile(self, ctx: Context, req: Request) -> Result:
        pool = ctx.client.try_get(CIDRPool, req.name, req.namespace)
        if pool is None or pool.metadata.deletion_timestamp is not None:
            return DONE
        nodes = selected_nodes(ctx.client.list(Node), pool.spec.node_selector)
        allocations, unallocated = allocate_cidrpool(pool, nodes)
        if allocations != pool.status.allocations:
            new = pool.deepcopy()
            new.status.allocations = allocations
            ctx.client.update_status(new)
        _report(ctx, pool, unallocated)
        return DONE


def _pool_controller(name: str, reconciler: IPPoolReconciler | CIDRPoolReconciler, kind: type[KubeObject]) -> Controller:
    cell = ListerCell()
    # Node added, removed or relabelled -> every pool of the kind re-allocates.
    return ListerController(name, reconciler, kind, [Watch(Node, cell.mapper_all(kind), labels_changed)], cell=cell)


def controllers() -> list[Controller]:
    return [
        _pool_controller(NAME_IPPOOL, IPPoolReconciler(), IPPool),
        _pool_controller(NAME_CIDRPOOL, CIDRPoolReconciler(), CIDRPool),
    ]
