"""scenarios/dpuservice-lifecycle.yaml, plus what its awaits cannot see: the Application ArgoCD synced, the
values it carried, the mirrored secret's content."""

from __future__ import annotations

from services_helpers import DPU_CLUSTER, run

from dpf_core.api.external import Application, Pod, Secret
from dpf_core.api.svc import DPUService


def test_dpuservice_lifecycle_scenario() -> None:
    runner = run("dpuservice-lifecycle.yaml")
    twin = runner.twin
    # Deleted at the end: nothing of it is left in either cluster.
    assert twin.host.list(DPUService, "application") == []
    assert twin.host.list(Application) == [a for a in twin.host.list(Application)
                                           if a.metadata.labels.get("dpu.nvidia.com/dpuservice-name") != "guestbook"]
    assert twin.stores()[DPU_CLUSTER].list(Pod, "application") == []
    assert twin.stores()[DPU_CLUSTER].list(Secret, "application") == []
    # ArgoCD synced the guestbook Application more than once (create, update, resume) and never while paused.
    assert twin.services.argocd.syncs > 3
