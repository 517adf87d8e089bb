"""Compacting committed snapshots: parts that every snapshot repeats are stored once.

A stored snapshot is read-only (protocol.py), so what is equal across snapshots can be one shared object.
The biggest such part is pydantic's per-instance `__pydantic_fields_set__`: a set of >= 5 names is ~728 bytes,
and a DPU holds 16 of them (~40% of a stored object's memory at 1k DPUs). Sets with the same names become
one `SharedFieldsSet`.

Sharing must never leak a change from one holder to another. Every pydantic path that derives a new
instance from a shared one copies the set first (`__copy__`, `__deepcopy__`, `model_copy` with or without
`update`, `copy()`, `|`, pickling), and those copies are plain sets; only an in-place edit of a stored
snapshot itself (the contract violation the mutation detector reports) reaches the shared set, and the
shared set ignores it rather than change for every other holder.

Then nested models equal to one already stored (a DaemonSet's containers and tolerations on every pod, the
same condition on thousands of DPUs) are replaced by that one: equal means same type, values of the same
Python types, same fields set and extra fields, so no reader (`==`, dumps with any options) can tell. An
object's own sections (metadata, spec, status) are never replaced: writers and admission compare them by
identity with the previous snapshot.
"""

from __future__ import annotations

import types
import typing
import weakref
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from typing import Any

from mypy_extensions import mypyc_attr
from pydantic import BaseModel

from dpf_core.api.meta import EMPTY_DICT, EMPTY_LIST, ReadOnlyEmptyDict, ReadOnlyEmptyList

__all__ = ["SharedFieldsSet", "compact"]


@mypyc_attr(native_class=False)  # compiled (dpf_core.compiled), a set subclass stays a Python class
class SharedFieldsSet(set[str]):
    """One interned `__pydantic_fields_set__`, held by every stored instance with these field names.

    Copies are plain, private sets (CPython's set operators and `set.copy()` already return a plain `set`
    for a subclass; `copy.copy`, `copy.deepcopy` and pickle would rebuild the subclass without these).
    In-place edits are dropped: they can only come from an edit of a read-only snapshot."""

    __slots__ = ()

    def __copy__(self) -> set[str]:
        return set(self)

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> set[str]:
        return set(self)

    def __reduce__(self) -> tuple[type[set[str]], tuple[list[str]]]:
        return (set, (list(self),))

    def add(self, element: str) -> None:
        pass

    def update(self, *others: Iterable[str]) -> None:
        pass

    def discard(self, element: object) -> None:
        pass

    def remove(self, element: str) -> None:
        if element not in self:
            raise KeyError(element)

    def pop(self) -> str:
        raise KeyError("pop from a shared fields set")

    def clear(self) -> None:
        pass

    def difference_update(self, *others: Iterable[Any]) -> None:
        pass

    def intersection_update(self, *others: Iterable[Any]) -> None:
        pass

    def symmetric_difference_update(self, other: Iterable[str]) -> None:
        pass

    def __ior__(self, value: AbstractSet[str]) -> typing.Self:  # type: ignore[override,misc]
        return self

    def __iand__(self, value: AbstractSet[object]) -> typing.Self:
        return self

    def __isub__(self, value: AbstractSet[object]) -> typing.Self:
        return self

    def __ixor__(self, value: AbstractSet[str]) -> typing.Self:  # type: ignore[override,misc]
        return self


_SETS: dict[frozenset[str], SharedFieldsSet] = {}

# Per type met in a walk: for a model class, the fields whose values can hold models (the only ones the walk
# enters); None for anything else. Looked up by exact type: isinstance against pydantic's ABC metaclass costs
# several times a dict lookup, and a commit walks every new instance.
_PLANS: dict[type, tuple[str, ...] | None] = {}

_LAST: dict[type, SharedFieldsSet] = {}

# The slot itself: object.__setattr__ would look the descriptor up on every call.
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__


def _may_hold_model(tp: Any) -> bool:
    if tp is Any or tp is object:
        return True
    if isinstance(tp, type):
        return issubclass(tp, BaseModel)
    if typing.get_origin(tp) is typing.Literal:
        return False
    if isinstance(tp, typing.TypeVar | typing.ForwardRef | str):
        return True  # unresolved: be safe
    return any(_may_hold_model(a) for a in typing.get_args(tp) if a is not Ellipsis and a is not types.NoneType)


