"""kubectl (the real /usr/bin/kubectl) against `dpf serve`: discovery, explain, apply (client-side and
server-side) of the real DPF sample manifests with validation, wait, get/watch, label/annotate/patch, delete
with finalizers and webhooks, output formats, and per-cluster tokens.

The tests share one served twin and run in file order: the provisioning samples applied early are what
the later tests read and change.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
Served = Any  # conftest.Served (tests/e2e is no package: fixtures carry it)

pytestmark = [pytest.mark.real, pytest.mark.slow]

NS = "dpf-operator-system"
DPU_CLUSTER = "dpu-cplane-tenant1/dpu-cplane-tenant1"


def test_discovery_lists_dpf_kinds_with_short_names_and_status(served_twin: Served) -> None:
    out = served_twin.kubectl("api-resources", "-o", "wide").stdout
    dpus = next(line for line in out.splitlines() if line.startswith("dpus "))
    assert "provisioning.dpu.nvidia.com/v1alpha1" in dpus and "true" in dpus and "DPU" in dpus
    assert "watch" in dpus
    assert any(line.startswith("configmaps ") and " cm " in line for line in out.splitlines())
    raw = json.loads(served_twin.kubectl("get", "--raw", "/apis/provisioning.dpu.nvidia.com/v1alpha1").stdout)
    names = {r["name"] for r in raw["resources"]}
    assert {"dpus", "dpus/status", "dpuflavors"} <= names and "dpuflavors/status" not in names


def test_explain_reads_the_crd_schema(served_twin: Served) -> None:
    out = served_twin.kubectl("explain", "dpuset.spec.strategy.type").stdout
    assert "KIND:       DPUSet" in out
    assert "Recreate" in out and "RollingUpdate" in out
    out = served_twin.kubectl("explain", "dpu.spec").stdout
    # Every field of the DPU's spec comes with its description, as DPF's CRDs carry them.
    assert "The desired state of the DPU." in out
    assert "nodeEffect\t<Object>" in out and "How provisioning affects the host Node" in out
    assert "automaticNodeReboot\t<boolean>" in out and "waits for a manual reboot" in out


def test_apply_refuses_unknown_fields_and_bad_values(served_twin: Served, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "BFB",
        "metadata": {"name": "bad", "namespace": NS},
        "spec": {"url": "ftp://nowhere/x.iso", "colour": "blue"},
    }))
    done = served_twin.kubectl("apply", "-f", str(bad), check=False)
    assert done.returncode != 0
    assert 'unknown field "spec.colour"' in done.stderr
    bad.write_text(yaml.safe_dump({
        "apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "BFB",
        "metadata": {"name": "bad", "namespace": NS}, "spec": {"url": "ftp://nowhere/x.iso"},
    }))
    done = served_twin.kubectl("apply", "-f", str(bad), check=False)
    assert done.returncode != 0
    assert "is invalid" in done.stderr and "spec.url" in done.stderr
    assert served_twin.kubectl("get", "bfb", "bad", "-n", NS, check=False).returncode != 0


def test_apply_samples_then_every_dpu_becomes_ready(served_twin: Served) -> None:
    out = served_twin.kubectl("apply", "-f", str(REPO / "samples" / "provisioning.yaml")).stdout
    assert "dpuset.provisioning.dpu.nvidia.com/dpuset created" in out
    # DPUs appear once the DPUSet controller ran: wait for them to exist, then for Ready.
    deadline = time.monotonic() + 20
    while not served_twin.kubectl("get", "dpu", "-n", NS, "-o", "name").stdout.strip():
        assert time.monotonic() < deadline, "no DPU was created"
        time.sleep(0.2)
    served_twin.kubectl("wait", "--for=condition=Ready", "dpu", "--all", "-n", NS, "--timeout=60s", timeout=90)
    dpus = json.loads(served_twin.kubectl("get", "dpus", "-A", "-o", "json").stdout)
    assert len(dpus["items"]) == 2
    assert {d["status"]["phase"] for d in dpus["items"]} == {"Ready"}
    table = served_twin.kubectl("get", "dpus", "-A").stdout.splitlines()
    assert table[0].split() == ["NAMESPACE", "NAME", "READY", "PHASE", "AGE"]
    assert all(line.split()[2:4] == ["True", "Ready"] for line in table[1:])


def test_reapply_client_side_is_unchanged_and_server_side_takes_ownership(served_twin: Served) -> None:
    sample = str(REPO / "samples" / "provisioning.yaml")
    out = served_twin.kubectl("apply", "-f", sample).stdout
    assert "bfb.provisioning.dpu.nvidia.com/bf-bundle unchanged" in out
    out = served_twin.kubectl("apply", "--server-side", "--force-conflicts", "-f", sample).stdout
    assert "bfb.provisioning.dpu.nvidia.com/bf-bundle serverside-applied" in out
    bfb = json.loads(served_twin.kubectl("get", "bfb", "bf-bundle", "-n", NS, "-o", "json", "--show-managed-fields").stdout)
    managers = {(m["manager"], m["operation"]) for m in bfb["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in managers


def test_server_side_apply_conflicts_unless_forced(served_twin: Served) -> None:
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  namespace: default\ndata:\n  color: {c}\n"
    served_twin.kubectl("apply", "--server-side", "--field-manager=alice", "-f", "-", stdin=cm.format(c="red"))
    done = served_twin.kubectl("apply", "--server-side", "--field-manager=bob", "-f", "-", stdin=cm.format(c="blue"), check=False)
    assert done.returncode != 0
    assert "conflict" in done.stderr.lower() and "alice" in done.stderr and ".data.color" in done.stderr
    served_twin.kubectl("apply", "--server-side", "--field-manager=bob", "--force-conflicts", "-f", "-", stdin=cm.format(c="blue"))
    got = json.loads(served_twin.kubectl("get", "cm", "ssa", "-o", "json", "--show-managed-fields").stdout)
    assert got["data"] == {"color": "blue"}
    owners = {m["manager"]: m["fieldsV1"] for m in got["metadata"]["managedFields"]}
    assert "f:color" in owners["bob"]["f:data"]
    assert "alice" not in owners  # its only field was taken over


def test_get_watch_streams_changes(served_twin: Served) -> None:
    # A row in the initial list tells that kubectl is watching before the changes start.
    served_twin.kubectl("create", "configmap", "sentinel", "-n", "default", "--from-literal=a=1")
    watch = served_twin.watch("get", "configmaps", "-n", "default", "-w", "--output-watch-events", "--request-timeout=60s")
    try:
        watch.wait_for("the sentinel's ADDED row", lambda row: row[:2] == ["ADDED", "sentinel"])
        served_twin.kubectl("create", "configmap", "watched", "-n", "default", "--from-literal=a=1")
        served_twin.kubectl("label", "configmap", "watched", "-n", "default", "tier=one")
        served_twin.kubectl("delete", "configmap", "watched", "-n", "default")
        watch.wait_for("the DELETED row", lambda row: row[:2] == ["DELETED", "watched"])
    finally:
        lines = watch.stop()
        served_twin.kubectl("delete", "configmap", "sentinel", "-n", "default")
    events = [line.split()[:2] for line in lines if "watched" in line]
    assert ["ADDED", "watched"] in events
    assert ["MODIFIED", "watched"] in events
    assert events[-1] == ["DELETED", "watched"]


def test_label_annotate_patch_and_jsonpath(served_twin: Served) -> None:
    served_twin.kubectl("label", "bfb", "bf-bundle", "-n", NS, "env=lab")
    served_twin.kubectl("annotate", "bfb", "bf-bundle", "-n", NS, "owner=infra")
    got = served_twin.kubectl("get", "bfb", "bf-bundle", "-n", NS, "-o",
                              "jsonpath={.metadata.labels.env} {.metadata.annotations.owner} {.status.phase}").stdout
    assert got == "lab infra Ready"
    assert "env: lab" in served_twin.kubectl("get", "bfb", "bf-bundle", "-n", NS, "-o", "yaml").stdout
    served_twin.kubectl("patch", "dpuset", "dpuset", "-n", NS, "--type=merge", "-p", '{"metadata":{"labels":{"patched":"yes"}}}')
    failed = served_twin.kubectl("patch", "dpuset", "dpuset", "-n", NS, "--type=json",
                                 "-p", '[{"op":"test","path":"/spec/strategy/type","value":"Recreate"}]', check=False)
    assert failed.returncode != 0 and "testing value /spec/strategy/type failed" in failed.stderr
    # Custom resources take no strategic merge patch (415), as in a real cluster.
    smp = served_twin.kubectl("patch", "dpuset", "dpuset", "-n", NS, "-p", '{"metadata":{"labels":{"x":"y"}}}', check=False)
    assert smp.returncode != 0 and "application/merge-patch+json" in smp.stderr
    immutable = served_twin.kubectl("patch", "bfb", "bf-bundle", "-n", NS, "--type=merge",
                                    "-p", '{"spec":{"url":"http://other/x.bfb"}}', check=False)
    assert immutable.returncode != 0 and "immutable" in immutable.stderr


def test_delete_respects_finalizers_and_webhooks(served_twin: Served) -> None:
    refused = served_twin.kubectl("delete", "bfb", "bf-bundle", "-n", NS, "--wait=false", check=False)
    assert refused.returncode != 0
    assert refused.stderr.startswith('Error from server (Forbidden): admission webhook "vbfb.kb.io" denied the request: '
                                     "being referred to by DPUSet(s) ["), refused.stderr
    served_twin.kubectl("apply", "-f", "-", stdin=(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: default\n"
        "  finalizers: [example.com/hold]\ndata: {a: b}\n"))
    served_twin.kubectl("delete", "configmap", "held", "--wait=false")
    ts = served_twin.kubectl("get", "configmap", "held", "-o", "jsonpath={.metadata.deletionTimestamp}").stdout
    assert ts, "the finalizer must hold the object with a deletionTimestamp"
    served_twin.kubectl("patch", "configmap", "held", "--type=json", "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
    gone = served_twin.kubectl("get", "configmap", "held", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_dpu_cluster_is_served_with_its_own_token(served_twin: Served, tmp_path: Path) -> None:
    dpu_kc = served_twin.kubeconfig_of(DPU_CLUSTER)
    assert dpu_kc.exists()
    nodes = served_twin.kubectl("get", "nodes", "-o", "name", kubeconfig=dpu_kc).stdout.split()
    assert len(nodes) == 2
    # The kubeconfig Secret the twin wrote for the DPUCluster names the served cluster.
    secret = json.loads(served_twin.kubectl("get", "secret", "-n", "dpu-cplane-tenant1", "dpu-cplane-tenant1-admin-kubeconfig",
                                            "-o", "json").stdout)
    conf = yaml.safe_load(base64.b64decode(secret["data"]["admin.conf"]))
    served_ctx = next(c for c in conf["contexts"] if c["name"] == conf["current-context"])["context"]
    server = next(c for c in conf["clusters"] if c["name"] == served_ctx["cluster"])["cluster"]["server"]
    assert server.endswith("/clusters/" + DPU_CLUSTER)
    # The host's token is no good on the DPU cluster.
    host_conf = yaml.safe_load(served_twin.kubeconfig.read_text())
    mixed = yaml.safe_load(dpu_kc.read_text())
    mixed["users"][0]["user"]["token"] = host_conf["users"][0]["user"]["token"]
    bad = tmp_path / "mixed.kubeconfig"
    bad.write_text(yaml.safe_dump(mixed))
    denied = served_twin.kubectl("get", "nodes", kubeconfig=bad, check=False)
    assert denied.returncode != 0 and "Unauthorized" in denied.stderr


def test_delete_dpuset_waits_for_the_controllers(served_twin: Served) -> None:
    served_twin.kubectl("delete", "dpuset", "dpuset", "-n", NS, "--timeout=60s", timeout=90)
    assert served_twin.kubectl("get", "dpuset", "-n", NS, "-o", "name").stdout.strip() == ""
