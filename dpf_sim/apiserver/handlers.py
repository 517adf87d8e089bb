"""The resource endpoints: CRUD, the status subresource, patches, server-side apply, paged lists with
selectors, watches and server-side tables, over one MemoryStore per served cluster.

Every store call runs on a worker thread while holding the twin's lock, so HTTP clients never see the
twin half-way through a simulation step, and the event loop keeps streaming watches while a request waits
for that lock. Admission (defaulting, validation, immutability) is the core's, inside the store.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import math
import re
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import yaml
from aiohttp import web

from dpf_core.api import admission
from dpf_core.api.external import Namespace
from dpf_core.api.kubeyaml import KubeYamlLoader
from dpf_core.api.meta import KubeObject
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
    ResourceVersionTooLarge,
)
from dpf_core.runtime import parse_rfc3339, rfc3339
from dpf_core.store.memory import MemoryStore
from dpf_core.store.patch import PatchError, json_patch, merge_patch
from dpf_core.store.protocol import Propagation, WatchEvent
from dpf_core.store.selectors import compile_label_selector

from . import apply as ssa
from . import discovery, openapi, tables

R = TypeVar("R")

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
YAML = "application/yaml"

# Field selectors the real API server supports beyond metadata.name/namespace, by core kind.
EXTRA_FIELD_LABELS: dict[str, frozenset[str]] = {
    "Pod": frozenset({"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                      "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"}),
    "Event": frozenset({"involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                        "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                        "reason", "reportingComponent", "source", "type"}),
    "Secret": frozenset({"type"}),
    "Node": frozenset({"spec.unschedulable"}),
    "Namespace": frozenset({"status.phase"}),
}
EXPIRED_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new list "
    "without the continue parameter, or use the continue token in this response to retrieve the remainder of the "
    "results. Continuing with the provided token results in an inconsistent list - objects that were created, "
    "modified, or deleted between the time the first chunk was returned and now may show up in the list."
)


@dataclass
class ServerConfig:
    max_inflight: int = 400  # concurrent non-watch requests before 429 (kube-apiserver --max-requests-inflight)
    retry_after: int = 1
    bookmark_interval: float = 10.0  # wall seconds between BOOKMARK events on watches that allow them
    watch_timeout: float = 1800.0  # a watch without timeoutSeconds ends after this (wall seconds)
    continue_ttl: float = 300.0  # how long a paged list's snapshot stays readable (wall seconds)
    continue_snapshots: int = 256
    max_body: int = 3 * 1024 * 1024  # bytes, kube-apiserver's limit for a write request
    # Nesting depth of a request body. Our deepest real manifest (a DPUServiceTemplate's Helm values) is far
    # below it; a deeper document is an attack on the recursive code behind decoding (admission, pruning,
    # managedFields), not a manifest.
    max_depth: int = 100
    # NamespaceLifecycle's refusal of content in a namespace that does not exist (404 `namespaces "x" not
    # found`). Off by default: a bare server over a store without Namespaces, and `dpf serve` until every
    # sample manifest carries its own Namespace. A terminating namespace refuses new content regardless.
    require_namespace: bool = False


class UnsupportedMediaType(ApiError):
    code = 415
    reason = "UnsupportedMediaType"


class NotAcceptable(ApiError):
    code = 406
    reason = "NotAcceptable"


class MethodNotAllowed(ApiError):
    code = 405
    reason = "MethodNotAllowed"


class Pulse:
    """Wakes the watches of one store when it commits; fired from any thread, coalesced per loop turn."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()
        self._scheduled = False
        self._guard = threading.Lock()

    def fire_threadsafe(self, _ev: WatchEvent | None = None) -> None:
        with self._guard:
            if self._scheduled:
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # a closed loop: the server is shutting down
            self._loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        with self._guard:
            self._scheduled = False
        ev, self._event = self._event, asyncio.Event()
        ev.set()

    async def wait(self, timeout: float) -> None:
        ev = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ev.wait(), timeout)


@dataclass
class _Page:
    items: list[KubeObject]
    rv: str
    created: float


class PageCache:
    """Snapshots behind continue tokens: every page of one paged list is read from the same snapshot, as
    etcd serves pages at the first page's revision."""

    def __init__(self, ttl: float, size: int) -> None:
        self.ttl = ttl
        self.size = size
        self._pages: OrderedDict[str, _Page] = OrderedDict()
        self._guard = threading.Lock()

    def put(self, items: list[KubeObject], rv: str) -> str:
        sid = secrets.token_hex(8)
        with self._guard:
            self._pages[sid] = _Page(items, rv, time.monotonic())
            while len(self._pages) > self.size:
                self._pages.popitem(last=False)
        return sid

    def get(self, sid: str) -> _Page | None:
        with self._guard:
            page = self._pages.get(sid)
            if page is not None and time.monotonic() - page.created > self.ttl:
                del self._pages[sid]
                return None
            return page

    def expire_all(self) -> None:
        with self._guard:
            self._pages.clear()


@dataclass
class Shared:
    """What every served cluster shares: the twin's lock and clock, the worker threads, the settings."""

    lock: threading.RLock
    now: Callable[[], float]
    config: ServerConfig = field(default_factory=ServerConfig)
    poke: Callable[[], None] = lambda: None
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(16, thread_name_prefix="twin-api"))
    inflight: int = 0

    async def call(self, fn: Callable[[], R]) -> R:
        """Run `fn` on a worker thread with the twin stopped (holding its lock)."""

        def locked() -> R:
            with self.lock:
                return fn()

        return await asyncio.get_running_loop().run_in_executor(self.executor, locked)


@dataclass
class Cluster:
    name: str  # "host" or "<namespace>/<name>" of a DPU cluster
    store: MemoryStore
    pulse: Pulse
    pages: PageCache


@dataclass
class Route:
    cls: type[KubeObject]
    namespace: str | None
    name: str | None
    subresource: str | None
    watch: bool = False  # the deprecated /watch/ path prefix


# ---- small helpers ---------------------------------------------------------------------------------------------


def status_body(err: ApiError) -> dict[str, Any]:
    body = err.to_status()  # an Invalid's message is already apimachinery's (dpf_core.errors.invalid_message)
    details = dict(body.get("details") or {})  # type: ignore[call-overload]
    if err.code == 404 and err.kind:
        from dpf_core.api import registry

        for cls in registry.all_kinds():
            if cls.KIND.kind == err.kind and (not err.group or cls.KIND.group == err.group):
                details["kind"] = cls.KIND.plural
                break
    retry = getattr(err, "retry_after", None)
    if retry is not None:
        details["retryAfterSeconds"] = retry
    body["details"] = details
    return body


