"""The DPUService world of the twin, as an attachment (`TwinConfig.attachments=("services",)`).

`attach(twin)` wires:
- a host Manager "dpuservice" with the core's credential-request, DPUService, DPUDeployment and
  DPFOperatorConfig controllers (and, unless `models.services.serviceChainControllers: false`, the
  DPUServiceInterface/Chain/IPAM mirrors, which the servicechain attachment wires when it is there), with the ClusterClients port and a TokenIssuer;
- ArgoCD (dpf_sim.argocd) with the chart catalogue from `models.charts` (the scenario's `charts:`);
- a Kubelet for the host (workloads only: the host's pods are run by ClusterWorld) and one per DPU cluster as it
  is created, whose Nodes get allocatable = the BlueField's resources (`dpuNodeResources`), those its DPU's
  flavor names in dpuResources replaced by dpuResources - systemReservedResources;
- per DPU cluster (same switch as above) a Manager with the servicechainset, NVIPAM and IPAM-injector controllers.

Parameters: `models.services: {kubelet: {...}, argocd: {...}, serviceChainControllers: bool, dpuNodeResources: {...}}`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from dpf_core import system
from dpf_core.api.external import Secret, ServiceAccount
from dpf_core.api.meta import Model
from dpf_core.api.provisioning import DPUFlavor
from dpf_core.api.quantity import format_quantity, parse_quantity
from dpf_core.api.svc import DPUServiceCredentialRequest
from dpf_core.controllers import credential_request, dpudeployment, dpuservice, operator_config
from dpf_core.controllers.svc_common import ClusterAccess
from dpf_core.errors import NotFound
from dpf_core.ports import Ports
from dpf_core.runtime import EventRecorder, Manager, Recorder, parse_rfc3339, rfc3339
from dpf_core.store.memory import MemoryStore
from dpf_core.store.protocol import Client, WatchEvent

from .argocd import ArgoCD, ArgoParams, ChartCatalogue
from .cni import SF_RESOURCE
from .expect import Invariant
from .kubelet import Kubelet, KubeletParams
from .scenario import InvariantSpec, ScenarioError

if TYPE_CHECKING:
    from .twin import Twin

HOST_SERVER = "https://10.96.0.1:443"
HOST_CA = b"twin-host-cluster-ca"


DEFAULT_PF_TOTAL_SF = 20  # the default flavor's nvconfig


class ServicesParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kubelet: KubeletParams = Field(default_factory=KubeletParams)
    argocd: ArgoParams = Field(default_factory=ArgoParams)
    # None: wire them unless the servicechain attachment (which wires the same controllers) is there too.
    service_chain_controllers: bool | None = Field(default=None, alias="serviceChainControllers")
    # What a DPU node's kubelet reports when the flavor says nothing: a BlueField-3 of the user guide (16 Arm
    # cores, 32 GB). A real node always advertises cpu and memory; without them the guide's HBN (6Gi) never fits.
    # {} leaves such nodes unlimited (until a device plugin advertises anything, which then limits everything).
    dpu_node_resources: dict[str, str] = Field(default_factory=lambda: {"cpu": "16", "memory": "32Gi"},
                                               alias="dpuNodeResources")


@dataclass
class IssuedRecord:
    store: str
    namespace: str
    service_account: str
    token: str
    issued_at: float
    expiration: float


@dataclass
class SimTokenIssuer:
    """The TokenRequest API of every twin cluster: tokens for existing ServiceAccounts, valid for their TTL."""

    twin: Twin
    issued: list[IssuedRecord] = field(default_factory=list)

    def _store_name(self, client: Client) -> str:
        for name, store in self.twin.stores().items():
            if store is client:
                return name
        return getattr(client, "name", "?")

    def request_token(self, client: Client, namespace: str, service_account: str,
                      expiration_seconds: int) -> credential_request.IssuedToken:
        if client.try_get(ServiceAccount, service_account, namespace) is None:
            raise NotFound(f'serviceaccounts "{service_account}" not found')
        now = self.twin.clock.now()
        store = self._store_name(client)
        token = f"twin-token.{store}.{namespace}.{service_account}.{len(self.issued) + 1}"
        self.issued.append(IssuedRecord(store, namespace, service_account, token, now, now + expiration_seconds))
        return credential_request.IssuedToken(token=token, expiration=now + expiration_seconds)

    def local_access(self) -> ClusterAccess:
        return ClusterAccess(cluster_name=credential_request.IN_CLUSTER_NAME, server=HOST_SERVER, ca_data=HOST_CA)

    def valid(self, token: str, at: float | None = None) -> bool:
        t = self.twin.clock.now() if at is None else at
        return any(r.token == token and r.issued_at <= t < r.expiration for r in self.issued)


class Services:
    """What attach() built, kept on `twin.services` for tests and reports."""

    def __init__(self, twin: Twin) -> None:
        self.twin = twin
        models = twin.config.models
        self.params = ServicesParams.model_validate(models.get("services", {}))
        self.catalogue = ChartCatalogue.from_config(models.get("charts"))
        self.tokens = SimTokenIssuer(twin)
        self.ports = Ports(clusters=twin.ports.clusters, extra={credential_request.TOKEN_ISSUER: self.tokens})
        # The servicechain attachment brings the CNI model, which plays DPF's SR-IOV device plugin (it advertises
        # each DPU node's SFs); without it this attachment stands in for the plugin (allocatable_for).
        self.sf_plugin = any(a.rpartition(".")[2] == "servicechain" for a in twin.config.attachments)
        self.with_chains = (self.params.service_chain_controllers if self.params.service_chain_controllers is not None
                            else not self.sf_plugin)
        self.manager = self.build_manager()
        twin.driver.add(self.manager)
        self.argocd = ArgoCD(twin.env, twin.host, twin.stores, twin.clock, twin.streams.get("argocd"), self.catalogue,
                             self.params.argocd)
        self.kubelets: dict[str, Kubelet] = {
            "host": Kubelet(twin.env, twin.host, twin.clock, twin.streams.get("kubelet/host"), self.params.kubelet,
                            run_pods=False, name="host"),
        }
        self.cluster_managers: dict[str, Manager] = {}
        for name, store in list(twin.dpu_clusters.items()):
            self.cluster_created(name, store)
        twin.cluster_created.append(self.cluster_created)

    def build_manager(self) -> Manager:
        """The host's DPUService controllers, fresh: also what a restarted process builds (controllerCrash)."""
        manager = Manager(self.twin.host, self.twin.clock, self._recorder, self.ports, name="dpuservice")
        controllers = [credential_request.controller(), dpuservice.controller(), dpudeployment.controller(),
                       operator_config.controller()]
        if self.with_chains:
            controllers += system.service_chain_host_controllers()
        for c in controllers:
            manager.add(c)
        return manager

    def _recorder(self, component: str) -> Recorder:
        if self.twin.config.record_events:
            return EventRecorder(self.twin.host, self.twin.clock, component)
        return self.twin.recorded

    def cluster_created(self, name: str, store: MemoryStore) -> None:
        if name in self.kubelets:
            return
        self.argocd.watch_store(name, store)
        self.kubelets[name] = Kubelet(self.twin.env, store, self.twin.clock, self.twin.streams.get(f"kubelet/{name}"),
                                      self.params.kubelet, run_pods=True, allocatable_for=self.allocatable_for,
                                      name=name, network_gate=self.sf_plugin)
        if self.with_chains:
            manager = Manager(store, self.twin.clock, None, Ports(), name=f"dpu-cluster/{name}")
            for c in system.dpu_cluster_controllers():
                manager.add(c)
            self.cluster_managers[name] = manager
            self.twin.driver.add(manager)

    def allocatable_for(self, node: str) -> dict[str, Any] | None:
        """A DPU node (named after its DPU) offers the BlueField's resources; those its flavor's dpuResources name
        are dpuResources minus systemReservedResources instead. Without the CNI model, also the SFs DPF's
        sriov-device-plugin component would advertise (`nvidia.com/bf_sf`: the flavor's PF_TOTAL_SF), so pods
        asking for SFs (HBN) schedule as on a real DPU node."""
        dpu = self.twin.dpu_names.find(node)
        if dpu is None:
            return None
        out: dict[str, Any] = dict(self.params.dpu_node_resources)
        flavor = self.twin.host.try_get(DPUFlavor, dpu.spec.dpu_flavor, dpu.namespace) if dpu.spec.dpu_flavor else None
        if flavor is not None and flavor.spec.dpu_resources is not None:
            reserved = flavor.spec.system_reserved_resources or {}
            for name, q in flavor.spec.dpu_resources.items():
                left = parse_quantity(q) - (parse_quantity(reserved[name]) if name in reserved else Fraction(0))
                out[name] = format_quantity(max(left, Fraction(0)))
        if not self.sf_plugin and SF_RESOURCE not in out:
            out[SF_RESOURCE] = str(pf_total_sf(flavor))
        return out or None


