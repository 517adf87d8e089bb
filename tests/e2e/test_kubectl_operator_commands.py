"""The kubectl commands an operator types against `dpf serve`, checked against what a real API server with
DPF's CRDs installed answers: printer columns as the CRDs in the DPF source declare them, describe, jsonpath,
both kinds of wait, dry runs (server and client, apply and server-side apply, patch, label, delete), delete
without waiting, watches of DPF kinds, discovery and explain.

The tests share one served twin and run in file order: the samples applied first are what later tests read.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MIRROR = Path("/work/.mirror/NVIDIA+doca-platform/repo")
Served = Any  # conftest.Served (tests/e2e is no package: fixtures carry it)

pytestmark = [pytest.mark.real, pytest.mark.slow]

NS = "dpf-operator-system"
BFB = {
    "apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "BFB",
    "metadata": {"namespace": NS},
    "spec": {"url": "http://example.com/bf-bundle-2.9.1-40_24.11_ubuntu-22.04_prod.bfb"},
}


def _bfb(name: str, **metadata: Any) -> str:
    doc = json.loads(json.dumps(BFB))
    doc["metadata"].update(name=name, **metadata)
    return yaml.safe_dump(doc)


def _first_dpu(served: Served) -> str:
    names = served.kubectl("get", "dpus", "-n", NS, "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    assert names, "no DPU"
    return sorted(names)[0]


def _crd_columns(plural: str) -> list[str] | None:
    """Printer column names of a CRD in the DPF source (None when the mirror is not on this machine)."""
    if not MIRROR.exists():
        return None
    path = f"HEAD:config/provisioning/crd/bases/provisioning.dpu.nvidia.com_{plural}.yaml"
    done = subprocess.run(["git", "-C", str(MIRROR), "show", path], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None
    version = yaml.safe_load(done.stdout)["spec"]["versions"][0]
    return [c["name"].upper() for c in version.get("additionalPrinterColumns", [])]


def test_missing_object_in_the_operator_namespace_is_reported_as_missing(served_twin: Served) -> None:
    # Helm installs DPF into dpf-operator-system: the namespace is there before any DPF object is.
    assert "dpf-operator-system" in served_twin.kubectl("get", "ns", "-o", "name").stdout
    done = served_twin.kubectl("get", "bfb", "nope", "-n", NS, check=False)
    assert done.returncode != 0
    assert 'bfbs.provisioning.dpu.nvidia.com "nope" not found' in done.stderr
    assert "namespaces" not in done.stderr


def test_server_dry_run_of_the_samples_admits_but_stores_nothing(served_twin: Served) -> None:
    sample = str(REPO / "samples" / "provisioning.yaml")
    # As on a real API server, a dry run creates no Namespace: the DPUCluster in the sample's new namespace is
    # refused (404) and everything else is admitted.
    missing = 'namespaces "dpu-cplane-tenant1" not found'
    done = served_twin.kubectl("apply", "-f", sample, "--dry-run=server", check=False)
    assert done.returncode == 1 and missing in done.stderr and done.stderr.count("Error from server") == 1
    assert "namespace/dpu-cplane-tenant1 created (server dry run)" in done.stdout
    assert "dpuset.provisioning.dpu.nvidia.com/dpuset created (server dry run)" in done.stdout
    done = served_twin.kubectl("apply", "--server-side", "-f", sample, "--dry-run=server", check=False)
    assert done.returncode == 1 and missing in done.stderr
    assert "bfb.provisioning.dpu.nvidia.com/bf-bundle serverside-applied (server dry run)" in done.stdout
    out = served_twin.kubectl("apply", "-f", sample, "--dry-run=client").stdout
    assert "dpuset.provisioning.dpu.nvidia.com/dpuset created (dry run)" in out
    assert served_twin.kubectl("get", "bfbs,dpusets", "-n", NS, "-o", "name").stdout.strip() == ""
    # A dry run is admitted in full: the defaults appear, a bad value is refused.
    dry = json.loads(served_twin.kubectl("create", "-f", "-", "--dry-run=server", "-o", "json", stdin=_bfb("dry")).stdout)
    assert dry["spec"]["fileName"] == f"{NS}-dry.bfb"
    assert dry["metadata"]["uid"] and not dry["metadata"].get("resourceVersion")
    bad = _bfb("dry").replace("http://", "ftp://")
    refused = served_twin.kubectl("create", "-f", "-", "--dry-run=server", stdin=bad, check=False)
    assert refused.returncode != 0 and "is invalid" in refused.stderr and "spec.url" in refused.stderr
    wrong = served_twin.kubectl("get", "--raw", f"/apis/provisioning.dpu.nvidia.com/v1alpha1/namespaces/{NS}/bfbs?dryRun=Some",
                                check=False)
    assert wrong.returncode != 0 and 'Unsupported value: "Some"' in wrong.stderr


def test_apply_samples_then_wait_for_ready_and_phase(served_twin: Served) -> None:
    served_twin.kubectl("apply", "-f", str(REPO / "samples" / "provisioning.yaml"))
    deadline = time.monotonic() + 20
    while not served_twin.kubectl("get", "dpu", "-n", NS, "-o", "name").stdout.strip():
        assert time.monotonic() < deadline, "no DPU was created"
        time.sleep(0.2)
    dpu = _first_dpu(served_twin)
    out = served_twin.kubectl("wait", "--for=condition=Ready", f"dpu/{dpu}", "-n", NS, "--timeout=60s", timeout=90).stdout
    assert f"dpu.provisioning.dpu.nvidia.com/{dpu} condition met" in out
    served_twin.kubectl("wait", "--for=jsonpath={.status.phase}=Ready", "dpu", "--all", "-n", NS, "--timeout=60s", timeout=90)
    assert served_twin.kubectl("get", "dpu", dpu, "-n", NS, "-o", "jsonpath={.status.phase}").stdout == "Ready"
    # A condition that never comes times out as kubectl does against a real server.
    never = served_twin.kubectl("wait", "--for=condition=Bogus", f"dpu/{dpu}", "-n", NS, "--timeout=1s", check=False)
    assert never.returncode != 0 and "timed out waiting for the condition" in never.stderr


def test_tables_carry_the_printer_columns_of_dpfs_crds(served_twin: Served) -> None:
    dpus = served_twin.kubectl("get", "dpus", "-A", "-o", "wide").stdout.splitlines()
    assert dpus[0].split() == ["NAMESPACE", "NAME", "READY", "PHASE", "AGE"]
    assert len(dpus) == 3 and all(line.split()[2:4] == ["True", "Ready"] for line in dpus[1:])
    clusters = served_twin.kubectl("get", "dpuclusters", "-A").stdout.splitlines()
    assert clusters[0].split() == ["NAMESPACE", "NAME", "READY", "PHASE", "TYPE", "MAXNODES", "VERSION", "AGE"]
    assert clusters[1].split()[2:7] == ["True", "Ready", "kamaji", "10", "v1.30.2"]
    for plural, header in (("dpus", dpus[0]), ("dpuclusters", clusters[0])):
        declared = _crd_columns(plural)
        if declared is not None:
            assert header.split()[2:] == declared, plural
    mixed = served_twin.kubectl("get", "dpusets,bfbs,dpuclusters", "-A").stdout
    assert "dpuset.provisioning.dpu.nvidia.com/dpuset" in mixed
    assert "bfb.provisioning.dpu.nvidia.com/bf-bundle" in mixed
    assert "dpucluster.provisioning.dpu.nvidia.com/dpu-cplane-tenant1" in mixed


def test_describe_shows_spec_status_and_events(served_twin: Served) -> None:
    dpu = _first_dpu(served_twin)
    out = served_twin.kubectl("describe", "dpu", dpu, "-n", NS).stdout
    assert f"Name:         {dpu}" in out and "Kind:         DPU" in out
    assert "Phase:                   Ready" in out and "Type:                  Ready" in out
    assert "Controller:            true" in out and "DPUSet" in out
    dpuset = served_twin.kubectl("describe", "dpuset", "dpuset", "-n", NS).stdout
    assert "SuccessfulCreate" in dpuset and f"Created DPU: ({NS}/{dpu})" in dpuset


def test_patch_label_annotate_with_server_dry_run_change_nothing(served_twin: Served) -> None:
    dpu = _first_dpu(served_twin)
    before = json.loads(served_twin.kubectl("get", "dpu", dpu, "-n", NS, "-o", "json").stdout)["metadata"]["resourceVersion"]
    out = served_twin.kubectl("label", "dpu", dpu, "-n", NS, "team=net", "--dry-run=server").stdout
    assert "labeled (server dry run)" in out
    served_twin.kubectl("annotate", "dpu", dpu, "-n", NS, "note=x", "--dry-run=server")
    served_twin.kubectl("patch", "dpuset", "dpuset", "-n", NS, "--type=merge", "-p", '{"spec":{"strategy":{"type":"Recreate"}}}',
                        "--dry-run=server")
    # Immutability is admission: a dry run is refused exactly as the real write would be.
    refused = served_twin.kubectl("patch", "bfb", "bf-bundle", "-n", NS, "--type=merge", "-p", '{"spec":{"url":"http://o/x.bfb"}}',
                                  "--dry-run=server", check=False)
    assert refused.returncode != 0 and "immutable" in refused.stderr
    got = json.loads(served_twin.kubectl("get", "dpu", dpu, "-n", NS, "-o", "json").stdout)["metadata"]
    assert got["resourceVersion"] == before and "team" not in got.get("labels", {})
    strategy = served_twin.kubectl("get", "dpuset", "dpuset", "-n", NS, "-o", "jsonpath={.spec.strategy.type}").stdout
    assert strategy == "RollingUpdate"
    served_twin.kubectl("label", "dpu", dpu, "-n", NS, "team=net")
    taken = served_twin.kubectl("label", "dpu", dpu, "-n", NS, "team=ops", check=False)
    assert taken.returncode != 0 and "'team' already has a value (net), and --overwrite is false" in taken.stderr
    served_twin.kubectl("label", "dpu", dpu, "-n", NS, "team=ops", "--overwrite")
    assert served_twin.kubectl("get", "dpu", "-n", NS, "-l", "team=ops", "-o", "name").stdout.strip() == \
        f"dpu.provisioning.dpu.nvidia.com/{dpu}"
    served_twin.kubectl("patch", "dpu", dpu, "-n", NS, "--type=json", "-p", '[{"op":"add","path":"/metadata/annotations/note","value":"y"}]')
    assert served_twin.kubectl("get", "dpu", dpu, "-n", NS, "-o", "jsonpath={.metadata.annotations.note}").stdout == "y"


def test_delete_without_waiting_leaves_a_deletion_timestamp(served_twin: Served) -> None:
    served_twin.kubectl("apply", "-f", "-", stdin=_bfb("held", finalizers=["example.com/hold"]))
    dry = served_twin.kubectl("delete", "bfb", "held", "-n", NS, "--dry-run=server").stdout
    assert '"held" deleted (server dry run)' in dry
    assert served_twin.kubectl("get", "bfb", "held", "-n", NS, "-o", "jsonpath={.metadata.deletionTimestamp}").stdout == ""
    out = served_twin.kubectl("delete", "bfb", "held", "-n", NS, "--wait=false").stdout
    assert 'bfb.provisioning.dpu.nvidia.com "held" deleted' in out
    held = json.loads(served_twin.kubectl("get", "bfb", "held", "-n", NS, "-o", "json").stdout)["metadata"]
    assert held["deletionTimestamp"] and "example.com/hold" in held["finalizers"]
    served_twin.kubectl("patch", "bfb", "held", "-n", NS, "--type=json", "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
    gone = served_twin.kubectl("get", "bfb", "held", "-n", NS, check=False)
    assert gone.returncode != 0 and 'bfbs.provisioning.dpu.nvidia.com "held" not found' in gone.stderr


def test_watch_of_dpus_streams_table_rows(served_twin: Served) -> None:
    dpu = _first_dpu(served_twin)
    watch = served_twin.watch("get", "dpus", "-n", NS, "-w", "--output-watch-events", "--request-timeout=60s")
    try:
        watch.wait_for(f"ADDED row of {dpu}", lambda row: row[:2] == ["ADDED", dpu])
        served_twin.kubectl("annotate", "dpu", dpu, "-n", NS, "watched=yes")
        watch.wait_for(f"MODIFIED row of {dpu}", lambda row: row[:2] == ["MODIFIED", dpu])
    finally:
        lines = watch.stop()
    assert lines[0].split() == ["EVENT", "NAME", "READY", "PHASE", "AGE"]
    rows = [line.split()[:4] for line in lines[1:]]
    assert ["ADDED", dpu, "True", "Ready"] in rows
    assert ["MODIFIED", dpu, "True", "Ready"] in rows


def test_api_resources_and_explain(served_twin: Served) -> None:
    nvidia = [line.split() for line in served_twin.kubectl("api-resources").stdout.splitlines() if "nvidia" in line]
    by_name = {row[0]: row for row in nvidia}
    assert {"dpus", "dpusets", "bfbs", "dpuclusters", "dpuflavors", "dpuservices", "dpfoperatorconfigs"} <= set(by_name)
    assert by_name["dpus"][-3:] == ["provisioning.dpu.nvidia.com/v1alpha1", "true", "DPU"]
    out = served_twin.kubectl("explain", "dpu.spec").stdout
    assert "KIND:       DPU" in out and "FIELD: spec <Object>" in out
    assert "bfb\t<string> -required-" in out and "nodeEffect\t<Object>" in out
    phase = served_twin.kubectl("explain", "dpu.status.phase").stdout
    assert "OS Installing" in phase and "Ready" in phase


def test_crds_of_the_installed_dpf_are_listed_and_established(served_twin: Served) -> None:
    table = served_twin.kubectl("get", "crds").stdout.splitlines()
    assert table[0].split() == ["NAME", "CREATED", "AT"]
    names = {line.split()[0] for line in table[1:]}
    assert {"dpus.provisioning.dpu.nvidia.com", "dpusets.provisioning.dpu.nvidia.com", "bfbs.provisioning.dpu.nvidia.com",
            "dpuservices.svc.dpu.nvidia.com", "dpfoperatorconfigs.operator.dpu.nvidia.com"} <= names
    served_twin.kubectl("wait", "--for=condition=Established", "crd/dpus.provisioning.dpu.nvidia.com", "--timeout=5s")
    crd = json.loads(served_twin.kubectl("get", "crd", "dpus.provisioning.dpu.nvidia.com", "-o", "json").stdout)
    assert crd["spec"]["names"]["kind"] == "DPU" and crd["spec"]["scope"] == "Namespaced"
    served = [c["name"].upper() for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert served == ["READY", "PHASE", "AGE"]
    declared = _crd_columns("dpus")
    if declared is not None:
        assert served == declared
    assert "crds" in served_twin.kubectl("api-resources", "--api-group=apiextensions.k8s.io").stdout
