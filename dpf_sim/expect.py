"""Expectations of a scenario run: awaits (objects reach a state by a deadline) and invariants (something
holds after every store event).

Every check is incremental: it keeps the keys it cares about and updates them from the store events of its
kinds, so a check costs O(1) per event whatever the fleet size (a 10,000-DPU run would crawl if every event
rescanned every DPU). The runner routes events by (store, kind) and only to active checks.

Custom invariants: subclass `Invariant`, implement `on_event` (call `self.violate(...)` when it breaks), and
register it with `@register_invariant("myName")`, or name it in a scenario as `type: package.module:Class`.
"""

from __future__ import annotations

import enum
import importlib
import itertools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, ValidationError

from dpf_core.api.external import CIDRPool, IPPool, Node, Pod
from dpf_core.api.meta import KubeObject, Model
from dpf_core.api.provisioning import (
    DPU,
    DPUSET_NAME_LABEL,
    DPUSET_NAMESPACE_LABEL,
    DPUSet,
    scaled_value_from_int_or_percent,
)
from dpf_core.controllers.dpuset import dpu_indices
from dpf_core.errors import ApiError
from dpf_core.store.protocol import WatchEvent
from dpf_core.store.selectors import EVERYTHING, LabelMatcher, compile_label_selector

from .scenario import MAP_KEY_PREFIX, AwaitSpec, InvariantSpec, ScenarioError, TraceSpec, field_attrs

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
    lines: list[str] = field(default_factory=list)  # what the check saw, for a person (packet traces)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "passed": self.passed, "detail": self.detail}
        if self.offending:
            out["offending"] = self.offending
        if self.lines:
            out["lines"] = self.lines
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
        self.lines: list[str] = []
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
        return Outcome(self.name, bool(self.passed), self.detail, self.offending, self.history, self.summary or self.detail,
                       self.lines)


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
            self.fields.append((attrs, _wire_text(want)))
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
        if a.startswith(MAP_KEY_PREFIX):
            obj = obj.get(a[len(MAP_KEY_PREFIX):]) if isinstance(obj, Mapping) else None
        else:
            obj = getattr(obj, a, None)
        if obj is None:
            return None
    return _wire_text(obj)


