"""meta.share_copy: a deep copy that keeps what is identical to a read-only snapshot shared."""

from __future__ import annotations

from dpf_core.api import conditions as cond
from dpf_core.api.external import Pod
from dpf_core.api.meta import share_copy
from dpf_core.api.provisioning import DPU
from dpf_core.store.memory import MemoryStore


def _dpu_with_conditions(n: int) -> DPU:
    d = DPU.new("dpu-a", "dpf", spec={"nodeName": "n1", "bfb": "bf", "cluster": {"name": "c", "namespace": "c"}})
    for i in range(n):
        cond.set_condition(d.status.conditions, f"T{i}", "True", "R", "m", "t0")
    return d


def test_shares_identical_parts_and_copies_changed_ones() -> None:
    old = _dpu_with_conditions(4).status
    new = old.model_copy(update={"conditions": list(old.conditions)})
    cond.set_condition(new.conditions, "T2", "False", "Err", "boom", "t1", copy_on_write=True)
    out = share_copy(new, old)
    assert out == new and out is not new and out.conditions is not new.conditions
    assert [c is o for c, o in zip(out.conditions, old.conditions, strict=True)] == [True, True, False, True]
    # The copy owns what changed: the writer editing its object afterwards does not reach it.
    new.conditions[2].message = "later"
    new.phase = "Error"  # type: ignore[assignment]
    assert out.conditions[2].message == "boom" and out.phase != "Error"


def test_nothing_shared_is_a_plain_deep_copy() -> None:
    old = _dpu_with_conditions(3).status
    new = old.clone()
    out = share_copy(new, old)
    assert out == new
    assert all(c is not n and c is not o for c, n, o in zip(out.conditions, new.conditions, old.conditions, strict=True))


def test_open_models_keep_their_extra_fields_as_copies() -> None:
    old = Pod.model_validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                              "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
                              "spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": "1"}]}]}})
    new = old.model_copy(update={"spec": old.spec.model_copy(update={"containers": list(old.spec.containers)})})
    out = share_copy(new, old)
    assert out.wire() == old.wire() and out.spec.containers[0] is old.spec.containers[0]


def test_a_status_write_keeps_unchanged_conditions_shared_with_the_previous_snapshot() -> None:
    store = MemoryStore(lambda: 0.0)
    store.create(_dpu_with_conditions(0))
    cur = store.get(DPU, "dpu-a", "dpf")
    s = cur.status.clone()
    for i in range(3):
        cond.set_condition(s.conditions, f"T{i}", "True", "R", "m", "t0")
    store.update_status(cur.with_status(s))
    before = store.get(DPU, "dpu-a", "dpf")
    mine = before.status.model_copy(update={"conditions": list(before.status.conditions)})
    cond.set_condition(mine.conditions, "T1", "False", "Err", "x", "t1", copy_on_write=True)
    after = store.update_status(before.with_status(mine))
    assert after.metadata.resource_version != before.metadata.resource_version
    assert after.status.conditions[0] is before.status.conditions[0]
    assert after.status.conditions[1] is not mine.conditions[1] and after.status.conditions[1].status == "False"
    assert before.status.conditions[1].status == "True"  # the old snapshot is untouched
