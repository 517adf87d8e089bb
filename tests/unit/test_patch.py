"""RFC 7386 merge patch and RFC 6902 JSON patch, checked against the RFCs' own examples."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dpf_core.store.patch import (
    PatchError,
    create_merge_patch,
    get_pointer,
    json_equal,
    json_patch,
    merge_patch,
    parse_pointer,
)

# RFC 7386 appendix A: (target, patch, result)
RFC7386 = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC7386)
def test_rfc7386_examples(target: Any, patch: Any, result: Any) -> None:
    before = copy.deepcopy(target)
    assert merge_patch(target, patch) == result
    assert target == before  # inputs are never modified


def test_merge_patch_does_not_alias_patch_values() -> None:
    patch = {"a": {"list": [{"x": 1}]}}
    out = merge_patch({}, patch)
    out["a"]["list"][0]["x"] = 2
    assert patch == {"a": {"list": [{"x": 1}]}}


def test_create_merge_patch_inverts_merge_patch() -> None:
    a = {"spec": {"x": 1, "y": [1, 2], "gone": True}, "keep": "k"}
    b = {"spec": {"x": 2, "y": [1, 2], "new": {"z": None}}, "keep": "k"}
    p = create_merge_patch(a, b)
    assert p == {"spec": {"x": 2, "gone": None, "new": {"z": None}}}


# RFC 6902 appendix A: (doc, patch, result)
RFC6902_OK = [
    ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}], {"baz": "qux", "foo": "bar"}),
    ({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}], {"foo": ["bar", "qux", "baz"]}),
    ({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    ({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}], {"foo": ["bar", "baz"]}),
    ({"baz": "qux", "foo": "bar"}, [{"op": "replace", "path": "/baz", "value": "boo"}], {"baz": "boo", "foo": "bar"}),
    (
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
        {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
    ),
    (
        {"foo": ["all", "grass", "cows", "eat"]},
        [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
        {"foo": ["all", "cows", "eat", "grass"]},
    ),
    (
        {"baz": "qux", "foo": ["a", 2, "c"]},
        [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}],
        {"baz": "qux", "foo": ["a", 2, "c"]},
    ),
    (
        {"foo": "bar"},
        [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
        {"foo": "bar", "child": {"grandchild": {}}},
    ),
    ({"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}], {"foo": ["bar", ["abc", "def"]]}),
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
    ({"foo": None}, [{"op": "add", "path": "/foo", "value": 1}], {"foo": 1}),
    ({"a": {"b": 1}}, [{"op": "copy", "from": "/a", "path": "/c"}], {"a": {"b": 1}, "c": {"b": 1}}),
    ({"a": 1}, [{"op": "replace", "path": "", "value": {"b": 2}}], {"b": 2}),
    ({"a/b": 1}, [{"op": "move", "from": "/a~1b", "path": "/c~0d"}], {"c~d": 1}),
]


@pytest.mark.parametrize(("doc", "patch", "result"), RFC6902_OK)
def test_rfc6902_examples(doc: Any, patch: list[dict[str, Any]], result: Any) -> None:
    before = copy.deepcopy(doc)
    assert json_patch(doc, patch) == result
    assert doc == before


RFC6902_FAIL = [
    ({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}], "/baz/bat"),  # A.12: parent missing
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}], "/~01"),  # A.15: string is not a number
    ({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}], "/baz"),  # A.9
    ({"a": [1]}, [{"op": "remove", "path": "/a/1"}], "/a/1"),
    ({"a": [1]}, [{"op": "add", "path": "/a/01", "value": 2}], "/a/01"),  # leading zeros are not indices
    ({"a": [1]}, [{"op": "remove", "path": "/a/-"}], "/a/-"),
    ({"a": {"b": {}}}, [{"op": "move", "from": "/a", "path": "/a/b/c"}], "/a/b/c"),
    ({"a": 1}, [{"op": "replace", "path": "/b", "value": 2}], "/b"),
    ({"a": True}, [{"op": "test", "path": "/a", "value": 1}], "/a"),
]


@pytest.mark.parametrize(("doc", "patch", "path"), RFC6902_FAIL)
def test_rfc6902_failures_name_the_path(doc: Any, patch: list[dict[str, Any]], path: str) -> None:
    with pytest.raises(PatchError) as e:
        json_patch(doc, patch)
    assert e.value.path == path and not e.value.malformed


@pytest.mark.parametrize(
    "patch",
    [
        {"op": "add", "path": "/a", "value": 1},  # not an array
        [{"op": "bogus", "path": "/a"}],
        [{"op": "add", "path": "/a"}],  # value missing
        [{"op": "move", "path": "/a"}],  # from missing
        [{"op": "remove", "path": "a"}],  # pointer must start with /
        [{"op": "remove", "path": "/a~2"}],  # only ~0 and ~1 are escapes
        "[not json",
    ],
)
def test_malformed_patches(patch: Any) -> None:
    with pytest.raises(PatchError) as e:
        json_patch({"a": 1}, patch)
    assert e.value.malformed


def test_operations_apply_in_order_and_a_failure_leaves_the_input_alone() -> None:
    doc = {"items": [1, 2, 3]}
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "remove", "path": "/items/0"}, {"op": "test", "path": "/items/0", "value": 1}])
    assert doc == {"items": [1, 2, 3]}
    assert json_patch(
        doc, '[{"op": "remove", "path": "/items/0"}, {"op": "test", "path": "/items/0", "value": 2}]'
    ) == {"items": [2, 3]}


def test_pointers() -> None:
    assert parse_pointer("") == []
    assert parse_pointer("/a~1b/~0c/~01/0") == ["a/b", "~c", "~1", "0"]
    doc = {"metadata": {"labels": {"dpu.nvidia.com/name": "x"}}}
    assert get_pointer(doc, "/metadata/labels/dpu.nvidia.com~1name") == "x"


def test_json_equality() -> None:
    assert json_equal(1, 1.0) and json_equal({"a": [1, {"b": None}]}, {"a": [1.0, {"b": None}]})
    assert (
        not json_equal(True, 1)
        and not json_equal("1", 1)
        and not json_equal([1], [1, 2])
        and not json_equal({"a": 1}, {"b": 1})
    )


def test_json_patch_with_an_unhashable_op_name_is_malformed_not_a_crash() -> None:
    with pytest.raises(PatchError, match="unsupported op"):
        json_patch({"a": 1}, [{"op": [], "path": "/a"}])