def _wire_text(value: Any) -> str:
    """A field value as YAML would spell it, so `fields: {spec.automaticNodeReboot: true}` and `"true"` agree."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


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
    dpu_selector: dict[str, str] = field(default_factory=dict)
    # DPUs the set wants per selected Node (one per DPU index its dpuSelector names) and their sum: the base
    # the DPUSet controller scales a percent maxUnavailable on (docs/differences.md, "rolling budget total").
    slots: dict[str, int] = field(default_factory=dict)
    total: int = 0
    by_node: dict[str, set[ObjKey]] = field(default_factory=dict)
    ever_ready: set[ObjKey] = field(default_factory=set)
    unavailable: set[ObjKey] = field(default_factory=set)
    # The unavailable count at the last check: over the budget is a violation only when the count grew.
    checked: int = 0


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
    its node is still selected. The budget is the DPUSet's maxUnavailable in force at that moment, scaled on
    the DPUs the set wants on its selected nodes (percent rounded up), clamped to [1, total], as the DPUSet
    controller computes it on every pass (DPF scales on nodes: the same with one DPU per node). A budget
    lowered below the DPUs already unavailable recalls nothing (neither does DPF): the count may stay over it
    while it falls; one more DPU going down while over it is a violation."""

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
            for name in st.selected:
                self._slots(st, name)
        return st

    def _slots(self, st: _SetState, name: str) -> None:
        """Recount the DPUs the set wants on Node `name`: none when it is not selected, else one per DPU index
        its dpuSelector names and at least one (DPF's count of Nodes; a Node without DPU labels only loosens
        the check)."""
        labels = self.node_labels.get(name)
        n = max(1, len(dpu_indices(st.dpu_selector, labels))) if labels is not None and name in st.selected else 0
        st.total += n - st.slots.pop(name, 0)
        if n:
            st.slots[name] = n

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
            self._slots(st, name)
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
        recount = ds.spec.dpu_selector != st.dpu_selector
        if str(matcher) != str(st.matcher):
            st.matcher = matcher
            st.selected = {n for n, labels in self.node_labels.items() if matcher is None or matcher.matches(labels)}
            for keys in st.by_node.values():
                for d in keys:
                    self._refresh(st, d)
            recount = True
        if recount:
            st.dpu_selector = dict(ds.spec.dpu_selector)
            st.slots, st.total = {}, 0
            for name in st.selected:
                self._slots(st, name)
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
        if not s.present and s.node not in st.selected:
            # Gone from a Node the set no longer selects: removed with the Node, not replaced by a rollout. If the
            # Node is selected again its DPU is a new one, unavailable only once it was Ready (a joining host).
            st.ever_ready.discard(d)
        down = d in st.ever_ready and s.node in st.selected and (not s.present or not s.ready or s.deleting)
        (st.unavailable.add if down else st.unavailable.discard)(d)

    def budget(self, st: _SetState) -> int:
        total = st.total
        scaled = scaled_value_from_int_or_percent(st.max_unavailable, total, True)
        return 1 if scaled <= 0 else min(scaled, total)

    def _check(self, key: ObjKey) -> None:
        st = self.sets.get(key)
        if st is None or not st.rolling or st.deleting or not self._wanted(key) or self.passed is not None:
            return
        count, grew = len(st.unavailable), len(st.unavailable) > st.checked
        st.checked = count
        if count <= 1:
            return  # the budget is never below 1
        limit = self.budget(st)
        # The budget in force is the DPUSet's value now. Lowered (or its percent base shrunk) below what is
        # already unavailable, it recalls nothing: DPF only stops starting replacements, so the count may sit
        # over it until DPUs come back; a DPU going down while over it is the violation.
        if count > limit and grew:
            offending = []
            for d in sorted(st.unavailable):
                s = self.dpus[d][1]
                why = "gone" if not s.present else "deleting" if s.deleting else "not Ready"
                offending.append(f"{show_key(d)} ({why}, node {s.node})")
            self.violate(
                f"DPUSet {show_key(key)} has {len(st.unavailable)} DPUs unavailable, maxUnavailable "
                f"{st.max_unavailable!r} allows {limit} of "
                + (f"{st.total} DPU(s) on " if st.total != len(st.selected) else "")
                + f"{len(st.selected)} node(s)",
                offending,
            )


class SingleFlash(Invariant):
    """No DPU is flashed twice at once: the BlueField model counts flashes in progress per DPU."""

    kinds = (DPU,)

    def __init__(self, spec: InvariantSpec) -> None:
        super().__init__(spec)
        _NoParams.model_validate(spec.params)
        self.bluefields: Any = None
        self._bluefield_of: Callable[[str], str] = str

    def bind(self, twin: Twin) -> None:
        super().bind(twin)
        self.bluefields = find_bluefields(twin)
        if self.bluefields is None:
            raise ScenarioError([
                f"invariant {self.name}: singleFlash is unavailable: this twin has no BlueField models "
                "(Twin.bluefields) to count flashes"
            ])
        # A DPU object not named after its BlueField (`obj-dpu`) flashes the one at its node and PCI label.
        names = getattr(twin, "dpu_names", None)
        if names is not None:
            self._bluefield_of = names.bluefield_of

    def on_event(self, store: str, ev: WatchEvent) -> None:
        self.events += 1
        # A flash starts and ends between store writes of that DPU (OS Installing -> Rebooting), so looking
        # at the DPU whose object just changed catches it; finish() sweeps the whole fleet once.
        bf = self.bluefields.dpus.get(self._bluefield_of(ev.object.name))
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


# --- service chains: packet traces, OVS leftovers, IPAM allocations -----------------------------------------


def _servicechain(twin: Any, what: str) -> Any:
    world = getattr(twin, "servicechain", None)
    if world is None:
        raise ScenarioError([
            f"{what}: needs the servicechain attachment (add `attachments: [servicechain]` to the scenario)"
        ])
    return world


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


