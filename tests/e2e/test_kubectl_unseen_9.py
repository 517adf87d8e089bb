"""Acceptance (session 9): kubectl against `dpf serve` with DPF's own user-guide manifests, as an outside user
would run it (docs/operations.md "Attach kubectl to a running twin").

The manifests are DPF v24.10's user-guide manifests (docs/guides/usecases/**/manifests, every one holding one of
DPF's kinds), kept unchanged in dpf_guides/ as `<usecase>__<step>__<file>`, their `$VARIABLES` filled the way the
guides do it (envsubst). Oracles: DPF's CRDs and webhooks, apimachinery's Status wording (`Kind.group "name" is
invalid: ...`, several errors in brackets), apiextensions' CEL errors (`Invalid value: "object": <message>`).
Needs kubectl (skip, or fail under DPF_REQUIRE_REAL=1).
"""

from __future__ import annotations

import base64
import json
import ssl
import string
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import KUBECTL, Served, start_serve, stop_serve
from real_rule import require_real

GUIDES = Path(__file__).resolve().parent / "dpf_guides"
NS = "dpf-operator-system"
OUR_GROUPS = ("provisioning.dpu.nvidia.com/", "svc.dpu.nvidia.com/", "operator.dpu.nvidia.com/")
# The guides' environment variables (docs/guides/usecases/*/README.md export them before envsubst).
GUIDE_ENV = {
    "DPUCLUSTER_INTERFACE": "br-ex", "DPUCLUSTER_VIP": "10.0.110.200",
    "BLUEFIELD_BITSTREAM": "https://content.mellanox.com/BlueField/BFBs/Ubuntu22.04/bf-bundle-2.9.1-40_24.11_ubuntu-22.04_prod.bfb",
    "DPF_VERSION": "v24.10.0", "TARGETCLUSTER_API_SERVER_HOST": "10.0.110.10", "TARGETCLUSTER_API_SERVER_PORT": "6443",
    "POD_CIDR": "10.233.64.0", "SERVICE_CIDR": "10.233.0.0/18", "TARGETCLUSTER_NODE_CIDR": "10.0.110.0/24",
    "DPU_P0": "p0", "DPU_P0_VF1": "p0v1",
}


@pytest.fixture(scope="module")
def guide_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every guide manifest holding one of our kinds, variables substituted, in the guides' order."""
    out = tmp_path_factory.mktemp("guides")
    for src in sorted(GUIDES.iterdir()):
        text = src.read_text()
        assert any(f"apiVersion: {g}" in text for g in OUR_GROUPS), src.name
        (out / src.name).write_text(string.Template(text).safe_substitute(GUIDE_ENV))
    return out


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    require_real("kubectl", KUBECTL.exists(), f"{KUBECTL} is missing")
    tmp = tmp_path_factory.mktemp("serve9")
    scenario = tmp / "fleet.yaml"
    scenario.write_text("name: unseen-9\nseed: 9\nfleet:\n  racks: 1\n  hosts_per_rack: 2\n")
    served = start_serve(tmp, scenario)
    try:
        served.kubectl("create", "namespace", "dpu-cplane-tenant1")
        yield served
    finally:
        stop_serve(served)


@pytest.fixture(scope="module")
def applied(twin: Served, guide_dir: Path) -> list[Path]:
    files = sorted(guide_dir.iterdir())
    assert len(files) >= 40, [f.name for f in files]
    # One kubectl run over the directory: files in name order, as `kubectl apply -f <dir>` walks them.
    done = twin.kubectl("apply", "-f", str(guide_dir))
    assert "created" in done.stdout and "Warning" not in done.stderr, done.stderr
    return files


def _refused(twin: Served, *args: str, stdin: str | None = None) -> str:
    done = twin.kubectl(*args, check=False, stdin=stdin)
    assert done.returncode != 0, f"kubectl {' '.join(args)} was accepted:\n{done.stdout}"
    return done.stderr


def test_every_guide_manifest_is_accepted_and_a_reapply_changes_nothing(twin: Served, applied: list[Path]) -> None:
    got = json.loads(twin.kubectl("get", "-f", str(applied[0].parent), "-o", "json").stdout)
    kinds = {item["kind"] for item in got["items"]}
    assert {"BFB", "DPUCluster", "DPFOperatorConfig", "DPUSet", "DPUFlavor", "DPUService", "DPUServiceChain",
            "DPUServiceInterface", "DPUServiceIPAM", "DPUServiceCredentialRequest", "DPUDeployment",
            "DPUServiceConfiguration", "DPUServiceTemplate"} <= kinds
    # The last use case's manifests were applied last: applying them again is a no-op.
    last = [f for f in applied if f.name.startswith("hbn_ovn__05.2")]
    out = twin.kubectl("apply", *[a for f in last for a in ("-f", str(f))]).stdout
    assert out.strip() and all(line.endswith(" unchanged") for line in out.strip().splitlines()), out


