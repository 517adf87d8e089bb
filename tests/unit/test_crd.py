"""CRD rendering: structural schemas, names, printer columns, defaults, and loadable YAML files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import pytest
import yaml
from pydantic import Field

from dpf_core.api import operator as o
from dpf_core.api import provisioning as p
from dpf_core.api import svc
from dpf_core.api.crd import openapi_schema, render_all, render_crd, to_yaml
from dpf_core.api.meta import IntOrString, KindInfo, KubeObject, Model, PrinterColumn, StrMap

# libyaml when built in: the pure-Python loader takes seconds on all 18 CRDs.
Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

OURS: list[type[KubeObject]] = [p.BFB, p.DPUFlavor, p.DPUSet, p.DPU, p.DPUCluster, o.DPFOperatorConfig]


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node below (and including) `schema`, with a readable path."""
    yield path or "<root>", schema
    for name, sub in schema.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


def structural_problems(schema: dict[str, Any]) -> list[str]:
    problems = []
    if "anyOf" in schema or "oneOf" in schema or "allOf" in schema:
        problems.append("<root>: top-level junctor")
    for path, node in nodes(schema):
        if "$ref" in node or "$defs" in node or "definitions" in node:
            problems.append(f"{path}: $ref/$defs")
        if node.get("x-kubernetes-int-or-string"):
            if node.get("anyOf") != [{"type": "integer"}, {"type": "string"}] or "type" in node:
                problems.append(f"{path}: malformed int-or-string")
        elif "type" not in node:
            problems.append(f"{path}: no type")
        elif "anyOf" in node or "oneOf" in node:
            problems.append(f"{path}: junctor outside int-or-string")
        if node.get("type") == "object" and "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties together")
        if node.get("type") == "array" and "items" not in node:
            problems.append(f"{path}: array without items")
    return problems


def schema_at(cls: type[KubeObject], dotted: str) -> dict[str, Any]:
    node = openapi_schema(cls)
    for part in dotted.split("."):
        if part == "[]":
            node = node["items"]
        elif part == "{}":
            node = node["additionalProperties"]
        else:
            node = node["properties"][part]
    return node


@pytest.mark.parametrize("cls", OURS, ids=lambda c: c.KIND.kind)
def test_our_schemas_are_structural(cls: type[KubeObject]) -> None:
    assert structural_problems(openapi_schema(cls)) == []


def test_every_registered_dpf_kind_renders_structurally() -> None:
    crds = render_all()
    kinds = {c["spec"]["names"]["kind"] for c in crds}
    assert {c.KIND.kind for c in OURS} <= kinds
    for crd in crds:
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert structural_problems(schema) == [], crd["metadata"]["name"]
        assert "$ref" not in json.dumps(crd)


def test_crd_shape() -> None:
    crd = render_crd(p.DPU)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1" and crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"] == {
        "name": "dpus.provisioning.dpu.nvidia.com",
        "annotations": {"helm.sh/resource-policy": "keep"},
    }
    spec = crd["spec"]
    assert spec["group"] == "provisioning.dpu.nvidia.com" and spec["scope"] == "Namespaced"
    assert spec["names"] == {"kind": "DPU", "listKind": "DPUList", "plural": "dpus", "singular": "dpu"}
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    schema = version["schema"]["openAPIV3Schema"]
    assert schema["properties"]["metadata"] == {"type": "object", "description": "Standard object's metadata."}
    # What `kubectl explain` shows: the DPU's own fields and the shared ones (conditions) are described.
    dpu_spec, dpu_status = schema["properties"]["spec"], schema["properties"]["status"]
    assert all(p.get("description") for p in dpu_spec["properties"].values()), dpu_spec["properties"].keys()
    assert all(p.get("description") for p in dpu_status["properties"].values())
    condition = dpu_status["properties"]["conditions"]["items"]["properties"]
    assert condition["reason"]["description"] == "A CamelCase identifier of the reason for the last transition."
    assert schema["properties"]["apiVersion"]["type"] == "string"
    assert schema["required"] == ["spec"]
    assert schema["properties"]["spec"]["required"] == ["bfb", "nodeName"]


