"""Hostile input against the twin's Kubernetes API server (in process, authentication on, three served clusters).

(1) A table of hand-written hostile requests, each with the exact code and reason it must get.
(2) Property tests (hypothesis) sending arbitrary methods, paths, headers, query strings and bodies (bytes,
    random JSON, YAML, mutated real DPF manifests, JSON/merge/apply patches). For every request: the answer
    is a well-formed HTTP response, every 4xx/5xx body is a `Status` whose code matches, nothing is ever a
    500, a refused request leaves every store exactly as it was (objects and resourceVersion), and the server
    still answers a health check and an authenticated list afterwards.
(3) Authentication: no token, a bad token, a revoked token, or the token of another cluster is a 401.

`FUZZ_EXAMPLES=N` scales the property tests (docs/reliability.md reports a large run); the count of fuzzed
requests is printed at the end of the module (`pytest -s` or `-rP` shows it).
"""

from __future__ import annotations

import base64
import copy
import http.client
import importlib.util
import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_from_bytes

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpf_core.api import registry
from dpf_core.store.memory import MemoryStore

try:
    from dpf_sim.apiserver import ApiServer, ServerConfig, ServerThread, TokenAuthority
except ImportError:  # aiohttp missing: the fixture below skips (or fails under DPF_REQUIRE_REAL=1) with the reason
    ApiServer = ServerConfig = ServerThread = TokenAuthority = None  # type: ignore[assignment,misc]

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parents[2]


def _e2e_conftest() -> Any:
    """tests/e2e/conftest.py as a module (its directory is no package, and pytest reuses the name "conftest")."""
    name = "_dpf_e2e_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("conftest.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


