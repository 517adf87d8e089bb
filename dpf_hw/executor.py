"""The production `Tasks` port: core task procedures run on worker threads, on the wall clock.

Same contract as the twin's `dpf_sim.tasks.SimTasks`, so a procedure behaves alike in both worlds:
- a procedure yields ops (dpf_core.ports.ops); each op goes to the handler registered for its type, which
  blocks this worker thread (a grpc stream, an HTTP download) and returns the op's result;
- an `OpError` from a handler is thrown into the procedure at the `yield` that asked for the op, so retries
  and timeouts stay in core; any other exception from a handler is a bug and fails the task at once;
- `Sleep` waits on the wall clock (or on an injected sleep), and a cancel cuts it short;
- `cancel` marks the task Cancelled at once (a poll right after must not see Running); the procedure is
  closed (its finally blocks run) as soon as the op in flight returns. A handler that wants to stop
  earlier calls `raise_if_cancelled()` between chunks of work;
- `on_done(key, status)` runs at every terminal transition of a task that has not been forgotten.

DPF keeps one goroutine per async task; here one daemon thread per task plays that part.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dpf_core.ports import Procedure, TaskState, TaskStatus
from dpf_core.ports.dispatch import OpDispatcher, inline_composites
from dpf_core.ports.ops import OpError, Sleep

log = logging.getLogger(__name__)

Handler = Callable[[Any], Any]
Completion = Callable[[str, TaskStatus], None]


class TaskCancelled(Exception):
    """Raised inside a handler (by `raise_if_cancelled`) when the task it works for was cancelled."""


_local = threading.local()


def cancellation() -> threading.Event | None:
    """The cancel event of the task running on this thread (None outside a task)."""
    event: threading.Event | None = getattr(_local, "cancel", None)
    return event


def raise_if_cancelled() -> None:
    """For long handlers: stop between chunks when the task was cancelled or forgotten."""
    event = cancellation()
    if event is not None and event.is_set():
        raise TaskCancelled("cancelled")


class OpHandlers(OpDispatcher[Handler]):
    """Blocking handlers for the real world, called on the task's thread."""

    world = "the operator"

    def __call__(self, op: Any) -> Any:
        return self.handler_for(op)(op)


