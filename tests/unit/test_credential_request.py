"""DPUServiceCredentialRequest: ServiceAccount + token in the target cluster, the Secret's exact keys,
refresh at 80% of the TTL (seeded jitter), rename, retarget and delete."""

from __future__ import annotations

import yaml
from svc_world import World

from dpf_core.api.conditions import get_condition
from dpf_core.api.external import Secret, ServiceAccount
from dpf_core.api.svc import FINALIZER_DPUSERVICE_CREDENTIAL_REQUEST, DPUServiceCredentialRequest
from dpf_core.controllers import credential_request
from dpf_core.controllers.credential_request import (
    jitter,
    next_requeue_time,
    parse_duration,
    requires_refresh,
    secret_data,
)
from dpf_core.runtime import parse_rfc3339

NS = "default"


def request(name: str = "cr", *, target: str | None = "dc1", type: str = "kubeconfig", duration: str = "1h",
            secret: str = "creds") -> DPUServiceCredentialRequest:
    spec: dict[str, object] = {"serviceAccount": {"name": "agent", "namespace": "tools"}, "type": type,
                               "duration": duration, "secret": {"name": secret, "namespace": NS},
                               "metadata": {"labels": {"team": "net"}}}
    if target is not None:
        spec["targetCluster"] = {"name": target, "namespace": "dpu-cplane"}
    return DPUServiceCredentialRequest.new(name, NS, spec=spec)


def world() -> World:
    return World(credential_request.controller(), operator_config=False)


def test_durations_and_refresh_window() -> None:
    assert parse_duration("1h30m") == 5400 and parse_duration("1.5h") == 5400 and parse_duration("250ms") == 0.25
    iat, exp = 1000.0, 1000.0 + 3600
    j = jitter("uid-1", iat, "refresh")
    assert 0 <= j <= 10 and j == jitter("uid-1", iat, "refresh") and j != jitter("uid-2", iat, "refresh")
    assert not requires_refresh(exp - 720 - 11, exp, iat, "uid-1")  # before 80% of the TTL (minus max jitter)
    assert requires_refresh(exp - 720 + 1, exp, iat, "uid-1")  # past 80%
    assert requires_refresh(iat + 24 * 3600, iat + 48 * 3600, iat, "uid-1")  # older than 24 h
    assert exp - 720 <= next_requeue_time(exp, iat, "uid-1") <= exp - 710


def test_kubeconfig_secret_for_a_dpu_cluster_service_account() -> None:
    w = world()
    w.apply(request())
    assert w.run() == 0
    sa = w.dpu["dc1"].get(ServiceAccount, "agent", "tools")
    assert sa.automount_service_account_token is False
    assert w.host.try_get(ServiceAccount, "agent", "tools") is None
    secret = w.host.get(Secret, "creds", NS)
    assert secret.type == "Opaque" and secret.metadata.labels == {"team": "net"}
    cfg = yaml.safe_load(secret_data(secret)["kubeconfig"])
    assert set(secret_data(secret)) == {"kubeconfig"}
    assert cfg["clusters"][0]["name"] == "dc1"
    assert cfg["clusters"][0]["cluster"]["server"] == "https://dc1.example:6443"
    assert cfg["current-context"] == "agent"
    assert cfg["contexts"][0]["context"] == {"cluster": "dc1", "namespace": "tools", "user": "agent"}
    assert cfg["users"][0] == {"name": "agent", "user": {"token": "token-1"}}
    cr = w.host.get(DPUServiceCredentialRequest, "cr", NS)
    st = cr.status
    assert (st.service_account, st.target_cluster, st.secret) == ("tools/agent", "dpu-cplane/dc1", "default/creds")
    assert st.expiration_timestamp is not None and st.issued_at is not None
    assert parse_rfc3339(st.expiration_timestamp) - parse_rfc3339(st.issued_at) == 3600
    assert FINALIZER_DPUSERVICE_CREDENTIAL_REQUEST in cr.metadata.finalizers
    ready = get_condition(st.conditions, "Ready")
    assert ready is not None and ready.status == "True"
    assert w.tokens.issued == [("token-1", "tools", "agent", 3600)]


