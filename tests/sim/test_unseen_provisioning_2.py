"""Provisioning fidelity, round 2: what round 1 (test_unseen_provisioning.py) found and left.

- A Secret written with `stringData` is stored as Kubernetes stores it (folded into `data`), through the
  twin's stores and its API server (kubectl apply included), and the DPU-cluster readers find the kubeconfig.
- The cluster managers run as DPF's operator deploys them from the DPFOperatorConfig: `static-cluster-manager`
  only when configured, `kamaji-cluster-manager` unless disabled.
- A refused apply names the scenario `file:line` of the document it refused.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import yaml
from real_rule import require_real

from dpf_core.api.external import Secret, TenantControlPlane
from dpf_core.api.provisioning import DPUCluster, DPUClusterPhase
from dpf_core.store.memory import MemoryStore
from dpf_core.store.protocol import WatchEvent
from dpf_sim.runner import Runner
from dpf_sim.scenario import load_scenario, load_scenario_text

NS = "dpf-operator-system"
PROV = "provisioning.dpu.nvidia.com/v1alpha1"
KUBECONFIG = yaml.safe_dump({
    "apiVersion": "v1", "kind": "Config", "current-context": "admin@lab",
    "clusters": [{"name": "lab", "cluster": {"server": "https://192.0.2.10:6443"}}],
    "users": [{"name": "admin", "user": {"token": "t"}}],
    "contexts": [{"name": "admin@lab", "context": {"cluster": "lab", "user": "admin"}}]})
SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "lab-kubeconfig", "namespace": NS},
          "stringData": {"admin.conf": KUBECONFIG}}
STATIC = {"apiVersion": PROV, "kind": "DPUCluster", "metadata": {"name": "lab", "namespace": NS},
          "spec": {"type": "static", "maxNodes": 10, "version": "v1.30.2", "kubeconfig": "lab-kubeconfig"}}
KAMAJI = {"apiVersion": PROV, "kind": "DPUCluster", "metadata": {"name": "tenant", "namespace": NS},
          "spec": {"type": "kamaji", "maxNodes": 10, "version": "v1.30.2"}}


def operator_config(**components: Any) -> dict[str, Any]:
    return {"apiVersion": "operator.dpu.nvidia.com/v1alpha1", "kind": "DPFOperatorConfig",
            "metadata": {"name": "dpfoperatorconfig", "namespace": NS},
            "spec": {"provisioningController": {"bfbPVCName": "bfb-pvc"}, **components}}


def config_patch(at: str, spec: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {"at": at, "patch": {"kind": "DPFOperatorConfig", "name": "dpfoperatorconfig",
                                                "namespace": NS, "patch": {"spec": spec}}}
    return {**step, "name": name} if name else step


def runner(timeline: list[dict[str, Any]], expect: list[dict[str, Any]] | None = None, until: str | None = None) -> Runner:
    doc: dict[str, Any] = {"name": "round-2", "fleet": {"racks": 1, "hostsPerRack": 1}, "timeline": timeline,
                           "expect": expect or []}
    if until:
        doc["until"] = until
    return Runner(load_scenario_text(yaml.safe_dump(doc)), progress=False)


def cluster_history(r: Runner, name: str) -> list[tuple[float, str, list[str], list[str]]]:
    """(time, phase, condition types, finalizers) of every stored version of DPUCluster `name` in the host store."""
    seen: list[tuple[float, str, list[str], list[str]]] = []

    def record(store: str, ev: WatchEvent) -> None:
        o = ev.object
        if store == "host" and isinstance(o, DPUCluster) and o.name == name and ev.type != "DELETED":
            seen.append((r.twin.now, str(o.status.phase), [c.type for c in o.status.conditions], list(o.metadata.finalizers)))

    r.twin.on_event(record)
    return seen


# --- Secrets ----------------------------------------------------------------------------------------------


def test_a_string_data_kubeconfig_is_stored_in_data_and_the_static_cluster_comes_up() -> None:
    r = runner([{"at": "0s", "apply": {"manifests": [SECRET, STATIC]}}],
               [{"await": {"name": "ready", "kind": "DPUCluster", "phase": "Ready", "within": "2m"}}])
    result = r.run()
    assert result.passed, [o.as_dict() for o in result.failures]
    wire = r.twin.host.get(Secret, "lab-kubeconfig", NS).wire()
    assert "stringData" not in wire and base64.b64decode(wire["data"]["admin.conf"]).decode() == KUBECONFIG
    assert f"{NS}/lab" in r.twin.dpu_clusters  # the user's cluster, stood up from the folded kubeconfig


def test_dpu_bootstrap_token_secrets_are_stored_in_data() -> None:
    """The DPU controller writes kubeadm's bootstrap token with stringData; the DPU cluster keeps it in data."""
    loaded = load_scenario(Path(__file__).resolve().parent / "scenarios_unseen" / "static.yaml")
    r = Runner(loaded, progress=False)
    result = r.run()
    assert result.passed, [o.as_dict() for o in result.failures]
    tokens = [s for store in r.twin.dpu_clusters.values() for s in store.list(Secret, "kube-system")
              if s.type == "bootstrap.kubernetes.io/token"]
    assert len(tokens) == 2
    for token in tokens:
        assert token.string_data == {} and "stringData" not in token.wire()
        assert token.value("usage-bootstrap-authentication") == b"true"
        assert token.name == "bootstrap-token-" + (token.value("token-id") or b"").decode()


