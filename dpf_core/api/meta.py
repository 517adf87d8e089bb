"""Shared building blocks of every kind: the wire model base, ObjectMeta, selectors, conditions.

Python attributes are snake_case; the wire (JSON/YAML) is camelCase through an alias generator, with
explicit aliases where Kubernetes spells an initialism (`serviceID`, `vlanID`, `psID`). Empty collections
are left off the wire, as Go's `omitempty` does, so a dump of a loaded manifest reads like the manifest.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


def _empty(v: object) -> bool:
    return v is None or v == {} or v == []


class Model(BaseModel):
    """Base of every wire struct: camelCase aliases, unknown fields rejected (strict field validation)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        serialize_by_alias=True,
        validate_by_alias=True,
        validate_by_name=True,
        # A field's docstring is its description in the CRD (what `kubectl explain` shows).
        use_attribute_docstrings=True,
    )

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict as the API server would store it."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def clone(self) -> Self:
        """A deep copy. Dump + validate runs in pydantic-core and costs a third of `model_copy(deep=True)`
        (copy.deepcopy of pydantic's internals), which matters on the reconcile hot path."""
        return type(self).model_validate(self.model_dump(exclude_none=True))


_M = TypeVar("_M", bound=BaseModel)

_new_object = object.__new__
_set_slot = object.__setattr__


def shallow_copy(model: _M, update: Mapping[str, Any] | None = None) -> _M:
    """`model.model_copy(update=update)` for `update` keys that are fields of the model: the same new
    instance (its own `__dict__`, fields set, extra and private dicts; values shared; updated names count
    as set), without pydantic's generic copy machinery (`copy.copy` dispatch three times, a config lookup),
    which cost more than the rest of a status write's bookkeeping. Anything else takes `model_copy`."""
    private = model.__pydantic_private__
    if private is not None or (update and not update.keys() <= type(model).__pydantic_fields__.keys()):
        return model.model_copy(update=update)
    out = _new_object(type(model))
    values = model.__dict__.copy()
    fields_set = set(model.__pydantic_fields_set__)
    if update:
        values.update(update)
        fields_set.update(update)
    _set_slot(out, "__dict__", values)
    extra = model.__pydantic_extra__
    _set_slot(out, "__pydantic_extra__", None if extra is None else extra.copy())
    _set_slot(out, "__pydantic_fields_set__", fields_set)
    _set_slot(out, "__pydantic_private__", None)
    return out


_ATOMS = (str, int, float, bool, type(None))


_READ_ONLY = (
    "stored snapshots are shared and read-only: this empty collection is shared by every stored object that "
    "holds one; call .deepcopy() on the object and edit the copy"
)


class ReadOnlyEmptyDict(dict[Any, Any]):
    """The one empty dict every stored snapshot's empty labels, annotations and extra fields are (`EMPTY_DICT`).
    A store commit replaces a plain `{}` with it (dpf_core/store/compact.py): ~30 empty dicts per DPU's
    stored objects. Reading, `==`, dumps and copies behave as a plain `{}` (copies are plain dicts); an edit,
    which would reach every holder, raises instead."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(_READ_ONLY)

    __setitem__ = __delitem__ = setdefault = update = pop = popitem = clear = __ior__ = _refuse

    def __copy__(self) -> dict[Any, Any]:
        return {}

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> dict[Any, Any]:
        return {}

    def __reduce__(self) -> tuple[type[dict[Any, Any]], tuple[()]]:
        return (dict, ())

    def __repr__(self) -> str:
        return "{}"


class ReadOnlyEmptyList(list[Any]):
    """`ReadOnlyEmptyDict`'s counterpart for empty lists (finalizers, owner references, taints)."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(_READ_ONLY)

    __setitem__ = __delitem__ = append = extend = insert = remove = pop = clear = sort = reverse = _refuse
    __iadd__ = __imul__ = _refuse

    def __copy__(self) -> list[Any]:
        return []

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> list[Any]:
        return []

    def __reduce__(self) -> tuple[type[list[Any]], tuple[()]]:
        return (list, ())

    def __repr__(self) -> str:
        return "[]"


EMPTY_DICT = ReadOnlyEmptyDict()
EMPTY_LIST = ReadOnlyEmptyList()
_EMPTY_PLAIN: dict[type, type] = {ReadOnlyEmptyDict: dict, ReadOnlyEmptyList: list, dict: dict, list: list}


_ATOM_TYPES = frozenset(_ATOMS)
# Per class met by share_copy: 0 not a model, 1 a pydantic model, 2 one of ours (`Model`, cloned by dump +
# validate). isinstance against pydantic's ABC metaclass costs several times a dict lookup, and a status
# write asks it of every value it walks.
_MODEL_TYPES: dict[type, int] = {}


def _model_kind(tp: type) -> int:
    kind = _MODEL_TYPES.get(tp)
    if kind is None:
        kind = _MODEL_TYPES[tp] = 2 if issubclass(tp, Model) else 1 if issubclass(tp, BaseModel) else 0
    return kind


