"""DPF's condition helpers: transition-time semantics and the Ready summary."""

from __future__ import annotations

import pytest

from dpf_core.api import conditions as cond
from dpf_core.api.meta import Condition

TYPES = ("Ready", "ServiceInterfaceSetReconciled", "ServiceInterfaceSetReady")


def _by_type(conditions: list[Condition]) -> dict[str, Condition]:
    return {c.type: c for c in conditions}


def test_set_condition_adds_a_new_type() -> None:
    cs: list[Condition] = []
    assert cond.set_condition(cs, "ApplicationsReady", "False", cond.REASON_PENDING, "waiting", "t1", 3)
    (c,) = cs
    assert (c.type, c.status, c.reason, c.message, c.last_transition_time, c.observed_generation) == (
        "ApplicationsReady",
        "False",
        "Pending",
        "waiting",
        "t1",
        3,
    )
    # The stored shape is a valid metav1.Condition on the wire.
    assert Condition.model_validate(c.wire()) == c


def test_transition_time_moves_only_when_status_changes() -> None:
    cs: list[Condition] = []
    cond.set_condition(cs, "A", "False", "Pending", "m1", "t1")
    assert not cond.set_condition(cs, "A", "False", "Pending", "m1", "t2")
    assert cs[0].last_transition_time == "t1"
    assert cond.set_condition(cs, "A", "False", "Error", "m2", "t3")
    assert (cs[0].reason, cs[0].message, cs[0].last_transition_time) == ("Error", "m2", "t1")
    assert cond.set_condition(cs, "A", "True", "Success", "", "t4")
    assert (cs[0].status, cs[0].last_transition_time) == ("True", "t4")


def test_observed_generation_is_overwritten_like_apimachinery() -> None:
    cs: list[Condition] = []
    cond.set_condition(cs, "A", "True", "Success", "", "t1", observed_generation=1)
    assert cond.set_condition(cs, "A", "True", "Success", "", "t2", observed_generation=2)
    assert cs[0].observed_generation == 2 and cs[0].last_transition_time == "t1"
    assert cond.set_condition(cs, "A", "True", "Success", "", "t3")
    assert cs[0].observed_generation is None


def test_set_condition_edits_in_place() -> None:
    cs: list[Condition] = []
    cond.set_condition(cs, "A", "False", "Pending", "", "t1")
    first = cs[0]
    cond.set_condition(cs, "A", "True", "Success", "", "t2")
    assert cs[0] is first and len(cs) == 1


def test_get_condition_and_is_true() -> None:
    cs: list[Condition] = []
    cond.set_condition(cs, "A", "True", "Success", "", "t")
    cond.set_condition(cs, "B", "Unknown", "Pending", "", "t")
    a = cond.get_condition(cs, "A")
    assert a is not None and a.type == "A"
    assert cond.get_condition(cs, "C") is None
    assert cond.is_true(cs, "A")
    assert not cond.is_true(cs, "B")
    assert not cond.is_true(cs, "C")


def test_init_conditions_pre_creates_unknown_pending_once() -> None:
    cs: list[Condition] = []
    cond.set_condition(cs, "ServiceInterfaceSetReconciled", "True", "Success", "", "t0")
    assert cond.init_conditions(cs, TYPES, "t1")
    by = _by_type(cs)
    assert [c.type for c in cs] == ["ServiceInterfaceSetReconciled", "Ready", "ServiceInterfaceSetReady"]
    assert (by["Ready"].status, by["Ready"].reason, by["Ready"].message) == ("Unknown", "Pending", "")
    assert by["Ready"].last_transition_time == "t1"
    assert by["ServiceInterfaceSetReconciled"].status == "True"
    assert not cond.init_conditions(cs, TYPES, "t2")
    assert len(cs) == 3


def test_ready_true_success_when_all_others_true() -> None:
    cs: list[Condition] = []
    cond.init_conditions(cs, TYPES, "t0")
    cond.set_condition(cs, "ServiceInterfaceSetReconciled", "True", "Success", "", "t1")
    cond.set_condition(cs, "ServiceInterfaceSetReady", "True", "Success", "", "t1")
    assert cond.summarize_ready(cs, TYPES, "t2", observed_generation=4)
    ready = _by_type(cs)["Ready"]
    assert (ready.status, ready.reason, ready.message, ready.last_transition_time) == ("True", "Success", "", "t2")
    assert ready.observed_generation == 4
    # Nothing changed: no write needed, time stays.
    assert not cond.summarize_ready(cs, TYPES, "t3", observed_generation=4)
    assert ready.last_transition_time == "t2"


def test_ready_false_lists_non_true_types_in_order() -> None:
    types = ("Ready", "A", "B", "C")
    cs: list[Condition] = []
    cond.init_conditions(cs, types, "t0")
    cond.set_condition(cs, "B", "True", "Success", "", "t1")
    cond.summarize_ready(cs, types, "t2")
    ready = _by_type(cs)["Ready"]
    assert (ready.status, ready.reason) == ("False", "Pending")
    assert ready.message == "The following conditions are not ready: A, C"
    assert ready.last_transition_time == "t2"  # Unknown -> False is a transition


