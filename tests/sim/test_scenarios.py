"""Every shipped scenario passes (fleet-10k runs in the benchmarks), and the node-effect details a scenario's
awaits cannot see are checked on the twin directly."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpf_sim.runner import run_scenario
from dpf_sim.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
# Benchmarks, not tests: their size is the point.
BENCHMARK_ONLY = {"fleet-10k.yaml", "fleet-100k.yaml", "fleet-10k-services.yaml", "chaos.yaml", "rolling-bfb-upgrade-5000.yaml"}


def shipped() -> list[Path]:
    return sorted(p for p in SCENARIOS.glob("*.yaml") if p.name not in BENCHMARK_ONLY)


@pytest.mark.parametrize("path", shipped(), ids=lambda p: p.stem)
def test_shipped_scenario_passes(path: Path) -> None:
    result = run_scenario(load_scenario(path), progress=False)
    assert [o for o in result.outcomes if not o.name.startswith("always:")], "a shipped scenario must expect something"
    assert result.passed, [o.as_dict() for o in result.failures]


def test_node_effects_as_dpf_applies_and_releases_them() -> None:
    """Taint during provisioning and gone at Ready; customLabel kept; NodeMaintenance deleted."""
    import yaml

    from dpf_core.api.external import Node, NodeMaintenance
    from dpf_core.api.provisioning import DPU, DPUPhase
    from dpf_sim.twin import Twin, TwinConfig

    twin = Twin(TwinConfig(seed=2, fleet={"racks": 1, "hosts_per_rack": 3}, keep_log=False))
    twin.apply(list(yaml.safe_load_all((SCENARIOS / "manifests" / "base.yaml").read_text())))
    for i, group in enumerate(("taint", "drain", "custom")):
        twin.patch("Node", f"worker-0-{i}", None, {"metadata": {"labels": {"group": group}}})
    effects = {
        "taint": {"taint": {"key": "dpu", "value": "provisioning", "effect": "NoSchedule"}},
        "drain": {"drain": {"automaticNodeReboot": True}},
        "custom": {"customLabel": {"dpu.example/provisioning": "yes"}},
    }
    twin.apply([
        {"apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "DPUSet",
         "metadata": {"name": f"set-{g}", "namespace": "dpf-operator-system"},
         "spec": {"nodeSelector": {"matchLabels": {"group": g}},
                  "dpuTemplate": {"spec": {"bfb": {"name": "bf-bundle"}, "dpuFlavor": "dpf-provisioning-hbn-ovn",
                                           "nodeEffect": e}}}}
        for g, e in effects.items()
    ])
    seen_taint = seen_maintenance = False
    for t in range(30, 3600, 30):
        twin.run(t)
        taints = twin.host.get(Node, "worker-0-0").spec.taints or []
        seen_taint = seen_taint or any(x.key == "dpu" and x.effect == "NoSchedule" for x in taints)
        seen_maintenance = seen_maintenance or bool(twin.host.list(NodeMaintenance))
    assert seen_taint and seen_maintenance
    assert {d.status.phase for d in twin.host.list(DPU)} == {DPUPhase.READY}
    assert not [x for x in twin.host.get(Node, "worker-0-0").spec.taints or [] if x.key == "dpu"]
    assert twin.host.list(NodeMaintenance) == []
    assert twin.host.get(Node, "worker-0-2").metadata.labels.get("dpu.example/provisioning") == "yes"