require_real = _e2e_conftest().require_real
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
MAX_BODY = 256 * 1024  # a small limit keeps the oversize cases fast; the production default is 3 MiB
CLUSTER_A, CLUSTER_B = "dpf-operator-system/cluster-a", "dpf-operator-system/cluster-b"
DPU_PATH = "/apis/provisioning.dpu.nvidia.com/v1alpha1/namespaces/default/dpus"
CM_PATH = "/api/v1/namespaces/default/configmaps"
JSON_PATCH, MERGE_PATCH, APPLY = "application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"
# Every (code, reason) the API server may answer a refused request with.
ALLOWED_FAILURES = {
    (400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (405, "MethodNotAllowed"),
    (406, "NotAcceptable"), (409, "AlreadyExists"), (409, "Conflict"), (410, "Expired"), (410, "Gone"),
    (413, "RequestEntityTooLarge"), (415, "UnsupportedMediaType"), (422, "Invalid"), (429, "TooManyRequests"),
    (417, "ExpectationFailed"), (504, "Timeout"),
}
COUNTS = {"requests": 0, "refused": 0, "accepted": 0}

registry.load_all()
SAMPLES: list[dict[str, Any]] = [
    d for f in sorted((ROOT / "samples").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if isinstance(d, dict)
]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes | None  # None: a stream (a watch) we did not read to its end

    def json(self) -> Any:
        assert self.body is not None
        return json.loads(self.body)


@dataclass
class Twin:
    thread: Any
    server: Any
    authority: Any
    stores: dict[str, MemoryStore]
    lock: threading.RLock
    tokens: dict[str, str] = field(default_factory=dict)

    def send(self, method: str, target: str, body: bytes | None = None, headers: dict[str, Any] | None = None,
             token: str | None = None) -> Reply:
        """One request on a fresh connection; `token` None = the host's token, "" = none."""
        conn = http.client.HTTPConnection("127.0.0.1", self.thread.port, timeout=20)
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            hdrs = dict(headers or {})
            auth = self.tokens["host"] if token is None else token
            if auth and "Authorization" not in hdrs:
                hdrs["Authorization"] = f"Bearer {auth}"
            if body is not None and "Content-Length" not in hdrs:
                hdrs["Content-Length"] = str(len(body))
            for k, v in hdrs.items():
                conn.putheader(k, v)
            conn.endheaders(body)
            resp = conn.getresponse()
            headers_out = {k.lower(): v for k, v in resp.getheaders()}
            streaming = headers_out.get("transfer-encoding") == "chunked" and resp.status < 400
            payload = None if streaming else resp.read()
            return Reply(resp.status, headers_out, payload)
        finally:
            conn.close()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {name: (s.current_resource_version(),
                           sorted(json.dumps(o.wire(), sort_keys=True) for o in s.all_objects()))
                    for name, s in self.stores.items()}

    def healthy(self) -> None:
        r = self.send("GET", "/healthz", token="")
        assert (r.status, r.body) == (200, b"ok"), f"health check after a hostile request: {r}"
        r = self.send("GET", CM_PATH)
        assert r.status == 200 and r.json()["kind"] == "ConfigMapList", f"list after a hostile request: {r}"


def _dpu(name: str) -> dict[str, Any]:
    return {"apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "DPU", "metadata": {"name": name},
            "spec": {"nodeName": "worker-1", "bfb": "bf-bundle"}}


def _cm(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data or {"k": "v"}}


def _collection(doc: dict[str, Any], namespace: str = "default") -> str | None:
    cls = registry.lookup(str(doc.get("apiVersion")), str(doc.get("kind")))
    if cls is None:
        return None
    info = cls.KIND
    base = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
    return f"{base}/namespaces/{namespace}/{info.plural}" if info.namespaced else f"{base}/{info.plural}"


@pytest.fixture(scope="module")
def twin() -> Iterator[Twin]:
    try:
        import aiohttp  # noqa: F401
    except ImportError as e:
        require_real("aiohttp", False, f"{e}; pip install -e '.[hw]'")
    stores = {name: MemoryStore(name=name, history=200) for name in ("host", CLUSTER_A, CLUSTER_B)}
    lock = threading.RLock()
    authority = TokenAuthority()
    # Short watches: a fuzzed ?watch=true must not hold a connection (or a worker) for half an hour.
    config = ServerConfig(max_body=MAX_BODY, watch_timeout=0.5, bookmark_interval=0.2)
    server = ApiServer(lambda: stores, lock=lock, authority=authority, config=config)
    thread = ServerThread(server)
    thread.start()
    t = Twin(thread, server, authority, stores, lock, {name: authority.issue(name) for name in stores})
    seeded = [t.send("POST", CM_PATH, json.dumps(_cm("seed")).encode(), {"Content-Type": "application/json"}),
              t.send("POST", DPU_PATH, json.dumps(_dpu("dpu-0")).encode(), {"Content-Type": "application/json"})]
    for doc in SAMPLES:
        path = _collection(doc, str((doc.get("metadata") or {}).get("namespace") or "default"))
        if path:
            t.send("POST", path, json.dumps(doc).encode(), {"Content-Type": "application/json"})
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "runner"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    seeded.append(t.send("POST", "/api/v1/namespaces/default/pods", json.dumps(pod).encode(), {"Content-Type": "application/json"}))
    seeded.append(t.send("PATCH", "/api/v1/namespaces/default/pods/runner/status", b'{"status":{"phase":"Running"}}',
                         {"Content-Type": MERGE_PATCH}))
    sa_token = base64.b64encode(b"sa-token-of-cluster-a").decode()
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
              "metadata": {"name": "dpf-sa", "annotations": {"kubernetes.io/service-account.name": "dpf"}},
              "data": {"token": sa_token}}
    seeded.append(t.send("POST", f"/clusters/{CLUSTER_A}/api/v1/namespaces/default/secrets", json.dumps(secret).encode(),
                         {"Content-Type": "application/json"}, token=t.tokens[CLUSTER_A]))
    seeded.append(t.send("POST", f"/clusters/{CLUSTER_A}{CM_PATH}", json.dumps(_cm("in-a")).encode(),
                         {"Content-Type": "application/json"}, token=t.tokens[CLUSTER_A]))
    assert [r.status for r in seeded] == [201, 201, 201, 200, 201, 201], [r.body for r in seeded]
    try:
        yield t
    finally:
        thread.stop()
        print(f"\nhostile-input: {COUNTS['requests']} requests fuzzed against the twin API server "
              f"({COUNTS['refused']} refused with a Status, {COUNTS['accepted']} accepted), 0 crashes, 0 x 500")


def check_reply(method: str, reply: Reply) -> None:
    """What every answer must be, whatever was asked."""
    assert 100 <= reply.status <= 599
    assert reply.status != 500, f"500 Internal Server Error: {reply.body!r}"
    if reply.status < 400 or method == "HEAD":
        return
    assert reply.body, f"a {reply.status} without a body"
    status = reply.json()
    assert isinstance(status, dict), status
    assert (status.get("kind"), status.get("apiVersion"), status.get("status")) == ("Status", "v1", "Failure"), status
    assert status.get("code") == reply.status, status
    assert (reply.status, status.get("reason")) in ALLOWED_FAILURES, status
    assert isinstance(status.get("message"), str) and status["message"], status
    if reply.status == 422:
        causes = status["details"]["causes"]
        assert causes and all(isinstance(c.get("field"), str) for c in causes), status


def hostile(twin: Twin, method: str, target: str, body: bytes | None = None, headers: dict[str, Any] | None = None,
            token: str | None = None) -> Reply:
    """Send one fuzzed request and check every property; returns the reply for more specific checks."""
    before = twin.snapshot()
    COUNTS["requests"] += 1
    reply = twin.send(method, target, body, headers, token)
    check_reply(method, reply)
    if reply.status >= 400:
        COUNTS["refused"] += 1
        assert twin.snapshot() == before, f"a refused request ({reply.status}) changed the store"
    else:
        COUNTS["accepted"] += 1
    twin.healthy()
    return reply


# ---- (1) the table -----------------------------------------------------------------------------------------------


def _continue(doc: Any) -> str:
    return quote(base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("="))


def _deep(n: int) -> bytes:
    return b'{"a":' * n + b"1" + b"}" * n


CM_X = f"{CM_PATH}/seed"
J = {"Content-Type": "application/json"}
TABLE: list[tuple[str, str, str, bytes | None, dict[str, str], int, str]] = [
    # (id, method, path, body, headers, code, reason)
    ("malformed-json", "POST", CM_PATH, b"{not json", J, 400, "BadRequest"),
    ("truncated-json", "POST", CM_PATH, b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":', J, 400, "BadRequest"),
    ("empty-body", "POST", CM_PATH, b"", J, 400, "BadRequest"),
    ("json-array", "POST", CM_PATH, b"[1,2,3]", J, 400, "BadRequest"),
    ("json-number", "POST", CM_PATH, b"42", J, 400, "BadRequest"),
    ("json-null", "POST", CM_PATH, b"null", J, 400, "BadRequest"),
    ("json-string", "POST", CM_PATH, b'"ConfigMap"', J, 400, "BadRequest"),
    ("invalid-utf8", "POST", CM_PATH, b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"u\xff"}}', J, 400, "BadRequest"),
    ("lone-surrogate", "POST", CM_PATH, b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"s"},"data":{"\\ud800":"x"}}',
     J, 400, "BadRequest"),
    ("nan", "POST", CM_PATH, b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"n"},"data":{"a":NaN}}', J, 400, "BadRequest"),
    ("huge-exponent", "PATCH", f"{DPU_PATH}/dpu-0", b'{"metadata":{"labels":{"a":1e999}}}', {"Content-Type": MERGE_PATCH},
     400, "BadRequest"),
    ("digits-beyond-int-limit", "POST", CM_PATH, b'{"a":' + b"9" * 5000 + b"}", J, 400, "BadRequest"),
    ("nesting-200", "POST", CM_PATH, _deep(200), J, 400, "BadRequest"),
    ("nesting-5000", "POST", CM_PATH, _deep(5000), J, 400, "BadRequest"),
    ("array-nesting-50000", "POST", CM_PATH, b"[" * 50000 + b"]" * 50000, J, 400, "BadRequest"),
    ("oversize-body", "POST", CM_PATH, json.dumps(_cm("big", x="y" * MAX_BODY)).encode(), J, 413, "RequestEntityTooLarge"),
    ("content-type-text", "POST", CM_PATH, json.dumps(_cm("t")).encode(), {"Content-Type": "text/plain"}, 415,
     "UnsupportedMediaType"),
    ("content-type-protobuf", "POST", CM_PATH, b"\x6b\x38\x73\x00", {"Content-Type": "application/vnd.kubernetes.protobuf"},
     415, "UnsupportedMediaType"),
    ("patch-as-plain-json", "PATCH", CM_X, b'{"data":{}}', J, 415, "UnsupportedMediaType"),
    ("strategic-patch-on-crd", "PATCH", f"{DPU_PATH}/dpu-0", b'{"metadata":{}}',
     {"Content-Type": "application/strategic-merge-patch+json"}, 415, "UnsupportedMediaType"),
    ("accept-html", "GET", CM_X, None, {"Accept": "text/html"}, 406, "NotAcceptable"),
    ("accept-protobuf-only", "GET", CM_PATH, None, {"Accept": "application/vnd.kubernetes.protobuf"}, 406, "NotAcceptable"),
    ("openapi-as-html", "GET", "/openapi/v2", None, {"Accept": "text/html"}, 406, "NotAcceptable"),
    ("unknown-group", "GET", "/apis/nope.example.com/v1/widgets", None, {}, 404, "NotFound"),
    ("unknown-version", "GET", "/apis/provisioning.dpu.nvidia.com/v9/dpus", None, {}, 404, "NotFound"),
    ("unknown-plural", "GET", "/api/v1/namespaces/default/widgets", None, {}, 404, "NotFound"),
    ("unknown-core-version", "GET", "/api/v2/configmaps", None, {}, 404, "NotFound"),
    ("unknown-subresource", "GET", f"{CM_X}/scale", None, {}, 404, "NotFound"),
    ("status-of-kind-without-one", "GET", f"{CM_X}/status", None, {}, 404, "NotFound"),
    ("too-deep-path", "GET", f"{CM_X}/status/more/segments", None, {}, 404, "NotFound"),
    ("cluster-scoped-with-namespace", "GET", "/api/v1/namespaces/default/nodes", None, {}, 404, "NotFound"),
    ("unknown-cluster", "GET", "/clusters/nowhere/none/api/v1/configmaps", None, {}, 404, "NotFound"),
    ("half-cluster-path", "GET", "/clusters/only-one", None, {}, 404, "NotFound"),
    ("missing-object", "GET", f"{CM_PATH}/absent", None, {}, 404, "NotFound"),
    ("name-too-long", "GET", f"{CM_PATH}/{'n' * 300}", None, {}, 404, "NotFound"),
    ("bad-label-selector", "GET", f"{CM_PATH}?labelSelector=a+in+(", None, {}, 400, "BadRequest"),
    ("bad-label-selector-chars", "GET", f"{CM_PATH}?labelSelector=%3D%3D%3D", None, {}, 400, "BadRequest"),
    ("label-selector-value-too-long", "GET", f"{CM_PATH}?labelSelector=a%3D{'b' * 100}", None, {}, 400, "BadRequest"),
    ("field-selector-no-operator", "GET", f"{CM_PATH}?fieldSelector=metadata.name", None, {}, 400, "BadRequest"),
    ("field-selector-unknown-field", "GET", f"{CM_PATH}?fieldSelector=data.k%3Dv", None, {}, 400, "BadRequest"),
    ("list-rv-negative", "GET", f"{CM_PATH}?resourceVersion=-1", None, {}, 400, "BadRequest"),
    ("list-rv-text", "GET", f"{CM_PATH}?resourceVersion=abc", None, {}, 400, "BadRequest"),
    ("list-rv-beyond-uint64", "GET", f"{CM_PATH}?resourceVersion={'9' * 30}", None, {}, 400, "BadRequest"),
    ("list-rv-from-the-future", "GET", f"{CM_PATH}?resourceVersion=999999999", None, {}, 504, "Timeout"),
    ("list-rv-match-bogus", "GET", f"{CM_PATH}?resourceVersion=1&resourceVersionMatch=Bogus", None, {}, 400, "BadRequest"),
    ("list-rv-match-without-rv", "GET", f"{CM_PATH}?resourceVersionMatch=Exact", None, {}, 400, "BadRequest"),
    ("list-rv-exact-old", "GET", f"{CM_PATH}?resourceVersion=1&resourceVersionMatch=Exact", None, {}, 410, "Expired"),
    ("get-rv-negative", "GET", f"{CM_X}?resourceVersion=-5", None, {}, 400, "BadRequest"),
    ("get-rv-text", "GET", f"{CM_X}?resourceVersion=%20%2B1", None, {}, 400, "BadRequest"),
    ("get-rv-from-the-future", "GET", f"{CM_X}?resourceVersion=999999999", None, {}, 504, "Timeout"),
    ("watch-rv-negative", "GET", f"{CM_PATH}?watch=true&resourceVersion=-1", None, {}, 400, "BadRequest"),
    ("watch-rv-text", "GET", "/api/v1/watch/namespaces/default/configmaps?resourceVersion=x", None, {}, 400, "BadRequest"),
    ("watch-timeout-nan", "GET", f"{CM_PATH}?watch=true&timeoutSeconds=nan", None, {}, 400, "BadRequest"),
    ("watch-timeout-float", "GET", f"{CM_PATH}?watch=true&timeoutSeconds=1e308", None, {}, 400, "BadRequest"),
    ("watch-of-a-subresource", "GET", "/apis/provisioning.dpu.nvidia.com/v1alpha1/watch/namespaces/default/dpus/dpu-0/status",
     None, {}, 404, "NotFound"),
    ("watch-initial-events-without-match", "GET", f"{CM_PATH}?watch=true&sendInitialEvents=true", None, {}, 422, "Invalid"),
    ("post-on-watch-path", "POST", "/api/v1/watch/namespaces/default/configmaps", json.dumps(_cm("w")).encode(), J,
     405, "MethodNotAllowed"),
    ("limit-text", "GET", f"{CM_PATH}?limit=ten", None, {}, 400, "BadRequest"),
    ("limit-float", "GET", f"{CM_PATH}?limit=1.5", None, {}, 400, "BadRequest"),
    ("limit-5000-digits", "GET", f"{CM_PATH}?limit={'9' * 5000}", None, {}, 400, "BadRequest"),
    ("list-rv-5000-digits", "GET", f"{CM_PATH}?resourceVersion={'9' * 5000}", None, {}, 400, "BadRequest"),
    ("watch-timeout-5000-digits", "GET", f"{CM_PATH}?watch=1&timeoutSeconds={'9' * 5000}", None, {}, 400, "BadRequest"),
    ("limit-beyond-int64", "GET", f"{CM_PATH}?limit={'9' * 25}", None, {}, 400, "BadRequest"),
    ("continue-garbage", "GET", f"{CM_PATH}?limit=1&continue=not-a-token", None, {}, 400, "BadRequest"),
    ("continue-json-array", "GET", f"{CM_PATH}?continue={_continue([])}", None, {}, 400, "BadRequest"),
    ("continue-json-null", "GET", f"{CM_PATH}?continue={_continue(None)}", None, {}, 400, "BadRequest"),
    ("continue-wrong-version", "GET", f"{CM_PATH}?continue={_continue({'v': 'v0', 'rv': 1, 'start': 0, 'id': 'x'})}",
     None, {}, 400, "BadRequest"),
    ("continue-negative-start", "GET",
     f"{CM_PATH}?continue={_continue({'v': 'meta.k8s.io/v1', 'rv': 1, 'start': -5, 'id': 'x'})}", None, {}, 400, "BadRequest"),
    ("continue-infinite-start", "GET",
     f"{CM_PATH}?continue=" + quote(base64.urlsafe_b64encode(b'{"v":"meta.k8s.io/v1","rv":1,"start":1e999,"id":"x"}').decode()),
     None, {}, 400, "BadRequest"),
    ("continue-object-id", "GET", f"{CM_PATH}?continue={_continue({'v': 'meta.k8s.io/v1', 'rv': 1, 'start': 0, 'id': {}})}",
     None, {}, 400, "BadRequest"),
    ("continue-forged", "GET", f"{CM_PATH}?continue={_continue({'v': 'meta.k8s.io/v1', 'rv': 3, 'start': 1, 'id': 'f00d'})}",
     None, {}, 410, "Expired"),
    ("continue-with-rv", "GET",
     f"{CM_PATH}?resourceVersion=1&continue={_continue({'v': 'meta.k8s.io/v1', 'rv': 3, 'start': 1, 'id': 'f00d'})}",
     None, {}, 400, "BadRequest"),
    ("merge-patch-array", "PATCH", CM_X, b"[]", {"Content-Type": MERGE_PATCH}, 400, "BadRequest"),
    ("merge-patch-metadata-string", "PATCH", CM_X, b'{"metadata":"x"}', {"Content-Type": MERGE_PATCH}, 400, "BadRequest"),
    ("merge-patch-rename", "PATCH", CM_X, b'{"metadata":{"name":"other"}}', {"Content-Type": MERGE_PATCH}, 400, "BadRequest"),
    ("merge-patch-rv-text", "PATCH", CM_X, b'{"metadata":{"resourceVersion":"abc"}}', {"Content-Type": MERGE_PATCH},
     409, "Conflict"),
    ("merge-patch-invalid-field", "PATCH", f"{DPU_PATH}/dpu-0", b'{"spec":{"nodeName":5}}', {"Content-Type": MERGE_PATCH},
     422, "Invalid"),
    ("merge-patch-immutable", "PATCH", f"{DPU_PATH}/dpu-0", b'{"spec":{"nodeName":"elsewhere"}}', {"Content-Type": MERGE_PATCH},
     422, "Invalid"),
    ("json-patch-object", "PATCH", CM_X, b"{}", {"Content-Type": JSON_PATCH}, 400, "BadRequest"),
    ("json-patch-bad-op", "PATCH", CM_X, b'[{"op":"frobnicate","path":"/data/k"}]', {"Content-Type": JSON_PATCH}, 400, "BadRequest"),
    ("json-patch-no-path", "PATCH", CM_X, b'[{"op":"add","value":1}]', {"Content-Type": JSON_PATCH}, 400, "BadRequest"),
    ("json-patch-relative-path", "PATCH", CM_X, b'[{"op":"add","path":"data","value":1}]', {"Content-Type": JSON_PATCH},
     400, "BadRequest"),
    ("json-patch-bad-escape", "PATCH", CM_X, b'[{"op":"add","path":"/data/a~2","value":"x"}]', {"Content-Type": JSON_PATCH},
     400, "BadRequest"),
    ("json-patch-missing-path", "PATCH", CM_X, b'[{"op":"remove","path":"/data/absent"}]', {"Content-Type": JSON_PATCH},
     422, "Invalid"),
    ("json-patch-failed-test", "PATCH", CM_X, b'[{"op":"test","path":"/data/k","value":"w"}]', {"Content-Type": JSON_PATCH},
     422, "Invalid"),
    ("json-patch-root-to-list", "PATCH", CM_X, b'[{"op":"replace","path":"","value":[1]}]', {"Content-Type": JSON_PATCH},
     400, "BadRequest"),
    ("json-patch-metadata-to-string", "PATCH", CM_X, b'[{"op":"replace","path":"/metadata","value":"s"}]',
     {"Content-Type": JSON_PATCH}, 400, "BadRequest"),
    ("json-patch-kind", "PATCH", CM_X, b'[{"op":"replace","path":"/kind","value":"Secret"}]', {"Content-Type": JSON_PATCH},
     400, "BadRequest"),
    ("apply-without-manager", "PATCH", CM_X, json.dumps(_cm("seed")).encode(), {"Content-Type": APPLY}, 400, "BadRequest"),
    ("apply-manager-too-long", "PATCH", f"{CM_X}?fieldManager={'m' * 129}", json.dumps(_cm("seed")).encode(),
     {"Content-Type": APPLY}, 400, "BadRequest"),
    ("apply-manager-control-char", "PATCH", f"{CM_X}?fieldManager=a%0Ab", json.dumps(_cm("seed")).encode(),
     {"Content-Type": APPLY}, 400, "BadRequest"),
    ("apply-force-bogus", "PATCH", f"{CM_X}?fieldManager=m&force=maybe", json.dumps(_cm("seed")).encode(),
     {"Content-Type": APPLY}, 400, "BadRequest"),
    ("apply-yaml-list", "PATCH", f"{CM_X}?fieldManager=m", b"- a\n- b\n", {"Content-Type": APPLY}, 400, "BadRequest"),
    ("apply-yaml-python-tag", "PATCH", f"{CM_X}?fieldManager=m", b"!!python/object/apply:os.system [ls]", {"Content-Type": APPLY},
     400, "BadRequest"),
    ("apply-yaml-recursive-alias", "PATCH", f"{CM_X}?fieldManager=m", b"a: &a [*a]", {"Content-Type": APPLY}, 400, "BadRequest"),
    ("apply-yaml-billion-laughs", "PATCH", f"{CM_X}?fieldManager=m",
     b"a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
     b"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n",
     {"Content-Type": APPLY}, 400, "BadRequest"),
    ("apply-yaml-two-documents", "PATCH", f"{CM_X}?fieldManager=m", b"a: 1\n---\nb: 2\n", {"Content-Type": APPLY}, 400, "BadRequest"),
    ("apply-yaml-binary", "PATCH", f"{CM_X}?fieldManager=m", b"apiVersion: v1\nkind: ConfigMap\ndata: {k: !!binary aGk=}\n",
     {"Content-Type": APPLY}, 400, "BadRequest"),
    ("apply-managed-fields", "PATCH", f"{CM_X}?fieldManager=m",
     json.dumps({**_cm("seed"), "metadata": {"name": "seed", "managedFields": [{"manager": "x"}]}}).encode(),
     {"Content-Type": APPLY}, 400, "BadRequest"),
    ("apply-conflict", "PATCH", f"{CM_X}?fieldManager=intruder", json.dumps(_cm("seed", k="taken")).encode(),
     {"Content-Type": APPLY}, 409, "Conflict"),
    ("create-kind-mismatch", "POST", CM_PATH, json.dumps({**_cm("k"), "kind": "Secret"}).encode(), J, 400, "BadRequest"),
    ("create-version-mismatch", "POST", CM_PATH, json.dumps({**_cm("k"), "apiVersion": "v2"}).encode(), J, 400, "BadRequest"),
    ("create-namespace-mismatch", "POST", CM_PATH,
     json.dumps({**_cm("k"), "metadata": {"name": "k", "namespace": "other"}}).encode(), J, 400, "BadRequest"),
    ("create-metadata-list", "POST", CM_PATH, json.dumps({**_cm("k"), "metadata": ["k"]}).encode(), J, 400, "BadRequest"),
    ("create-existing", "POST", CM_PATH, json.dumps(_cm("seed")).encode(), J, 409, "AlreadyExists"),
    ("create-bad-name", "POST", CM_PATH, json.dumps(_cm("Not_A_DNS_Name")).encode(), J, 422, "Invalid"),
    ("create-name-too-long", "POST", CM_PATH, json.dumps(_cm("n" * 300)).encode(), J, 422, "Invalid"),
    ("create-bad-namespace", "POST", "/api/v1/namespaces/Bad_NS/configmaps", json.dumps(_cm("k")).encode(), J, 422, "Invalid"),
    ("create-namespace-too-long", "POST", f"/api/v1/namespaces/{'n' * 70}/configmaps", json.dumps(_cm("k")).encode(), J,
     422, "Invalid"),
    ("create-with-rv", "POST", CM_PATH, json.dumps({**_cm("k"), "metadata": {"name": "k", "resourceVersion": "1"}}).encode(), J,
     400, "BadRequest"),
    ("create-dpu-bad-spec", "POST", DPU_PATH, json.dumps({**_dpu("d"), "spec": "x"}).encode(), J, 422, "Invalid"),
    ("create-strict-unknown-field", "POST", f"{DPU_PATH}?fieldValidation=Strict",
     json.dumps({**_dpu("d"), "spec": {"nodeName": "w", "bfb": "b", "colour": "red"}}).encode(), J, 400, "BadRequest"),
    ("create-field-validation-bogus", "POST", f"{DPU_PATH}?fieldValidation=Loose", json.dumps(_dpu("d")).encode(), J,
     400, "BadRequest"),
    ("create-dry-run-unsupported", "POST", f"{CM_PATH}?dryRun=Sometimes", json.dumps(_cm("dry")).encode(), J, 400, "BadRequest"),
    ("put-name-mismatch", "PUT", CM_X, json.dumps(_cm("other")).encode(), J, 400, "BadRequest"),
    ("put-rv-negative", "PUT", CM_X, json.dumps({**_cm("seed"), "metadata": {"name": "seed", "resourceVersion": "-1"}}).encode(),
     J, 409, "Conflict"),
    ("put-rv-huge", "PUT", CM_X,
     json.dumps({**_cm("seed"), "metadata": {"name": "seed", "resourceVersion": "9" * 40}}).encode(), J, 409, "Conflict"),
    ("put-rv-number", "PUT", CM_X, json.dumps({**_cm("seed"), "metadata": {"name": "seed", "resourceVersion": 7}}).encode(),
     J, 422, "Invalid"),
    ("put-missing", "PUT", f"{CM_PATH}/absent", json.dumps(_cm("absent")).encode(), J, 404, "NotFound"),
    ("put-on-collection", "PUT", CM_PATH, json.dumps(_cm("seed")).encode(), J, 405, "MethodNotAllowed"),
    ("post-on-object", "POST", CM_X, json.dumps(_cm("seed")).encode(), J, 405, "MethodNotAllowed"),
    ("delete-options-garbage", "DELETE", CM_X, b"{", J, 400, "BadRequest"),
    ("delete-options-list", "DELETE", CM_X, b"[]", J, 400, "BadRequest"),
    ("delete-bad-policy", "DELETE", CM_X, b'{"propagationPolicy":"Sometimes"}', J, 400, "BadRequest"),
    ("delete-preconditions-string", "DELETE", CM_X, b'{"preconditions":"x"}', J, 400, "BadRequest"),
    ("delete-grace-text", "DELETE", CM_X, b'{"gracePeriodSeconds":"soon"}', J, 400, "BadRequest"),
    ("delete-grace-query-text", "DELETE", f"{CM_X}?gracePeriodSeconds=soon", None, {}, 400, "BadRequest"),
    ("delete-dry-run-body-unsupported", "DELETE", CM_X, b'{"dryRun":["Sometimes"]}', J, 400, "BadRequest"),
    ("delete-wrong-uid", "DELETE", CM_X, b'{"preconditions":{"uid":"not-the-uid"}}', J, 409, "Conflict"),
    ("delete-collection-bad-selector", "DELETE", f"{CM_PATH}?labelSelector=((", None, {}, 400, "BadRequest"),
    ("method-trace", "TRACE", CM_PATH, None, {}, 405, "MethodNotAllowed"),
    ("method-options", "OPTIONS", CM_X, None, {}, 405, "MethodNotAllowed"),
    ("method-unknown", "FROBNICATE", CM_PATH, None, {}, 405, "MethodNotAllowed"),
    ("method-lowercase", "get", CM_PATH, None, {}, 405, "MethodNotAllowed"),
    ("post-discovery", "POST", "/apis", b"{}", J, 405, "MethodNotAllowed"),
    ("put-group-version", "PUT", "/api/v1", b"{}", J, 405, "MethodNotAllowed"),
    ("delete-version", "DELETE", "/version", None, {}, 405, "MethodNotAllowed"),
    ("post-healthz", "POST", "/healthz", b"{}", J, 405, "MethodNotAllowed"),
    ("post-openapi", "POST", "/openapi/v2", b"{}", J, 405, "MethodNotAllowed"),
    ("exec-on-configmap", "GET", f"{CM_X}/exec?command=ls", None, {}, 400, "BadRequest"),
    ("exec-not-a-websocket", "GET", "/api/v1/namespaces/default/pods/runner/exec?command=ls", None, {}, 400, "BadRequest"),
    ("exec-broken-handshake", "GET", "/api/v1/namespaces/default/pods/runner/exec?command=ls", None,
     {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "x", "Sec-WebSocket-Version": "99"}, 400, "BadRequest"),
    ("exec-without-command", "POST", "/api/v1/namespaces/default/pods/p/exec", None, {}, 400, "BadRequest"),
    ("header-too-long", "GET", CM_PATH, None, {"X-Padding": "p" * 20000}, 400, "BadRequest"),
    ("expect-unknown", "GET", CM_PATH, None, {"Expect": "teapot"}, 417, "ExpectationFailed"),
    ("expect-not-ascii", "GET", CM_PATH, None, {"Expect": b"\x80"}, 417, "ExpectationFailed"),  # type: ignore[dict-item]
    ("request-line-too-long", "GET", f"{CM_PATH}?labelSelector={'a' * 20000}", None, {}, 400, "BadRequest"),
]


