"""DPUServiceCredentialRequest: a ServiceAccount and a token in a target cluster (a DPU cluster, or the host when
`targetCluster` is nil), handed to workloads as a Secret in the host cluster.

One pass (DPF's dpuservicecredentialrequest controller, GenerationChanged predicate, so only spec edits and the
controller's own requeues run it):
1. deleting -> delete the ServiceAccount (when the target cluster still exists) and the Secret, drop the finalizer;
2. add the finalizer (return);
3. ServiceAccount: a renamed SA or a moved target cluster deletes the old SA and forgets the token; a token is
   kept while it is not within 20% of its TTL (minus a 0-10 s jitter) of expiry, younger than 24 h and the
   duration is unchanged; otherwise the SA is applied (`automountServiceAccountToken: false`) and a token
   requested (`expirationSeconds` = duration) through the TokenIssuer port; issuedAt = expiration - TTL;
4. Secret (Opaque, host, `metadata` from the spec): `kubeconfig` -> key `kubeconfig` (cluster entry named after
   the target's kubeconfig cluster or `incluster`; user and context = SA name); `tokenFile` -> keys
   `KUBERNETES_SERVICE_HOST`, `KUBERNETES_SERVICE_PORT`, `KUBERNETES_CA_DATA`, `TOKEN_FILE`. A renamed Secret
   deletes the old one and carries its data over;
5. requeue at expiration - 20% TTL + jitter.

Differences from DPF (docs/differences.md):
- The jitter is deterministic: drawn from a random stream seeded with the object's uid and the token's issue
  time, so a twin run replays exactly and two requests issued together still spread their refreshes.
- When the target cluster changes, the old ServiceAccount is deleted in the OLD cluster (DPF deletes it through
  the new cluster's client, leaving the old one behind).
"""

from __future__ import annotations

import contextlib
import random
import re
from dataclasses import dataclass
from typing import Protocol

import yaml

from dpf_core.api.conditions import REASON_ERROR, init_conditions, set_condition, summarize_ready
from dpf_core.api.external import SECRET_TYPE_OPAQUE, Secret, ServiceAccount
from dpf_core.api.provisioning import DPUCluster
from dpf_core.api.svc import (
    CONDITION_SECRET_RECONCILED,
    CONDITION_SERVICE_ACCOUNT_RECONCILED,
    FINALIZER_DPUSERVICE_CREDENTIAL_REQUEST,
    SECRET_TYPE_KUBECONFIG,
    SECRET_TYPE_TOKEN_FILE,
    DPUServiceCredentialRequest,
)
from dpf_core.errors import NotFound
from dpf_core.runtime import DONE, Context, Controller, Request, Result, generation_changed, parse_rfc3339, rfc3339
from dpf_core.store.protocol import Client

from .dpucluster import cluster_client
from .mirror import write
from .svc_common import ClusterAccess, b64, cluster_access, unb64

NAME = "dpuservicecredentialrequest"
TOKEN_ISSUER = "tokens"  # key of the TokenIssuer in Ports.extra

DEFAULT_EXPIRATION_SECONDS = 3600  # the TokenRequest API's default when expirationSeconds is nil
MAX_TTL = 24 * 3600.0
MAX_JITTER = 10.0
REFRESH_FRACTION = 0.2  # refresh within the last 20% of the TTL

KEY_KUBECONFIG = "kubeconfig"
KEY_HOST = "KUBERNETES_SERVICE_HOST"
KEY_PORT = "KUBERNETES_SERVICE_PORT"
KEY_CA = "KUBERNETES_CA_DATA"
KEY_TOKEN_FILE = "TOKEN_FILE"
IN_CLUSTER_NAME = "incluster"

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expiration: float  # epoch seconds


