"""The core store `Client` over a real Kubernetes API server, through the official kubernetes client.

One REST path per registered kind, built from its `KindInfo` (`/api/v1/...` for the core group,
`/apis/<group>/<version>/...` otherwise), so every kind the core knows (DPF CRDs, core/v1, NodeMaintenance,
Kamaji, Argo, NVIPAM) goes through the same few lines. Requests are sent with `ApiClient.param_serialize` +
`call_api`, which keeps the kubernetes client's kubeconfig handling, auth (bearer token, client
certificates, exec plugins' refreshed tokens) and TLS, but skips its typed models: bodies are our models'
wire dicts in both directions, decoded with pydantic exactly as admission decodes them.

Reads go straight to the API server, not to an informer cache. The core controllers were written against
MemoryStore, which reads its own writes; a watch-fed cache lags behind this process's writes, and several
reconciles (create-then-get of pods and NodeMaintenances, status rewritten from a fresh get) would see stale
objects and fight optimistic-concurrency conflicts on every pass. The cost is one GET per read, which the
API server's own watch cache answers; at DPF's scale (MaxConcurrentReconciles 1, a few thousand DPUs) that
is cheap next to the flash and reboot times. Reads still honour the protocol's contract: each returns a
fresh object nobody else holds, so callers may treat it as a read-only snapshot or copy it.

API errors come back as the `dpf_core.errors` the controllers already handle: the `Status` body's reason
and code pick the class (404 NotFound, 409 AlreadyExists/Conflict, 410 Gone, 422 Invalid with every cause,
429 TooManyRequests with Retry-After, 503 ServiceUnavailable, ...); an unreachable server is a
ServiceUnavailable so a reconcile backs off instead of crashing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import urllib3
from kubernetes import client as _k8s_client
from kubernetes import config as _k8s_config
from pydantic import ValidationError

from dpf_core.api import registry
from dpf_core.api.meta import KindInfo, KubeObject
from dpf_core.errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Conflict,
    FieldCause,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
)
from dpf_core.store.protocol import PatchType, Propagation, Selector
from dpf_core.store.selectors import compile_label_selector

log = logging.getLogger(__name__)

# The kubernetes package is only partly typed; its entry points are used as Any (see the mypy overrides).
k8s: Any = _k8s_client
k8s_config: Any = _k8s_config

T = TypeVar("T", bound=KubeObject)

FIELD_MANAGER = "dpf-operator"
LIST_PAGE_SIZE = 500

PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}

_BY_REASON: dict[str, type[ApiError]] = {
    "NotFound": NotFound,
    "AlreadyExists": AlreadyExists,
    "Conflict": Conflict,
    "Gone": Gone,
    "Expired": Gone,
    "BadRequest": BadRequest,
    "Forbidden": Forbidden,
    "ServiceUnavailable": ServiceUnavailable,
}
_BY_CODE: dict[int, type[ApiError]] = {
    400: BadRequest,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    503: ServiceUnavailable,
}


# --- paths and conversions ---------------------------------------------------------------------------


def resource_path(info: KindInfo, namespace: str | None = None, name: str | None = None,
                  subresource: str | None = None) -> str:
    """The REST path of a kind's collection, or of one object (and its subresource)."""
    path = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
    if info.namespaced and namespace:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{info.plural}"
    if name is not None:
        if not name:
            raise BadRequest(f"{info.kind}: resource name may not be empty", kind=info.kind)
        path += f"/{quote(name, safe='')}"
        if subresource:
            path += f"/{subresource}"
    return path


def decode(cls: type[T], data: Mapping[str, Any]) -> T:
    """A wire dict from the server as our model. List items of core kinds carry no apiVersion/kind: fill them."""
    info = cls.KIND
    body = dict(data)
    body.setdefault("apiVersion", info.api_version)
    body.setdefault("kind", info.kind)
    try:
        return cls.model_validate(body)
    except ValidationError as e:
        name = (body.get("metadata") or {}).get("name", "")
        bad = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()[:5])
        raise ApiError(f"the server returned a {info.kind} {name!r} this operator cannot decode: {bad}",
                       kind=info.kind, name=str(name), group=info.group) from None


def encode(obj: KubeObject) -> dict[str, Any]:
    return obj.wire()