@pytest.mark.parametrize(("method", "path", "body", "headers", "code", "reason"), [t[1:] for t in TABLE],
                         ids=[t[0] for t in TABLE])
def test_hostile_request_table(twin: Twin, method: str, path: str, body: bytes | None, headers: dict[str, str], code: int,
                               reason: str) -> None:
    reply = hostile(twin, method, path, body, headers)
    assert reply.status == code, reply
    if method != "HEAD":
        assert reply.json()["reason"] == reason, reply.json()


def test_an_expired_continue_token_is_410_after_a_real_page(twin: Twin) -> None:
    for i in range(3):
        twin.send("POST", f"/clusters/{CLUSTER_B}{CM_PATH}", json.dumps(_cm(f"page-{i}")).encode(), J, token=twin.tokens[CLUSTER_B])
    first = twin.send("GET", f"/clusters/{CLUSTER_B}{CM_PATH}?limit=1", token=twin.tokens[CLUSTER_B]).json()
    token = first["metadata"]["continue"]
    # The token is bound to the cluster that issued it: on another cluster it names no snapshot.
    other = hostile(twin, "GET", f"/clusters/{CLUSTER_A}{CM_PATH}?limit=1&continue={quote(token)}", token=twin.tokens[CLUSTER_A])
    assert (other.status, other.json()["reason"]) == (410, "Expired")
    twin.server.expire_continue_tokens()
    expired = hostile(twin, "GET", f"/clusters/{CLUSTER_B}{CM_PATH}?limit=1&continue={quote(token)}", token=twin.tokens[CLUSTER_B])
    assert (expired.status, expired.json()["reason"]) == (410, "Expired")