def pf_total_sf(flavor: DPUFlavor | None) -> int:
    """The SFs the flavor's nvconfig creates per PF (`PF_TOTAL_SF=`, the last one given); DPF's default flavor's 20
    when it says nothing."""
    total = DEFAULT_PF_TOTAL_SF
    for entry in flavor.spec.nvconfig if flavor is not None else []:
        for param in entry.parameters:
            key, _, value = param.partition("=")
            if key.strip() == "PF_TOTAL_SF" and value.strip().isdigit():
                total = int(value.strip())
    return total


def attach(twin: Twin) -> Services:
    services = Services(twin)
    twin.services = services  # type: ignore[attr-defined]
    return services


def scenario_models(models: dict[str, Any], charts: list[dict[str, Any]] | None) -> dict[str, Any]:
    """TwinConfig.models for a scenario: its `models`, plus its `charts:` catalogue under `charts`."""
    return {**models, "charts": list(charts)} if charts else dict(models)


# --- scenario invariant: `type: dpf_sim.services:TokenCoverage` ----------------------------------------------


class TokenCoverageParams(Model):
    min_refreshes: int = Field(default=0, ge=0, description="every request must have been refreshed this often")


class TokenCoverage(Invariant):
    """Every DPUServiceCredentialRequest's Secret always holds a valid token: each refresh happens before the
    previous token expires, the Secret carries the newest token, and the last one is still valid at the end."""

    def __init__(self, spec: InvariantSpec) -> None:
        super().__init__(spec)
        self.params = TokenCoverageParams.model_validate(spec.params)
        self.kinds = (DPUServiceCredentialRequest,)
        self.store = "host"

    def bind(self, twin: Twin) -> None:
        super().bind(twin)
        if not isinstance(getattr(twin, "services", None), Services):
            raise ScenarioError([f"invariant {self.name}: needs the services attachment (attachments: [services])"])

    def on_event(self, store: str, ev: WatchEvent) -> None:
        self.events += 1
        obj = ev.object
        if ev.type == "DELETED" or not isinstance(obj, DPUServiceCredentialRequest):
            return
        exp = obj.status.expiration_timestamp
        now = self.twin.clock.now() if self.twin is not None else 0.0
        if exp is not None and parse_rfc3339(exp) <= now and obj.metadata.deletion_timestamp is None:
            self.violate(f"{obj.namespace}/{obj.name}: token expired at {exp}", [f"{obj.namespace}/{obj.name}"])

    def finish(self) -> None:
        if self.passed is not None or self.twin is None:
            return
        services: Services = self.twin.services  # type: ignore[attr-defined]
        now = self.twin.clock.now()
        problems: list[str] = []
        refreshes: list[int] = []
        for cr in self.twin.host.list(DPUServiceCredentialRequest):
            key = f"{cr.namespace}/{cr.name}"
            sa = cr.spec.service_account
            records = sorted((r for r in services.tokens.issued
                              if r.namespace == sa.get_namespace() and r.service_account == sa.name),
                             key=lambda r: r.issued_at)
            if not records:
                problems.append(f"{key}: no token was ever issued")
                continue
            for prev, nxt in itertools.pairwise(records):
                if nxt.issued_at >= prev.expiration:
                    problems.append(f"{key}: token expired at {rfc3339(prev.expiration)} before the refresh at "
                                    f"{rfc3339(nxt.issued_at)}")
            if records[-1].expiration <= now:
                problems.append(f"{key}: the last token expired at {rfc3339(records[-1].expiration)}")
            secret = self.twin.host.try_get(Secret, cr.spec.secret.name, cr.spec.secret.get_namespace())
            data = credential_request.secret_data(secret) if secret is not None else {}
            if not any(records[-1].token.encode() in v for v in data.values()):
                problems.append(f"{key}: Secret {cr.spec.secret.get_namespace()}/{cr.spec.secret.name} does not hold "
                                f"the newest token")
            refreshes.append(len(records) - 1)
            if len(records) - 1 < self.params.min_refreshes:
                problems.append(f"{key}: refreshed {len(records) - 1} time(s), expected >= {self.params.min_refreshes}")
        if problems:
            self.fail(f"tokens not covered: {'; '.join(problems)}", problems)
        else:
            self.succeed(f"{len(refreshes)} request(s), refreshes {refreshes}, every token renewed before expiry")


