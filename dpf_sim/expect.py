"""Expectations of a scenario run: awaits (objects reach a state by a deadline) and invariants (something
holds after every store event).

Every check is incremental: it keeps the keys it cares about and updates them from the store events of its
kinds, so a check costs O(1) per event whatever the fleet size (a 10,000-DPU run would crawl if every event
rescanned every DPU). The runner routes events by (store, kind) and only to active checks.

Custom invariants: subclass `Invariant`, implement `on_event` (call `self.violate(...)` when it breaks), and
register it with `@register_invariant("myName")`, or name it in a scenario as `type: package.module:Class`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, ValidationError

from dpf_core.api.external import Node
from dpf_core.api.meta import KubeObject, Model
from dpf_core.api.provisioning import (
    DPU,
    DPUSET_NAME_LABEL,
    DPUSET_NAMESPACE_LABEL,
    DPUSet,
    scaled_value_from_int_or_percent,
)
from dpf_core.errors import ApiError
from dpf_core.store.protocol import WatchEvent
from dpf_core.store.selectors import EVERYTHING, LabelMatcher, compile_label_selector

from .scenario import AwaitSpec, InvariantSpec, ScenarioError, field_attrs

if TYPE_CHECKING:
    from .twin import Twin

MAX_LISTED = 20  # offending objects shown in a failure; the count says how many there were
HISTORY_LINES = 20

ObjKey = tuple[str, str]  # (namespace or "", name)


def obj_key(obj: KubeObject) -> ObjKey:
    return (obj.metadata.namespace or "", obj.metadata.name or "")


def show_key(key: ObjKey) -> str:
    return f"{key[0]}/{key[1]}" if key[0] else key[1]


def describe_state(obj: KubeObject) -> str:
    """`ns/name phase=X Ready=True deleting` - what a person needs to see about an offending object."""
    parts = [show_key(obj_key(obj))]
    status = getattr(obj, "status", None)
    phase = getattr(status, "phase", None)
    if phase:
        parts.append(f"phase={phase}")
    for c in getattr(status, "conditions", None) or []:
        if getattr(c, "type", None) == "Ready":
            parts.append(f"Ready={c.status}" + (f"({c.reason})" if c.reason else ""))
    if obj.metadata.deletion_timestamp is not None:
        parts.append("deleting")
    return " ".join(parts)


@dataclass
class Outcome:
    name: str
    passed: bool
    detail: str
    offending: list[str] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    summary: str = ""  # the detail without the offending list (for terminals, which list them one a line)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "passed": self.passed, "detail": self.detail}
        if self.offending:
            out["offending"] = self.offending
        if self.history:
            out["history"] = self.history
        return out


class Check:
    """One expectation while the run goes. The runner calls bind (before the run), activate (at t=0 or
    after the `after` step), on_event for each routed event, on_deadline `within` seconds after activation,
    and finish at the end."""

    # Event routing: the kinds and store this check watches (None = all).
    kinds: tuple[type[KubeObject], ...] | None = None
    store: str | None = "host"
    # The run waits for blocking checks to be decided; a failing check with stops_run ends the run.
    blocking: ClassVar[bool] = False
    stops_run: ClassVar[bool] = False

    def __init__(self, name: str, after: int | str | None = None, within: float | None = None) -> None:
        self.name = name
        self.after = after
        self.within = within
        self.passed: bool | None = None
        self.detail = ""
        self.summary = ""
        self.offending: list[str] = []
        self.history: list[str] = []
        self.active = False
        self.twin: Twin | None = None
        self.on_decided: Callable[[Check], None] | None = None

    # --- lifecycle -------------------------------------------------------------------------------------
    def bind(self, twin: Twin) -> None:
        """Look up what the check needs in the twin; raise ScenarioError if the twin cannot support it."""
        self.twin = twin

    def activate(self, deleted: list[tuple[str, KubeObject]]) -> None:
        """Start checking; `deleted` = (store, object) the `after` step deleted (for leftover checks)."""
        self.active = True

    def on_event(self, store: str, ev: WatchEvent) -> None:
        pass

    def on_deadline(self) -> None:
        pass

    def finish(self) -> None:
        pass

    # --- verdicts --------------------------------------------------------------------------------------
    @property
    def decided(self) -> bool:
        return self.passed is not None

    @property
    def now(self) -> float:
        return self.twin.now if self.twin is not None else 0.0

    def succeed(self, detail: str) -> None:
        if self.passed is None:
            self.passed = True
            self.detail = detail
            if self.on_decided is not None:
                self.on_decided(self)

    def fail(self, detail: str, offending: Iterable[str] = (), *, history: bool = False) -> None:
        if self.passed is not None:
            return
        shown = list(offending)
        self.passed = False
        self.summary = detail
        self.offending = shown[:MAX_LISTED]
        more = f" (+{len(shown) - MAX_LISTED} more)" if len(shown) > MAX_LISTED else ""
        self.detail = detail + (f": {', '.join(self.offending)}{more}" if shown else "")
        if history and self.twin is not None:
            self.history = list(self.twin.log.recent(HISTORY_LINES))
        if self.on_decided is not None:
            self.on_decided(self)

    def outcome(self) -> Outcome:
        return Outcome(self.name, bool(self.passed), self.detail, self.offending, self.history, self.summary or self.detail)


# --- awaits --------------------------------------------------------------------------------------------------


class AwaitCheck(Check):
    """Objects of a kind (in a namespace, matching a selector or a name list) reach a phase or a condition.

    Two key sets are kept up to date from events: the objects in scope and those among them satisfying the
    predicate; the target is a comparison of their sizes."""

    blocking = True

    def __init__(self, spec: AwaitSpec, cls: type[KubeObject]) -> None:
        super().__init__(spec.name, spec.after, spec.within)
        self.spec = spec
        self.cls = cls
        self.kinds = (cls,)
        self.store = spec.store
        self.matcher: LabelMatcher = compile_label_selector(spec.selector) if spec.selector is not None else EVERYTHING
        self.names = set(spec.names) if spec.names is not None else None
        self.fields: list[tuple[tuple[str, ...], str]] = []
        for dotted, want in (spec.fields or {}).items():
            attrs = field_attrs(cls, dotted)
            if attrs is None:
                raise ValueError(f"{cls.KIND.kind} has no field {dotted}")
            self.fields.append((attrs, want))
        self.condition = spec.condition_parts()
        self.in_scope: set[ObjKey] = set()
        self.satisfied: set[ObjKey] = set()
        self.started = 0.0

    def _scoped(self, obj: KubeObject) -> bool:
        md = obj.metadata
        if self.spec.namespace is not None and md.namespace != self.spec.namespace:
            return False
        if self.names is not None and md.name not in self.names:
            return False
        for attrs, want in self.fields:
            if _field_text(obj, attrs) != want:
                return False
        return self.matcher.empty or self.matcher.matches(md.labels)

    def _ok(self, obj: KubeObject) -> bool:
        status = getattr(obj, "status", None)
        if self.spec.phase is not None:
            phase = getattr(status, "phase", None)
            return phase is not None and str(phase) == self.spec.phase
        if self.condition is not None:
            ctype, want = self.condition
            for c in getattr(status, "conditions", None) or []:
                if getattr(c, "type", None) == ctype:
                    return bool(c.status == want)
            return False
        return True

    def _target(self) -> str:
        """"all DPU in phase Ready", ">=3 DPU with Ready=True", "2 named BFB existing"."""
        state = (f"in phase {self.spec.phase}" if self.spec.phase is not None
                 else f"with {self.spec.condition}" if self.spec.condition is not None else "existing")
        count = self.spec.count
        n = (f"all {len(self.names)} named" if self.names is not None else "all") if count == "all" else str(count)
        return f"{n} {self.cls.KIND.kind} {state}"

    def _reached(self) -> bool:
        count = self.spec.count
        got = len(self.satisfied)
        if count == "all":
            if self.names is not None:
                return got == len(self.names)
            return got > 0 and got == len(self.in_scope)
        if isinstance(count, int):
            return got == count
        return got >= int(count[2:])

    def activate(self, deleted: list[tuple[str, KubeObject]]) -> None:
        super().activate(deleted)
        self.started = self.now
        assert self.twin is not None
        store = self.twin.stores().get(self.spec.store)
        if store is not None:
            for obj in store.list(self.cls, self.spec.namespace):
                self._update(obj, deleted=False)
        self._evaluate()

    def _update(self, obj: KubeObject, *, deleted: bool) -> None:
        key = obj_key(obj)
        if deleted or not self._scoped(obj):
            self.in_scope.discard(key)
            self.satisfied.discard(key)
            return
        self.in_scope.add(key)
        if self._ok(obj):
            self.satisfied.add(key)
        else:
            self.satisfied.discard(key)

    def on_event(self, store: str, ev: WatchEvent) -> None:
        self._update(ev.object, deleted=ev.type == "DELETED")
        self._evaluate()

    def _evaluate(self) -> None:
        if self.passed is None and self._reached():
            took = self.now - self.started
            self.succeed(f"{self._target()}: reached at t={self.now:.1f}s ({took:.1f}s after start, {len(self.satisfied)} object(s))")

    def _laggards(self) -> list[str]:
        assert self.twin is not None
        store = self.twin.stores().get(self.spec.store)
        out: list[str] = []
        for key in sorted(self.in_scope - self.satisfied):
            obj = store.try_get(self.cls, key[1], key[0] or None) if store is not None else None
            out.append(describe_state(obj) if obj is not None else show_key(key))
        if self.names is not None:
            present = {k[1] for k in self.in_scope}
            out.extend(f"{n} (missing)" for n in sorted(self.names - present))
        return out

    def _shortfall(self, why: str) -> None:
        have = f"{len(self.satisfied)} of {len(self.in_scope)} in scope satisfied"
        self.fail(f"{self._target()}: {why} ({have})", self._laggards())

    def on_deadline(self) -> None:
        if self.passed is None:
            self._shortfall(f"not reached within {self.spec.within:g}s")

    def finish(self) -> None:
        if self.passed is None:
            self._shortfall(f"not reached when the run ended at t={self.now:.1f}s")


def _field_text(obj: Any, attrs: tuple[str, ...]) -> str | None:
    for a in attrs:
        obj = getattr(obj, a, None)
        if obj is None:
            return None
    if isinstance(obj, bool):
        return "true" if obj else "false"
    return str(obj)


# --- invariants ---------------------------------------------------------------------------------------------


class Invariant(Check):
    """Holds after every store event it watches; the first violation fails it and stops the run."""

    stops_run = True

    def __init__(self, spec: InvariantSpec) -> None:
        super().__init__(spec.name, spec.after, spec.within)
        self.spec = spec
        self.events = 0

    def violate(self, message: str, offending: Iterable[str] = ()) -> None:
        self.fail(f"violated at t={self.now:.1f}s: {message}", offending, history=True)

    def finish(self) -> None:
        if self.passed is None:
            self.succeed(f"held over {self.events} event(s)")


class _Params(Model):
    pass


class MaxUnavailableParams(_Params):
    dpu_set: str | None = None  # "name" or "namespace/name"; default every DPUSet


@dataclass
class _SetState:
    rolling: bool = False
    deleting: bool = False
    max_unavailable: int | str | None = None
    matcher: LabelMatcher | None = None  # None: nodeSelector nil = every node
    selected: set[str] = field(default_factory=set)
    by_node: dict[str, set[ObjKey]] = field(default_factory=dict)
    ever_ready: set[ObjKey] = field(default_factory=set)
    unavailable: set[ObjKey] = field(default_factory=set)


@dataclass
class _DpuState:
    node: str
    ready: bool
    deleting: bool
    present: bool = True


class MaxUnavailable(Invariant):
    """A RollingUpdate DPUSet never has more than maxUnavailable DPUs unavailable.

    Counted like DPF's rolloutRolling, but only over DPUs that were Ready at least once: DPF deletes DPUs that
    never became Ready without spending the budget, so counting those would flag a healthy first rollout. A
    DPU counts as unavailable when its Ready condition is not True, it is being deleted, or it is gone while
    its node is still selected. The budget is maxUnavailable scaled on the selected nodes (percent rounded
    up), clamped to [1, total], as DPF computes it."""

    kinds = (DPU, DPUSet, Node)

    def __init__(self, spec: InvariantSpec) -> None:
        super().__init__(spec)
        params = MaxUnavailableParams.model_validate(spec.params)
        self.only: ObjKey | None = None
        if params.dpu_set is not None:
            ns, _, name = params.dpu_set.rpartition("/")
            self.only = (ns, name)
        self.sets: dict[ObjKey, _SetState] = {}
        self.dpus: dict[ObjKey, tuple[ObjKey, _DpuState]] = {}
        self.node_labels: dict[str, dict[str, str]] = {}

    def activate(self, deleted: list[tuple[str, KubeObject]]) -> None:
        super().activate(deleted)
        assert self.twin is not None
        host = self.twin.host
        for cls in (Node, DPUSet, DPU):
            for obj in host.list(cls):
                self._apply(WatchEvent("ADDED", obj))

    def on_event(self, store: str, ev: WatchEvent) -> None:
        self.events += 1
        touched = self._apply(ev)
        for key in touched:
            self._check(key)

    # --- bookkeeping -------------------------------------------------------------------------------------
    def _wanted(self, key: ObjKey) -> bool:
        return self.only is None or self.only == key or (not self.only[0] and self.only[1] == key[1])

    def _apply(self, ev: WatchEvent) -> list[ObjKey]:
        obj = ev.object
        if isinstance(obj, Node):
            return self._node(obj, ev.type == "DELETED")
        if isinstance(obj, DPUSet):
            return self._dpuset(obj, ev.type == "DELETED")
        if isinstance(obj, DPU):
            return self._dpu(obj, ev.type == "DELETED")
        return []

    def _state(self, key: ObjKey) -> _SetState:
        st = self.sets.get(key)
        if st is None:
            st = self.sets[key] = _SetState()
            st.selected = set(self.node_labels)
        return st

    def _node(self, node: Node, gone: bool) -> list[ObjKey]:
        name = node.name
        if gone:
            self.node_labels.pop(name, None)
        else:
            self.node_labels[name] = dict(node.metadata.labels)
        touched = []
        for key, st in self.sets.items():
            now_in = not gone and (st.matcher is None or st.matcher.matches(self.node_labels[name]))
            if now_in != (name in st.selected):
                (st.selected.add if now_in else st.selected.discard)(name)
                for d in st.by_node.get(name, ()):
                    self._refresh(st, d)
                touched.append(key)
        return touched

    def _dpuset(self, ds: DPUSet, gone: bool) -> list[ObjKey]:
        key = obj_key(ds)
        if gone:
            self.sets.pop(key, None)
            return []
        st = self._state(key)
        strategy = ds.spec.strategy
        st.rolling = strategy is not None and strategy.type == "RollingUpdate"
        ru = strategy.rolling_update if strategy is not None else None
        st.max_unavailable = ru.max_unavailable if ru is not None else None
        st.deleting = ds.metadata.deletion_timestamp is not None
        sel = ds.spec.node_selector
        matcher = compile_label_selector(sel) if sel is not None else None
        if str(matcher) != str(st.matcher):
            st.matcher = matcher
            st.selected = {n for n, labels in self.node_labels.items() if matcher is None or matcher.matches(labels)}
            for keys in st.by_node.values():
                for d in keys:
                    self._refresh(st, d)
        return [key]

    def _owner(self, dpu: DPU) -> ObjKey | None:
        labels = dpu.metadata.labels
        name = labels.get(DPUSET_NAME_LABEL)
        if name:
            return (labels.get(DPUSET_NAMESPACE_LABEL) or dpu.metadata.namespace or "", name)
        for ref in dpu.metadata.owner_references:
            if ref.kind == "DPUSet" and ref.controller:
                return (dpu.metadata.namespace or "", ref.name)
        return None

    def _dpu(self, dpu: DPU, gone: bool) -> list[ObjKey]:
        key = obj_key(dpu)
        prev = self.dpus.get(key)
        owner = prev[0] if prev is not None else self._owner(dpu)
        if owner is None:
            return []
        st = self._state(owner)
        ready = any(c.type == "Ready" and c.status == "True" for c in dpu.status.conditions)
        state = _DpuState(dpu.spec.node_name, ready, dpu.metadata.deletion_timestamp is not None, not gone)
        self.dpus[key] = (owner, state)
        st.by_node.setdefault(state.node, set()).add(key)
        if ready and not state.deleting and not gone:
            st.ever_ready.add(key)
        self._refresh(st, key)
        return [owner]

    def _refresh(self, st: _SetState, d: ObjKey) -> None:
        entry = self.dpus.get(d)
        if entry is None:
            return
        s = entry[1]
        down = d in st.ever_ready and s.node in st.selected and (not s.present or not s.ready or s.deleting)
        (st.unavailable.add if down else st.unavailable.discard)(d)

    def budget(self, st: _SetState) -> int:
        total = len(st.selected)
        scaled = scaled_value_from_int_or_percent(st.max_unavailable, total, True)
        return 1 if scaled <= 0 else min(scaled, total)

    def _check(self, key: ObjKey) -> None:
        st = self.sets.get(key)
        if st is None or not st.rolling or st.deleting or not self._wanted(key) or self.passed is not None:
            return
        if len(st.unavailable) <= 1:
            return  # the budget is never below 1
        limit = self.budget(st)
        if len(st.unavailable) > limit:
            offending = []
            for d in sorted(st.unavailable):
                s = self.dpus[d][1]
                why = "gone" if not s.present else "deleting" if s.deleting else "not Ready"
                offending.append(f"{show_key(d)} ({why}, node {s.node})")
            self.violate(
                f"DPUSet {show_key(key)} has {len(st.unavailable)} DPUs unavailable, maxUnavailable "
                f"{st.max_unavailable!r} allows {limit} of {len(st.selected)} node(s)",
                offending,
            )


class SingleFlash(Invariant):
    """No DPU is flashed twice at once: the BlueField model counts flashes in progress per DPU."""

    kinds = (DPU,)

    def __init__(self, spec: InvariantSpec) -> None:
        super().__init__(spec)
        _NoParams.model_validate(spec.params)
        self.bluefields: Any = None

    def bind(self, twin: Twin) -> None:
        super().bind(twin)
        self.bluefields = find_bluefields(twin)
        if self.bluefields is None:
            raise ScenarioError([
                f"invariant {self.name}: singleFlash is unavailable: this twin has no BlueField models "
                "(Twin.bluefields) to count flashes"
            ])

    def on_event(self, store: str, ev: WatchEvent) -> None:
        self.events += 1
        # A flash starts and ends between store writes of that DPU (OS Installing -> Rebooting), so looking
        # at the DPU whose object just changed catches it; finish() sweeps the whole fleet once.
        bf = self.bluefields.dpus.get(ev.object.name)
        if bf is not None and bf.max_flashing > 1:
            self.violate("a DPU was flashed twice at once", [f"{bf.name} ({bf.max_flashing} concurrent flashes)"])

    def finish(self) -> None:
        if self.passed is None and self.bluefields is not None:
            bad = [f"{n} ({bf.max_flashing} concurrent flashes)"
                   for n, bf in sorted(self.bluefields.dpus.items()) if bf.max_flashing > 1]
            if bad:
                self.violate("DPUs were flashed twice at once", bad)
        super().finish()


def find_bluefields(twin: Any) -> Any:
    """The twin's BlueField models (anything with `.dpus: {name: BlueField}`), wherever the composition
    keeps them."""
    for path in ("flash_monitor", "bluefields", "world.bluefields", "models.bluefields"):
        obj: Any = twin
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if obj is not None and isinstance(getattr(obj, "dpus", None), dict):
            return obj
    return None


class _NoParams(_Params):
    pass


class NoLeftoversParams(_Params):
    kinds: list[str] = Field(default_factory=lambda: ["DPU"])
    namespace: str | None = None


class NoLeftovers(Check):
    """After a step (usually a delete), within a deadline: no object of the listed kinds remains in any
    store, nor any object owned (transitively) by what the step deleted. Passes as soon as the last one is
    gone; fails at the deadline listing what is left."""

    blocking = True
    kinds = None
    store = None

    def __init__(self, spec: InvariantSpec) -> None:
        super().__init__(spec.name, spec.after, spec.within)
        from .twin import resolve_kind

        params = NoLeftoversParams.model_validate(spec.params)
        self.namespace = params.namespace
        self.watched: tuple[type[KubeObject], ...] = tuple(resolve_kind(k) for k in params.kinds)
        self.owners: set[str] = set()
        self.remaining: set[tuple[str, str, str, str]] = set()  # (store, kind, namespace, name)
        self.started = 0.0

    def _listed(self, obj: KubeObject) -> bool:
        return isinstance(obj, self.watched) and (self.namespace is None or obj.metadata.namespace == self.namespace)

    def _owned(self, obj: KubeObject) -> bool:
        return any(ref.uid in self.owners for ref in obj.metadata.owner_references)

    def activate(self, deleted: list[tuple[str, KubeObject]]) -> None:
        super().activate(deleted)
        assert self.twin is not None
        self.started = self.now
        for _, obj in deleted:
            if obj.metadata.uid:
                self.owners.add(obj.metadata.uid)
        stores = self.twin.stores()
        everything = [(s, o) for s, st in stores.items() for o in st.all_objects()] if self.owners else []
        for name, st in stores.items():
            for cls in self.watched:
                for obj in st.list(cls, self.namespace):
                    self._keep(name, obj)
        # Ownership is transitive (DPUSet -> DPU -> Pod): sweep until no new owner turns up.
        grew = True
        while grew:
            grew = False
            for name, obj in everything:
                if obj.metadata.uid not in self.owners and self._owned(obj):
                    self._keep(name, obj)
                    grew = True
        for name, obj in deleted:
            holder = stores.get(name)
            if holder is not None and holder.try_get(type(obj), obj.name, obj.namespace) is not None:
                self._keep(name, obj)  # held by a finalizer: still there
        self._evaluate()

    def _keep(self, store: str, obj: KubeObject) -> None:
        if obj.metadata.uid:
            self.owners.add(obj.metadata.uid)
        self.remaining.add((store, obj.kind, obj.metadata.namespace or "", obj.name))

    def on_event(self, store: str, ev: WatchEvent) -> None:
        obj = ev.object
        key = (store, obj.kind, obj.metadata.namespace or "", obj.name)
        if ev.type == "DELETED":
            self.remaining.discard(key)
        elif self._listed(obj) or self._owned(obj) or key in self.remaining:
            self._keep(store, obj)
        self._evaluate()

    def _evaluate(self) -> None:
        if self.passed is None and not self.remaining:
            self.succeed(f"nothing left at t={self.now:.1f}s ({self.now - self.started:.1f}s after the step)")

    def _left(self) -> list[str]:
        return [f"{k} {ns + '/' if ns else ''}{n}" + (f" in {s}" if s != "host" else "")
                for s, k, ns, n in sorted(self.remaining)]

    def on_deadline(self) -> None:
        if self.passed is None:
            self.fail(f"{len(self.remaining)} object(s) left {self.within:g}s after the step", self._left(), history=True)

    def finish(self) -> None:
        if self.passed is None:
            self.fail(f"{len(self.remaining)} object(s) left when the run ended at t={self.now:.1f}s", self._left())


# --- registry -------------------------------------------------------------------------------------------------

InvariantFactory = Callable[[InvariantSpec], Check]

_INVARIANTS: dict[str, InvariantFactory] = {
    "maxUnavailable": MaxUnavailable,
    "singleFlash": SingleFlash,
    "noLeftovers": NoLeftovers,
}


def register_invariant(name: str) -> Callable[[InvariantFactory], InvariantFactory]:
    """Make `type: <name>` available to scenarios (the factory takes the InvariantSpec, returns a Check)."""

    def deco(factory: InvariantFactory) -> InvariantFactory:
        _INVARIANTS[name] = factory
        return factory

    return deco


def unregister_invariant(name: str) -> None:
    _INVARIANTS.pop(name, None)


def invariant_types() -> list[str]:
    return sorted(_INVARIANTS)


def _factory(type_name: str) -> InvariantFactory:
    found = _INVARIANTS.get(type_name)
    if found is not None:
        return found
    if ":" in type_name:
        module, _, attr = type_name.partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise LookupError(f"cannot import {type_name}: {e}") from None
        if not callable(obj):
            raise LookupError(f"{type_name} is not callable")
        return obj  # type: ignore[no-any-return]
    raise LookupError(f'unknown invariant type "{type_name}" (known: {", ".join(invariant_types())}, or module:Class)')


def make_invariant(spec: InvariantSpec) -> Check:
    return _factory(spec.type)(spec)


def check_invariant_spec(spec: InvariantSpec) -> list[tuple[tuple[str | int, ...], str]]:
    """Load-time problems of an invariant, as (path relative to the invariant, message)."""
    try:
        _factory(spec.type)
    except LookupError as e:
        return [(("type",), str(e))]
    out: list[tuple[tuple[str | int, ...], str]] = []
    if spec.type == "noLeftovers":
        if spec.after is None:
            out.append((("after",), "noLeftovers needs the step it checks after"))
        if spec.within is None:
            out.append((("within",), "noLeftovers needs a deadline"))
    try:
        make_invariant(spec)
    except ValidationError as err:
        for item in err.errors(include_url=False):
            loc = tuple(item["loc"])
            msg = "unknown parameter" if item["type"] == "extra_forbidden" else str(item["msg"]).removeprefix("Value error, ")
            out.append((("params", *loc), msg))
    except ApiError as e:
        out.append((("params",), e.message))
    except (ValueError, TypeError) as e:
        out.append((("params",), str(e)))
    return out


def make_await(spec: AwaitSpec) -> AwaitCheck:
    from .twin import resolve_kind

    return AwaitCheck(spec, resolve_kind(spec.kind))
