"""DPUServiceInterface controller (host, DPF's dpuservicechain manager): a ServiceInterfaceSet of the same
name and namespace in every DPU cluster, labels/annotations from `template.metadata`, spec = `template.spec`.

`ServiceInterfaceSetReady` follows the sets' `Ready` condition, which the set controller makes real (see
mirror.py for the flow and the differences from DPF).
"""

from __future__ import annotations

from dpf_core.api.meta import KubeObject
from dpf_core.api.svc import (
    CONDITION_SERVICE_INTERFACE_SET_READY,
    CONDITION_SERVICE_INTERFACE_SET_RECONCILED,
    DPUSERVICE_INTERFACE_CONDITIONS,
    FINALIZER_DPUSERVICE_INTERFACE,
    DPUServiceInterface,
    ServiceInterfaceSet,
)
from dpf_core.runtime import Controller
from dpf_core.store.protocol import Client

from .mirror import MirrorReconciler, apply, delete_if_exists, is_ready, mirror_controller

NAME = "dpuserviceinterface"


def desired_set(dsi: DPUServiceInterface) -> ServiceInterfaceSet:
    template = dsi.spec.template
    meta = template.metadata
    return ServiceInterfaceSet.model_validate(
        {
            "apiVersion": ServiceInterfaceSet.KIND.api_version,
            "kind": ServiceInterfaceSet.KIND.kind,
            "metadata": {
                "name": dsi.name,
                "namespace": dsi.namespace,
                "labels": dict(meta.labels) if meta is not None else {},
                "annotations": dict(meta.annotations) if meta is not None else {},
            },
            "spec": template.spec.wire(),
        }
    )


class DPUServiceInterfaceReconciler(MirrorReconciler[DPUServiceInterface]):
    KIND = DPUServiceInterface
    CONDITIONS = DPUSERVICE_INTERFACE_CONDITIONS
    RECONCILED = CONDITION_SERVICE_INTERFACE_SET_RECONCILED
    READY = CONDITION_SERVICE_INTERFACE_SET_READY
    FINALIZER = FINALIZER_DPUSERVICE_INTERFACE

    def apply_children(self, client: Client, parent: DPUServiceInterface) -> None:
        apply(client, desired_set(parent))

    def children(self, client: Client, parent: DPUServiceInterface) -> list[KubeObject]:
        found = client.try_get(ServiceInterfaceSet, parent.name, parent.namespace)
        return [found] if found is not None else []

    def delete_children(self, client: Client, parent: DPUServiceInterface) -> None:
        delete_if_exists(client, ServiceInterfaceSet, parent.name, parent.namespace)

    def child_ready(self, child: KubeObject) -> bool:
        return isinstance(child, ServiceInterfaceSet) and is_ready(child.status.conditions)


def controller() -> Controller:
    return mirror_controller(NAME, DPUServiceInterfaceReconciler())