@pytest.mark.parametrize(
    ("cls", "name"),
    [
        (p.BFB, "bfbs.provisioning.dpu.nvidia.com"),
        (p.DPUFlavor, "dpuflavors.provisioning.dpu.nvidia.com"),
        (p.DPUSet, "dpusets.provisioning.dpu.nvidia.com"),
        (p.DPUCluster, "dpuclusters.provisioning.dpu.nvidia.com"),
        (o.DPFOperatorConfig, "dpfoperatorconfigs.operator.dpu.nvidia.com"),
    ],
)
def test_crd_names_match_dpf(cls: type[KubeObject], name: str) -> None:
    crd = render_crd(cls)
    assert crd["metadata"]["name"] == name
    # DPF's CRDs declare no short names or categories.
    assert "shortNames" not in crd["spec"]["names"] and "categories" not in crd["spec"]["names"]


def test_dpuflavor_has_no_status_subresource() -> None:
    version = render_crd(p.DPUFlavor)["spec"]["versions"][0]
    assert "subresources" not in version
    assert "status" not in version["schema"]["openAPIV3Schema"]["properties"]


def test_printer_columns() -> None:
    def columns(cls: type[KubeObject]) -> list[str]:
        return [c["name"] for c in render_crd(cls)["spec"]["versions"][0].get("additionalPrinterColumns", [])]

    assert columns(p.DPU) == ["Ready", "Phase", "Age"]
    assert columns(p.DPUCluster) == ["Ready", "Phase", "Type", "MaxNodes", "Version", "Age"]
    assert columns(o.DPFOperatorConfig) == ["Ready", "Phase", "Age"]
    assert columns(p.BFB) == []
    cluster_columns = render_crd(p.DPUCluster)["spec"]["versions"][0]["additionalPrinterColumns"]
    assert cluster_columns[3] == {
        "name": "MaxNodes",
        "type": "integer",
        "jsonPath": ".spec.maxNodes",
        "description": "max amount of nodes",
    }
    assert cluster_columns[-1] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def test_int_or_string_fields() -> None:
    max_unavailable = schema_at(p.DPUSet, "spec.strategy.rollingUpdate.maxUnavailable")
    assert max_unavailable["x-kubernetes-int-or-string"] is True
    assert max_unavailable["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    quantity = schema_at(p.DPUFlavor, "spec.dpuResources.{}")
    assert quantity["x-kubernetes-int-or-string"] is True
    assert quantity["pattern"].startswith(r"^(\+|-)?")
    assert schema_at(p.DPUFlavor, "spec.dpuResources")["type"] == "object"


def test_constraints_and_defaults_carried_over() -> None:
    assert schema_at(p.BFB, "spec.url")["pattern"] == r"^(http|https)://.+\.bfb$"
    assert schema_at(p.BFB, "spec.fileName")["pattern"] == r"^[A-Za-z0-9\_\-\.]+\.bfb$"
    assert schema_at(p.BFB, "status")["default"] == {"phase": "Initializing"}
    assert schema_at(p.BFB, "status.phase")["enum"] == ["Initializing", "Downloading", "Ready", "Deleting", "Error"]
    assert schema_at(p.DPUCluster, "spec.type")["pattern"] == "kamaji|static|[^/]+/.*"
    max_nodes = schema_at(p.DPUCluster, "spec.maxNodes")
    assert (max_nodes["type"], max_nodes["minimum"], max_nodes["maximum"], max_nodes["default"]) == (
        "integer",
        1,
        1000,
        1000,
    )
    vrid = schema_at(p.DPUCluster, "spec.clusterEndpoint.keepalived.virtualRouterID")
    assert (vrid["minimum"], vrid["maximum"]) == (1, 255)
    assert schema_at(p.DPUCluster, "spec.clusterEndpoint.keepalived.interface")["minLength"] == 1
    assert schema_at(p.DPUCluster, "spec.clusterEndpoint.keepalived")["required"] == [
        "interface",
        "vip",
        "virtualRouterID",
    ]
    assert schema_at(p.DPU, "spec.nodeEffect")["default"] == {"drain": {"automaticNodeReboot": True}}
    assert schema_at(p.DPUSet, "spec.dpuTemplate.spec.nodeEffect")["default"] == {
        "drain": {"automaticNodeReboot": True}
    }
    assert schema_at(p.DPUSet, "spec.strategy.type") == {
        "type": "string",
        "enum": ["Recreate", "RollingUpdate"],
        "default": "Recreate",
        "description": 'Can be "Recreate" or "RollingUpdate".',
    }
    assert schema_at(p.DPUSet, "status.dpuStatistics.{}") == {"type": "integer"}
    assert schema_at(p.DPUFlavor, "spec.configFiles.[].operation")["enum"] == ["override", "append"]
    assert schema_at(p.DPU, "status.conditions.[].status")["enum"] == ["True", "False", "Unknown"]
    # A factory default that is only a Python convenience is not a CRD default.
    assert "default" not in schema_at(p.DPUSet, "spec.dpuTemplate")


def test_operator_schema() -> None:
    networking = schema_at(o.DPFOperatorConfig, "spec.networking")
    assert networking["default"] == {"controlPlaneMTU": 1500}
    for mtu in ("controlPlaneMTU", "highSpeedMTU"):
        field = networking["properties"][mtu]
        assert (field["type"], field["minimum"], field["maximum"], field["default"]) == ("integer", 0, 9216, 1500)
    pc = schema_at(o.DPFOperatorConfig, "spec.provisioningController")
    assert pc["required"] == ["bfbPVCName"]
    assert pc["properties"]["bfbPVCName"]["minLength"] == 1
    assert pc["properties"]["dmsTimeout"]["minimum"] == 1
    assert pc["properties"]["image"]["pattern"] == o.IMAGE_PATTERN
    assert schema_at(o.DPFOperatorConfig, "spec")["required"] == ["provisioningController"]
    assert schema_at(o.DPFOperatorConfig, "spec.flannel.helmChart")["pattern"] == "^(oci://|https://).+$"
    assert schema_at(o.DPFOperatorConfig, "spec.dpuDetector.collectors.psID")["type"] == "boolean"
    assert "ovsCNI" in schema_at(o.DPFOperatorConfig, "spec")["properties"]


@pytest.mark.parametrize("cls", [*OURS, *svc.ALL_KINDS], ids=lambda c: c.KIND.kind)
def test_every_field_is_described(cls: type[KubeObject]) -> None:
    # What `kubectl explain` shows: the kind and every field say what they mean (items and map values excluded).
    undescribed = [
        path
        for path, node in nodes(openapi_schema(cls))
        if not path.endswith(("[]", "}")) and not node.get("description", "").strip()
    ]
    assert undescribed == []


# --- generic rendering of any KubeObject ---------------------------------------------------------------


class Inner(Model):
    """An inner struct."""

    weight: int = Field(default=3, gt=0, lt=10)


class Tree(Model):
    children: list[Tree] = Field(default_factory=list)


class WidgetSpec(Model):
    size: IntOrString
    mode: Literal["fast", "slow"] = "fast"
    values: dict[str, Any] = Field(default_factory=dict)
    blob: Any = None
    labels: StrMap
    ports: Annotated[list[int], Field(min_length=1, max_length=50)]
    names: dict[str, list[str]] | None = None
    inner: Inner | None = None
    tree: Tree | None = None
    ratio: float = 0.5


class Widget(KubeObject):
    """A made-up kind, to show the renderer is not tied to DPF's kinds."""

    KIND: ClassVar[KindInfo] = KindInfo(
        group="example.dpu.nvidia.com",
        version="v1beta1",
        kind="Widget",
        plural="widgets",
        singular="widget",
        short_names=("wg", "wdg"),
        categories=("dpf", "all"),
        namespaced=False,
        status_subresource=False,
        printer_columns=(
            PrinterColumn(name="Size", type="string", json_path=".spec.size", priority=1),
            PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp"),
        ),
    )

    spec: WidgetSpec


def test_generic_kind_renders() -> None:
    crd = render_crd(Widget)
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["wg", "wdg"] and names["categories"] == ["dpf", "all"]
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["metadata"]["name"] == "widgets.example.dpu.nvidia.com"
    version = crd["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Size", "Age"]
    assert version["additionalPrinterColumns"][0]["priority"] == 1
    schema = version["schema"]["openAPIV3Schema"]
    assert structural_problems(schema) == []
    assert schema["description"] == "A made-up kind, to show the renderer is not tied to DPF's kinds."
    spec = schema["properties"]["spec"]
    props = spec["properties"]
    assert spec["required"] == ["ports", "size"]
    assert props["size"] == {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}
    assert props["mode"] == {"type": "string", "enum": ["fast", "slow"], "default": "fast"}
    assert props["values"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert props["blob"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert props["labels"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert props["ports"] == {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 50}
    assert props["names"] == {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}
    assert props["inner"]["description"] == "An inner struct."
    assert props["inner"]["properties"]["weight"] == {
        "type": "integer",
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 10,
        "exclusiveMaximum": True,
        "default": 3,
    }
    assert props["ratio"] == {"type": "number", "default": 0.5}
    # A recursive struct stops at its first repetition instead of looping.
    child = props["tree"]["properties"]["children"]["items"]
    assert child["type"] == "object" and child["x-kubernetes-preserve-unknown-fields"] is True


def test_openapi_schema_is_the_crd_schema() -> None:
    assert render_crd(p.DPUSet)["spec"]["versions"][0]["schema"]["openAPIV3Schema"] == openapi_schema(p.DPUSet)


def test_rendering_does_not_share_nodes() -> None:
    schema = openapi_schema(p.DPUFlavor)
    a = schema["properties"]["spec"]["properties"]["dpuResources"]["additionalProperties"]
    b = schema["properties"]["spec"]["properties"]["systemReservedResources"]["additionalProperties"]
    assert a == b and a is not b
    assert "&id" not in to_yaml([render_crd(p.DPUFlavor)])


# --- files -----------------------------------------------------------------------------------------------


def test_rendered_crd_files_load_back(tmp_path: Path) -> None:
    crds = render_all()
    for crd in crds:
        (tmp_path / f"{crd['metadata']['name']}.yaml").write_text(to_yaml([crd]))
    (tmp_path / "all.yaml").write_text(to_yaml(crds))
    loaded = []
    for path in sorted(tmp_path.glob("*.yaml")):
        if path.name == "all.yaml":
            continue
        (doc,) = list(yaml.load_all(path.read_text(), Loader=Loader))
        assert path.name == f"{doc['metadata']['name']}.yaml"
        loaded.append(doc)
    stream = list(yaml.load_all((tmp_path / "all.yaml").read_text(), Loader=Loader))
    assert stream == crds
    assert len(loaded) == len(crds)
    for doc in loaded:
        assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
        assert doc["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert set(doc["spec"]) == {"group", "names", "scope", "versions"}
        assert doc["metadata"]["name"] == f"{doc['spec']['names']['plural']}.{doc['spec']['group']}"
        assert {"kind", "listKind", "plural", "singular"} <= set(doc["spec"]["names"])
        (version,) = doc["spec"]["versions"]
        assert {"name", "served", "storage", "schema"} <= set(version)
        assert version["schema"]["openAPIV3Schema"]["type"] == "object"
