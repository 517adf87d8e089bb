"""dpf_hw.kube: the store Client over the kubernetes client, against a scripted local HTTP API.

The fake server answers what each test scripts and records every request, so the tests see what really
goes over the wire (paths, query, content types, auth header, bodies) and how real Status answers map to
dpf_core errors.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

pytest.importorskip("kubernetes", reason="dpf_hw.kube needs the kubernetes client (pip install .[hw])")

from dpf_core.api.external import Node, Pod, Secret
from dpf_core.api.provisioning import DPU, DPUPhase
from dpf_core.errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
)
from dpf_hw.kube import KubeClient, KubeClusterClients, api_error, resource_path

NS = "dpf-operator-system"
DPUS = f"/apis/provisioning.dpu.nvidia.com/v1alpha1/namespaces/{NS}/dpus"
TOKEN = "s3cr3t-token"


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


Answer = tuple[int, Any] | tuple[int, Any, dict[str, str]]


@dataclass
class FakeApi:
    routes: dict[tuple[str, str], Answer | Callable[[Seen], Answer]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def on(self, method: str, path: str, answer: Answer | Callable[[Seen], Answer]) -> None:
        self.routes[(method, path)] = answer

    def kubeconfig(self, token: str = TOKEN) -> bytes:
        return (
            "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
            f"clusters:\n- name: t\n  cluster:\n    server: {self.url}\n"
            f"users:\n- name: u\n  user:\n    token: {token}\n"
            "contexts:\n- name: t\n  context:\n    cluster: t\n    user: u\n"
        ).encode()


def _status(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
            "message": message, "details": details}


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            seen = Seen(self.command, parts.path, dict(parse_qsl(parts.query)), {k.lower(): v for k, v in self.headers.items()},
                        json.loads(raw) if raw else None)
            fake.seen.append(seen)
            answer = fake.routes.get((self.command, parts.path))
            if callable(answer):
                answer = answer(seen)
            if answer is None:
                answer = (404, _status(404, "NotFound", f"no route {self.command} {parts.path}"))
            status, body, *rest = answer
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in (rest[0] if rest else {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def client(api: FakeApi) -> Iterator[KubeClient]:
    c = KubeClient.from_kubeconfig(api.kubeconfig(), timeout=5.0)
    yield c
    c.close()


def _dpu_wire(name: str = "worker1-0000-04-00", rv: str = "7", **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "provisioning.dpu.nvidia.com/v1alpha1",
        "kind": "DPU",
        "metadata": {"name": name, "namespace": NS, "resourceVersion": rv, "uid": "u-1", "generation": 1},
        "spec": {"nodeName": "worker1", "bfb": "bf-bundle"},
        "status": {"phase": "OS Installing", **status},
    }


# --- paths ---------------------------------------------------------------------------------------------


def test_paths_follow_the_api_groups_and_scopes() -> None:
    assert resource_path(DPU.KIND, NS, "d1", "status") == f"{DPUS}/d1/status"
    assert resource_path(Pod.KIND, NS) == f"/api/v1/namespaces/{NS}/pods"
    assert resource_path(Node.KIND, "ignored-for-cluster-scope", "worker1") == "/api/v1/nodes/worker1"
    assert resource_path(DPU.KIND) == "/apis/provisioning.dpu.nvidia.com/v1alpha1/dpus"


# --- reads ---------------------------------------------------------------------------------------------


def test_get_decodes_the_model_and_sends_the_bearer_token(api: FakeApi, client: KubeClient) -> None:
    api.on("GET", f"{DPUS}/worker1-0000-04-00", (200, _dpu_wire()))
    dpu = client.get(DPU, "worker1-0000-04-00", NS)
    assert isinstance(dpu, DPU)
    assert dpu.spec.node_name == "worker1"
    assert dpu.status.phase == DPUPhase.OS_INSTALLING
    assert dpu.metadata.resource_version == "7"
    assert api.seen[-1].headers["authorization"] == f"Bearer {TOKEN}"


def test_get_missing_is_not_found_and_try_get_is_none(api: FakeApi, client: KubeClient) -> None:
    api.on("GET", f"{DPUS}/gone", (404, _status(404, "NotFound", 'dpus.provisioning.dpu.nvidia.com "gone" not found',
                                               name="gone", group="provisioning.dpu.nvidia.com", kind="dpus")))
    with pytest.raises(NotFound) as err:
        client.get(DPU, "gone", NS)
    assert err.value.name == "gone"
    assert "not found" in err.value.message
    assert client.try_get(DPU, "gone", NS) is None


def test_namespaced_kind_without_namespace_is_refused_before_any_request(api: FakeApi, client: KubeClient) -> None:
    with pytest.raises(BadRequest):
        client.get(DPU, "d1")
    assert api.seen == []


def test_list_sends_selectors_follows_continue_and_fills_item_kinds(api: FakeApi, client: KubeClient) -> None:
    path = f"/api/v1/namespaces/{NS}/pods"

    def pods(seen: Seen) -> Answer:
        # Typed core lists carry apiVersion/kind on the list, not on the items.
        if seen.query.get("continue") == "page2":
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {},
                         "items": [{"metadata": {"name": "a-dms", "namespace": NS}, "status": {"phase": "Running"}}]}
        return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"continue": "page2"},
                     "items": [{"metadata": {"name": "b-dms", "namespace": NS}, "status": {"phase": "Pending"}}]}

    api.on("GET", path, pods)
    got = client.list(Pod, NS, label_selector={"app": "dms", "tier": "x"}, field_selector={"spec.nodeName": "worker1"})
    assert [p.name for p in got] == ["a-dms", "b-dms"]  # sorted like MemoryStore
    assert all(p.kind == "Pod" and p.api_version == "v1" for p in got)
    first, second = api.seen
    assert first.query["labelSelector"] == "app=dms,tier=x"
    assert first.query["fieldSelector"] == "spec.nodeName=worker1"
    assert "continue" not in first.query
    assert second.query["continue"] == "page2"


def test_list_across_namespaces_uses_the_cluster_wide_path(api: FakeApi, client: KubeClient) -> None:
    api.on("GET", "/apis/provisioning.dpu.nvidia.com/v1alpha1/dpus",
           (200, {"kind": "DPUList", "metadata": {}, "items": [_dpu_wire("d2"), _dpu_wire("d1")]}))
    assert [d.name for d in client.list(DPU)] == ["d1", "d2"]


def test_list_with_a_label_selector_model_sends_set_based_terms(api: FakeApi, client: KubeClient) -> None:
    from dpf_core.api.meta import LabelSelector

    api.on("GET", "/api/v1/nodes", (200, {"kind": "NodeList", "metadata": {}, "items": []}))
    sel = LabelSelector.model_validate({"matchExpressions": [{"key": "role", "operator": "In", "values": ["a", "b"]}]})
    client.list(Node, label_selector=sel)
    assert api.seen[-1].query["labelSelector"] == "role in (a,b)"


def test_garbage_from_the_server_is_an_api_error_not_a_crash(api: FakeApi, client: KubeClient) -> None:
    api.on("GET", f"{DPUS}/odd", (200, {**_dpu_wire("odd"), "spec": {"nodeName": 5, "unknownField": True}}))
    with pytest.raises(ApiError, match="cannot decode"):
        client.get(DPU, "odd", NS)


# --- writes --------------------------------------------------------------------------------------------


def test_create_posts_the_wire_form_with_the_field_manager(api: FakeApi, client: KubeClient) -> None:
    def created(seen: Seen) -> Answer:
        body = dict(seen.body)
        body["metadata"] = {**body["metadata"], "uid": "new-uid", "resourceVersion": "1"}
        return 201, body

    api.on("POST", f"/api/v1/namespaces/{NS}/secrets", created)
    out = client.create(Secret.new("s1", NS, data={"admin.conf": "YQ=="}))
    assert out.metadata.uid == "new-uid"
    sent = api.seen[-1]
    assert sent.query == {"fieldManager": "dpf-operator"}
    assert sent.headers["content-type"] == "application/json"
    assert sent.body == {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1", "namespace": NS},
                         "data": {"admin.conf": "YQ=="}}


def test_create_existing_is_already_exists(api: FakeApi, client: KubeClient) -> None:
    api.on("POST", f"/api/v1/namespaces/{NS}/pods",
           (409, _status(409, "AlreadyExists", 'pods "p" already exists', name="p", kind="pods")))
    with pytest.raises(AlreadyExists):
        client.create(Pod.new("p", NS))


def test_create_invalid_keeps_every_cause(api: FakeApi, client: KubeClient) -> None:
    causes = [{"reason": "FieldValueInvalid", "message": "Invalid value: \"ftp://x\": must match", "field": "spec.url"},
              {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.fileName"}]
    api.on("POST", f"{DPUS}", (422, _status(422, "Invalid", 'DPU.provisioning.dpu.nvidia.com "d1" is invalid: ...',
                                           name="d1", kind="DPU", group="provisioning.dpu.nvidia.com", causes=causes)))
    dpu = DPU.model_validate({**_dpu_wire("d1"), "metadata": {"name": "d1", "namespace": NS}})
    with pytest.raises(Invalid) as err:
        client.create(dpu)
    assert [(c.field, c.reason) for c in err.value.causes] == [("spec.url", "FieldValueInvalid"),
                                                               ("spec.fileName", "FieldValueRequired")]
    assert err.value.name == "d1"
    assert "is invalid" in str(err.value)


def test_update_conflict_and_status_subresource(api: FakeApi, client: KubeClient) -> None:
    api.on("PUT", f"{DPUS}/d1", (409, _status(409, "Conflict", "Operation cannot be fulfilled on dpus: the object has "
                                                              "been modified; please apply your changes to the latest version")))
    api.on("PUT", f"{DPUS}/d1/status", lambda seen: (200, {**seen.body, "metadata": {**seen.body["metadata"], "resourceVersion": "9"}}))
    dpu = DPU.model_validate(_dpu_wire("d1"))
    with pytest.raises(Conflict):
        client.update(dpu)
    dpu.status.phase = DPUPhase.REBOOTING
    out = client.update_status(dpu)
    assert out.status.phase == DPUPhase.REBOOTING and out.metadata.resource_version == "9"
    assert api.seen[-1].path.endswith("/d1/status")
    assert api.seen[-1].body["metadata"]["resourceVersion"] == "7"  # optimistic concurrency goes over the wire


def test_patch_content_types_and_status_subresource(api: FakeApi, client: KubeClient) -> None:
    api.on("PATCH", f"{DPUS}/d1", (200, _dpu_wire("d1")))
    api.on("PATCH", f"{DPUS}/d1/status", (200, _dpu_wire("d1")))
    client.patch(DPU, "d1", NS, {"metadata": {"labels": {"a": "b"}}})
    assert api.seen[-1].headers["content-type"] == "application/merge-patch+json"
    client.patch(DPU, "d1", NS, [{"op": "test", "path": "/spec/bfb", "value": "x"}], "json")
    assert api.seen[-1].headers["content-type"] == "application/json-patch+json"
    assert api.seen[-1].body == [{"op": "test", "path": "/spec/bfb", "value": "x"}]
    client.patch(DPU, "d1", NS, {"status": {"phase": "Ready"}}, subresource="status")
    assert api.seen[-1].path == f"{DPUS}/d1/status"


def test_json_patch_that_is_not_a_list_is_refused_locally(api: FakeApi, client: KubeClient) -> None:
    with pytest.raises(BadRequest):
        client.patch(DPU, "d1", NS, {"op": "add"}, "json")
    assert api.seen == []


def test_failed_json_patch_test_is_invalid(api: FakeApi, client: KubeClient) -> None:
    api.on("PATCH", f"{DPUS}/d1", (422, _status(422, "Invalid", "the server rejected our request due to an error in our "
                                                                "request")))
    with pytest.raises(Invalid):
        client.patch(DPU, "d1", NS, [{"op": "test", "path": "/spec/bfb", "value": "other"}], "json")


def test_delete_sends_delete_options_with_propagation_and_preconditions(api: FakeApi, client: KubeClient) -> None:
    api.on("DELETE", f"{DPUS}/d1", (200, _dpu_wire("d1")))
    client.delete(DPU, "d1", NS, "Foreground", uid="u-1")
    body = api.seen[-1].body
    assert body == {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground",
                    "preconditions": {"uid": "u-1"}}


def test_delete_missing_is_not_found(api: FakeApi, client: KubeClient) -> None:
    with pytest.raises(NotFound):
        client.delete(Node, "nope")
    assert api.seen[-1].path == "/api/v1/nodes/nope"


def test_server_side_apply_uses_the_apply_content_type_and_force(api: FakeApi, client: KubeClient) -> None:
    api.on("PATCH", f"/api/v1/namespaces/{NS}/secrets/s1", lambda seen: (200, seen.body))
    client.apply(Secret.new("s1", NS, data={"k": "dg=="}))
    sent = api.seen[-1]
    assert sent.headers["content-type"] == "application/apply-patch+yaml"
    assert sent.query == {"fieldManager": "dpf-operator", "force": "true"}


# --- error mapping -------------------------------------------------------------------------------------


def test_throttling_carries_retry_after(api: FakeApi, client: KubeClient) -> None:
    # A write: the kubernetes client itself retries throttled GETs (client-go style) before giving up.
    api.on("POST", f"/api/v1/namespaces/{NS}/pods", (429, _status(429, "TooManyRequests", "too many requests, please try again later",
                                              retryAfterSeconds=1), {"Retry-After": "7"}))
    with pytest.raises(TooManyRequests) as err:
        client.create(Pod.new("p", NS))
    assert err.value.retry_after == 7


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (410, _status(410, "Expired", "too old resource version: 1 (5)"), Gone),
        (403, _status(403, "Forbidden", 'admission webhook "vbfb.kb.io" denied the request'), Forbidden),
        (400, _status(400, "BadRequest", "bad"), BadRequest),
        (503, "<html>upstream down</html>", ServiceUnavailable),
        (409, _status(409, "Conflict", "the object has been modified"), Conflict),
    ],
)
def test_status_bodies_map_to_core_errors(status: int, body: Any, expected: type[ApiError]) -> None:
    raw = body if isinstance(body, str) else json.dumps(body)
    err = api_error(status, raw.encode())
    assert type(err) is expected
    assert err.code == expected.code


def test_unknown_codes_keep_code_and_reason() -> None:
    err = api_error(401, json.dumps(_status(401, "Unauthorized", "Unauthorized")).encode())
    assert type(err) is ApiError
    assert (err.code, err.reason, err.message) == (401, "Unauthorized", "Unauthorized")


def test_unreachable_server_is_service_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fake = FakeApi(url=f"http://127.0.0.1:{port}")
    c = KubeClient.from_kubeconfig(fake.kubeconfig(), timeout=2.0)
    c.api.configuration.retries = 0
    with pytest.raises(ServiceUnavailable, match="unreachable"):
        c.get(Node, "worker1")


# --- DPU-cluster clients -----------------------------------------------------------------------------


def test_cluster_clients_are_cached_per_kubeconfig_and_broken_ones_are_none(api: FakeApi) -> None:
    clusters = KubeClusterClients()
    a = clusters.for_kubeconfig(api.kubeconfig("t1"))
    assert a is not None and a is clusters.for_kubeconfig(api.kubeconfig("t1"))
    b = clusters.for_kubeconfig(api.kubeconfig("t2"))
    assert b is not None and b is not a
    api.on("GET", "/api/v1/nodes/dpu-1", (200, {"metadata": {"name": "dpu-1"}}))
    assert b.get(Node, "dpu-1").name == "dpu-1"
    assert api.seen[-1].headers["authorization"] == "Bearer t2"
    assert clusters.for_kubeconfig(b"not: [a kubeconfig") is None
    clusters.close()


# --- the operator's shell pieces ---------------------------------------------------------------------


def test_event_feed_turns_watch_events_into_core_events_with_old() -> None:
    from dpf_core.store.protocol import WatchEvent
    from dpf_hw.operator import EventFeed

    got: list[WatchEvent] = []
    feed = EventFeed(got.append)
    feed.feed(DPU, None, _dpu_wire("d1", rv="1"))  # kopf's initial listing has no type
    feed.feed(DPU, "MODIFIED", _dpu_wire("d1", rv="1"))  # a relist of the same version: nothing new
    feed.feed(DPU, "MODIFIED", _dpu_wire("d1", rv="2"))
    feed.feed(DPU, "DELETED", _dpu_wire("d1", rv="3"))
    feed.feed(DPU, "ADDED", {"apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "DPU",
                             "metadata": {"name": "bad"}, "spec": {"nodeName": 7}})
    assert [(e.type, e.object.metadata.resource_version) for e in got] == [("ADDED", "1"), ("MODIFIED", "2"), ("DELETED", "3")]
    assert got[1].old is not None and got[1].old.metadata.resource_version == "1"
    assert got[2].old is not None and got[2].old.metadata.resource_version == "2"
    assert feed.undecodable == 1


def test_controller_sets_skip_what_this_build_lacks() -> None:
    from dpf_hw.operator import select_controllers

    sel = select_controllers(["provisioning", "servicechain", "bogus", "provisioning"])
    names = [c.name for c in sel.controllers]
    assert {"bfb", "dpuset", "dpu", "dpucluster"} <= set(names)
    assert len(names) == len(set(names))
    assert sel.sets == ["provisioning", "servicechain"]
    assert any("bogus" in s for s in sel.skipped)


def test_metrics_exposition_counts_results_and_histogram() -> None:
    from dpf_core.runtime import DONE, Controller, ProcessOutcome, Request
    from dpf_hw.operator import Metrics

    m = Metrics()
    m.controllers = [Controller("dpu", lambda ctx, req: None, DPU)]
    req = Request(NS, "d1")
    m.observe(ProcessOutcome("dpu", 1, req, DONE, None, "requeue_after", 5.0, 0.0, 0.0, 0.02))
    m.observe(ProcessOutcome("dpu", 2, req, DONE, RuntimeError("x"), "rate_limited", 1.0, 0.0, 0.0, 3.0))
    text = m.render()
    assert 'controller_runtime_reconcile_total{controller="dpu",result="requeue_after"} 1' in text
    assert 'controller_runtime_reconcile_total{controller="dpu",result="error"} 1' in text
    assert 'controller_runtime_reconcile_time_seconds_bucket{controller="dpu",le="0.025"} 1' in text
    assert 'controller_runtime_reconcile_time_seconds_bucket{controller="dpu",le="+Inf"} 2' in text
    assert 'workqueue_depth{name="dpu"} 0' in text
    assert "# TYPE controller_runtime_reconcile_time_seconds histogram" in text


def test_uptime_and_reboots_exec_in_the_dms_pod_of_the_host(api: FakeApi, client: KubeClient) -> None:
    from dpf_core.ports.ops import OpError, WarmReboot
    from dpf_hw.operator import DmsPodExec

    api.on("GET", "/apis/provisioning.dpu.nvidia.com/v1alpha1/dpus",
           (200, {"kind": "DPUList", "metadata": {}, "items": [_dpu_wire("worker1-0000-04-00")]}))
    api.on("GET", f"/api/v1/namespaces/{NS}/pods/worker1-0000-04-00-dms", (200, {"metadata": {"name": "worker1-0000-04-00-dms"}}))
    calls: list[tuple[str, str, list[str]]] = []
    answers = iter(["350735.47 234388.90\n", "garbage", ""])

    def fake_exec(ns: str, pod: str, container: str, command: Any) -> str:
        calls.append((ns, pod, list(command)))
        return next(answers, "")

    pod_exec = DmsPodExec(client, fake_exec)
    assert pod_exec.uptime("worker1") == pytest.approx(350735.47)
    assert calls[-1] == (NS, "worker1-0000-04-00-dms", ["cat", "/proc/uptime"])
    assert pod_exec.uptime("worker1") is None  # unparsable output: DPF treats it as "rebooting"
    assert pod_exec.uptime("worker2") is None  # no DPU on that host
    pod_exec.warm_reboot(WarmReboot(node="worker1", pci_address="0000-04-00", command="reset"))
    assert [c[2] for c in calls[-2:]] == [["bf-slr.sh", "0000-04-00", "reset", "arm"], ["bf-slr.sh", "0000-04-00", "reset", "host"]]
    with pytest.raises(OpError, match="no DMS pod"):
        pod_exec.warm_reboot(WarmReboot(node="worker9", pci_address="0000-04-00"))


def test_dms_tls_comes_from_dpf_secrets(api: FakeApi, client: KubeClient) -> None:
    import base64

    from dpf_core.ports.ops import DmsTarget, OpError
    from dpf_hw.operator import DmsTlsSource

    def b64(s: str) -> str:
        return base64.b64encode(s.encode()).decode()

    api.on("GET", f"/api/v1/namespaces/{NS}/secrets/dpf-provisioning-client-secret",
           (200, {"metadata": {"name": "c"}, "data": {"tls.crt": b64("CLIENT CERT"), "tls.key": b64("CLIENT KEY")}}))
    api.on("GET", f"/api/v1/namespaces/{NS}/secrets/d1-server-secret",
           (200, {"metadata": {"name": "s"}, "data": {"ca.crt": b64("ROOT CA")}}))
    tls = DmsTlsSource(client)(DmsTarget(f"{NS}/d1", "10.0.0.1:9339", "0000:04:00"))
    assert (tls.root_ca, tls.client_cert, tls.client_key) == (b"ROOT CA", b"CLIENT CERT", b"CLIENT KEY")
    with pytest.raises(OpError, match="d2-server-secret not found"):
        DmsTlsSource(client)(DmsTarget(f"{NS}/d2", "10.0.0.2:9339", "0000:04:00"))