class TraceCheck(Check):
    """A packet injected at a port (or a pod's interface) of DPU nodes at a simulated time: where it leaves
    each node, which chains' flows it hit, which headers changed. Decided once, at that time."""

    blocking = True
    kinds: tuple[type[KubeObject], ...] | None = ()
    store = None

    def __init__(self, spec: TraceSpec) -> None:
        super().__init__(spec.name, spec.after, None)
        self.spec = spec
        self.started = 0.0
        self.world: Any = None

    def bind(self, twin: Twin) -> None:
        super().bind(twin)
        self.world = _servicechain(twin, f"trace {self.name}")

    def activate(self, deleted: list[tuple[str, KubeObject]]) -> None:
        super().activate(deleted)
        assert self.twin is not None
        self.started = self.now
        self.twin.env.process(self._at())

    def _at(self) -> Any:
        assert self.twin is not None
        yield self.twin.env.timeout(self.spec.at)
        if self.passed is None:
            self.run()

    def targets(self) -> list[tuple[str, str]]:
        world = self.world
        clusters = [self.spec.store] if self.spec.store is not None else sorted(world.clusters)
        out: list[tuple[str, str]] = []
        for cluster in clusters:
            if cluster not in world.clusters:
                continue
            names = world.node_names(cluster)
            wanted = self.spec.nodes
            if isinstance(wanted, list):
                names = [n for n in names if n in set(wanted)]
            elif isinstance(wanted, int):
                names = names[:wanted]
            out.extend((cluster, n) for n in names)
        return out

    def _packet(self) -> Any:
        from .ovs import Packet

        return Packet(**self.spec.packet.model_dump(by_alias=False))

    def run(self) -> None:
        targets = self.targets()
        if not targets:
            where = self.spec.store or "any DPU cluster"
            self.fail(f"no DPU node to trace on in {where} at t={self.now:.1f}s")
            return
        if isinstance(self.spec.nodes, list):
            missing = sorted(set(self.spec.nodes) - {n for _, n in targets})
            if missing:
                self.fail(f"nodes not joined at t={self.now:.1f}s", missing)
                return
        wanted = self.spec.nodes
        at_least = wanted if isinstance(wanted, int) else int(wanted[2:]) if isinstance(wanted, str) and wanted.startswith(">=") else 0
        if len(targets) < at_least:
            self.fail(f"only {len(targets)} DPU node(s) joined at t={self.now:.1f}s, {at_least} wanted")
            return
        src = self.spec.from_
        traced: list[tuple[Any, list[str]]] = []
        bad: list[str] = []
        for cluster, node in targets:
            try:
                source = self.world.resolve(cluster, node, port=src.port, bridge=src.bridge, pod=src.pod,
                                            namespace=src.namespace or (self.spec.namespace if src.pod is not None else None),
                                            interface=src.interface)
                nt = self.world.trace(cluster, node, source, self._packet(), side_effects=self.spec.side_effects)
            except (LookupError, KeyError) as e:
                bad.append(f"{node}: cannot inject: {e}")
                continue
            problems = self.judge(nt)
            traced.append((nt, problems))
            if problems:
                bad.append(f"{node}: " + "; ".join(problems))
        self.lines = self.render(traced)
        if bad:
            self.fail(f"{len(bad)} of {len(targets)} node(s) at t={self.now:.1f}s not as expected", bad)
        else:
            self.succeed(f"as expected on {len(targets)} node(s) at t={self.now:.1f}s: {self._signature(traced[0][0])}")

    # --- verdict ---------------------------------------------------------------------------------------
    @staticmethod
    def _matches(want: Any, got: Any) -> bool:
        if want.port is not None:
            return bool(got.port == want.port and (want.bridge is None or got.bridge == want.bridge))
        if got.pod is None or (want.interface is not None and got.interface != want.interface):
            return False
        ns, _, name = got.pod.partition("/")
        if want.namespace is not None and ns != want.namespace:
            return False
        if isinstance(want.pod, str):
            return bool(want.pod in (name, got.pod))
        labels = dict(got.labels)
        return all(labels.get(k) == v for k, v in want.pod.items())

    def judge(self, nt: Any) -> list[str]:
        exp = self.spec.expect
        problems: list[str] = []
        got = list(nt.deliveries)
        if exp.drop is True and got:
            problems.append("expected a drop, left through " + ", ".join(d.describe() for d in got))
        if exp.drop is False and not got:
            problems.append(f"dropped ({nt.result.drop_reason})")
        if exp.to is not None:
            remaining = list(got)
            unmet = []
            for want in exp.to:
                hit = next((d for d in remaining if self._matches(want, d)), None)
                if hit is None:
                    unmet.append(want)
                else:
                    remaining.remove(hit)
            if unmet or remaining:
                shown = ", ".join(d.describe() for d in got) or "nowhere (dropped)"
                missing = ", ".join(_show_endpoint(w) for w in unmet)
                problems.append(f"went to {shown}" + (f"; missing {missing}" if missing else "")
                                + (f"; unexpected {', '.join(d.describe() for d in remaining)}" if remaining else ""))
        if exp.via:
            from dpf_core.controllers.sfc import chain_cookie

            cookies = {h.cookie for h in nt.result.hits}
            ns = self.spec.namespace
            for chain in exp.via:
                if not cookies & {chain_cookie(ns, f"{chain}-{nt.node}"), chain_cookie(ns, chain)}:
                    problems.append(f"no flow of chain {chain} was hit")
        if exp.rewrites is not None:
            actual = {_camel(k): str(v[1]).lower() for k, v in nt.result.rewrites.items()}
            wanted = {_camel(_snake(k)): str(v).lower() for k, v in exp.rewrites.items()}
            if actual != wanted:
                problems.append(f"rewrites {actual or 'none'}, expected {wanted or 'none'}")
        return problems

    # --- report --------------------------------------------------------------------------------------
    @staticmethod
    def _signature(nt: Any) -> str:
        outs = sorted(f"{d.pod.split('/')[-1]}:{d.interface}" if d.pod else f"{d.bridge}:{d.port}" for d in nt.deliveries)
        src = nt.source
        start = f"{src.pod.split('/')[-1]}:{src.interface}" if src.pod else f"{src.bridge}:{src.port}"
        return f"{start} -> {', '.join(outs) or 'drop'}"

    def render(self, traced: list[tuple[Any, list[str]]]) -> list[str]:
        """One line per distinct outcome (pod names generalised), then the path through the tables of the
        first node, so a person sees the hops without reading 50 traces."""
        if not traced:
            return []
        p = self.spec.packet
        lines = [f"packet {p.eth_src} -> {p.eth_dst}" + (f" {p.ip_src} -> {p.ip_dst}" if p.ip_src or p.ip_dst else "")
                 + f" at t={self.now:.1f}s on {len(traced)} node(s)"]
        groups: dict[str, list[str]] = {}
        for nt, problems in traced:
            generic = sorted(f"pod interface {d.interface}" if d.pod else f"{d.bridge}:{d.port}" for d in nt.deliveries)
            key = ("FAIL " if problems else "ok   ") + (", ".join(generic) or "dropped")
            groups.setdefault(key, []).append(nt.node)
        for key, nodes in groups.items():
            shown = ", ".join(nodes[:3]) + (f" (+{len(nodes) - 3})" if len(nodes) > 3 else "")
            lines.append(f"{key}  [{len(nodes)} node(s): {shown}]")
        nt = next((t for t, problems in traced if problems), traced[0][0])
        lines.append(f"path on {nt.node}, entering at {nt.source.describe()}:")
        owners = self._cookie_owners(nt)
        for h in nt.result.hits:
            actions = re.sub(r"learn\([^()]*\)", "learn(...)", h.actions)
            owner = f" ({owners[h.cookie]})" if h.cookie in owners else ""
            lines.append(f"  {h.bridge} table {h.table} priority {h.priority} cookie {h.cookie:#x}{owner}: "
                         f"{h.match or '*'} -> {actions}")
        for d in nt.deliveries:
            lines.append(f"  out: {d.describe()}")
        if not nt.deliveries:
            lines.append(f"  dropped: {nt.result.drop_reason}")
        if nt.result.learned:
            lines.append(f"  learned {len(nt.result.learned)} flow(s)")
        if nt.result.rewrites:
            lines.append("  rewrites: " + ", ".join(f"{_camel(k)} {a} -> {b}" for k, (a, b) in nt.result.rewrites.items()))
        return lines


    def _cookie_owners(self, nt: Any) -> dict[int, str]:
        """Cookie -> the ServiceChain it is the FNV-1a-64 of (or the HBN pairing stand-in), for the path lines."""
        from dpf_core.api.svc import ServiceChain
        from dpf_core.controllers.sfc import chain_cookie

        from .cni import HBN_PAIR_COOKIE

        owners = {HBN_PAIR_COOKIE: "HBN pairing"}
        for sc in self.world.clusters[nt.cluster].store.list(ServiceChain):
            if sc.spec.node == nt.node:
                owners[chain_cookie(sc.namespace, sc.name)] = f"ServiceChain {sc.name}"
        return owners