def test_diff_is_clean_for_an_applied_manifest_and_shows_an_edit(twin: Served, applied: list[Path], tmp_path: Path) -> None:
    deployment = next(f for f in applied if f.name.endswith("__dpudeployment.yaml"))
    assert twin.kubectl("diff", "-f", str(deployment), check=False).returncode == 0
    edited = tmp_path / "dpudeployment.yaml"
    edited.write_text(deployment.read_text().replace('nameSuffix: "dpuset1"', 'nameSuffix: "dpuset2"'))
    diff = twin.kubectl("diff", "-f", str(edited), check=False)
    assert diff.returncode == 1 and "+    - nameSuffix: dpuset2" in diff.stdout, diff.stdout + diff.stderr


def test_server_side_apply_of_a_guide_manifest_and_a_forced_takeover(twin: Served, applied: list[Path]) -> None:
    template = next(f for f in applied if f.name.endswith("__dpuservicetemplate_dts.yaml"))
    done = twin.kubectl("apply", "--server-side", "--field-manager", "outsider", "--force-conflicts", "-f", str(template))
    assert "serverside-applied" in done.stdout
    managers = twin.kubectl("get", "dpuservicetemplate", "dts", "-n", NS, "--show-managed-fields", "-o",
                            "jsonpath={.metadata.managedFields[*].manager}").stdout.split()
    assert "outsider" in managers


def test_cel_rules_are_refused_with_the_api_servers_wording(twin: Served, applied: list[Path]) -> None:
    bad = """
apiVersion: svc.dpu.nvidia.com/v1alpha1
kind: DPUServiceInterface
metadata: {name: vlan-without-vlan, namespace: dpf-operator-system}
spec:
  template:
    spec:
      template:
        spec: {interfaceType: vlan, physical: {interfaceName: p0}}
---
apiVersion: svc.dpu.nvidia.com/v1alpha1
kind: DPUDeployment
metadata: {name: both-and-neither, namespace: dpf-operator-system}
spec:
  dpus: {bfb: bf-bundle, flavor: dpf-provisioning-hbn-ovn}
  services: {hbn: {serviceTemplate: hbn, serviceConfiguration: hbn}}
  serviceChains:
  - ports:
    - serviceInterface: {matchLabels: {uplink: p0}}
      service: {name: hbn, interface: p0_if}
    - {}
"""
    err = _refused(twin, "apply", "-f", "-", stdin=bad)
    assert ('DPUServiceInterface.svc.dpu.nvidia.com "vlan-without-vlan" is invalid: spec.template.spec.template.spec: '
            'Invalid value: "object": `for interfaceType=vlan, vlan must be set;') in err
    assert ('DPUDeployment.svc.dpu.nvidia.com "both-and-neither" is invalid: [spec.serviceChains[0].ports[0]: Invalid value: '
            '"object": either service or serviceInterface must be specified, spec.serviceChains[0].ports[1]: Invalid value: '
            '"object": either service or serviceInterface must be specified]') in err


def test_immutable_fields_are_refused_with_the_crds_messages(twin: Served, applied: list[Path]) -> None:
    err = _refused(twin, "patch", "bfb", "bf-bundle", "-n", NS, "--type", "merge", "-p",
                   '{"spec":{"url":"https://example.com/other.bfb"}}')
    assert 'spec: Invalid value: "object": Value is immutable' in err
    err = _refused(twin, "patch", "dpuflavor", "dpf-provisioning-hbn", "-n", NS, "--type", "json", "-p",
                   '[{"op":"replace","path":"/spec/bfcfgParameters/0","value":"UPDATE_ATF_UEFI=no"}]')
    assert 'spec: Invalid value: "object": DPUFlavor spec is immutable' in err


def test_every_bad_field_is_listed_in_kube_openapi_wording(twin: Served, applied: list[Path]) -> None:
    err = _refused(twin, "patch", "dpucluster", "dpu-cplane-tenant1", "-n", "dpu-cplane-tenant1", "--type", "merge", "-p",
                   '{"spec":{"maxNodes":0,"clusterEndpoint":{"keepalived":{"virtualRouterID":300}}}}')
    assert "* spec.maxNodes: Invalid value: 0: spec.maxNodes in body should be greater than or equal to 1" in err
    assert ("* spec.clusterEndpoint.keepalived.virtualRouterID: Invalid value: 300: "
            "spec.clusterEndpoint.keepalived.virtualRouterID in body should be less than or equal to 255") in err
    err = _refused(twin, "patch", "dpuset", "dpuset", "-n", NS, "--type", "merge", "-p",
                   '{"spec":{"strategy":{"type":"Sideways"}}}')
    assert 'spec.strategy.type: Unsupported value: "Sideways": supported values: "Recreate", "RollingUpdate"' in err