def _plan(tp: type) -> tuple[str, ...] | None:
    plan = None
    if issubclass(tp, BaseModel):
        plan = tuple(n for n, f in tp.model_fields.items() if _may_hold_model(f.annotation))
    _PLANS[tp] = plan
    return plan


def _shared(fields_set: set[str]) -> SharedFieldsSet:
    key = frozenset(fields_set)
    s = _SETS.get(key)
    if s is None:
        s = _SETS[key] = SharedFieldsSet(key)
    return s


def compact(model: BaseModel) -> None:
    """Compact `model`, a snapshot about to be committed (read-only from then on): share the fields sets of
    every model in it and replace each nested model equal to one already stored by that one. An instance
    whose set is already shared was compacted with an earlier snapshot (and its whole subtree with it), so
    only what is new in this snapshot is walked. `model` itself is never replaced: callers hold it."""
    tp = type(model)
    plan = _PLANS.get(tp, _UNPLANNED)
    if plan is _UNPLANNED:
        plan = _plan(tp)
    if plan is not None:
        _compact(model, plan)


_UNPLANNED: Any = object()


def _compact(model: BaseModel, plan: tuple[str, ...], depth: int = 0) -> BaseModel:
    """`model` compacted in place, or the stored model equal to it. `depth` 0 is the object itself (never
    replaced: callers hold it), 1 its sections (metadata, spec, status: nearly always unique to the object,
    and the costliest keys, so they are not looked up)."""
    fs = model.__pydantic_fields_set__
    if type(fs) is SharedFieldsSet:
        return model
    tp = type(model)
    # Instances of one class mostly carry the same names: comparing with the class's last shared set is
    # cheaper than hashing a frozenset of them.
    shared = _LAST.get(tp)
    if shared is None or shared != fs:
        shared = _LAST[tp] = _shared(fs)
    _set_fields_set(model, shared)
    extra = model.__pydantic_extra__
    if extra is not None and not extra and type(extra) is dict:
        _set_extra(model, EMPTY_DICT)
    d = model.__dict__
    plans = _PLANS
    sections = depth + 1
    for name in plan:
        v: Any = d.get(name)
        if v is None:
            continue
        tv = type(v)
        if tv is list or tv is tuple:
            out: list[Any] | None = None
            for i, x in enumerate(v):
                p = plans.get(type(x), _UNPLANNED)
                if p is _UNPLANNED:
                    p = _plan(type(x))
                if p is None or type(x.__pydantic_fields_set__) is SharedFieldsSet:
                    continue  # not a model, or one shared with an older snapshot (most of a list)
                c = _compact(x, p, sections)
                if c is not x:
                    if out is None:
                        out = list(v)  # the list may be shared with an older snapshot: never edit it
                    out[i] = c
            if out is not None:
                d[name] = out if tv is list else tuple(out)
        elif tv is dict:
            changed: dict[Any, Any] | None = None
            for k, x in v.items():
                p = plans.get(type(x), _UNPLANNED)
                if p is _UNPLANNED:
                    p = _plan(type(x))
                if p is None or type(x.__pydantic_fields_set__) is SharedFieldsSet:
                    continue
                c = _compact(x, p, sections)
                if c is not x:
                    if changed is None:
                        changed = dict(v)
                    changed[k] = c
            if changed is not None:
                d[name] = changed
        else:
            p = plans.get(tv, _UNPLANNED)
            if p is _UNPLANNED:
                p = _plan(tv)
            if p is not None and type(v.__pydantic_fields_set__) is not SharedFieldsSet:
                c = _compact(v, p, sections)
                if c is not v:
                    d[name] = c
    if depth >= 2:
        found = _canonical(model, tp, shared, d)
        if found is not model:
            return found  # an equal one is stored already: this one is dropped, no dict to rebuild
    _split_dict(model, tp)
    return model