@pytest.mark.parametrize(
    ("child_reasons", "expected"),
    [
        (["Pending", "Pending"], "Pending"),
        (["Error", "Pending"], "Pending"),
        (["Error", "Error"], "Pending"),
        (["SomethingCustom", "Error"], "Pending"),
        (["Failure", "Pending"], "Failure"),
        (["Error", "Failure"], "Failure"),
        (["Failure", "AwaitingDeletion"], "AwaitingDeletion"),
        (["AwaitingDeletion", "Error"], "AwaitingDeletion"),
    ],
)
def test_ready_reason_is_the_most_severe_child(child_reasons: list[str], expected: str) -> None:
    types = ("Ready", "A", "B")
    cs: list[Condition] = []
    cond.init_conditions(cs, types, "t0")
    for t, r in zip(("A", "B"), child_reasons, strict=True):
        cond.set_condition(cs, t, "False", r, "", "t1")
    cond.summarize_ready(cs, types, "t2")
    assert _by_type(cs)["Ready"].reason == expected
    assert cond.most_severe_reason(child_reasons) == expected


def test_true_children_do_not_influence_the_reason() -> None:
    types = ("Ready", "A", "B")
    cs: list[Condition] = []
    cond.set_condition(cs, "A", "True", "AwaitingDeletion", "", "t")
    cond.set_condition(cs, "B", "False", "Error", "", "t")
    cond.summarize_ready(cs, types, "t")
    ready = _by_type(cs)["Ready"]
    assert (ready.reason, ready.message) == ("Pending", "The following conditions are not ready: B")


def test_missing_listed_type_counts_as_not_ready() -> None:
    cs: list[Condition] = []
    cond.set_condition(cs, "A", "True", "Success", "", "t")
    cond.summarize_ready(cs, ("Ready", "A", "B"), "t")
    ready = _by_type(cs)["Ready"]
    assert (ready.status, ready.reason, ready.message) == (
        "False",
        "Pending",
        "The following conditions are not ready: B",
    )


def test_without_types_every_present_condition_counts_like_dpf() -> None:
    cs: list[Condition] = []
    cond.set_condition(cs, "A", "True", "Success", "", "t")
    cond.set_condition(cs, "Extra", "False", "Failure", "boom", "t")
    cond.summarize_ready(cs, None, "t")
    ready = _by_type(cs)["Ready"]
    assert (ready.status, ready.reason, ready.message) == (
        "False",
        "Failure",
        "The following conditions are not ready: Extra",
    )
    # The listed-types form ignores conditions outside the list.
    cond.summarize_ready(cs, ("Ready", "A"), "t2")
    assert (ready.status, ready.reason, ready.message) == ("True", "Success", "")


def test_ready_transition_back_and_forth_keeps_time_semantics() -> None:
    types = ("Ready", "A")
    cs: list[Condition] = []
    cond.init_conditions(cs, types, "t0")
    cond.set_condition(cs, "A", "True", "Success", "", "t1")
    cond.summarize_ready(cs, types, "t1")
    cond.set_condition(cs, "A", "False", "Error", "lost it", "t2")
    assert cond.summarize_ready(cs, types, "t2")
    ready = _by_type(cs)["Ready"]
    assert (ready.status, ready.last_transition_time) == ("False", "t2")
    cond.set_condition(cs, "A", "False", "Failure", "gave up", "t3")
    assert cond.summarize_ready(cs, types, "t3")
    assert (ready.reason, ready.last_transition_time) == ("Failure", "t2")


def test_summary_does_not_allocate_new_conditions_on_steady_state() -> None:
    cs: list[Condition] = []
    cond.init_conditions(cs, TYPES, "t0")
    cond.summarize_ready(cs, TYPES, "t0")
    before = [id(c) for c in cs]
    for i in range(1000):
        cond.init_conditions(cs, TYPES, f"t{i}")
        cond.summarize_ready(cs, TYPES, f"t{i}")
    assert [id(c) for c in cs] == before


def test_names_in_a_message_are_capped_so_a_thousand_children_fit_a_condition() -> None:
    from dpf_core.api.conditions import list_names

    assert list_names(["a", "b"]) == "a,b"
    names = [f"dpf-operator-system/hbn-to-fabric-dpu-node-{i:04d}" for i in range(1000)]
    text = list_names(names)
    assert text.endswith(", and 990 more") or text.endswith(" and 990 more")
    assert text.count("hbn-to-fabric") == 10 and len(text) < 32768
    assert list_names(names, ", ").startswith("dpf-operator-system/hbn-to-fabric-dpu-node-0000, ")


def test_copy_on_write_replaces_a_changed_condition_and_leaves_the_shared_one_alone() -> None:
    shared: list[Condition] = []
    cond.set_condition(shared, "A", "False", "Pending", "m1", "t1")
    cond.set_condition(shared, "B", "True", "Success", "", "t1")
    a, b = shared
    mine = list(shared)  # a writer's own list over a snapshot's conditions
    assert cond.set_condition(mine, "A", "True", "Success", "", "t2", copy_on_write=True)
    assert (a.status, a.reason, a.message, a.last_transition_time) == ("False", "Pending", "m1", "t1")
    assert mine[0] is not a and (mine[0].status, mine[0].last_transition_time) == ("True", "t2")
    # Unchanged conditions are not copied: they stay shared.
    assert not cond.set_condition(mine, "B", "True", "Success", "", "t3", copy_on_write=True)
    assert mine[1] is b
