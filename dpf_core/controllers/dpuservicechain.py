"""DPUServiceChain controller (host, DPF's dpuservicechain manager): a ServiceChainSet of the same
name and namespace in every DPU cluster, labels/annotations from `template.metadata`, spec = `template.spec`.

`ServiceChainSetReady` follows the sets' `Ready` condition, which the set controller makes real (see
mirror.py for the flow and the differences from DPF).
"""

from __future__ import annotations

from dpf_core.api.meta import KubeObject
from dpf_core.api.svc import (
    CONDITION_SERVICE_CHAIN_SET_READY,
    CONDITION_SERVICE_CHAIN_SET_RECONCILED,
    DPUSERVICE_CHAIN_CONDITIONS,
    FINALIZER_DPUSERVICE_CHAIN,
    DPUServiceChain,
    ServiceChainSet,
)
from dpf_core.runtime import Controller
from dpf_core.store.protocol import Client

from .mirror import MirrorReconciler, apply, delete_if_exists, is_ready, mirror_controller

NAME = "dpuservicechain"


def desired_set(dsc: DPUServiceChain) -> ServiceChainSet:
    template = dsc.spec.template
    meta = template.metadata
    return ServiceChainSet.model_validate(
        {
            "apiVersion": ServiceChainSet.KIND.api_version,
            "kind": ServiceChainSet.KIND.kind,
            "metadata": {
                "name": dsc.name,
                "namespace": dsc.namespace,
                "labels": dict(meta.labels) if meta is not None else {},
                "annotations": dict(meta.annotations) if meta is not None else {},
            },
            "spec": template.spec.wire(),
        }
    )


class DPUServiceChainReconciler(MirrorReconciler[DPUServiceChain]):
    KIND = DPUServiceChain
    CONDITIONS = DPUSERVICE_CHAIN_CONDITIONS
    RECONCILED = CONDITION_SERVICE_CHAIN_SET_RECONCILED
    READY = CONDITION_SERVICE_CHAIN_SET_READY
    FINALIZER = FINALIZER_DPUSERVICE_CHAIN

    def apply_children(self, client: Client, parent: DPUServiceChain) -> None:
        apply(client, desired_set(parent))

    def children(self, client: Client, parent: DPUServiceChain) -> list[KubeObject]:
        found = client.try_get(ServiceChainSet, parent.name, parent.namespace)
        return [found] if found is not None else []

    def delete_children(self, client: Client, parent: DPUServiceChain) -> None:
        delete_if_exists(client, ServiceChainSet, parent.name, parent.namespace)

    def child_ready(self, child: KubeObject) -> bool:
        return isinstance(child, ServiceChainSet) and is_ready(child.status.conditions)


def controller() -> Controller:
    return mirror_controller(NAME, DPUServiceChainReconciler())
