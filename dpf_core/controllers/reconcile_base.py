"""The pass shape the DPUService-side top-level controllers (dpuservice, dpudeployment, operator_config) share,
written once. In DPF each of them defers one patch helper and one summary at the top of Reconcile; this is that
frame, and the controllers keep only their steps.

One pass (`StatusReconciler.reconcile`):
1. get the object (gone -> done); one the controller `ignores` (a paused DPFOperatorConfig) is not touched;
2. on a copy, pre-create the kind's conditions (Unknown/Pending);
3. `run` the pass; an error is kept, not raised yet, so the status below still records it;
4. unless the pass released the object (deleting and its finalizer dropped: there is nothing left to write a
   status to), `summarize` the `*Ready` conditions, summarize `Ready` and set `observedGeneration`;
5. write metadata then status, each only when it changed (mirror.write); then raise the kept error (a
   rate-limited retry) or return the pass's Result.

`FinalizerReconciler.run` is the common pass: deleting -> `reconcile_delete`; no finalizer yet -> add it and end
the pass (the finalizer write wakes the next one); else `reconcile_normal`.

`phase` is the bookkeeping of one step: its condition True/Success, or False/Error with the error's message and
the error re-raised.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar, Generic, TypeVar, cast

from dpf_core.api.conditions import REASON_ERROR, REASON_SUCCESS, init_conditions, set_condition, summarize_ready
from dpf_core.api.meta import Condition, KubeObject
from dpf_core.runtime import DONE, Context, Request, Result

from .mirror import status_of, write

P = TypeVar("P", bound=KubeObject)

ERROR_OCCURRED = "Error occurred: "


@contextmanager
def phase(conditions: list[Condition], condition: str, now: str, prefix: str = ERROR_OCCURRED) -> Iterator[None]:
    """Record the outcome of the step run inside the block on `condition`; the step's error still propagates."""
    try:
        yield
    except Exception as e:
        set_condition(conditions, condition, "False", REASON_ERROR, f"{prefix}{e}", now)
        raise
    set_condition(conditions, condition, "True", REASON_SUCCESS, "", now)


class StatusReconciler(ABC, Generic[P]):
    """A reconciler whose kind carries conditions that are summarized and written on every pass."""

    KIND: ClassVar[type[KubeObject]]
    CONDITIONS: ClassVar[tuple[str, ...]]
    FINALIZER: ClassVar[str]

    # -- what a subclass provides -------------------------------------------------------------------------
    @abstractmethod
    def run(self, ctx: Context, obj: P, new: P, now: str) -> Result:
        """The pass proper: edit `new` (never `obj`, the shared snapshot); raise to be retried."""

    @abstractmethod
    def summarize(self, ctx: Context, obj: P, new: P, now: str) -> Exception | None:
        """Set the `*Ready` conditions on `new` from what exists now. An error returned is retried like one from
        `run`, after the status is written; one raised ends the pass without any write."""

    def ignores(self, obj: P) -> bool:
        """Objects left entirely alone: no conditions, no finalizer, no write."""
        return False

    # -- the frame ----------------------------------------------------------------------------------------
    def released(self, obj: P, new: P) -> bool:
        """The pass let a deleting object go: once the finalizer write lands it is gone with its status."""
        return obj.metadata.deletion_timestamp is not None and self.FINALIZER not in new.metadata.finalizers

    def reconcile(self, ctx: Context, req: Request) -> Result:
        found = ctx.client.try_get(self.KIND, req.name, req.namespace)
        if found is None:
            return DONE
        obj = cast(P, found)
        if self.ignores(obj):
            return DONE
        new = obj.deepcopy()
        conditions = status_of(new).conditions
        now = ctx.timestamp()
        init_conditions(conditions, self.CONDITIONS, now)
        error: Exception | None = None
        result = DONE
        try:
            result = self.run(ctx, obj, new, now)
        except Exception as e:
            error = e
        if not self.released(obj, new):
            # Always evaluated, even after a failed run: the summary is what a user reads while it fails.
            summary_error = self.summarize(ctx, obj, new, now)
            if error is None:
                error = summary_error
            summarize_ready(conditions, self.CONDITIONS, now)
            status_of(new).observed_generation = new.metadata.generation
        write(ctx, obj, new)
        if error is not None:
            raise error
        return result


class FinalizerReconciler(StatusReconciler[P]):
    """The common pass: teardown while deleting, the finalizer first, then the steps."""

    @abstractmethod
    def reconcile_delete(self, ctx: Context, new: P, now: str) -> Result:
        """Tear down; drop the finalizer from `new` once nothing is left."""

    @abstractmethod
    def reconcile_normal(self, ctx: Context, new: P, now: str) -> Result: ...

    def run(self, ctx: Context, obj: P, new: P, now: str) -> Result:
        if obj.metadata.deletion_timestamp is not None:
            return self.reconcile_delete(ctx, new, now)
        if self.FINALIZER not in obj.metadata.finalizers:
            new.metadata.finalizers.append(self.FINALIZER)
            return DONE
        return self.reconcile_normal(ctx, new, now)