def test_a_watch_from_a_resource_version_beyond_the_store_reports_it_in_the_stream(twin: Twin) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", twin.thread.port, timeout=10)
    conn.request("GET", f"{CM_PATH}?watch=true&resourceVersion=999999999&timeoutSeconds=1",
                 headers={"Authorization": f"Bearer {twin.tokens['host']}"})
    resp = conn.getresponse()
    lines = [json.loads(x) for x in resp.read().splitlines() if x.strip()]
    conn.close()
    assert resp.status == 200
    assert lines[0]["type"] == "ERROR" and lines[0]["object"]["code"] == 504 and lines[0]["object"]["kind"] == "Status"
    twin.healthy()


def test_protocol_level_garbage_gets_a_status_and_the_server_keeps_serving(twin: Twin) -> None:
    for raw in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # a TLS ClientHello on the plain port
                b"GET / HTTP/9.9\r\n\r\n",
                b"GET /api/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Name: 1\r\n\r\n",
                b"\x00\x01garbage\r\n\r\n",
                b"FROB /api/v1 HTTP/1.1\r\nHost: x\r\n\r\n"):
        before = twin.snapshot()
        with socket.create_connection(("127.0.0.1", twin.thread.port), timeout=10) as s:
            s.sendall(raw)
            data = b""
            while chunk := s.recv(65536):  # the server answers, then closes a connection it could not parse
                data += chunk
        COUNTS["requests"] += 1
        head, _, body = data.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n")[0].split(b" ")
        assert status_line[0].startswith(b"HTTP/1.") and int(status_line[1]) in (400, 405), data[:300]
        assert int(status_line[1]) == (405 if raw.startswith(b"FROB") else 400), data[:300]
        status = json.loads(body)
        assert status["kind"] == "Status" and status["code"] == int(status_line[1]) and status["status"] == "Failure"
        assert twin.snapshot() == before
        twin.healthy()


