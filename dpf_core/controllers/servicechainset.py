"""ServiceChainSet controller (DPU cluster, DPF's `servicechainset-controller`): a ServiceChain
`<set>-<node>` per selected Node with `spec.node=<node>` and the template's switches, labels
set-name/-namespace/nodeName + template labels, annotations copied from the SET, a controller
ownerReference. Children of Nodes no longer selected are deleted. Readiness is real: see mirror.py.
"""

from __future__ import annotations

from typing import Any

from dpf_core.api.svc import (
    CONDITION_SERVICE_CHAINS_READY,
    CONDITION_SERVICE_CHAINS_RECONCILED,
    FINALIZER_SERVICE_CHAIN_SET,
    LABEL_SERVICE_CHAIN_NODE_NAME,
    LABEL_SERVICE_CHAIN_SET_NAME,
    LABEL_SERVICE_CHAIN_SET_NAMESPACE,
    SERVICE_CHAIN_SET_CONDITIONS,
    ServiceChain,
    ServiceChainSet,
)
from dpf_core.runtime import Controller

from .mirror import SetReconciler, set_controller

NAME = "servicechainset"


def desired_service_chain(scs: ServiceChainSet, node_name: str) -> ServiceChain:
    template = scs.spec.template
    labels = {
        LABEL_SERVICE_CHAIN_SET_NAME: scs.name,
        LABEL_SERVICE_CHAIN_SET_NAMESPACE: scs.namespace or "",
        LABEL_SERVICE_CHAIN_NODE_NAME: node_name,
    }
    if template.metadata is not None:
        labels.update(template.metadata.labels)
    spec: dict[str, Any] = template.spec.wire()
    spec["node"] = node_name
    child = ServiceChainSetReconciler.child_object(scs, node_name, labels, spec)
    assert isinstance(child, ServiceChain)
    return child


class ServiceChainSetReconciler(SetReconciler[ServiceChainSet]):
    KIND = ServiceChainSet
    CHILD_KIND = ServiceChain
    CONDITIONS = SERVICE_CHAIN_SET_CONDITIONS
    RECONCILED = CONDITION_SERVICE_CHAINS_RECONCILED
    READY = CONDITION_SERVICE_CHAINS_READY
    FINALIZER = FINALIZER_SERVICE_CHAIN_SET
    NAME_LABEL = LABEL_SERVICE_CHAIN_SET_NAME
    NAMESPACE_LABEL = LABEL_SERVICE_CHAIN_SET_NAMESPACE

    def desired_child(self, parent: ServiceChainSet, node_name: str) -> ServiceChain:
        return desired_service_chain(parent, node_name)

    def node_selector(self, parent: ServiceChainSet) -> Any:
        return parent.spec.node_selector


def controller() -> Controller:
    return set_controller(NAME, ServiceChainSetReconciler())
