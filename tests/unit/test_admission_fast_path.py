"""Admission's shortcuts give what its full path gives.

The full path (`full=True`) copies the whole object by pydantic's dump-and-validate round trip and compares
immutable paths by typed value, then on the wire. The default path keeps the top-level parts a replacement
shares with the stored snapshot (the status the store carries over, the spec of a metadata-only write) and
stops comparing an immutable path where both objects reach the same part. For every write below, both paths must accept the same object (values, types, fields set) or
raise the same error with the same causes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from dpf_core.api import admission, registry
from dpf_core.api.external import Node, Pod
from dpf_core.api.meta import KubeObject
from dpf_core.api.provisioning import BFB, DPU, DPUCluster, DPUSet
from dpf_core.api.svc import DPUService, DPUServiceIPAM, ServiceChain, ServiceInterface
from dpf_core.controllers.mirror import editable, with_metadata
from dpf_core.errors import ApiError
from dpf_core.store.memory import MemoryStore

NS = "dpf"
OWNER = {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u-1", "controller": True, "blockOwnerDeletion": True}
DOCS: dict[str, dict[str, Any]] = {
    "DPU": {"metadata": {"labels": {"a": "1"}, "finalizers": ["f/x"], "ownerReferences": [OWNER]},
            "spec": {"nodeName": "n1", "bfb": "bf", "pciAddress": "", "cluster": {"nodeLabels": {"x": "y"}}}},
    "DPUSet": {"spec": {"dpuTemplate": {"spec": {"bfb": {"name": "bf"}}}, "strategy": {"type": "RollingUpdate"}}},
    "BFB": {"spec": {"url": "http://example.com/a.bfb"}},
    "DPUCluster": {"spec": {"type": "static", "version": "v1.30.0"}},
    "DPUService": {"spec": {"helmChart": {"source": {"repoURL": "oci://example.com/c", "version": "1"}},
                            "serviceID": "s", "interfaces": ["p0"]}},
    "DPUServiceIPAM": {"spec": {"ipv4Network": {"network": "10.0.0.0/16", "prefixSize": 24}}},
    "ServiceInterface": {"metadata": {"labels": {"uplink": "p0"}, "ownerReferences": [OWNER]},
                         "spec": {"node": "n1", "interfaceType": "vf", "vf": {"vfID": 1, "pfID": 0, "parentInterfaceRef": "p0"}}},
    "ServiceChain": {"spec": {"node": "n1", "switches": [{"ports": [{"serviceInterface": {"matchLabels": {"a": "b"}}}]}]}},
    "Pod": {"metadata": {"labels": {"app": "x"}, "ownerReferences": [OWNER]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i", "env": [{"name": "A", "value": "1"}]}]}},
    "Node": {"metadata": {"labels": {"kubernetes.io/hostname": "n1"}}, "spec": {"taints": []}},
}
KINDS: dict[str, type[KubeObject]] = {c.KIND.kind: c for c in
                                      (DPU, DPUSet, BFB, DPUCluster, DPUService, DPUServiceIPAM, ServiceInterface, ServiceChain, Pod, Node)}


def _stored(kind: str) -> tuple[MemoryStore, Any]:
    store = MemoryStore(lambda: 1_700_000_000.0, seed=3)
    cls = KINDS[kind]
    doc = DOCS[kind]
    name = "n1" if kind == "Node" else "obj"
    namespace = None if kind == "Node" else ("dpf-operator-system" if kind == "DPUServiceIPAM" else NS)
    meta = {"name": name, "namespace": namespace, **doc.get("metadata", {})}
    obj = cls.model_validate({"apiVersion": cls.KIND.api_version, "kind": kind, **doc, "metadata": meta})
    return store, store.create(obj)


def _as_the_store_passes_it(new: KubeObject, old: KubeObject) -> KubeObject:
    """What MemoryStore.update hands admission: the caller's object with the server's metadata fields and,
    with a status subresource, the stored status (MemoryStore._update)."""
    om = old.metadata
    system = {"uid": om.uid, "creation_timestamp": om.creation_timestamp, "deletion_timestamp": om.deletion_timestamp,
              "deletion_grace_period_seconds": om.deletion_grace_period_seconds, "generation": om.generation,
              "resource_version": om.resource_version}
    update: dict[str, Any] = {"metadata": new.metadata.model_copy(update=system)}
    if old.KIND.status_subresource:
        update["status"] = getattr(old, "status", None)
    return new.model_copy(update=update)


def _fingerprint(v: Any) -> Any:
    """Everything the accepted object is: types, values and pydantic's fields-set at every level."""
    if isinstance(v, BaseModel):
        return (type(v).__name__, sorted(v.model_fields_set),
                {k: _fingerprint(x) for k, x in v.__dict__.items()},
                None if v.__pydantic_extra__ is None else _fingerprint(v.__pydantic_extra__))
    if isinstance(v, dict):
        return ("dict", [(k, _fingerprint(x)) for k, x in v.items()])
    if isinstance(v, list):
        return ("list", [_fingerprint(x) for x in v])
    return (type(v).__name__, repr(v))


