"""The provisioning flow end to end in the twin: real DPF manifests, the core controllers, the SimPy models."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml

from dpf_core.api.external import Node, Pod
from dpf_core.api.provisioning import BFB, DPU, DPUCluster, DPUPhase
from dpf_sim.twin import Twin, TwinConfig

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "provisioning.yaml"


def _run(seed: int, hosts: int = 4, until: float = 3600.0) -> Twin:
    twin = Twin(TwinConfig(seed=seed, fleet={"racks": 1, "hosts_per_rack": hosts}, keep_log=False))
    twin.apply(list(yaml.safe_load_all(SAMPLES.read_text())))
    twin.run(until)
    return twin


def test_every_dpu_of_a_dpuset_is_provisioned_to_ready() -> None:
    twin = _run(seed=1)
    dpus = twin.host.list(DPU)
    assert len(dpus) == 4
    assert Counter(d.status.phase for d in dpus if d.status) == {DPUPhase.READY: 4}
    for d in dpus:
        conditions = {c.type: c.status for c in d.status.conditions} if d.status else {}
        for t in ("Initialized", "BFBReady", "NodeEffectReady", "DMSRunning", "OSInstalled", "Rebooted", "HostNetworkReady", "Ready"):
            assert conditions.get(t) == "True", (d.name, t, conditions)
        # The BFB version and host labels were added after the install.
        labels = d.spec.cluster.node_labels if d.spec.cluster else {}
        assert labels["provisioning.dpu.nvidia.com/DOCA-BFB-version"] == "bf-bundle-2.9.1-19_24.11_ubuntu-22.04_prod"
        assert labels["provisioning.dpu.nvidia.com/host"] == d.spec.node_name
    assert [c.status.phase for c in twin.host.list(DPUCluster) if c.status] == ["Ready"]
    assert [b.status.phase for b in twin.host.list(BFB) if b.status] == ["Ready"]
    # The DPU cluster (a Kamaji control plane in the twin) has one Ready Node per DPU, carrying the node labels.
    store = twin.dpu_cluster_store("dpu-cplane-tenant1", "dpu-cplane-tenant1")
    assert store is not None
    nodes = {n.name: n for n in store.list(Node)}
    assert set(nodes) == {d.name for d in dpus}
    for n in nodes.values():
        assert n.metadata.labels["provisioning.dpu.nvidia.com/host"].startswith("worker-")
    # The node effect (taint) is gone from every host once its DPU is Ready, and each DPU has its DMS pod.
    for d in dpus:
        host = twin.host.get(Node, d.spec.node_name)
        assert not [t for t in (host.spec.taints if host.spec else None) or [] if t.key == "dpu"]
        assert twin.host.try_get(Pod, f"{d.name}-dms", d.namespace) is not None
    # One flash per DPU, never two at once.
    assert all(bf.installs == 1 and bf.max_flashing <= 1 for bf in twin.bluefields.dpus.values())


def test_same_seed_same_event_log_and_a_different_seed_differs() -> None:
    a, b, c = _run(seed=7, hosts=2, until=2400), _run(seed=7, hosts=2, until=2400), _run(seed=8, hosts=2, until=2400)
    assert a.log.count > 50
    assert a.log.sha256 == b.log.sha256
    assert a.log.sha256 != c.log.sha256
