"""The kind registry: apiVersion+kind -> model and admission hooks.

Every module under dpf_core.api registers its kinds at import; `load_all()` imports them all so the
registry is complete wherever it is used (CLI, store, API server).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from dpf_core.errors import FieldCause

from .meta import KubeObject

T = TypeVar("T", bound=KubeObject)


class Reader(Protocol):
    """The read access a webhook gets (vbfb looks for DPUSets using a BFB, vdpuflavor for users of a flavor)."""

    def list(self, cls: type[T], namespace: str | None = None) -> list[T]: ...


Defaulter = Callable[[KubeObject], None]
CreateValidator = Callable[[KubeObject, Reader], list[FieldCause]]
UpdateValidator = Callable[[KubeObject, KubeObject, Reader], list[FieldCause]]
DeleteValidator = Callable[[KubeObject, Reader], str | None]


@dataclass
class Hooks:
    """The kind's admission: mutating webhook and CRD defaults, then the API server's own validation (CEL
    rules, immutability), then the validating webhook `webhook` (its name, e.g. `vdpuset.kb.io`), whose rules
    are `validate_create`, `validate_update` and `validate_delete`. An empty `webhook` means those rules are
    the API server's built-in validation (Secret), so refusals carry no webhook prefix.

    `immutable` lists wire paths (dotted, from the object root) that may not change once set; "spec" makes
    the whole spec immutable. A path ending in `?` is immutable only once it has a non-empty value.
    `immutable_rules` gives a path (spelled as in `immutable`) the CRD's transition rule and message
    (x-kubernetes-validations): the refusal then reads as the API server's CEL error and the rendered CRD
    carries the rule, so a real API server enforces it too.
    """

    default: list[Defaulter] = field(default_factory=list)
    validate_create: list[CreateValidator] = field(default_factory=list)
    validate_update: list[UpdateValidator] = field(default_factory=list)
    validate_delete: list[DeleteValidator] = field(default_factory=list)
    immutable: list[str] = field(default_factory=list)
    immutable_rules: dict[str, tuple[str, str]] = field(default_factory=dict)
    webhook: str = ""


_BY_API_KIND: dict[tuple[str, str], type[KubeObject]] = {}
_BY_GROUP_KIND: dict[str, type[KubeObject]] = {}
_HOOKS: dict[type[KubeObject], Hooks] = {}


def register(cls: type[T], hooks: Hooks | None = None) -> type[T]:
    info = cls.KIND
    _BY_API_KIND[(info.api_version, info.kind)] = cls
    _BY_GROUP_KIND[info.group_kind] = cls
    _HOOKS[cls] = hooks or Hooks()
    return cls


def hooks_for(cls: type[KubeObject]) -> Hooks:
    hooks = _HOOKS.get(cls)
    if hooks is None:
        hooks = _HOOKS[cls] = Hooks()
    return hooks


def lookup(api_version: str, kind: str) -> type[KubeObject] | None:
    return _BY_API_KIND.get((api_version, kind))


def lookup_group_kind(group_kind: str) -> type[KubeObject] | None:
    return _BY_GROUP_KIND.get(group_kind)


def lookup_plural(group: str, plural: str) -> type[KubeObject] | None:
    for cls in _BY_API_KIND.values():
        if cls.KIND.group == group and cls.KIND.plural == plural:
            return cls
    return None


def all_kinds() -> list[type[KubeObject]]:
    load_all()
    return sorted(_BY_API_KIND.values(), key=lambda c: (c.KIND.group, c.KIND.kind))


def dpf_kinds() -> list[type[KubeObject]]:
    return [c for c in all_kinds() if c.KIND.dpf]


def load_all() -> None:
    """Import every API module (each registers its kinds)."""
    import importlib

    for module in ("external", "operator", "provisioning", "svc"):
        importlib.import_module(f"dpf_core.api.{module}")
