"""A merge patch applied section by section (MemoryStore._merge_by_section) gives what the whole-document
path gives: the same object, the same errors, and it leaves the previous snapshot untouched."""

from __future__ import annotations

from typing import Any

import pytest

from dpf_core.api.external import Node, Pod
from dpf_core.api.provisioning import DPU, DPUSet
from dpf_core.errors import ApiError
from dpf_core.store.memory import MemoryStore

DPU_DOC = {"apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "DPU",
           "metadata": {"name": "dpu-a", "namespace": "dpf", "labels": {"a": "1"}},
           "spec": {"nodeName": "n1", "bfb": "bf", "cluster": {"name": "c", "namespace": "c", "nodeLabels": {"x": "y"}}}}
POD_DOC = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "dpf"},
           "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i", "env": [{"name": "A", "value": "1"}]}]}}
NODE_DOC = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}, "spec": {"taints": []}}
SET_DOC = {"apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "DPUSet",
           "metadata": {"name": "s", "namespace": "dpf"},
           "spec": {"dpuTemplate": {"spec": {"bfb": {"name": "bf"}}}}}

CASES: list[tuple[dict[str, Any], dict[str, Any], str | None]] = [
    (DPU_DOC, {"metadata": {"annotations": {"k": "v"}}}, None),
    (DPU_DOC, {"metadata": {"labels": {"a": None, "b": "2"}}}, None),
    (DPU_DOC, {"spec": {"cluster": {"nodeLabels": {"x": None, "z": "w"}}}}, None),
    (DPU_DOC, {"spec": {"cluster": {"name": "other", "namespace": "other"}}}, None),
    (DPU_DOC, {"spec": {"nodeName": "n2"}}, None),  # immutable: Invalid on both paths
    (DPU_DOC, {"spec": {"automaticNodeReboot": "maybe"}}, None),  # schema error
    (DPU_DOC, {"metadata": {"name": "renamed"}}, None),
    (DPU_DOC, {"status": {"phase": "Pending"}}, "status"),
    (DPU_DOC, {"status": {"phase": "NoSuchPhase"}}, "status"),
    (DPU_DOC, {"spec": {"bfb": "other"}, "status": {"phase": "Ready"}}, "status"),  # status endpoint ignores spec
    (DPU_DOC, {"metadata": {"resourceVersion": "1"}, "spec": {"bfb": "x"}}, None),  # stale precondition
    (POD_DOC, {"status": {"phase": "Running", "podIP": "10.0.0.1"}}, "status"),
    (POD_DOC, {"spec": {"containers": [{"name": "c", "image": "j"}]}}, None),
    (NODE_DOC, {"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}, None),
    (NODE_DOC, {"metadata": {"labels": {"l": "v"}}, "spec": {"unschedulable": True}}, None),
    (SET_DOC, {"spec": {"nodeSelector": {"matchLabels": {"a": "b"}}}}, None),  # a kind with defaulters
]
KINDS = {"DPU": DPU, "Pod": Pod, "Node": Node, "DPUSet": DPUSet}


class WholeDocumentStore(MemoryStore):
    """Never patches by section: every merge patch takes the whole-document path."""

    def _merge_by_section(self, old: Any, patch: Any) -> None:
        return None


def _run(doc: dict[str, Any], patch: dict[str, Any], sub: str | None, by_section: bool) -> tuple[Any, ...]:
    store = MemoryStore(lambda: 0.0, seed=7) if by_section else WholeDocumentStore(lambda: 0.0, seed=7)
    cls = KINDS[doc["kind"]]
    created = store.create(cls.model_validate(doc))
    edited = created.deepcopy()
    edited.metadata.labels["version"] = "2"
    store.update(edited)  # a second version, so resourceVersion "1" is stale
    before = store.get(cls, created.name, created.namespace)
    before_wire = before.wire()
    try:
        out = store.patch(cls, created.name, created.namespace, patch, subresource=sub)  # type: ignore[arg-type]
        result: tuple[Any, ...] = ("ok", out.wire())
    except ApiError as e:
        result = ("error", type(e).__name__, str(e))
    assert before.wire() == before_wire  # the previous snapshot is untouched
    return result


@pytest.mark.parametrize(("doc", "patch", "sub"), CASES)
def test_by_section_equals_the_whole_document(doc: dict[str, Any], patch: dict[str, Any], sub: str | None) -> None:
    assert _run(doc, patch, sub, by_section=True) == _run(doc, patch, sub, by_section=False)


def test_the_section_path_is_taken_and_shares_untouched_sections() -> None:
    store = MemoryStore(lambda: 0.0)
    created = store.create(DPU.model_validate(DPU_DOC))
    out = store.patch(DPU, "dpu-a", "dpf", {"metadata": {"annotations": {"k": "v"}}})
    assert out.spec is created.spec and out.metadata.annotations == {"k": "v"}