# ---- (3) authentication ------------------------------------------------------------------------------------------


def test_requests_without_a_valid_token_are_401(twin: Twin) -> None:
    cases = [("no token", ""), ("garbage", "not-a-token"), ("forged prefix", "twin.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
             ("empty bearer", " ")]
    for what, token in cases:
        reply = hostile(twin, "GET", CM_PATH, token=token)
        assert (reply.status, reply.json()["reason"]) == (401, "Unauthorized"), what
    for header in ("Basic dXNlcjpwYXNz", "Bearer", f"Token {twin.tokens['host']}", "bearer"):
        reply = hostile(twin, "GET", CM_PATH, headers={"Authorization": header}, token="")
        assert reply.status == 401, header
    # Writes are refused before anything is read or stored.
    reply = hostile(twin, "POST", CM_PATH, json.dumps(_cm("sneaky")).encode(), J, token="")
    assert reply.status == 401
    # Public paths stay public, as system:public-info-viewer allows.
    assert twin.send("GET", "/version", token="").status == 200
    assert twin.send("GET", f"/clusters/{CLUSTER_A}/readyz", token="").status == 200


def test_a_token_works_only_on_its_own_cluster(twin: Twin) -> None:
    host, a, b = twin.tokens["host"], twin.tokens[CLUSTER_A], twin.tokens[CLUSTER_B]
    assert twin.send("GET", f"/clusters/{CLUSTER_A}{CM_PATH}", token=a).status == 200
    for path, token in ((f"/clusters/{CLUSTER_A}{CM_PATH}", host), (f"/clusters/{CLUSTER_A}{CM_PATH}", b),
                        (f"/clusters/{CLUSTER_B}{CM_PATH}", a), (CM_PATH, a), (CM_PATH, b)):
        reply = hostile(twin, "GET", path, token=token)
        assert (reply.status, reply.json()["reason"]) == (401, "Unauthorized"), (path, token)
    # A path that only looks like another cluster's (dot segments, encoded slashes) authenticates against the
    # cluster it actually reaches.
    reply = hostile(twin, "GET", f"/clusters/{CLUSTER_B}/../../{CLUSTER_A}{CM_PATH}".replace("//", "/"), token=b)
    assert reply.status in (401, 404)
    reply = hostile(twin, "GET", f"/clusters/dpf-operator-system%2Fcluster-a{CM_PATH}", token=b)
    assert reply.status in (401, 404)
    # A service-account token stored in cluster A's store works there, and nowhere else.
    sa = "sa-token-of-cluster-a"
    assert twin.send("GET", f"/clusters/{CLUSTER_A}{CM_PATH}", token=sa).status == 200
    assert hostile(twin, "GET", f"/clusters/{CLUSTER_B}{CM_PATH}", token=sa).status == 401
    assert hostile(twin, "GET", CM_PATH, token=sa).status == 401


def test_a_revoked_token_is_401(twin: Twin) -> None:
    token = twin.authority.issue(CLUSTER_B, "short-lived")
    assert twin.send("GET", f"/clusters/{CLUSTER_B}{CM_PATH}", token=token).status == 200
    twin.authority.revoke(CLUSTER_B, "short-lived")
    assert hostile(twin, "GET", f"/clusters/{CLUSTER_B}{CM_PATH}", token=token).status == 401


# ---- (2) properties ----------------------------------------------------------------------------------------------

KNOWN_GROUPS = sorted({c.KIND.group for c in registry.all_kinds() if c.KIND.group})
KNOWN_PLURALS = sorted({c.KIND.plural for c in registry.all_kinds()})
SEGMENT_NOISE = ["", ".", "..", "%2F", "%00", "%ff", "watch", "namespaces", "status", "exec", "finalize", "default",
                 "dpu-0", "seed", "pods", "runner", "x" * 300, "UPPER", "a%20b", "v1", "v1alpha1", "v9", "clusters", "~", "%E2%98%83"]
segments = st.one_of(
    st.sampled_from(SEGMENT_NOISE + KNOWN_GROUPS + KNOWN_PLURALS),
    st.text(max_size=12).map(lambda s: quote(s, safe="")),
    st.binary(max_size=8).map(lambda b: quote_from_bytes(b, safe="")),
)
prefixes = st.sampled_from(["", "", "", f"/clusters/{CLUSTER_A}", f"/clusters/{CLUSTER_B}", "/clusters/nowhere/none"])
roots = st.sampled_from(["api/v1", "api/v1/namespaces/default", "api/v1/watch/namespaces/default",
                         "apis/provisioning.dpu.nvidia.com/v1alpha1/namespaces/default",
                         "apis/svc.dpu.nvidia.com/v1alpha1/namespaces/default", "apis/operator.dpu.nvidia.com/v1alpha1",
                         "apis", "api", "openapi/v3", "openapi/v2", "version", "healthz", "debug/twin", ""])


@st.composite
def paths(draw: st.DrawFn) -> str:
    parts = [draw(roots), *draw(st.lists(segments, max_size=5))]
    return draw(prefixes) + "/" + "/".join(p for p in parts if p is not None)


PARAM_NAMES = ["watch", "resourceVersion", "resourceVersionMatch", "limit", "continue", "labelSelector", "fieldSelector",
               "fieldManager", "fieldValidation", "force", "dryRun", "timeoutSeconds", "propagationPolicy",
               "gracePeriodSeconds", "orphanDependents", "pretty", "includeObject", "sendInitialEvents",
               "allowWatchBookmarks", "command", "bogus"]
PARAM_VALUES = ["", "0", "1", "-1", "true", "false", "maybe", "abc", "9" * 30, "9" * 5000, "1e308", "nan", "inf", "Exact", "NotOlderThan",
                "Strict", "Warn", "Ignore", "All", "Orphan", "Foreground", "a=b", "a in (x,y)", "!a", "a in (",
                "metadata.name=seed", "metadata.name!=x", "spec.x=1", "===", "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ",
                _continue({"v": "meta.k8s.io/v1", "rv": 1, "start": 0, "id": "f00d"})]
param_values = st.one_of(st.sampled_from(PARAM_VALUES), st.text(max_size=20), st.integers().map(str))


@st.composite
def queries(draw: st.DrawFn) -> str:
    pairs = draw(st.lists(st.tuples(st.one_of(st.sampled_from(PARAM_NAMES), st.text(max_size=8)), param_values), max_size=5))
    if draw(st.booleans()) and any(k == "watch" for k, _ in pairs):
        pairs.append(("timeoutSeconds", "1"))
    if not pairs:
        return ""
    return "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


METHODS = ["GET", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "PROPFIND", "FROB", "get"]
CONTENT_TYPES = ["application/json", "application/yaml", MERGE_PATCH, JSON_PATCH, APPLY, "application/strategic-merge-patch+json",
                 "text/plain", "application/vnd.kubernetes.protobuf", "application/json; charset=utf-16", "", ";;;",
                 "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"]
ACCEPTS = ["", "*/*", "application/json", "application/json;as=Table;g=meta.k8s.io;v=v1", "text/html",
           "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", "application/vnd.kubernetes.protobuf",
           "application/yaml", ",,,", "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"]
header_text = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b""))