def _outcome(fn: Callable[[], KubeObject]) -> tuple[Any, ...]:
    try:
        out = fn()
    except ApiError as e:
        causes = [(c.field, c.message, c.reason) for c in getattr(e, "causes", [])]
        return ("error", type(e).__name__, str(e), causes)
    except ValidationError as e:
        return ("pydantic", e.title, e.errors(include_url=False))
    return ("ok", _fingerprint(out), out.wire())


def _both(new: KubeObject, old: KubeObject, store: MemoryStore, *, copy: bool = True) -> tuple[Any, Any]:
    passed = _as_the_store_passes_it(new, old)
    full = _outcome(lambda: admission.admit_update(passed.deepcopy() if not copy else passed, old, store,
                                                   copy=copy, full=True))
    fast = _outcome(lambda: admission.admit_update(passed.deepcopy() if not copy else passed, old, store, copy=copy))
    return fast, full


def _deep(snap: KubeObject) -> KubeObject:
    return snap.deepcopy()


Edit = Callable[[Any], Any]


def _set(path: str, value: Any) -> Edit:
    """A deep copy with one attribute assigned in place (no validation: as a controller edits its copy)."""
    def edit(snap: Any) -> Any:
        new = snap.deepcopy()
        *parents, last = path.split(".")
        node = new
        for p in parents:
            node = getattr(node, p)
        setattr(node, last, value)
        return new
    edit.__name__ = f"set {path}={value!r}"
    return edit


def _meta(**changes: Any) -> Edit:
    def edit(snap: Any) -> Any:
        return with_metadata(snap, **changes)
    edit.__name__ = f"with_metadata {changes}"
    return edit


def _editable_label(snap: Any) -> Any:
    new = editable(snap)
    new.metadata.labels["added"] = "yes"
    return new


def _drop_finalizers(snap: Any) -> Any:
    new = snap.deepcopy()
    new.metadata.finalizers = []
    return new


# (kind, how the caller builds its replacement from the snapshot, the full path's outcome: ok, error, pydantic)
CASES: list[tuple[str, Edit, str]] = [
    # Valid: metadata-only writes that share spec (and status) with the snapshot, and full copies.
    *[(k, _meta(finalizers=["f/y"]), "ok") for k in KINDS],
    *[(k, _meta(labels={"l": "v"}, annotations={"k": "v"}), "ok") for k in KINDS],
    *[(k, _editable_label, "ok") for k in KINDS],
    *[(k, _deep, "ok") for k in KINDS],
    ("DPU", _drop_finalizers, "ok"),
    ("DPU", _meta(owner_references=[]), "ok"),
    ("DPU", _set("spec.cluster.name", "c1"), "ok"),  # immutable once set: unset before
    ("DPU", _set("spec.pci_address", "0000:03:00.0"), "ok"),  # "" counts as unset
    ("DPU", _set("spec.bfb", "other"), "ok"),
    ("DPUCluster", _set("spec.kubeconfig", "kc"), "ok"),
    ("ServiceChain", _set("spec.node", "n2"), "ok"),
    ("Node", _set("spec.unschedulable", True), "ok"),
    ("Pod", _set("spec.node_name", "n2"), "ok"),
    ("DPUService", _set("spec.paused", True), "ok"),
    # Immutable fields.
    ("DPU", _set("spec.node_name", "n2"), "error"),
    ("BFB", _set("spec.url", "http://example.com/b.bfb"), "error"),
    # Webhook rejections (vdpu, vdpuset, the IPAM webhook).
    ("DPU", _set("spec.node_effect.no_effect", True), "error"),  # drain is the default: two effects
    ("DPUSet", _set("spec.strategy.rolling_update", {"maxUnavailable": "0%"}), "error"),
    ("DPUServiceIPAM", _set("metadata.namespace", "elsewhere"), "error"),
    # Schema and CEL errors from values assigned without validation.
    ("DPU", _set("spec.automatic_node_reboot", "maybe"), "pydantic"),
    ("DPUService", _set("spec.service_id", None), "pydantic"),  # interfaces need a serviceID (CEL)
    ("ServiceInterface", _set("spec.vf", None), "pydantic"),  # interfaceType vf needs vf (CEL)
    ("ServiceChain", _set("spec.switches", "nope"), "pydantic"),
    ("Pod", _set("metadata.labels", {"x": 1}), "pydantic"),
    ("Node", _set("metadata.finalizers", ["ok", 2]), "pydantic"),
    ("DPU", _set("metadata.generation", "7"), "ok"),  # the store's own generation wins either way
]


