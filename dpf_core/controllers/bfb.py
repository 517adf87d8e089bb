"""BFB controller (provisioning manager): download each BFB once to the shared BFB volume.

Healthy road: Initializing -> Downloading -> Ready. Each pass runs the handler of the current phase, which
returns the next phase; status is written only when the phase moved, otherwise the BFB is looked at again
in 5 s (never in Error: a failed download is terminal until the BFB is deleted, as in DPF).
The download is a task on the Tasks port (`download/<ns>/<name>`), polled here, never awaited.
"""

from __future__ import annotations

from collections.abc import Callable

from dpf_core.api.provisioning import (
    BFB,
    BFB_FILE_NAME_EXTENSION,
    BFB_FINALIZER,
    BFBPhase,
    EventReason,
)
from dpf_core.ports import BfbStore, Tasks, TaskState
from dpf_core.runtime import DONE, Context, Controller, Request, Result

from .bfb_tasks import download_procedure, download_task_key, temp_file_name
from .options import ProvisioningOptions

NAME = "bfb"

# A handler returns the next phase, or None once the BFB has been let go (finalizer dropped).
Handler = Callable[[Context, BFB], BFBPhase | None]


def _tasks(ctx: Context) -> Tasks:
    tasks: Tasks | None = getattr(ctx.ports, "tasks", None)
    if tasks is None:
        raise RuntimeError(f"{ctx.controller or NAME}: no Tasks port supplied")
    return tasks


def _bfb_store(ctx: Context) -> BfbStore:
    store: BfbStore | None = getattr(ctx.ports, "bfb_store", None)
    if store is None:
        raise RuntimeError(f"{ctx.controller or NAME}: no BfbStore port supplied")
    return store


def file_name_of(bfb: BFB) -> str:
    # The mutating webhook always fills fileName; the fallback keeps a BFB written around admission usable.
    return bfb.spec.file_name or f"{bfb.namespace or ''}-{bfb.name}{BFB_FILE_NAME_EXTENSION}"


def _is_deleting(bfb: BFB) -> bool:
    return bfb.metadata.deletion_timestamp is not None


def _ref(bfb: BFB) -> str:
    return f"{bfb.namespace}/{bfb.name}"


def initializing(ctx: Context, bfb: BFB) -> BFBPhase | None:
    return BFBPhase.DELETING if _is_deleting(bfb) else BFBPhase.DOWNLOADING


def downloading(ctx: Context, bfb: BFB) -> BFBPhase | None:
    tasks = _tasks(ctx)
    key = download_task_key(bfb.namespace, bfb.name)
    if _is_deleting(bfb):
        tasks.cancel(key)
        tasks.forget(key)
        return BFBPhase.DELETING
    status = tasks.status(key)
    if status is not None:
        if not status.done:
            return BFBPhase.DOWNLOADING
        tasks.forget(key)
        if status.state is TaskState.CANCELLED:
            return BFBPhase.DELETING
        if status.state is TaskState.FAILED:
            ctx.recorder.event(
                bfb,
                "Warning",
                EventReason.FAILED_DOWNLOAD,
                f"Download BFB: ({_ref(bfb)}) failed with error :{status.message}",
            )
            return BFBPhase.ERROR
        # Succeeded: the file check below confirms the rename really left a file behind.
    if not _bfb_store(ctx).exists(file_name_of(bfb)):
        if status is None:
            tasks.start(key, download_procedure(bfb.spec.url, bfb.metadata.uid or bfb.name, file_name_of(bfb)))
        # A success without a file (removed meanwhile) starts over on the next pass.
        return BFBPhase.DOWNLOADING
    ctx.recorder.event(bfb, "Normal", EventReason.SUCCESSFUL_DOWNLOAD, f"Download BFB: ({_ref(bfb)}) successful")
    return BFBPhase.READY


def ready(ctx: Context, bfb: BFB) -> BFBPhase | None:
    if _is_deleting(bfb):
        return BFBPhase.DELETING
    if not _bfb_store(ctx).exists(file_name_of(bfb)):
        return BFBPhase.DOWNLOADING
    return BFBPhase.READY


def error(ctx: Context, bfb: BFB) -> BFBPhase | None:
    return BFBPhase.DELETING if _is_deleting(bfb) else BFBPhase.ERROR


def deleting(ctx: Context, bfb: BFB) -> BFBPhase | None:
    tasks = _tasks(ctx)
    key = download_task_key(bfb.namespace, bfb.name)
    # A download still running would otherwise recreate the file after we removed it.
    tasks.cancel(key)
    tasks.forget(key)
    store = _bfb_store(ctx)
    for name in (file_name_of(bfb), temp_file_name(bfb.metadata.uid or bfb.name)):
        if store.exists(name):
            store.remove(name)
    if BFB_FINALIZER in bfb.metadata.finalizers:
        released = bfb.deepcopy()
        released.metadata.finalizers = [f for f in released.metadata.finalizers if f != BFB_FINALIZER]
        ctx.client.update(released)
    return None


HANDLERS: dict[BFBPhase, Handler] = {
    BFBPhase.INITIALIZING: initializing,
    BFBPhase.DOWNLOADING: downloading,
    BFBPhase.READY: ready,
    BFBPhase.ERROR: error,
    BFBPhase.DELETING: deleting,
}


class BFBReconciler:
    def __init__(self, options: ProvisioningOptions | None = None) -> None:
        self.options = options or ProvisioningOptions()

    def reconcile(self, ctx: Context, req: Request) -> Result:
        bfb = ctx.client.try_get(BFB, req.name, req.namespace)
        if bfb is None:
            return DONE
        if BFB_FINALIZER not in bfb.metadata.finalizers and not _is_deleting(bfb):
            protected = bfb.deepcopy()
            protected.metadata.finalizers.append(BFB_FINALIZER)
            ctx.client.update(protected)
            return DONE
        phase = bfb.status.phase
        next_phase = HANDLERS[phase](ctx, bfb)
        if next_phase is None:
            return DONE
        if next_phase != phase:
            ctx.log.info("BFB %s: %s -> %s", _ref(bfb), phase, next_phase)
            moved = bfb.deepcopy()
            moved.status.phase = next_phase
            ctx.client.update_status(moved)
            return DONE
        if next_phase is BFBPhase.ERROR:
            return DONE
        return Result(requeue_after=self.options.requeue)


def controller(options: ProvisioningOptions | None = None) -> Controller:
    """DPF watches BFBs only; the 5 s requeue polls the download task and the file."""
    return Controller(NAME, BFBReconciler(options), BFB)
