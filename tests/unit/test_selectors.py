"""Label, node and field selectors (apimachinery semantics)."""

from __future__ import annotations

import pytest

from dpf_core.api.meta import KubeObject, LabelSelector, NodeSelector
from dpf_core.errors import BadRequest
from dpf_core.store.selectors import (
    EVERYTHING,
    compile_field_selector,
    compile_label_selector,
    matches_labels,
    node_selector_matches,
    parse_label_selector,
)

WEB = {"app": "web", "tier": "front", "replicas": "3"}
DB = {"app": "db", "tier": "back"}
BARE: dict[str, str] = {}


@pytest.mark.parametrize(
    ("selector", "web", "db", "bare"),
    [
        ("", True, True, True),
        ("app=web", True, False, False),
        ("app==web", True, False, False),
        ("app!=web", False, True, True),  # != also selects objects without the key
        ("app in (web,db)", True, True, False),
        ("app notin (web)", False, True, True),
        ("tier", True, True, False),
        ("!tier", False, False, True),
        ("app=web,tier=front", True, False, False),
        ("app=web,tier=back", False, False, False),
        ("  app = web ,  tier in ( front , x )  ", True, False, False),
        ("replicas>2", True, False, False),
        ("replicas<3", False, False, False),
        ("example.com/role", False, False, False),
        ("app=", False, False, False),
        ("app!=", True, True, True),
    ],
)
def test_string_selectors(selector: str, web: bool, db: bool, bare: bool) -> None:
    m = parse_label_selector(selector)
    assert (m.matches(WEB), m.matches(DB), m.matches(BARE)) == (web, db, bare)


@pytest.mark.parametrize(
    "bad",
    [
        "app in ()",
        "app in (a",
        "=web",
        "app=web,",
        "app in web",
        "a b",
        "Bad Key!=x",
        "app=no spaces=x",
        "-x=y",
        "app>x",
        "app=" + "v" * 64,
        "!",
        "app=(x)",
    ],
)
def test_bad_selectors_are_bad_requests(bad: str) -> None:
    with pytest.raises(BadRequest, match=r"unable to parse requirement"):
        parse_label_selector(bad)


def test_string_form_round_trips() -> None:
    m = parse_label_selector("tier notin (b,a),app=web,!legacy,role, x in (2,1)")
    assert str(m) == "app=web,!legacy,role,tier notin (a,b),x in (1,2)"  # sorted by key, as labels.Selector.String()
    assert parse_label_selector(str(m)) == m


def test_label_selector_model_and_dict() -> None:
    sel = LabelSelector.model_validate(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "edge"]}],
        }
    )
    assert matches_labels(sel, WEB) and not matches_labels(sel, DB)
    assert matches_labels(LabelSelector(), BARE)  # an empty LabelSelector selects everything
    assert matches_labels({"app": "db"}, DB) and not matches_labels({"app": "db"}, WEB)
    assert compile_label_selector(None) is EVERYTHING
    with pytest.raises(BadRequest, match=r"values set must be empty"):
        compile_label_selector(
            LabelSelector.model_validate({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]})
        )
    with pytest.raises(BadRequest, match=r"can't be empty"):
        compile_label_selector(LabelSelector.model_validate({"matchExpressions": [{"key": "a", "operator": "In"}]}))


def test_index_terms_name_the_positive_requirements() -> None:
    m = parse_label_selector("a=1,b in (x,y),c,!d,e!=2")
    assert m.index_terms() == [("a", frozenset({"1"})), ("b", frozenset({"x", "y"})), ("c", None)]


def test_compiled_selectors_are_cached() -> None:
    assert parse_label_selector("cache=me") is parse_label_selector("cache=me")


def _node_selector(*terms: list[dict[str, object]]) -> NodeSelector:
    return NodeSelector.model_validate({"nodeSelectorTerms": [{"matchExpressions": t} for t in terms]})


def test_node_selector_terms_or_expressions_and() -> None:
    sel = _node_selector(
        [
            {"key": "feature.node.kubernetes.io/dpu", "operator": "Exists"},
            {"key": "cores", "operator": "Gt", "values": ["8"]},
        ],
        [{"key": "zone", "operator": "In", "values": ["a"]}],
    )
    assert node_selector_matches(sel, {"feature.node.kubernetes.io/dpu": "true", "cores": "16"})
    assert not node_selector_matches(sel, {"feature.node.kubernetes.io/dpu": "true", "cores": "8"})
    assert not node_selector_matches(sel, {"feature.node.kubernetes.io/dpu": "true", "cores": "many"})
    assert node_selector_matches(sel, {"zone": "a"})
    assert not node_selector_matches(sel, {})


def test_node_selector_edges() -> None:
    assert node_selector_matches(None, {})
    assert not node_selector_matches(NodeSelector(node_selector_terms=[]), {"a": "b"})
    assert not node_selector_matches(NodeSelector.model_validate({"nodeSelectorTerms": [{}]}), {"a": "b"})
    lt = _node_selector(
        [{"key": "n", "operator": "Lt", "values": ["5"]}, {"key": "x", "operator": "NotIn", "values": ["1"]}]
    )
    assert node_selector_matches(lt, {"n": "4"}) and not node_selector_matches(lt, {"n": "4", "x": "1"})
    fields = NodeSelector.model_validate(
        {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}]}
    )
    assert node_selector_matches(fields, {}, {"metadata.name": "node-1"})
    assert not node_selector_matches(fields, {}, {"metadata.name": "node-2"})


class _Obj(KubeObject):
    pass


def _obj(name: str, ns: str | None) -> _Obj:
    return _Obj.model_validate({"apiVersion": "v1", "kind": "X", "metadata": {"name": name, "namespace": ns}})


def test_field_selectors() -> None:
    m = compile_field_selector("metadata.name=a,metadata.namespace!=kube-system")
    assert m is not None
    assert (
        m.matches(_obj("a", "default"))
        and not m.matches(_obj("a", "kube-system"))
        and not m.matches(_obj("b", "default"))
    )
    assert m.equal_value("metadata.name") == "a" and m.equal_value("metadata.namespace") is None
    d = compile_field_selector({"metadata.namespace": "x"})
    assert d is not None and d.matches(_obj("q", "x")) and not d.matches(_obj("q", "y"))
    assert compile_field_selector(None) is None
    with pytest.raises(BadRequest, match=r"field label not supported: status.phase"):
        compile_field_selector("status.phase=Running")
    with pytest.raises(BadRequest):
        compile_field_selector("metadata.name")