@pytest.mark.parametrize(("kind", "edit", "expected"), CASES,
                         ids=[f"{k}-{getattr(e, '__name__', '?')}" for k, e, _ in CASES])
def test_update_fast_path_equals_full_path(kind: str, edit: Edit, expected: str) -> None:
    store, snap = _stored(kind)
    new = edit(snap)
    for copy in (True, False):
        fast, full = _both(new, snap, store, copy=copy)
        assert fast == full
        assert full[0] == expected, full


def test_a_cel_refusal_on_update_comes_before_the_webhook_on_both_paths() -> None:
    store, snap = _stored("DPU")
    new = snap.deepcopy()
    new.spec.node_name = "n2"
    new.spec.node_effect.no_effect = True
    fast, full = _both(new, snap, store)
    assert fast == full
    # The CRD's transition rule refuses first; the webhook is not called, as in a cluster.
    assert full[0] == "error" and [c[0] for c in full[3]] == ["spec.nodeName"]
    assert not full[2].startswith("admission webhook")


def test_a_webhook_refusal_on_update_carries_the_webhook_prefix_on_both_paths() -> None:
    store, snap = _stored("DPU")
    new = snap.deepcopy()
    new.spec.node_effect.no_effect = True
    fast, full = _both(new, snap, store)
    assert fast == full
    assert full[1] == "Invalid" and [c[0] for c in full[3]] == ["spec.nodeEffect"]
    assert full[2].startswith('admission webhook "vdpu.kb.io" denied the request: DPU.provisioning.dpu.nvidia.com "')


@pytest.mark.parametrize("kind", ["ServiceInterface", "DPU"])
def test_the_fast_path_shares_what_the_snapshot_shares_and_copies_the_rest(kind: str) -> None:
    store, snap = _stored(kind)
    new = with_metadata(snap, finalizers=["f/x"])
    passed = _as_the_store_passes_it(new, snap)
    out: Any = admission.admit_update(passed, snap, store)
    assert out.spec is snap.spec  # nothing copied or revalidated
    # A DPU's status always dumps (phase): shared. A ServiceInterface's empty status is left off the dump
    # and defaulted again, as the full round trip does.
    assert (out.status is snap.status) == (kind == "DPU") and out.status == snap.status
    assert out.metadata is not passed.metadata
    assert out.metadata.finalizers is not passed.metadata.finalizers
    assert out.metadata.owner_references[0] is not passed.metadata.owner_references[0]
    # The caller editing its object afterwards changes nothing admitted.
    passed.metadata.finalizers.append("later")
    passed.metadata.owner_references[0].name = "later"
    passed.metadata.labels["later"] = "x"
    assert out.metadata.finalizers == ["f/x"]
    assert out.metadata.owner_references[0].name == "n1" and "later" not in out.metadata.labels


def test_a_kind_with_defaulters_shares_nothing_with_the_snapshot() -> None:
    store, snap = _stored("DPUSet")
    out: Any = admission.admit_update(_as_the_store_passes_it(with_metadata(snap, labels={"a": "b"}), snap), snap, store)
    assert out.spec is not snap.spec and out.spec == snap.spec


IMMUTABLE_CASES: list[tuple[str, Edit]] = [
    ("DPU", _set("spec.cluster.name", "c1")),
    ("DPU", _set("spec.cluster", None)),
    ("DPU", _set("spec.pci_address", None)),
    ("DPU", _set("spec.node_name", "n2")),
    ("DPU", _deep),
    ("DPU", _meta(labels={})),
    ("DPUCluster", _set("spec.kubeconfig", "")),
    ("BFB", _set("spec.file_name", "other.bfb")),
    ("BFB", _set("spec", None)),
]


@pytest.mark.parametrize(("kind", "edit"), IMMUTABLE_CASES)
def test_immutability_shortcut_agrees_with_the_reference(kind: str, edit: Edit) -> None:
    store, snap = _stored(kind)
    # A second version with every `?` path set, so "once set" is exercised both ways.
    if kind == "DPU":
        second = snap.deepcopy()
        second.spec.cluster.name, second.spec.cluster.namespace, second.spec.pci_address = "c0", "ns", "0000:01:00.0"
        snaps = [snap, store.update(second)]
    else:
        snaps = [snap]
    paths = registry.hooks_for(type(snap)).immutable
    for old in snaps:
        new = edit(old)
        assert admission._immutability(new, old, paths) == admission._immutability_reference(new, old, paths)