@st.composite
def headers(draw: st.DrawFn, twin_tokens: dict[str, str]) -> tuple[dict[str, Any], str]:
    h: dict[str, Any] = {}
    if draw(st.booleans()):
        h["Content-Type"] = draw(st.one_of(st.sampled_from(CONTENT_TYPES), header_text))
    if draw(st.booleans()):
        h["Accept"] = draw(st.one_of(st.sampled_from(ACCEPTS), header_text))
    if draw(st.integers(0, 3)) == 0:
        h["User-Agent"] = draw(header_text)
    if draw(st.integers(0, 4)) == 0:
        h[draw(st.sampled_from(["X-Fuzz", "Upgrade", "Connection", "Expect", "Content-Encoding", "Transfer-Encoding-X"]))] = \
            draw(header_text)
    token = draw(st.sampled_from(["host", "host", "host", CLUSTER_A, CLUSTER_B, "none", "garbage"]))
    return h, {"none": "", "garbage": "twin.garbage"}[token] if token in ("none", "garbage") else twin_tokens[token]


scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False,
                    allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                           max_leaves=20)


def _paths_of(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths_of(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths_of(v, (*prefix, i)))
    return out


SEED_DOCS = [*SAMPLES, _cm("seed"), _dpu("dpu-0")]


@st.composite
def mutated_manifests(draw: st.DrawFn) -> dict[str, Any]:
    """A real manifest (a DPF sample, a ConfigMap, a DPU) with one to three values replaced or deleted."""
    doc: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(SEED_DOCS)))
    for _ in range(draw(st.integers(0, 3))):
        spots = [p for p in _paths_of(doc) if p]
        path = draw(st.sampled_from(spots))
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return doc