def selector_text(selector: Selector | None) -> str | None:
    if selector is None:
        return None
    text = str(compile_label_selector(selector))
    return text or None


def field_selector_text(selector: Mapping[str, str] | str | None) -> str | None:
    if selector is None:
        return None
    if isinstance(selector, str):
        return selector or None
    return ",".join(f"{k}={v}" for k, v in selector.items()) or None


def api_error(status: int, body: bytes | str | None, headers: Mapping[str, str] | None = None, *,
              kind: str = "", name: str = "", group: str = "") -> ApiError:
    """A non-2xx answer as a dpf_core error. The Status body wins; the HTTP code decides when it is missing."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    payload: dict[str, Any] = {}
    if text:
        try:
            parsed = json.loads(text)
            if isinstance(parsed, dict):
                payload = parsed
        except ValueError:
            pass
    reason = str(payload.get("reason") or "")
    message = str(payload.get("message") or text.strip() or f"HTTP {status}")
    details = payload.get("details") if isinstance(payload.get("details"), dict) else {}
    assert isinstance(details, dict)
    name = str(details.get("name") or name)
    group = str(details.get("group") or group)
    kind = kind or str(details.get("kind") or "")
    code = int(payload.get("code") or status)
    if code == 422 or reason == "Invalid":
        causes = [FieldCause(field=str(c.get("field", "")), message=str(c.get("message", "")),
                             reason=str(c.get("reason") or "FieldValueInvalid"))
                  for c in details.get("causes") or [] if isinstance(c, dict)]
        err: ApiError = Invalid(kind, name, causes, group=group)
        # Keep the server's wording: it names the object and every cause the way kubectl prints them.
        err.message = message
        err.args = (message,)
        return err
    if code == 429 or reason == "TooManyRequests":
        retry = _retry_after(headers, details)
        return TooManyRequests(message, retry_after=retry, kind=kind, name=name, group=group)
    cls = _BY_REASON.get(reason) or _BY_CODE.get(code)
    if cls is None:
        generic = ApiError(message, kind=kind, name=name, group=group)
        generic.code = code
        generic.reason = reason or ("Unauthorized" if code == 401 else "InternalError")
        return generic
    return cls(message, kind=kind, name=name, group=group)


def _retry_after(headers: Mapping[str, str] | None, details: Mapping[str, Any]) -> int:
    raw: Any = None
    if headers is not None:
        raw = headers.get("Retry-After") or headers.get("retry-after")
    if raw is None:
        raw = details.get("retryAfterSeconds")
    try:
        return max(1, int(raw))
    except (TypeError, ValueError):
        return 1


# --- the client --------------------------------------------------------------------------------------


class KubeClient:
    """dpf_core.store.protocol.Client over the Kubernetes API. Thread-safe (urllib3's pool is)."""

    def __init__(self, api_client: Any, *, name: str = "host", field_manager: str = FIELD_MANAGER,
                 timeout: float = 30.0) -> None:
        self.api = api_client
        self.name = name
        self.field_manager = field_manager
        self.timeout = timeout
        self.requests = 0
        self._count = threading.Lock()

    def __repr__(self) -> str:
        return f"KubeClient({self.name!r}, {self.api.configuration.host})"

    # --- construction ------------------------------------------------------------------------------
    @classmethod
    def from_kubeconfig(cls, kubeconfig: bytes | str | Path | None = None, *, context: str | None = None,
                        name: str = "host", **kw: Any) -> KubeClient:
        """From kubeconfig bytes (a DPU cluster's Secret), a file, or None: in-cluster, else ~/.kube/config."""
        return cls(k8s.ApiClient(load_configuration(kubeconfig, context=context)), name=name, **kw)

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    def close(self) -> None:
        self.api.close()

    # --- transport ---------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, query: list[tuple[str, str]] | None = None, body: Any = None,
                content_type: str | None = None, info: KindInfo | None = None, name: str = "") -> Any:
        """One call; the decoded JSON answer on 2xx, a dpf_core error otherwise."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        serialized = self.api.param_serialize(method=method, resource_path=path, query_params=query or None,
                                              header_params=headers, body=body, auth_settings=["BearerToken"])
        with self._count:
            self.requests += 1
        kind, group = (info.kind, info.group) if info is not None else ("", "")
        try:
            response = self.api.call_api(*serialized, _request_timeout=self.timeout)
            data = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise ServiceUnavailable(f"{method} {self.host}{path}: the API server is unreachable: {e}",
                                     kind=kind, name=name, group=group) from None
        if not 200 <= response.status <= 299:
            raise api_error(response.status, data, dict(response.headers or {}), kind=kind, name=name, group=group)
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise ApiError(f"{method} {path}: the API server answered {response.status} with a body that is not "
                           f"JSON", kind=kind, name=name, group=group) from None

    def _namespace(self, info: KindInfo, namespace: str | None, name: str) -> str | None:
        if not info.namespaced:
            return None
        if not namespace:
            raise BadRequest(f"{info.kind} {name!r}: a namespace is required for a namespaced kind",
                             kind=info.kind, name=name, group=info.group)
        return namespace

    def _write_query(self) -> list[tuple[str, str]]:
        return [("fieldManager", self.field_manager)] if self.field_manager else []

    # --- reads -------------------------------------------------------------------------------------
    def get(self, cls: type[T], name: str, namespace: str | None = None) -> T:
        info = cls.KIND
        path = resource_path(info, self._namespace(info, namespace, name), name)
        return decode(cls, self.request("GET", path, info=info, name=name))

    def try_get(self, cls: type[T], name: str, namespace: str | None = None) -> T | None:
        try:
            return self.get(cls, name, namespace)
        except NotFound:
            return None

    def list(
        self,
        cls: type[T],
        namespace: str | None = None,
        label_selector: Selector | None = None,
        field_selector: Mapping[str, str] | None = None,
    ) -> list[T]:
        info = cls.KIND
        path = resource_path(info, namespace if info.namespaced else None)
        base: list[tuple[str, str]] = [("limit", str(LIST_PAGE_SIZE))]
        if (labels := selector_text(label_selector)) is not None:
            base.append(("labelSelector", labels))
        if (fields := field_selector_text(field_selector)) is not None:
            base.append(("fieldSelector", fields))
        out: list[T] = []
        token = ""
        while True:
            query = [*base, ("continue", token)] if token else base
            page = self.request("GET", path, query=query, info=info) or {}
            out.extend(decode(cls, item) for item in page.get("items") or [])
            token = str((page.get("metadata") or {}).get("continue") or "")
            if not token:
                break
        # MemoryStore lists in (namespace, name) order; controllers that pick "the first" rely on it.
        out.sort(key=lambda o: (o.metadata.namespace or "", o.metadata.name or ""))
        return out

    # --- writes ------------------------------------------------------------------------------------
    def create(self, obj: T) -> T:
        info = obj.KIND
        meta = obj.metadata
        ident = meta.name or meta.generate_name or ""
        path = resource_path(info, self._namespace(info, meta.namespace, ident))
        answer = self.request("POST", path, query=self._write_query(), body=encode(obj), info=info, name=ident)
        return decode(type(obj), answer)

    def update(self, obj: T) -> T:
        return self._put(obj, None)

    def update_status(self, obj: T) -> T:
        return self._put(obj, "status" if obj.KIND.status_subresource else None)

    def _put(self, obj: T, subresource: str | None) -> T:
        info = obj.KIND
        name = obj.metadata.name or ""
        path = resource_path(info, self._namespace(info, obj.metadata.namespace, name), name, subresource)
        answer = self.request("PUT", path, query=self._write_query(), body=encode(obj), info=info, name=name)
        return decode(type(obj), answer)

    def patch(
        self,
        cls: type[T],
        name: str,
        namespace: str | None,
        patch: Any,
        patch_type: PatchType = "merge",
        subresource: Literal["status"] | None = None,
    ) -> T:
        info = cls.KIND
        if patch_type not in PATCH_CONTENT_TYPES:
            raise BadRequest(f"unsupported patch type {patch_type!r}", kind=info.kind, name=name)
        if patch_type == "json" and not isinstance(patch, list):
            # The kubernetes client would silently send a non-list as a strategic merge patch.
            raise BadRequest("a JSON patch must be a list of operations", kind=info.kind, name=name)
        path = resource_path(info, self._namespace(info, namespace, name), name, subresource)
        answer = self.request("PATCH", path, query=self._write_query(), body=patch,
                              content_type=PATCH_CONTENT_TYPES[patch_type], info=info, name=name)
        return decode(cls, answer)

    def apply(self, obj: T, *, force: bool = True) -> T:
        """Server-side apply (`application/apply-patch+yaml`; JSON is YAML) with this client's field manager."""
        info = obj.KIND
        name = obj.metadata.name or ""
        path = resource_path(info, self._namespace(info, obj.metadata.namespace, name), name)
        query = [("fieldManager", self.field_manager or FIELD_MANAGER)]
        if force:
            query.append(("force", "true"))
        answer = self.request("PATCH", path, query=query, body=encode(obj),
                              content_type="application/apply-patch+yaml", info=info, name=name)
        return decode(type(obj), answer)

    def delete(
        self,
        cls: type[T],
        name: str,
        namespace: str | None = None,
        propagation: Propagation = "Background",
        *,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> None:
        info = cls.KIND
        path = resource_path(info, self._namespace(info, namespace, name), name)
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        preconditions = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        if preconditions:
            options["preconditions"] = preconditions
        self.request("DELETE", path, body=options, info=info, name=name)

    # --- untyped access (the operator's watch shell decodes events itself) --------------------------
    def kind_of(self, api_version: str, kind: str) -> type[KubeObject] | None:
        registry.load_all()
        return registry.lookup(api_version, kind)


# --- kubeconfigs -------------------------------------------------------------------------------------


def load_configuration(kubeconfig: bytes | str | Path | None = None, *, context: str | None = None) -> Any:
    """A kubernetes client Configuration from kubeconfig bytes/text, a file path, or the environment."""
    import yaml

    cfg = k8s.Configuration()
    if kubeconfig is None:
        try:
            k8s_config.load_incluster_config(client_configuration=cfg)
        except k8s_config.ConfigException:
            k8s_config.load_kube_config(context=context, client_configuration=cfg)
    elif isinstance(kubeconfig, Path) or (isinstance(kubeconfig, str) and "\n" not in kubeconfig):
        k8s_config.load_kube_config(config_file=str(kubeconfig), context=context, client_configuration=cfg)
    else:
        text = kubeconfig.decode() if isinstance(kubeconfig, bytes) else kubeconfig
        data = yaml.safe_load(text)
        if not isinstance(data, dict):
            raise ValueError("kubeconfig is not a YAML mapping")
        k8s_config.load_kube_config_from_dict(data, context=context, client_configuration=cfg)
    # Many controllers' threads share one client.
    cfg.connection_pool_maxsize = max(int(cfg.connection_pool_maxsize or 0), 16)
    return cfg


class KubeClusterClients:
    """dpf_core.ports.ClusterClients: a KubeClient per DPU-cluster kubeconfig (the DPUCluster's Secret
    `admin.conf`), cached by content so a reconcile every 5 s does not build a new connection pool."""

    def __init__(self, *, timeout: float = 10.0, field_manager: str = FIELD_MANAGER) -> None:
        self.timeout = timeout
        self.field_manager = field_manager
        self._clients: dict[str, KubeClient] = {}
        self._lock = threading.Lock()

    def for_kubeconfig(self, kubeconfig: bytes) -> KubeClient | None:
        key = hashlib.sha256(kubeconfig).hexdigest()
        with self._lock:
            cached = self._clients.get(key)
        if cached is not None:
            return cached
        try:
            client = KubeClient.from_kubeconfig(kubeconfig, name=f"dpu-cluster-{key[:8]}", timeout=self.timeout,
                                                field_manager=self.field_manager)
        except Exception as e:  # a broken Secret is the DPU's problem, reported as "failed to create client"
            log.warning("cannot build a client from a DPU cluster kubeconfig: %s", e)
            return None
        with self._lock:
            return self._clients.setdefault(key, client)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            c.close()


def api_version_kind(body: Mapping[str, Any]) -> tuple[str, str]:
    return str(body.get("apiVersion") or ""), str(body.get("kind") or "")


__all__ = [
    "FIELD_MANAGER",
    "KubeClient",
    "KubeClusterClients",
    "api_error",
    "decode",
    "encode",
    "load_configuration",
    "resource_path",
]