def test_the_status_of_a_refusal_is_apimachinerys(twin: Served, applied: list[Path]) -> None:
    # The wire Status itself, as any client (client-go, the python client) receives it.
    config = yaml.safe_load(twin.kubeconfig.read_text())
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    ctx = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    request = urllib.request.Request(
        f"{cluster['server']}/apis/provisioning.dpu.nvidia.com/v1alpha1/namespaces/{NS}/bfbs", method="POST",
        headers={"Authorization": f"Bearer {user['token']}", "Content-Type": "application/json"},
        data=json.dumps({"apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "BFB",
                         "metadata": {"name": "two-bad", "namespace": NS},
                         "spec": {"url": "ftp://example.com/x.iso", "fileName": "no spaces.bfb"}}).encode())
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, context=ctx, timeout=30)
    assert refused.value.code == 422
    status = json.loads(refused.value.read())
    assert status["code"] == 422 and status["reason"] == "Invalid"
    assert status["details"]["group"] == "provisioning.dpu.nvidia.com" and status["details"]["kind"] == "BFB"
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.url", "spec.fileName"]
    assert status["message"].startswith('BFB.provisioning.dpu.nvidia.com "two-bad" is invalid: [spec.url: Invalid value: ')


def test_the_served_crds_carry_dpfs_validation_rules(twin: Served) -> None:
    crd = json.loads(twin.kubectl("get", "crd", "dpus.provisioning.dpu.nvidia.com", "-o", "json").stdout)
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["nodeName"]["x-kubernetes-validations"] == [{"message": "Value is immutable", "rule": "self == oldSelf"}]
    assert spec["cluster"]["properties"]["name"]["x-kubernetes-validations"] == [
        {"message": "Value is immutable", "rule": "self==oldSelf"}]


def test_field_and_label_selectors_and_a_watch_from_a_list_resource_version(twin: Served, applied: list[Path]) -> None:
    names = twin.kubectl("get", "dpuserviceinterfaces", "-A", "--field-selector",
                         f"metadata.namespace={NS},metadata.name!=p0", "-o", "name").stdout.split()
    assert "dpuserviceinterface.svc.dpu.nvidia.com/p1" in names and "dpuserviceinterface.svc.dpu.nvidia.com/p0" not in names
    twin.kubectl("label", "dpuserviceipam", "pool1", "-n", NS, "tier=fabric")
    assert twin.kubectl("get", "dpuserviceipams", "-n", NS, "-l", "tier in (fabric,edge)", "-o", "name").stdout.split() == [
        "dpuserviceipam.svc.dpu.nvidia.com/pool1"]
    assert twin.kubectl("get", "dpuserviceipams", "-n", NS, "-l", "!tier", "-o", "name").stdout.split() == [
        "dpuserviceipam.svc.dpu.nvidia.com/loopback", "dpuserviceipam.svc.dpu.nvidia.com/pool2"]
    base = f"/apis/svc.dpu.nvidia.com/v1alpha1/namespaces/{NS}/dpuserviceipams"
    rv = json.loads(twin.kubectl("get", "--raw", base).stdout)["metadata"]["resourceVersion"]
    twin.kubectl("annotate", "dpuserviceipam", "loopback", "-n", NS, "checked=yes")
    watch = twin.kubectl("get", "--raw", f"{base}?watch=1&resourceVersion={rv}&timeoutSeconds=1", timeout=30)
    events = [json.loads(line) for line in watch.stdout.splitlines() if line.strip()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("MODIFIED", "loopback")]
    assert events[0]["object"]["metadata"]["annotations"]["checked"] == "yes"


def test_content_in_a_namespace_that_does_not_exist_is_refused(twin: Served, guide_dir: Path) -> None:
    bfb = next(f for f in sorted(guide_dir.iterdir()) if f.name.endswith("__bfb.yaml")).read_text()
    moved = bfb.replace(f"namespace: {NS}", "namespace: nowhere")
    try:
        err = _refused(twin, "apply", "-f", "-", stdin=moved)
    finally:
        twin.kubectl("delete", "bfb", "bf-bundle", "-n", "nowhere", "--ignore-not-found", "--wait=false")
    assert 'namespaces "nowhere" not found' in err


