"""Manifests to run the operator in a real cluster: CRDs, RBAC and a Deployment (`dpf manifests`).

The ClusterRole is derived from the kind registry rather than written by hand: every kind a controller
may touch gets the verbs the store Client uses (get/list/watch for reads and kopf's watches, create/
update/patch/delete for writes, the status and finalizers subresources), so adding a kind to the core
cannot leave the operator without permission to use it. On top: Events, pod exec (uptime and host
reboots run in the DMS pod), ServiceAccount tokens (DPUServiceCredentialRequest), and read access to
CRDs and namespaces for kopf's discovery.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from dpf_core.api import registry
from dpf_core.api.crd import render_all

NAME = "dpf-operator"
NAMESPACE = "dpf-operator-system"
IMAGE = "ghcr.io/dpf-twin/dpf-twin:latest"
READ = ["get", "list", "watch"]
ALL = ["get", "list", "watch", "create", "update", "patch", "delete"]
LIVENESS_PORT = 8080
METRICS_PORT = 8081


def _labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "dpf-twin"}


def rbac_rules() -> list[dict[str, Any]]:
    registry.load_all()
    by_group: dict[str, list[str]] = {}
    for cls in registry.all_kinds():
        info = cls.KIND
        plurals = by_group.setdefault(info.group, [])
        for resource in (info.plural, f"{info.plural}/status", f"{info.plural}/finalizers"):
            if resource not in plurals:
                plurals.append(resource)
    rules: list[dict[str, Any]] = [
        {"apiGroups": [group], "resources": sorted(resources), "verbs": ALL}
        for group, resources in sorted(by_group.items())
    ]
    rules += [
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch", "update"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]},
        {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]},
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ALL},
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": READ},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ALL},
    ]
    return rules


def namespace(ns: str = NAMESPACE) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": _labels()}}


def service_account(ns: str = NAMESPACE) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME, "namespace": ns, "labels": _labels()}}


def cluster_role() -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": NAME, "labels": _labels()}, "rules": rbac_rules()}


def cluster_role_binding(ns: str = NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": NAME, "labels": _labels()},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": ns}],
    }


def deployment(ns: str = NAMESPACE, image: str = IMAGE, controllers: Iterable[str] = ("provisioning", "servicechain"),
               bfb_pvc: str = "bfb-pvc") -> dict[str, Any]:
    args = ["operator", "--controllers", ",".join(controllers), "--metrics-port", str(METRICS_PORT),
            "--liveness", f"http://0.0.0.0:{LIVENESS_PORT}/healthz", "--bfb-dir", "/bfb"]
    container = {
        "name": "manager",
        "image": image,
        "command": ["dpf"],
        "args": args,
        "env": [{"name": "DPF_OPERATOR_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
        "ports": [{"name": "healthz", "containerPort": LIVENESS_PORT}, {"name": "metrics", "containerPort": METRICS_PORT}],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "healthz"}, "initialDelaySeconds": 15, "periodSeconds": 20},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "bfb", "mountPath": "/bfb"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": ns, "labels": _labels()},
        "spec": {
            # One replica: the work queues live in the process (DPF's managers also run one active replica).
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
            "template": {
                "metadata": {"labels": _labels(),
                             "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT)}},
                "spec": {
                    "serviceAccountName": NAME,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "fsGroup": 65532},
                    "containers": [container],
                    "volumes": [{"name": "bfb", "persistentVolumeClaim": {"claimName": bfb_pvc}}],
                },
            },
        },
    }


def render(ns: str = NAMESPACE, image: str = IMAGE, controllers: Iterable[str] = ("provisioning", "servicechain")) -> dict[str, list[dict[str, Any]]]:
    """File stem -> documents."""
    return {
        "crds": render_all(),
        "rbac": [namespace(ns), service_account(ns), cluster_role(), cluster_role_binding(ns)],
        "operator": [deployment(ns, image, controllers)],
    }


def write(out: Path, ns: str = NAMESPACE, image: str = IMAGE,
          controllers: Iterable[str] = ("provisioning", "servicechain")) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for stem, docs in render(ns, image, controllers).items():
        path = out / f"{stem}.yaml"
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        written.append(path)
    return written
