"""scenarios/credential-request.yaml, plus the Secrets' exact keys and what they point at."""

from __future__ import annotations

import itertools

import yaml
from services_helpers import run

from dpf_core.api.external import Secret
from dpf_core.api.svc import DPUServiceCredentialRequest
from dpf_core.controllers.credential_request import secret_data
from dpf_core.runtime import parse_rfc3339

NS = "dpf-operator-system"


def test_credential_request_scenario_keeps_tokens_fresh_for_three_days() -> None:
    runner = run("credential-request.yaml")
    twin = runner.twin
    tokens = twin.services.tokens
    kube = secret_data(twin.host.get(Secret, "dpu-monitor-kubeconfig", NS))
    assert set(kube) == {"kubeconfig"}
    cfg = yaml.safe_load(kube["kubeconfig"])
    assert cfg["clusters"][0]["cluster"]["server"] == "twin://dpu-cplane-tenant1/dpu-cplane-tenant1"
    assert cfg["current-context"] == "monitor" and cfg["users"][0]["name"] == "monitor"
    assert tokens.valid(cfg["users"][0]["user"]["token"])
    token_file = secret_data(twin.host.get(Secret, "host-agent-token-v2", NS))
    assert set(token_file) == {"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KUBERNETES_CA_DATA", "TOKEN_FILE"}
    assert token_file["KUBERNETES_SERVICE_HOST"] == b"10.96.0.1" and token_file["KUBERNETES_SERVICE_PORT"] == b"443"
    assert tokens.valid(token_file["TOKEN_FILE"].decode())
    # Status: issuedAt = expiration - TTL, and the last refresh was within the last 20% (+10 s) of a TTL.
    for name, ttl in (("dpu-monitor", 10 * 3600), ("host-agent", 6 * 3600)):
        st = twin.host.get(DPUServiceCredentialRequest, name, NS).status
        assert st.expiration_timestamp and st.issued_at
        exp, iat = parse_rfc3339(st.expiration_timestamp), parse_rfc3339(st.issued_at)
        assert exp - iat == ttl
        assert twin.clock.now() < exp
    refreshes = [r.issued_at for r in tokens.issued if r.service_account == "host-agent"]
    gaps = [b - a for a, b in itertools.pairwise(refreshes)]
    assert all(0.8 * 6 * 3600 - 10 <= g <= 0.8 * 6 * 3600 + 10 for g in gaps), gaps
