"""The Pod IPAM injector (DPF's pod-ipam-injector, DPU cluster): tells nv-ipam which pool a service pod's
chained interface takes its address from.

For a Pod that is scheduled (`spec.nodeName`), still Pending and has Multus networks, each naming an
interface: the ServiceChains in the Pod's namespace on the Pod's node are searched for ports whose
ServiceInterface is of type `service`, carries the Pod's serviceID (`svc.dpu.nvidia.com/service` label) and
names the same interface; the port's `ipam` picks the pool (the first IPPool matching `ipam.matchLabels`,
else the first CIDRPool) and the network's `cni-args` become `{allocateDefaultGateway, poolNames: [pool],
poolType: "ippool"|"cidrpool"}`. Anything not resolvable yet -> retry in 30 s. `setDefaultRoute` is unused,
as in DPF.

DPF reads the annotation with multus v4.0.2's `GetPodNetwork` and writes back `json.Marshal` of the parsed
`[]*NetworkSelectionElement`, so the patched text is that struct's encoding: field order, unknown keys dropped,
`namespace` filled with the Pod's namespace, cni-args keys sorted (`null` when unset: no omitempty in v4.0.2), compact,
HTML-escaped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dpf_core.api.external import ANNOTATION_MULTUS_NETWORKS, CIDRPool, IPPool, Pod
from dpf_core.api.svc import (
    INTERFACE_TYPE_SERVICE,
    IPAM,
    LABEL_DPF_SERVICE_ID,
    ServiceChain,
    ServiceIfc,
    ServiceInterface,
)
from dpf_core.runtime import DONE, Context, Controller, Request, Result

from .dpuservice import go_json_marshal, network_selection_element
from .svc_common import go_map

NAME = "podipam"
RETRY = 30.0

CNI_ARG_ALLOCATE_DEFAULT_GATEWAY = "allocateDefaultGateway"
CNI_ARG_POOL_NAMES = "poolNames"
CNI_ARG_POOL_TYPE = "poolType"
POOL_TYPE_IPPOOL = "ippool"
POOL_TYPE_CIDRPOOL = "cidrpool"


class NetworkAnnotationError(ValueError):
    pass


def parse_networks(annotation: str, pod_namespace: str) -> list[dict[str, Any]]:
    """Multus' `k8s.v1.cni.cncf.io/networks` as multus v4's parsePodNetworkAnnotation reads it: JSON when the text
    holds any of `[{"`, else `[ns/]name[@iface],...`; each entry is a NetworkSelectionElement (see
    `network_selection_element`) whose empty namespace becomes the Pod's."""
    text = annotation.strip()
    if not text:
        return []
    networks: list[dict[str, Any]] = []
    if any(c in text for c in '[{"'):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as e:
            raise NetworkAnnotationError(f"parsePodNetworkAnnotation: failed to parse pod Network Attachment Selection Annotation JSON format: {e}") from e
        # Go decodes into a slice of struct pointers: anything but a list of objects fails to unmarshal.
        if not isinstance(parsed, list) or not all(isinstance(n, dict) for n in parsed):
            raise NetworkAnnotationError(
                "parsePodNetworkAnnotation: failed to parse pod Network Attachment Selection Annotation JSON format: "
                "json: cannot unmarshal into Go value of type []*types.NetworkSelectionElement")
        networks = [network_selection_element(n) for n in parsed]
    else:
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            ref, _, interface = item.partition("@")
            namespace, _, name = ref.rpartition("/")
            if not name:
                raise NetworkAnnotationError(f"parsePodNetworkAnnotation: invalid network {item!r}")
            network: dict[str, Any] = {"name": name.strip(), "namespace": namespace.strip()}
            if interface.strip():
                network["interface"] = interface.strip()
            networks.append(network)
    for network in networks:
        if not network.get("namespace"):
            network["namespace"] = pod_namespace
        # multus' pre-3.2 compatibility: the deprecated `interfaceRequest` stands in for an empty `interface`
        # (both are then written back).
        if network.get("interfaceRequest") and not network.get("interface"):
            network["interface"] = network["interfaceRequest"]
    # Re-key so a defaulted namespace sits where the struct puts it (right after name).
    return [network_selection_element(n) for n in networks]


@dataclass(frozen=True)
class PoolConfig:
    pool_name: str
    pool_type: str
    assign_gateway: bool

    def cni_args(self) -> dict[str, Any]:
        return {
            CNI_ARG_ALLOCATE_DEFAULT_GATEWAY: self.assign_gateway,
            CNI_ARG_POOL_NAMES: [self.pool_name],
            CNI_ARG_POOL_TYPE: self.pool_type,
        }


