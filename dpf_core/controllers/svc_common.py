"""What the DPUService-side controllers (dpuservice, dpudeployment, credential_request, operator_config) share:
the operator namespace, kubeconfig access data, values merging and content hashes."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from dpf_core.api.operator import DPFOperatorConfig
from dpf_core.api.provisioning import DPUCluster
from dpf_core.runtime import Context

from .dpucluster import kubeconfig_bytes


class PrerequisiteError(Exception):
    """Something the reconcile needs is not there yet (reported as a condition, retried)."""


def operator_config(ctx: Context) -> DPFOperatorConfig:
    """DPF requires exactly one DPFOperatorConfig: its namespace hosts the Argo objects."""
    configs = ctx.client.list(DPFOperatorConfig)
    if len(configs) != 1:
        raise PrerequisiteError(f"exactly one DPFOperatorConfig must exist, found {len(configs)}")
    return configs[0]


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Maps merged recursively; on any other conflict `override` wins (Helm's values coalescing)."""
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in base.items()}
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def content_hash(*parts: Any, length: int = 10) -> str:
    """A short, stable hash of JSON-able data: key order and whitespace do not change it."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class ClusterAccess:
    """What a client of a cluster needs, read from its kubeconfig (client-go's first cluster and user)."""

    cluster_name: str
    server: str
    ca_data: bytes = b""
    cert_data: bytes = b""
    key_data: bytes = b""


def _b64(value: Any) -> bytes:
    if not value:
        return b""
    try:
        return base64.b64decode(str(value))
    except ValueError:
        return b""


@functools.lru_cache(maxsize=256)
def parse_kubeconfig(data: bytes) -> ClusterAccess:
    """Cached: controllers hand the same Secret bytes over on every pass."""
    try:
        doc = yaml.safe_load(data)
        cluster = doc["clusters"][0]
        users = doc.get("users") or [{}]
        user = users[0].get("user") or {}
        return ClusterAccess(
            cluster_name=str(cluster["name"]),
            server=str(cluster["cluster"]["server"]),
            ca_data=_b64(cluster["cluster"].get("certificate-authority-data")),
            cert_data=_b64(user.get("client-certificate-data")),
            key_data=_b64(user.get("client-key-data")),
        )
    except (yaml.YAMLError, KeyError, IndexError, TypeError, AttributeError) as e:
        raise PrerequisiteError(f"kubeconfig has no usable cluster entry: {e}") from e


def cluster_access(ctx: Context, dc: DPUCluster) -> ClusterAccess:
    return parse_kubeconfig(kubeconfig_bytes(ctx, dc))


def b64(data: bytes | str) -> str:
    """Secret `data` values are base64 on the wire."""
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def unb64(data: str) -> bytes:
    return base64.b64decode(data)


def go_map(labels: dict[str, str]) -> str:
    """A map[string]string as Go's `%v` prints it in DPF's messages: `map[k1:v1 k2:v2]`, keys sorted."""
    return "map[" + " ".join(f"{k}:{labels[k]}" for k in sorted(labels)) + "]"
