"""Provisioning acceptance, round 9: scenarios written from docs/scenarios.md alone, with real DPF manifest shapes,
checked against DPF v24.10's provisioning controllers (internal/provisioning/controllers/...).

- Two DPUs per host in one DPUSet (a dpuSelector naming both PCI labels): DPF's getDPUIndexFromSelector creates
  one DPU per index; the always-on `noObjectLost` took the second for a duplicate, and `maxUnavailable` /
  `rolloutBudget` scaled a percent on Nodes while the DPUSet controller scales it on DPUs (docs/differences.md).
- The reboot annotations (util/reboot/util.go GenerateCmd): skip, a power cycle with `reset`, an unknown
  command (the install fails rendering bf.cfg: Error), automatic reboot off.
- dpuSelector entries are alternatives, a non-index label picks nothing, nodeSelector matchExpressions.
- A BFB whose URL answers 404 during a RollingUpdate, and the rollback.
- A percent maxUnavailable rounds up (intstr.GetScaledValueFromIntOrPercent(..., true)).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dpf_core.api.external import Event, Node, Pod, Secret
from dpf_core.api.provisioning import BFB, DPU, DPUSet
from dpf_core.store.protocol import WatchEvent
from dpf_sim.chaos import NoObjectLost
from dpf_sim.expect import MaxUnavailable
from dpf_sim.fleet import FleetSpec, build_fleet
from dpf_sim.runner import Runner
from dpf_sim.scenario import InvariantSpec, load_scenario

HERE = Path(__file__).resolve().parent / "scenarios_unseen_9"
NS = "dpf-operator-system"
CLUSTER = "dpu-cplane-tenant1/dpu-cplane-tenant1"


def _ready(dpu: DPU) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in dpu.status.conditions)


class Unavailable:
    """Per DPUSet, the most DPUs at once that are not Ready or being deleted (or missing from a slot), from
    `after` on: what maxUnavailable bounds."""

    def __init__(self, runner: Runner, expected: int, after: float) -> None:
        self.peak = 0
        self.after = after
        self.expected = expected
        self._runner = runner
        runner.twin.on_event(self._record)

    def _record(self, store: str, ev: WatchEvent) -> None:
        if store != "host" or not isinstance(ev.object, DPU) or self._runner.twin.now < self.after:
            return
        dpus = self._runner.twin.host.list(DPU)
        down = sum(1 for d in dpus if not _ready(d) or d.metadata.deletion_timestamp is not None)
        self.peak = max(self.peak, down + self.expected - len(dpus))


def run(name: str, *hooks: Any) -> Runner:
    runner = Runner(load_scenario(HERE / f"{name}.yaml"), progress=False)
    for hook in hooks:
        hook(runner)
    result = runner.run()
    assert result.passed, [o.as_dict() for o in result.failures]
    return runner


# Scenarios the twin cannot pass yet (stem -> why); standalone-dpu passes since the twin finds a DPU's
# BlueField from its spec.nodeName and dpu-pciAddress label (dpf_sim/lookup.py), not from its name.
TWIN_DEFECT: dict[str, str] = {}


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, marks=pytest.mark.xfail(strict=True, reason=TWIN_DEFECT[p.stem])) if p.stem in TWIN_DEFECT else p
     for p in sorted(HERE.glob("*.yaml"))],
    ids=lambda p: p.stem,
)
def test_scenario_holds(path: Path) -> None:
    result = Runner(load_scenario(path), progress=False).run()
    assert result.passed, [o.as_dict() for o in result.failures]


def test_a_dpu_without_its_pci_label_waits_in_dms_deployment_with_dpfs_reason() -> None:
    runner = Runner(load_scenario(HERE / "standalone-dpu.yaml"), progress=False, until=29 * 60.0)
    runner.run()
    dpu = runner.twin.host.get(DPU, "unlabelled", NS)
    dms = next(c for c in dpu.status.conditions if c.type == "DMSRunning")
    # dms_deploy.go: CreateDMSPod fails on GetPCIAddrFromLabel, the condition says so and the phase stays.
    assert (dpu.status.phase, dms.status, dms.reason, dms.message) == (
        "DMS Deployment", "False", "ErrorOccured", "not found pci address")
    # The server certificate comes first in CreateDMSPod; the pod never does.
    host = runner.twin.host
    assert host.try_get(Secret, "unlabelled-server-secret", NS) is not None
    assert host.try_get(Pod, "unlabelled-dms", NS) is None


# --- two DPUs per host ---------------------------------------------------------------------------------------


def test_two_dpus_per_host_roll_two_at_a_time_under_25_percent() -> None:
    seen: list[Unavailable] = []
    runner = run("two-per-host-rolling", lambda r: seen.append(Unavailable(r, 8, 3660.0)))
    host = runner.twin.host
    dpus = host.list(DPU)
    assert sorted(d.name for d in dpus) == sorted(f"worker-0-{i}-0000-0{p}-00" for i in range(4) for p in (4, 5))
    for d in dpus:
        assert d.spec.bfb == "bf-bundle-2" and _ready(d)
        pci = d.name.rsplit("-", 3)[1:]
        assert d.metadata.labels["provisioning.dpu.nvidia.com/dpu-pciAddress"] == "-".join(pci)
        assert d.metadata.labels["provisioning.dpu.nvidia.com/dpu-pf-name"] == (
            "ens1f0np0" if pci[1] == "04" else "ens2f0np0")
    # 25% of the 8 DPUs the set wants, rounded up: two at a time, never three.
    assert seen[0].peak == 2


def _node(name: str, labels: dict[str, str]) -> Node:
    return Node.model_validate({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}})


def _dpu(node: str, pci: str, *, ready: bool = True, deleting: bool = False) -> DPU:
    meta: dict[str, Any] = {
        "name": f"{node}-{pci}", "namespace": NS, "uid": f"uid-{node}-{pci}",
        "labels": {"provisioning.dpu.nvidia.com/dpuset-name": "ds", "provisioning.dpu.nvidia.com/dpuset-namespace": NS,
                   "provisioning.dpu.nvidia.com/dpu-pciAddress": pci},
    }
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
        meta["finalizers"] = ["provisioning.dpu.nvidia.com/dpu-protection"]
    cond = {"type": "Ready", "status": "True" if ready else "False", "reason": "x", "message": "",
            "lastTransitionTime": "2025-01-01T00:00:00Z"}
    return DPU.model_validate({"apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "DPU", "metadata": meta,
                               "spec": {"nodeName": node, "bfb": "b"}, "status": {"conditions": [cond]}})


TWO_PCI = {"feature.node.kubernetes.io/dpu-0-pci-address": "0000-04-00",
           "feature.node.kubernetes.io/dpu-1-pci-address": "0000-05-00"}


def test_max_unavailable_invariant_scales_a_percent_on_the_dpus_the_set_wants() -> None:
    inv = MaxUnavailable(InvariantSpec(name="b", type="maxUnavailable"))

    def feed(obj: Any) -> None:
        inv.on_event("host", WatchEvent("MODIFIED", obj))

    for i in range(4):
        feed(_node(f"n{i}", dict(TWO_PCI)))
    feed(DPUSet.model_validate({
        "apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "DPUSet",
        "metadata": {"name": "ds", "namespace": NS},
        "spec": {"dpuSelector": dict(TWO_PCI),
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%"}},
                 "dpuTemplate": {"spec": {"bfb": {"name": "b"}}}}}))
    for i in range(4):
        for pci in ("0000-04-00", "0000-05-00"):
            feed(_dpu(f"n{i}", pci))
    feed(_dpu("n0", "0000-04-00", deleting=True))
    feed(_dpu("n0", "0000-05-00", deleting=True))
    assert inv.passed is None  # 2 of 8 DPUs: what "25%" allows the controller
    feed(_dpu("n1", "0000-04-00", ready=False))
    assert inv.passed is False
    assert "allows 2 of 8 DPU(s) on 4 node(s)" in inv.outcome().detail


def test_no_object_lost_allows_one_dpu_per_pci_address_of_a_node() -> None:
    class Host:
        def all_objects(self) -> list[Any]:
            return []

    class Log:
        def recent(self, n: int) -> list[str]:
            return []

    class Twin:
        now = 0.0
        log = Log()

        def stores(self) -> dict[str, Any]:
            return {"host": Host()}

    inv = NoObjectLost(InvariantSpec(name="lost", type="noObjectLost"))
    inv.twin = Twin()  # type: ignore[assignment]
    inv.activate([])
    inv.on_event("host", WatchEvent("ADDED", _dpu("n0", "0000-04-00")))
    inv.on_event("host", WatchEvent("ADDED", _dpu("n0", "0000-05-00")))
    assert inv.passed is None
    # The same DPU twice (two objects for one PCI address of one node) is what the rule is for.
    twin = _dpu("n0", "0000-04-00")
    twin.metadata.name, twin.metadata.uid = "other-name", "uid-other"
    inv.on_event("host", WatchEvent("ADDED", twin))
    assert inv.passed is False
    assert "2 live DPUs on node n0 PCI address 0000-04-00" in inv.outcome().detail


# --- reboot annotations ----------------------------------------------------------------------------------------


def test_reboot_annotations_as_dpf_generates_the_command() -> None:
    runner = run("reboot-annotations")
    host, hosts = runner.twin.host, runner.twin.hosts
    # skip: no reboot at all, and bf.cfg's restart.sh reboots the DPU itself (installing.go generateBFConfig).
    assert (hosts.get("worker-0-0").reboots, hosts.get("worker-0-0").power_cycles) == (0, 0)
    cfg = runner.twin.bfb_dir.get("worker-0-0-0000-04-00.cfg")
    assert cfg is not None and cfg.content is not None and b"update-grub\n      reboot\n" in cfg.content
    # host-power-cycle-required "True" (strconv.ParseBool) + powercycle-command reset: one ipmitool power reset.
    assert (hosts.get("worker-0-1").power_cycles, hosts.get("worker-0-1").warm_reboots) == (1, 0)
    other = runner.twin.bfb_dir.get("worker-0-1-0000-04-00.cfg")
    assert other is not None and other.content is not None and b"update-grub\n      reboot\n" not in other.content
    assert b"update-grub\n" in other.content
    # Neither automaticNodeReboot flag: skip is never consulted, the DPU waits for a manual reboot.
    manual = host.get(DPU, "worker-0-3-0000-04-00", NS)
    rebooted = next(c for c in manual.status.conditions if c.type == "Rebooted")
    assert (manual.status.phase, rebooted.status, rebooted.reason) == ("Rebooting", "False",
                                                                      "WaitingForManualPowerCycleOrReboot")
    assert hosts.get("worker-0-3").reboots == 0
    # The fixed node's DPU (deleted out of Error) came back and went through a warm reboot (reset).
    assert _ready(host.get(DPU, "worker-0-2-0000-04-00", NS))
    assert hosts.get("worker-0-2").warm_reboots == 1


def test_an_unknown_reboot_command_fails_the_install_with_dpfs_message() -> None:
    runner = Runner(load_scenario(HERE / "reboot-annotations.yaml"), progress=False)
    errors: list[tuple[str, str, str]] = []

    def record(store: str, ev: WatchEvent) -> None:
        o = ev.object
        if store == "host" and isinstance(o, DPU) and o.name == "worker-0-2-0000-04-00" and o.status.phase == "Error":
            errors.extend((c.status, c.reason, c.message) for c in o.status.conditions if c.type == "OSInstalled")

    runner.twin.on_event(record)
    assert runner.run().passed
    assert errors and set(errors) == {
        ("False", "InstallationFailed", 'invalid value "warm", supported values: ["cycle" "reset" "skip"]')}


# --- dpuSelector -------------------------------------------------------------------------------------------------


def test_dpu_selector_entries_are_alternatives_and_need_an_index_label() -> None:
    runner = run("dpu-selector-quirks")
    host = runner.twin.host
    by_set: dict[str, list[str]] = {}
    for d in host.list(DPU):
        by_set.setdefault(d.metadata.labels["provisioning.dpu.nvidia.com/dpuset-name"], []).append(d.name)
    assert {k: sorted(v) for k, v in by_set.items()} == {
        "either": ["worker-0-0-0000-05-00", "worker-0-1-0000-05-00"],
        "default": ["worker-0-3-0000-04-00", "worker-0-5-0000-04-00"],
    }
    assert host.get(DPUSet, "enabled-only", NS).status.dpu_statistics == {}
    cluster = runner.twin.dpu_clusters[CLUSTER]
    for name in ("worker-0-0-0000-05-00", "worker-0-1-0000-05-00"):
        labels = cluster.get(Node, name, None).metadata.labels
        assert labels["dpu-role"] == "either"
        assert labels["provisioning.dpu.nvidia.com/host"] == name[: len("worker-0-0")]
        assert labels["provisioning.dpu.nvidia.com/DOCA-BFB-version"] == "bf-bundle-2.9.1-19_24.11_ubuntu-22.04_prod"


# --- a BFB that cannot be downloaded --------------------------------------------------------------------------


def test_a_bfb_answering_404_holds_the_rollout_at_one_dpu_and_the_rollback_replaces_it() -> None:
    typo: set[str] = set()

    def watch(runner: Runner) -> None:
        def record(store: str, ev: WatchEvent) -> None:
            o = ev.object
            if store == "host" and isinstance(o, DPU) and o.spec.bfb == "bf-bundle-typo":
                typo.add(o.metadata.uid or "")

        runner.twin.on_event(record)

    runner = run("bfb-404-rollback", watch)
    host = runner.twin.host
    assert len(typo) == 1  # the budget (1) went to the DPU waiting for the broken BFB; nothing else was touched
    assert [b.name for b in host.list(BFB)] == ["bf-bundle"]
    failed = [e for e in host.list(Event, NS) if e.reason == "FailedDownload"]
    url = "http://bfb-server.dpf.example/bf-bundle-typo.bfb"
    assert [(e.type, e.message) for e in failed] == [
        ("Warning", f"Download BFB: ({NS}/bf-bundle-typo) failed with error :failed to get: {url} status: 404")]
    assert sorted((d.spec.bfb, _ready(d)) for d in host.list(DPU)) == [("bf-bundle", True)] * 4


def test_a_percent_budget_rounds_up() -> None:
    seen: list[Unavailable] = []
    runner = run("percent-rounding", lambda r: seen.append(Unavailable(r, 5, 3060.0)))
    assert seen[0].peak == 2  # ceil(30% of 5) = 2 (rounding down would give 1)
    assert all(d.spec.bfb == "bf-bundle-new" and _ready(d) for d in runner.twin.host.list(DPU))


# --- customLabel, a host Node removed --------------------------------------------------------------------------


def test_custom_label_stays_while_ready_and_goes_with_the_dpu_and_a_removed_node_does_not_block() -> None:
    label = "dpu.nvidia.com/provisioning"
    at_remove: dict[str, str | None] = {}
    gone: list[tuple[str, str]] = []

    def watch(runner: Runner) -> None:
        def record(store: str, ev: WatchEvent) -> None:
            o = ev.object
            if store != "host":
                return
            if isinstance(o, DPUSet) and o.metadata.deletion_timestamp is not None and not at_remove:
                for n in runner.twin.host.list(Node):
                    at_remove[n.name] = n.metadata.labels.get(label)
            if isinstance(o, DPU) and ev.type == "DELETED":
                gone.append((o.name, str(o.status.phase)))

        runner.twin.on_event(record)

    runner = run("node-removed-custom-label", watch)
    host = runner.twin.host
    # Ready DPUs left the label on (state/ready.go removes only taints and drains) ...
    assert at_remove == {"worker-0-1": "in-progress", "worker-0-2": "in-progress"}
    # ... Deleting removed it (state/error.go RemoveNodeEffect deletes customLabel keys).
    assert {n.name: n.metadata.labels.get(label) for n in host.list(Node)} == {"worker-0-1": None, "worker-0-2": None}
    # The DPU of the removed Node went first (its install finished, then Deleting), without waiting on the Node.
    assert gone[0] == ("worker-0-0-0000-04-00", "Deleting")
    assert host.list(DPU) == []
    deleted = [e.message for e in host.list(Event, NS) if e.reason == "SuccessfulDelete"]
    assert f"Delete DPU: ({NS}/worker-0-0-0000-04-00) from node worker-0-0" in deleted


# --- a failed flash during a rollout ----------------------------------------------------------------------------


def test_a_failed_flash_stalls_the_rollout_until_the_error_dpu_is_deleted() -> None:
    deleted: list[tuple[float, str]] = []

    def watch(runner: Runner) -> None:
        def record(store: str, ev: WatchEvent) -> None:
            o, old = ev.object, ev.old
            if store != "host" or not isinstance(o, DPU) or not isinstance(old, DPU) or ev.type != "MODIFIED":
                return
            if old.metadata.deletion_timestamp is None and o.metadata.deletion_timestamp is not None:
                deleted.append((runner.twin.now, o.name))

        runner.twin.on_event(record)

    runner = run("flash-failure-rollout", watch)
    # Only the first DPU was taken before the admin's delete at 2h: the Error DPU held the budget (isUnavailable).
    assert [name for t, name in deleted if t < 7200] == ["worker-0-0-0000-04-00"]
    assert [name for t, name in deleted if t == 7200] == ["worker-0-0-0000-04-00"]
    cluster = runner.twin.dpu_clusters[CLUSTER]
    for dpu in runner.twin.host.list(DPU):
        assert dpu.spec.bfb == "bf-bundle-2" and _ready(dpu)
        labels = cluster.get(Node, dpu.name, None).metadata.labels
        assert labels["provisioning.dpu.nvidia.com/DOCA-BFB-version"] == "bf-bundle-2.9.2-31_25.01_ubuntu-22.04_prod"


# --- FQDN host names ----------------------------------------------------------------------------------------------


def test_fqdn_host_names_give_dotted_dpu_names_within_the_hostname_limit() -> None:
    fleet = build_fleet(FleetSpec(racks=1, hosts_per_rack=1, host_name_pattern="node{index}.rack{rack}.example.com"))
    assert [d.name for h in fleet.hosts.values() for d in h.dpus] == ["node0.rack0.example.com-0000-04-00"]
    long = "n{index}." + "a" * 40 + ".example.com"  # 54 characters: the DPU name would be 65
    with pytest.raises(ValueError, match="at most 63 characters"):
        build_fleet(FleetSpec(racks=1, hosts_per_rack=1, host_name_pattern=long))


# --- a taint key the host already carries ----------------------------------------------------------------------


def test_a_taint_key_already_on_the_node_is_not_added_and_is_removed_by_key_on_ready() -> None:
    history: dict[str, list[list[tuple[str, str | None, str]]]] = {}

    def watch(runner: Runner) -> None:
        def record(store: str, ev: WatchEvent) -> None:
            o = ev.object
            if store == "host" and isinstance(o, Node):
                taints = [(t.key, t.value, str(t.effect)) for t in o.spec.taints]
                seen = history.setdefault(o.name, [])
                if not seen or seen[-1] != taints:
                    seen.append(taints)

        runner.twin.on_event(record)

    run("taint-preexisting", watch)
    # node_effect.go adds the taint only when no taint has its key; ready.go / error.go remove the first taint
    # with the key, whoever put it there.
    assert history["worker-0-0"] == [
        [("dpu", "maintenance", "NoExecute"), ("gpu", "true", "NoSchedule")],
        [("gpu", "true", "NoSchedule")],
    ]
    assert history["worker-0-1"] == [[("dpu", "provisioning", "NoSchedule")], []]
