"""A DPU object not named `<node>-<pci>` provisions like one a DPUSet creates.

DPF finds a DPU's device from its `spec.nodeName` and its `provisioning.dpu.nvidia.com/dpu-pciAddress` label
(dms_deploy.go: the DMS pod's `-target_pci` comes from util.GetPCIAddrFromLabel; hostnetwork's
`device_pci_address` too), never from its name; its own controller tests create a DPU named `obj-dpu`. The
DPU-cluster Node is named after the DPU object: bf.cfg sets the hostname to util.GenerateNodeName(dpu) =
dpu.Name, dpu_cluster_config.go waits for a Node of that name, deleting.go deletes it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from dpf_core.api.external import Node, Pod
from dpf_core.api.provisioning import DPU, DPU_PCI_ADDRESS_LABEL, DPUPhase
from dpf_core.store.memory import MemoryStore
from dpf_core.store.protocol import WatchEvent
from dpf_sim.lookup import DpuNames
from dpf_sim.runner import Runner
from dpf_sim.scenario import load_scenario_text
from dpf_sim.serve import ServedTwin, ServeOptions

REPO = Path(__file__).resolve().parents[2]
NS = "dpf-operator-system"
CLUSTER = "dpu-cplane-tenant1/dpu-cplane-tenant1"
FREE_BF = "worker-0-0-0000-04-00"  # the BlueField the freely named DPUs sit on
PHASES = [DPUPhase.INITIALIZING, DPUPhase.NODE_EFFECT, DPUPhase.PENDING, DPUPhase.DMS_DEPLOYMENT,
          DPUPhase.OS_INSTALLING, DPUPhase.REBOOTING, DPUPhase.HOST_NETWORK_CONFIGURATION,
          DPUPhase.DPU_CLUSTER_CONFIG, DPUPhase.READY]


def _dpu(name: str, node: str, pci: str | None = "0000-04-00") -> dict[str, Any]:
    labels = {DPU_PCI_ADDRESS_LABEL: pci} if pci is not None else {}
    return {"apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "DPU",
            "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {"nodeName": node, "bfb": "bf-bundle", "dpuFlavor": "dpf-provisioning-hbn-ovn",
                     "nodeEffect": {"noEffect": True}}}


# obj-dpu by hand on worker-0-0 next to a DPU named as a DPUSet names it on worker-0-1; obj-dpu is deleted,
# created again under the same name, deleted, and created under yet another name on the same BlueField.
SCENARIO = f"""
name: dpu-named-freely
seed: 7
fleet: {{racks: 1, hostsPerRack: 2}}
timeline:
  - at: 0s
    apply: {{file: scenarios/manifests/base.yaml}}
  - at: 1s
    apply: {{manifests: [{_dpu("obj-dpu", "worker-0-0")}, {_dpu("worker-0-1-0000-04-00", "worker-0-1")}]}}
  - at: 40m
    name: first-delete
    delete: {{kind: DPU, namespace: {NS}, name: obj-dpu}}
  - at: 50m
    name: again
    apply: {{manifests: [{_dpu("obj-dpu", "worker-0-0")}]}}
  - at: 90m
    name: second-delete
    delete: {{kind: DPU, namespace: {NS}, name: obj-dpu}}
  - at: 100m
    name: renamed
    apply: {{manifests: [{_dpu("rack1-bf3", "worker-0-0")}]}}
expect:
  - await: {{name: first, kind: DPU, names: [obj-dpu, worker-0-1-0000-04-00], phase: Ready, within: 40m}}
  - await: {{name: again-ready, kind: DPU, names: [obj-dpu], phase: Ready, after: again, within: 40m}}
  - await: {{name: renamed-ready, kind: DPU, names: [rack1-bf3], phase: Ready, after: renamed, within: 40m}}
  - await: {{name: joined, kind: Node, store: {CLUSTER}, names: [rack1-bf3, worker-0-1-0000-04-00],
            condition: Ready, after: renamed, within: 40m}}
"""


class Watch:
    """Phases per DPU object (a new list per creation) and what the DPU cluster and the BlueField looked like
    at the deletions."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.phases: dict[str, list[list[str]]] = {}
        self.nodes_added: list[str] = []
        self.nodes_deleted: list[str] = []
        runner.twin.on_event(self._on)

    def _on(self, store: str, ev: WatchEvent) -> None:
        o = ev.object
        if store == "host" and isinstance(o, DPU):
            runs = self.phases.setdefault(o.name, [])
            if ev.type == "ADDED":
                runs.append([])
            phase = str(o.status.phase) if o.status.phase else ""
            if ev.type != "DELETED" and phase and (not runs[-1] or runs[-1][-1] != phase):
                runs[-1].append(phase)
        elif store == CLUSTER and isinstance(o, Node):
            if ev.type == "ADDED":
                self.nodes_added.append(o.name)
            elif ev.type == "DELETED":
                self.nodes_deleted.append(o.name)


