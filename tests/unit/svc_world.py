"""A host store and one or more DPU-cluster stores wired for the DPUService-side controllers (unit tests)."""

from __future__ import annotations

import base64
from typing import Any

import yaml
from fakes import PatchableStore

from dpf_core.api.external import Secret
from dpf_core.api.operator import DPFOperatorConfig
from dpf_core.api.provisioning import DPUCluster
from dpf_core.controllers.credential_request import TOKEN_ISSUER, IssuedToken
from dpf_core.controllers.svc_common import ClusterAccess
from dpf_core.ports import Ports
from dpf_core.runtime import Controller, Manager, ManualClock, SyncDriver
from dpf_core.store import MemoryStore
from dpf_core.store.protocol import Client

OP_NS = "dpf-operator-system"


def kubeconfig(name: str) -> bytes:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": f"https://{name}.example:6443",
                                                "certificate-authority-data": base64.b64encode(b"ca-" + name.encode()).decode()}}],
        "users": [{"name": "admin", "user": {"client-certificate-data": base64.b64encode(b"cert").decode(),
                                             "client-key-data": base64.b64encode(b"key").decode()}}],
        "contexts": [{"name": "admin", "context": {"cluster": name, "user": "admin"}}],
        "current-context": "admin",
    }).encode()


class Clients:
    """ClusterClients: each DPU cluster's kubeconfig names its store."""

    def __init__(self) -> None:
        self.by_kubeconfig: dict[bytes, Client] = {}

    def for_kubeconfig(self, data: bytes) -> Client | None:
        return self.by_kubeconfig.get(data)


class Tokens:
    """TokenIssuer: numbered tokens valid for the requested TTL from the clock's now."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.issued: list[tuple[str, str, str, int]] = []  # (token, namespace, service account, seconds)

    def request_token(self, client: Client, namespace: str, service_account: str, expiration_seconds: int) -> IssuedToken:
        token = f"token-{len(self.issued) + 1}"
        self.issued.append((token, namespace, service_account, expiration_seconds))
        return IssuedToken(token=token, expiration=self.clock.now() + expiration_seconds)

    def local_access(self) -> ClusterAccess:
        return ClusterAccess("incluster", "https://10.96.0.1:443", b"host-ca")


class World:
    def __init__(self, *controllers: Controller, clusters: int = 1, operator_config: bool = True) -> None:
        self.clock = ManualClock()
        self.host = PatchableStore(clock=self.clock.now, name="host")  # brownout tests replace its reads
        self.clients = Clients()
        self.tokens = Tokens(self.clock)
        self.dpu: dict[str, MemoryStore] = {}
        for i in range(clusters):
            self.add_cluster(f"dc{i + 1}")
        if operator_config:
            self.host.create(DPFOperatorConfig.new("dpfoperatorconfig", OP_NS, spec={
                "provisioningController": {"bfbPVCName": "bfb-pvc"}}))
        self.ports = Ports(clusters=self.clients, extra={TOKEN_ISSUER: self.tokens})
        self.mgr = Manager(self.host, self.clock, ports=self.ports)
        for c in controllers:
            self.mgr.add(c)
        self.driver = SyncDriver(self.mgr)

    def add_cluster(self, name: str, ns: str = "dpu-cplane") -> MemoryStore:
        store = MemoryStore(clock=self.clock.now, name=name)
        data = kubeconfig(name)
        self.clients.by_kubeconfig[data] = store
        self.host.create(Secret.new(f"{name}-admin-kubeconfig", ns, data={"admin.conf": base64.b64encode(data).decode()}))
        self.host.create(DPUCluster.new(name, ns, spec={"type": "static", "version": "v1.30.2",
                                                        "kubeconfig": f"{name}-admin-kubeconfig"}))
        self.dpu[name] = store
        return store

    def run(self, seconds: float = 1.0) -> int:
        return self.driver.run_for(seconds, max_steps=5000).errors

    def apply(self, obj: Any) -> Any:
        return self.host.create(obj)
