"""SimTasks: procedures yield ops, handlers take virtual time, OpError is thrown back, cancel unwinds."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import pytest
import simpy

from dpf_core.ports import TaskState, TaskStatus
from dpf_core.ports.ops import OpError, Sleep
from dpf_core.runtime.types import DEFAULT_EPOCH
from dpf_sim.tasks import Executor, SimTasks


@dataclass(frozen=True)
class Double:
    value: int
    seconds: float = 2.0


@dataclass(frozen=True)
class Flaky:
    name: str


@dataclass(frozen=True)
class Unknown:
    pass


class World:
    def __init__(self, flaky_failures: int = 0) -> None:
        self.env = simpy.Environment()
        self.executor = Executor()
        self.flaky_left = flaky_failures
        self.flaky_calls: list[float] = []
        self.handler_cleanups: list[float] = []
        self.done: list[tuple[str, TaskStatus]] = []
        self.executor.register(Double, self.double)
        self.executor.register(Flaky, self.flaky)
        self.tasks = SimTasks(self.env, self.executor, on_done=lambda k, s: self.done.append((k, s)))

    def double(self, op: Double) -> Generator[Any, Any, int]:
        try:
            yield self.env.timeout(op.seconds)
        finally:
            self.handler_cleanups.append(self.env.now)
        return op.value * 2

    def flaky(self, op: Flaky) -> Generator[Any, Any, str]:
        self.flaky_calls.append(self.env.now)
        yield self.env.timeout(1)
        if self.flaky_left > 0:
            self.flaky_left -= 1
            raise OpError(f"{op.name} unavailable", "Unavailable")
        return f"{op.name} ok"


def test_a_procedure_runs_its_ops_in_order_and_returns_its_result() -> None:
    w = World()
    seen: list[int] = []

    def proc() -> Generator[Any, Any, int]:
        a: int = yield Double(1)
        seen.append(a)
        b: int = yield Double(a, seconds=3)
        seen.append(b)
        return a + b

    w.tasks.start("install/dpf/dpu-1", proc)
    assert w.tasks.status("install/dpf/dpu-1") == TaskStatus(TaskState.RUNNING, started_at=DEFAULT_EPOCH)
    w.env.run()
    st = w.tasks.status("install/dpf/dpu-1")
    assert st is not None and st.state is TaskState.SUCCEEDED and st.done
    assert st.result == 6 and seen == [2, 4]
    assert st.started_at == DEFAULT_EPOCH and st.finished_at == DEFAULT_EPOCH + 5.0
    assert w.done == [("install/dpf/dpu-1", st)]


def test_sleep_is_handled_without_an_executor_entry() -> None:
    w = World()

    def proc() -> Generator[Any, Any, float]:
        yield Sleep(90)
        return float(w.env.now)

    w.tasks.start("k", proc)
    w.env.run()
    st = w.tasks.status("k")
    assert st is not None and st.result == 90.0 and st.finished_at == DEFAULT_EPOCH + 90


def test_op_error_is_thrown_into_the_procedure_which_may_retry() -> None:
    w = World(flaky_failures=2)
    errors: list[str] = []

    def proc() -> Generator[Any, Any, str]:
        for _ in range(5):
            try:
                result: str = yield Flaky("dms")
                return result
            except OpError as e:
                errors.append(e.reason)
                yield Sleep(3)
        raise OpError("gave up", "Exhausted")

    w.tasks.start("k", proc)
    w.env.run()
    st = w.tasks.status("k")
    assert st is not None and st.state is TaskState.SUCCEEDED and st.result == "dms ok"
    assert errors == ["Unavailable", "Unavailable"]
    # Each attempt takes 1 s, each retry waits 3 s.
    assert w.flaky_calls == [0.0, 4.0, 8.0]


def test_an_uncaught_op_error_fails_the_task_with_its_reason() -> None:
    w = World(flaky_failures=1)

    def proc() -> Generator[Any, Any, None]:
        yield Flaky("dms")

    w.tasks.start("k", proc)
    w.env.run()
    assert w.tasks.status("k") == TaskStatus(TaskState.FAILED, message="dms unavailable", reason="Unavailable",
                                             started_at=DEFAULT_EPOCH, finished_at=DEFAULT_EPOCH + 1)


def test_a_procedure_exception_fails_the_task_with_its_type() -> None:
    w = World()

    def proc() -> Generator[Any, Any, None]:
        yield Double(1)
        raise ValueError("bf.cfg too large")

    w.tasks.start("k", proc)
    w.env.run()
    st = w.tasks.status("k")
    assert st is not None and st.state is TaskState.FAILED
    assert (st.reason, st.message) == ("ValueError", "bf.cfg too large")


def test_an_op_without_handler_is_an_unimplemented_op_error() -> None:
    w = World()
    caught: list[str] = []

    def proc() -> Generator[Any, Any, str]:
        try:
            yield Unknown()
        except OpError as e:
            caught.append(e.reason)
        return "handled"

    w.tasks.start("k", proc)
    w.env.run()
    st = w.tasks.status("k")
    assert caught == ["Unimplemented"] and st is not None and st.result == "handled"


def test_cancel_interrupts_the_running_op_and_closes_the_procedure() -> None:
    w = World()
    closed: list[float] = []

    def proc() -> Generator[Any, Any, None]:
        try:
            yield Double(1, seconds=100)
        finally:
            closed.append(w.env.now)

    w.tasks.start("k", proc)
    w.env.run(until=10)
    w.tasks.cancel("k")
    st = w.tasks.status("k")
    assert st is not None and st.state is TaskState.CANCELLED and st.finished_at == DEFAULT_EPOCH + 10
    w.env.run()
    assert closed == [10.0]
    assert w.handler_cleanups == [10.0]  # the handler's finally ran at cancel time, not at t=100
    assert [s.state for _, s in w.done] == [TaskState.CANCELLED]


def test_cancel_before_the_process_begins() -> None:
    w = World()
    ran: list[bool] = []

    def proc() -> Generator[Any, Any, None]:
        ran.append(True)
        yield Double(1)

    w.tasks.start("k", proc)
    w.tasks.cancel("k")
    w.env.run()
    st = w.tasks.status("k")
    assert st is not None and st.state is TaskState.CANCELLED and ran == []


def test_starting_an_existing_key_is_a_no_op() -> None:
    w = World()
    built: list[int] = []

    def factory(n: int) -> Any:
        def proc() -> Generator[Any, Any, int]:
            built.append(n)
            yield Double(n)
            return n

        return proc

    w.tasks.start("k", factory(1))
    w.env.run(until=1)
    w.tasks.start("k", factory(2))
    w.env.run()
    st = w.tasks.status("k")
    assert built == [1] and st is not None and st.result == 1
    w.tasks.start("k", factory(3))  # finished tasks keep their status until forget, too
    w.env.run()
    assert built == [1]


def test_forget_drops_the_status_and_allows_a_fresh_start() -> None:
    w = World()

    def proc() -> Generator[Any, Any, int]:
        yield Double(1)
        return 1

    w.tasks.start("k", proc)
    w.env.run()
    w.tasks.forget("k")
    assert w.tasks.status("k") is None
    w.tasks.start("k", proc)
    assert w.tasks.running() == ["k"]
    w.env.run()
    assert len(w.done) == 2


def test_forget_while_running_stops_the_work_silently() -> None:
    w = World()

    def proc() -> Generator[Any, Any, int]:
        yield Double(1, seconds=50)
        return 1

    w.tasks.start("k", proc)
    w.env.run(until=5)
    w.tasks.forget("k")
    w.env.run()
    assert w.tasks.status("k") is None and w.done == [] and w.handler_cleanups == [5.0]


def test_a_handler_bug_fails_the_task_instead_of_crashing_the_twin() -> None:
    w = World()

    def broken(op: Any) -> Generator[Any, Any, None]:
        yield w.env.timeout(1)
        raise KeyError("oops")

    w.executor.register(Unknown, broken)

    def proc() -> Generator[Any, Any, None]:
        yield Unknown()

    w.tasks.start("k", proc)
    w.env.run()
    st = w.tasks.status("k")
    assert st is not None and st.state is TaskState.FAILED and st.reason == "KeyError"


def test_executor_refuses_a_second_handler_for_a_type() -> None:
    def nothing(op: Any) -> Generator[Any, Any, None]:
        yield from ()

    ex = Executor()
    ex.register(Double, nothing)
    with pytest.raises(ValueError):
        ex.register(Double, nothing)
    assert ex.handles(Double) and not ex.handles(Flaky)