@st.composite
def bodies(draw: st.DrawFn) -> bytes | None:
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return None
    if kind == 1:
        return draw(st.binary(max_size=300))
    if kind == 2:
        return json.dumps(draw(json_values)).encode()
    if kind == 3:
        return yaml.safe_dump(draw(mutated_manifests())).encode()
    if kind == 4:
        raw = bytearray(json.dumps(draw(mutated_manifests())).encode())
        for _ in range(draw(st.integers(1, 4))):  # flip bytes: broken syntax, invalid UTF-8
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        return bytes(raw)
    return json.dumps(draw(mutated_manifests())).encode()


@st.composite
def requests(draw: st.DrawFn, twin_tokens: dict[str, str]) -> tuple[str, str, bytes | None, dict[str, Any], str]:
    h, token = draw(headers(twin_tokens))
    return draw(st.sampled_from(METHODS)), draw(paths()) + draw(queries()), draw(bodies()), h, token


@FUZZ
@given(data=st.data())
def test_arbitrary_requests_never_crash_and_refusals_change_nothing(twin: Twin, data: st.DataObject) -> None:
    method, target, body, h, token = data.draw(requests(twin.tokens))
    hostile(twin, method, target, body, h, token)


@FUZZ
@given(doc=mutated_manifests(), verb=st.sampled_from(["POST", "PUT", "MERGE", "APPLY", "APPLY-FORCE"]),
       strict=st.sampled_from(["", "?fieldValidation=Strict", "?fieldValidation=Ignore"]),
       cluster=st.sampled_from(["host", "host", CLUSTER_A]))
