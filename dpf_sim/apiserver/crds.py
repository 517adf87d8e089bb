"""`kubectl get crds` against the twin: the apiextensions.k8s.io/v1 CustomResourceDefinitions a cluster with
DPF installed holds, rendered from the same models `dpf crds` renders, one per DPF kind.

The kind is registered by `dpf serve` only (not at import), so the core's registry, and every process that
never serves an API, keeps exactly the kinds DPF's controllers know.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from dpf_core.api import registry
from dpf_core.api.crd import render_all
from dpf_core.api.meta import KindInfo, KubeObject, PrinterColumn
from dpf_core.errors import AlreadyExists
from dpf_core.store.memory import MemoryStore


class CustomResourceDefinition(KubeObject):
    """A CRD as served: its spec and status are kept as written, nothing in the twin acts on them."""

    model_config = ConfigDict(extra="allow")

    KIND: ClassVar[KindInfo] = KindInfo(
        group="apiextensions.k8s.io",
        version="v1",
        kind="CustomResourceDefinition",
        plural="customresourcedefinitions",
        singular="customresourcedefinition",
        short_names=("crd", "crds"),
        namespaced=False,
        status_subresource=True,
        # The API server's own table for CRDs: a creation time, not an age.
        printer_columns=(PrinterColumn(name="Created At", type="string", json_path=".metadata.creationTimestamp",
                                       format="date-time"),),
        dpf=False,
    )
    api_version: Literal["apiextensions.k8s.io/v1"] = "apiextensions.k8s.io/v1"
    kind: Literal["CustomResourceDefinition"] = "CustomResourceDefinition"
    spec: dict[str, Any] = Field(default_factory=dict)
    status: dict[str, Any] = Field(default_factory=dict)


def register() -> None:
    """Serve CRDs from now on (idempotent)."""
    if registry.lookup("apiextensions.k8s.io/v1", "CustomResourceDefinition") is None:
        registry.register(CustomResourceDefinition)


def install(store: MemoryStore) -> None:
    """Store DPF's CRDs as established, as after `helm install` of the DPF chart."""
    register()
    for doc in render_all():
        names = doc["spec"]["names"]
        obj = CustomResourceDefinition.model_validate(doc)
        try:
            created = store.create(obj)
        except AlreadyExists:
            continue
        status = {
            "acceptedNames": {k: v for k, v in names.items() if k in ("kind", "listKind", "plural", "singular", "shortNames",
                                                                        "categories")},
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found",
                 "lastTransitionTime": created.metadata.creation_timestamp},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": created.metadata.creation_timestamp},
            ],
            "storedVersions": [v["name"] for v in doc["spec"]["versions"]],
        }
        store.patch(CustomResourceDefinition, created.name, None, {"status": status}, subresource="status")
