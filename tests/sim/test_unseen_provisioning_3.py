"""Provisioning fidelity, round 3: lifecycle edge cases, each checked against DPF's controllers and webhooks.

- A DPU deleted while OS Installing waits for its install task (DPF's installing state has no deletion check), one
  deleted while Rebooting goes to Deleting at once; both leave nothing behind and undo the host's drain.
- A BFB a DPUSet names cannot be deleted (vbfb.kb.io); deleted in the order the webhook allows and re-created, it
  downloads again and the DPUs waiting in Pending (GetBFBFailed) go on from it.
- A host Node losing the DPUSet's nodeSelector label mid-install and getting it back gets a fresh DPU only once the
  old one (still finishing its install) is gone.
- A failed DMS pod is terminal Error with DPF's reason; deleting the DPU is what recovers it.
- A DPUCluster deleted under Ready DPUs: Kamaji's objects go, the DPUs stay Ready, deletion still cleans up.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from dpf_core.api.external import Node, NodeMaintenance, Pod, Secret, TenantControlPlane
from dpf_core.api.provisioning import BFB, DPU, DPUCluster, DPUPhase
from dpf_core.store.protocol import WatchEvent
from dpf_sim.runner import Runner
from dpf_sim.scenario import load_scenario

HERE = Path(__file__).resolve().parent / "scenarios_unseen_3"
NS = "dpf-operator-system"
CLUSTER = "dpu-cplane-tenant1/dpu-cplane-tenant1"
# The one scenario whose deliverable is a refused step: everything else in it must hold.
REFUSED = {"bfb-delete-refused": "step 4 (delete-bfb)"}


class Phases:
    """Per DPU name: its (uid, phase, deleting) history and the uids it was created with, in event order."""

    def __init__(self, runner: Runner) -> None:
        self.history: dict[str, list[tuple[float, str, str, bool]]] = defaultdict(list)
        self.created: dict[str, list[str]] = defaultdict(list)
        self.gone: dict[str, list[float]] = defaultdict(list)
        self._runner = runner
        runner.twin.on_event(self._record)

    def _record(self, store: str, ev: WatchEvent) -> None:
        o = ev.object
        if store != "host" or not isinstance(o, DPU):
            return
        now = self._runner.twin.now
        if ev.type == "ADDED":
            self.created[o.name].append(o.metadata.uid or "")
        if ev.type == "DELETED":
            self.gone[o.name].append(now)
            return
        entry = (now, o.metadata.uid or "", str(o.status.phase), o.metadata.deletion_timestamp is not None)
        seen = self.history[o.name]
        if not seen or seen[-1][1:] != entry[1:]:
            seen.append(entry)

    def phases(self, name: str, uid: str) -> list[tuple[str, bool]]:
        return [(phase, deleting) for _, u, phase, deleting in self.history[name] if u == uid]


def started(name: str) -> tuple[Runner, Phases]:
    runner = Runner(load_scenario(HERE / f"{name}.yaml"), progress=False)
    return runner, Phases(runner)


def finished(name: str) -> tuple[Runner, Phases]:
    runner, phases = started(name)
    result = runner.run()
    assert result.passed, [o.as_dict() for o in result.failures]
    return runner, phases


def conditions(dpu: DPU) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in dpu.status.conditions}


@pytest.mark.parametrize("path", sorted(HERE.glob("*.yaml")), ids=lambda p: p.stem)
def test_scenario_holds(path: Path) -> None:
    result = Runner(load_scenario(path), progress=False).run()
    failed = [o.name for o in result.failures]
    assert failed == ([REFUSED[path.stem]] if path.stem in REFUSED else []), [o.as_dict() for o in result.failures]


# --- 1. deleted mid-install / mid-reboot ---------------------------------------------------------------


def test_a_dpu_deleted_mid_install_finishes_the_install_then_leaves_nothing() -> None:
    runner, phases = finished("delete-mid-phases")
    host = runner.twin.host
    installing, rebooting, kept = "worker-0-0-0000-04-00", "worker-0-1-0000-04-00", "worker-0-2-0000-04-00"
    [uid0] = phases.created[installing]
    seen0 = phases.phases(installing, uid0)
    # DPF's OS Installing handler ignores the deletion until the install task is done: Rebooting comes first.
    assert seen0[-3:] == [("OS Installing", True), ("Rebooting", True), ("Deleting", True)]
    [uid1] = phases.created[rebooting]
    assert phases.phases(rebooting, uid1)[-2:] == [("Rebooting", True), ("Deleting", True)]
    assert [d.name for d in host.list(DPU)] == [kept]
    for name in (installing, rebooting):
        assert not [p.name for p in host.list(Pod, NS) if p.name.startswith(name)]
        assert host.try_get(Secret, f"{name}-server-secret", NS) is None
        assert not runner.twin.bfb_dir.exists(f"{name}.cfg")
    cluster = runner.twin.dpu_clusters[CLUSTER]
    # The DPU that finished its install had joined the DPU cluster; Deleting removed its Node.
    assert sorted(n.name for n in cluster.list(Node)) == [kept]
    # The drain of both deleted DPUs is undone (the kept DPU's goes on its first Ready pass).
    assert [m.name for m in host.list(NodeMaintenance)] == ["worker-0-2"]


# --- 2. BFB ------------------------------------------------------------------------------------------------


def test_deleting_a_bfb_a_dpuset_names_is_refused_with_dpfs_message() -> None:
    runner, phases = started("bfb-delete-refused")
    result = runner.run()
    [refused] = result.failures
    assert refused.detail.endswith(
        'timeline[4].delete: admission webhook "vbfb.kb.io" denied the request: '
        "being referred to by DPUSet(s) [dpuset], you must delete the DPUSet(s) first"
    )
    bfb = runner.twin.host.get(BFB, "bf-bundle", NS)
    assert bfb.metadata.deletion_timestamp is None and bfb.metadata.generation == 1
    # Nothing was re-installed: each DPU object was created once and installed once.
    assert all(len(uids) == 1 for uids in phases.created.values()) and len(phases.created) == 3


def test_dpus_waiting_for_a_deleted_bfb_report_get_bfb_failed() -> None:
    runner, _ = started("bfb-recreated")
    runner.until = 29 * 60
    result = runner.run()
    # Stopped before the BFB comes back: only the awaits that need it are left undecided.
    assert sorted(o.name for o in result.failures) == ["downloaded", "ready"]
    host = runner.twin.host
    assert host.try_get(BFB, "bf-bundle", NS) is None
    assert not runner.twin.bfb_dir.exists(
        "bf-bundle-2.9.1-19_24.11_ubuntu-22.04_prod.bfb"
    ), "BFB Deleting removes the file from /bfb"
    for dpu in host.list(DPU):
        assert dpu.status.phase == DPUPhase.PENDING
        status, reason, message = conditions(dpu)["BFBReady"]
        assert (status, reason) == ("False", "GetBFBFailed") and "not found" in message


def test_a_recreated_bfb_is_downloaded_again_and_used() -> None:
    runner, phases = finished("bfb-recreated")
    host = runner.twin.host
    assert runner.twin.bfb_dir.exists(host.get(BFB, "bf-bundle", NS).spec.file_name or "")
    for name, uids in phases.created.items():
        assert len(uids) == 2, name
        assert phases.phases(name, uids[1])[-1] == ("Ready", False)


# --- 3. node label flap -------------------------------------------------------------------------------------


def test_a_node_relabelled_mid_install_gets_a_fresh_dpu_only_after_the_old_one_is_gone() -> None:
    runner, phases = finished("label-flap")
    name = "worker-0-0-0000-04-00"
    old, new = phases.created[name]
    assert old != new
    assert phases.phases(name, old)[-3:] == [("OS Installing", True), ("Rebooting", True), ("Deleting", True)]
    [gone] = phases.gone[name]
    first_new = next(t for t, u, _, _ in phases.history[name] if u == new)
    # Relabelled at 8m, long before the old install finished: the DPUSet waited for the old DPU to go.
    assert first_new >= gone > 8 * 60
    assert runner.twin.host.get(DPU, name, NS).metadata.uid == new


# --- 4. DMS pod failure -------------------------------------------------------------------------------------


def test_a_failed_dms_pod_is_terminal_error_until_the_dpu_is_deleted() -> None:
    runner, phases = started("dms-pod-failed")
    runner.until = 9 * 60
    runner.run()
    host = runner.twin.host
    name = "worker-0-0-0000-04-00"
    dpu = host.get(DPU, name, NS)
    assert dpu.status.phase == DPUPhase.ERROR
    assert conditions(dpu)["DMSRunning"] == ("False", "DMSPodFailed", "DMS Pod Failed")
    # Error removes the node effect (the drain) and nothing else: the failed pod stays for the user to see.
    assert host.try_get(NodeMaintenance, "worker-0-0", NS) is None
    assert host.get(Pod, f"{name}-dms", NS).status.phase == "Failed"
    # Six minutes in Error: no retry, no new pod, no new DPU.
    assert phases.created[name] == [dpu.metadata.uid]
    assert phases.phases(name, dpu.metadata.uid or "")[-1] == ("Error", False)


def test_deleting_the_failed_dpu_lets_the_dpuset_provision_a_fresh_one() -> None:
    runner, phases = finished("dms-pod-failed")
    name = "worker-0-0-0000-04-00"
    failed, fresh = phases.created[name]
    assert phases.phases(name, failed)[-2:] == [("Error", True), ("Deleting", True)]
    dpu = runner.twin.host.get(DPU, name, NS)
    assert dpu.metadata.uid == fresh and dpu.status.phase == DPUPhase.READY
    assert conditions(dpu)["DMSRunning"][0] == "True"


# --- 5. DPUCluster deleted ----------------------------------------------------------------------------------


def test_a_deleted_dpucluster_takes_kamajis_objects_and_leaves_its_dpus_ready() -> None:
    runner, _ = started("cluster-deleted")
    runner.until = 38 * 60
    runner.run()
    host = runner.twin.host
    assert host.list(DPUCluster) == [] and host.list(TenantControlPlane) == []
    # Kamaji's admin kubeconfig is owned by its TenantControlPlane and goes with it.
    assert host.try_get(Secret, "dpu-cplane-tenant1-admin-kubeconfig", "dpu-cplane-tenant1") is None
    ready = {d.name: conditions(d)["Ready"] for d in host.list(DPU) if d.status.phase == DPUPhase.READY}
    # DPF's Ready pass returns the DPUCluster Get error without touching the conditions.
    assert ready == {
        "worker-0-0-0000-04-00": ("True", "DPUNodeReady", ""),
        "worker-0-1-0000-04-00": ("True", "DPUNodeReady", ""),
    }
    third = host.get(DPU, "worker-0-2-0000-04-00", NS)
    assert third.status.phase == DPUPhase.INITIALIZING and not third.spec.cluster.name
    assert conditions(third)["Initialized"][:2] == ("False", "DPUClusterNotReady")


def test_dpus_of_a_deleted_dpucluster_are_still_cleaned_up() -> None:
    runner, phases = finished("cluster-deleted")
    host = runner.twin.host
    assert host.list(DPU) == [] and host.list(NodeMaintenance) == []
    assert not [p.name for p in host.list(Pod, NS) if p.name.startswith("worker-")]
    for name in ("worker-0-0-0000-04-00", "worker-0-1-0000-04-00"):
        assert phases.phases(name, phases.created[name][0])[-2:] == [("Ready", True), ("Deleting", True)]
