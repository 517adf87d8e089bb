"""The shared pass of the DPUService-side reconcilers: conditions pre-created, finalizer first, steps recorded by
`phase`, the summary on every pass but the last, metadata then status written only when changed, and the pass's
error raised after the write."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from pydantic import Field

from dpf_core.api.conditions import REASON_ERROR, REASON_PENDING, REASON_SUCCESS, get_condition, set_condition
from dpf_core.api.meta import Condition, KindInfo, KubeObject, Model
from dpf_core.controllers.reconcile_base import FinalizerReconciler, phase
from dpf_core.runtime import DONE, Context, ManualClock, MemoryRecorder, Request, Result
from dpf_core.store.memory import MemoryStore

FINALIZER = "test.dpu.nvidia.com/widget"
NS = "dpf"
REQ = Request(NS, "w")


class WidgetStatus(Model):
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None


class Widget(KubeObject):
    KIND: ClassVar[KindInfo] = KindInfo(
        group="test.dpu.nvidia.com", version="v1alpha1", kind="Widget", plural="widgets", singular="widget"
    )
    spec: dict[str, Any] = Field(default_factory=dict)
    status: WidgetStatus = Field(default_factory=WidgetStatus)


class Spy:
    """The store, with every write recorded in order."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.writes: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if name in ("create", "update", "update_status", "delete"):
            def recorded(*args: Any, **kwargs: Any) -> Any:
                self.writes.append(name)
                return attr(*args, **kwargs)
            return recorded
        return attr


class WidgetReconciler(FinalizerReconciler[Widget]):
    KIND = Widget
    CONDITIONS = ("Ready", "StepOneReconciled", "StepTwoReconciled", "ChildrenReady")
    FINALIZER = FINALIZER

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail_step: Exception | None = None
        self.summary_error: Exception | None = None
        self.summary_raises: Exception | None = None
        self.children_ready = True
        self.delete_done = True

    def reconcile_normal(self, ctx: Context, new: Widget, now: str) -> Result:
        self.calls.append("normal")
        with phase(new.status.conditions, "StepOneReconciled", now, "Unable to do step one: "):
            if self.fail_step is not None:
                raise self.fail_step
        with phase(new.status.conditions, "StepTwoReconciled", now):
            pass
        return Result(requeue_after=7.0)

    def reconcile_delete(self, ctx: Context, new: Widget, now: str) -> Result:
        self.calls.append("delete")
        if not self.delete_done:
            return Result(requeue_after=30.0)
        new.metadata.finalizers = [f for f in new.metadata.finalizers if f != FINALIZER]
        return DONE

    def summarize(self, ctx: Context, obj: Widget, new: Widget, now: str) -> Exception | None:
        self.calls.append("summarize")
        if self.summary_raises is not None:
            raise self.summary_raises
        if self.children_ready:
            set_condition(new.status.conditions, "ChildrenReady", "True", REASON_SUCCESS, "", now)
        else:
            set_condition(new.status.conditions, "ChildrenReady", "False", REASON_PENDING, "", now)
        return self.summary_error

    def ignores(self, obj: Widget) -> bool:
        return obj.spec.get("paused") is True


def world(**spec: Any) -> tuple[WidgetReconciler, Context, Spy]:
    clock = ManualClock(100.0)
    store = MemoryStore(clock.now)
    store.create(Widget.new("w", NS, spec=dict(spec)))
    spy = Spy(store)
    ctx = Context(client=spy, clock=clock, recorder=MemoryRecorder())
    return WidgetReconciler(), ctx, spy


def stored(spy: Spy) -> Widget:
    return spy.store.get(Widget, "w", NS)


def cond(spy: Spy, type: str) -> tuple[str, str, str]:
    c = get_condition(stored(spy).status.conditions, type)
    assert c is not None
    return c.status, c.reason, c.message


def test_absent_object_is_done_without_writes() -> None:
    r, ctx, spy = world()
    assert r.reconcile(ctx, Request(NS, "nope")) == DONE
    assert spy.writes == [] and r.calls == []


