"""Fake ports for controller unit tests: deterministic, synchronous, inspectable.

- `FakeTasks` runs task procedures (generators of ops) on the caller's thread with an op handler, either
  at once on `start` (autorun) or when the test says so (`run`), so a test can hold a task "running".
- `OpScript` is a handler that answers ops by type from scripted outcomes (a value, or an exception to
  throw into the procedure) and records every op it saw.
- `FakeBfbStore`, `FakeDms`, `FakeHostExec`, `FakeClusterClients`: the quick ports, as plain state.
- `fake_ports(...)` wires them into a `Ports`.
- `PatchableStore`: a MemoryStore whose methods a test may replace on the instance to inject API faults.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dpf_core.ports import Ports, Procedure, TaskState, TaskStatus
from dpf_core.ports.dispatch import inline_composites
from dpf_core.ports.ops import OsVerify, OsVerifyResult, RebootStatusOp, RebootStatusResult
from dpf_core.store import MemoryStore
from dpf_core.store.protocol import Client

OpHandler = Callable[[Any], Any]


class PatchableStore(MemoryStore):
    """A MemoryStore a test may replace methods of on the instance (`store.try_get = failing`) to inject API
    faults. The store is a compiled class when dpf_core.compiled's build is in use, and a compiled class's
    instances take no attributes; an interpreted subclass's do, and the controllers (interpreted code) look
    methods up on the instance. Calls the store makes to itself inside compiled code do not see them."""


class OpScript:
    """Answers ops by their type. `on(OpType, *outcomes)` queues outcomes consumed in order; the last one
    repeats. An outcome that is an exception instance is thrown into the procedure; a callable gets the op.
    Unscripted ops answer `default(op)` (RebootStatus: done with STATUS_SUCCESS; OS.Verify: a DPU running an
    unknown version, ""; everything else None)."""

    def __init__(self) -> None:
        self._outcomes: dict[type, deque[Any]] = defaultdict(deque)
        self.seen: list[Any] = []

    def on(self, op_type: type, *outcomes: Any) -> OpScript:
        self._outcomes[op_type].extend(outcomes)
        return self

    @staticmethod
    def default(op: Any) -> Any:
        if isinstance(op, RebootStatusOp):
            return RebootStatusResult(active=False, status="STATUS_SUCCESS")
        if isinstance(op, OsVerify):
            return OsVerifyResult(version="")
        return None

    def __call__(self, op: Any) -> Any:
        self.seen.append(op)
        queue = self._outcomes.get(type(op))
        if not queue:
            return self.default(op)
        outcome = queue.popleft() if len(queue) > 1 else queue[0]
        if isinstance(outcome, BaseException):
            raise outcome
        if callable(outcome):
            return outcome(op)
        return outcome

    def of_type(self, op_type: type) -> list[Any]:
        return [op for op in self.seen if isinstance(op, op_type)]


@dataclass
class _Task:
    factory: Callable[[], Procedure]
    status: TaskStatus


class FakeTasks:
    """The Tasks port, synchronous. `started` lists every key a start actually created, in order."""

    def __init__(self, handler: OpHandler | None = None, *, autorun: bool = True, now: Callable[[], float] | None = None):
        self.handler: OpHandler = handler or OpScript()
        self.autorun = autorun
        self.now = now or (lambda: 0.0)
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.forgotten: list[str] = []
        self._tasks: dict[str, _Task] = {}

    # -- the port --------------------------------------------------------------------------------------
    def start(self, key: str, procedure: Callable[[], Procedure]) -> None:
        if key in self._tasks:
            return
        self.started.append(key)
        self._tasks[key] = _Task(procedure, TaskStatus(TaskState.RUNNING, started_at=self.now()))
        if self.autorun:
            self.run(key)

    def status(self, key: str) -> TaskStatus | None:
        task = self._tasks.get(key)
        return task.status if task is not None else None

    def cancel(self, key: str) -> None:
        task = self._tasks.get(key)
        if task is not None and not task.status.done:
            self.cancelled.append(key)
            task.status = TaskStatus(TaskState.CANCELLED, "cancelled", started_at=task.status.started_at, finished_at=self.now())

    def forget(self, key: str) -> None:
        if self._tasks.pop(key, None) is not None:
            self.forgotten.append(key)

    # -- test controls ---------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        return list(self._tasks)

    def running(self) -> list[str]:
        return [k for k, t in self._tasks.items() if not t.status.done]

    def run(self, key: str | None = None) -> None:
        """Run the task `key` (or every running one) to completion with the handler."""
        keys = [key] if key is not None else self.running()
        for k in keys:
            task = self._tasks[k]
            if task.status.done:
                continue
            task.status = self._drive(inline_composites(task.factory(), self.now), task.status.started_at)

    def finish(self, key: str, state: TaskState, message: str = "", result: Any = None) -> None:
        """Force a task's outcome without running its procedure."""
        task = self._tasks[key]
        task.status = TaskStatus(state, message, result=result, started_at=task.status.started_at, finished_at=self.now())

    def _drive(self, gen: Procedure, started_at: float) -> TaskStatus:
        send: Any = None
        throw: BaseException | None = None
        try:
            while True:
                op = gen.throw(throw) if throw is not None else gen.send(send)
                send, throw = None, None
                try:
                    send = self.handler(op)
                except Exception as e:
                    throw = e
        except StopIteration as stop:
            return TaskStatus(TaskState.SUCCEEDED, result=stop.value, started_at=started_at, finished_at=self.now())
        except Exception as e:
            return TaskStatus(
                TaskState.FAILED, str(e), getattr(e, "reason", type(e).__name__), started_at=started_at, finished_at=self.now()
            )


