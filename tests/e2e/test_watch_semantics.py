"""The official kubernetes python client against the twin API server (in process, TLS + a twin-issued
token): list+watch from a resourceVersion, bookmarks, 410 Gone and re-list, paging with continue tokens,
label/field selectors, the status subresource, and the Status error codes."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from dpf_core.store.memory import MemoryStore
from dpf_sim.apiserver import ApiServer, ServerConfig, ServerThread, TokenAuthority, self_signed

try:
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config
    from kubernetes import watch as k8s_watch
except ImportError:  # the fixture below skips (or fails under DPF_REQUIRE_REAL=1) with the reason
    k8s = k8s_config = k8s_watch = None

pytestmark = pytest.mark.real

DPU_GROUP, DPU_VERSION = "provisioning.dpu.nvidia.com", "v1alpha1"


@dataclass
class Api:
    store: MemoryStore
    server: ApiServer
    thread: ServerThread
    token: str
    ca: bytes
    core: Any
    custom: Any

    def raw(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
            token: str | None = None) -> tuple[int, dict[str, str], Any]:
        ctx = ssl.create_default_context(cadata=self.ca.decode())
        conn = http.client.HTTPSConnection("127.0.0.1", self.thread.port, context=ctx, timeout=10)
        data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if token != "":
            hdrs["Authorization"] = f"Bearer {token or self.token}"
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
        conn.close()
        return resp.status, dict(resp.getheaders()), json.loads(payload) if payload else None


@pytest.fixture
def api(kubernetes_client_available: None) -> Iterator[Api]:
    store = MemoryStore(name="host", history=50)
    authority = TokenAuthority()
    cert = self_signed()
    server = ApiServer(lambda: {"host": store}, authority=authority, config=ServerConfig(bookmark_interval=0.2))
    thread = ServerThread(server, ssl_context=cert.server_context())
    url = thread.start()
    token = authority.issue("host")
    cfg = k8s.Configuration()
    k8s_config.load_kube_config_from_dict({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": url, "certificate-authority-data": cert.ca_data}}],
        "users": [{"name": "t", "user": {"token": token}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
    }, client_configuration=cfg)
    api_client = k8s.ApiClient(cfg)
    try:
        yield Api(store, server, thread, token, cert.cert_pem, k8s.CoreV1Api(api_client), k8s.CustomObjectsApi(api_client))
    finally:
        api_client.close()
        thread.stop()


def _cm(name: str, labels: dict[str, str] | None = None, data: dict[str, str] | None = None) -> Any:
    return k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name, labels=labels), data=data or {"k": name})


def _dpu(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{DPU_GROUP}/{DPU_VERSION}", "kind": "DPU", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": "worker-1", "bfb": "bf-bundle"}}


def test_list_then_watch_from_its_resource_version_sees_exactly_the_later_changes(api: Api) -> None:
    for n in ("a", "b", "c"):
        api.core.create_namespaced_config_map("default", _cm(n))
    listed = api.core.list_namespaced_config_map("default")
    assert [i.metadata.name for i in listed.items] == ["a", "b", "c"]
    api.core.create_namespaced_config_map("default", _cm("d"))
    api.core.patch_namespaced_config_map("a", "default", {"data": {"k": "changed"}})
    api.core.delete_namespaced_config_map("b", "default")
    events = list(k8s_watch.Watch().stream(api.core.list_namespaced_config_map, "default",
                                          resource_version=listed.metadata.resource_version, timeout_seconds=1))
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "d"), ("MODIFIED", "a"), ("DELETED", "b")]
    assert events[1]["object"].data == {"k": "changed"}
    rvs = [int(e["object"].metadata.resource_version) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(listed.metadata.resource_version)


def test_watch_without_resource_version_starts_with_the_current_objects(api: Api) -> None:
    api.core.create_namespaced_config_map("default", _cm("x"))
    events = list(k8s_watch.Watch().stream(api.core.list_namespaced_config_map, "default", timeout_seconds=1))
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "x")]


def test_bookmarks_carry_the_current_resource_version(api: Api) -> None:
    api.core.create_namespaced_config_map("default", _cm("x"))
    rv = api.core.list_namespaced_config_map("default").metadata.resource_version
    api.core.create_namespaced_config_map("default", _cm("y"))
    w = k8s_watch.Watch()
    events = list(w.stream(api.core.list_namespaced_config_map, "default", resource_version=rv, allow_watch_bookmarks=True,
                           timeout_seconds=1))
    types = [e["type"] for e in events]
    assert types[0] == "ADDED" and "BOOKMARK" in types
    assert w.resource_version == api.store.current_resource_version()


def test_too_old_resource_version_is_410_and_a_relist_recovers(api: Api) -> None:
    api.core.create_namespaced_config_map("default", _cm("first"))
    old = api.core.list_namespaced_config_map("default").metadata.resource_version
    for i in range(60):  # more than the store's 50 events of history
        api.core.patch_namespaced_config_map("first", "default", {"data": {"k": str(i)}})
    with pytest.raises(k8s.ApiException) as gone:
        list(k8s_watch.Watch().stream(api.core.list_namespaced_config_map, "default", resource_version=old, timeout_seconds=1))
    assert gone.value.status == 410
    fresh = api.core.list_namespaced_config_map("default")
    api.core.create_namespaced_config_map("default", _cm("second"))
    events = list(k8s_watch.Watch().stream(api.core.list_namespaced_config_map, "default",
                                          resource_version=fresh.metadata.resource_version, timeout_seconds=1))
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "second")]


def test_paging_serves_one_consistent_snapshot_and_expires(api: Api) -> None:
    for i in range(7):
        api.core.create_namespaced_config_map("default", _cm(f"cm-{i}"))
    page1 = api.core.list_namespaced_config_map("default", limit=3)
    assert [i.metadata.name for i in page1.items] == ["cm-0", "cm-1", "cm-2"]
    assert page1.metadata.remaining_item_count == 4 and page1.metadata._continue
    api.core.create_namespaced_config_map("default", _cm("cm-3a"))  # after the snapshot: not in this list
    page2 = api.core.list_namespaced_config_map("default", limit=3, _continue=page1.metadata._continue)
    page3 = api.core.list_namespaced_config_map("default", limit=3, _continue=page2.metadata._continue)
    assert [i.metadata.name for i in page2.items + page3.items] == ["cm-3", "cm-4", "cm-5", "cm-6"]
    assert page3.metadata._continue is None
    assert page1.metadata.resource_version == page3.metadata.resource_version
    api.server.expire_continue_tokens()
    with pytest.raises(k8s.ApiException) as expired:
        api.core.list_namespaced_config_map("default", limit=3, _continue=page1.metadata._continue)
    assert expired.value.status == 410 and json.loads(expired.value.body)["reason"] == "Expired"
    with pytest.raises(k8s.ApiException) as bad:
        api.core.list_namespaced_config_map("default", limit=3, _continue="not-a-token")
    assert bad.value.status == 400


def test_label_and_field_selectors_on_list_and_watch(api: Api) -> None:
    api.core.create_namespaced_config_map("default", _cm("a", {"app": "web", "tier": "front"}))
    api.core.create_namespaced_config_map("default", _cm("b", {"app": "db"}))
    api.core.create_namespaced_config_map("default", _cm("c", {"app": "web"}))
    names = [i.metadata.name for i in api.core.list_namespaced_config_map("default", label_selector="app in (web),!tier").items]
    assert names == ["c"]
    names = [i.metadata.name for i in api.core.list_namespaced_config_map("default", field_selector="metadata.name!=a").items]
    assert names == ["b", "c"]
    with pytest.raises(k8s.ApiException) as unsupported:
        api.core.list_namespaced_config_map("default", field_selector="data.k=a")
    assert unsupported.value.status == 400
    rv = api.core.list_namespaced_config_map("default").metadata.resource_version
    api.core.patch_namespaced_config_map("c", "default", {"metadata": {"labels": {"app": "api"}}})  # leaves app=web
    api.core.patch_namespaced_config_map("b", "default", {"metadata": {"labels": {"app": "web"}}})  # enters it
    events = list(k8s_watch.Watch().stream(api.core.list_namespaced_config_map, "default", label_selector="app=web",
                                          resource_version=rv, timeout_seconds=1))
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("DELETED", "c"), ("ADDED", "b")]


def test_custom_resource_status_subresource_and_errors(api: Api) -> None:
    created = api.custom.create_namespaced_custom_object(DPU_GROUP, DPU_VERSION, "default", "dpus", _dpu("dpu-1"))
    assert created["status"]["phase"] == "Initializing"
    # The main resource ignores status; the status subresource ignores everything else.
    patched = api.custom.patch_namespaced_custom_object(DPU_GROUP, DPU_VERSION, "default", "dpus", "dpu-1",
                                                        {"status": {"phase": "Ready"}, "metadata": {"labels": {"a": "b"}}})
    assert patched["status"]["phase"] == "Initializing" and patched["metadata"]["labels"] == {"a": "b"}
    st = api.custom.patch_namespaced_custom_object_status(DPU_GROUP, DPU_VERSION, "default", "dpus", "dpu-1",
                                                          {"status": {"phase": "Pending"}, "metadata": {"labels": {"c": "d"}}})
    assert st["status"]["phase"] == "Pending" and st["metadata"]["labels"] == {"a": "b"}
    with pytest.raises(k8s.ApiException) as exists:
        api.custom.create_namespaced_custom_object(DPU_GROUP, DPU_VERSION, "default", "dpus", _dpu("dpu-1"))
    assert exists.value.status == 409 and json.loads(exists.value.body)["reason"] == "AlreadyExists"
    stale = {**created, "metadata": {**created["metadata"], "labels": {"x": "y"}}}
    with pytest.raises(k8s.ApiException) as conflict:
        api.custom.replace_namespaced_custom_object(DPU_GROUP, DPU_VERSION, "default", "dpus", "dpu-1", stale)
    assert conflict.value.status == 409 and json.loads(conflict.value.body)["reason"] == "Conflict"
    with pytest.raises(k8s.ApiException) as invalid:
        api.custom.patch_namespaced_custom_object(DPU_GROUP, DPU_VERSION, "default", "dpus", "dpu-1",
                                                  {"spec": {"nodeEffect": {"drain": {"automaticNodeReboot": "often"}}}})
    body = json.loads(invalid.value.body)
    assert invalid.value.status == 422 and body["reason"] == "Invalid"
    assert any("nodeEffect.drain.automaticNodeReboot" in c["field"] for c in body["details"]["causes"])
    with pytest.raises(k8s.ApiException) as missing:
        api.custom.get_namespaced_custom_object(DPU_GROUP, DPU_VERSION, "default", "dpus", "nope")
    assert missing.value.status == 404 and json.loads(missing.value.body)["details"]["kind"] == "dpus"


def test_json_patch_test_op_failure_is_422(api: Api) -> None:
    api.core.create_namespaced_config_map("default", _cm("p", data={"k": "v"}))
    code, _, body = api.raw("PATCH", "/api/v1/namespaces/default/configmaps/p", [{"op": "test", "path": "/data/k", "value": "w"}],
                            {"Content-Type": "application/json-patch+json"})
    assert code == 422 and body["reason"] == "Invalid"
    code, _, body = api.raw("PATCH", "/api/v1/namespaces/default/configmaps/p",
                            [{"op": "test", "path": "/data/k", "value": "v"}, {"op": "replace", "path": "/data/k", "value": "w"}],
                            {"Content-Type": "application/json-patch+json"})
    assert code == 200 and body["data"] == {"k": "w"}


def test_server_side_apply_owns_fields_and_conflicts(api: Api) -> None:
    path = "/api/v1/namespaces/default/configmaps/s?fieldManager={m}"
    cfg = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"a": "1", "b": "2"}}
    code, _, body = api.raw("PATCH", path.format(m="one"), cfg, {"Content-Type": "application/apply-patch+yaml"})
    assert code == 201
    code, _, body = api.raw("PATCH", path.format(m="two"), {**cfg, "data": {"a": "9"}}, {"Content-Type": "application/apply-patch+yaml"})
    assert code == 409 and body["details"]["causes"] == [{"reason": "FieldManagerConflict", "message": 'conflict with "one"', "field": ".data.a"}]
    # Applying the same value is no conflict: both share the field.
    code, _, body = api.raw("PATCH", path.format(m="two"), {**cfg, "data": {"a": "1"}}, {"Content-Type": "application/apply-patch+yaml"})
    assert code == 200
    # "one" drops b from its configuration: b is removed (nobody else owns it); a stays (two owns it too).
    code, _, body = api.raw("PATCH", path.format(m="one"), {**cfg, "data": {}}, {"Content-Type": "application/apply-patch+yaml"})
    assert code == 200 and body["data"] == {"a": "1"}
    code, _, body = api.raw("PATCH", "/api/v1/namespaces/default/configmaps/s", cfg, {"Content-Type": "application/apply-patch+yaml"})
    assert code == 400  # apply needs a field manager


def test_auth_content_type_size_and_throttling(api: Api) -> None:
    code, _, body = api.raw("GET", "/api/v1/namespaces/default/configmaps", token="")
    assert code == 401 and body["reason"] == "Unauthorized"
    code, _, _ = api.raw("GET", "/api/v1/namespaces/default/configmaps", token="twin.not-a-token")
    assert code == 401
    code, _, _ = api.raw("GET", "/version", token="")
    assert code == 200
    dpu = _dpu("d")
    code, _, body = api.raw("POST", f"/apis/{DPU_GROUP}/{DPU_VERSION}/namespaces/default/dpus", dpu, {"Content-Type": "text/plain"})
    assert code == 415
    code, _, _ = api.raw("POST", f"/apis/{DPU_GROUP}/{DPU_VERSION}/namespaces/default/dpus", dpu)
    assert code == 201
    code, _, body = api.raw("PATCH", f"/apis/{DPU_GROUP}/{DPU_VERSION}/namespaces/default/dpus/d", {"metadata": {"labels": {"a": "b"}}},
                            {"Content-Type": "application/strategic-merge-patch+json"})
    assert code == 415 and body["reason"] == "UnsupportedMediaType"
    huge = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"x": "y" * (4 * 1024 * 1024)}}
    code, _, body = api.raw("POST", "/api/v1/namespaces/default/configmaps", huge)
    assert code == 413
    # With every request slot taken, the next request is told to come back later.
    api.server.config.max_inflight = 1
    lock = api.server.shared.lock
    lock.acquire()  # the twin is "stepping": the first request waits for the lock, holding the only slot
    try:
        first: list[int] = []
        waiter = threading.Thread(target=lambda: first.append(api.raw("GET", "/api/v1/namespaces/default/configmaps")[0]))
        waiter.start()
        for _ in range(100):
            if api.server.shared.inflight:
                break
            threading.Event().wait(0.01)
        code, headers, body = api.raw("GET", "/api/v1/namespaces/default/configmaps")
        assert code == 429 and headers.get("Retry-After") == "1" and body["reason"] == "TooManyRequests"
    finally:
        lock.release()
    waiter.join(10)
    assert first == [200]