def _fresh(v: BaseModel, old: Any) -> bool:
    """Whether model `v` holds nothing shared with `old` (then one pydantic-core copy beats walking it): `old`
    is of another type, or none of `v`'s field values is the old one's or a list sharing an element with it."""
    if type(old) is not type(v):
        return True
    od = old.__dict__
    for k, x in v.__dict__.items():
        tx = type(x)
        if tx in _ATOM_TYPES or isinstance(x, _ATOMS):
            continue
        o = od.get(k)
        if x is o:
            return False
        if (tx is list or isinstance(x, list)) and isinstance(o, list):
            ids = {id(y) for y in o}
            if any(id(y) in ids for y in x):
                return False
    return True


def same_data(a: Any, b: Any) -> bool:
    """Whether `a` and `b` hold the same data to the last Python type and key order: the same model class
    with the same field values and extra fields, dicts with the same keys in the same order, lists of the
    same length, atoms of one type that are equal (1, 1.0 and True are three values here, as on the wire).
    Two such values dump to the same dict, so the dump-and-validate copy of one is that of the other: a
    copy may take a stored snapshot's part instead of copying its caller's equal one. The fields-set is not
    data (no reader of a stored object asks for it; it follows from the values in a dump)."""
    if a is b:
        return True
    tp = type(a)
    if tp is not type(b):
        # A stored snapshot's read-only empty is the plain empty container it replaced.
        return tp in _EMPTY_PLAIN and _EMPTY_PLAIN[tp] is _EMPTY_PLAIN.get(type(b)) and not a and not b
    if tp in _ATOM_TYPES:
        return bool(a == b)
    if tp is list or tp is tuple:
        return len(a) == len(b) and all(map(same_data, a, b))
    if tp is dict:
        if len(a) != len(b):
            return False
        for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True):
            if ka != kb or type(ka) is not type(kb) or not same_data(va, vb):
                return False
        return True
    kind = _MODEL_TYPES.get(tp)
    if kind is None:
        kind = _model_kind(tp)
    if kind:
        return (
            same_data(a.__dict__, b.__dict__)
            and same_data(a.__pydantic_extra__, b.__pydantic_extra__)
            and same_data(a.__pydantic_private__, b.__pydantic_private__)
        )
    return bool(a == b)


def share_copy(new: Any, old: Any) -> Any:
    """A deep copy of `new` that shares every part identical (`is`) to the matching part of `old`, a store
    snapshot: snapshots are read-only, so what a writer took unchanged from one can stay shared with it (as
    a status write already shares spec). A writer that copied only what it changed pays for only that."""
    if new is old:
        return new
    tp = type(new)
    if tp in _ATOM_TYPES:
        return new
    kind = _MODEL_TYPES.get(tp)
    if kind is None:
        kind = _model_kind(tp)
    if kind:
        if _fresh(new, old):
            return new.clone() if kind == 2 else new.model_copy(deep=True)
        od = old.__dict__
        values = {}
        for k, x in new.__dict__.items():
            if type(x) in _ATOM_TYPES:
                values[k] = x
            else:
                o = od.get(k)
                values[k] = x if x is o else share_copy(x, o)
        out = _new_object(tp)
        _set_slot(out, "__dict__", values)
        _set_slot(out, "__pydantic_fields_set__", set(new.__pydantic_fields_set__))
        extra = new.__pydantic_extra__
        _set_slot(out, "__pydantic_extra__", None if extra is None else copy.deepcopy(extra))
        _set_slot(out, "__pydantic_private__", None)
        return out
    if isinstance(new, _ATOMS):
        return new
    if isinstance(new, list):
        if isinstance(old, list):
            shared = {id(x) for x in old}
            return [x if id(x) in shared else share_copy(x, None) for x in new]
        return [share_copy(x, None) for x in new]
    if isinstance(new, dict):
        src = old if isinstance(old, dict) else {}
        return {k: share_copy(x, src.get(k)) for k, x in new.items()}
    return copy.deepcopy(new)


class OpenModel(Model):
    """For external kinds we model only partly: fields we do not know are kept, never dropped."""

    model_config = ConfigDict(extra="allow")


# Collections that default to empty and are omitted from the wire when empty.
StrMap = Annotated[dict[str, str], Field(default_factory=dict, exclude_if=_empty)]
StrList = Annotated[list[str], Field(default_factory=list, exclude_if=_empty)]


class OwnerReference(Model):
    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ManagedFieldsEntry(OpenModel):
    manager: str | None = None
    operation: str | None = None
    api_version: str | None = None
    time: str | None = None
    fields_type: str | None = None
    fields_v1: dict[str, Any] | None = Field(default=None, alias="fieldsV1")
    subresource: str | None = None


class ObjectMeta(Model):
    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: int | None = None
    labels: dict[str, str] = Field(default_factory=dict, exclude_if=_empty)
    annotations: dict[str, str] = Field(default_factory=dict, exclude_if=_empty)
    finalizers: list[str] = Field(default_factory=list, exclude_if=_empty)
    owner_references: list[OwnerReference] = Field(default_factory=list, exclude_if=_empty)
    managed_fields: list[ManagedFieldsEntry] | None = None
    self_link: str | None = None


