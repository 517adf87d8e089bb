"""DPUServiceIPAM controller (host, DPF's dpuservicechain manager): an NVIPAM pool of the same name and
namespace in every DPU cluster. `ipv4Subnet` -> IPPool (one subnet, shared gateway, a block of
`perNodeIPCount` IPs per node); `ipv4Network` -> CIDRPool (a `prefixSize` subnet per node with its own
gateway at `gatewayIndex`, exclusions as single-IP ranges, `allocations` as static allocations). Applying one
kind deletes the other (a mode switch). Pool labels = `spec.metadata.labels` + the parent name/namespace
labels; annotations = `spec.metadata.annotations`. `DPUIPAMObjectReady` iff every pool has allocations.

DPF watches DPUServiceIPAM only; we add the DPUCluster/TenantControlPlane watch the other mirrors have.
"""

from __future__ import annotations

from typing import Any

from dpf_core.api.external import CIDRPool, IPPool
from dpf_core.api.meta import KubeObject
from dpf_core.api.svc import (
    CONDITION_DPU_IPAM_OBJECT_READY,
    CONDITION_DPU_IPAM_OBJECT_RECONCILED,
    DPUSERVICE_IPAM_CONDITIONS,
    FINALIZER_DPUSERVICE_IPAM,
    LABEL_PARENT_DPUSERVICE_IPAM_NAME,
    LABEL_PARENT_DPUSERVICE_IPAM_NAMESPACE,
    DPUServiceIPAM,
)
from dpf_core.runtime import Controller
from dpf_core.store.protocol import Client

from .mirror import MirrorReconciler, apply, delete_if_exists, mirror_controller

NAME = "dpuserviceipam"

_POOL_KINDS: tuple[type[KubeObject], ...] = (IPPool, CIDRPool)


def pool_labels(ipam: DPUServiceIPAM) -> dict[str, str]:
    meta = ipam.spec.metadata
    labels = dict(meta.labels) if meta is not None else {}
    labels[LABEL_PARENT_DPUSERVICE_IPAM_NAME] = ipam.name
    labels[LABEL_PARENT_DPUSERVICE_IPAM_NAMESPACE] = ipam.namespace or ""
    return labels


def _metadata(ipam: DPUServiceIPAM) -> dict[str, Any]:
    meta = ipam.spec.metadata
    return {
        "name": ipam.name,
        "namespace": ipam.namespace,
        "labels": pool_labels(ipam),
        "annotations": dict(meta.annotations) if meta is not None else {},
    }


def _node_selector(ipam: DPUServiceIPAM) -> dict[str, Any] | None:
    return ipam.spec.node_selector.wire() if ipam.spec.node_selector is not None else None


def desired_ippool(ipam: DPUServiceIPAM) -> IPPool:
    subnet = ipam.spec.ipv4_subnet
    if subnet is None:
        raise ValueError("ipv4Subnet is not set")
    spec: dict[str, Any] = {
        "subnet": subnet.subnet,
        "perNodeBlockSize": subnet.per_node_ip_count,
        "gateway": subnet.gateway,
        "nodeSelector": _node_selector(ipam),
        "defaultGateway": subnet.default_gateway,
        "routes": [{"dst": r.dst} for r in subnet.routes],
    }
    return IPPool.model_validate(
        {
            "apiVersion": IPPool.KIND.api_version,
            "kind": IPPool.KIND.kind,
            "metadata": _metadata(ipam),
            "spec": {k: v for k, v in spec.items() if v is not None},
        }
    )


def desired_cidrpool(ipam: DPUServiceIPAM) -> CIDRPool:
    network = ipam.spec.ipv4_network
    if network is None:
        raise ValueError("ipv4Network is not set")
    spec: dict[str, Any] = {
        "cidr": network.network,
        "gatewayIndex": network.gateway_index,
        "perNodeNetworkPrefix": network.prefix_size,
        "nodeSelector": _node_selector(ipam),
        "exclusions": [{"startIP": ip, "endIP": ip} for ip in network.exclusions],
        # Sorted by node: Go ranges over the map in random order, so any order is DPF's order.
        "staticAllocations": [
            {"nodeName": node, "prefix": prefix} for node, prefix in sorted(network.allocations.items())
        ],
        "defaultGateway": network.default_gateway,
        "routes": [{"dst": r.dst} for r in network.routes],
    }
    return CIDRPool.model_validate(
        {
            "apiVersion": CIDRPool.KIND.api_version,
            "kind": CIDRPool.KIND.kind,
            "metadata": _metadata(ipam),
            "spec": {k: v for k, v in spec.items() if v is not None},
        }
    )


def _owned(client: Client, kind: type[KubeObject], ipam: DPUServiceIPAM) -> list[KubeObject]:
    selector = {
        LABEL_PARENT_DPUSERVICE_IPAM_NAME: ipam.name,
        LABEL_PARENT_DPUSERVICE_IPAM_NAMESPACE: ipam.namespace or "",
    }
    return list(client.list(kind, ipam.namespace, label_selector=selector))


def _delete_owned(client: Client, kind: type[KubeObject], ipam: DPUServiceIPAM) -> None:
    """DeleteAllOf by the parent labels."""
    for pool in _owned(client, kind, ipam):
        if pool.metadata.deletion_timestamp is None:
            delete_if_exists(client, kind, pool.name, pool.namespace)


class DPUServiceIPAMReconciler(MirrorReconciler[DPUServiceIPAM]):
    KIND = DPUServiceIPAM
    CONDITIONS = DPUSERVICE_IPAM_CONDITIONS
    RECONCILED = CONDITION_DPU_IPAM_OBJECT_RECONCILED
    READY = CONDITION_DPU_IPAM_OBJECT_READY
    FINALIZER = FINALIZER_DPUSERVICE_IPAM

    def apply_children(self, client: Client, parent: DPUServiceIPAM) -> None:
        if parent.spec.ipv4_subnet is not None:
            apply(client, desired_ippool(parent))
            _delete_owned(client, CIDRPool, parent)
        else:
            apply(client, desired_cidrpool(parent))
            _delete_owned(client, IPPool, parent)

    def children(self, client: Client, parent: DPUServiceIPAM) -> list[KubeObject]:
        return [pool for kind in _POOL_KINDS for pool in _owned(client, kind, parent)]

    def delete_children(self, client: Client, parent: DPUServiceIPAM) -> None:
        for kind in _POOL_KINDS:
            _delete_owned(client, kind, parent)

    def child_ready(self, child: KubeObject) -> bool:
        if isinstance(child, IPPool | CIDRPool):
            return bool(child.status.allocations)
        return False


def controller() -> Controller:
    return mirror_controller(NAME, DPUServiceIPAMReconciler())
