"""A Secret as the API server keeps it: `stringData` folded into `data` on every write and never stored,
`data` values base64 (re-encoded as Go's []byte would be), `type` defaulted to Opaque and immutable, an
`immutable: true` Secret frozen. Every store goes through the same admission, so the readers of kubeconfig
Secrets (DPU controller, DPUCluster health check, the twin's static-cluster stand-in) only read `data`."""

from __future__ import annotations

import base64
from types import SimpleNamespace
from typing import Any

import pytest

from dpf_core.api import admission
from dpf_core.api.external import Namespace, Secret
from dpf_core.api.provisioning import DPUCluster
from dpf_core.controllers.dpu import kubeconfig_of
from dpf_core.controllers.dpucluster import kubeconfig_bytes
from dpf_core.errors import BadRequest, Invalid
from dpf_core.store.memory import MemoryStore

NS = "dpf-operator-system"
KUBECONFIG = b"apiVersion: v1\nkind: Config\nclusters: []\n"


def b64(raw: bytes | str) -> str:
    return base64.b64encode(raw.encode() if isinstance(raw, str) else raw).decode()


def secret(name: str = "s", **body: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}, **body}


@pytest.fixture
def store() -> MemoryStore:
    s = MemoryStore(lambda: 0.0)
    s.create(Namespace.new(NS))
    return s


def test_create_folds_string_data_into_data_and_string_data_wins_per_key(store: MemoryStore) -> None:
    created = store.create(admission.decode(secret(data={"a": b64("from data"), "b": b64("kept")},
                                                   stringData={"a": "from stringData", "c": "plain ü"})))
    wire = store.get(Secret, "s", NS).wire()
    assert "stringData" not in wire and created.wire() == wire
    assert wire["data"] == {"a": b64("from stringData"), "b": b64("kept"), "c": b64("plain ü".encode())}
    assert wire["type"] == "Opaque"
    assert created.value("c") == "plain ü".encode() and created.value("missing") is None


def test_the_callers_object_is_left_as_written(store: MemoryStore) -> None:
    """Controllers build Secrets with stringData (DPF's bootstrap token): admission works on its own copy."""
    mine = Secret.model_validate(secret(stringData={"token-id": "abcdef"}))
    store.create(mine)
    assert mine.string_data == {"token-id": "abcdef"} and mine.data == {}
    assert store.get(Secret, "s", NS).data == {"token-id": b64("abcdef")}


def test_decode_alone_keeps_the_manifest_as_written() -> None:
    """stringData is part of the wire format a manifest may carry: only the write path folds it."""
    raw = secret(stringData={"k": "v"})
    assert admission.decode(raw).wire() == raw


@pytest.mark.parametrize("how", ["update", "merge", "json"])
def test_every_write_folds_string_data(store: MemoryStore, how: str) -> None:
    store.create(admission.decode(secret(data={"old": b64("1")})))
    if how == "update":
        edited = store.get(Secret, "s", NS).deepcopy()
        edited.string_data = {"new": "2"}
        got = store.update(edited)
    elif how == "merge":
        got = store.patch(Secret, "s", NS, {"stringData": {"new": "2"}}, "merge")
    else:
        got = store.patch(Secret, "s", NS, [{"op": "add", "path": "/stringData", "value": {"new": "2"}}], "json")
    assert got.data == {"old": b64("1"), "new": b64("2")} and got.string_data == {}
    assert "stringData" not in store.get(Secret, "s", NS).wire()


def test_rewriting_the_same_string_data_changes_nothing(store: MemoryStore) -> None:
    """kubectl apply re-sends stringData each time: the stored object (and its resourceVersion) stays."""
    first = store.create(admission.decode(secret(stringData={"k": "v"})))
    again = store.patch(Secret, "s", NS, {"stringData": {"k": "v"}}, "merge")
    assert again.metadata.resource_version == first.metadata.resource_version


