"""DPUServiceInterface controller (host): a ServiceInterfaceSet of the same name and namespace in every
DPU cluster, labels/annotations from `template.metadata`, spec = `template.spec`.

`ServiceInterfaceSetReady` follows the sets' `Ready` condition, which the set controller makes real (see
mirror.py for the flow and the differences from DPF).
"""

from __future__ import annotations

from dpf_core.api.svc import (
    CONDITION_SERVICE_INTERFACE_SET_READY,
    CONDITION_SERVICE_INTERFACE_SET_RECONCILED,
    DPUSERVICE_INTERFACE_CONDITIONS,
    FINALIZER_DPUSERVICE_INTERFACE,
    DPUServiceInterface,
    ServiceInterfaceSet,
)
from dpf_core.runtime import Controller

from .mirror import SetMirrorReconciler, mirror_controller

NAME = "dpuserviceinterface"


class DPUServiceInterfaceReconciler(SetMirrorReconciler[DPUServiceInterface]):
    KIND = DPUServiceInterface
    CHILD = ServiceInterfaceSet
    CONDITIONS = DPUSERVICE_INTERFACE_CONDITIONS
    RECONCILED = CONDITION_SERVICE_INTERFACE_SET_RECONCILED
    READY = CONDITION_SERVICE_INTERFACE_SET_READY
    FINALIZER = FINALIZER_DPUSERVICE_INTERFACE



def controller() -> Controller:
    return mirror_controller(NAME, DPUServiceInterfaceReconciler())