def _show_endpoint(want: Any) -> str:
    if want.port is not None:
        return f"{want.bridge + ':' if want.bridge else ''}{want.port}"
    return f"pod {want.pod} {want.interface or ''}".rstrip()


def make_trace(spec: TraceSpec) -> TraceCheck:
    return TraceCheck(spec)


class OvsCleanParams(_Params):
    store: str | None = None  # a DPU cluster "<namespace>/<name>"; default every one
    chains: list[str] = Field(default_factory=list)  # DPUServiceChains whose ServiceChains must be gone
    interfaces: list[str] = Field(default_factory=list)  # DPUServiceInterfaces whose ServiceInterfaces must be gone
    period: float = Field(default=5.0, gt=0)


class OvsClean(Check):
    """After a step, within a deadline: the named (and the step's deleted) DPUServiceChains and
    DPUServiceInterfaces have no ServiceChain/ServiceInterface left in the DPU clusters, and no DPU node has
    a br-sfc flow whose cookie is no ServiceChain of that node or a port nothing accounts for (what the
    SFC agent's stale sweep removes). OVS changes raise no store event, so it looks every `period`."""

    blocking = True
    kinds: tuple[type[KubeObject], ...] | None = ()
    store = None

    def __init__(self, spec: InvariantSpec) -> None:
        super().__init__(spec.name, spec.after, spec.within)
        self.params = OvsCleanParams.model_validate(spec.params)
        self.chains = set(self.params.chains)
        self.interfaces = set(self.params.interfaces)
        self.started = 0.0
        self.world: Any = None

    def bind(self, twin: Twin) -> None:
        super().bind(twin)
        self.world = _servicechain(twin, f"invariant {self.name}")

    def activate(self, deleted: list[tuple[str, KubeObject]]) -> None:
        super().activate(deleted)
        assert self.twin is not None
        self.started = self.now
        for _, obj in deleted:
            if obj.kind == "DPUServiceChain":
                self.chains.add(obj.name)
            elif obj.kind == "DPUServiceInterface":
                self.interfaces.add(obj.name)
        self.twin.env.process(self._poll())

    def _poll(self) -> Any:
        assert self.twin is not None
        while self.passed is None:
            if not self.leftovers():
                self.succeed(f"clean at t={self.now:.1f}s ({self.now - self.started:.1f}s after the step)")
                return
            yield self.twin.env.timeout(self.params.period)

    def leftovers(self) -> list[str]:
        from dpf_core.api.svc import (
            LABEL_SERVICE_CHAIN_SET_NAME,
            LABEL_SERVICE_INTERFACE_SET_NAME,
            ServiceChain,
            ServiceInterface,
        )

        out: list[str] = []
        world = self.world
        for cluster in sorted(world.clusters):
            if self.params.store is not None and cluster != self.params.store:
                continue
            store = world.clusters[cluster].store
            for cls, label, names in ((ServiceChain, LABEL_SERVICE_CHAIN_SET_NAME, self.chains),
                                      (ServiceInterface, LABEL_SERVICE_INTERFACE_SET_NAME, self.interfaces)):
                out.extend(f"{cls.KIND.kind} {show_key(obj_key(o))} in {cluster}" for o in store.list(cls)
                           if o.metadata.labels.get(label) in names)
            for node in world.node_names(cluster):
                out.extend(f"{node}: {p}" for p in world.ovs_leftovers(cluster, node))
        return out

    def on_deadline(self) -> None:
        if self.passed is None:
            left = self.leftovers()
            self.fail(f"{len(left)} leftover(s) {self.within:g}s after the step", left, history=True)

    def finish(self) -> None:
        if self.passed is None:
            self.fail(f"not clean when the run ended at t={self.now:.1f}s", self.leftovers())