class LabelSelectorRequirement(Model):
    key: str
    """The label key the requirement applies to."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the key relates to the values: In, NotIn, Exists or DoesNotExist."""
    values: list[str] = Field(default_factory=list, exclude_if=_empty)
    """The values for In and NotIn (non-empty); empty for Exists and DoesNotExist."""


class LabelSelector(Model):
    """metav1.LabelSelector. An empty selector selects everything; a nil one (None at the use site) depends on the field."""

    match_labels: dict[str, str] = Field(default_factory=dict, exclude_if=_empty)
    """Labels that must all be present with these values (each an In requirement with one value)."""
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list, exclude_if=_empty)
    """Requirements that must all hold."""


class NodeSelectorRequirement(Model):
    key: str
    """The label key (or, under matchFields, the field name) the requirement applies to."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    """How the key relates to the values: In, NotIn, Exists, DoesNotExist, Gt or Lt."""
    values: list[str] = Field(default_factory=list, exclude_if=_empty)
    """The values: several for In and NotIn, one integer for Gt and Lt, none for Exists and DoesNotExist."""


class NodeSelectorTerm(Model):
    match_expressions: list[NodeSelectorRequirement] = Field(default_factory=list, exclude_if=_empty)
    """Requirements on the Node's labels, all of which must hold."""
    match_fields: list[NodeSelectorRequirement] = Field(default_factory=list, exclude_if=_empty)
    """Requirements on the Node's fields (metadata.name), all of which must hold."""


class NodeSelector(Model):
    """corev1.NodeSelector: terms are ORed, expressions inside a term ANDed."""

    node_selector_terms: list[NodeSelectorTerm]
    """Terms of which at least one must match the Node."""


class Taint(Model):
    key: str
    """The taint key applied to the Node."""
    value: str | None = None
    """The taint value for the key."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
    """What the taint does to Pods that do not tolerate it: NoSchedule, PreferNoSchedule or NoExecute."""
    time_added: str | None = None
    """When the taint was added (NoExecute taints only)."""


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(Model):
    """metav1.Condition."""

    type: str = Field(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$", max_length=316)
    """The condition's type in CamelCase (e.g. Ready)."""
    status: ConditionStatus
    """True, False or Unknown."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The .metadata.generation the condition was set for."""
    last_transition_time: str
    """When the condition last changed from one status to another."""
    reason: str = Field(max_length=1024)
    """A CamelCase identifier of the reason for the last transition."""
    message: str = Field(default="", max_length=32768)
    """A human-readable message about the transition."""


# IntOrString (e.g. maxUnavailable: 1 or "10%").
IntOrString = int | str


class PrinterColumn(Model):
    name: str
    type: str
    json_path: str = Field(alias="jsonPath")
    description: str | None = None
    priority: int | None = None
    format: str | None = None


class KindInfo(Model):
    """What the API server and CRD renderer need to know about a kind beyond its schema."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    namespaced: bool = True
    status_subresource: bool = True
    printer_columns: tuple[PrinterColumn, ...] = ()
    # Ours (a DPF CRD) or an external kind we only model minimally (no CRD rendered by `dpf crds`).
    dpf: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


class KubeObject(Model):
    """Base of every top-level kind. Subclasses set KIND and declare `spec` / `status` as they have them."""

    KIND: ClassVar[KindInfo]

    api_version: str
    kind: str
    metadata: ObjectMeta = Field(default_factory=lambda: ObjectMeta())

    @property
    def name(self) -> str:
        return self.metadata.name or ""

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace

    @property
    def key(self) -> tuple[str | None, str]:
        return (self.metadata.namespace, self.metadata.name or "")

    def controller_ref(self) -> OwnerReference:
        """The ownerReference a dependent gets when this object is its controller (blocks owner deletion)."""
        return OwnerReference(
            api_version=self.KIND.api_version,
            kind=self.KIND.kind,
            name=self.name,
            uid=self.metadata.uid or "",
            controller=True,
            block_owner_deletion=True,
        )

    def deepcopy(self) -> Self:
        """A private, mutable copy. Objects returned by a store are shared snapshots: copy before editing."""
        return self.clone()

    def with_status(self, status: Any) -> Self:
        """This object carrying `status`, for `update_status` only: a shallow copy that shares everything else
        with `self` (a store snapshot, still read-only). A status write takes only `status` from its argument,
        so deep-copying the object for it would be wasted; `status` must be the caller's own copy."""
        return shallow_copy(self, {"status": status})

    @classmethod
    def new(cls, name: str, namespace: str | None = None, **fields: Any) -> Self:
        """Build an object with apiVersion/kind filled in; fields are wire or Python names."""
        info = cls.KIND
        return cls.model_validate(
            {"apiVersion": info.api_version, "kind": info.kind, "metadata": {"name": name, "namespace": namespace}, **fields}
        )