def _run(until: float | None = None) -> tuple[Runner, Watch]:
    loaded = load_scenario_text(SCENARIO, base_dir=REPO)
    runner = Runner(loaded, progress=False, until=until)
    watch = Watch(runner)
    result = runner.run()
    # Cut short, the later expectations never start; everything that ran must hold.
    failed = [o.as_dict() for o in result.failures if until is None or "never started" not in str(o.as_dict())]
    assert not failed, failed
    return runner, watch


def test_a_freely_named_dpu_goes_through_every_phase_joins_under_its_name_and_is_deleted_cleanly() -> None:
    runner, watch = _run()
    twin = runner.twin
    # Every phase, in DPF's order, for each creation, as the DPU named `<node>-<pci>` next to it.
    assert watch.phases["worker-0-1-0000-04-00"] == [PHASES]
    assert watch.phases["obj-dpu"][0][: len(PHASES)] == PHASES
    assert watch.phases["obj-dpu"][1][: len(PHASES)] == PHASES
    assert watch.phases["rack1-bf3"] == [PHASES]
    # The Node joins under the DPU object's name (never the BlueField's), and goes with each deletion.
    assert sorted(watch.nodes_added) == ["obj-dpu", "obj-dpu", "rack1-bf3", "worker-0-1-0000-04-00"]
    assert FREE_BF not in watch.nodes_added
    assert watch.nodes_deleted == ["obj-dpu", "obj-dpu"]
    dpu_cluster = twin.dpu_clusters[CLUSTER]
    assert sorted(n.name for n in dpu_cluster.list(Node)) == ["rack1-bf3", "worker-0-1-0000-04-00"]
    # One BlueField, flashed once per creation, its DMS now the rack1-bf3 pod's.
    bf = twin.bluefields.get(FREE_BF)
    assert bf.installs == 3 and bf.max_flashing == 1
    assert bf.running_version.endswith(";rack1-bf3.cfg")
    pod = twin.host.get(Pod, "rack1-bf3-dms", NS)
    assert bf.dms_running and bf.dms_address == f"{pod.status.pod_ip}:9339"
    assert twin.host.try_get(Pod, "obj-dpu-dms", NS) is None
    # The other BlueField of the host was never touched.
    assert twin.bluefields.get("worker-0-1-0000-04-00").installs == 1
    assert twin.dpu_names.aliases == {FREE_BF: "rack1-bf3"}
    found = twin.dpu_names.find(FREE_BF)
    assert found is not None and found.name == "rack1-bf3"


def test_while_deleted_nothing_serves_the_bluefield_and_no_alias_is_left() -> None:
    runner, _ = _run(until=45 * 60.0)
    twin = runner.twin
    assert twin.host.try_get(DPU, "obj-dpu", NS) is None
    bf = twin.bluefields.get(FREE_BF)
    assert not bf.dms_running and bf.dms_address is None
    assert twin.dpu_names.aliases == {}
    assert twin.dpu_names.find(FREE_BF) is None
    assert [n.name for n in twin.dpu_clusters[CLUSTER].list(Node)] == ["worker-0-1-0000-04-00"]


# --- DpuNames: the DPU object <-> BlueField match ---------------------------------------------------------


def _names() -> tuple[MemoryStore, DpuNames]:
    store = MemoryStore(name="host")
    fleet = {("worker-0-0", "0000-04-00"): "worker-0-0-0000-04-00", ("worker-0-1", "0000-04-00"): "worker-0-1-0000-04-00"}
    return store, DpuNames(store, lambda node, pci: fleet.get((node, pci)))


def _create(store: MemoryStore, name: str, node: str, pci: str | None = "0000-04-00") -> DPU:
    return store.create(DPU.model_validate(_dpu(name, node, pci)))


def test_a_dpu_named_after_its_bluefield_needs_no_alias() -> None:
    store, names = _names()
    _create(store, "worker-0-0-0000-04-00", "worker-0-0")
    assert names.aliases == {}
    assert names.bluefield_of("worker-0-0-0000-04-00") == "worker-0-0-0000-04-00"
    assert names.on_bluefield("worker-0-0-0000-04-00") == ("worker-0-0-0000-04-00",)