class IpamParams(_Params):
    pools: list[str] | None = None  # pool names; default every IPPool and CIDRPool


class IpamAllocations(Invariant):
    """NVIPAM's allocations (in every DPU cluster) and the addresses the CNI handed out stay sound:
    per pool no two nodes' blocks overlap, every block lies inside the pool with the configured size and is
    not wholly excluded, CIDRPool gateways are `gatewayIndex` into the node's prefix (none for /31, /32),
    an IPPool's gateway lies in its subnet, a node's block never moves while the node keeps one; a pod's
    address lies in its node's block, is not the gateway (unless the pod asked for it with
    `allocateDefaultGateway`, and then it is exactly the gateway), not excluded and no other pod's."""

    kinds = (IPPool, CIDRPool, Pod)
    store = None

    def __init__(self, spec: InvariantSpec) -> None:
        super().__init__(spec)
        params = IpamParams.model_validate(spec.params)
        self.only = set(params.pools) if params.pools is not None else None
        self.blocks: dict[tuple[str, str, str, str], str] = {}  # (store, kind, pool, node) -> block
        self.leases: dict[tuple[str, str, str, str], str] = {}  # (store, type, pool, ip) -> pod/interface
        self.pod_leases: dict[tuple[str, str], list[tuple[str, str, str, str]]] = {}
        self.world: Any = None
        self.checked_pods = 0

    def bind(self, twin: Twin) -> None:
        super().bind(twin)
        self.world = getattr(twin, "servicechain", None)

    def activate(self, deleted: list[tuple[str, KubeObject]]) -> None:
        super().activate(deleted)
        assert self.twin is not None
        for name, st in self.twin.stores().items():
            for cls in (IPPool, CIDRPool, Pod):
                for obj in st.list(cls):
                    self.on_event(name, WatchEvent("ADDED", obj))

    def on_event(self, store: str, ev: WatchEvent) -> None:
        self.events += 1
        obj = ev.object
        if isinstance(obj, Pod):
            self._pod(store, obj, ev.type == "DELETED")
        elif isinstance(obj, IPPool | CIDRPool):
            if self.only is not None and obj.name not in self.only:
                return
            if ev.type == "DELETED":
                for key in [k for k in self.blocks if k[:3] == (store, obj.kind, obj.name)]:
                    del self.blocks[key]
                return
            problems = self._pool(store, obj)
            if problems:
                self.violate(f"{obj.kind} {show_key(obj_key(obj))} in {store}", problems)

    def _pool(self, store: str, pool: IPPool | CIDRPool) -> list[str]:
        import ipaddress

        from dpf_core.controllers.nvipam import Block, _excluded, _ranges

        problems: list[str] = []
        spans: list[tuple[Block, str]] = []
        seen_nodes: set[str] = set()
        exclusions = _ranges(pool.spec.exclusions)
        if isinstance(pool, IPPool):
            net = ipaddress.ip_network(pool.spec.subnet, strict=False)
            gw = pool.spec.gateway
            if gw and ipaddress.ip_address(gw) not in net:
                problems.append(f"gateway {gw} outside {net}")
            for a in pool.status.allocations:
                first, last = int(ipaddress.ip_address(a.start_ip)), int(ipaddress.ip_address(a.end_ip))
                block = Block(first, last)
                text = f"{a.start_ip}-{a.end_ip}"
                if not (int(net.network_address) <= first and last <= int(net.broadcast_address)):
                    problems.append(f"{a.node_name}: {text} outside {net}")
                if last - first + 1 != pool.spec.per_node_block_size:
                    problems.append(f"{a.node_name}: {text} is not {pool.spec.per_node_block_size} addresses")
                spans.append((block, a.node_name))
                seen_nodes.add(a.node_name)
                problems.extend(self._moved(store, pool, a.node_name, text))
        else:
            net = ipaddress.ip_network(pool.spec.cidr, strict=False)
            statics = {s.node_name for s in pool.spec.static_allocations if s.node_name}
            for c in pool.status.allocations:
                prefix = ipaddress.ip_network(c.prefix, strict=False)
                block = Block(int(prefix.network_address), int(prefix.broadcast_address))
                if not prefix.subnet_of(net) or prefix.prefixlen != pool.spec.per_node_network_prefix:  # type: ignore[arg-type]
                    problems.append(f"{c.node_name}: {prefix} is not a /{pool.spec.per_node_network_prefix} of {net}")
                index = pool.spec.gateway_index
                want = (None if index is None or prefix.prefixlen >= prefix.max_prefixlen - 1
                        else str(prefix.network_address + index))
                if c.node_name not in statics and c.gateway != want:
                    problems.append(f"{c.node_name}: gateway {c.gateway} in {prefix}, expected {want}")
                spans.append((block, c.node_name))
                seen_nodes.add(c.node_name)
                problems.extend(self._moved(store, pool, c.node_name, str(prefix)))
        for block, node in spans:
            if _excluded(block, exclusions):
                problems.append(f"{node}: its block lies inside the exclusions")
        spans.sort(key=lambda x: x[0].first)
        for (lo, lo_node), (hi, hi_node) in itertools.pairwise(spans):
            if lo.overlaps(hi):
                problems.append(f"{lo_node} and {hi_node} overlap")
        for key in [k for k in self.blocks if k[:3] == (store, pool.kind, pool.name) and k[3] not in seen_nodes]:
            del self.blocks[key]  # the node lost its block (gone, unselected): it may get another one
        return problems

    def _moved(self, store: str, pool: KubeObject, node: str, text: str) -> list[str]:
        key = (store, pool.kind, pool.name, node)
        before = self.blocks.setdefault(key, text)
        return [] if before == text else [f"{node}: moved from {before} to {text}"]

    def _pod(self, store: str, pod: Pod, gone: bool) -> None:
        import ipaddress

        from .cni import pool_block

        pkey = (store, f"{pod.namespace}/{pod.name}")
        for lease in self.pod_leases.pop(pkey, []):
            self.leases.pop(lease, None)
        if gone or self.world is None or store not in self.world.clusters:
            return
        state = self.world.clusters[store].cni.pods.get(pkey[1])
        if state is None or state.uid != pod.metadata.uid:
            return
        problems: list[str] = []
        mine: list[tuple[str, str, str, str]] = []
        for att, lease, on_gateway in ((a, lease, lease is a.gateway_lease) for a in state.attachments
                                       for lease in (a.lease, a.gateway_lease) if lease is not None):
            ip = lease.address.split("/")[0]
            key = (store, lease.pool_type, lease.pool, ip)
            holder = self.leases.get(key)
            owner = f"{pkey[1]}/{att.interface}"
            if holder is not None and holder != owner:
                problems.append(f"{att.interface}: {ip} also leased to {holder}")
            self.leases[key] = owner
            mine.append(key)
            pool = self.world.clusters[store].cni._pool(lease.pool_type, lease.pool)
            block = pool_block(pool, state.node) if pool is not None else None
            if block is None:
                continue  # the pool changed under the pod; NVIPAM's side is checked on the pool
            first, last, gateway, _ = block
            value = int(ipaddress.ip_address(ip))
            if not int(ipaddress.ip_address(first)) <= value <= int(ipaddress.ip_address(last)):
                problems.append(f"{att.interface}: {ip} outside {state.node}'s block {first}-{last}")
            if on_gateway and ip != gateway:
                problems.append(f"{att.interface}: asked for the gateway, got {ip} (the gateway is {gateway})")
            elif not on_gateway and ip == gateway:
                problems.append(f"{att.interface}: {ip} is the gateway")
            if lease.gateway != gateway:
                problems.append(f"{att.interface}: gateway {lease.gateway}, the pool says {gateway}")
            for r in (pool.spec.exclusions if pool is not None else []):
                if int(ipaddress.ip_address(r.start_ip)) <= value <= int(ipaddress.ip_address(r.end_ip)):
                    problems.append(f"{att.interface}: {ip} is excluded")
        self.pod_leases[pkey] = mine
        self.checked_pods += 1
        if problems:
            self.violate(f"pod {pkey[1]} in {store}", problems)

    def finish(self) -> None:
        if self.passed is None:
            self.succeed(f"held over {self.events} event(s): {len(self.blocks)} block(s), {len(self.leases)} pod address(es)")


