"""The static cluster manager (binary `static-cluster-manager`): the user brings the DPU cluster.

A `static` DPUCluster is Created as soon as `spec.kubeconfig` names its admin kubeconfig Secret; nothing is
made, so nothing is cleaned up.
"""

from __future__ import annotations

from dpf_core.api.provisioning import (
    ClusterType,
    DPUCluster,
    DPUClusterConditionReason,
    DPUClusterConditionType,
)
from dpf_core.runtime import Context, Controller

from .dpucluster import ClusterCondition, ClusterManagerReconciler
from .options import ProvisioningOptions

NAME = "static-cluster-manager"


class StaticClusterHandler:
    def type(self) -> str:
        return ClusterType.STATIC.value

    def reconcile_cluster(self, ctx: Context, dc: DPUCluster) -> tuple[str, list[ClusterCondition]]:
        if dc.spec.kubeconfig:
            created = ClusterCondition(DPUClusterConditionType.CREATED, DPUClusterConditionReason.CREATED)
        else:
            created = ClusterCondition(
                DPUClusterConditionType.CREATED,
                DPUClusterConditionReason.EMPTY_KUBECONFIG,
                error="spec.kubeconfig is empty",
            )
        return dc.spec.kubeconfig or "", [created]

    def clean_up_cluster(self, ctx: Context, dc: DPUCluster) -> bool:
        return True


def controller(options: ProvisioningOptions | None = None) -> Controller:
    return Controller(NAME, ClusterManagerReconciler(StaticClusterHandler()), DPUCluster)