class DeletionOrder(Invariant):
    """The DPFOperatorConfig's staged teardown: nothing of a later stage starts deleting while an object of an
    earlier stage exists; the system components go last."""

    def __init__(self, spec: InvariantSpec) -> None:
        super().__init__(spec)
        self.stages = operator_config.DELETION_STAGES
        self.kinds = tuple({cls for stage in self.stages for cls in stage})
        self.store = "host"

    def _stage(self, obj: Any) -> int:
        if operator_config.is_system_component(obj):
            return len(self.stages)
        return next(i for i, stage in enumerate(self.stages) if type(obj) in stage)

    def on_event(self, store: str, ev: WatchEvent) -> None:
        self.events += 1
        obj = ev.object
        old = ev.old
        started = obj.metadata.deletion_timestamp is not None and (old is None or old.metadata.deletion_timestamp is None)
        if ev.type != "MODIFIED" or not started or self.twin is None:
            return
        stage = self._stage(obj)
        earlier = [f"{cls.KIND.kind} {o.namespace}/{o.name}" for i, s in enumerate(self.stages[:stage]) for cls in s
                   for o in self.twin.host.list(cls) if self._stage(o) == i]
        if earlier:
            self.violate(f"{type(obj).KIND.kind} {obj.namespace}/{obj.name} (stage {stage + 1}) started deleting "
                         f"while earlier stages still exist", earlier)
