"""Fleet provisioning plus services at scale: N DPUs, two DPUServices on every DPU, three service chains per DPU.

The provisioning part is bench_scaling.py's `scaled_scenario(hosts)` (fleet-10k.yaml scaled: one Kamaji
DPUCluster of maxNodes 1000 per 1,000 DPUs). Once the fleet is provisioned (`services_at`, after the ~23-34 min
of simulated provisioning measured at 1k-10k) the user applies what a DPF deployment runs on every DPU:

- two DPUServices, DOCA Telemetry Service and DOCA BlueMan, each a chart of one DaemonSet (the scenario's
  `models.charts` catalogue), through ArgoCD into every DPU cluster (attachment `services`);
- six DPUServiceInterfaces and three DPUServiceChains that need no service pod, so the SFC agent on every DPU
  node wires them alone (attachment `servicechain`): uplink p0 <-> host PF1 (`pf1hpf`), uplink p1 <-> host VF
  `pf0vf1`, OVN (`puplinkbrsfc`) <-> host VF `pf0vf2`. PF0's representor is OVN's (`pf0hpf` on br-ovn), so the
  PF chain takes PF1; each interface is in one chain (the agent labels an interface with its chain's name).

Expectations: every DPU Ready; both DPUServices Ready; both DaemonSets' pods Running on every DPU node and the
ServiceInterfaceSets, ServiceChainSets, ServiceInterfaces and ServiceChains Ready in every DPU cluster (an
await per cluster store; a cluster's count is exact when the fleet fills whole clusters or only one); the
DPUServiceInterfaces and DPUServiceChains Ready on the host.

    .venv/bin/python benchmarks/bench_services_scale.py --write 10000 scenarios/fleet-10k-services.yaml
    .venv/bin/python benchmarks/bench_services_scale.py --one 1000              # one size, JSON on stdout
    .venv/bin/python benchmarks/bench_services_scale.py --one 1000 --profile out.prof
    .venv/bin/python benchmarks/bench_services_scale.py --one 1000 --profile out.prof --services-only
    .venv/bin/pytest -q benchmarks/bench_services_scale.py --benchmark-only     # the 20-host point

Timings are never asserted; docs/performance.md records them.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scaling import cli_logging, scaled_scenario

NAMESPACE = "dpf-operator-system"
CLUSTER_SIZE = 1000  # maxNodes' maximum; bench_scaling makes one DPUCluster per 1,000 DPUs
SERVICES_STEP = "services"

CHARTS: list[dict[str, Any]] = [
    {"repoURL": "https://helm.ngc.nvidia.com/nvidia/doca", "chart": "doca-telemetry", "version": "0.2.3",
     "workloads": [{"name": "doca-telemetry-service", "kind": "DaemonSet",
                    "image": "nvcr.io/nvidia/doca/doca_telemetry:1.18.5-doca2.9.0",
                    "resources": {"cpu": "100m", "memory": "128Mi"}}]},
    {"repoURL": "https://helm.ngc.nvidia.com/nvidia/doca", "chart": "doca-blueman", "version": "1.0.5",
     "workloads": [{"name": "doca-blueman", "kind": "DaemonSet", "image": "nvcr.io/nvidia/doca/doca_blueman:1.0.5",
                    "resources": {"cpu": "50m", "memory": "64Mi"}}]},
]
# DPUService name -> (chart, the DaemonSet's workload name = its pods' app.kubernetes.io/name)
SERVICES: dict[str, tuple[dict[str, Any], str]] = {
    "dts": (CHARTS[0], "doca-telemetry-service"),
    "blueman": (CHARTS[1], "doca-blueman"),
}

# DPUServiceInterface name -> (template labels, ServiceInterface spec)
INTERFACES: dict[str, tuple[dict[str, str], dict[str, Any]]] = {
    "p0": ({"uplink": "p0"}, {"interfaceType": "physical", "physical": {"interfaceName": "p0"}}),
    "p1": ({"uplink": "p1"}, {"interfaceType": "physical", "physical": {"interfaceName": "p1"}}),
    "ovn": ({"port": "ovn"}, {"interfaceType": "ovn"}),
    "host-pf1": ({"port": "host-pf1"}, {"interfaceType": "pf", "pf": {"pfID": 1}}),
    "host-vf1": ({"port": "host-vf1"},
                 {"interfaceType": "vf", "vf": {"pfID": 0, "vfID": 1, "parentInterfaceRef": "p0"}}),
    "host-vf2": ({"port": "host-vf2"},
                 {"interfaceType": "vf", "vf": {"pfID": 0, "vfID": 2, "parentInterfaceRef": "p0"}}),
}
# DPUServiceChain name -> the interfaces of its one switch
CHAINS: dict[str, tuple[str, str]] = {
    "p0-to-host-pf1": ("p0", "host-pf1"),
    "p1-to-host-vf1": ("p1", "host-vf1"),
    "ovn-to-host-vf2": ("ovn", "host-vf2"),
}


def services_at(hosts: int) -> str:
    """When the services are applied: after the measured provisioning time (1,377 s at 1k, 2,025 s at 10k), so
    the SFC agents' 5 s chain requeues run for minutes, not for the whole rollout. Applied earlier they are still
    correct (each DPU gets them as it joins), only dearer."""
    return "30m" if hosts <= CLUSTER_SIZE else "40m"


def cluster_sizes(hosts: int) -> list[int | None]:
    """DPUs per DPU cluster, in bench_scaling's cluster order; None where the split is not determined (a
    partly filled cluster next to full ones: which cluster fills first depends on which became Ready first)."""
    clusters = max(1, math.ceil(hosts / CLUSTER_SIZE))
    if clusters == 1:
        return [hosts]
    if hosts % CLUSTER_SIZE == 0:
        return [CLUSTER_SIZE] * clusters
    return [None] * clusters


def _manifests() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, (chart, _workload) in SERVICES.items():
        out.append({
            "apiVersion": "svc.dpu.nvidia.com/v1alpha1", "kind": "DPUService",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"helmChart": {"source": {"repoURL": chart["repoURL"], "chart": chart["chart"],
                                              "version": chart["version"]},
                                   "values": {"labels": {"dpu.nvidia.com/service": name}}}},
        })
    for name, (labels, spec) in INTERFACES.items():
        out.append({
            "apiVersion": "svc.dpu.nvidia.com/v1alpha1", "kind": "DPUServiceInterface",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"template": {"spec": {"template": {"metadata": {"labels": labels}, "spec": spec}}}},
        })
    for name, ends in CHAINS.items():
        ports = [{"serviceInterface": {"matchLabels": INTERFACES[end][0]}} for end in ends]
        out.append({
            "apiVersion": "svc.dpu.nvidia.com/v1alpha1", "kind": "DPUServiceChain",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"template": {"spec": {"template": {"spec": {"switches": [{"ports": ports}]}}}}},
        })
    return out


def _cluster_awaits(store: str, dpus: int | None) -> list[dict[str, Any]]:
    """What must hold in one DPU cluster: `dpus` nodes (None: every object in scope, however many)."""
    def count(per_node: int) -> int | str:
        return "all" if dpus is None else per_node * dpus

    short = store.rpartition("/")[2]
    common = {"store": store, "after": SERVICES_STEP, "within": "30m"}
    awaits: list[dict[str, Any]] = []
    for _name, (_chart, workload) in SERVICES.items():
        awaits.append({"name": f"{workload} pods Running on every DPU node of {short}", "kind": "Pod",
                       "namespace": NAMESPACE, "selector": f"app.kubernetes.io/name={workload}",
                       "phase": "Running", "count": count(1), **common})
    awaits += [
        {"name": f"ServiceInterfaceSets Ready in {short}", "kind": "ServiceInterfaceSet", "namespace": NAMESPACE,
         "condition": "Ready=True", "count": len(INTERFACES), **common},
        {"name": f"ServiceChainSets Ready in {short}", "kind": "ServiceChainSet", "namespace": NAMESPACE,
         "condition": "Ready=True", "count": len(CHAINS), **common},
        {"name": f"ServiceInterfaces Ready on every DPU node of {short}", "kind": "ServiceInterface",
         "namespace": NAMESPACE, "condition": "Ready=True", "count": count(len(INTERFACES)), **common},
        {"name": f"ServiceChains Ready on every DPU node of {short}", "kind": "ServiceChain",
         "namespace": NAMESPACE, "condition": "Ready=True", "count": count(len(CHAINS)), **common},
    ]
    return awaits


def services_scenario(hosts: int) -> dict[str, Any]:
    """scaled_scenario(hosts) plus the services part (see the module docstring)."""
    doc = scaled_scenario(hosts)
    size = f"{hosts // 1000}k" if hosts % 1000 == 0 else str(hosts)
    doc["name"] = f"fleet-{size}-services"
    base = doc["description"].replace(" Generated by benchmarks/bench_scaling.py from fleet-10k.yaml.", "")
    doc["description"] = (
        f"{base} Then, at {services_at(hosts)}, two DPUServices (DOCA Telemetry Service, DOCA BlueMan: "
        "a DaemonSet each, through ArgoCD) on every DPU and three service chains per DPU that need no service pod "
        "(uplink p0 <-> host PF1, uplink p1 <-> host VF pf0vf1, OVN <-> host VF pf0vf2), wired by every DPU's SFC "
        "agent. Generated by benchmarks/bench_services_scale.py (the provisioning part: bench_scaling.py's "
        "fleet-10k.yaml scaling).")
    doc["attachments"] = ["services", "servicechain"]
    doc["models"] = {**doc.get("models", {}), "charts": CHARTS}
    manifests = doc["timeline"][0]["apply"]["manifests"]
    for m in manifests:
        if m["kind"] == "DPUFlavor":
            # A BlueField-3's Arm cores and memory, some kept for the OS: what the DPU nodes offer the pods.
            m["spec"]["dpuResources"] = {"cpu": "16", "memory": "32Gi"}
            m["spec"]["systemReservedResources"] = {"cpu": "2", "memory": "4Gi"}
        if m["kind"] == "DPFOperatorConfig":
            # DPF's own DPU components would be DPUServices too, with charts the catalogue does not hold; the
            # twin's servicechain attachment stands in for the ones the chains need (SFC agent, ovs-cni, NVIPAM).
            for component in ("flannel", "multus", "sriovDevicePlugin", "ovsCNI", "nvipam", "sfcController",
                              "serviceSetController", "ovsHelper"):
                m["spec"][component] = {"disable": True}
    doc["timeline"].append({"at": services_at(hosts), "name": SERVICES_STEP, "apply": {"manifests": _manifests()}})
    expect = [e for e in doc["expect"] if "await" in e]
    expect += [
        {"await": {"name": "DPUServices Ready", "kind": "DPUService", "namespace": NAMESPACE,
                   "names": list(SERVICES), "condition": "Ready=True", "after": SERVICES_STEP, "within": "30m"}},
        {"await": {"name": "DPUServiceInterfaces Ready", "kind": "DPUServiceInterface", "namespace": NAMESPACE,
                   "names": list(INTERFACES), "condition": "Ready=True", "after": SERVICES_STEP, "within": "30m"}},
        {"await": {"name": "DPUServiceChains Ready", "kind": "DPUServiceChain", "namespace": NAMESPACE,
                   "names": list(CHAINS), "condition": "Ready=True", "after": SERVICES_STEP, "within": "30m"}},
    ]
    clusters = [m for m in manifests if m["kind"] == "DPUCluster"]
    for dc, dpus in zip(clusters, cluster_sizes(hosts), strict=True):
        store = f"{dc['metadata']['namespace']}/{dc['metadata']['name']}"
        expect += [{"await": a} for a in _cluster_awaits(store, dpus)]
    expect += [e for e in doc["expect"] if "await" not in e]
    doc["expect"] = expect
    return doc


def _seconds(duration: str) -> float:
    unit = {"s": 1.0, "m": 60.0, "h": 3600.0}[duration[-1]]
    return float(duration[:-1]) * unit


def run_one(hosts: int, profile: str | None = None, *, profile_services: bool = False) -> dict[str, Any]:
    """One run. CPU is split at the services step (a SimPy timeout at that instant, which writes nothing, so
    the event log is the same as without it). `profile_services`: the profile covers the services part only."""
    from dpf_sim.runner import Runner
    from dpf_sim.scenario import load_scenario_text

    cli_logging()
    loaded = load_scenario_text(yaml.safe_dump(services_scenario(hosts), sort_keys=False))
    profiler: Any = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
    runner = Runner(loaded, progress=False)
    split: dict[str, float] = {}

    def mark() -> Any:
        yield runner.env.timeout(_seconds(services_at(hosts)))
        split["cpu"] = time.process_time()
        if profiler is not None and profile_services:
            profiler.enable()

    runner.env.process(mark())
    cpu = time.process_time()
    if profiler is not None and not profile_services:
        profiler.enable()
    result = runner.run()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    end = time.process_time()
    services_cpu = end - split.get("cpu", end)
    cpu = end - cpu
    report = result.report
    awaits = report["awaits"]
    return {
        "dpus": hosts,
        "passed": not result.failures,
        "failures": [o.detail for o in result.failures][:5],
        "wall_seconds": report["wall_seconds"],
        "cpu_seconds": round(cpu, 2),
        "services_cpu_seconds": round(services_cpu, 2),
        "sim_seconds": report["sim_seconds"],
        "services_at": services_at(hosts),
        "provisioned_at": awaits.get("every DPU is Ready", {}).get("at"),
        "services_seconds": max((a["seconds"] or 0.0) for n, a in awaits.items() if n != "every DPU is Ready"),
        "reconciles": report["reconciles"]["total"],
        "reconciles_by_controller": report["reconciles"]["by_controller"],
        "events": report["events"],
        "store_writes": report["store_calls"]["writes"],
        "ready": report["dpus_by_phase"].get("Ready", 0),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "event_log_sha256": report["event_log_sha256"],
    }


def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        profile = argv[argv.index("--profile") + 1] if "--profile" in argv else None
        print(json.dumps(run_one(int(argv[1]), profile, profile_services="--services-only" in argv)))
        return
    if argv[:1] == ["--write"]:
        Path(argv[2]).write_text(yaml.safe_dump(services_scenario(int(argv[1])), sort_keys=False, width=120))
        return
    raise SystemExit(__doc__)


def test_services_scale_point(benchmark: Any) -> None:
    numbers: dict[str, Any] = {}
    benchmark.pedantic(lambda: numbers.update(run_one(20)), rounds=1, iterations=1)
    benchmark.extra_info.update(numbers)
    assert numbers["passed"], numbers["failures"]
    assert numbers["ready"] == 20


@pytest.mark.parametrize(("hosts", "sizes"), [(20, [20]), (1000, [1000]), (10000, [1000] * 10), (1500, [None, None])])
def test_cluster_sizes(hosts: int, sizes: list[int | None]) -> None:
    assert cluster_sizes(hosts) == sizes


if __name__ == "__main__":
    main(sys.argv[1:])