def error_response(err: ApiError) -> web.Response:
    headers = {}
    retry = getattr(err, "retry_after", None)
    if retry is not None:
        headers["Retry-After"] = str(retry)
    return web.json_response(status_body(err), status=err.code, headers=headers)


def success_status(details: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def media_type(request: web.Request) -> str:
    return (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()


def check_accept(request: web.Request) -> None:
    accept = request.headers.get("Accept", "")
    if not accept:
        return
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in ("application/json", "*/*", "application/*", "application/yaml", "application/json-seq") or "json" in media:
            return
    raise NotAcceptable(f"only the following media types are accepted: application/json, application/yaml (asked: {accept})")


def field_manager(request: web.Request, required: bool = False) -> str:
    manager = request.query.get("fieldManager", "")
    if manager:
        if len(manager) > 128:
            raise BadRequest("fieldManager: Too long: may not be longer than 128")
        bad = next((i for i, ch in enumerate(manager) if not ch.isprintable()), None)
        if bad is not None:
            # The manager lands in managedFields: a control character or a lone surrogate there would break
            # every later serialization of the object.
            raise BadRequest(f"fieldManager: Invalid value: {manager!r}: invalid character at position {bad}")
        return manager
    if required:
        raise BadRequest("PATCH requests with apply content type must specify a fieldManager (the fieldManager query parameter)")
    # As the API server: the user agent up to the first "/", without its non-printable characters.
    agent = (request.headers.get("User-Agent") or "").split("/")[0]
    return "".join(ch for ch in agent if ch.isprintable())[:128] or "unknown"


def query_bool(request: web.Request, name: str) -> bool:
    """A boolean query parameter as Go's strconv.ParseBool reads it; anything else is a 400."""
    value = request.query.get(name, "")
    if value in ("", "0", "f", "F", "false", "FALSE", "False"):
        return False
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    raise BadRequest(f'{name}: invalid value "{value}": strconv.ParseBool: parsing "{value}": invalid syntax')


_INT = re.compile(r"[+-]?[0-9]+")
INT64_MAX = 2**63 - 1


def query_int(request: web.Request, name: str) -> int | None:
    """An int64 query parameter (None when absent), or a 400 like the API server's conversion error."""
    value = request.query.get(name)
    if value is None or value == "":
        return None
    # The length check first: int() of thousands of digits is itself an error (Python's digit limit).
    if len(value) > 20 or not _INT.fullmatch(value) or not -INT64_MAX - 1 <= int(value) <= INT64_MAX:
        raise BadRequest(f'invalid {name}: "{value}": strconv.ParseInt: parsing "{value}": invalid syntax')
    return int(value)


_RV = re.compile(r"[0-9]+")


def parse_resource_version(rv: str) -> int:
    """A resourceVersion as the API server's versioner parses it (uint64 digits), or a 400."""
    if len(rv) > 20 or not _RV.fullmatch(rv) or int(rv) >= 2**64:
        raise BadRequest(f'invalid resource version: "{rv}"')
    return int(rv)


def check_read_rv(store: MemoryStore, rv: str) -> None:
    """A get/list/watch's resourceVersion: "" and "0" are any; a number must be one the store has reached."""
    if rv in ("", "0"):
        return
    wanted = parse_resource_version(rv)
    current = int(store.current_resource_version())
    if wanted > current:
        raise ResourceVersionTooLarge(f"Too large resource version: {wanted}, current: {current}")


class _YamlLoader(KubeYamlLoader):
    """YAML as sigs.k8s.io/yaml reads it (YAML -> JSON): no timestamps (they stay strings), keys are strings."""


def _yaml_mapping(loader: _YamlLoader, node: yaml.MappingNode) -> dict[str, Any]:
    loader.flatten_mapping(node)  # `<<` merge keys, as go-yaml
    out: dict[str, Any] = {}
    for key, value in loader.construct_pairs(node, deep=True):
        if isinstance(key, bool):
            key = "true" if key else "false"
        elif key is None:
            key = "null"
        elif isinstance(key, int | float):
            key = str(key)
        if not isinstance(key, str):
            raise BadRequest(f"the body of the request could not be decoded: a mapping key must be a string, got {type(key).__name__}")
        out[key] = value
    return out


_YamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _yaml_mapping)


def _no_constant(name: str) -> Any:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")  # Go's json rejects NaN/Infinity


def check_document(doc: Any, *, max_depth: int, max_nodes: int) -> None:
    """Refuse what JSON cannot carry or the twin must not store: too deep, alias bombs (more nodes than the
    body had bytes), non-finite numbers, unpaired surrogates (they break every later serialization of the
    object), and YAML-only values (bytes, sets...). Iterative, so the check itself cannot overflow the stack."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    seen = 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > max_nodes:
            raise BadRequest("the body of the request could not be decoded: the document expands to more values than its size allows")
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, bool) or value is None or isinstance(value, int):
            continue
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise BadRequest("the body of the request could not be decoded: a number is out of range")
        elif isinstance(value, dict | list):
            if depth > max_depth:
                raise BadRequest(f"the body of the request could not be decoded: exceeded max depth of {max_depth}")
            if isinstance(value, dict):
                for k, v in value.items():
                    if not isinstance(k, str):
                        raise BadRequest("the body of the request could not be decoded: a mapping key must be a string")
                    _check_text(k)
                    stack.append((v, depth + 1))
            else:
                stack.extend((v, depth + 1) for v in value)
        else:
            raise BadRequest(f"the body of the request could not be decoded: a {type(value).__name__} has no JSON form")


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("the body of the request could not be decoded: invalid Unicode (unpaired surrogate)") from None


def decode_document(raw: bytes, mt: str, config: ServerConfig) -> Any:
    """JSON (or YAML for the YAML media types) -> a checked document, or BadRequest; never anything else."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"the body of the request could not be decoded: invalid UTF-8 at byte {e.start}") from None
    try:
        if mt in (YAML, APPLY_PATCH):
            try:
                doc = json.loads(text, parse_constant=_no_constant)
            except ValueError:
                doc = yaml.load(text, Loader=_YamlLoader)  # a SafeLoader subclass: no arbitrary objects
        else:
            doc = json.loads(text, parse_constant=_no_constant)
    # ValueError covers JSON syntax and Python's int-digit limit; RecursionError a nesting the decoder
    # cannot follow; TypeError a YAML construct with no JSON form (an unhashable key).
    except (ValueError, yaml.YAMLError, RecursionError, TypeError) as e:
        reason = "exceeded max depth" if isinstance(e, RecursionError) else str(e)
        raise BadRequest(f"the body of the request could not be decoded: {reason}") from None
    check_document(doc, max_depth=config.max_depth, max_nodes=len(raw) + 1)
    return doc


async def read_body(request: web.Request, allowed: Iterable[str], config: ServerConfig) -> Any:
    allowed = tuple(allowed)
    mt = media_type(request)
    if not mt and JSON in allowed:
        mt = JSON  # as the API server: no Content-Type means its first serializer, JSON
    if mt not in allowed:
        raise UnsupportedMediaType(
            f"the body of the request was in an unknown format - accepted media types include: {', '.join(allowed)}"
        )
    raw = await request.read()
    if not raw:
        raise BadRequest("the request body is empty")
    return decode_document(raw, mt, config)


def _parse_time(s: str) -> float:
    return parse_rfc3339(s)


class Selection:
    """A list/watch filter: label selector + field selector (store-supported fields and the core extras)."""

    def __init__(self, cls: type[KubeObject], label: str | None, fields: str | None) -> None:
        self.label = compile_label_selector(label) if label else None
        self.store_fields: list[str] = []
        self.extra: list[tuple[str, bool, str]] = []
        allowed = EXTRA_FIELD_LABELS.get(cls.KIND.kind, frozenset()) if cls.KIND.group == "" else frozenset()
        for part in (p.strip() for p in (fields or "").split(",")):
            if not part:
                continue
            for op in ("!=", "==", "="):
                if op in part:
                    key, _, value = part.partition(op)
                    key, value = key.strip(), value.strip()
                    break
            else:
                raise BadRequest(f"invalid selector: '{fields}'; can't understand '{part}'")
            if key in ("metadata.name", "metadata.namespace"):
                self.store_fields.append(f"{key}{'!=' if op == '!=' else '='}{value}")
            elif key in allowed:
                self.extra.append((key, op != "!=", value))
            else:
                raise BadRequest(f'"{key}" is not a known field selector: only "metadata.name", "metadata.namespace"'
                                 + (", " + ", ".join(f'"{a}"' for a in sorted(allowed)) if allowed else ""))
        from dpf_core.store.selectors import compile_field_selector

        self.fields = compile_field_selector(",".join(self.store_fields)) if self.store_fields else None

    @property
    def store_field_selector(self) -> str | None:
        return ",".join(self.store_fields) or None

    def matches(self, obj: KubeObject) -> bool:
        if self.label is not None and not self.label.matches(obj.metadata.labels):
            return False
        if self.fields is not None and not self.fields.matches(obj):
            return False
        if self.extra:
            wire = obj.wire()
            for key, equals, value in self.extra:
                have = ssa.get(wire, tuple(key.split(".")))
                text = "" if have is ssa.MISSING or have is None else (str(have).lower() if isinstance(have, bool) else str(have))
                if (text == value) != equals:
                    return False
        return True


# ---- the dispatcher ------------------------------------------------------------------------------------------


async def handle(request: web.Request, shared: Shared, cluster: Cluster, route: Route) -> web.StreamResponse:
    method = request.method
    is_watch = route.watch or request.query.get("watch", "").lower() in ("1", "true")
    dry_run(request)  # an unknown value is refused whatever the verb, as the API server does
    if route.watch and method != "GET":
        raise MethodNotAllowed(f"{method} is not supported on a watch")
    if method == "GET" and is_watch:
        if route.subresource is not None:
            raise NotFound(f"the server could not find the requested resource ({route.cls.KIND.plural}/{route.subresource})")
        return await watch(request, shared, cluster, route)
    check_accept(request)
    if route.subresource not in (None, "status"):
        raise NotFound(f"the server could not find the requested resource ({route.cls.KIND.plural}/{route.subresource})")
    if route.subresource == "status" and not (route.cls.KIND.status_subresource and "status" in route.cls.model_fields):
        raise NotFound(f"the server could not find the requested resource ({route.cls.KIND.plural}/status)")
    if route.name is None:
        if method == "GET":
            return await list_objects(request, shared, cluster, route)
        if method == "POST":
            return await create(request, shared, cluster, route)
        if method == "DELETE":
            return await delete_collection(request, shared, cluster, route)
        raise MethodNotAllowed(f"{method} is not supported on a collection")
    if route.subresource is None and method == "POST":
        raise MethodNotAllowed("POST is not supported on an object; POST to its collection")
    if method == "GET":
        return await get(request, shared, cluster, route)
    if method == "PUT":
        return await update(request, shared, cluster, route)
    if method == "PATCH":
        return await patch(request, shared, cluster, route)
    if method == "DELETE" and route.subresource is None:
        return await delete(request, shared, cluster, route)
    raise MethodNotAllowed(f"{method} is not supported here")


def _respond(obj: dict[str, Any], status: int = 200, warnings: list[str] | None = None) -> web.Response:
    headers = {}
    if warnings:
        headers["Warning"] = ", ".join(f'299 - "{_header_text(w)}"' for w in warnings)
    return web.json_response(obj, status=status, headers=headers, dumps=_dumps)


def _header_text(text: str, limit: int = 256) -> str:
    """Warning text as an RFC 7230 quoted-string body, as the API server writes it: field names come from the
    request, so a quote or backslash is escaped, and a newline or non-ASCII character (which would split the
    header or fail to encode) becomes "?"."""
    printable = "".join(ch if " " <= ch <= "~" else "?" for ch in text[:limit])
    return printable.replace("\\", "\\\\").replace('"', '\\"')


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


# ---- reads ----------------------------------------------------------------------------------------------------


async def get(request: web.Request, shared: Shared, cluster: Cluster, route: Route) -> web.Response:
    assert route.name is not None
    rv = request.query.get("resourceVersion", "")

    def read() -> KubeObject:
        check_read_rv(cluster.store, rv)
        return cluster.store.get(route.cls, route.name or "", route.namespace)

    obj = await shared.call(read)
    wire = obj.wire()
    if tables.wants_table(request.headers.get("Accept", "")):
        return _respond(tables.table(route.cls, [wire], shared.now(), _parse_time, request.query.get("includeObject", "Metadata"),
                                     {"resourceVersion": wire["metadata"].get("resourceVersion", "")}))
    return _respond(wire)


def _list_rv(store: MemoryStore, rv: str, match: str) -> None:
    """Check a list's resourceVersion/resourceVersionMatch against what the store can serve (its latest state)."""
    if match not in ("", "NotOlderThan", "Exact"):
        raise BadRequest(f'resourceVersionMatch: Unsupported value: "{match}": supported values: "Exact", "NotOlderThan"')
    if match and not rv:
        raise BadRequest("resourceVersionMatch is forbidden unless resourceVersion is provided")
    check_read_rv(store, rv)
    if rv in ("", "0"):
        return
    wanted, current = int(rv), int(store.current_resource_version())
    if match == "Exact" and wanted != current:
        raise Gone(f"too old resource version: {wanted} ({current})")


async def list_objects(request: web.Request, shared: Shared, cluster: Cluster, route: Route) -> web.Response:
    q = request.query
    cls = route.cls
    sel = Selection(cls, q.get("labelSelector"), q.get("fieldSelector"))
    limit = query_int(request, "limit") or 0
    token = q.get("continue", "")

    def read() -> tuple[list[KubeObject], str, str | None, int | None]:
        store = cluster.store
        if token:
            if q.get("resourceVersion"):
                raise BadRequest("specifying resource version is not allowed when using continue")
            sid, start, rv = _decode_continue(token)
            page = cluster.pages.get(sid)
            if page is None or page.rv != rv:
                raise Gone(EXPIRED_CONTINUE)
            items, rv = page.items, page.rv
        else:
            _list_rv(store, q.get("resourceVersion", ""), q.get("resourceVersionMatch", ""))
            found, rv = store.list_with_rv(cls, route.namespace, None, sel.store_field_selector)
            items = [o for o in found if sel.matches(o)]
            start = 0
            sid = ""
        end = start + limit if limit > 0 else len(items)
        if end >= len(items):
            return items[start:], rv, None, None
        if not sid:
            sid = cluster.pages.put(items, rv)
        return items[start:end], rv, _encode_continue(sid, end, rv), len(items) - end

    items, rv, cont, remaining = await shared.call(read)
    meta: dict[str, Any] = {"resourceVersion": rv}
    if cont:
        meta["continue"] = cont
        meta["remainingItemCount"] = remaining
    wires = [o.wire() for o in items]
    if tables.wants_table(request.headers.get("Accept", "")):
        return _respond(tables.table(cls, wires, shared.now(), _parse_time, q.get("includeObject", "Metadata"), meta))
    info = cls.KIND
    return _respond({"apiVersion": info.api_version, "kind": f"{info.kind}List", "metadata": meta, "items": wires})


def _encode_continue(sid: str, start: int, rv: str) -> str:
    doc = {"v": "meta.k8s.io/v1", "rv": int(rv), "start": start, "id": sid}
    return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[str, int, str]:
    invalid = BadRequest("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    try:
        doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError, binascii.Error, RecursionError):
        raise invalid from None
    # A forged token is any JSON at all: check every field's type before using it.
    if not isinstance(doc, dict) or doc.get("v") != "meta.k8s.io/v1":
        raise invalid
    sid, start, rv = doc.get("id"), doc.get("start"), doc.get("rv")
    if not isinstance(sid, str) or type(start) is not int or type(rv) is not int or start < 0 or rv < 0:
        raise invalid
    return sid, start, str(rv)


# ---- watch ----------------------------------------------------------------------------------------------------


def _watch_line(etype: str, obj: dict[str, Any]) -> bytes:
    return (_dumps({"type": etype, "object": obj}) + "\n").encode()


def _transition(ev: WatchEvent, sel: Selection) -> tuple[str, KubeObject] | None:
    """The event as a filtered watch sees it: entering the selection is ADDED, leaving it DELETED."""
    now_in = sel.matches(ev.object)
    if ev.type == "ADDED":
        return ("ADDED", ev.object) if now_in else None
    if ev.type == "DELETED":
        was_in = sel.matches(ev.old) if ev.old is not None else now_in
        return ("DELETED", ev.object) if (was_in or now_in) else None
    was_in = sel.matches(ev.old) if ev.old is not None else now_in
    if now_in and was_in:
        return ("MODIFIED", ev.object)
    if now_in:
        return ("ADDED", ev.object)
    if was_in:
        return ("DELETED", ev.object)
    return None


async def watch(request: web.Request, shared: Shared, cluster: Cluster, route: Route) -> web.StreamResponse:
    q = request.query
    cls = route.cls
    fields = q.get("fieldSelector")
    if route.name:
        fields = ",".join(x for x in (fields, f"metadata.name={route.name}") if x)
    sel = Selection(cls, q.get("labelSelector"), fields)
    rv = q.get("resourceVersion", "")
    initial = q.get("sendInitialEvents", "").lower() == "true"
    if initial and q.get("resourceVersionMatch") != "NotOlderThan":
        raise Invalid(cls.KIND.kind, "", [FieldCause("resourceVersionMatch",
                                                     "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                                                     "FieldValueForbidden")])
    if rv not in ("", "0"):
        # As the watch cache: an unparseable resourceVersion is the request's error (HTTP 400); one that
        # parses but is too old or too new is reported in the stream, as an ERROR event.
        parse_resource_version(rv)
    bookmarks = q.get("allowWatchBookmarks", "").lower() in ("true", "1")
    seconds = query_int(request, "timeoutSeconds")
    timeout = float(shared.config.watch_timeout if seconds is None else max(seconds, 0))
    as_table = tables.wants_table(request.headers.get("Accept", ""))
    include = q.get("includeObject", "Metadata")
    info = cls.KIND

    def encode(etype: str, obj: KubeObject) -> bytes:
        wire = obj.wire()
        if as_table:
            return _watch_line(etype, tables.table(cls, [wire], shared.now(), _parse_time, include,
                                                   {"resourceVersion": wire["metadata"].get("resourceVersion", "")}))
        return _watch_line(etype, wire)

    def bookmark(at: str, initial_end: bool = False) -> bytes:
        md: dict[str, Any] = {"resourceVersion": at}
        if initial_end:
            md["annotations"] = {"k8s.io/initial-events-end": "true"}
        return _watch_line("BOOKMARK", {"kind": info.kind, "apiVersion": info.api_version, "metadata": md})

    def error_line(err: ApiError) -> bytes:
        return _watch_line("ERROR", status_body(err))

    def start() -> tuple[list[bytes], str | None]:
        store = cluster.store
        current = store.current_resource_version()
        if initial:
            objs = [o for o in store.list(cls, route.namespace, None, sel.store_field_selector) if sel.matches(o)]
            return [encode("ADDED", o) for o in objs] + [bookmark(current, initial_end=True)], current
        try:
            events = store.events_since(cls, rv, route.namespace)
        except (Gone, ResourceVersionTooLarge, BadRequest) as e:
            return [error_line(e)], None
        out = []
        for ev in events:
            seen = _transition(ev, sel)
            if seen is not None:
                out.append(encode(*seen))
        return out, current

    def more(since: str) -> tuple[list[bytes], str | None]:
        store = cluster.store
        current = store.current_resource_version()
        if current == since:
            return [], since
        try:
            events = store.events_since(cls, since, route.namespace)
        except Gone as e:
            return [error_line(e)], None
        out = []
        for ev in events:
            seen = _transition(ev, sel)
            if seen is not None:
                out.append(encode(*seen))
        return out, current

    lines, last = await shared.call(start)
    resp = web.StreamResponse(status=200, headers={"Content-Type": JSON, "Cache-Control": "no-cache, private"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    deadline = time.monotonic() + timeout
    next_bookmark = time.monotonic() + shared.config.bookmark_interval
    try:
        if lines:
            await resp.write(b"".join(lines))
        while last is not None:
            now = time.monotonic()
            if now >= deadline:
                break
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            await cluster.pulse.wait(min(1.0, deadline - now, max(0.0, next_bookmark - now) if bookmarks else 1.0))
            since = last
            lines, last = await shared.call(lambda s=since: more(s))  # type: ignore[misc]
            if lines:
                await resp.write(b"".join(lines))
            if bookmarks and last is not None and time.monotonic() >= next_bookmark:
                await resp.write(bookmark(last))
                next_bookmark = time.monotonic() + shared.config.bookmark_interval
        await resp.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return resp


# ---- writes ----------------------------------------------------------------------------------------------------


def _check_identity(body: Any, route: Route, *, for_create: bool) -> dict[str, Any]:
    info = route.cls.KIND
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object, got {type(body).__name__}")
    raw: dict[str, Any] = dict(body)
    api_version, kind = raw.get("apiVersion"), raw.get("kind")
    if api_version in (None, ""):
        raw["apiVersion"] = api_version = info.api_version  # the URL's group/version is the default
    if kind in (None, ""):
        raw["kind"] = kind = info.kind
    if api_version != info.api_version or kind != info.kind:
        raise BadRequest(f"the API version in the data ({api_version}) does not match the expected API version ({info.api_version})"
                         if api_version != info.api_version else
                         f"the kind in the data ({kind}) does not match the expected kind ({info.kind})")
    md_in = raw.get("metadata")
    if md_in is not None and not isinstance(md_in, dict):
        raise BadRequest(f"Object 'metadata' is not a map: the metadata of {info.kind} must be a JSON object, "
                         f"got {type(md_in).__name__}")
    md = dict(md_in or {})
    if info.namespaced:
        if md.get("namespace") and route.namespace and md["namespace"] != route.namespace:
            raise BadRequest("the namespace of the provided object does not match the namespace sent on the request")
        if route.namespace:
            md["namespace"] = route.namespace
    elif route.namespace:
        raise BadRequest(f"{info.plural} is not namespaced")
    if not for_create and route.name is not None:
        if md.get("name") not in (None, route.name):
            raise BadRequest(f"the name of the object ({md.get('name')}) does not match the name on the URL ({route.name})")
        md["name"] = route.name
    raw["metadata"] = md
    return raw


def _validate_fields(request: web.Request, raw: dict[str, Any], cls: type[KubeObject]) -> tuple[dict[str, Any], list[str]]:
    """fieldValidation=Strict|Warn|Ignore (default Warn): unknown fields are refused, warned about, or dropped."""
    mode = request.query.get("fieldValidation", "Warn")
    if mode not in ("Strict", "Warn", "Ignore"):
        raise BadRequest(f'fieldValidation: Unsupported value: "{mode}": supported values: "Ignore", "Strict", "Warn"')
    pruned, unknown = openapi.prune(raw, cls)
    if unknown and mode == "Strict":
        raise BadRequest("strict decoding error: " + ", ".join(f'unknown field "{u.lstrip(".")}"' for u in unknown),
                         kind=cls.KIND.kind, name=str((raw.get("metadata") or {}).get("name") or ""), group=cls.KIND.group)
    warnings = [f'unknown field "{u.lstrip(".")}"' for u in unknown] if mode == "Warn" else []
    return pruned, warnings


def _activate(ops: Any, created: KubeObject) -> KubeObject:
    """The namespace strategy's PrepareForCreate: a Namespace created through the API is Active at once. The
    twin's own namespaces are made Active by whoever creates them (serve's system namespaces)."""
    if not isinstance(created, Namespace) or created.status.phase is not None:
        return created
    if isinstance(ops, MemoryStore):
        return ops.patch(Namespace, created.name, None, {"status": {"phase": "Active"}}, subresource="status")
    shown = created.deepcopy()
    shown.status.phase = "Active"
    return shown


def _namespace_lifecycle(store: MemoryStore, cls: type[KubeObject], name: str, namespace: str | None, *,
                         required: bool) -> None:
    """The NamespaceLifecycle admission plugin: nothing is created in a namespace that is being deleted (nor,
    when `required`, in one that does not exist). Only requests through the API pass it; the twin's own
    models write the store directly."""
    if not cls.KIND.namespaced or not namespace:
        return
    ns = store.try_get(Namespace, namespace)
    if ns is None:
        if required:
            raise NotFound(f'namespaces "{namespace}" not found', kind="Namespace", name=namespace)
        return
    if ns.metadata.deletion_timestamp is not None or ns.status.phase == "Terminating":
        info = cls.KIND
        resource = f"{info.plural}.{info.group}" if info.group else info.plural
        raise Forbidden(f'{resource} "{name}" is forbidden: unable to create new content in namespace {namespace} '
                        "because it is being terminated", kind=info.kind, name=name, group=info.group)


async def create(request: web.Request, shared: Shared, cluster: Cluster, route: Route) -> web.Response:
    body = await read_body(request, (JSON, YAML), shared.config)
    raw = _check_identity(body, route, for_create=True)
    raw, warnings = _validate_fields(request, raw, route.cls)
    manager = field_manager(request)
    if route.cls.KIND.status_subresource:
        raw.pop("status", None)  # the status subresource owns it; a create starts from the default status
    dry = dry_run(request)

    def write() -> KubeObject:
        md = raw["metadata"]
        _namespace_lifecycle(cluster.store, route.cls, str(md.get("name") or md.get("generateName") or ""),
                             md.get("namespace"), required=shared.config.require_namespace)
        ssa.record_update(None, raw, manager, "", rfc3339(shared.now()))
        ops = DryRunStore(cluster.store, shared.now) if dry else cluster.store
        created = ops.create(admission.decode(raw, route.cls))
        return _activate(ops, created)

    obj = await shared.call(write)
    if not dry:
        shared.poke()
    return _respond(obj.wire(), 201, warnings)


async def update(request: web.Request, shared: Shared, cluster: Cluster, route: Route) -> web.Response:
    body = await read_body(request, (JSON, YAML), shared.config)
    raw = _check_identity(body, route, for_create=False)
    raw, warnings = _validate_fields(request, raw, route.cls)
    manager = field_manager(request)
    sub = route.subresource or ""
    dry = dry_run(request)

    def write() -> KubeObject:
        store = cluster.store
        ops = DryRunStore(store, shared.now) if dry else store
        old = store.get(route.cls, route.name or "", route.namespace)
        if sub == "":
            ssa.record_update(old.wire(), raw, manager, "", rfc3339(shared.now()))
            return ops.update(admission.decode(raw, route.cls))
        return ops.update_status(admission.decode(raw, route.cls))

    obj = await shared.call(write)
    if not dry:
        shared.poke()
    return _respond(obj.wire(), 200, warnings)


def _strip_directives(value: Any) -> Any:
    """Strategic merge patch directives ($patch, $retainKeys, $setElementOrder/...) have no meaning once
    lists are atomic; what remains is a merge patch."""
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    return value


async def patch(request: web.Request, shared: Shared, cluster: Cluster, route: Route) -> web.Response:
    cls = route.cls
    info = cls.KIND
    mt = media_type(request)
    allowed = [JSON_PATCH, MERGE_PATCH, APPLY_PATCH]
    if info.group in discovery.BUILTIN_GROUPS:
        allowed.insert(2, STRATEGIC_PATCH)
    body = await read_body(request, allowed, shared.config)
    if mt == APPLY_PATCH:
        return await server_side_apply(request, shared, cluster, route, body)
    manager = field_manager(request)
    sub = route.subresource or ""
    name = route.name or ""
    dry = dry_run(request)

    def write() -> tuple[KubeObject, list[str]]:
        store = cluster.store
        ops = DryRunStore(store, shared.now) if dry else store
        old = store.get(cls, name, route.namespace)
        base = old.wire()
        try:
            if mt == JSON_PATCH:
                patched = json_patch(base, body)
            else:
                if not isinstance(body, dict):
                    raise PatchError("a merge patch must be a JSON object", malformed=True)
                patched = merge_patch(base, _strip_directives(body) if mt == STRATEGIC_PATCH else body)
        except PatchError as e:
            if e.malformed:
                raise BadRequest(e.message, kind=info.kind, name=name, group=info.group) from None
            raise Invalid(info.kind, name, [FieldCause(e.path or "<root>", e.message)], group=info.group) from None
        if not isinstance(patched, dict):
            raise BadRequest("the patched object is not a JSON object", kind=info.kind, name=name)
        checked = _check_identity(patched, route, for_create=False)
        pruned, warnings = _validate_fields(request, checked, cls)
        if sub == "":
            ssa.record_update(base, pruned, manager, "", rfc3339(shared.now()))
            return ops.update(admission.decode(pruned, cls)), warnings
        return ops.update_status(admission.decode(pruned, cls)), warnings

    obj, warnings = await shared.call(write)
    if not dry:
        shared.poke()
    return _respond(obj.wire(), 200, warnings)


async def server_side_apply(request: web.Request, shared: Shared, cluster: Cluster, route: Route, body: Any) -> web.Response:
    cls = route.cls
    info = cls.KIND
    manager = field_manager(request, required=True)
    force = query_bool(request, "force")
    config = _check_identity(body, route, for_create=False)
    config, warnings = _validate_fields(request, config, cls)
    if (config.get("metadata") or {}).get("managedFields"):
        raise BadRequest("metadata.managedFields must be nil in an apply configuration")
    sub = route.subresource or ""
    name = route.name or ""
    dry = dry_run(request)

    def write() -> tuple[KubeObject, int]:
        store = cluster.store
        ops = DryRunStore(store, shared.now) if dry else store
        live = store.try_get(cls, name, route.namespace)
        now = rfc3339(shared.now())
        if live is None:
            if sub:
                raise NotFound(f'{info.plural}.{info.group} "{name}" not found', kind=info.kind, name=name, group=info.group)
            _namespace_lifecycle(store, cls, name, route.namespace, required=shared.config.require_namespace)
            new = ssa.apply(None, config, manager, force=force, subresource="", now=now, kind=info.kind, name=name, group=info.group)
            if info.status_subresource:
                new.pop("status", None)
            return _activate(ops, ops.create(admission.decode(new, cls))), 201
        new = ssa.apply(live.wire(), config, manager, force=force, subresource=sub, now=now, kind=info.kind, name=name,
                        group=info.group)
        new["metadata"]["resourceVersion"] = live.metadata.resource_version
        decoded = admission.decode(new, cls)
        return (ops.update_status(decoded) if sub else ops.update(decoded)), 200

    obj, code = await shared.call(write)
    if not dry:
        shared.poke()
    return _respond(obj.wire(), code, warnings)


# DeleteOptions fields and the JSON types they decode from (the rest of the struct is ignored, as Go ignores
# unknown fields here).
_DELETE_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "gracePeriodSeconds": (int,), "propagationPolicy": (str,), "orphanDependents": (bool,), "preconditions": (dict,),
    "dryRun": (list,), "kind": (str,), "apiVersion": (str,),
}


async def _delete_options(request: web.Request, config: ServerConfig) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if request.can_read_body:
        raw = await request.read()
        if raw.strip():
            try:
                opts = decode_document(raw, JSON, config)
            except BadRequest as e:
                raise BadRequest(e.message.replace("the body of the request", "the DeleteOptions body")) from None
            if not isinstance(opts, dict):
                raise BadRequest("DeleteOptions must be a JSON object")
    for key, types in _DELETE_OPTION_TYPES.items():
        value = opts.get(key)
        # bool is an int in Python, not in Go's decoder.
        if value is not None and (not isinstance(value, types) or (types == (int,) and isinstance(value, bool))):
            raise BadRequest(f"the DeleteOptions body could not be decoded: {key} must be a {types[0].__name__}, "
                             f"got {type(value).__name__}")
    pre = opts.get("preconditions") or {}
    for key in ("uid", "resourceVersion"):
        if pre.get(key) is not None and not isinstance(pre[key], str):
            raise BadRequest(f"the DeleteOptions body could not be decoded: preconditions.{key} must be a string")
    for v in opts.get("dryRun") or []:
        if v != "All":
            raise BadRequest(f'Invalid dry run value: dryRun: Unsupported value: "{v}": supported values: "All"')
    if dry_run(request):
        opts["dryRun"] = ["All"]
    query_int(request, "gracePeriodSeconds")
    if "propagationPolicy" in request.query:
        opts["propagationPolicy"] = request.query["propagationPolicy"]
    if query_bool(request, "orphanDependents") and "propagationPolicy" not in opts:
        opts["propagationPolicy"] = "Orphan"
    if opts.get("orphanDependents") is True and "propagationPolicy" not in opts:
        opts["propagationPolicy"] = "Orphan"
    return opts


def _propagation(opts: dict[str, Any]) -> Propagation:
    policy = opts.get("propagationPolicy") or "Background"
    if policy not in ("Background", "Foreground", "Orphan"):
        raise BadRequest(f'propagationPolicy: Unsupported value: "{policy}": supported values: "Background", "Foreground", "Orphan"')
    return cast(Propagation, policy)


# ---- the namespace controller's part: a deleted namespace empties, then goes ------------------------------------

# Stands in for the namespace's spec.finalizers ["kubernetes"]: the store holds an object only for metadata
# finalizers, so a namespace being deleted carries this one until its content is gone.
NAMESPACE_FINALIZER = "kubernetes"
_NAMESPACE_PASS_S = 0.2
_background: set[asyncio.Task[None]] = set()


def _namespace_content(store: MemoryStore, namespace: str) -> list[KubeObject]:
    from dpf_core.api import registry

    return [o for c in registry.all_kinds() if c.KIND.namespaced for o in store.list(c, namespace)]


def _finalize_namespace(store: MemoryStore, name: str) -> bool:
    """One pass of the namespace controller over a terminating namespace: delete everything in it (each object
    still honours its own finalizers); once nothing is left, release the namespace. True when it is gone."""
    ns = store.try_get(Namespace, name)
    if ns is None:
        return True
    if ns.metadata.deletion_timestamp is None:
        return True
    for obj in _namespace_content(store, name):
        if obj.metadata.deletion_timestamp is None:
            # A webhook may refuse (vbfb while a DPUSet names the BFB): the namespace stays Terminating and the
            # next pass tries again, as the namespace controller does; the DELETE of the namespace succeeded.
            with contextlib.suppress(NotFound, Conflict, Forbidden):
                store.delete(type(obj), obj.name, name)
    if _namespace_content(store, name):
        return False
    if NAMESPACE_FINALIZER in ns.metadata.finalizers:
        rest = [f for f in ns.metadata.finalizers if f != NAMESPACE_FINALIZER]
        store.patch(Namespace, name, None, {"metadata": {"finalizers": rest}})
    return store.try_get(Namespace, name) is None


def _delete_namespace(store: MemoryStore, name: str, uid: str | None, resource_version: str | None) -> bool:
    """DELETE of a namespace: Terminating at once, content deleted by the namespace controller (here: now,
    then by `_namespace_controller` until it is empty). True when the namespace is already gone."""
    ns = store.get(Namespace, name)
    if ns.metadata.deletion_timestamp is None:
        if uid is not None and uid != ns.metadata.uid:
            raise Conflict(f'Operation cannot be fulfilled on namespaces "{name}": Precondition failed: UID in precondition: '
                           f"{uid}, UID in object meta: {ns.metadata.uid}", kind="Namespace", name=name)
        if resource_version is not None and resource_version != ns.metadata.resource_version:
            raise Conflict(f'Operation cannot be fulfilled on namespaces "{name}": Precondition failed: ResourceVersion in '
                           f"precondition: {resource_version}, ResourceVersion in object meta: {ns.metadata.resource_version}",
                           kind="Namespace", name=name)
        if NAMESPACE_FINALIZER not in ns.metadata.finalizers:
            store.patch(Namespace, name, None, {"metadata": {"finalizers": [*ns.metadata.finalizers, NAMESPACE_FINALIZER]}})
        store.delete(Namespace, name, None)
        with contextlib.suppress(NotFound):
            store.patch(Namespace, name, None, {"status": {"phase": "Terminating"}}, subresource="status")
    return _finalize_namespace(store, name)


async def _namespace_controller(shared: Shared, cluster: Cluster, name: str) -> None:
    while not await shared.call(lambda: _finalize_namespace(cluster.store, name)):
        await asyncio.sleep(_NAMESPACE_PASS_S)
    shared.poke()


async def delete(request: web.Request, shared: Shared, cluster: Cluster, route: Route) -> web.Response:
    cls = route.cls
    opts = await _delete_options(request, shared.config)
    policy = _propagation(opts)
    pre = opts.get("preconditions") or {}
    name = route.name or ""

    dry = bool(opts.get("dryRun"))

    def write() -> dict[str, Any]:
        store = cluster.store
        before = store.get(cls, name, route.namespace)
        if dry:
            kept = DryRunStore(store, shared.now).delete(cls, name, route.namespace, pre.get("uid"), pre.get("resourceVersion"))
            if kept is not None:
                return kept.wire()
            info = cls.KIND
            return success_status({"name": name, "group": info.group, "kind": info.plural, "uid": before.metadata.uid or ""})
        if cls is Namespace:
            if not _delete_namespace(store, name, pre.get("uid"), pre.get("resourceVersion")):
                pending.append(name)
        else:
            store.delete(cls, name, route.namespace, policy, uid=pre.get("uid"), resource_version=pre.get("resourceVersion"))
        after = store.try_get(cls, name, route.namespace)
        if after is not None:
            return after.wire()  # finalizers hold it: deletionTimestamp set, the object stays
        info = cls.KIND
        return success_status({"name": name, "group": info.group, "kind": info.plural, "uid": before.metadata.uid or ""})

    pending: list[str] = []
    out = await shared.call(write)
    if not dry:
        shared.poke()
    for ns in pending:
        task = asyncio.get_running_loop().create_task(_namespace_controller(shared, cluster, ns))
        _background.add(task)
        task.add_done_callback(_background.discard)
    return _respond(out)


async def delete_collection(request: web.Request, shared: Shared, cluster: Cluster, route: Route) -> web.Response:
    cls = route.cls
    opts = await _delete_options(request, shared.config)
    policy = _propagation(opts)
    sel = Selection(cls, request.query.get("labelSelector"), request.query.get("fieldSelector"))
    dry = bool(opts.get("dryRun"))

    def write() -> list[dict[str, Any]]:
        store = cluster.store
        out = []
        for o in store.list(cls, route.namespace, None, sel.store_field_selector):
            if not sel.matches(o):
                continue
            if dry:
                kept = DryRunStore(store, shared.now).delete(cls, o.name, o.namespace)
                out.append((kept or o).wire())
                continue
            store.delete(cls, o.name, o.namespace, policy)
            after = store.try_get(cls, o.name, o.namespace)
            out.append((after or o).wire())
        return out

    items = await shared.call(write)
    shared.poke()
    info = cls.KIND
    return _respond({"apiVersion": info.api_version, "kind": f"{info.kind}List", "metadata": {}, "items": items})


# ---- dryRun=All ------------------------------------------------------------------------------------------------


def dry_run(request: web.Request) -> bool:
    """`dryRun=All` (the only value the API server knows): every admission step runs, nothing is stored."""
    values = request.query.getall("dryRun", [])
    for v in values:
        if v != "All":
            raise BadRequest(f'Invalid dry run value: dryRun: Unsupported value: "{v}": supported values: "All"')
    return bool(values)


def _resource_name(cls: type[KubeObject]) -> str:
    info = cls.KIND
    return f"{info.plural}.{info.group}" if info.group else info.plural


class DryRunStore:
    """The write half of MemoryStore as a dry run sees it: the same admission (defaulting, validation,
    immutability, webhooks) and the same refusals (exists, not found, conflict), but no resourceVersion,
    no event and no change, so a watch never hears of it and a controller never acts on it."""

    def __init__(self, store: MemoryStore, now: Callable[[], float]) -> None:
        self.store = store
        self.now = now

    def create(self, obj: KubeObject) -> KubeObject:
        cls, meta = type(obj), obj.metadata
        info = cls.KIND
        if meta.resource_version:
            raise BadRequest("resourceVersion should not be set on objects to be created", kind=info.kind, name=meta.name or "")
        if meta.name and self.store.try_get(cls, meta.name, meta.namespace) is not None:
            raise AlreadyExists(f'{_resource_name(cls)} "{meta.name}" already exists', kind=info.kind, name=meta.name,
                                group=info.group)
        admitted = admission.admit_create(obj, reader=self.store)
        m = admitted.metadata
        if not m.name and m.generate_name:
            m.name = m.generate_name + secrets.token_hex(3)[:5]
        m.uid = str(uuid.uuid4())
        m.creation_timestamp = rfc3339(self.now())
        m.generation = 1
        m.resource_version = None
        return admitted

    def _old(self, obj: KubeObject) -> KubeObject:
        cls, meta = type(obj), obj.metadata
        old = self.store.get(cls, meta.name or "", meta.namespace)
        if meta.resource_version and meta.resource_version != old.metadata.resource_version:
            raise Conflict(f'Operation cannot be fulfilled on {_resource_name(cls)} "{meta.name}": the object has been '
                           "modified; please apply your changes to the latest version and try again",
                           kind=cls.KIND.kind, name=meta.name or "", group=cls.KIND.group)
        return old

    def update(self, obj: KubeObject) -> KubeObject:
        old = self._old(obj)
        new = obj.deepcopy()
        om, m = old.metadata, new.metadata
        for attr in ("uid", "creation_timestamp", "deletion_timestamp", "deletion_grace_period_seconds", "generation",
                     "resource_version"):
            setattr(m, attr, getattr(om, attr))
        if old.KIND.status_subresource and "status" in type(old).model_fields:
            new.status = old.deepcopy().status  # type: ignore[attr-defined]
        admitted = admission.admit_update(new, old, reader=self.store)
        if admitted.model_dump(exclude={"metadata", "status"}) != old.model_dump(exclude={"metadata", "status"}):
            admitted.metadata.generation = (om.generation or 0) + 1
        return admitted

    def update_status(self, obj: KubeObject) -> KubeObject:
        old = self._old(obj)
        status = admission.admit_status_update(obj).status  # type: ignore[attr-defined]
        out = old.deepcopy()
        out.status = status  # type: ignore[attr-defined]
        return out

    def delete(self, cls: type[KubeObject], name: str, namespace: str | None, uid: str | None = None,
               resource_version: str | None = None) -> KubeObject | None:
        """The object as the delete would leave it (finalizers hold it), or None when it would be gone."""
        old = self.store.get(cls, name, namespace)
        if (uid and uid != old.metadata.uid) or (resource_version and resource_version != old.metadata.resource_version):
            raise Conflict(f'Operation cannot be fulfilled on {_resource_name(cls)} "{name}": precondition failed',
                           kind=cls.KIND.kind, name=name, group=cls.KIND.group)
        admission.admit_delete(old, reader=self.store)
        if not old.metadata.finalizers:
            return None
        out = old.deepcopy()
        if out.metadata.deletion_timestamp is None:
            out.metadata.deletion_timestamp = rfc3339(self.now())
            out.metadata.deletion_grace_period_seconds = 0
        return out