def test_token_file_secret_for_the_host_cluster() -> None:
    w = world()
    w.apply(request(target=None, type="tokenFile"))
    assert w.run() == 0
    assert w.host.get(ServiceAccount, "agent", "tools").automount_service_account_token is False
    data = secret_data(w.host.get(Secret, "creds", NS))
    assert data == {"KUBERNETES_SERVICE_HOST": b"10.96.0.1", "KUBERNETES_SERVICE_PORT": b"443",
                    "KUBERNETES_CA_DATA": b"host-ca", "TOKEN_FILE": b"token-1"}
    assert w.host.get(DPUServiceCredentialRequest, "cr", NS).status.target_cluster is None


def test_token_is_refreshed_after_80_percent_of_its_ttl_and_not_before() -> None:
    w = world()
    w.apply(request())
    w.run()
    w.run(0.7 * 3600)
    assert len(w.tokens.issued) == 1
    w.run(0.15 * 3600)  # now past 80% + the jitter: the requeue fired and refreshed
    assert [t[0] for t in w.tokens.issued] == ["token-1", "token-2"]
    cfg = yaml.safe_load(secret_data(w.host.get(Secret, "creds", NS))["kubeconfig"])
    assert cfg["users"][0]["user"]["token"] == "token-2"


def test_duration_change_issues_a_new_token_at_once() -> None:
    w = world()
    w.apply(request())
    w.run()
    w.host.patch(DPUServiceCredentialRequest, "cr", NS, {"spec": {"duration": "2h"}})
    w.run()
    assert [t[3] for t in w.tokens.issued] == [3600, 7200]


def test_renamed_secret_moves_with_its_data() -> None:
    w = world()
    w.apply(request())
    w.run()
    before = w.host.get(Secret, "creds", NS).data
    w.host.patch(DPUServiceCredentialRequest, "cr", NS, {"spec": {"secret": {"name": "creds-2"}}})
    w.run()
    assert w.host.try_get(Secret, "creds", NS) is None
    assert w.host.get(Secret, "creds-2", NS).data == before
    assert len(w.tokens.issued) == 1


def test_retargeting_deletes_the_service_account_in_the_old_cluster() -> None:
    w = world()
    w.add_cluster("dc2")
    w.apply(request())
    w.run()
    w.host.patch(DPUServiceCredentialRequest, "cr", NS, {"spec": {"targetCluster": {"name": "dc2", "namespace": "dpu-cplane"}}})
    w.run()
    assert w.dpu["dc1"].try_get(ServiceAccount, "agent", "tools") is None
    assert w.dpu["dc2"].try_get(ServiceAccount, "agent", "tools") is not None
    cfg = yaml.safe_load(secret_data(w.host.get(Secret, "creds", NS))["kubeconfig"])
    assert cfg["clusters"][0]["name"] == "dc2" and cfg["users"][0]["user"]["token"] == "token-2"


def test_delete_removes_service_account_and_secret() -> None:
    w = world()
    w.apply(request())
    w.run()
    w.host.delete(DPUServiceCredentialRequest, "cr", NS)
    assert w.run() == 0
    assert w.host.try_get(DPUServiceCredentialRequest, "cr", NS) is None
    assert w.host.try_get(Secret, "creds", NS) is None
    assert w.dpu["dc1"].try_get(ServiceAccount, "agent", "tools") is None


def test_missing_target_cluster_is_an_error_condition() -> None:
    w = world()
    w.apply(request(target="nope"))
    assert w.run() > 0
    st = w.host.get(DPUServiceCredentialRequest, "cr", NS).status
    c = get_condition(st.conditions, "ServiceAccountReconciled")
    assert c is not None and c.status == "False" and c.reason == "Error" and "nope" in c.message
    ready = get_condition(st.conditions, "Ready")
    assert ready is not None and ready.status == "False"
    assert w.host.try_get(Secret, "creds", NS) is None