def test_first_pass_adds_the_finalizer_then_writes_the_status() -> None:
    r, ctx, spy = world()
    assert r.reconcile(ctx, REQ) == DONE
    assert r.calls == ["summarize"]  # the steps wait for the next pass
    assert spy.writes == ["update", "update_status"]
    w = stored(spy)
    assert w.metadata.finalizers == [FINALIZER]
    assert w.status.observed_generation == w.metadata.generation
    assert cond(spy, "StepOneReconciled")[0] == "Unknown"
    assert cond(spy, "ChildrenReady") == ("True", REASON_SUCCESS, "")
    assert cond(spy, "Ready")[0] == "False"


def test_steps_set_their_conditions_and_an_unchanged_pass_writes_nothing() -> None:
    r, ctx, spy = world()
    r.reconcile(ctx, REQ)
    spy.writes.clear()
    assert r.reconcile(ctx, REQ) == Result(requeue_after=7.0)
    assert spy.writes == ["update_status"]  # the finalizer is there already: no metadata write
    assert cond(spy, "StepOneReconciled") == ("True", REASON_SUCCESS, "")
    assert cond(spy, "Ready") == ("True", REASON_SUCCESS, "")
    spy.writes.clear()
    r.reconcile(ctx, REQ)
    assert spy.writes == []


def test_a_step_error_is_recorded_written_and_raised() -> None:
    r, ctx, spy = world()
    r.reconcile(ctx, REQ)
    r.fail_step = RuntimeError("boom")
    r.calls.clear()
    with pytest.raises(RuntimeError, match="boom"):
        r.reconcile(ctx, REQ)
    assert r.calls == ["normal", "summarize"]  # the summary still runs after a failed step
    assert cond(spy, "StepOneReconciled") == ("False", REASON_ERROR, "Unable to do step one: boom")
    assert cond(spy, "StepTwoReconciled")[0] == "Unknown"  # the pass stopped at the failing step
    status, _, message = cond(spy, "Ready")
    assert status == "False" and "StepOneReconciled" in message


def test_a_returned_summary_error_is_raised_after_the_write_and_a_step_error_wins() -> None:
    r, ctx, spy = world()
    r.reconcile(ctx, REQ)
    r.children_ready = False
    r.summary_error = LookupError("read failed")
    with pytest.raises(LookupError):
        r.reconcile(ctx, REQ)
    assert cond(spy, "ChildrenReady")[0] == "False"
    assert cond(spy, "StepOneReconciled")[0] == "True"
    r.fail_step = RuntimeError("step")
    with pytest.raises(RuntimeError, match="step"):
        r.reconcile(ctx, REQ)


def test_a_raised_summary_error_ends_the_pass_without_a_write() -> None:
    r, ctx, spy = world()
    r.reconcile(ctx, REQ)
    before = stored(spy).metadata.resource_version
    r.summary_raises = ValueError("summary")
    spy.writes.clear()
    with pytest.raises(ValueError, match="summary"):
        r.reconcile(ctx, REQ)
    assert spy.writes == []
    assert stored(spy).metadata.resource_version == before


def test_deletion_waits_then_releases_without_a_summary() -> None:
    r, ctx, spy = world()
    r.reconcile(ctx, REQ)
    spy.store.delete(Widget, "w", NS)
    r.delete_done = False
    r.calls.clear()
    assert r.reconcile(ctx, REQ) == Result(requeue_after=30.0)
    assert r.calls == ["delete", "summarize"]
    r.delete_done = True
    r.calls.clear()
    spy.writes.clear()
    assert r.reconcile(ctx, REQ) == DONE
    assert r.calls == ["delete"]  # released: no status is left to summarize
    assert spy.writes == ["update"]
    assert spy.store.try_get(Widget, "w", NS) is None


def test_an_ignored_object_is_not_touched() -> None:
    r, ctx, spy = world(paused=True)
    assert r.reconcile(ctx, REQ) == DONE
    assert r.calls == [] and spy.writes == []
    assert stored(spy).metadata.finalizers == []


def test_phase_records_success_and_failure_and_lets_the_error_through() -> None:
    conds: list[Condition] = []
    with phase(conds, "AReconciled", "t0"):
        pass
    with pytest.raises(KeyError), phase(conds, "BReconciled", "t0"):
        raise KeyError("x")
    a, b = get_condition(conds, "AReconciled"), get_condition(conds, "BReconciled")
    assert a is not None and (a.status, a.reason) == ("True", REASON_SUCCESS)
    assert b is not None and (b.status, b.reason, b.message) == ("False", REASON_ERROR, "Error occurred: 'x'")
