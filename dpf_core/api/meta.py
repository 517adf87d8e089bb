"""Shared building blocks of every kind: the wire model base, ObjectMeta, selectors, conditions.

Python attributes are snake_case; the wire (JSON/YAML) is camelCase through an alias generator, with
explicit aliases where Kubernetes spells an initialism (`serviceID`, `vlanID`, `psID`). Empty collections
are left off the wire, as Go's `omitempty` does, so a dump of a loaded manifest reads like the manifest.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, ClassVar, Literal, Self

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
    )

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict as the API server would store it."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def clone(self) -> Self:
        """A deep copy. Dump + validate runs in pydantic-core and costs a third of `model_copy(deep=True)`
        (copy.deepcopy of pydantic's internals), which matters on the reconcile hot path."""
        return type(self).model_validate(self.model_dump(exclude_none=True))


_ATOMS = (str, int, float, bool, type(None))


def _fresh(v: Any, old: Any) -> bool:
    """Whether `v` holds nothing shared with `old` (then one pydantic-core copy beats walking it)."""
    if isinstance(v, BaseModel) and type(old) is type(v):
        od = old.__dict__
        for k, x in v.__dict__.items():
            if isinstance(x, _ATOMS):
                continue
            o = od.get(k)
            if x is o or (isinstance(x, list) and isinstance(o, list) and not _fresh(x, o)):
                return False
        return True
    if isinstance(v, list) and isinstance(old, list):
        ids = {id(x) for x in old}
        return not any(id(x) in ids for x in v)
    return True


def share_copy(new: Any, old: Any) -> Any:
    """A deep copy of `new` that shares every part identical (`is`) to the matching part of `old`, a store
    snapshot: snapshots are read-only, so what a writer took unchanged from one can stay shared with it (as
    a status write already shares spec). A writer that copied only what it changed pays for only that."""
    if new is old or isinstance(new, _ATOMS):
        return new
    if isinstance(new, BaseModel):
        if _fresh(new, old):
            return new.clone() if isinstance(new, Model) else new.model_copy(deep=True)
        od = old.__dict__
        out = type(new).__new__(type(new))
        object.__setattr__(out, "__dict__", {k: share_copy(x, od.get(k)) for k, x in new.__dict__.items()})
        object.__setattr__(out, "__pydantic_fields_set__", set(new.__pydantic_fields_set__))
        extra = new.__pydantic_extra__
        object.__setattr__(out, "__pydantic_extra__", None if extra is None else copy.deepcopy(extra))
        object.__setattr__(out, "__pydantic_private__", None)
        return out
    if isinstance(new, list):
        shared = {id(x) for x in old} if isinstance(old, list) else set()
        return [x if id(x) in shared else share_copy(x, None) for x in new]
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
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list, exclude_if=_empty)


class LabelSelector(Model):
    """metav1.LabelSelector. An empty selector selects everything; a nil one (None at the use site) depends on the field."""

    match_labels: dict[str, str] = Field(default_factory=dict, exclude_if=_empty)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list, exclude_if=_empty)


class NodeSelectorRequirement(Model):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: list[str] = Field(default_factory=list, exclude_if=_empty)


class NodeSelectorTerm(Model):
    match_expressions: list[NodeSelectorRequirement] = Field(default_factory=list, exclude_if=_empty)
    match_fields: list[NodeSelectorRequirement] = Field(default_factory=list, exclude_if=_empty)


class NodeSelector(Model):
    """corev1.NodeSelector: terms are ORed, expressions inside a term ANDed."""

    node_selector_terms: list[NodeSelectorTerm]


class Taint(Model):
    key: str
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
    time_added: str | None = None


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(Model):
    """metav1.Condition."""

    type: str = Field(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$", max_length=316)
    status: ConditionStatus
    observed_generation: int | None = Field(default=None, ge=0)
    last_transition_time: str
    reason: str = Field(max_length=1024)
    message: str = Field(default="", max_length=32768)


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
        return self.model_copy(update={"status": status})

    @classmethod
    def new(cls, name: str, namespace: str | None = None, **fields: Any) -> Self:
        """Build an object with apiVersion/kind filled in; fields are wire or Python names."""
        info = cls.KIND
        return cls.model_validate(
            {"apiVersion": info.api_version, "kind": info.kind, "metadata": {"name": name, "namespace": namespace}, **fields}
        )