def pool_for(ctx: Context, ipam: IPAM) -> PoolConfig:
    """The first IPPool matching the labels, else the first CIDRPool (any namespace)."""
    assign = bool(ipam.default_gateway)
    ippools = sorted(ctx.client.list(IPPool, label_selector=ipam.match_labels), key=lambda p: (p.namespace or "", p.name))
    if ippools:
        return PoolConfig(ippools[0].name, POOL_TYPE_IPPOOL, assign)
    cidrpools = sorted(ctx.client.list(CIDRPool, label_selector=ipam.match_labels), key=lambda p: (p.namespace or "", p.name))
    if cidrpools:
        return PoolConfig(cidrpools[0].name, POOL_TYPE_CIDRPOOL, assign)
    raise LookupError(f"no IPPool or CidrPool found for Labels {go_map(ipam.match_labels)}")


class PodIpamReconciler:
    def reconcile(self, ctx: Context, req: Request) -> Result:
        pod = ctx.client.try_get(Pod, req.name, req.namespace)
        if pod is None or pod.metadata.deletion_timestamp is not None or not pod.spec.node_name:
            return DONE
        # The API server writes Pending on create; a store that leaves it unset means the same.
        if pod.status.phase not in (None, "Pending"):
            return DONE
        annotation = pod.metadata.annotations.get(ANNOTATION_MULTUS_NETWORKS, "")
        networks = parse_networks(annotation, pod.namespace or "default")
        if not networks:
            return DONE
        wanted: dict[str, ServiceIfc | None] = {}
        for network in networks:
            interface = network.get("interface")
            if not interface:
                ctx.log.info("Pod %s with secondary network, but without interface requested", req)
                return Result(requeue_after=RETRY)
            wanted[str(interface)] = None
        try:
            self._map_chain_ports(ctx, pod, wanted)
        except LookupError as e:
            ctx.log.error("Pod %s: Fail to map pod network interfaces to Chain Port, requeue.: %s", req, e)
            return Result(requeue_after=RETRY)
        result = DONE
        configs: dict[str, PoolConfig] = {}
        try:
            for interface, port in wanted.items():
                if port is None:
                    result = Result(requeue_after=RETRY)
                    continue
                if port.ipam is None:
                    continue
                configs[interface] = pool_for(ctx, port.ipam)
        except LookupError as e:
            ctx.log.info("Pod %s: %s", req, e)
            return Result(requeue_after=RETRY)
        self._annotate(ctx, pod, networks, configs)
        return result

    def _map_chain_ports(self, ctx: Context, pod: Pod, wanted: dict[str, ServiceIfc | None]) -> None:
        chains = ctx.client.list(ServiceChain, pod.namespace)
        if not chains:
            raise LookupError(f"no serviceChains in namespace {pod.namespace} found")
        node = pod.spec.node_name
        for chain in chains:
            if chain.spec.node != node:
                continue
            for switch in chain.spec.switches:
                for port in switch.ports:
                    si = self._service_interface(ctx, pod, port.service_interface)
                    service = si.spec.service
                    if si.spec.interface_type != INTERFACE_TYPE_SERVICE or service is None:
                        continue
                    if pod.metadata.labels.get(LABEL_DPF_SERVICE_ID) != service.service_id:
                        continue
                    if service.interface_name in wanted:
                        wanted[service.interface_name] = port.service_interface

    @staticmethod
    def _service_interface(ctx: Context, pod: Pod, ifc: ServiceIfc) -> ServiceInterface:
        node = pod.spec.node_name
        found = [
            si
            for si in ctx.client.list(ServiceInterface, pod.namespace, label_selector=ifc.match_labels)
            if si.spec.node == node
        ]
        labels = go_map(ifc.match_labels)
        if not found:
            raise LookupError(f"failed to get serviceInterface for chain. no serviceInterface in namespace"
                              f"({pod.namespace}) matching labels({labels}) on node({node}) found")
        if len(found) > 1:
            raise LookupError(f"failed to get serviceInterface for chain. expected only one serviceInterface in "
                              f"namespace({pod.namespace}) to match labels({labels}) on node({node}). found {len(found)}")
        return found[0]

    @staticmethod
    def _annotate(ctx: Context, pod: Pod, networks: list[dict[str, Any]], configs: dict[str, PoolConfig]) -> None:
        if not configs:
            return
        for network in networks:
            config = configs.get(str(network.get("interface", "")))
            if config is not None:
                network["cni-args"] = config.cni_args()
        value = go_json_marshal([network_selection_element(n) for n in networks])
        if pod.metadata.annotations.get(ANNOTATION_MULTUS_NETWORKS) == value:
            return
        patch = {"metadata": {"annotations": {ANNOTATION_MULTUS_NETWORKS: value}}}
        ctx.client.patch(Pod, pod.name, pod.namespace, patch)


def controller() -> Controller:
    """DPF watches Pods only; unresolved pods retry every 30 s."""
    return Controller(NAME, PodIpamReconciler(), Pod)