# --- cluster managers follow the DPFOperatorConfig ---------------------------------------------------------


def test_a_static_cluster_waits_for_the_static_manager_the_config_does_not_enable() -> None:
    """DPF's operator leaves static-cluster-manager out unless `staticClusterManager` is configured: the
    DPUCluster sits in Creating, untouched by any cluster manager, until the config adds the block."""
    r = runner([{"at": "0s", "apply": {"manifests": [operator_config(), SECRET, STATIC]}},
                config_patch("5m", {"staticClusterManager": {}}, name="enable")],
               [{"await": {"name": "ready", "kind": "DPUCluster", "phase": "Ready", "after": "enable", "within": "1m"}}])
    history = cluster_history(r, "lab")
    result = r.run()
    assert result.passed, [o.as_dict() for o in result.failures]
    before = [h for h in history if h[0] < 300]
    assert before and before[-1][1] == DPUClusterPhase.CREATING
    assert all("Created" not in types and "provisioning.dpu.nvidia.com/cluster-manager-clean-up" not in fins
               for _, _, types, fins in before)
    assert min(t for t, phase, _, _ in history if phase == DPUClusterPhase.READY) == 300.0
    assert set(r.twin.cluster_managers) == {"kamaji-cluster-manager", "static-cluster-manager"}


def test_a_disabled_static_manager_leaves_its_finalizer_until_it_runs_again() -> None:
    """Pruned with its Deployment, the manager keeps nothing running: a static DPUCluster deleted meanwhile
    waits on `cluster-manager-clean-up` (as in DPF) and goes once the manager is back."""
    r = runner([{"at": "0s", "apply": {"manifests": [operator_config(staticClusterManager={}), SECRET, STATIC]}},
                config_patch("2m", {"staticClusterManager": {"disable": True}}),
                {"at": "3m", "name": "delete", "delete": {"kind": "DPUCluster", "name": "lab", "namespace": NS}},
                config_patch("6m", {"staticClusterManager": {"disable": False}})],
               [{"await": {"name": "ready", "kind": "DPUCluster", "phase": "Ready", "within": "1m"}},
                {"invariant": {"name": "gone", "type": "noLeftovers", "params": {"kinds": ["DPUCluster"]},
                               "after": "delete", "within": "4m"}}])
    history = cluster_history(r, "lab")
    managers: list[tuple[float, list[str]]] = []
    r.twin.on_event(lambda store, ev: managers.append((r.twin.now, sorted(r.twin.cluster_managers))))
    result = r.run()
    assert result.passed, [o.as_dict() for o in result.failures]
    waiting = [fins for t, _, _, fins in history if 180 <= t < 360]
    assert waiting and all("provisioning.dpu.nvidia.com/cluster-manager-clean-up" in fins for fins in waiting)
    assert r.twin.host.try_get(DPUCluster, "lab", NS) is None
    # (each entry is taken as a store event is observed, before the twin acts on it: the 2m patch itself shows
    # the manager still running)
    assert all(m == ["kamaji-cluster-manager"] for t, m in managers if 120 < t < 360)
    assert any(m == ["kamaji-cluster-manager"] for t, m in managers if 120 < t < 360)
    assert [m.name for m in r.twin.driver.managers].count("static-cluster-manager") == 1


def test_a_disabled_kamaji_manager_creates_no_control_plane() -> None:
    r = runner([{"at": "0s", "apply": {"manifests": [operator_config(kamajiClusterManager={"disable": True}), KAMAJI]}},
                {"at": "10m", "apply": {"manifests": [{"apiVersion": "v1", "kind": "ConfigMap",
                                                       "metadata": {"name": "tick", "namespace": NS}}]}}])
    history = cluster_history(r, "tenant")
    result = r.run()
    assert result.passed, [o.as_dict() for o in result.failures]
    assert r.twin.now == 600.0
    assert history[-1][1] == DPUClusterPhase.CREATING and history[-1][2] == []
    # Neither manager runs: kamaji is disabled, static is not configured.
    assert r.twin.host.list(TenantControlPlane) == [] and r.twin.cluster_managers == {}


