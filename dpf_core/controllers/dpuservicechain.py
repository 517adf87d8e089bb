"""DPUServiceChain controller (host, DPF's dpuservicechain manager): a ServiceChainSet of the same
name and namespace in every DPU cluster, labels/annotations from `template.metadata`, spec = `template.spec`.

`ServiceChainSetReady` follows the sets' `Ready` condition, which the set controller makes real (see
mirror.py for the flow and the differences from DPF).
"""

from __future__ import annotations

from dpf_core.api.svc import (
    CONDITION_SERVICE_CHAIN_SET_READY,
    CONDITION_SERVICE_CHAIN_SET_RECONCILED,
    DPUSERVICE_CHAIN_CONDITIONS,
    FINALIZER_DPUSERVICE_CHAIN,
    DPUServiceChain,
    ServiceChainSet,
)
from dpf_core.runtime import Controller

from .mirror import SetMirrorReconciler, mirror_controller

NAME = "dpuservicechain"


class DPUServiceChainReconciler(SetMirrorReconciler[DPUServiceChain]):
    KIND = DPUServiceChain
    CHILD = ServiceChainSet
    CONDITIONS = DPUSERVICE_CHAIN_CONDITIONS
    RECONCILED = CONDITION_SERVICE_CHAIN_SET_RECONCILED
    READY = CONDITION_SERVICE_CHAIN_SET_READY
    FINALIZER = FINALIZER_DPUSERVICE_CHAIN



def controller() -> Controller:
    return mirror_controller(NAME, DPUServiceChainReconciler())
