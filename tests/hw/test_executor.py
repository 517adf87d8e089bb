"""The threaded Tasks port: procedures with ops, OpError thrown in and retried, Sleep, cancel, on_done."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from dpf_core.ports import Procedure, TaskState, TaskStatus
from dpf_core.ports.ops import OpError, Sleep
from dpf_hw.executor import OpHandlers, TaskCancelled, ThreadTasks, raise_if_cancelled


@dataclass(frozen=True)
class Fetch:
    what: str


@dataclass(frozen=True)
class Block:
    """Handled by waiting on an event, checking for cancellation like a chunked transfer does."""

    release: threading.Event


class Recorder:
    def __init__(self) -> None:
        self.done: list[tuple[str, TaskStatus]] = []
        self.event = threading.Event()

    def __call__(self, key: str, status: TaskStatus) -> None:
        self.done.append((key, status))
        self.event.set()


def handlers(**fetch_results: Any) -> OpHandlers:
    h = OpHandlers()
    script = {k: list(v) if isinstance(v, list) else [v] for k, v in fetch_results.items()}

    def fetch(op: Fetch) -> Any:
        outcomes = script[op.what]
        outcome = outcomes.pop(0) if len(outcomes) > 1 else outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def block(op: Block) -> None:
        while not op.release.wait(0.01):
            raise_if_cancelled()

    h.register(Fetch, fetch)
    h.register(Block, block)
    return h


def test_a_procedure_gets_each_ops_result_and_returns_the_task_result() -> None:
    def proc() -> Procedure:
        a = yield Fetch("a")
        b = yield Fetch("b")
        return f"{a}+{b}"

    rec = Recorder()
    tasks = ThreadTasks(handlers(a="1", b="2"), on_done=rec)
    tasks.start("k", proc)
    status = tasks.wait("k", timeout=5)
    assert status is not None and status.state is TaskState.SUCCEEDED and status.result == "1+2"
    assert status.finished_at is not None and status.finished_at >= status.started_at
    assert [k for k, _ in rec.done] == ["k"]
    assert tasks.keys() == ["k"] and tasks.running() == []


def test_op_error_is_thrown_into_the_procedure_which_retries() -> None:
    attempts: list[str] = []
    sleeps: list[float] = []

    def proc() -> Procedure:
        for i in range(5):
            try:
                return (yield Fetch("flaky"))
            except OpError as e:
                attempts.append(f"{i}:{e.reason}:{e}")
                yield Sleep(3.0)
        raise OpError("gave up", "Exhausted")

    flaky = [OpError("dial: connection refused", "Unavailable"), OpError("again", "Unavailable"), "ok"]
    tasks = ThreadTasks(handlers(flaky=flaky), sleep=sleeps.append)
    tasks.start("k", proc)
    status = tasks.wait("k", timeout=5)
    assert status is not None and (status.state, status.result) == (TaskState.SUCCEEDED, "ok")
    assert attempts == ["0:Unavailable:dial: connection refused", "1:Unavailable:again"]
    assert sleeps == [3.0, 3.0]  # Sleep goes to the injected clock, not the wall


def test_an_unhandled_op_error_fails_the_task_with_its_reason() -> None:
    def proc() -> Procedure:
        yield Fetch("x")

    tasks = ThreadTasks(handlers(x=OpError("404 Not Found", "NotFound")))
    tasks.start("k", proc)
    status = tasks.wait("k", timeout=5)
    assert status is not None and (status.state, status.reason, status.message) == (TaskState.FAILED, "NotFound", "404 Not Found")


def test_an_op_nobody_handles_is_an_op_error_the_procedure_can_see() -> None:
    @dataclass(frozen=True)
    class Unknown:
        pass

    seen: list[str] = []

    def proc() -> Procedure:
        try:
            yield Unknown()
        except OpError as e:
            seen.append(e.reason)
            raise

    tasks = ThreadTasks(handlers())
    tasks.start("k", proc)
    status = tasks.wait("k", timeout=5)
    assert seen == ["Unimplemented"]
    assert status is not None and status.state is TaskState.FAILED and "no handler for Unknown" in status.message


def test_a_handler_bug_fails_the_task_without_a_retry_and_closes_the_procedure() -> None:
    closed = threading.Event()

    def buggy(op: Fetch) -> None:
        raise KeyError("boom")

    h = OpHandlers()
    h.register(Fetch, buggy)

    def proc() -> Procedure:
        try:
            while True:
                try:
                    yield Fetch("x")
                except OpError:
                    continue
        finally:
            closed.set()

    tasks = ThreadTasks(h)
    tasks.start("k", proc)
    status = tasks.wait("k", timeout=5)
    assert status is not None and (status.state, status.reason) == (TaskState.FAILED, "KeyError")
    assert closed.is_set()


def test_start_is_idempotent_per_key() -> None:
    runs: list[int] = []

    def proc() -> Procedure:
        runs.append(1)
        yield Sleep(0)
        return len(runs)

    tasks = ThreadTasks(handlers())
    tasks.start("k", proc)
    tasks.start("k", proc)
    tasks.wait("k", timeout=5)
    tasks.start("k", proc)  # a finished task keeps its key until forget
    assert tasks.wait("k", timeout=5) is not None and runs == [1] and tasks.started == 1
    tasks.forget("k")
    assert tasks.status("k") is None
    tasks.start("k", proc)
    assert tasks.wait("k", timeout=5) is not None and runs == [1, 1]


def test_cancel_is_immediate_and_unwinds_a_blocking_handler() -> None:
    release = threading.Event()
    cleaned = threading.Event()

    def proc() -> Procedure:
        try:
            yield Block(release)
            yield Fetch("never")
        finally:
            cleaned.set()

    rec = Recorder()
    tasks = ThreadTasks(handlers(never="x"), on_done=rec)
    tasks.start("k", proc)
    time.sleep(0.05)
    assert tasks.running() == ["k"]
    tasks.cancel("k")
    status = tasks.status("k")
    assert status is not None and (status.state, status.reason) == (TaskState.CANCELLED, "Cancelled")
    final = tasks.wait("k", timeout=5)
    assert final is not None and final.state is TaskState.CANCELLED
    assert cleaned.is_set()
    assert [(k, s.state) for k, s in rec.done] == [("k", TaskState.CANCELLED)]


def test_cancel_interrupts_a_wall_clock_sleep() -> None:
    def proc() -> Procedure:
        yield Sleep(60.0)
        return "woke"

    tasks = ThreadTasks(handlers())
    t0 = time.monotonic()
    tasks.start("k", proc)
    time.sleep(0.02)
    tasks.cancel("k")
    final = tasks.wait("k", timeout=5)
    assert final is not None and final.state is TaskState.CANCELLED
    assert time.monotonic() - t0 < 2.0


def test_forget_stops_a_running_task_without_reporting_it() -> None:
    release = threading.Event()
    stopped = threading.Event()

    def proc() -> Procedure:
        try:
            yield Block(release)
        finally:
            stopped.set()

    rec = Recorder()
    tasks = ThreadTasks(handlers(), on_done=rec)
    tasks.start("k", proc)
    time.sleep(0.03)
    tasks.forget("k")
    assert stopped.wait(5)
    assert tasks.status("k") is None and rec.done == []


def test_a_procedure_factory_that_raises_is_a_failed_task() -> None:
    def factory() -> Procedure:
        raise ValueError("bad spec")

    tasks = ThreadTasks(handlers())
    tasks.start("k", factory)
    status = tasks.wait("k", timeout=5)
    assert status is not None and (status.state, status.message, status.reason) == (TaskState.FAILED, "bad spec", "ValueError")


def test_shutdown_cancels_everything_running() -> None:
    release = threading.Event()

    def proc() -> Procedure:
        yield Block(release)

    tasks = ThreadTasks(handlers())
    for k in ("a", "b", "c"):
        tasks.start(k, proc)
    tasks.shutdown(timeout=5)
    assert tasks.running() == []
    assert {tasks.status(k).state for k in ("a", "b", "c")} == {TaskState.CANCELLED}  # type: ignore[union-attr]


def test_raise_if_cancelled_outside_a_task_does_nothing() -> None:
    raise_if_cancelled()  # the downloader may also be called directly, e.g. by an operator's CLI


def test_raise_if_cancelled_inside_a_cancelled_task_raises() -> None:
    seen: list[str] = []
    release = threading.Event()

    def waits(op: Block) -> None:
        op.release.wait(5)
        try:
            raise_if_cancelled()
        except TaskCancelled:
            seen.append("cancelled")
            raise

    h = OpHandlers()
    h.register(Block, waits)

    def proc() -> Procedure:
        yield Block(release)

    tasks = ThreadTasks(h)
    tasks.start("k", proc)
    time.sleep(0.02)
    tasks.cancel("k")
    release.set()
    tasks.wait("k", timeout=5)
    assert seen == ["cancelled"]


def test_require_real_skips_or_fails_by_environment(monkeypatch: pytest.MonkeyPatch,
                                                    require_real_rule: Callable[[str, bool, str], None]) -> None:
    """The real-component rule itself (tests/hw/conftest.py)."""
    require_real = require_real_rule
    require_real("anything", True, "")  # available: no effect
    monkeypatch.delenv("DPF_REQUIRE_REAL", raising=False)
    with pytest.raises(pytest.skip.Exception, match="widget is not available: no binary"):
        require_real("widget", False, "no binary")
    monkeypatch.setenv("DPF_REQUIRE_REAL", "1")
    with pytest.raises(pytest.fail.Exception, match="DPF_REQUIRE_REAL=1 and widget is not available: no binary"):
        require_real("widget", False, "no binary")
