"""Manager: the controllers of one cluster, one subscription per store, one Context per controller.

A composition builds a Manager per cluster (the host cluster, each DPU cluster, each DPU node agent). A
controller may watch a kind in another store (a DPU cluster's Nodes from the host-side controller):
`watch_store(other_client, "dpu-cluster-a")` plus `Watch(..., source="dpu-cluster-a")`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from dpf_core.api.meta import KubeObject
from dpf_core.store.protocol import Client, WatchEvent

from .controller import Controller, Lister
from .recorder import NullRecorder
from .types import Clock, Context, Recorder

RecorderFactory = Callable[[str], Recorder]


def _null_recorder(component: str) -> Recorder:
    return NullRecorder()


def _lister_of(client: Client) -> Lister:
    def lister(kind: type[KubeObject]) -> Iterable[KubeObject]:
        return client.list(kind)

    return lister


class Manager:
    def __init__(
        self,
        client: Client,
        clock: Clock,
        recorder_factory: RecorderFactory | None = None,
        ports: Any = None,
        log: logging.Logger | None = None,
        name: str = "manager",
    ) -> None:
        self.client = client
        self.clock = clock
        self.ports = ports
        self.name = name
        self.log = log or logging.getLogger(f"dpf.{name}")
        self._recorder_factory = recorder_factory or _null_recorder
        self.controllers: list[Controller] = []
        self._by_name: dict[str, Controller] = {}
        # (source, kind) -> controllers watching it: an event touches only its listeners.
        self._index: dict[tuple[str | None, type[KubeObject]], list[Controller]] = {}
        self._sources: dict[str, Client] = {}
        self._contexts: dict[str, Context] = {}
        self._unsubscribe: list[Callable[[], None]] = []
        self.started = False

    def __repr__(self) -> str:
        return f"Manager({self.name!r}, controllers={[c.name for c in self.controllers]})"

    def add(self, controller: Controller) -> Controller:
        if self.started:
            raise RuntimeError(f"manager {self.name}: add controllers before start()")
        if controller.name in self._by_name:
            raise ValueError(f"manager {self.name}: controller {controller.name!r} already added")
        self.controllers.append(controller)
        self._by_name[controller.name] = controller
        for key in controller.watched():
            self._index.setdefault(key, []).append(controller)
        return controller

    def controller(self, name: str) -> Controller:
        return self._by_name[name]

    def watch_store(self, other_client: Client, source: str) -> None:
        """Route another store's events to watches declared with `source=<source>`."""
        if self.started:
            raise RuntimeError(f"manager {self.name}: register stores before start()")
        self._sources[source] = other_client

    # -- events --------------------------------------------------------------------------------------

    def dispatch(self, ev: WatchEvent, source: str | None = None) -> None:
        for c in self._index.get((source, type(ev.object)), ()):
            c.handle_event(ev, source)

    def _dispatcher(self, source: str) -> Callable[[WatchEvent], None]:
        def dispatch(ev: WatchEvent) -> None:
            self.dispatch(ev, source)

        return dispatch

    def _subscribe(self, client: Client, listener: Callable[[WatchEvent], None], source: str | None) -> None:
        subscribe = getattr(client, "subscribe", None)
        if subscribe is None:
            # No in-process watch (the kube adapter): its watch shell calls dispatch() itself.
            return
        kinds = [kind for (src, kind) in self._index if src == source]
        if kinds:
            self._unsubscribe.append(subscribe(listener, kinds))

    def start(self) -> None:
        """Subscribe, then run each controller's initial list (subscribing first leaves no gap; the queue dedups)."""
        if self.started:
            return
        self.started = True
        self._subscribe(self.client, self.dispatch, None)
        for source, other in self._sources.items():
            self._subscribe(other, self._dispatcher(source), source)
        lister = _lister_of(self.client)
        listers: dict[str | None, Lister] = {source: _lister_of(other) for source, other in self._sources.items()}
        for c in self.controllers:
            c.start(lister, listers)

    def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()

    # -- contexts ------------------------------------------------------------------------------------

    def context_for(self, controller: Controller) -> Context:
        ctx = self._contexts.get(controller.name)
        if ctx is None:
            ctx = Context(
                client=self.client,
                clock=self.clock,
                recorder=self._recorder_factory(controller.name),
                ports=self.ports,
                log=self.log.getChild(controller.name),
                controller=controller.name,
            )
            self._contexts[controller.name] = ctx
        return ctx

    # -- introspection -------------------------------------------------------------------------------

    def idle(self) -> bool:
        return all(c.idle() for c in self.controllers)

    def metrics(self) -> list[dict[str, float | int | str]]:
        return [c.metrics() for c in self.controllers]