def test_a_freely_named_dpu_is_found_by_its_bluefield_until_deleted() -> None:
    store, names = _names()
    _create(store, "obj-dpu", "worker-0-1")
    assert names.bluefield_of("obj-dpu") == "worker-0-1-0000-04-00"
    assert names.on_bluefield("worker-0-1-0000-04-00") == ("worker-0-1-0000-04-00", "obj-dpu")
    found = names.find("worker-0-1-0000-04-00")
    assert found is not None and found.name == "obj-dpu"
    store.delete(DPU, "obj-dpu", NS)
    assert names.aliases == {} and names.find("worker-0-1-0000-04-00") is None
    assert names.bluefield_of("obj-dpu") == "obj-dpu"


def test_the_label_decides_and_a_label_pointing_nowhere_reaches_no_bluefield() -> None:
    store, names = _names()
    _create(store, "unlabelled", "worker-0-0", pci=None)
    # No label: DPF never creates its DMS pod ("not found pci address"); nothing to match.
    assert names.aliases == {}
    store.patch(DPU, "unlabelled", NS, {"metadata": {"labels": {DPU_PCI_ADDRESS_LABEL: "0000-04-00"}}})
    assert names.bluefield_of("unlabelled") == "worker-0-0-0000-04-00"
    store.patch(DPU, "unlabelled", NS, {"metadata": {"labels": {DPU_PCI_ADDRESS_LABEL: "0000-09-00"}}})
    assert names.bluefield_of("unlabelled") == "" and names.aliases == {}
    # A name that is some BlueField's is no claim on it: the node and the label are.
    _create(store, "worker-0-1-0000-04-00", "worker-0-0")
    assert names.bluefield_of("worker-0-1-0000-04-00") == "worker-0-0-0000-04-00"
    assert names.aliases == {"worker-0-0-0000-04-00": "worker-0-1-0000-04-00"}


def test_a_locator_set_later_matches_the_dpus_already_there() -> None:
    store = MemoryStore(name="host")
    names = DpuNames(store)
    _create(store, "obj-dpu", "worker-0-0")
    assert names.aliases == {}
    names.set_locator(lambda node, pci: f"{node}-{pci}")
    assert names.aliases == {"worker-0-0-0000-04-00": "obj-dpu"}


# --- `dpf serve`: kubectl exec into a DMS pod runs on the DPU's host --------------------------------------

SERVED = """\
name: served-free-dpu
seed: 1
fleet: {racks: 1, hostsPerRack: 2}
"""


def test_exec_in_the_dms_pod_of_a_freely_named_dpu_reaches_its_host(tmp_path: Path) -> None:
    served = ServedTwin(load_scenario_text(SERVED), ServeOptions(tls=False, controllers=False,
                                                                 kubeconfig_out=tmp_path / "k"), out=io.StringIO())
    dpu = served.twin.host.create(DPU.model_validate(_dpu("obj-dpu", "worker-0-1")))
    owner = {"apiVersion": dpu.api_version, "kind": "DPU", "name": dpu.name, "uid": dpu.metadata.uid, "controller": True}
    served.twin.host.create(Pod.model_validate({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "obj-dpu-dms", "namespace": NS, "ownerReferences": [owner]},
        "spec": {"containers": [{"name": "dms", "image": "dms"}]}}))
    # DPF's controller execs into `<dpu>-dms` (computeBFBMD5InDms, the warm reboot): the pod runs on spec.nodeName.
    assert served._dms_host(NS, "obj-dpu-dms") == "worker-0-1"


def test_single_flash_checks_a_freely_named_dpu_at_its_own_events() -> None:
    """singleFlash looks at the BlueField of the DPU object that just changed: for `obj-dpu` that is the one at its
    node and PCI label, not a BlueField called `obj-dpu` (there is none)."""
    from dpf_sim.expect import InvariantSpec, SingleFlash

    runner = Runner(load_scenario_text(SCENARIO, base_dir=REPO), progress=False, until=5 * 60.0)
    runner.run()  # cut short: obj-dpu exists and is on its way
    twin = runner.twin
    check = SingleFlash(InvariantSpec.model_validate({"name": "single", "type": "singleFlash"}))
    check.bind(twin)
    obj = twin.host.get(DPU, "obj-dpu", NS)
    twin.bluefields.dpus[FREE_BF].max_flashing = 2  # as if two flashes had overlapped there
    check.on_event("host", WatchEvent("MODIFIED", obj))
    assert check.passed is False
    assert FREE_BF in str(check.detail)
