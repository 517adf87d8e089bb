"""Hostile input through admission: arbitrary manifests never raise anything but ApiError subclasses; a bad
object is a Kubernetes Invalid naming every bad field by its wire path, an unknown kind a BadRequest.

`FUZZ_EXAMPLES=N` raises the example count (docs/reliability.md reports a large run); CI keeps it small.
"""

from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dpf_core.api import admission, registry
from dpf_core.errors import ApiError, BadRequest, Invalid
from dpf_core.store.memory import MemoryStore

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROOT = Path(__file__).resolve().parents[2]

registry.load_all()
KINDS = sorted({(c.KIND.group + "/" + c.KIND.version if c.KIND.group else c.KIND.version, c.KIND.kind)
                for c in registry.all_kinds()})
SAMPLES: list[dict[str, Any]] = [
    d for f in sorted((ROOT / "samples").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())
    if isinstance(d, dict)
]
READER = MemoryStore(lambda: 1_700_000_000.0, name="fuzz")
SEEN = {"inputs": 0}

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                           max_leaves=20)
names = st.one_of(st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True), st.text(max_size=70), st.integers(), st.none())


@st.composite
def manifests(draw: st.DrawFn) -> Any:
    """Mostly objects of real kinds with random bodies; some junk kinds and non-objects."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(json_values)
    api_version, kind = draw(st.sampled_from(KINDS)) if choice > 1 else (draw(st.text(max_size=30)), draw(st.text(max_size=15)))
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind}
    obj["metadata"] = draw(st.one_of(
        st.fixed_dictionaries({"name": names}, optional={"namespace": names, "labels": json_values,
                                                         "annotations": json_values, "finalizers": json_values,
                                                         "generateName": names}),
        json_values))
    for key in draw(st.lists(st.sampled_from(["spec", "status", "data", "stringData", "extra"]), max_size=3, unique=True)):
        obj[key] = draw(json_values)
    return obj


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, (*prefix, i)))
    return out


@st.composite
def mutated_samples(draw: st.DrawFn) -> Any:
    """A real DPF manifest with one to three values replaced by arbitrary JSON (or deleted)."""
    doc = copy.deepcopy(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return doc


def check(raw: Any) -> None:
    """Every admission entry point on `raw`: an ApiError subclass or success, nothing else."""
    SEEN["inputs"] += 1
    try:
        obj = admission.decode(raw)
    except Invalid as e:
        assert e.causes, "an Invalid without causes"
        for c in e.causes:
            assert isinstance(c.field, str) and c.field, f"cause without a field path: {c}"
            assert isinstance(c.message, str) and c.message
        return
    except BadRequest:
        return
    except ApiError as e:  # any other Status error is acceptable, but say what it was if it is not
        assert e.code >= 400
        return
    for entry in (lambda: admission.admit_create(obj, READER), lambda: admission.admit_update(obj, obj, READER),
                  lambda: admission.admit_status_update(obj), lambda: obj.wire()):
        with contextlib.suppress(ApiError):
            entry()


@FUZZ
@given(manifests())
def test_arbitrary_manifests_only_raise_api_errors(raw: Any) -> None:
    check(raw)


@FUZZ
@given(mutated_samples())
@example({"apiVersion": "svc.dpu.nvidia.com/v1alpha1", "kind": "DPUServiceInterface",  # found by this test: TypeError
          "metadata": {"name": "p0", "namespace": "dpf-operator-system"},
          "spec": {"template": {"spec": {"template": {"spec": {"interfaceType": [],
                                                               "physical": {"interfaceName": "p0"}}}}}}})
def test_mutated_real_manifests_only_raise_api_errors(raw: Any) -> None:
    check(raw)


@FUZZ
@given(mutated_samples(), mutated_samples())
def test_updates_between_arbitrary_objects_only_raise_api_errors(new: Any, old: Any) -> None:
    SEEN["inputs"] += 1
    try:
        before = admission.decode(old)
    except ApiError:
        return
    with contextlib.suppress(ApiError):
        admission.admit_update(new, before, READER)


def test_an_invalid_object_names_every_bad_field() -> None:
    doc = copy.deepcopy(next(d for d in SAMPLES if d.get("kind") == "DPUSet"))
    doc["spec"]["strategy"] = {"type": "Sideways", "rollingUpdate": {"maxUnavailable": []}}
    doc["spec"]["dpuTemplate"]["spec"]["automaticNodeReboot"] = "perhaps"
    try:
        admission.decode(doc)
    except Invalid as e:
        fields = {c.field for c in e.causes}
        assert {"spec.strategy.type", "spec.dpuTemplate.spec.automaticNodeReboot"} <= fields, fields
        assert any(f.startswith("spec.strategy.rollingUpdate.maxUnavailable") for f in fields), fields
    else:
        raise AssertionError("a DPUSet with three bad fields was accepted")