class TokenIssuer(Protocol):
    """The ServiceAccount token subresource, and how pods in the host reach their own API server."""

    def request_token(self, client: Client, namespace: str, service_account: str, expiration_seconds: int) -> IssuedToken:
        """TokenRequest for an existing ServiceAccount in the cluster behind `client`."""
        ...

    def local_access(self) -> ClusterAccess:
        """The host cluster's API server as pods see it (KUBERNETES_SERVICE_HOST/PORT, mounted CA)."""
        ...


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration for the CRD's pattern (`1h30m`, `90s`, `1.5h`)."""
    total = 0.0
    for number, unit in _DURATION_PART.findall(text):
        total += float(number) * _UNIT[unit]
    return total


def jitter(uid: str, issued_at: float, salt: str) -> float:
    """0..10 s, fixed for one token of one object (seeded, so a replay decides the same)."""
    return random.Random(f"{uid}/{issued_at:.0f}/{salt}").uniform(0.0, MAX_JITTER)


def requires_refresh(now: float, expiration: float, issued_at: float, uid: str) -> bool:
    ttl = expiration - issued_at
    j = jitter(uid, issued_at, "refresh")
    if now > issued_at + MAX_TTL - j:
        return True
    return now > expiration - int(ttl * 20 // 100) - j


def next_requeue_time(expiration: float, issued_at: float, uid: str) -> float:
    ttl = expiration - issued_at
    return expiration - int(ttl * 20 // 100) + jitter(uid, issued_at, "requeue")


def _ns_name(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def _split(value: str) -> tuple[str, str]:
    ns, _, name = value.partition("/")
    return ns, name


class CredentialRequestReconciler:
    def reconcile(self, ctx: Context, req: Request) -> Result:
        found = ctx.client.try_get(DPUServiceCredentialRequest, req.name, req.namespace)
        if found is None:
            return DONE
        obj = found
        new = obj.deepcopy()
        now = ctx.timestamp()
        init_conditions(new.status.conditions, (CONDITION_SERVICE_ACCOUNT_RECONCILED, CONDITION_SECRET_RECONCILED), now)
        error: Exception | None = None
        result = DONE
        try:
            if obj.metadata.deletion_timestamp is not None:
                self._reconcile_delete(ctx, new)
            elif FINALIZER_DPUSERVICE_CREDENTIAL_REQUEST not in obj.metadata.finalizers:
                new.metadata.finalizers.append(FINALIZER_DPUSERVICE_CREDENTIAL_REQUEST)
                result = Result(requeue=True)
            else:
                result = self._reconcile(ctx, new, now)
        except Exception as e:
            error = e
        # DPF's SetSummary over whatever conditions are present.
        summarize_ready(new.status.conditions, None, now)
        write(ctx, obj, new)
        if error is not None:
            raise error
        return result

    # --- the flow ---------------------------------------------------------------------------------------
    def _target(self, ctx: Context, cluster_ref: str | None) -> tuple[Client, ClusterAccess | None]:
        """The target cluster's client and access data; the host (this client) when `cluster_ref` is None."""
        if cluster_ref is None:
            return ctx.client, None
        ns, name = _split(cluster_ref)
        dc = ctx.client.try_get(DPUCluster, name, ns)
        if dc is None:
            # DPF wraps the API server's NotFound as is; users read this text in the condition message.
            kind = DPUCluster.KIND
            raise NotFound(f'error while getting DPU cluster {name}: {kind.plural}.{kind.group} "{name}" not found')
        return cluster_client(ctx, dc), cluster_access(ctx, dc)

    def _reconcile(self, ctx: Context, new: DPUServiceCredentialRequest, now: str) -> Result:
        spec, status = new.spec, new.status
        conds = status.conditions
        target_ref = (
            _ns_name(spec.target_cluster.get_namespace(), spec.target_cluster.name) if spec.target_cluster else None
        )
        try:
            client, access = self._target(ctx, target_ref)
            token = self._reconcile_service_account(ctx, new, client, target_ref)
        except Exception as e:
            set_condition(conds, CONDITION_SERVICE_ACCOUNT_RECONCILED, "False", REASON_ERROR, f"Error occurred: {e}", now)
            raise
        set_condition(conds, CONDITION_SERVICE_ACCOUNT_RECONCILED, "True", CONDITION_SERVICE_ACCOUNT_RECONCILED, "", now)
        status.service_account = _ns_name(spec.service_account.get_namespace(), spec.service_account.name)
        status.target_cluster = target_ref
        try:
            self._reconcile_secret(ctx, new, access, token)
        except Exception as e:
            set_condition(conds, CONDITION_SECRET_RECONCILED, "False", REASON_ERROR, f"Error occurred: {e}", now)
            raise
        set_condition(conds, CONDITION_SECRET_RECONCILED, "True", CONDITION_SECRET_RECONCILED, "", now)
        status.secret = _ns_name(spec.secret.get_namespace(), spec.secret.name)
        if status.expiration_timestamp is None or status.issued_at is None:
            raise RuntimeError("expiration or issued at time is not set")
        at = next_requeue_time(parse_rfc3339(status.expiration_timestamp), parse_rfc3339(status.issued_at),
                               new.metadata.uid or "")
        return Result(requeue_after=max(at - ctx.now(), 1.0))

    def _delete_service_account(self, client: Client | None, new: DPUServiceCredentialRequest) -> None:
        status = new.status
        if status.service_account is None:
            return
        if client is not None:
            ns, name = _split(status.service_account)
            with contextlib.suppress(NotFound):
                client.delete(ServiceAccount, name, ns)
        status.service_account = None
        status.target_cluster = None
        status.expiration_timestamp = None
        status.issued_at = None

    def _old_target_client(self, ctx: Context, new: DPUServiceCredentialRequest) -> Client | None:
        try:
            return self._target(ctx, new.status.target_cluster)[0]
        except NotFound:
            return None  # the cluster is gone and its ServiceAccounts with it

    def _reconcile_service_account(self, ctx: Context, new: DPUServiceCredentialRequest, client: Client,
                                   target_ref: str | None) -> str:
        spec, status = new.spec, new.status
        sa_ns, sa_name = spec.service_account.get_namespace(), spec.service_account.name
        moved = status.service_account is not None and (
            status.service_account != _ns_name(sa_ns, sa_name) or status.target_cluster != target_ref
        )
        if moved:
            self._delete_service_account(self._old_target_client(ctx, new), new)
        if status.expiration_timestamp is not None and status.issued_at is not None:
            exp, iat = parse_rfc3339(status.expiration_timestamp), parse_rfc3339(status.issued_at)
            fresh = not requires_refresh(ctx.now(), exp, iat, new.metadata.uid or "")
            if fresh and (spec.duration is None or int(exp - iat) == int(parse_duration(spec.duration))):
                return ""
        seconds = int(parse_duration(spec.duration)) if spec.duration else DEFAULT_EXPIRATION_SECONDS
        sa = ServiceAccount.new(sa_name, sa_ns, automountServiceAccountToken=False)
        existing = client.try_get(ServiceAccount, sa_name, sa_ns)
        if existing is None:
            client.create(sa)
        elif existing.automount_service_account_token is not False:
            fixed = existing.deepcopy()
            fixed.automount_service_account_token = False
            client.update(fixed)
        issuer = _issuer(ctx)
        issued = issuer.request_token(client, sa_ns, sa_name, seconds)
        status.expiration_timestamp = rfc3339(issued.expiration)
        status.issued_at = rfc3339(issued.expiration - seconds)
        return issued.token

    def _reconcile_secret(self, ctx: Context, new: DPUServiceCredentialRequest, access: ClusterAccess | None,
                          token: str) -> None:
        spec, status = new.spec, new.status
        ns, name = spec.secret.get_namespace(), spec.secret.name
        data: dict[str, str] | None = None
        if status.secret is not None and status.secret != _ns_name(ns, name):
            old_ns, old_name = _split(status.secret)
            old = ctx.client.try_get(Secret, old_name, old_ns)
            if old is not None:
                data = dict(old.data)
                with contextlib.suppress(NotFound):
                    ctx.client.delete(Secret, old_name, old_ns)
            status.secret = None
        if token:
            if access is None:
                access = _issuer(ctx).local_access()
            data = self._render(new, access, token)
        existing = ctx.client.try_get(Secret, name, ns)
        if data is None:
            data = dict(existing.data) if existing is not None else {}
        labels = dict(spec.metadata.labels) if spec.metadata else {}
        annotations = dict(spec.metadata.annotations) if spec.metadata else {}
        if existing is None:
            ctx.client.create(Secret.new(name, ns, type=SECRET_TYPE_OPAQUE, data=data,
                                         metadata={"name": name, "namespace": ns, "labels": labels,
                                                   "annotations": annotations}))
            return
        updated = existing.deepcopy()
        updated.type = SECRET_TYPE_OPAQUE
        updated.data = data
        updated.metadata.labels = {**existing.metadata.labels, **labels}
        updated.metadata.annotations = {**existing.metadata.annotations, **annotations}
        if updated.wire() != existing.wire():
            ctx.client.update(updated)

    def _render(self, new: DPUServiceCredentialRequest, access: ClusterAccess, token: str) -> dict[str, str]:
        spec = new.spec
        if spec.type == SECRET_TYPE_KUBECONFIG:
            user = spec.service_account.name
            cluster_name = access.cluster_name if access.cluster_name else IN_CLUSTER_NAME
            cluster: dict[str, str] = {"server": access.server}
            if access.ca_data:
                cluster["certificate-authority-data"] = b64(access.ca_data)
            doc = {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": cluster_name, "cluster": cluster}],
                "contexts": [{"name": user, "context": {"cluster": cluster_name, "namespace":
                                                       spec.service_account.get_namespace(), "user": user}}],
                "current-context": user,
                "users": [{"name": user, "user": {"token": token}}],
                "preferences": {},
            }
            return {KEY_KUBECONFIG: b64(yaml.safe_dump(doc, sort_keys=True))}
        if spec.type == SECRET_TYPE_TOKEN_FILE:
            host, port = _host_port(access.server)
            return {KEY_HOST: b64(host), KEY_PORT: b64(port), KEY_CA: b64(access.ca_data), KEY_TOKEN_FILE: b64(token)}
        raise ValueError(f"unsupported secret type: {spec.type}")

    def _reconcile_delete(self, ctx: Context, new: DPUServiceCredentialRequest) -> None:
        status = new.status
        client = self._old_target_client(ctx, new) if status.target_cluster is not None else ctx.client
        self._delete_service_account(client, new)
        if status.secret is not None:
            ns, name = _split(status.secret)
            with contextlib.suppress(NotFound):
                ctx.client.delete(Secret, name, ns)
            status.secret = None
        new.metadata.finalizers = [f for f in new.metadata.finalizers if f != FINALIZER_DPUSERVICE_CREDENTIAL_REQUEST]


def _host_port(server: str) -> tuple[str, str]:
    """DPF splits the URL only when it has a colon (scheme or port); the port may be empty."""
    if ":" not in server:
        return "", ""
    rest = server.split("://", 1)[1] if "://" in server else server
    hostport = rest.split("/", 1)[0]
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        return host, tail.removeprefix(":")
    host, _, port = hostport.partition(":")
    return host, port


def _issuer(ctx: Context) -> TokenIssuer:
    ports = ctx.ports
    issuer = getattr(ports, "extra", {}).get(TOKEN_ISSUER) if ports is not None else None
    if issuer is None:
        raise RuntimeError(f"{ctx.controller or NAME}: no TokenIssuer port supplied (Ports.extra[{TOKEN_ISSUER!r}])")
    return issuer  # type: ignore[no-any-return]


def secret_data(secret: Secret) -> dict[str, bytes]:
    """The decoded data of a Secret (tests and the twin read what the controller wrote)."""
    return {k: unb64(v) for k, v in secret.data.items()}


def controller() -> Controller:
    return Controller(NAME, CredentialRequestReconciler(), DPUServiceCredentialRequest, for_predicate=generation_changed)
