"""The twin's `Tasks` port: task procedures run as SimPy processes against the models.

A procedure (dpf_core) yields ops; each op is executed by an `Executor` handler, itself a SimPy generator
(`result = yield from handler(op)`), so an op takes virtual time (a transfer, a reboot) and may fail with
`OpError`, which is thrown into the procedure at the `yield` that asked for the op, exactly where a real
worker's grpc call would have raised. The procedure's sequencing, retries and timeouts are core code.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import simpy

from dpf_core.ports import Procedure, TaskState, TaskStatus
from dpf_core.ports.dispatch import OpDispatcher, inline_composites
from dpf_core.ports.ops import OpError, Sleep
from dpf_core.runtime.types import DEFAULT_EPOCH

# A handler is a SimPy generator function: it yields SimPy events and returns the op's result.
OpGenerator = Generator[Any, Any, Any]
Handler = Callable[[Any], OpGenerator]
Completion = Callable[[str, TaskStatus], None]


def original_error(e: OpError) -> OpError:
    """The OpError as raised. SimPy re-raises a failed event's exception in a waiting process as a NEW
    instance built from `args` (the original becomes `__cause__`), and OpError's `reason` is not in its args:
    the copy would say "Failed" whatever the model said."""
    cause = e.__cause__
    while isinstance(cause, OpError) and type(cause) is type(e) and cause.args == e.args:
        e, cause = cause, cause.__cause__
    return e


class Executor(OpDispatcher[Handler]):
    """SimPy generator handlers for the twin's models."""

    world = "the twin"

    def __call__(self, op: Any) -> OpGenerator:
        return self.handler_for(op)(op)


@dataclass
class _Task:
    key: str
    status: TaskStatus
    process: simpy.Process | None = None
    begun: bool = False


class SimTasks:
    """dpf_core.ports.Tasks on virtual time. `on_done(key, status)` runs at every terminal transition (the
    composition uses it to enqueue the object whose controller polls this task)."""

    def __init__(self, env: simpy.Environment, executor: Callable[[Any], OpGenerator], *,
                 epoch: float = DEFAULT_EPOCH, on_done: Completion | None = None) -> None:
        self.env = env
        self.executor = executor
        self.epoch = epoch
        self.on_done = on_done
        self._tasks: dict[str, _Task] = {}
        self.started = 0

    def now(self) -> float:
        return self.epoch + float(self.env.now)

    # --- the port ---------------------------------------------------------------------------------------
    def start(self, key: str, procedure: Callable[[], Procedure]) -> None:
        if key in self._tasks:
            return
        task = _Task(key, TaskStatus(TaskState.RUNNING, started_at=self.now()))
        self._tasks[key] = task
        self.started += 1
        task.process = self.env.process(self._run(task, procedure))

    def status(self, key: str) -> TaskStatus | None:
        task = self._tasks.get(key)
        return None if task is None else task.status

    def cancel(self, key: str) -> None:
        task = self._tasks.get(key)
        if task is None or task.status.done:
            return
        # Cancelled from this instant (a poll right after cancel must not see Running); the interrupt then
        # unwinds the handler (freeing its bandwidth) and closes the procedure. A process that has not begun
        # is not interrupted: an interrupt thrown into an unstarted generator escapes its try blocks; it sees
        # the status at its first line instead.
        self._finish(task, TaskState.CANCELLED, "cancelled", "Cancelled")
        if task.begun and task.process is not None and task.process.is_alive:
            task.process.interrupt("cancelled")

    def forget(self, key: str) -> None:
        task = self._tasks.pop(key, None)
        if task is not None and not task.status.done and task.begun and task.process is not None and task.process.is_alive:
            task.process.interrupt("forgotten")

    # --- introspection ----------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        return sorted(self._tasks)

    def running(self) -> list[str]:
        return sorted(k for k, t in self._tasks.items() if not t.status.done)

    # --- the process ------------------------------------------------------------------------------------
    def _native(self, op: object) -> bool:
        handles = getattr(self.executor, "handles", None)
        return bool(handles(type(op))) if handles is not None else False

    def _finish(self, task: _Task, state: TaskState, message: str = "", reason: str = "", result: Any = None) -> None:
        if task.status.done:
            return
        task.status = TaskStatus(state, message=message, reason=reason, result=result,
                                 started_at=task.status.started_at, finished_at=self.now())
        if self.on_done is not None and self._tasks.get(task.key) is task:
            self.on_done(task.key, task.status)

    def _run(self, task: _Task, factory: Callable[[], Procedure]) -> Generator[Any, Any, None]:
        task.begun = True
        if task.status.done:
            return
        try:
            # A composite op (AwaitReboot) runs natively when the executor in force has a handler for it
            # (the models do); otherwise (a fault guard wraps the executor) as its primitive ops.
            proc = inline_composites(factory(), self.now, self._native)
        except Exception as e:  # a procedure that cannot even be built is a failed task, not a crashed twin
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
                self._finish(task, TaskState.FAILED, str(e), original_error(e).reason)
                return
            except Exception as e:
                self._finish(task, TaskState.FAILED, str(e), type(e).__name__)
                return
            send, throw = None, None
            try:
                if isinstance(op, Sleep):
                    yield self.env.timeout(max(0.0, float(op.seconds)))
                else:
                    send = yield from self.executor(op)
            except OpError as e:
                throw = original_error(e)
            except simpy.Interrupt as interrupt:
                proc.close()  # runs the procedure's finally blocks, as a cancelled context would
                self._finish(task, TaskState.CANCELLED, str(interrupt.cause or "cancelled"), "Cancelled")
                return
            except Exception as e:
                # Not an OpError: a handler bug. The task fails with the exception's type as reason rather
                # than letting the procedure retry (and hide) it.
                proc.close()
                self._finish(task, TaskState.FAILED, f"{type(e).__name__}: {e}", type(e).__name__)
                return