@dataclass
class _Task:
    key: str
    status: TaskStatus
    cancel: threading.Event = field(default_factory=threading.Event)
    exited: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class ThreadTasks:
    """dpf_core.ports.Tasks on worker threads. `handler(op)` executes every op but `Sleep`; `now()` stamps
    started_at/finished_at; `sleep(seconds)` replaces the cancellable wall-clock wait (e.g. a test clock)."""

    def __init__(self, handler: Handler, *, now: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] | None = None, on_done: Completion | None = None,
                 name: str = "dpf-task") -> None:
        self.handler = handler
        self.now = now
        self.sleep = sleep
        self.on_done = on_done
        self.name = name
        self.started = 0
        self._tasks: dict[str, _Task] = {}
        self._lock = threading.Lock()

    # --- the port ---------------------------------------------------------------------------------------
    def start(self, key: str, procedure: Callable[[], Procedure]) -> None:
        with self._lock:
            if key in self._tasks:
                return
            task = _Task(key, TaskStatus(TaskState.RUNNING, started_at=self.now()))
            self._tasks[key] = task
            self.started += 1
            task.thread = threading.Thread(target=self._run, args=(task, procedure), name=f"{self.name}:{key}", daemon=True)
        task.thread.start()

    def status(self, key: str) -> TaskStatus | None:
        with self._lock:
            task = self._tasks.get(key)
            return None if task is None else task.status

    def cancel(self, key: str) -> None:
        with self._lock:
            task = self._tasks.get(key)
        if task is None or task.status.done:
            return
        task.cancel.set()
        self._finish(task, TaskState.CANCELLED, "cancelled", "Cancelled")

    def forget(self, key: str) -> None:
        with self._lock:
            task = self._tasks.pop(key, None)
        if task is not None:
            # A forgotten task still running has nobody left to report to: stop it at the next chance.
            task.cancel.set()

    # --- introspection and lifecycle --------------------------------------------------------------------
    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._tasks)

    def running(self) -> list[str]:
        with self._lock:
            return sorted(k for k, t in self._tasks.items() if not t.status.done)

    def wait(self, key: str, timeout: float | None = None) -> TaskStatus | None:
        """Block until the task's thread has exited (its procedure closed); the final status, or None if unknown."""
        with self._lock:
            task = self._tasks.get(key)
        if task is None:
            return None
        task.exited.wait(timeout)
        return task.status

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel every running task and wait for their threads (an operator stopping)."""
        with self._lock:
            tasks = list(self._tasks.values())
        for task in tasks:
            self.cancel(task.key)
        deadline = time.monotonic() + timeout
        for task in tasks:
            task.exited.wait(max(0.0, deadline - time.monotonic()))

    # --- the worker -------------------------------------------------------------------------------------
    def _finish(self, task: _Task, state: TaskState, message: str = "", reason: str = "", result: Any = None) -> None:
        with self._lock:
            if task.status.done:
                return
            task.status = TaskStatus(state, message=message, reason=reason, result=result,
                                     started_at=task.status.started_at, finished_at=self.now())
            status = task.status
            report = self.on_done is not None and self._tasks.get(task.key) is task
        if report and self.on_done is not None:
            try:
                self.on_done(task.key, status)
            except Exception:  # a broken callback must not kill the worker or hide the outcome
                log.exception("on_done for task %s failed", task.key)

    def _wait(self, task: _Task, seconds: float) -> None:
        if self.sleep is not None:
            self.sleep(seconds)
        else:
            task.cancel.wait(max(0.0, seconds))

    def _run(self, task: _Task, factory: Callable[[], Procedure]) -> None:
        _local.cancel = task.cancel
        try:
            self._drive(task, factory)
        finally:
            _local.cancel = None
            task.exited.set()

    def _cancelled(self, task: _Task, proc: Procedure) -> None:
        proc.close()  # runs the procedure's finally blocks, as a cancelled context would
        self._finish(task, TaskState.CANCELLED, "cancelled", "Cancelled")

    def _drive(self, task: _Task, factory: Callable[[], Procedure]) -> None:
        if task.cancel.is_set():
            return
        try:
            # Composite ops (AwaitReboot) run here as their loop of primitive ops.
            proc = inline_composites(factory(), self.now)
        except Exception as e:  # a procedure that cannot even be built is a failed task
            self._finish(task, TaskState.FAILED, str(e), type(e).__name__)
            return
        send: Any = None
        throw: BaseException | None = None
        while True:
            try:
                op = proc.throw(throw) if throw is not None else proc.send(send)
            except StopIteration as stop:
                self._finish(task, TaskState.SUCCEEDED, result=stop.value)
                return
            except OpError as e:
                self._finish(task, TaskState.FAILED, str(e), e.reason)
                return
            except Exception as e:
                self._finish(task, TaskState.FAILED, str(e), type(e).__name__)
                return
            send, throw = None, None
            if task.cancel.is_set():
                self._cancelled(task, proc)
                return
            try:
                if isinstance(op, Sleep):
                    self._wait(task, float(op.seconds))
                else:
                    send = self.handler(op)
            except OpError as e:
                throw = e
            except TaskCancelled:
                self._cancelled(task, proc)
                return
            except Exception as e:
                # Not an OpError: a handler bug. Fail with the exception's type rather than letting the
                # procedure's retry loop hide it.
                proc.close()
                self._finish(task, TaskState.FAILED, f"{type(e).__name__}: {e}", type(e).__name__)
                return
            if task.cancel.is_set():
                self._cancelled(task, proc)
                return