def test_allow_missing_namespaces_accepts_content_without_its_namespace(
        tmp_path: Path, guide_dir: Path) -> None:
    require_real("kubectl", KUBECTL.exists(), f"{KUBECTL} is missing")
    scenario = tmp_path / "fleet.yaml"
    scenario.write_text("name: lenient\nseed: 9\nfleet:\n  racks: 1\n  hosts_per_rack: 1\n")
    served = start_serve(tmp_path, scenario, "--allow-missing-namespaces")
    try:
        bfb = next(f for f in sorted(guide_dir.iterdir()) if f.name.endswith("__bfb.yaml")).read_text()
        served.kubectl("apply", "-f", "-", stdin=bfb.replace(f"namespace: {NS}", "namespace: nowhere"))
        assert served.kubectl("get", "bfbs", "-n", "nowhere", "-o", "name").stdout.split() == [
            "bfb.provisioning.dpu.nvidia.com/bf-bundle"]
        assert served.kubectl("get", "namespace", "nowhere", check=False).returncode != 0
    finally:
        stop_serve(served)


def test_namespace_lifecycle_active_phase_and_deletion_of_content(twin: Served, guide_dir: Path) -> None:
    # Named apart from the guides' bf-bundle: vbfb refuses deleting any BFB a DPUSet names, in any namespace.
    bfb = (next(f for f in sorted(guide_dir.iterdir()) if f.name.endswith("__bfb.yaml")).read_text()
           .replace("name: bf-bundle", "name: doomed-bundle"))
    # A namespace made through the API is Active at once.
    twin.kubectl("create", "namespace", "doomed")
    assert twin.kubectl("get", "namespace", "doomed", "-o", "jsonpath={.status.phase}").stdout == "Active"
    twin.kubectl("apply", "-f", "-", stdin=bfb.replace(f"namespace: {NS}", "namespace: doomed"))
    twin.kubectl("create", "configmap", "held", "-n", "doomed", "--from-literal=a=b")
    twin.kubectl("patch", "configmap", "held", "-n", "doomed", "-p", '{"metadata":{"finalizers":["example.com/hold"]}}')
    twin.kubectl("delete", "namespace", "doomed", "--wait=false")
    # Terminating while a finalizer holds content; the rest of the content is deleted, new content refused.
    assert twin.kubectl("get", "namespace", "doomed", "-o", "jsonpath={.status.phase}").stdout == "Terminating"
    twin.kubectl("wait", "--for=delete", "bfb", "--all", "-n", "doomed", "--timeout=30s")
    held = twin.kubectl("get", "configmap", "held", "-n", "doomed", "-o", "jsonpath={.metadata.deletionTimestamp}").stdout
    assert held
    err = _refused(twin, "apply", "-f", "-", stdin=bfb.replace(f"namespace: {NS}", "namespace: doomed")
                   .replace("name: doomed-bundle", "name: late"))
    assert ('bfbs.provisioning.dpu.nvidia.com "late" is forbidden: unable to create new content in namespace doomed '
            "because it is being terminated") in err
    twin.kubectl("patch", "configmap", "held", "-n", "doomed", "--type", "json", "-p",
                 '[{"op":"remove","path":"/metadata/finalizers"}]')
    twin.kubectl("wait", "--for=delete", "namespace/doomed", "--timeout=30s")
    assert twin.kubectl("get", "bfb,configmap", "-n", "doomed", "-o", "name").stdout.strip() == ""


def test_a_namespace_whose_content_a_webhook_protects_stays_terminating(twin: Served, guide_dir: Path) -> None:
    bfb = next(f for f in sorted(guide_dir.iterdir()) if f.name.endswith("__bfb.yaml")).read_text()
    twin.kubectl("create", "namespace", "stuck")
    twin.kubectl("apply", "-f", "-", stdin=bfb.replace(f"namespace: {NS}", "namespace: stuck"))
    # The DELETE of the namespace succeeds; deleting its bf-bundle is refused by vbfb (the guides' DPUSet names
    # bf-bundle), so the namespace controller keeps retrying and the namespace stays Terminating.
    twin.kubectl("delete", "namespace", "stuck", "--wait=false")
    assert twin.kubectl("get", "namespace", "stuck", "-o", "jsonpath={.status.phase}").stdout == "Terminating"
    left = twin.kubectl("get", "bfb", "bf-bundle", "-n", "stuck", "-o", "jsonpath={.metadata.deletionTimestamp}")
    assert left.stdout == ""
