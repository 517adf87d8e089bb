"""BFB controller: download task, Ready, Error, file vanished, deletion."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dpf_core.api.provisioning import BFB, BFB_FINALIZER, BFBPhase
from dpf_core.controllers import bfb as bfb_controller
from dpf_core.controllers.bfb_tasks import download_task_key
from dpf_core.ports import Ports, Procedure, TaskState, TaskStatus
from dpf_core.ports.ops import DownloadBfb, OpError
from dpf_core.runtime import Manager, ManualClock, MemoryRecorder, SyncDriver
from dpf_core.store import MemoryStore

NS = "dpf-operator-system"
URL = "http://bfb-server.local/bf-bundle-2.9.1-19_24.11_ubuntu-22.04_prod.bfb"


class FakeTasks:
    """Tasks port whose procedures run only when the test says so, against a handler of its choosing."""

    def __init__(self) -> None:
        self.statuses: dict[str, TaskStatus] = {}
        self.factories: dict[str, Callable[[], Procedure]] = {}
        self.started: list[str] = []
        self.cancelled: list[str] = []

    def start(self, key: str, procedure: Callable[[], Procedure]) -> None:
        if key in self.statuses:
            return
        self.statuses[key] = TaskStatus(TaskState.RUNNING)
        self.factories[key] = procedure
        self.started.append(key)

    def status(self, key: str) -> TaskStatus | None:
        return self.statuses.get(key)

    def cancel(self, key: str) -> None:
        s = self.statuses.get(key)
        if s is not None and not s.done:
            self.statuses[key] = TaskStatus(TaskState.CANCELLED, "cancelled")
            self.cancelled.append(key)

    def forget(self, key: str) -> None:
        self.statuses.pop(key, None)

    def run(self, key: str, handle: Callable[[Any], Any]) -> list[Any]:
        """Drive the procedure to its end; returns the ops it yielded."""
        proc = self.factories[key]()
        ops: list[Any] = []
        send: Any = None
        try:
            while True:
                op = proc.send(send)
                ops.append(op)
                send = handle(op)
        except StopIteration as stop:
            self.statuses[key] = TaskStatus(TaskState.SUCCEEDED, result=stop.value)
        except OpError as e:
            self.statuses[key] = TaskStatus(TaskState.FAILED, str(e), e.reason)
        return ops


class FakeBfbStore:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def exists(self, file_name: str) -> bool:
        return file_name in self.files

    def size(self, file_name: str) -> int | None:
        f = self.files.get(file_name)
        return None if f is None else len(f)

    def remove(self, file_name: str) -> None:
        self.files.pop(file_name, None)

    def write(self, file_name: str, content: bytes) -> None:
        self.files[file_name] = content


class World:
    def __init__(self) -> None:
        self.clock = ManualClock()
        self.store = MemoryStore(clock=self.clock.now)
        self.tasks = FakeTasks()
        self.files = FakeBfbStore()
        self.recorder = MemoryRecorder(self.clock)
        self.mgr = Manager(
            self.store, self.clock, recorder_factory=lambda _: self.recorder, ports=Ports(tasks=self.tasks, bfb_store=self.files)
        )
        self.mgr.add(bfb_controller.controller())
        self.driver = SyncDriver(self.mgr)

    def bfb(self, name: str = "bf-bundle") -> BFB | None:
        return self.store.try_get(BFB, name, NS)

    def phase(self, name: str = "bf-bundle") -> BFBPhase:
        b = self.bfb(name)
        assert b is not None
        return b.status.phase

    def download_ok(self, op: Any) -> None:
        assert isinstance(op, DownloadBfb)
        self.files.write(op.file_name, b"bfb")


@pytest.fixture
def world() -> World:
    w = World()
    w.store.create(BFB.new("bf-bundle", NS, spec={"url": URL}))
    return w


KEY = download_task_key(NS, "bf-bundle")


def test_healthy_path_downloads_once_then_ready(world: World) -> None:
    world.driver.run_for(1)
    b = world.bfb()
    assert b is not None and BFB_FINALIZER in b.metadata.finalizers
    assert world.phase() == BFBPhase.DOWNLOADING
    assert world.tasks.started == [KEY]

    ops = world.tasks.run(KEY, world.download_ok)
    assert ops == [DownloadBfb(url=URL, temp_name=f"bfb-{b.metadata.uid}", file_name=f"{NS}-bf-bundle.bfb")]
    world.driver.run_for(6)
    assert world.phase() == BFBPhase.READY
    assert world.tasks.started == [KEY] and world.tasks.status(KEY) is None  # finished task forgotten
    assert world.recorder.reasons() == ["SuccessfulDownload"]
    assert world.recorder.events[0].message == f"Download BFB: ({NS}/bf-bundle) successful"
    # Ready keeps looking at the file every 5 s.
    assert world.mgr.controller("bfb").next_ready_at() == pytest.approx(world.clock.now() + 5, abs=5)


def test_file_already_present_goes_ready_without_download(world: World) -> None:
    world.files.write(f"{NS}-bf-bundle.bfb", b"x")
    world.driver.run_for(1)
    assert world.phase() == BFBPhase.READY
    assert world.tasks.started == []


def test_download_failure_is_terminal_error(world: World) -> None:
    world.driver.run_for(1)

    def not_found(op: Any) -> None:
        raise OpError(f"failed to get: {URL} status: 404", "NotFound")

    world.tasks.run(KEY, not_found)
    world.driver.run_for(6)
    assert world.phase() == BFBPhase.ERROR
    warning = world.recorder.events[-1]
    assert (warning.type, warning.reason) == ("Warning", "FailedDownload")
    assert "status: 404" in warning.message
    # Error: no periodic requeue, and no new download however long we wait.
    assert world.mgr.controller("bfb").next_ready_at() is None
    world.driver.run_for(60)
    assert world.phase() == BFBPhase.ERROR and world.tasks.started == [KEY]


def test_file_vanished_in_ready_downloads_again(world: World) -> None:
    world.driver.run_for(1)
    world.tasks.run(KEY, world.download_ok)
    world.driver.run_for(6)
    assert world.phase() == BFBPhase.READY
    world.files.remove(f"{NS}-bf-bundle.bfb")
    world.driver.run_for(6)
    assert world.phase() == BFBPhase.DOWNLOADING
    assert world.tasks.started == [KEY, KEY]


def test_running_download_keeps_downloading_and_polls(world: World) -> None:
    world.driver.run_for(30)
    assert world.phase() == BFBPhase.DOWNLOADING
    assert world.tasks.started == [KEY]  # started once, polled since


def test_deletion_cancels_download_removes_files_and_finalizer(world: World) -> None:
    world.driver.run_for(1)
    b = world.bfb()
    assert b is not None
    temp = f"bfb-{b.metadata.uid}"
    world.files.write(temp, b"partial")
    world.store.delete(BFB, "bf-bundle", NS)
    world.driver.run_for(1)
    assert world.bfb() is None
    assert world.tasks.cancelled == [KEY]
    assert world.files.files == {}


def test_deletion_of_ready_bfb_removes_file(world: World) -> None:
    world.driver.run_for(1)
    world.tasks.run(KEY, world.download_ok)
    world.driver.run_for(6)
    world.store.delete(BFB, "bf-bundle", NS)
    world.driver.run_for(1)
    assert world.bfb() is None and world.files.files == {}


def test_missing_port_fails_loudly() -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock.now)
    mgr = Manager(store, clock, ports=Ports())
    mgr.add(bfb_controller.controller())
    store.create(BFB.new("b", NS, spec={"url": URL}))
    stats = SyncDriver(mgr, record=True).run_for(1)
    errors = [o.error for o in stats.outcomes if o.error is not None]
    assert errors and "no Tasks port" in str(errors[0])
