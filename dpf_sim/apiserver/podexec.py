"""`pods/exec` over the Kubernetes websocket stream protocol, as the kubernetes python client speaks it.

The client upgrades `GET .../pods/<name>/exec?command=...&stdout=true&stderr=true` to a websocket offering
`v5.channel.k8s.io` and `v4.channel.k8s.io`; we take v4, the version every client since Kubernetes 1.4
understands. Every message is one byte of channel (0 stdin, 1 stdout, 2 stderr, 3 error) then data; the
error channel carries one `Status` (Success, or Failure with reason NonZeroExitCode and the exit code as
the message of cause ExitCode, which is where the client reads `returncode`); then the server closes.

kubectl's own exec speaks SPDY (or websockets only from 1.30 with the v5 protocol on); the twin answers a
non-websocket request with the API server's "Upgrade request required".

What a command does is the embedder's business: `PodExec(cluster, namespace, pod, container, argv)` runs on
a worker thread WITHOUT the twin's lock (a command may wait for simulated time to pass, e.g. a reboot).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from dpf_core.api.external import Pod
from dpf_core.errors import BadRequest

from .handlers import Cluster, Route, Shared

V4_CHANNEL_PROTOCOL = "v4.channel.k8s.io"
# The pre-v4 protocols carry no exit code; offered only so an old client gets a clean answer.
PROTOCOLS = (V4_CHANNEL_PROTOCOL, "channel.k8s.io")
STDOUT, STDERR, ERROR = 1, 2, 3


@dataclass(frozen=True)
class ExecResult:
    """What a command printed and how it ended; `code` 0 = success."""

    code: int = 0
    stdout: str = ""
    stderr: str = ""
    message: str = ""  # why a failed exec failed, for the Status (default: the exit code)


PodExec = Callable[[str, str, str, str, list[str]], ExecResult]


def exit_status(result: ExecResult) -> dict[str, Any]:
    """The error channel's Status, as the kubelet's remotecommand writes it."""
    if result.code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": result.message or f"command terminated with non-zero exit code: exit status {result.code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(result.code)}]},
    }


async def handle(request: web.Request, shared: Shared, cluster: Cluster, route: Route, run: PodExec | None) -> web.StreamResponse:
    if route.cls is not Pod or route.name is None or route.namespace is None:
        raise BadRequest("exec is a subresource of pods only")
    if request.method not in ("GET", "POST"):
        raise BadRequest(f"{request.method} is not supported on pods/exec")
    command = request.query.getall("command", [])
    if not command:
        raise BadRequest("you must specify at least 1 command")
    container = request.query.get("container", "")
    name, namespace = route.name, route.namespace

    def check() -> None:
        pod = cluster.store.get(Pod, name, namespace)
        phase = (pod.wire().get("status") or {}).get("phase")
        if phase != "Running":
            raise BadRequest(f"unable to upgrade connection: pod {name} is not running (phase {phase or 'Pending'})")

    await shared.call(check)
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise BadRequest("Upgrade request required")
    ws = web.WebSocketResponse(protocols=PROTOCOLS, autoping=True)
    await ws.prepare(request)
    loop = asyncio.get_running_loop()
    if run is None:
        result = ExecResult(126, stderr="exec is not available in this twin\n", message="exec is not available")
    else:
        try:
            result = await loop.run_in_executor(shared.executor, run, cluster.name, namespace, name, container, list(command))
        except Exception as e:  # the embedder's bug: the caller sees a failed command, the server keeps going
            result = ExecResult(1, stderr=f"{type(e).__name__}: {e}\n", message=f"internal error: {e}")
    try:
        if result.stdout:
            await ws.send_bytes(bytes([STDOUT]) + result.stdout.encode())
        if result.stderr:
            await ws.send_bytes(bytes([STDERR]) + result.stderr.encode())
        if ws.ws_protocol == V4_CHANNEL_PROTOCOL:
            await ws.send_bytes(bytes([ERROR]) + json.dumps(exit_status(result)).encode())
        elif result.code != 0:
            await ws.send_bytes(bytes([ERROR]) + (result.message or f"exit status {result.code}").encode())
        await ws.close()
        # Drain what the client sends until it acknowledges the close.
        async for msg in ws:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
                break
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return ws