def test_data_is_base64_stored_as_go_reencodes_it(store: MemoryStore) -> None:
    wrapped = b64(KUBECONFIG)
    folded = wrapped[:20] + "\n" + wrapped[20:] + "\r\n"
    got = store.create(admission.decode(secret(data={"admin.conf": folded, "loose": "YR=="})))
    # "YR==" has trailing bits set: Go accepts it (not Strict) and writes back the canonical "YQ==".
    assert got.data == {"admin.conf": wrapped, "loose": "YQ=="}


@pytest.mark.parametrize(("value", "byte"), [("YW?j", 2), ("YWJ", 0), ("YWJjZA", 4), ("not base64!", 3)])
def test_data_that_is_not_base64_is_a_bad_request(store: MemoryStore, value: str, byte: int) -> None:
    with pytest.raises(BadRequest) as err:
        store.create(admission.decode(secret(data={"k": value})))
    assert err.value.message == f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte {byte}'
    assert store.try_get(Secret, "s", NS) is None
    store.create(admission.decode(secret(data={"k": b64("ok")})))
    with pytest.raises(BadRequest):
        store.patch(Secret, "s", NS, {"data": {"k": value}}, "merge")
    assert store.get(Secret, "s", NS).data == {"k": b64("ok")}


def test_keys_must_be_config_keys(store: MemoryStore) -> None:
    with pytest.raises(Invalid) as err:
        store.create(admission.decode(secret(stringData={"bad key": "x", "ok.key_-1": "y"})))
    [cause] = err.value.causes
    assert cause.field == "data[bad key]" and cause.message.startswith('Invalid value: "bad key": a valid config key')


def test_type_defaults_to_opaque_and_never_changes(store: MemoryStore) -> None:
    store.create(admission.decode(secret(stringData={"k": "v"})))
    with pytest.raises(Invalid) as err:
        store.patch(Secret, "s", NS, {"type": "kubernetes.io/tls"}, "merge")
    assert [(c.field, c.message) for c in err.value.causes] == [("type", 'Invalid value: "kubernetes.io/tls": field is immutable')]
    # A PUT without type is defaulted again, so it is no change of type.
    edited = store.get(Secret, "s", NS).deepcopy()
    edited.type = None
    edited.string_data = {"k": "w"}
    assert store.update(edited).type == "Opaque"


def test_an_immutable_secret_keeps_its_data_and_stays_immutable(store: MemoryStore) -> None:
    store.create(admission.decode(secret(stringData={"k": "v"}, immutable=True)))
    with pytest.raises(Invalid) as err:
        store.patch(Secret, "s", NS, {"stringData": {"k": "changed"}}, "merge")
    assert [c.field for c in err.value.causes] == ["data"]
    with pytest.raises(Invalid) as err:
        store.patch(Secret, "s", NS, {"immutable": False}, "merge")
    assert [c.field for c in err.value.causes] == ["immutable"]
    # Metadata still changes (labels are not data).
    assert store.patch(Secret, "s", NS, {"metadata": {"labels": {"a": "b"}}}, "merge").metadata.labels == {"a": "b"}
    assert store.get(Secret, "s", NS).data == {"k": b64("v")}


def test_kubeconfig_readers_find_a_kubeconfig_written_as_string_data(store: MemoryStore) -> None:
    stored = store.create(admission.decode(secret("lab-kubeconfig", stringData={"admin.conf": KUBECONFIG.decode()})))
    assert kubeconfig_of(stored) == KUBECONFIG
    dc = DPUCluster.model_validate({"apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "DPUCluster",
                                    "metadata": {"name": "lab", "namespace": NS},
                                    "spec": {"type": "static", "version": "v1.30.2", "kubeconfig": "lab-kubeconfig"}})
    ctx: Any = SimpleNamespace(client=store)  # the health check's Secret read needs only the client
    assert kubeconfig_bytes(ctx, dc) == KUBECONFIG