def test_a_paused_config_changes_no_cluster_manager() -> None:
    paused = operator_config(overrides={"paused": True}, kamajiClusterManager={"disable": True})
    r = runner([{"at": "0s", "apply": {"manifests": [paused, KAMAJI]}}],
               [{"await": {"name": "ready", "kind": "DPUCluster", "phase": "Ready", "within": "10m"}}])
    result = r.run()
    assert result.passed, [o.as_dict() for o in result.failures]
    assert set(r.twin.cluster_managers) == {"kamaji-cluster-manager", "static-cluster-manager"}


# --- a refused apply names its document's file:line ---------------------------------------------------------


def test_a_refused_document_is_named_by_file_and_line(tmp_path: Path) -> None:
    bfb = {"apiVersion": PROV, "kind": "BFB", "metadata": {"name": "bf-bundle", "namespace": NS},
           "spec": {"url": "http://bfb.example/a.bfb"}}
    changed = {**bfb, "spec": {"url": "http://bfb.example/b.bfb"}}
    (tmp_path / "more.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                                                        "metadata": {"name": "ok", "namespace": NS}})
                                        + "---\n# the same BFB, another file\n" + yaml.safe_dump(changed))
    text = f"""\
name: refused
fleet: {{racks: 1, hostsPerRack: 1}}
timeline:
  - at: 0s
    apply:
      manifests:
        - {json.dumps(bfb)}
  - at: 10s
    apply:
      manifests:
        - apiVersion: v1
          kind: ConfigMap
          metadata: {{name: fine, namespace: {NS}}}
        - {json.dumps(changed)}
  - at: 20s
    apply: [{{file: more.yaml}}]
"""
    path = tmp_path / "refused.yaml"
    path.write_text(text)
    result = Runner(load_scenario(path), progress=False).run()
    failed = {o.name: o.detail for o in result.failures}
    assert set(failed) == {"step 1", "step 2"}
    assert failed["step 1"].startswith(f"step 1 failed: {path}:14: ")
    assert failed["step 2"].startswith(f"step 2 failed: {tmp_path / 'more.yaml'}:8: ")  # its first key
    assert all("immutable" in detail for detail in failed.values())


# --- kubectl against the twin API server ---------------------------------------------------------------------


def test_kubectl_apply_of_a_string_data_secret(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    require_real("kubectl", kubectl is not None, "kubectl is not on PATH")
    try:
        from dpf_sim.apiserver import ApiServer, ServerConfig, ServerThread, TokenAuthority, self_signed
        from dpf_sim.serve import kubeconfig
    except ImportError as e:
        require_real("aiohttp", False, f"{e}; pip install -e '.[hw]'")
        return
    assert kubectl is not None
    stores = {"host": MemoryStore(name="host")}
    authority = TokenAuthority()
    server = ApiServer(lambda: stores, lock=threading.RLock(), authority=authority, config=ServerConfig())
    cert = self_signed()  # kubectl sends its bearer token over TLS only, as `dpf serve` serves it
    thread = ServerThread(server, ssl_context=cert.server_context())
    url = thread.start()
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump(kubeconfig("twin", url, authority.issue("host"), cert)))
    env = {**os.environ, "KUBECONFIG": str(config), "HOME": str(tmp_path)}

    def run(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run([kubectl, *args], capture_output=True, text=True, env=env, input=stdin, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def manifest(value: str) -> str:
        return yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"},
                               "stringData": {"admin.conf": value, "plain": "x"}})

    try:
        run("apply", "-f", "-", stdin=manifest("first"))
        got = json.loads(run("get", "secret", "s", "-o", "json"))
        assert "stringData" not in got and got["type"] == "Opaque"
        assert {k: base64.b64decode(v).decode() for k, v in got["data"].items()} == {"admin.conf": "first", "plain": "x"}
        version = got["metadata"]["resourceVersion"]
        run("apply", "-f", "-", stdin=manifest("first"))  # kubectl re-sends stringData: nothing changes
        assert json.loads(run("get", "secret", "s", "-o", "json"))["metadata"]["resourceVersion"] == version
        run("apply", "-f", "-", stdin=manifest("second"))
        got = json.loads(run("get", "secret", "s", "-o", "json"))
        assert base64.b64decode(got["data"]["admin.conf"]) == b"second" and "stringData" not in got
        stored = stores["host"].get(Secret, "s", "default")
        assert stored.string_data == {} and stored.value("plain") == b"x"
        bad = subprocess.run([kubectl, "apply", "-f", "-"], capture_output=True, text=True, env=env, timeout=60, check=False,
                             input=yaml.safe_dump({"apiVersion": "v1", "kind": "Secret",
                                                   "metadata": {"name": "bad", "namespace": "default"},
                                                   "data": {"k": "not base64!"}}))
        assert bad.returncode != 0 and "illegal base64 data at input byte 3" in bad.stderr
    finally:
        thread.stop()