@dataclass
class FakeBfbStore:
    files: dict[str, bytes] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)

    def exists(self, file_name: str) -> bool:
        return file_name in self.files

    def size(self, file_name: str) -> int | None:
        data = self.files.get(file_name)
        return len(data) if data is not None else None

    def remove(self, file_name: str) -> None:
        if self.files.pop(file_name, None) is not None:
            self.removed.append(file_name)

    def write(self, file_name: str, content: bytes) -> None:
        self.files[file_name] = bytes(content)


@dataclass
class FakeDms:
    """Every address is reachable unless listed in `unreachable` (or `reachable_all` is False)."""

    unreachable: set[str] = field(default_factory=set)
    reachable_all: bool = True
    dialed: list[str] = field(default_factory=list)

    def reachable(self, address: str) -> bool:
        self.dialed.append(address)
        return self.reachable_all and address not in self.unreachable


@dataclass
class FakeHostExec:
    """Host uptimes in seconds; a host not listed has been up for `default` (None = unreachable)."""

    uptimes: dict[str, float | None] = field(default_factory=dict)
    default: float | None = 10_000_000.0
    calls: list[str] = field(default_factory=list)

    def uptime(self, node: str) -> float | None:
        self.calls.append(node)
        return self.uptimes.get(node, self.default)


class FakeClusterClients:
    """DPU-cluster clients by kubeconfig; any kubeconfig not registered gets `default` (None = failure)."""

    def __init__(self, default: Client | None = None) -> None:
        self.default = default
        self.by_kubeconfig: dict[bytes, Client] = {}
        self.requested: list[bytes] = []

    def add(self, kubeconfig: bytes, client: Client) -> None:
        self.by_kubeconfig[kubeconfig] = client

    def for_kubeconfig(self, kubeconfig: bytes) -> Client | None:
        self.requested.append(kubeconfig)
        return self.by_kubeconfig.get(kubeconfig, self.default)


def fake_ports(
    *,
    handler: OpHandler | None = None,
    autorun: bool = True,
    dpu_cluster: MemoryStore | None = None,
    now: Callable[[], float] | None = None,
    extra: Iterable[tuple[str, Any]] = (),
) -> Ports:
    """A Ports with every fake; `ports.clusters.default` is `dpu_cluster` (a fresh MemoryStore if None)."""
    return Ports(
        tasks=FakeTasks(handler, autorun=autorun, now=now),
        bfb_store=FakeBfbStore(),
        dms=FakeDms(),
        host_exec=FakeHostExec(),
        clusters=FakeClusterClients(dpu_cluster if dpu_cluster is not None else MemoryStore(name="dpu-cluster")),
        extra=dict(extra),
    )