# A pydantic model keeps its fields in a `__dict__` that pydantic-core builds itself: a combined dict with its
# own key table. An instance whose attributes are set one by one gets CPython's key-sharing dict instead: the
# class holds the keys once and each dict only its values (measured with tracemalloc: ObjectMeta's 15 fields
# ~464 -> ~290 bytes, a 5-field Node ~190 -> ~125). Stored models get such a dict at commit: same keys, order
# and values, so readers, dumps, `==` and copies cannot tell. sys.getsizeof misreports these (it counts the
# class's whole key capacity per dict); RSS is the measure (docs/performance.md, session 6). Empty dicts and
# lists become the shared read-only `EMPTY_DICT`/`EMPTY_LIST` on the way (~25 per DPU's stored objects).
_new_instance = object.__new__
_set_attr = object.__setattr__


def _split_dict(model: BaseModel, tp: type) -> None:
    twin: Any = _new_instance(tp)
    for k, v in model.__dict__.items():
        if not v:
            tv = type(v)
            if tv is dict:
                v = EMPTY_DICT
            elif tv is list:
                v = EMPTY_LIST
        _set_attr(twin, k, v)
    _set_attr(model, "__dict__", twin.__dict__)


# Equal nested models (a DaemonSet's containers and tolerations on every pod, identical conditions on
# thousands of DPUs) are stored once. The key is built bottom-up: a nested model appears in its parent's key
# by identity, which is sound because the canonical parent keeps that child alive for as long as its entry
# exists (weak values: an entry goes when no snapshot holds its model any more).
_CANON: weakref.WeakValueDictionary[tuple[Any, ...], BaseModel] = weakref.WeakValueDictionary()
_CANON_REFS: dict[tuple[Any, ...], weakref.ref[BaseModel]] = vars(_CANON)["data"]

# Classes whose instances rarely repeat (ObjectMeta: name, uid, resourceVersion) are not worth a key: after
# _TRIAL attempts a class with fewer than one hit in four stops being tried.
_TRIAL = 512
_ATOMS = frozenset({str, int, float, bool, type(None)})
_TRIED: dict[type, int] = {}
_PARTS: dict[tuple[Any, ...], tuple[Any, ...]] = {}
_NO_EXTRA = (None, (dict,))
_HITS: dict[type, int] = {}


def _canonical(model: BaseModel, tp: type, fields_set: SharedFieldsSet, d: dict[str, Any]) -> BaseModel:
    tried = _TRIED.get(tp, 0)
    hits = _HITS.get(tp, 0)
    if tried >= _TRIAL and hits * 4 < tried:
        return model
    _TRIED[tp] = tried + 1
    extra = model.__pydantic_extra__
    private = model.__pydantic_private__
    try:
        fixed = (tp, id(fields_set), None if extra is None else _freeze(extra), None if private is None else _freeze(private))
        # Every entry keeps its key: the parts most keys repeat are one tuple each (~170 bytes an entry).
        if fixed[2] in _NO_EXTRA and fixed[3] is None:  # (extras that hold values would grow the table)
            fixed = _PARTS.setdefault(fixed, fixed)
        values = tuple(d.values())
        types_ = tuple(map(type, values))
        types_ = _PARTS.setdefault(types_, types_)
        if _ATOMS.issuperset(types_):
            # Leaves (conditions, tolerations, references) hold only atoms: their values and the values'
            # types (1, 1.0 and True are equal keys otherwise) are the key as they are.
            key: tuple[Any, ...] = (fixed, values, types_)
        else:
            key = (fixed, tuple(map(_freeze, values)))
        # The table's own dict, not WeakValueDictionary.get (a Python-level call per lookup): the table is
        # never iterated, so it has no removals pending that get() would have to commit first.
        ref = _CANON_REFS.get(key)
        found = ref() if ref is not None else None
        if found is None:
            _CANON[key] = model
            return model
    except TypeError:  # something unhashable in an extra field: keep the instance
        return model
    _HITS[tp] = hits + 1
    return found


def _freeze(v: Any) -> Any:
    """A hashable value equal for equal data of the same Python types (1, 1.0 and True stay apart)."""
    t = type(v)
    if t is str or v is None:
        return v
    if t is ReadOnlyEmptyDict:
        return (dict,)
    if t is ReadOnlyEmptyList:
        return (list,)
    if t is dict:
        return (dict, *[(k if type(k) is str else _freeze(k), _freeze(x)) for k, x in v.items()])
    if t is list or t is tuple:
        return (t, *map(_freeze, v))
    if t in _PLANS and _PLANS[t] is not None:
        return (t, id(v))  # a compacted model: equal ones are the same object by now
    return (t, v)
