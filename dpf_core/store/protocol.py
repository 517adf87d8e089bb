"""The client protocol every controller uses, whatever is behind it (MemoryStore, the kube API).

Objects returned by reads are shared, read-only snapshots (like client-go lister objects): call
`obj.deepcopy()` before editing one. Writes take a private object and return the stored result. A
MemoryStore snapshot's empty dicts and lists are one shared read-only instance: editing one raises TypeError.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from dpf_core.api.meta import KubeObject, LabelSelector

T = TypeVar("T", bound=KubeObject)

EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]
PatchType = Literal["merge", "json", "strategic"]
Propagation = Literal["Background", "Foreground", "Orphan"]

# A label selector as a controller writes it: a LabelSelector model, a plain match-labels dict, or the
# string form ("app=x,tier in (a,b),!legacy").
Selector = LabelSelector | Mapping[str, str] | str


@dataclass(frozen=True)
class WatchEvent:
    type: EventType
    object: KubeObject
    # The object before the change (MODIFIED/DELETED), for predicates like GenerationChanged.
    old: KubeObject | None = None


Listener = Callable[[WatchEvent], None]


class Client(Protocol):
    def get(self, cls: type[T], name: str, namespace: str | None = None) -> T: ...

    def try_get(self, cls: type[T], name: str, namespace: str | None = None) -> T | None: ...

    def list(
        self,
        cls: type[T],
        namespace: str | None = None,
        label_selector: Selector | None = None,
        field_selector: Mapping[str, str] | None = None,
    ) -> list[T]: ...

    def create(self, obj: T) -> T: ...

    def update(self, obj: T) -> T: ...

    def update_status(self, obj: T) -> T: ...

    def patch(
        self,
        cls: type[T],
        name: str,
        namespace: str | None,
        patch: Any,
        patch_type: PatchType = "merge",
        subresource: Literal["status"] | None = None,
    ) -> T: ...

    def delete(
        self, cls: type[T], name: str, namespace: str | None = None, propagation: Propagation = "Background"
    ) -> None: ...


class Watchable(Protocol):
    """In-process watch: every committed change is delivered to listeners synchronously, in order."""

    def subscribe(self, listener: Listener, kinds: Iterable[type[KubeObject]] | None = None) -> Callable[[], None]: ...
