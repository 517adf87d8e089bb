"""`dpf validate`: every document of every file through the same admission the stores use."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from dpf_core.api import admission, registry
from dpf_core.api.kubeyaml import KubeYamlLoader, read_text
from dpf_core.api.meta import KubeObject
from dpf_core.errors import ApiError, BadRequest, Invalid

T = TypeVar("T", bound=KubeObject)

DPF_GROUPS = ("provisioning.dpu.nvidia.com", "svc.dpu.nvidia.com", "operator.dpu.nvidia.com")


class _Batch:
    """A Reader over the manifests being validated, so webhooks that look up other objects see the batch."""

    def __init__(self) -> None:
        self.objects: list[KubeObject] = []

    def list(self, cls: type[T], namespace: str | None = None) -> list[T]:
        return [o for o in self.objects if isinstance(o, cls) and (namespace is None or o.namespace == namespace)]


def _duplicates(node: yaml.Node, path: str = "", seen: frozenset[int] = frozenset()) -> Iterator[tuple[str, int]]:
    """(wire path, line) of every mapping key set twice: kubectl's strict field validation refuses them, and
    a YAML loader would silently keep the later value."""
    if id(node) in seen:  # an alias inside its own anchor
        return
    seen = seen | {id(node)}
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else f"<key on line {key_node.start_mark.line + 1}>"
            here = f"{path}.{key}" if path else key
            if key in keys:
                yield here, key_node.start_mark.line + 1
            keys.add(key)
            yield from _duplicates(value_node, here, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicates(item, f"{path}[{i}]", seen)


def _documents(path: Path) -> Iterator[tuple[int, int, Any, list[tuple[str, int]]]]:
    """(document number from 1, first line, content, duplicate keys) for each document; a syntax error propagates."""
    text = read_text(path)
    loader = KubeYamlLoader(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            index += 1
            if node is None:
                continue
            dups = list(_duplicates(node))
            yield index, node.start_mark.line + 1, loader.construct_document(node), dups
    finally:
        loader.dispose()


def _ident(doc: Mapping[str, Any]) -> str:
    md = doc.get("metadata") if isinstance(doc.get("metadata"), Mapping) else {}
    assert isinstance(md, Mapping)
    ns = md.get("namespace")
    name = md.get("name") or md.get("generateName") or "<no name>"
    kind = doc.get("kind") or "<no kind>"
    return f"{kind}/{ns}/{name}" if ns else f"{kind}/{name}"


def _with_namespace(doc: Mapping[str, Any], cls: type[KubeObject], namespace: str) -> Mapping[str, Any]:
    md = doc.get("metadata")
    if not cls.KIND.namespaced or not isinstance(md, Mapping) or md.get("namespace"):
        return doc
    return {**doc, "metadata": {**md, "namespace": namespace}}


def validate_files(files: list[Path], namespace: str = "default") -> tuple[list[str], int, list[str]]:
    registry.load_all()
    problems: list[str] = []
    skipped: list[str] = []
    batch = _Batch()
    pending: list[tuple[str, KubeObject]] = []
    checked = 0
    for path in files:
        try:
            docs = list(_documents(path))
        except OSError as err:
            problems.append(f"{path}: cannot read: {err.strerror or err}")
            continue
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
            problem = getattr(err, "problem", None) or str(err)
            problems.append(f"{where}: YAML syntax error: {problem}")
            continue
        if all(doc is None for _, _, doc, _ in docs):
            problems.append(f"{path}: no objects in the file (kubectl apply refuses it too)")
            continue
        for index, line, doc, dups in docs:
            if doc is None:
                continue
            # The line the document starts on, as `dpf run` names a manifest (an editor can jump to it).
            where = f"{path}:{line}"
            if not isinstance(doc, Mapping):
                problems.append(f"{where}: document {index} is a {type(doc).__name__}, not a Kubernetes object")
                continue
            checked += 1
            problems.extend(f"{where} {_ident(doc)}: {field}: duplicate key on line {at} (the later value would silently win)"
                            for field, at in dups)
            api_version = str(doc.get("apiVersion") or "")
            group = api_version.split("/")[0] if "/" in api_version else ""
            try:
                cls = admission.model_for(doc)
            except Invalid as err:
                problems.extend(f"{where} {_ident(doc)}: {c.field}: {c.message}" for c in err.causes)
                continue
            except BadRequest as err:
                if group in DPF_GROUPS:
                    problems.append(f"{where} {_ident(doc)}: apiVersion/kind: {err.message}")
                else:
                    skipped.append(f"{where} {_ident(doc)}: not a kind dpf knows ({api_version})")
                continue
            doc = _with_namespace(doc, cls, namespace)
            try:
                obj = admission.decode(doc, cls)
            except Invalid as err:
                problems.extend(f"{where} {_ident(doc)}: {c.field}: {c.message}" for c in err.causes)
                continue
            batch.objects.append(obj)
            pending.append((f"{where} {_ident(doc)}", obj))
    # Webhooks run once every object of the batch is known (a DPUSet may name a flavor defined later).
    for label, obj in pending:
        try:
            admission.admit_create(obj, batch)
        except Invalid as err:
            problems.extend(f"{label}: {c.field}: {c.message}" for c in err.causes)
        except ApiError as err:
            problems.append(f"{label}: {err.message}")
    return problems, checked, skipped