def test_mutated_manifests_at_their_endpoints(twin: Twin, doc: dict[str, Any], verb: str, strict: str, cluster: str) -> None:
    md: dict[str, Any] = doc["metadata"] if isinstance(doc.get("metadata"), dict) else {}
    namespace = md["namespace"] if isinstance(md.get("namespace"), str) and md["namespace"] else "default"
    collection = _collection(doc, quote(namespace, safe="")) or CM_PATH
    name = quote(str(md.get("name") or "unnamed"), safe="")
    base = "" if cluster == "host" else f"/clusters/{cluster}"
    sep = "&" if strict else "?"
    body = json.dumps(doc).encode()
    if verb == "POST":
        hostile(twin, "POST", base + collection + strict, body, J, twin.tokens[cluster])
    elif verb == "PUT":
        hostile(twin, "PUT", f"{base}{collection}/{name}{strict}", body, J, twin.tokens[cluster])
    elif verb == "MERGE":
        hostile(twin, "PATCH", f"{base}{collection}/{name}{strict}", body, {"Content-Type": MERGE_PATCH}, twin.tokens[cluster])
    else:
        force = "&force=true" if verb == "APPLY-FORCE" else ""
        hostile(twin, "PATCH", f"{base}{collection}/{name}{strict}{sep}fieldManager=fuzz{force}", yaml.safe_dump(doc).encode(),
                {"Content-Type": APPLY}, twin.tokens[cluster])


pointers = st.one_of(st.sampled_from(["", "/", "/data", "/data/k", "/data/-", "/metadata", "/metadata/labels",
                                      "/metadata/labels/a~1b", "/metadata/finalizers/0", "/metadata/finalizers/-",
                                      "/spec", "/spec/nodeName", "/status", "/kind", "/apiVersion", "/metadata/name",
                                      "/metadata/managedFields/0/manager", "/a~2", "nope", "/data/k/deeper"]),
                     st.text(max_size=15), st.integers())
ops = st.fixed_dictionaries({"op": st.one_of(st.sampled_from(["add", "remove", "replace", "move", "copy", "test"]), json_values)},
                            optional={"path": pointers, "from": pointers, "value": json_values})


@FUZZ
@given(patch=st.one_of(st.lists(ops, max_size=4), json_values), target=st.sampled_from([f"{CM_PATH}/seed", f"{DPU_PATH}/dpu-0",
                                                                                         f"{DPU_PATH}/dpu-0/status"]),
       content_type=st.sampled_from([JSON_PATCH, MERGE_PATCH, APPLY]),
       manager=st.one_of(st.none(), st.text(max_size=140)), force=st.sampled_from(["", "true", "false", "yes", "1"]))
def test_patch_bodies(twin: Twin, patch: Any, target: str, content_type: str, manager: str | None, force: str) -> None:
    query = []
    if manager is not None:
        query.append(f"fieldManager={quote(manager, safe='')}")
    if force:
        query.append(f"force={force}")
    hostile(twin, "PATCH", target + ("?" + "&".join(query) if query else ""), json.dumps(patch).encode(),
            {"Content-Type": content_type})


@FUZZ
@given(watch=st.booleans(), rv=st.one_of(st.sampled_from(["", "0", "1", "-1", "abc", "9" * 25, "18446744073709551616",
                                                          "18446744073709551615", " 1", "1_0", "+1"]),
                                          st.integers(-(2**70), 2**70).map(str), st.text(max_size=10)),
       match=st.sampled_from(["", "Exact", "NotOlderThan", "Bogus"]), limit=st.one_of(st.none(), param_values),
       cont=st.one_of(st.none(), st.text(max_size=40), st.binary(max_size=60).map(lambda b: base64.urlsafe_b64encode(b).decode()),
                      json_values.map(lambda v: base64.urlsafe_b64encode(json.dumps(v).encode()).decode())),
       label=st.one_of(st.none(), param_values), fields=st.one_of(st.none(), param_values),
       path=st.sampled_from([CM_PATH, f"{CM_PATH}/seed", DPU_PATH, "/api/v1/configmaps", f"/clusters/{CLUSTER_A}{CM_PATH}"]))
def test_list_get_and_watch_parameters(twin: Twin, watch: bool, rv: str, match: str, limit: str | None, cont: str | None,
                                       label: str | None, fields: str | None, path: str) -> None:
    params = {"resourceVersion": rv, "resourceVersionMatch": match, "limit": limit, "continue": cont, "labelSelector": label,
              "fieldSelector": fields}
    if watch:
        params.update(watch="true", timeoutSeconds="1")
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items() if v)
    token = twin.tokens[CLUSTER_A] if path.startswith("/clusters/") else None
    hostile(twin, "GET", f"{path}?{query}" if query else path, token=token)


def test_fuzzing_ran(twin: Twin) -> None:
    """The property tests above really sent their requests (hypothesis found no reason to skip them)."""
    assert COUNTS["requests"] >= 4 * EXAMPLES, COUNTS
    assert COUNTS["refused"] > 0 and COUNTS["accepted"] > 0, COUNTS
