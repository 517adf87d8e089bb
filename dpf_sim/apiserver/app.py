"""The twin's Kubernetes API server: one aiohttp application serving every store of the twin.

Layout (one port, one base path per cluster):

- `/...`                              the host cluster (store "host")
- `/clusters/<namespace>/<name>/...`  the DPU cluster of DPUCluster <namespace>/<name> (store "<namespace>/<name>")

A kubeconfig's `server:` may carry a path, so a DPU cluster's kubeconfig simply names
`https://127.0.0.1:<port>/clusters/<namespace>/<name>`; kubectl and client-go prefix every request with it.
DPU-cluster stores appear while the twin runs (Kamaji creates them), so the routing looks stores up per request.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web, web_protocol, web_server
from aiohttp.http_exceptions import BadHttpMethod
from aiohttp.web_urldispatcher import _default_expect_handler

from dpf_core.api import registry
from dpf_core.api.meta import KubeObject
from dpf_core.errors import ApiError, BadRequest, NotFound, TooManyRequests
from dpf_core.store.memory import MemoryStore

from . import discovery, handlers, openapi, podexec
from .auth import PUBLIC_PATHS, TokenAuthority
from .handlers import Cluster, PageCache, Pulse, Route, ServerConfig, Shared

log = logging.getLogger("dpf_sim.apiserver")

HOST = "host"
CLUSTER_PREFIX = "/clusters/"
DEBUG_PREFIX = "/debug/twin/"


class Unauthorized(ApiError):
    code = 401
    reason = "Unauthorized"


class EntityTooLarge(ApiError):
    code = 413
    reason = "RequestEntityTooLarge"


def cluster_path(cluster: str) -> str:
    """The base path of a served cluster ("" for the host)."""
    return "" if cluster == HOST else f"{CLUSTER_PREFIX}{cluster}"


class ApiServer:
    """An aiohttp application over `stores()` (name -> MemoryStore, read on every request)."""

    def __init__(
        self,
        stores: Callable[[], Mapping[str, MemoryStore]],
        *,
        lock: threading.RLock | None = None,
        now: Callable[[], float] | None = None,
        authority: TokenAuthority | None = None,
        config: ServerConfig | None = None,
        poke: Callable[[], None] | None = None,
        pod_exec: podexec.PodExec | None = None,
        debug: Mapping[str, Callable[[], Any]] | None = None,
    ) -> None:
        registry.load_all()
        self.stores = stores
        self.authority = authority
        # `pods/exec` answers (the embedder knows what a command does in its world) and read-only twin state
        # under /debug/twin/<name> (JSON, read holding the twin's lock; authenticated like any API path).
        self.pod_exec = pod_exec
        self.debug = dict(debug or {})
        self.shared = Shared(lock or threading.RLock(), now or time.time, config or ServerConfig(), poke or (lambda: None))
        self._clusters: dict[str, Cluster] = {}
        self._guard = threading.Lock()

    @property
    def config(self) -> ServerConfig:
        return self.shared.config

    def expire_continue_tokens(self) -> None:
        """Forget every paged-list snapshot (a later continue answers 410, as after an etcd compaction)."""
        for c in list(self._clusters.values()):
            c.pages.expire_all()

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body, middlewares=[self._errors])
        app.router.add_route("*", "/{tail:.*}", self._dispatch, expect_handler=self._expect)
        return app

    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        """`Expect:` runs before any middleware; aiohttp's own handler answers an unknown expectation with a
        plain-text 417 (and a 500 when the header is not ASCII). 100-continue keeps aiohttp's behaviour."""
        if request.headers.get("Expect", "").lower() == "100-continue":
            await _default_expect_handler(request)
            return None
        return handlers.error_response(_http_error(417, "the server only understands the expectation 100-continue"))

    # ---- plumbing ------------------------------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as e:
            return handlers.error_response(e)
        except web.HTTPRequestEntityTooLarge as e:
            return handlers.error_response(EntityTooLarge(f"Request entity too large: limit is {self.config.max_body}: {e.text}"))
        except web.HTTPException as e:
            if e.status < 400:
                raise
            # aiohttp's own refusals (its router, its body reader) answer as the API server would: a Status.
            return handlers.error_response(_http_error(e.status, e.text or e.reason))
        except Exception as e:  # a bug in the twin: answer like the API server's panic handler, keep serving
            log.exception("internal error serving %s %s", request.method, request.path)
            return handlers.error_response(ApiError(f"Internal error occurred: {type(e).__name__}: {e}"))

    def _cluster(self, name: str) -> Cluster | None:
        store = self.stores().get(name)
        if store is None:
            return None
        with self._guard:
            c = self._clusters.get(name)
            if c is None or c.store is not store:
                pulse = Pulse(asyncio.get_running_loop())
                c = Cluster(name, store, pulse, PageCache(self.config.continue_ttl, self.config.continue_snapshots))
                with self.shared.lock:
                    store.subscribe(pulse.fire_threadsafe)
                self._clusters[name] = c
            return c

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        name = HOST
        if path.startswith(CLUSTER_PREFIX):
            parts = path[len(CLUSTER_PREFIX):].split("/", 2)
            if len(parts) < 2 or not parts[0] or not parts[1]:
                raise NotFound(f"no cluster at {path}")
            name = f"{parts[0]}/{parts[1]}"
            path = "/" + (parts[2] if len(parts) > 2 else "")
        cluster = self._cluster(name)
        if cluster is None:
            raise NotFound(f'the twin serves no cluster "{name}" (yet)')
        path = "/" + path.strip("/") if path != "/" else "/"
        if self.authority is not None and path not in PUBLIC_PATHS:
            ident = self.authority.authenticate(request.headers.get("Authorization"), name, cluster.store)
            if ident is None:
                raise Unauthorized("Unauthorized")
        # Only a GET watches; any other method with ?watch=true is an ordinary request and takes a slot.
        is_watch = request.method == "GET" and (request.query.get("watch", "").lower() in ("1", "true") or "/watch/" in path)
        if is_watch:
            return await self._route(request, cluster, path)
        shared = self.shared
        if shared.inflight >= self.config.max_inflight:
            raise TooManyRequests("Too many requests, please try again later.", retry_after=self.config.retry_after)
        shared.inflight += 1
        try:
            return await self._route(request, cluster, path)
        finally:
            shared.inflight -= 1

    async def _route(self, request: web.Request, cluster: Cluster, path: str) -> web.StreamResponse:
        accept = request.headers.get("Accept", "")
        parts = path.strip("/").split("/")
        is_resource = (len(parts) >= 3 and parts[0] == "api") or (len(parts) >= 4 and parts[0] == "apis")
        if not is_resource and request.method not in ("GET", "HEAD"):
            # Discovery, OpenAPI, health and debug documents are read-only.
            raise handlers.MethodNotAllowed(f"{request.method} is not supported on {path}")
        if path == "/version":
            return web.json_response(discovery.VERSION_INFO)
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path in ("/api", "/apis"):
            agg = discovery.wants_aggregated(accept)
            if agg is not None:
                doc = discovery.aggregated(path == "/api", agg)
                return web.Response(body=handlers._dumps(doc).encode(), headers={
                    "Content-Type": agg, "ETag": discovery.etag(doc), "Vary": "Accept"})
            if path == "/api":
                return web.json_response(discovery.api_versions(request.host), headers={"Vary": "Accept"})
            return web.json_response(discovery.api_group_list(), headers={"Vary": "Accept"})
        if path.startswith("/openapi/"):
            return self._openapi(path, accept)
        if path.startswith(DEBUG_PREFIX):
            probe = self.debug.get(path[len(DEBUG_PREFIX):])
            if probe is None:
                raise NotFound("the server could not find the requested resource")
            return web.json_response(await self.shared.call(probe), dumps=handlers._dumps)
        if parts[0] == "apis" and len(parts) == 2:
            group_doc = discovery.api_group(parts[1])
            if group_doc is None:
                raise NotFound("the server could not find the requested resource")
            return web.json_response(group_doc)
        if (parts[0] == "api" and len(parts) == 2) or (parts[0] == "apis" and len(parts) == 3):
            group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
            resources = discovery.resource_list(group, version)
            if resources is None:
                raise NotFound("the server could not find the requested resource")
            return web.json_response(resources)
        route = self._resource_route(parts)
        if route.subresource == "exec":
            return await podexec.handle(request, self.shared, cluster, route, self.pod_exec)
        return await handlers.handle(request, self.shared, cluster, route)

    def _openapi(self, path: str, accept: str) -> web.StreamResponse:
        if accept and "json" not in accept and "*/*" not in accept:
            raise handlers.NotAcceptable("the twin serves OpenAPI documents as application/json only")
        if path == "/openapi/v2":
            return web.json_response(openapi.v2(), dumps=handlers._dumps)
        if path == "/openapi/v3":
            return web.json_response(openapi.v3_root())
        if path.startswith("/openapi/v3/"):
            doc = openapi.v3_for_path(path[len("/openapi/v3/"):])
            if doc is not None:
                return web.json_response(doc, dumps=handlers._dumps, headers={"Cache-Control": "public, immutable"})
        raise NotFound("the server could not find the requested resource")

    def _resource_route(self, parts: list[str]) -> Route:
        missing = NotFound("the server could not find the requested resource")
        if parts[0] == "api" and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise missing
        watch = False
        if rest and rest[0] == "watch":
            watch, rest = True, rest[1:]
        if not rest:
            raise missing

        def kind(plural: str) -> type[KubeObject]:
            cls = discovery.resolve(group, version, plural)
            if cls is None:
                raise missing
            return cls

        if rest[0] == "namespaces" and len(rest) >= 4:
            cls = kind(rest[2])
            if not cls.KIND.namespaced or len(rest) > 5:
                raise missing
            return Route(cls, rest[1], rest[3] if len(rest) > 3 else None, rest[4] if len(rest) > 4 else None, watch)
        if rest[0] == "namespaces" and len(rest) == 3 and group == "":
            ns_cls = kind("namespaces")
            if rest[2] in ("status", "finalize"):
                return Route(ns_cls, None, rest[1], "status", watch)
            cls = kind(rest[2])
            if not cls.KIND.namespaced:
                raise missing
            return Route(cls, rest[1], None, None, watch)
        if rest[0] == "namespaces" and len(rest) == 3:
            cls = kind(rest[2])
            if not cls.KIND.namespaced:
                raise missing
            return Route(cls, rest[1], None, None, watch)
        cls = kind(rest[0])
        if len(rest) > 3 or (cls.KIND.namespaced and len(rest) > 1):
            raise missing
        return Route(cls, None, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None, watch)