class PoolsAllocatedParams(_Params):
    pools: list[str]
    nodes: int | None = None  # default: every Node of the DPU cluster
    store: str | None = None


class PoolsAllocated(Check):
    """Every listed pool (IPPool or CIDRPool, in every DPU cluster) holds a block for `nodes` nodes (default
    all of that cluster's Nodes) by a deadline."""

    blocking = True
    kinds = (IPPool, CIDRPool, Node)
    store = None

    def __init__(self, spec: InvariantSpec) -> None:
        super().__init__(spec.name, spec.after, spec.within)
        self.params = PoolsAllocatedParams.model_validate(spec.params)
        self.started = 0.0

    def activate(self, deleted: list[tuple[str, KubeObject]]) -> None:
        super().activate(deleted)
        self.started = self.now
        self._evaluate()

    def on_event(self, store: str, ev: WatchEvent) -> None:
        self._evaluate()

    def shortfall(self) -> list[str]:
        assert self.twin is not None
        out: list[str] = []
        clusters = {k: v for k, v in self.twin.dpu_clusters.items() if self.params.store in (None, k)}
        if not clusters:
            return ["no DPU cluster yet"]
        for name, st in sorted(clusters.items()):
            want = self.params.nodes if self.params.nodes is not None else len(st.list(Node))
            for pool in self.params.pools:
                sizes = [len(p.status.allocations) for p in st.list(IPPool) if p.name == pool]
                sizes += [len(p.status.allocations) for p in st.list(CIDRPool) if p.name == pool]
                found = bool(sizes)
                have = max(sizes, default=0)
                if have < want or not found:
                    out.append(f"{pool} in {name}: {have} of {want} node(s) allocated" + ("" if found else " (no pool)"))
        return out

    def _evaluate(self) -> None:
        if self.passed is None and not self.shortfall():
            self.succeed(f"{len(self.params.pools)} pool(s) cover their nodes at t={self.now:.1f}s "
                         f"({self.now - self.started:.1f}s after start)")

    def on_deadline(self) -> None:
        if self.passed is None:
            self.fail(f"not allocated within {self.within:g}s", self.shortfall())

    def finish(self) -> None:
        if self.passed is None:
            self.fail(f"not allocated when the run ended at t={self.now:.1f}s", self.shortfall())


# --- registry -------------------------------------------------------------------------------------------------

InvariantFactory = Callable[[InvariantSpec], Check]

_INVARIANTS: dict[str, InvariantFactory] = {
    "maxUnavailable": MaxUnavailable,
    "singleFlash": SingleFlash,
    "noLeftovers": NoLeftovers,
    "ovsClean": OvsClean,
    "ipamAllocations": IpamAllocations,
    "poolsAllocated": PoolsAllocated,
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
    if spec.type in ("noLeftovers", "ovsClean") and spec.after is None:
        out.append((("after",), f"{spec.type} needs the step it checks after"))
    if spec.type in ("noLeftovers", "ovsClean", "poolsAllocated") and spec.within is None:
        out.append((("within",), f"{spec.type} needs a deadline"))
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
