"""ServiceInterfaceSet controller (DPU cluster, DPF's `servicechainset-controller`): a ServiceInterface
`<set>-<node>` per selected Node with `spec.node=<node>`, labels set-name/-namespace/nodeName (+`service-id`
for the service type) + template labels, annotations copied from the SET (not the template, as in DPF), a
controller ownerReference, and vlan/vf `parentInterfaceRef` suffixed `-<node>` so it names the parent's child
on the same node. Children of Nodes no longer selected are deleted. Readiness is real: see mirror.py.
"""

from __future__ import annotations

from typing import Any

from dpf_core.api.svc import (
    CONDITION_SERVICE_INTERFACES_READY,
    CONDITION_SERVICE_INTERFACES_RECONCILED,
    FINALIZER_SERVICE_INTERFACE_SET,
    LABEL_SERVICE_INTERFACE_NODE_NAME,
    LABEL_SERVICE_INTERFACE_SERVICE_ID,
    LABEL_SERVICE_INTERFACE_SET_NAME,
    LABEL_SERVICE_INTERFACE_SET_NAMESPACE,
    SERVICE_INTERFACE_SET_CONDITIONS,
    ServiceInterface,
    ServiceInterfaceSet,
)
from dpf_core.runtime import Controller

from .mirror import SetReconciler, set_controller

NAME = "serviceinterfaceset"


def desired_service_interface(sis: ServiceInterfaceSet, node_name: str) -> ServiceInterface:
    template = sis.spec.template
    tspec = template.spec
    labels = {
        LABEL_SERVICE_INTERFACE_SET_NAME: sis.name,
        LABEL_SERVICE_INTERFACE_SET_NAMESPACE: sis.namespace or "",
        LABEL_SERVICE_INTERFACE_NODE_NAME: node_name,
    }
    if tspec.service is not None:
        labels[LABEL_SERVICE_INTERFACE_SERVICE_ID] = tspec.service.service_id
    if template.metadata is not None:
        labels.update(template.metadata.labels)
    spec: dict[str, Any] = tspec.wire()
    spec["node"] = node_name
    for sub in ("vlan", "vf"):
        if sub in spec:
            spec[sub]["parentInterfaceRef"] = f"{spec[sub]['parentInterfaceRef']}-{node_name}"
    child = ServiceInterfaceSetReconciler.child_object(sis, node_name, labels, spec)
    assert isinstance(child, ServiceInterface)
    return child


class ServiceInterfaceSetReconciler(SetReconciler[ServiceInterfaceSet]):
    KIND = ServiceInterfaceSet
    CHILD_KIND = ServiceInterface
    CONDITIONS = SERVICE_INTERFACE_SET_CONDITIONS
    RECONCILED = CONDITION_SERVICE_INTERFACES_RECONCILED
    READY = CONDITION_SERVICE_INTERFACES_READY
    FINALIZER = FINALIZER_SERVICE_INTERFACE_SET
    NAME_LABEL = LABEL_SERVICE_INTERFACE_SET_NAME
    NAMESPACE_LABEL = LABEL_SERVICE_INTERFACE_SET_NAMESPACE

    def desired_child(self, parent: ServiceInterfaceSet, node_name: str) -> ServiceInterface:
        return desired_service_interface(parent, node_name)

    def node_selector(self, parent: ServiceInterfaceSet) -> Any:
        return parent.spec.node_selector


def controller() -> Controller:
    return set_controller(NAME, ServiceInterfaceSetReconciler())