def _http_error(status: int, text: str) -> ApiError:
    """An HTTP-level refusal (from aiohttp, before or around our handlers) as the ApiError of that code."""
    if status == 413:
        return EntityTooLarge(f"Request entity too large: {text}")
    if status == 404:
        return NotFound("the server could not find the requested resource")
    if status == 405:
        return handlers.MethodNotAllowed(text or "method not allowed")
    if status == 417:
        failed = BadRequest(text)
        failed.code, failed.reason = 417, "ExpectationFailed"
        return failed
    if status == 504:
        timeout = ApiError(text or "the request timed out")
        timeout.code, timeout.reason = 504, "Timeout"
        return timeout
    err = BadRequest(text or "bad request") if 400 <= status < 500 else ApiError(f"Internal error occurred: {text}")
    err.code = status
    return err


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token: what a method may be


def _first_word(exc: BaseException) -> str:
    """The method llhttp refused, from its message (b'FROB /path HTTP/1.1')."""
    text = str(getattr(exc, "message", "") or exc)
    match = re.search(r"b'([^ ']*)", text)
    return match.group(1) if match else ""


class _StatusRequestHandler(web_protocol.RequestHandler):
    """A request aiohttp cannot even parse (a method llhttp does not know, an over-long request line or
    header, a broken chunked body) is refused before any handler runs; this makes that refusal a Status
    too, so a client always reads the same error shape."""

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs it; raises if a response already started
        if isinstance(exc, BadHttpMethod) and _TOKEN.fullmatch(_first_word(exc)):
            # A well-formed method the parser does not know (FROBNICATE, lowercase get): the API server's 405.
            err: ApiError = handlers.MethodNotAllowed(f"the server does not support the method {_first_word(exc)!r}")
        elif status < 500:
            err = _http_error(status, f"the request could not be parsed: {message or exc or ''}".strip())
        elif status == 504:
            err = _http_error(504, "the request timed out")
        else:
            err = ApiError("Internal error occurred: the request failed")
        resp = handlers.error_response(err)
        resp.force_close()
        return resp


class _StatusServer(web_server.Server):
    def __call__(self) -> web_protocol.RequestHandler:
        return _StatusRequestHandler(self, loop=self._loop, **self._kwargs)


class _StatusAppRunner(web.AppRunner):
    async def _make_server(self) -> web_server.Server:
        server = await super()._make_server()
        # aiohttp has no hook for its protocol-level error page: swap in a Server that builds our handler.
        server.__class__ = _StatusServer
        return server


class ServerThread:
    """Runs an ApiServer on its own event loop thread (tests, and `dpf serve` next to its pacer)."""

    def __init__(self, server: ApiServer, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.server = server
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def start(self) -> str:
        self._thread = threading.Thread(target=self._run, name="twin-apiserver", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self.url

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start())
        except BaseException as e:  # report a bind failure to start()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._cleanup())
        loop.close()

    async def _start(self) -> None:
        runner = _StatusAppRunner(self.server.application(), handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        self._runner = runner
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        if self.loop is not None and self._thread is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        self.server.shared.executor.shutdown(wait=False, cancel_futures=True)
