"""Kinds DPF reads or writes but does not own: Kubernetes core/apps/coordination, NodeMaintenance, Kamaji,
ArgoCD, NVIPAM and Multus.

Each is modelled only as far as the controllers and the twin need it. Every struct here keeps the fields it
does not know (`OpenModel`), so an object read from a real cluster and written back loses nothing.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from dpf_core.errors import BadRequest, FieldCause

from .meta import (
    Condition,
    IntOrString,
    KindInfo,
    KubeObject,
    LabelSelector,
    NodeSelector,
    ObjectMeta,
    OpenModel,
    Taint,
)
from .registry import Hooks, Reader, register


def _is_empty(v: object) -> bool:
    return not v


# Field factories instead of Annotated aliases so the pydantic mypy plugin treats these fields as optional.
def _list() -> Any:
    return Field(default_factory=list, exclude_if=_is_empty)


def _map() -> Any:
    return Field(default_factory=dict, exclude_if=_is_empty)


def _blank(m: BaseModel) -> bool:
    """`not m.model_dump(exclude_none=True)` without dumping: every field is None or excluded by its own
    `exclude_if`, and no extra field is set. Every dump of a Pod or Node asks this of each nested struct."""
    if m.__pydantic_extra__ and any(v is not None for v in m.__pydantic_extra__.values()):
        return False
    values = m.__dict__
    for name, info in type(m).model_fields.items():
        v = values.get(name)
        if v is None or info.exclude is True:
            continue
        if info.exclude_if is not None and info.exclude_if(v):
            continue
        return False
    return True


def _sub(factory: Callable[[], BaseModel]) -> Any:
    # A nested struct that reads as absent when nothing in it is set (Go's non-pointer status structs).
    return Field(default_factory=factory, exclude_if=_blank)


class ExternalObject(KubeObject):
    """Top-level base of external kinds: unknown top-level fields survive too."""

    model_config = ConfigDict(extra="allow")


def _kind(
    group: str,
    version: str,
    kind: str,
    plural: str,
    *,
    namespaced: bool = True,
    status: bool = True,
    short_names: tuple[str, ...] = (),
) -> KindInfo:
    return KindInfo(
        group=group,
        version=version,
        kind=kind,
        plural=plural,
        singular=kind.lower(),
        short_names=short_names,
        namespaced=namespaced,
        status_subresource=status,
        dpf=False,
    )


# Well-known keys the DPF controllers use on these kinds.
LABEL_ARGOCD_SECRET_TYPE = "argocd.argoproj.io/secret-type"  # "cluster" on Argo cluster Secrets
LABEL_ARGOCD_INSTANCE = "argocd.argoproj.io/instance"
ANNOTATION_ARGOCD_SKIP_RECONCILE = "argocd.argoproj.io/skip-reconcile"
FINALIZER_ARGOCD_RESOURCES = "resources-finalizer.argocd.argoproj.io"
ARGOCD_APP_PROJECT_DPU = "doca-platform-project-dpu"
ARGOCD_APP_PROJECT_HOST = "doca-platform-project-host"
ARGOCD_IN_CLUSTER = "in-cluster"
ANNOTATION_MULTUS_NETWORKS = "k8s.v1.cni.cncf.io/networks"
LABEL_KAMAJI_NAME = "kamaji.clastix.io/name"
LABEL_KAMAJI_TENANT = "tenant.clastix.io"
NODE_MAINTENANCE_CONDITION_READY = "Ready"
NODE_CONDITION_READY = "Ready"
SECRET_TYPE_OPAQUE = "Opaque"

# Resource quantities: "500m", "1Gi", 2 or 0.5 (the API server accepts bare numbers).
Quantity = int | float | str


# --- core/v1 -----------------------------------------------------------------------------------------------------
class ResourceRequirements(OpenModel):
    requests: dict[str, Quantity] = _map()
    limits: dict[str, Quantity] = _map()


class Container(OpenModel):
    name: str
    image: str | None = None
    resources: ResourceRequirements | None = None


class Toleration(OpenModel):
    key: str | None = None
    operator: str | None = None  # Exists | Equal
    value: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = None


class LocalObjectReference(OpenModel):
    name: str


class PodSpec(OpenModel):
    node_name: str | None = None
    containers: list[Container] = _list()
    init_containers: list[Container] = _list()
    node_selector: dict[str, str] = _map()
    affinity: dict[str, Any] | None = None
    tolerations: list[Toleration] = _list()
    host_network: bool | None = None
    service_account_name: str | None = None
    image_pull_secrets: list[LocalObjectReference] = _list()
    restart_policy: str | None = None


class PodCondition(OpenModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    last_probe_time: str | None = None
    last_transition_time: str | None = None


class ContainerStatus(OpenModel):
    name: str
    ready: bool = False
    restart_count: int = 0
    image: str | None = None
    started: bool | None = None
    state: dict[str, Any] | None = None


PodPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]


class PodStatus(OpenModel):
    phase: PodPhase | None = None
    pod_ip: str | None = Field(default=None, alias="podIP")
    host_ip: str | None = Field(default=None, alias="hostIP")
    start_time: str | None = None
    conditions: list[PodCondition] = _list()
    container_statuses: list[ContainerStatus] = _list()
    init_container_statuses: list[ContainerStatus] = _list()


class Pod(ExternalObject):
    KIND: ClassVar[KindInfo] = _kind("", "v1", "Pod", "pods", short_names=("po",))
    api_version: Literal["v1"] = "v1"
    kind: Literal["Pod"] = "Pod"
    spec: PodSpec = _sub(PodSpec)
    status: PodStatus = _sub(PodStatus)


class NodeCondition(OpenModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    last_heartbeat_time: str | None = None
    last_transition_time: str | None = None


class NodeAddress(OpenModel):
    type: str  # InternalIP | ExternalIP | Hostname | ...
    address: str


class NodeSpec(OpenModel):
    taints: list[Taint] = _list()
    unschedulable: bool | None = None
    provider_id: str | None = Field(default=None, alias="providerID")
    pod_cidr: str | None = Field(default=None, alias="podCIDR")


class NodeStatus(OpenModel):
    conditions: list[NodeCondition] = _list()
    addresses: list[NodeAddress] = _list()
    allocatable: dict[str, Quantity] = _map()
    capacity: dict[str, Quantity] = _map()
    node_info: dict[str, Any] | None = None


class Node(ExternalObject):
    KIND: ClassVar[KindInfo] = _kind("", "v1", "Node", "nodes", namespaced=False, short_names=("no",))
    api_version: Literal["v1"] = "v1"
    kind: Literal["Node"] = "Node"
    spec: NodeSpec = _sub(NodeSpec)
    status: NodeStatus = _sub(NodeStatus)

    def is_ready(self) -> bool:
        return any(c.type == NODE_CONDITION_READY and c.status == "True" for c in self.status.conditions)


class Secret(ExternalObject):
    KIND: ClassVar[KindInfo] = _kind("", "v1", "Secret", "secrets", status=False)
    api_version: Literal["v1"] = "v1"
    kind: Literal["Secret"] = "Secret"
    type: str | None = None
    data: dict[str, str] = _map()  # base64-encoded values
    # Write-only: admission (default_secret) folds it into `data`, so a stored Secret never has it.
    string_data: dict[str, str] = _map()
    immutable: bool | None = None

    def value(self, key: str) -> bytes | None:
        """The decoded bytes of `data[key]` (stored Secrets hold canonical base64: admission checked it)."""
        encoded = self.data.get(key)
        return None if encoded is None else base64.b64decode(encoded)


SECRET_TYPE_OPAQUE = "Opaque"
_BASE64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_CONFIG_KEY_MESSAGE = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  "
                       "or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")


def _go_bytes(text: str) -> bytes | int:
    """A Secret `data` value as Go's JSON decoding of []byte reads it (base64.StdEncoding: CR and LF skipped,
    padded quanta, non-canonical trailing bits accepted): its bytes, or the input byte Go gives up at."""
    stripped = text.replace("\r", "").replace("\n", "")
    try:
        return base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError):
        pass
    for i, ch in enumerate(text):
        if ch not in _BASE64_ALPHABET and ch not in "=\r\n":
            return i
    # Only legal characters: a short last quantum or padding in the wrong place. Go names the start of the
    # quantum it could not finish (approximate for padding in the middle).
    return max(0, len(text) - (len(stripped) % 4 or 4))


def default_secret(obj: KubeObject) -> None:
    """What the API server's v1 -> internal conversion and defaulting do to every Secret written (create,
    update, patch): each `stringData` entry overwrites the `data` entry of its key as base64 of its UTF-8
    bytes and `stringData` is dropped (never stored, never returned); `data` values are Go []byte, so they
    must be base64 and are stored as Go encodes the bytes again (canonical, no line breaks); `type`
    defaults to Opaque."""
    assert isinstance(obj, Secret)
    data: dict[str, str] = {}
    for key, encoded in obj.data.items():
        raw = _go_bytes(encoded)
        if isinstance(raw, int):
            raise BadRequest(f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte {raw}',
                             kind="Secret", name=obj.metadata.name or "")
        data[key] = base64.b64encode(raw).decode()
    for key, text in obj.string_data.items():
        data[key] = base64.b64encode(text.encode()).decode()
    if data != obj.data:
        obj.data = data
    if obj.string_data:
        obj.string_data = {}
    if not obj.type:
        obj.type = SECRET_TYPE_OPAQUE


def _secret_key_causes(secret: Secret) -> list[FieldCause]:
    return [FieldCause(f"data[{key}]", f"Invalid value: {_quoted(key)}: {_CONFIG_KEY_MESSAGE}")
            for key in secret.data if not _CONFIG_KEY.fullmatch(key)]


def validate_secret_create(obj: KubeObject, _reader: Reader) -> list[FieldCause]:
    assert isinstance(obj, Secret)
    return _secret_key_causes(obj)


def validate_secret_update(new: KubeObject, old: KubeObject, _reader: Reader) -> list[FieldCause]:
    """ValidateSecretUpdate: keys as on create; `type` never changes; an `immutable: true` Secret keeps its
    data and stays immutable."""
    assert isinstance(new, Secret) and isinstance(old, Secret)
    causes = _secret_key_causes(new)
    if new.type != old.type:
        causes.append(FieldCause("type", f"Invalid value: {_quoted(new.type)}: field is immutable"))
    if old.immutable:
        if not new.immutable:
            causes.append(FieldCause("immutable", "Forbidden: field is immutable when `immutable` is set", "FieldValueForbidden"))
        if new.data != old.data:
            causes.append(FieldCause("data", "Forbidden: field is immutable when `immutable` is set", "FieldValueForbidden"))
    return causes


def _quoted(value: str | None) -> str:
    return '"' + (value or "") + '"'


class ConfigMap(ExternalObject):
    KIND: ClassVar[KindInfo] = _kind("", "v1", "ConfigMap", "configmaps", status=False, short_names=("cm",))
    api_version: Literal["v1"] = "v1"
    kind: Literal["ConfigMap"] = "ConfigMap"
    data: dict[str, str] = _map()
    binary_data: dict[str, str] = _map()
    immutable: bool | None = None


class ServiceAccount(ExternalObject):
    KIND: ClassVar[KindInfo] = _kind("", "v1", "ServiceAccount", "serviceaccounts", status=False, short_names=("sa",))
    api_version: Literal["v1"] = "v1"
    kind: Literal["ServiceAccount"] = "ServiceAccount"
    secrets: list[dict[str, Any]] = _list()
    image_pull_secrets: list[LocalObjectReference] = _list()
    automount_service_account_token: bool | None = None


class NamespaceSpec(OpenModel):
    finalizers: list[str] = _list()


class NamespaceStatus(OpenModel):
    phase: Literal["Active", "Terminating"] | None = None


class Namespace(ExternalObject):
    KIND: ClassVar[KindInfo] = _kind("", "v1", "Namespace", "namespaces", namespaced=False, short_names=("ns",))
    api_version: Literal["v1"] = "v1"
    kind: Literal["Namespace"] = "Namespace"
    spec: NamespaceSpec = _sub(NamespaceSpec)
    status: NamespaceStatus = _sub(NamespaceStatus)


class ObjectReference(OpenModel):
    api_version: str | None = None
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    field_path: str | None = None


class EventSource(OpenModel):
    component: str | None = None
    host: str | None = None


class Event(ExternalObject):
    KIND: ClassVar[KindInfo] = _kind("", "v1", "Event", "events", status=False, short_names=("ev",))
    api_version: Literal["v1"] = "v1"
    kind: Literal["Event"] = "Event"
    involved_object: ObjectReference = Field(default_factory=lambda: ObjectReference())
    reason: str | None = None
    message: str | None = None
    type: Literal["Normal", "Warning"] | None = None
    count: int | None = None
    first_timestamp: str | None = None
    last_timestamp: str | None = None
    event_time: str | None = None
    source: EventSource | None = None
    action: str | None = None
    reporting_component: str | None = None
    reporting_instance: str | None = None


class ServicePort(OpenModel):
    name: str | None = None
    protocol: str | None = None
    port: int
    target_port: IntOrString | None = None
    node_port: int | None = None


class ServiceSpec(OpenModel):
    type: str | None = None  # ClusterIP | NodePort | LoadBalancer | ExternalName
    selector: dict[str, str] = _map()
    ports: list[ServicePort] = _list()
    cluster_ip: str | None = Field(default=None, alias="clusterIP")


class Service(ExternalObject):
    KIND: ClassVar[KindInfo] = _kind("", "v1", "Service", "services", short_names=("svc",))
    api_version: Literal["v1"] = "v1"
    kind: Literal["Service"] = "Service"
    spec: ServiceSpec = _sub(ServiceSpec)
    status: dict[str, Any] = _map()


# --- coordination.k8s.io/v1 ------------------------------------------------------------------------------------------
class LeaseSpec(OpenModel):
    holder_identity: str | None = None
    lease_duration_seconds: int | None = None
    acquire_time: str | None = None
    renew_time: str | None = None
    lease_transitions: int | None = None


class Lease(ExternalObject):
    KIND: ClassVar[KindInfo] = _kind("coordination.k8s.io", "v1", "Lease", "leases", status=False)
    api_version: Literal["coordination.k8s.io/v1"] = "coordination.k8s.io/v1"
    kind: Literal["Lease"] = "Lease"
    spec: LeaseSpec = _sub(LeaseSpec)


# --- apps/v1 ---------------------------------------------------------------------------------------------------------
class PodTemplateSpec(OpenModel):
    metadata: ObjectMeta = _sub(lambda: ObjectMeta.model_validate({}))
    spec: PodSpec = _sub(PodSpec)


class DaemonSetSpec(OpenModel):
    selector: LabelSelector | None = None
    template: PodTemplateSpec = Field(default_factory=lambda: PodTemplateSpec())
    update_strategy: dict[str, Any] | None = None


class DaemonSetStatus(OpenModel):
    current_number_scheduled: int | None = None
    desired_number_scheduled: int | None = None
    number_misscheduled: int | None = None
    number_ready: int | None = None
    number_available: int | None = None
    updated_number_scheduled: int | None = None
    observed_generation: int | None = None


class DaemonSet(ExternalObject):
    KIND: ClassVar[KindInfo] = _kind("apps", "v1", "DaemonSet", "daemonsets", short_names=("ds",))
    api_version: Literal["apps/v1"] = "apps/v1"
    kind: Literal["DaemonSet"] = "DaemonSet"
    spec: DaemonSetSpec = _sub(DaemonSetSpec)
    status: DaemonSetStatus = _sub(DaemonSetStatus)


class DeploymentSpec(OpenModel):
    replicas: int | None = None
    selector: LabelSelector | None = None
    template: PodTemplateSpec = Field(default_factory=lambda: PodTemplateSpec())
    strategy: dict[str, Any] | None = None


class DeploymentCondition(OpenModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    last_update_time: str | None = None
    last_transition_time: str | None = None


class DeploymentStatus(OpenModel):
    replicas: int | None = None
    ready_replicas: int | None = None
    available_replicas: int | None = None
    updated_replicas: int | None = None
    unavailable_replicas: int | None = None
    observed_generation: int | None = None
    conditions: list[DeploymentCondition] = _list()


class Deployment(ExternalObject):
    KIND: ClassVar[KindInfo] = _kind("apps", "v1", "Deployment", "deployments", short_names=("deploy",))
    api_version: Literal["apps/v1"] = "apps/v1"
    kind: Literal["Deployment"] = "Deployment"
    spec: DeploymentSpec = _sub(DeploymentSpec)
    status: DeploymentStatus = _sub(DeploymentStatus)


# --- maintenance.nvidia.com/v1alpha1 ---------------------------------------------------------------------------------
class DrainSpec(OpenModel):
    # Defaults as the NodeMaintenance CRD applies them.
    force: bool = False
    pod_selector: str | None = None
    timeout_seconds: int = 300
    delete_empty_dir: bool = False
    pod_eviction_filters: list[dict[str, Any]] = _list()


class NodeMaintenanceSpec(OpenModel):
    node_name: str
    requestor_id: str = Field(alias="requestorID")
    additional_requestors: list[str] = _list()
    cordon: bool = True
    drain_spec: DrainSpec | None = None
    wait_for_pod_completion: dict[str, Any] | None = None


class NodeMaintenanceStatus(OpenModel):
    conditions: list[Condition] = _list()
    drain: dict[str, Any] | None = None
    wait_for_completion: list[str] = _list()


class NodeMaintenance(ExternalObject):
    KIND: ClassVar[KindInfo] = _kind("maintenance.nvidia.com", "v1alpha1", "NodeMaintenance", "nodemaintenances")
    api_version: Literal["maintenance.nvidia.com/v1alpha1"] = "maintenance.nvidia.com/v1alpha1"
    kind: Literal["NodeMaintenance"] = "NodeMaintenance"
    spec: NodeMaintenanceSpec
    status: NodeMaintenanceStatus = _sub(NodeMaintenanceStatus)


# --- kamaji.clastix.io/v1alpha1 --------------------------------------------------------------------------------------
KubernetesVersionStatus = Literal[
    "Provisioning", "CertificateAuthorityRotating", "Upgrading", "Migrating", "Ready", "NotReady"
]
TCP_VERSION_READY = "Ready"


class TCPControlPlaneService(OpenModel):
    service_type: str  # ClusterIP | NodePort | LoadBalancer
    additional_metadata: dict[str, Any] | None = None


class TCPControlPlane(OpenModel):
    deployment: dict[str, Any] | None = None  # replicas, nodeSelector, resources, ... (kept verbatim)
    service: TCPControlPlaneService


class TCPKubelet(OpenModel):
    cgroupfs: str | None = None  # systemd | cgroupfs
    preferred_address_types: list[str] = _list()


class TCPKubernetes(OpenModel):
    version: str
    kubelet: TCPKubelet = _sub(TCPKubelet)
    admission_controllers: list[str] = _list()


class TCPNetworkProfile(OpenModel):
    address: str | None = None
    allow_address_as_external_ip: bool | None = Field(default=None, alias="allowAddressAsExternalIP")
    port: int | None = None
    cert_sans: list[str] = Field(default_factory=list, alias="certSANs", exclude_if=_is_empty)
    service_cidr: str | None = None
    pod_cidr: str | None = None
    dns_service_ips: list[str] = Field(default_factory=list, alias="dnsServiceIPs", exclude_if=_is_empty)


class TenantControlPlaneSpec(OpenModel):
    data_store: str | None = None
    control_plane: TCPControlPlane
    kubernetes: TCPKubernetes
    network_profile: TCPNetworkProfile | None = None
    addons: dict[str, Any] | None = None  # coreDNS, kubeProxy, konnectivity


class KubeconfigStatus(OpenModel):
    secret_name: str | None = None
    last_update: str | None = None
    checksum: str | None = None


class KubeconfigsStatus(OpenModel):
    admin: KubeconfigStatus | None = None
    controller_manager: KubeconfigStatus | None = None
    scheduler: KubeconfigStatus | None = None


class KubernetesVersion(OpenModel):
    version: str | None = None
    status: KubernetesVersionStatus | None = None


class KubernetesStatus(OpenModel):
    version: KubernetesVersion | None = None
    deployment: dict[str, Any] | None = None
    service: dict[str, Any] | None = None


class TenantControlPlaneStatus(OpenModel):
    kubeconfig: KubeconfigsStatus | None = None
    kubernetes_resources: KubernetesStatus | None = None
    control_plane_endpoint: str | None = None
    storage: dict[str, Any] | None = None
    certificates: dict[str, Any] | None = None


class TenantControlPlane(ExternalObject):
    KIND: ClassVar[KindInfo] = _kind(
        "kamaji.clastix.io", "v1alpha1", "TenantControlPlane", "tenantcontrolplanes", short_names=("tcp",)
    )
    api_version: Literal["kamaji.clastix.io/v1alpha1"] = "kamaji.clastix.io/v1alpha1"
    kind: Literal["TenantControlPlane"] = "TenantControlPlane"
    spec: TenantControlPlaneSpec
    status: TenantControlPlaneStatus = _sub(TenantControlPlaneStatus)

    def version_status(self) -> str | None:
        """`status.kubernetesResources.version.status`: the Kamaji cluster manager waits for "Ready"."""
        k = self.status.kubernetes_resources
        return k.version.status if k is not None and k.version is not None else None


# --- argoproj.io/v1alpha1 --------------------------------------------------------------------------------------------
class ApplicationSourceHelm(OpenModel):
    release_name: str | None = None
    values_object: dict[str, Any] | None = None
    values: str | None = None
    value_files: list[str] = _list()


class ApplicationSource(OpenModel):
    repo_url: str = Field(alias="repoURL")
    path: str | None = None
    chart: str | None = None
    target_revision: str | None = None
    helm: ApplicationSourceHelm | None = None


class ApplicationDestination(OpenModel):
    server: str | None = None
    namespace: str | None = None
    name: str | None = None


class SyncPolicyAutomated(OpenModel):
    prune: bool | None = None
    self_heal: bool | None = None
    allow_empty: bool | None = None


class SyncPolicy(OpenModel):
    automated: SyncPolicyAutomated | None = None
    sync_options: list[str] = _list()


class ApplicationSpec(OpenModel):
    source: ApplicationSource | None = None
    destination: ApplicationDestination
    project: str
    sync_policy: SyncPolicy | None = None


SyncStatusCode = Literal["Unknown", "Synced", "OutOfSync"]
HealthStatusCode = Literal["Unknown", "Progressing", "Healthy", "Suspended", "Degraded", "Missing"]
SYNC_STATUS_SYNCED = "Synced"
HEALTH_STATUS_HEALTHY = "Healthy"


class SyncStatus(OpenModel):
    status: SyncStatusCode
    revision: str | None = None


class HealthStatus(OpenModel):
    status: HealthStatusCode | None = None
    message: str | None = None


class ApplicationStatus(OpenModel):
    sync: SyncStatus | None = None
    health: HealthStatus | None = None
    resources: list[dict[str, Any]] = _list()
    conditions: list[dict[str, Any]] = _list()
    reconciled_at: str | None = None


class Application(ExternalObject):
    # ArgoCD's CRD has no status subresource: the application controller writes status with the object.
    KIND: ClassVar[KindInfo] = _kind(
        "argoproj.io", "v1alpha1", "Application", "applications", status=False, short_names=("app", "apps")
    )
    api_version: Literal["argoproj.io/v1alpha1"] = "argoproj.io/v1alpha1"
    kind: Literal["Application"] = "Application"
    spec: ApplicationSpec
    status: ApplicationStatus = _sub(ApplicationStatus)

    def is_synced_and_healthy(self) -> bool:
        s = self.status
        return (
            s.sync is not None
            and s.sync.status == SYNC_STATUS_SYNCED
            and s.health is not None
            and s.health.status == HEALTH_STATUS_HEALTHY
        )


class GroupKind(OpenModel):
    group: str
    kind: str


class AppProjectSpec(OpenModel):
    source_repos: list[str] = _list()
    destinations: list[ApplicationDestination] = _list()
    description: str | None = None
    cluster_resource_whitelist: list[GroupKind] = _list()
    namespace_resource_whitelist: list[GroupKind] = _list()
    source_namespaces: list[str] = _list()


class AppProject(ExternalObject):
    KIND: ClassVar[KindInfo] = _kind(
        "argoproj.io", "v1alpha1", "AppProject", "appprojects", status=False, short_names=("appproj", "appprojs")
    )
    api_version: Literal["argoproj.io/v1alpha1"] = "argoproj.io/v1alpha1"
    kind: Literal["AppProject"] = "AppProject"
    spec: AppProjectSpec = _sub(AppProjectSpec)
    status: dict[str, Any] = _map()


# --- nv-ipam.nvidia.com/v1alpha1 -------------------------------------------------------------------------------------
class ExcludeRange(OpenModel):
    start_ip: str = Field(alias="startIP")
    end_ip: str = Field(alias="endIP")


class Route(OpenModel):
    dst: str


class IPPoolSpec(OpenModel):
    subnet: str
    per_node_block_size: int
    exclusions: list[ExcludeRange] = _list()
    gateway: str | None = None
    node_selector: NodeSelector | None = None
    default_gateway: bool | None = None
    routes: list[Route] = _list()


class Allocation(OpenModel):
    node_name: str
    start_ip: str = Field(alias="startIP")
    end_ip: str = Field(alias="endIP")


class IPPoolStatus(OpenModel):
    allocations: list[Allocation] = _list()


class IPPool(ExternalObject):
    KIND: ClassVar[KindInfo] = _kind("nv-ipam.nvidia.com", "v1alpha1", "IPPool", "ippools")
    api_version: Literal["nv-ipam.nvidia.com/v1alpha1"] = "nv-ipam.nvidia.com/v1alpha1"
    kind: Literal["IPPool"] = "IPPool"
    spec: IPPoolSpec
    status: IPPoolStatus = _sub(IPPoolStatus)


class CIDRPoolStaticAllocation(OpenModel):
    node_name: str | None = None
    gateway: str | None = None
    prefix: str


class CIDRPoolSpec(OpenModel):
    cidr: str
    gateway_index: int | None = None  # unset for /31 and /32 per-node prefixes
    per_node_network_prefix: int
    exclusions: list[ExcludeRange] = _list()
    static_allocations: list[CIDRPoolStaticAllocation] = _list()
    node_selector: NodeSelector | None = None
    default_gateway: bool | None = None
    routes: list[Route] = _list()


class CIDRPoolAllocation(OpenModel):
    node_name: str
    gateway: str | None = None
    prefix: str


class CIDRPoolStatus(OpenModel):
    allocations: list[CIDRPoolAllocation] = _list()


class CIDRPool(ExternalObject):
    KIND: ClassVar[KindInfo] = _kind("nv-ipam.nvidia.com", "v1alpha1", "CIDRPool", "cidrpools")
    api_version: Literal["nv-ipam.nvidia.com/v1alpha1"] = "nv-ipam.nvidia.com/v1alpha1"
    kind: Literal["CIDRPool"] = "CIDRPool"
    spec: CIDRPoolSpec
    status: CIDRPoolStatus = _sub(CIDRPoolStatus)


# --- k8s.cni.cncf.io/v1 ----------------------------------------------------------------------------------------------
class NetworkAttachmentDefinitionSpec(OpenModel):
    config: str | None = None  # the CNI config as a JSON string


class NetworkAttachmentDefinition(ExternalObject):
    KIND: ClassVar[KindInfo] = KindInfo(
        group="k8s.cni.cncf.io",
        version="v1",
        kind="NetworkAttachmentDefinition",
        plural="network-attachment-definitions",
        singular="network-attachment-definition",
        short_names=("net-attach-def",),
        status_subresource=False,
        dpf=False,
    )
    api_version: Literal["k8s.cni.cncf.io/v1"] = "k8s.cni.cncf.io/v1"
    kind: Literal["NetworkAttachmentDefinition"] = "NetworkAttachmentDefinition"
    spec: NetworkAttachmentDefinitionSpec = _sub(NetworkAttachmentDefinitionSpec)


ALL_KINDS: tuple[type[KubeObject], ...] = (
    Node,
    Pod,
    Secret,
    ConfigMap,
    ServiceAccount,
    Namespace,
    Event,
    Service,
    Lease,
    DaemonSet,
    Deployment,
    NodeMaintenance,
    TenantControlPlane,
    Application,
    AppProject,
    IPPool,
    CIDRPool,
    NetworkAttachmentDefinition,
)

_HOOKS: dict[type[KubeObject], Hooks] = {
    Secret: Hooks(default=[default_secret], validate_create=[validate_secret_create], validate_update=[validate_secret_update]),
}

for _cls in ALL_KINDS:
    register(_cls, _HOOKS.get(_cls))
