"""The `svc.dpu.nvidia.com/v1alpha1` API group: DPU services, their deployments and the service chain kinds.

Schema rules (patterns, enums, min/max items) are enforced when a manifest is decoded, like the CRD's OpenAPI
schema. The CRDs' CEL rules (`x-kubernetes-validations`) are evaluated at decode time too, next to the schema
errors, so one `Invalid` lists every bad field as the API server would. The only webhook of the group,
`ipam-validator.svc.dpu.nvidia.com`, runs as an admission hook.

Our extension: ServiceInterface and ServiceChain carry an optional status (conditions + observedGeneration);
DPF v24.10 gives them an empty status and no readiness at all.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import Field, ModelWrapValidatorHandler, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from dpf_core.errors import FieldCause

from .meta import (
    Condition,
    IntOrString,
    KindInfo,
    KubeObject,
    LabelSelector,
    Model,
    NodeSelector,
    PrinterColumn,
)
from .registry import Hooks, Reader, register

GROUP = "svc.dpu.nvidia.com"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# --- Condition types (internal/conditions + each kind's *_types.go) ---------------------------------------------
CONDITION_READY = "Ready"

# DPUService
CONDITION_APPLICATION_PREREQS_RECONCILED = "ApplicationPrereqsReconciled"
CONDITION_APPLICATIONS_RECONCILED = "ApplicationsReconciled"
CONDITION_APPLICATIONS_READY = "ApplicationsReady"
CONDITION_DPUSERVICE_INTERFACE_RECONCILED = "DPUServiceInterfaceReconciled"
DPUSERVICE_CONDITIONS: tuple[str, ...] = (
    CONDITION_READY,
    CONDITION_APPLICATION_PREREQS_RECONCILED,
    CONDITION_APPLICATIONS_RECONCILED,
    CONDITION_APPLICATIONS_READY,
    CONDITION_DPUSERVICE_INTERFACE_RECONCILED,
)

# DPUDeployment
CONDITION_PREREQS_READY = "PrerequisitesReady"
CONDITION_RESOURCE_FITTING_READY = "ResourceFittingReady"
CONDITION_DPUSETS_RECONCILED = "DPUSetsReconciled"
CONDITION_DPUSETS_READY = "DPUSetsReady"
CONDITION_DPUSERVICES_RECONCILED = "DPUServicesReconciled"
CONDITION_DPUSERVICES_READY = "DPUServicesReady"
CONDITION_DPUSERVICE_CHAINS_RECONCILED = "DPUServiceChainsReconciled"
CONDITION_DPUSERVICE_CHAINS_READY = "DPUServiceChainsReady"
CONDITION_DPUSERVICE_INTERFACES_RECONCILED = "DPUServiceInterfacesReconciled"
CONDITION_DPUSERVICE_INTERFACES_READY = "DPUServiceInterfacesReady"
DPUDEPLOYMENT_CONDITIONS: tuple[str, ...] = (
    CONDITION_READY,
    CONDITION_PREREQS_READY,
    CONDITION_RESOURCE_FITTING_READY,
    CONDITION_DPUSETS_RECONCILED,
    CONDITION_DPUSETS_READY,
    CONDITION_DPUSERVICES_RECONCILED,
    CONDITION_DPUSERVICES_READY,
    CONDITION_DPUSERVICE_CHAINS_RECONCILED,
    CONDITION_DPUSERVICE_CHAINS_READY,
    CONDITION_DPUSERVICE_INTERFACES_RECONCILED,
    CONDITION_DPUSERVICE_INTERFACES_READY,
)

# DPUServiceCredentialRequest (no Ready summary in DPF: the list is only what the controller pre-creates)
CONDITION_SERVICE_ACCOUNT_RECONCILED = "ServiceAccountReconciled"
CONDITION_SECRET_RECONCILED = "SecretReconciled"
DPUSERVICE_CREDENTIAL_REQUEST_CONDITIONS: tuple[str, ...] = (
    CONDITION_READY,
    CONDITION_SERVICE_ACCOUNT_RECONCILED,
    CONDITION_SECRET_RECONCILED,
)

# Host-side mirrors
CONDITION_SERVICE_INTERFACE_SET_RECONCILED = "ServiceInterfaceSetReconciled"
CONDITION_SERVICE_INTERFACE_SET_READY = "ServiceInterfaceSetReady"
DPUSERVICE_INTERFACE_CONDITIONS: tuple[str, ...] = (
    CONDITION_READY,
    CONDITION_SERVICE_INTERFACE_SET_RECONCILED,
    CONDITION_SERVICE_INTERFACE_SET_READY,
)
CONDITION_SERVICE_CHAIN_SET_RECONCILED = "ServiceChainSetReconciled"
CONDITION_SERVICE_CHAIN_SET_READY = "ServiceChainSetReady"
DPUSERVICE_CHAIN_CONDITIONS: tuple[str, ...] = (
    CONDITION_READY,
    CONDITION_SERVICE_CHAIN_SET_RECONCILED,
    CONDITION_SERVICE_CHAIN_SET_READY,
)
CONDITION_DPU_IPAM_OBJECT_RECONCILED = "DPUIPAMObjectReconciled"
CONDITION_DPU_IPAM_OBJECT_READY = "DPUIPAMObjectReady"
DPUSERVICE_IPAM_CONDITIONS: tuple[str, ...] = (
    CONDITION_READY,
    CONDITION_DPU_IPAM_OBJECT_RECONCILED,
    CONDITION_DPU_IPAM_OBJECT_READY,
)

# DPU-cluster sets
CONDITION_SERVICE_INTERFACES_RECONCILED = "ServiceInterfacesReconciled"
CONDITION_SERVICE_INTERFACES_READY = "ServiceInterfacesReady"
SERVICE_INTERFACE_SET_CONDITIONS: tuple[str, ...] = (
    CONDITION_READY,
    CONDITION_SERVICE_INTERFACES_RECONCILED,
    CONDITION_SERVICE_INTERFACES_READY,
)
CONDITION_SERVICE_CHAINS_RECONCILED = "ServiceChainsReconciled"
CONDITION_SERVICE_CHAINS_READY = "ServiceChainsReady"
SERVICE_CHAIN_SET_CONDITIONS: tuple[str, ...] = (
    CONDITION_READY,
    CONDITION_SERVICE_CHAINS_RECONCILED,
    CONDITION_SERVICE_CHAINS_READY,
)

# --- Finalizers --------------------------------------------------------------------------------------------------
FINALIZER_DPUSERVICE = "dpu.nvidia.com/dpuservice"
FINALIZER_DPUDEPLOYMENT = "dpu.nvidia.com/dpudeployment"
FINALIZER_DPUSERVICE_CREDENTIAL_REQUEST = "dpu.nvidia.com/dpuservicecredentialrequest"
FINALIZER_DPUSERVICE_INTERFACE = "svc.dpu.nvidia.com/dpuserviceinterface"
FINALIZER_DPUSERVICE_CHAIN = "svc.dpu.nvidia.com/dpuservicechain"
FINALIZER_DPUSERVICE_IPAM = "svc.dpu.nvidia.com/dpuserviceipam"
FINALIZER_SERVICE_INTERFACE_SET = "dpu.nvidia.com/serviceinterfaceset"
FINALIZER_SERVICE_CHAIN_SET = "dpu.nvidia.com/servicechainset"
# Note DPF's capitalisation: the group followed by the kind name, not a lower-case path.
FINALIZER_SERVICE_INTERFACE = "svc.dpu.nvidia.com/ServiceInterface-finalizer"

# --- Label and annotation keys -----------------------------------------------------------------------------------
LABEL_DPF_COMPONENT = "dpu.nvidia.com/component"
LABEL_DPU_CLUSTER = "dpu.nvidia.com/cluster"
LABEL_DPUSERVICE_NAME = "dpu.nvidia.com/dpuservice-name"
LABEL_DPUSERVICE_NAMESPACE = "dpu.nvidia.com/dpuservice-namespace"
LABEL_DPF_IMAGE_PULL_SECRET = "dpu.nvidia.com/image-pull-secret"  # value is the empty string
LABEL_DPF_SERVICE_ID = "svc.dpu.nvidia.com/service"
LABEL_SERVICE_INTERFACE_INTERFACE_NAME = "svc.dpu.nvidia.com/interface"
LABEL_PARENT_DPUDEPLOYMENT_NAME = "svc.dpu.nvidia.com/owned-by-dpudeployment"  # value "<namespace>_<name>"
LABEL_DEPENDENT_DPUDEPLOYMENT_NAME = "dpu.nvidia.com/consumed-by-dpudeployment-name"
LABEL_DPUSERVICECHAIN_VERSION = "svc.dpu.nvidia.com/dpuservicechain-version"
LABEL_SERVICE_INTERFACE_SET_NAME = "svc.dpu.nvidia.com/serviceinterfaceset-name"
LABEL_SERVICE_INTERFACE_SET_NAMESPACE = "svc.dpu.nvidia.com/serviceinterfaceset-namespace"
LABEL_SERVICE_CHAIN_SET_NAME = "svc.dpu.nvidia.com/servicechainset-name"
LABEL_SERVICE_CHAIN_SET_NAMESPACE = "svc.dpu.nvidia.com/servicechainset-namespace"
LABEL_SERVICE_INTERFACE_NODE_NAME = "svc.dpu.nvidia.com/nodeName"
LABEL_SERVICE_CHAIN_NODE_NAME = LABEL_SERVICE_INTERFACE_NODE_NAME
LABEL_SERVICE_INTERFACE_SERVICE_ID = "svc.dpu.nvidia.com/service-id"
LABEL_SERVICE_CHAIN = "svc.dpu.nvidia.com/service-chain"
LABEL_PARENT_DPUSERVICE_IPAM_NAME = "dpu.nvidia.com/dpuserviceipam-name"
LABEL_PARENT_DPUSERVICE_IPAM_NAMESPACE = "dpu.nvidia.com/dpuserviceipam-namespace"
ANNOTATION_DPUSERVICE_INTERFACE_CONSUMED_BY = "dpu.nvidia.com/consumed-by"
ANNOTATION_DPUSERVICE_VERSION = "dpuservice.nvidia.com/version"
ANNOTATION_DPUSERVICECHAIN_VERSION = "dpuservicechain.nvidia.com/version"
ANNOTATION_IP_REQUESTS = "dpu.nvidia.com/ip-requests"
# DPUDeployment writes this where a real rollout would put a version (a v24.10 limitation).
DPUSERVICE_OBJECT_VERSION_PLACEHOLDER = "placeholder-for-version"


def dpuservice_version_label_key(service: str) -> str:
    """`svc.dpu.nvidia.com/dpuservice-<svc>-version`, set by DPUDeployment on its DPUSets' nodes."""
    return f"svc.dpu.nvidia.com/dpuservice-{service}-version"


# --- Enums and patterns --------------------------------------------------------------------------------------------
INTERFACE_TYPE_VLAN = "vlan"
INTERFACE_TYPE_PHYSICAL = "physical"
INTERFACE_TYPE_PF = "pf"
INTERFACE_TYPE_VF = "vf"
INTERFACE_TYPE_OVN = "ovn"
INTERFACE_TYPE_SERVICE = "service"
InterfaceType = Literal["vlan", "physical", "pf", "vf", "ovn", "service"]

SECRET_TYPE_KUBECONFIG = "kubeconfig"
SECRET_TYPE_TOKEN_FILE = "tokenFile"
SecretType = Literal["kubeconfig", "tokenFile"]

HELM_REPO_URL_PATTERN = r"^(oci://|https://).+$"
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

# The only namespace NVIPAM serves in v24.10 (webhook TODO: "Drop this once multi namespace NVIPAM is supported").
IPAM_NAMESPACE = "dpf-operator-system"


# --- Shared pieces -------------------------------------------------------------------------------------------------
def _empty_status(v: Model) -> bool:
    # Status structs are never null in Go; omit them from the wire when nothing is set, as a fresh object reads.
    return not v.model_dump(exclude_none=True)


def _is_empty(v: object) -> bool:
    return not v


# Field factories rather than Annotated aliases: the pydantic mypy plugin only sees a default when the
# assignment is not a bare `Field(...)` call, so callers can leave these out when building models.
def _list() -> Any:
    return Field(default_factory=list, exclude_if=_is_empty)


def _map() -> Any:
    return Field(default_factory=dict, exclude_if=_is_empty)


def _status(factory: Callable[[], Model]) -> Any:
    return Field(default_factory=factory, exclude_if=_empty_status)


MatchLabels = Annotated[dict[str, str], Field(min_length=1, max_length=50)]
Quantity = Annotated[int | Annotated[str, Field(pattern=QUANTITY_PATTERN)], Field(union_mode="left_to_right")]


class SvcObjectMeta(Model):
    """DPF's svc `ObjectMeta`: the labels and annotations carried by templates and generated objects."""

    labels: dict[str, str] = _map()
    """Labels set on the object generated from this template or request."""
    annotations: dict[str, str] = _map()
    """Annotations set on the object generated from this template or request."""


class NamespacedName(Model):
    name: str
    """Name of the referenced object."""
    # Nil resolves to "default" in the credential request controller, not to the object's namespace.
    namespace: str | None = None
    """Namespace of the referenced object; the controller uses "default" when it is unset."""

    def get_namespace(self) -> str:
        return self.namespace if self.namespace is not None else "default"


# --- CEL rules at decode time --------------------------------------------------------------------------------------
# Models with a CRD CEL rule list it as `CEL_RULES` ((rule, message), ...) for the CRD renderer; the rule is
# enforced in Python by a wrap validator on the same model.
_M = TypeVar("_M", bound=Model)


def _cel_error(message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError("cel", message), loc=(), input=value)


def _reraise(title: str, err: ValidationError, extra: list[InitErrorDetails]) -> ValidationError:
    """Merge the schema errors of a model with its CEL errors into one ValidationError."""
    details: list[InitErrorDetails] = []
    for e in err.errors(include_url=False):
        if e["type"] == "cel":
            details.append(InitErrorDetails(type=PydanticCustomError("cel", e["msg"]), loc=e["loc"], input=e["input"]))
        else:
            d = InitErrorDetails(type=e["type"], loc=e["loc"], input=e["input"])
            if "ctx" in e:
                d["ctx"] = e["ctx"]
            details.append(d)
    return ValidationError.from_exception_data(title, [*details, *extra])


def _has(data: Any, *names: str) -> bool:
    return isinstance(data, Mapping) and any(data.get(n) is not None for n in names)


def _run_cel(
    cls: type[_M],
    data: Any,
    handler: ModelWrapValidatorHandler[_M],
    on_model: Callable[[_M], str | None],
    on_raw: Callable[[Any], str | None],
) -> _M:
    """Schema first; the CEL rule on the typed model when the schema passed, on the raw input when it did not."""
    try:
        model = handler(data)
    except ValidationError as err:
        message = on_raw(data)
        if message is None:
            raise
        raise _reraise(cls.__name__, err, [_cel_error(message, data)]) from None
    message = on_model(model)
    if message is not None:
        raise ValidationError.from_exception_data(cls.__name__, [_cel_error(message, data)])
    return model


# --- DPUService ------------------------------------------------------------------------------------------------------
class ApplicationSource(Model):
    repo_url: str = Field(alias="repoURL", pattern=HELM_REPO_URL_PATTERN)
    """URL of the Helm chart repository, starting with oci:// or https://."""
    path: str | None = None
    """Directory of the chart inside the repository, passed to ArgoCD as the source path."""
    version: str = Field(min_length=1)
    """Version of the chart to deploy, used as the ArgoCD Application's target revision."""
    chart: str | None = None
    """Name of the chart in the Helm repository."""
    release_name: str | None = None
    """Helm release name the chart is installed under."""

    def get_argo_repo_url(self) -> str:
        """ArgoCD wants OCI registries without the scheme."""
        return self.repo_url.removeprefix("oci://")


class HelmChart(Model):
    source: ApplicationSource
    """Where the Helm chart is fetched from."""
    values: dict[str, Any] | None = None
    """Free-form Helm values for the chart release."""


class RollingUpdateDaemonSet(Model):
    max_unavailable: IntOrString | None = None
    """Number or percentage of the DaemonSet's pods that may be unavailable during a rolling update."""
    max_surge: IntOrString | None = None
    """Number or percentage of extra DaemonSet pods that may run above the desired count during a rolling update."""


class DaemonSetUpdateStrategy(Model):
    type: str | None = None  # "RollingUpdate" | "OnDelete"; the CRD schema carries no enum
    """How the service DaemonSet's pods are replaced: "RollingUpdate" or "OnDelete"."""
    rolling_update: RollingUpdateDaemonSet | None = None
    """Parameters of the rolling update, used when type is RollingUpdate."""


class ServiceDaemonSetValues(Model):
    node_selector: NodeSelector | None = None
    update_strategy: DaemonSetUpdateStrategy | None = None
    """How the service DaemonSet's pods are replaced when the service changes."""
    labels: dict[str, str] = _map()
    """Labels for the service DaemonSet's pods, passed to the chart as serviceDaemonSet.labels."""
    annotations: dict[str, str] = _map()
    """Annotations for the service DaemonSet's pods, passed to the chart as serviceDaemonSet.annotations."""


_MSG_SERVICE_ID = "serviceID must be provided when interfaces are provided"


class DPUServiceSpec(Model):
    CEL_RULES: ClassVar[tuple[tuple[str, str], ...]] = (
        ("has(self.serviceID) || !has(self.interfaces)", _MSG_SERVICE_ID),
    )

    helm_chart: HelmChart
    """The Helm chart DPF deploys through ArgoCD to every DPU cluster, or to the host cluster with deployInCluster."""
    service_id: str | None = Field(default=None, alias="serviceID")
    """Service identifier, set as the svc.dpu.nvidia.com/service label of its pods; required with interfaces."""
    service_daemon_set: ServiceDaemonSetValues | None = None
    """Settings of the service's DaemonSet, passed to the chart as the serviceDaemonSet values."""
    deploy_in_cluster: bool | None = None
    """Deploys the chart to the host cluster instead of the DPU clusters; unset means false."""
    interfaces: Annotated[list[str], Field(min_length=1, max_length=50)] | None = None
    """Names of service-type DPUServiceInterfaces in this namespace to attach to the service's pods."""
    paused: bool | None = None
    """When true, DPF stops reconciling this DPUService and its ArgoCD Applications skip reconciliation."""

    @model_validator(mode="wrap")
    @classmethod
    def _cel_service_id(cls, data: Any, handler: ModelWrapValidatorHandler[DPUServiceSpec]) -> DPUServiceSpec:
        return _run_cel(
            cls,
            data,
            handler,
            lambda m: _MSG_SERVICE_ID if m.interfaces is not None and m.service_id is None else None,
            lambda d: _MSG_SERVICE_ID if _has(d, "interfaces") and not _has(d, "serviceID", "service_id") else None,
        )

    def should_deploy_in_cluster(self) -> bool:
        return bool(self.deploy_in_cluster)

    def is_paused(self) -> bool:
        return bool(self.paused)


class DPUServiceStatus(Model):
    conditions: list[Condition] = _list()
    """The latest observations of the DPUService's state; Ready summarizes the others."""
    observed_generation: int | None = None
    """The .metadata.generation the controller last reconciled."""


_READY_PHASE_COLUMNS: tuple[PrinterColumn, ...] = (
    PrinterColumn(name="Ready", type="string", json_path=".status.conditions[?(@.type=='Ready')].status"),
    PrinterColumn(name="Phase", type="string", json_path=".status.conditions[?(@.type=='Ready')].reason"),
)
_AGE = PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp")


def _kind(kind: str, columns: Sequence[PrinterColumn] = ()) -> KindInfo:
    return KindInfo(
        group=GROUP,
        version=VERSION,
        kind=kind,
        plural=kind.lower() + "s",
        singular=kind.lower(),
        printer_columns=tuple(columns),
    )


class DPUService(KubeObject):
    """A Helm chart DPF deploys through ArgoCD to every DPU cluster (or to the host cluster), with the interfaces its pods get."""

    KIND: ClassVar[KindInfo] = _kind("DPUService", (*_READY_PHASE_COLUMNS, _AGE))
    api_version: Literal["svc.dpu.nvidia.com/v1alpha1"] = "svc.dpu.nvidia.com/v1alpha1"
    kind: Literal["DPUService"] = "DPUService"
    spec: DPUServiceSpec
    status: DPUServiceStatus = _status(DPUServiceStatus)


# --- DPUDeployment ---------------------------------------------------------------------------------------------------
class IPAM(Model):
    match_labels: MatchLabels
    """Labels selecting the NVIPAM pool (IPPool, else CIDRPool) the interface's address is allocated from."""
    default_gateway: bool | None = None
    """Gives the pod the pool's gateway as its default gateway."""
    set_default_route: bool | None = None
    """Requests a default route through this interface; accepted but unused in DPF v24.10."""


class ServiceIfc(Model):
    match_labels: MatchLabels
    """Labels selecting the ServiceInterface, on the chain's node and in its namespace, this port connects."""
    ipam: IPAM | None = None
    """The IP pool the selected interface's address is allocated from."""


class DPUDeploymentDPUSet(Model):
    """DPF's `DPUSet` struct inside a DPUDeployment (not the provisioning kind)."""

    name_suffix: str = Field(min_length=1, max_length=63)
    """Suffix of the generated DPUSet, which is named <DPUDeployment name>-<nameSuffix>."""
    node_selector: LabelSelector | None = None
    dpu_selector: dict[str, str] = _map()
    """Labels selecting which DPUs of the selected nodes the DPUSet provisions."""
    dpu_annotations: dict[str, str] = _map()
    """Annotations set on the DPUs the DPUSet creates."""


class DPUs(Model):
    bfb: str
    """Name of the BFB, in the same namespace, installed on the DPUs."""
    flavor: str
    """Name of the DPUFlavor, in the same namespace, the DPUs are configured with."""
    dpu_sets: Annotated[list[DPUDeploymentDPUSet], Field(min_length=1, max_length=50)] | None = None
    """The DPUSets to create, each selecting the nodes and DPUs it provisions."""


class DPUDeploymentServiceConfiguration(Model):
    service_template: str
    """Name of the DPUServiceTemplate (same namespace) whose deploymentServiceName is this service's key."""
    service_configuration: str
    """Name of the DPUServiceConfiguration (same namespace) whose deploymentServiceName is this service's key."""


class DPUDeploymentService(Model):
    name: str
    """Key of the service in the DPUDeployment's spec.services."""
    interface: str
    """Name of the service's interface, as listed in its DPUServiceConfiguration."""
    ipam: IPAM | None = None
    """The IP pool the interface's address is allocated from."""


_MSG_PORT = "either service or serviceInterface must be specified"


class DPUDeploymentPort(Model):
    CEL_RULES: ClassVar[tuple[tuple[str, str], ...]] = (("has(self.service) != has(self.serviceInterface)", _MSG_PORT),)

    service: DPUDeploymentService | None = None
    """An interface of one of this deployment's services; exactly one of service and serviceInterface is set."""
    service_interface: ServiceIfc | None = None
    """A ServiceInterface selected by labels; exactly one of service and serviceInterface is set."""

    @model_validator(mode="wrap")
    @classmethod
    def _cel_one_of(cls, data: Any, handler: ModelWrapValidatorHandler[DPUDeploymentPort]) -> DPUDeploymentPort:
        return _run_cel(
            cls,
            data,
            handler,
            lambda m: None if (m.service is None) != (m.service_interface is None) else _MSG_PORT,
            lambda d: None if _has(d, "service") != _has(d, "serviceInterface", "service_interface") else _MSG_PORT,
        )


class DPUDeploymentSwitch(Model):
    ports: Annotated[list[DPUDeploymentPort], Field(min_length=1, max_length=50)]
    """The ports this switch connects."""


class DPUDeploymentSpec(Model):
    dpus: DPUs
    """The DPUs to provision: the BFB, the DPUFlavor and the DPUSets selecting them."""
    services: dict[str, DPUDeploymentServiceConfiguration]
    """The services to deploy, keyed by service name, each naming its template and configuration."""
    service_chains: Annotated[list[DPUDeploymentSwitch], Field(min_length=1, max_length=50)]
    """The switches of the service chain, rendered into one DPUServiceChain named after the DPUDeployment."""


class DPUDeploymentStatus(Model):
    conditions: list[Condition] = _list()
    """The latest observations of the DPUDeployment's state; Ready summarizes the others."""
    observed_generation: int | None = None
    """The .metadata.generation the controller last reconciled."""


class DPUDeployment(KubeObject):
    """DPUs and the services on them as one unit: the DPUSets, DPUServices, interfaces and service chain it generates."""

    KIND: ClassVar[KindInfo] = _kind("DPUDeployment", (*_READY_PHASE_COLUMNS, _AGE))
    api_version: Literal["svc.dpu.nvidia.com/v1alpha1"] = "svc.dpu.nvidia.com/v1alpha1"
    kind: Literal["DPUDeployment"] = "DPUDeployment"
    spec: DPUDeploymentSpec
    status: DPUDeploymentStatus = _status(DPUDeploymentStatus)


# --- DPUServiceTemplate / DPUServiceConfiguration -----------------------------------------------------------------
class EmptyStatus(Model):
    """Both kinds have a status subresource with nothing in it."""


class DPUServiceTemplateSpec(Model):
    deployment_service_name: str
    """Key in a DPUDeployment's spec.services that this template is for."""
    helm_chart: HelmChart
    """The Helm chart of the service; the configuration's values are merged over its values."""
    resource_requirements: dict[str, Quantity] = _map()
    """DPU resources the service needs, checked against the DPUFlavor's resources minus its system-reserved ones."""


class DPUServiceTemplate(KubeObject):
    """The chart and resource needs of one service of a DPUDeployment."""

    KIND: ClassVar[KindInfo] = _kind("DPUServiceTemplate")
    api_version: Literal["svc.dpu.nvidia.com/v1alpha1"] = "svc.dpu.nvidia.com/v1alpha1"
    kind: Literal["DPUServiceTemplate"] = "DPUServiceTemplate"
    spec: DPUServiceTemplateSpec
    status: EmptyStatus = _status(EmptyStatus)


class ServiceConfigurationHelmChart(Model):
    values: dict[str, Any] | None = None
    """Helm values merged over the template's values."""


class DPUServiceConfigurationServiceDaemonSetValues(Model):
    labels: dict[str, str] = _map()
    """Labels for the service DaemonSet's pods, copied to the generated DPUService."""
    annotations: dict[str, str] = _map()
    """Annotations for the service DaemonSet's pods, copied to the generated DPUService."""


class ServiceConfiguration(Model):
    helm_chart: ServiceConfigurationHelmChart | None = None
    """Helm values for the service, merged over the template's."""
    service_daemon_set: DPUServiceConfigurationServiceDaemonSetValues | None = None
    """Labels and annotations copied to the generated DPUService's serviceDaemonSet."""
    deploy_in_cluster: bool | None = None
    """Deploys the service to the host cluster instead of the DPU clusters; unset means false."""

    def should_deploy_in_cluster(self) -> bool:
        return bool(self.deploy_in_cluster)


class ServiceInterfaceTemplate(Model):
    name: str
    """Name of the interface in the service's pods, as referenced by the DPUDeployment's service chain ports."""
    network: str  # NetworkAttachmentDefinition "namespace/name" or "name"
    """NetworkAttachmentDefinition the interface is attached to, as "namespace/name" or "name"."""


class DPUServiceConfigurationSpec(Model):
    deployment_service_name: str
    """Key in a DPUDeployment's spec.services that this configuration is for."""
    service_configuration: ServiceConfiguration | None = None
    """Settings of the generated DPUService that add to the template."""
    interfaces: Annotated[list[ServiceInterfaceTemplate], Field(min_length=1, max_length=50)] | None = None
    """Network interfaces of the service; each becomes a DPUServiceInterface of type service."""


class DPUServiceConfiguration(KubeObject):
    """The values, labels and interfaces of one service of a DPUDeployment."""

    KIND: ClassVar[KindInfo] = _kind("DPUServiceConfiguration")
    api_version: Literal["svc.dpu.nvidia.com/v1alpha1"] = "svc.dpu.nvidia.com/v1alpha1"
    kind: Literal["DPUServiceConfiguration"] = "DPUServiceConfiguration"
    spec: DPUServiceConfigurationSpec
    status: EmptyStatus = _status(EmptyStatus)


# --- DPUServiceCredentialRequest -----------------------------------------------------------------------------------
class DPUServiceCredentialRequestSpec(Model):
    service_account: NamespacedName
    """The ServiceAccount to create and issue a token for."""
    # Go's time.ParseDuration syntax; the doc asks for >= 10m and caps the token TTL at 24h (not enforced).
    duration: str | None = Field(default=None, pattern=DURATION_PATTERN)
    """Token lifetime as a Go duration (e.g. 1h); DPF documents a 10m minimum and a 24h maximum."""
    target_cluster: NamespacedName | None = None
    """The DPUCluster the ServiceAccount is created in; unset means the host cluster."""
    type: SecretType
    """Credential format: "kubeconfig" (a kubeconfig file) or "tokenFile" (API address, CA data and token)."""
    secret: NamespacedName
    """The Secret the credentials are written to."""
    metadata: SvcObjectMeta | None = None


class DPUServiceCredentialRequestStatus(Model):
    conditions: list[Condition] = _list()
    """The latest observations of the request's state."""
    service_account: str | None = None  # "<namespace>/<name>"
    """The ServiceAccount the token was issued for, as "namespace/name"."""
    target_cluster: str | None = None  # "<namespace>/<name>"
    """The DPUCluster the ServiceAccount was created in, as "namespace/name"; unset for the host cluster."""
    expiration_timestamp: str | None = None
    """When the issued token expires."""
    issued_at: str | None = None
    """When the current token was issued."""
    secret: str | None = None  # "<namespace>/<name>"
    """The Secret holding the credentials, as "namespace/name"."""


class DPUServiceCredentialRequest(KubeObject):
    """A ServiceAccount token for a DPU service, written as a kubeconfig or token file into a Secret."""

    KIND: ClassVar[KindInfo] = _kind("DPUServiceCredentialRequest", (*_READY_PHASE_COLUMNS, _AGE))
    api_version: Literal["svc.dpu.nvidia.com/v1alpha1"] = "svc.dpu.nvidia.com/v1alpha1"
    kind: Literal["DPUServiceCredentialRequest"] = "DPUServiceCredentialRequest"
    spec: DPUServiceCredentialRequestSpec
    status: DPUServiceCredentialRequestStatus = _status(DPUServiceCredentialRequestStatus)


# --- ServiceInterface (DPU cluster) ----------------------------------------------------------------------------------
class Physical(Model):
    interface_name: str
    """Name of the physical interface on the DPU, added to the br-sfc bridge."""


class VLAN(Model):
    vlan_id: int = Field(alias="vlanID")
    """VLAN ID of the interface."""
    parent_interface_ref: str
    """Name of the ServiceInterface the VLAN interface is created on."""


class VF(Model):
    vf_id: int = Field(alias="vfID")
    """Index of the virtual function on its physical function."""
    pf_id: int = Field(alias="pfID")
    """Index of the physical function the virtual function belongs to."""
    parent_interface_ref: str
    """Name of the ServiceInterface of the virtual function's parent interface."""


class PF(Model):
    pf_id: int = Field(alias="pfID")
    """Index of the physical function, giving the br-sfc port pf<pfID>hpf."""


class ServiceDef(Model):
    service_id: str = Field(alias="serviceID")
    """Service whose pods get this interface, matched against their svc.dpu.nvidia.com/service label."""
    network: str  # "namespace/name" or "name"
    """NetworkAttachmentDefinition of the interface, as "namespace/name" or "name" in this namespace."""
    interface_name: str
    """Name of the interface inside the service's pod."""

    def get_network(self) -> tuple[str, str]:
        """(namespace, name) of the NetworkAttachmentDefinition; namespace "" = the ServiceInterface's."""
        parts = self.network.split("/") if self.network else []
        if len(parts) == 1:
            return "", parts[0]
        if len(parts) == 2:
            return parts[0], parts[1]
        return "", ""


_MSG_INTERFACE_TYPE = (
    "`for interfaceType=vlan, vlan must be set; for interfaceType=pf, pf must be set; for interfaceType=vf, "
    "vf must be set; for interfaceType=physical, physical must be set; for interfaceType=service, service must be set`"
)
# interfaceType -> the sub-struct it needs (same name); ovn needs none.
_SUBSTRUCT = frozenset({"vlan", "pf", "vf", "physical", "service"})


class ServiceInterfaceSpec(Model):
    CEL_RULES: ClassVar[tuple[tuple[str, str], ...]] = (
        (
            "self.interfaceType == 'ovn' || "
            + " || ".join(f"(self.interfaceType == '{t}' && has(self.{t}))" for t in sorted(_SUBSTRUCT)),
            _MSG_INTERFACE_TYPE,
        ),
    )

    node: str | None = None
    """The DPU cluster node the interface is created on; set by the ServiceInterfaceSet for each node."""
    interface_type: InterfaceType
    """Kind of interface: vlan, physical, pf, vf, ovn or service; every kind but ovn needs its matching field."""
    physical: Physical | None = None
    """The physical interface, for interfaceType physical."""
    vlan: VLAN | None = None
    """The VLAN interface, for interfaceType vlan."""
    vf: VF | None = None
    """The virtual function, for interfaceType vf."""
    pf: PF | None = None
    """The physical function, for interfaceType pf."""
    service: ServiceDef | None = None
    """The interface of a service's pod, for interfaceType service."""

    @model_validator(mode="wrap")
    @classmethod
    def _cel_sub_struct(
        cls, data: Any, handler: ModelWrapValidatorHandler[ServiceInterfaceSpec]
    ) -> ServiceInterfaceSpec:
        def raw(d: Any) -> str | None:
            if not isinstance(d, Mapping):
                return None
            itype = d.get("interfaceType", d.get("interface_type"))
            # An unsupported interfaceType (or not even a string) is already reported by the enum; the rule adds
            # nothing there.
            if not isinstance(itype, str) or itype not in _SUBSTRUCT:
                return None
            return None if _has(d, itype) else _MSG_INTERFACE_TYPE

        def typed(m: ServiceInterfaceSpec) -> str | None:
            if m.interface_type == INTERFACE_TYPE_OVN:
                return None
            return None if getattr(m, m.interface_type) is not None else _MSG_INTERFACE_TYPE

        return _run_cel(cls, data, handler, typed, raw)


class ObjectStatus(Model):
    """Our extension for ServiceInterface / ServiceChain: DPF v24.10 leaves their status empty."""

    conditions: list[Condition] = _list()
    """The latest observations of the object's state; Ready summarizes the others."""
    observed_generation: int | None = None
    """The .metadata.generation the controller last reconciled."""


class ServiceInterface(KubeObject):
    """A port of one DPU's br-sfc bridge: a physical port, PF, VF, VLAN, OVN or service pod interface."""

    KIND: ClassVar[KindInfo] = _kind(
        "ServiceInterface",
        (
            PrinterColumn(name="IfType", type="string", json_path=".spec.interfaceType"),
            # Points at a field the schema does not have (the name lives in a sub-struct): always empty, as in DPF.
            PrinterColumn(name="IfName", type="string", json_path=".spec.interfaceName"),
            _AGE,
        ),
    )
    api_version: Literal["svc.dpu.nvidia.com/v1alpha1"] = "svc.dpu.nvidia.com/v1alpha1"
    kind: Literal["ServiceInterface"] = "ServiceInterface"
    spec: ServiceInterfaceSpec
    status: ObjectStatus = _status(ObjectStatus)


# --- ServiceChain (DPU cluster) --------------------------------------------------------------------------------------
class Port(Model):
    service_interface: ServiceIfc
    """The ServiceInterface this port connects, selected by labels, with optional IPAM."""


class Switch(Model):
    ports: Annotated[list[Port], Field(min_length=1, max_length=50)]
    """The ports this switch connects; traffic entering one port is forwarded to the others."""


class ServiceChainSpec(Model):
    node: str | None = None
    """The DPU cluster node whose OVS bridge the chain is programmed on; set by the ServiceChainSet for each node."""
    switches: Annotated[list[Switch], Field(min_length=1, max_length=50)]
    """The switches of the chain, each connecting a group of interfaces."""


class ServiceChain(KubeObject):
    """Switches on one DPU's br-sfc bridge, each forwarding between the interfaces it connects."""

    KIND: ClassVar[KindInfo] = _kind("ServiceChain")
    api_version: Literal["svc.dpu.nvidia.com/v1alpha1"] = "svc.dpu.nvidia.com/v1alpha1"
    kind: Literal["ServiceChain"] = "ServiceChain"
    spec: ServiceChainSpec
    status: ObjectStatus = _status(ObjectStatus)


# --- ServiceInterfaceSet / ServiceChainSet (DPU cluster) -------------------------------------------------------------
class ServiceInterfaceSpecTemplate(Model):
    spec: ServiceInterfaceSpec
    """Spec of each generated ServiceInterface."""
    metadata: SvcObjectMeta | None = None


class ServiceInterfaceSetSpec(Model):
    node_selector: LabelSelector | None = None  # nil = every node
    template: ServiceInterfaceSpecTemplate
    """Template of the ServiceInterface created for each selected node."""


class SetStatus(Model):
    conditions: list[Condition] = _list()
    """The latest observations of the set's state; Ready summarizes the others."""
    observed_generation: int | None = None
    """The .metadata.generation the controller last reconciled."""
    number_applied: int | None = None
    """Number of per-node objects the set has created."""
    number_ready: int | None = None
    """Number of the set's per-node objects that are ready."""


class ServiceInterfaceSet(KubeObject):
    """A ServiceInterface for each selected node of a DPU cluster."""

    KIND: ClassVar[KindInfo] = _kind(
        "ServiceInterfaceSet",
        (
            PrinterColumn(name="IfType", type="string", json_path=".spec.template.spec.interfaceType"),
            PrinterColumn(name="IfName", type="string", json_path=".spec.template.spec.interfaceName"),
            _AGE,
        ),
    )
    api_version: Literal["svc.dpu.nvidia.com/v1alpha1"] = "svc.dpu.nvidia.com/v1alpha1"
    kind: Literal["ServiceInterfaceSet"] = "ServiceInterfaceSet"
    spec: ServiceInterfaceSetSpec
    status: SetStatus = _status(SetStatus)


class ServiceChainSpecTemplate(Model):
    spec: ServiceChainSpec
    """Spec of each generated ServiceChain."""
    metadata: SvcObjectMeta | None = None


class ServiceChainSetSpec(Model):
    node_selector: LabelSelector | None = None  # nil = every node
    template: ServiceChainSpecTemplate
    """Template of the ServiceChain created for each selected node."""


class ServiceChainSet(KubeObject):
    """A ServiceChain for each selected node of a DPU cluster."""

    KIND: ClassVar[KindInfo] = _kind("ServiceChainSet")
    api_version: Literal["svc.dpu.nvidia.com/v1alpha1"] = "svc.dpu.nvidia.com/v1alpha1"
    kind: Literal["ServiceChainSet"] = "ServiceChainSet"
    spec: ServiceChainSetSpec
    status: SetStatus = _status(SetStatus)


# --- DPUServiceInterface / DPUServiceChain (host) --------------------------------------------------------------------
class MirrorStatus(Model):
    conditions: list[Condition] = _list()
    """The latest observations of the object's state; Ready summarizes the others."""
    observed_generation: int | None = None
    """The .metadata.generation the controller last reconciled."""


class ServiceInterfaceSetSpecTemplate(Model):
    spec: ServiceInterfaceSetSpec
    """Spec of the ServiceInterfaceSet created in each DPU cluster."""
    metadata: SvcObjectMeta | None = None


class DPUServiceInterfaceSpec(Model):
    cluster_selector: LabelSelector | None = None  # ignored by DPF v24.10: every DPUCluster gets the set
    """Labels selecting DPUClusters; ignored by DPF v24.10, which creates the set in every DPU cluster."""
    template: ServiceInterfaceSetSpecTemplate
    """Template of the ServiceInterfaceSet created in every DPU cluster."""

    def get_template_spec(self) -> ServiceInterfaceSetSpec:
        return self.template.spec


class DPUServiceInterface(KubeObject):
    """A network interface wanted on every DPU node: a ServiceInterfaceSet in each DPU cluster."""

    KIND: ClassVar[KindInfo] = _kind(
        "DPUServiceInterface",
        (
            *_READY_PHASE_COLUMNS,
            PrinterColumn(name="IfType", type="string", json_path=".spec.template.spec.template.spec.interfaceType"),
            PrinterColumn(name="IfName", type="string", json_path=".spec.template.spec.template.spec.interfaceName"),
            _AGE,
        ),
    )
    api_version: Literal["svc.dpu.nvidia.com/v1alpha1"] = "svc.dpu.nvidia.com/v1alpha1"
    kind: Literal["DPUServiceInterface"] = "DPUServiceInterface"
    spec: DPUServiceInterfaceSpec
    status: MirrorStatus = _status(MirrorStatus)


class ServiceChainSetSpecTemplate(Model):
    spec: ServiceChainSetSpec
    """Spec of the ServiceChainSet created in each DPU cluster."""
    metadata: SvcObjectMeta | None = None


class DPUServiceChainSpec(Model):
    cluster_selector: LabelSelector | None = None  # ignored by DPF v24.10
    """Labels selecting DPUClusters; ignored by DPF v24.10, which creates the set in every DPU cluster."""
    template: ServiceChainSetSpecTemplate
    """Template of the ServiceChainSet created in every DPU cluster."""


class DPUServiceChain(KubeObject):
    """A service function chain wanted on every DPU node: a ServiceChainSet in each DPU cluster."""

    KIND: ClassVar[KindInfo] = _kind("DPUServiceChain", (*_READY_PHASE_COLUMNS, _AGE))
    api_version: Literal["svc.dpu.nvidia.com/v1alpha1"] = "svc.dpu.nvidia.com/v1alpha1"
    kind: Literal["DPUServiceChain"] = "DPUServiceChain"
    spec: DPUServiceChainSpec
    status: MirrorStatus = _status(MirrorStatus)


# --- DPUServiceIPAM --------------------------------------------------------------------------------------------------
class Route(Model):
    dst: str
    """Destination network of the route, in CIDR notation."""


class IPV4Network(Model):
    """Split `network` into one `prefixSize` subnet per node, each with its own gateway (-> NVIPAM CIDRPool)."""

    network: str
    """The network, in CIDR notation, split into one subnet per node."""
    gateway_index: int | None = None  # leave unset for /31 point-to-point subnets
    """Index of the gateway address within each node's subnet; leave unset for /31 point-to-point subnets."""
    prefix_size: int
    """Prefix length of the subnet each node gets."""
    exclusions: list[str] = _list()
    """Addresses inside the network that are never allocated."""
    allocations: dict[str, str] = _map()  # node name -> subnet
    """Static subnet assignments: node name to a subnet of the network with prefix length prefixSize."""
    default_gateway: bool | None = None
    """Gives pods their node subnet's gateway as their default gateway."""
    routes: list[Route] = _list()
    """Extra routes given to pods whose addresses come from this pool."""


class IPV4Subnet(Model):
    """One subnet with one shared gateway, a block of `perNodeIPCount` IPs per node (-> NVIPAM IPPool)."""

    subnet: str
    """The subnet, in CIDR notation, shared by all nodes."""
    gateway: str
    """Gateway address of the subnet, shared by all nodes."""
    per_node_ip_count: int = Field(alias="perNodeIPCount")
    """Number of addresses of the subnet reserved as one contiguous block for each node."""
    default_gateway: bool | None = None
    """Gives pods the subnet's gateway as their default gateway."""
    routes: list[Route] = _list()
    """Extra routes given to pods whose addresses come from this pool."""


class DPUServiceIPAMSpec(Model):
    metadata: SvcObjectMeta | None = None  # copied onto the NVIPAM pool
    ipv4_network: IPV4Network | None = None
    ipv4_subnet: IPV4Subnet | None = None
    cluster_selector: LabelSelector | None = None  # ignored by DPF v24.10
    """Labels selecting DPUClusters; ignored by DPF v24.10, which creates the pool in every DPU cluster."""
    node_selector: NodeSelector | None = None


class DPUServiceIPAM(KubeObject):
    """An IP pool for DPU services: an NVIPAM IPPool (ipv4Subnet) or CIDRPool (ipv4Network) in each DPU cluster."""

    KIND: ClassVar[KindInfo] = _kind("DPUServiceIPAM", (*_READY_PHASE_COLUMNS, _AGE))
    api_version: Literal["svc.dpu.nvidia.com/v1alpha1"] = "svc.dpu.nvidia.com/v1alpha1"
    kind: Literal["DPUServiceIPAM"] = "DPUServiceIPAM"
    spec: DPUServiceIPAMSpec
    status: MirrorStatus = _status(MirrorStatus)


# --- ipam-validator.svc.dpu.nvidia.com ---------------------------------------------------------------------------------
IPAM_WEBHOOK = "ipam-validator.svc.dpu.nvidia.com"
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network
_DEFAULT_ROUTES = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


def _q(value: object) -> str:
    # Values quoted as the API server prints them (JSON), not as Python reprs.
    return json.dumps(value)


def _parse_cidr(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, _Net] | None:
    """Go's net.ParseCIDR: "<ip>/<prefix>" required, host bits allowed; returns (ip, masked network)."""
    if "/" not in text:
        return None
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        return None
    return iface.ip, iface.network


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _contains(net: _Net, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.version == net.version and ip in net


def _validate_routes(
    routes: Sequence[Route], network: _Net | None, default_gateway: bool, path: str
) -> list[FieldCause]:
    causes: list[FieldCause] = []
    for i, r in enumerate(routes):
        field = f"{path}.routes[{i}].dst"
        parsed = _parse_cidr(r.dst)
        if parsed is None:
            causes.append(FieldCause(field, f"Invalid value: {_q(r.dst)}: route {r.dst} is not a valid subnet"))
            continue
        route_net = parsed[1]
        if network is not None and route_net.version != network.version:
            causes.append(
                FieldCause(field, f"Invalid value: {_q(r.dst)}: route {r.dst} is not same address family IPv4/IPv6")
            )
        if default_gateway and route_net in _DEFAULT_ROUTES:
            causes.append(
                FieldCause(
                    field,
                    f"Invalid value: {_q(r.dst)}: default route {r.dst} is not allowed if 'defaultGateway' is true",
                )
            )
    return causes


def _validate_ipv4_network(n: IPV4Network) -> list[FieldCause]:
    base = "spec.ipv4Network"
    causes: list[FieldCause] = []
    parsed = _parse_cidr(n.network)
    network: _Net | None = None
    if parsed is None:
        causes.append(
            FieldCause(f"{base}.network", f"Invalid value: {_q(n.network)}: network {n.network} is not a valid network")
        )
    else:
        network = parsed[1]
        if n.prefix_size < network.prefixlen or n.prefix_size > network.max_prefixlen:
            causes.append(
                FieldCause(
                    f"{base}.prefixSize",
                    f"Invalid value: {n.prefix_size}: prefixSize {n.prefix_size} doesn't fit in network prefix "
                    f"{network.prefixlen}",
                )
            )
    for i, exclusion in enumerate(n.exclusions):
        ip = _parse_ip(exclusion)
        field = f"{base}.exclusions[{i}]"
        if ip is None:
            causes.append(FieldCause(field, f"Invalid value: {_q(exclusion)}: exclusion {exclusion} is not a valid IP"))
        elif network is not None and not _contains(network, ip):
            causes.append(
                FieldCause(
                    field, f"Invalid value: {_q(exclusion)}: exclusion {exclusion} is not part of network {n.network}"
                )
            )
    for node, allocation in n.allocations.items():
        field = f"{base}.allocations.{node}"
        alloc = _parse_cidr(allocation)
        if alloc is None:
            causes.append(
                FieldCause(field, f"Invalid value: {_q(allocation)}: allocation {allocation} is not a valid subnet")
            )
        elif network is not None and (
            not _contains(network, alloc[1].network_address) or alloc[1].prefixlen != n.prefix_size
        ):
            causes.append(
                FieldCause(
                    field,
                    f"Invalid value: {_q(allocation)}: allocation {allocation} is not part of the network {n.network}",
                )
            )
    causes.extend(_validate_routes(n.routes, network, bool(n.default_gateway), base))
    return causes


def _validate_ipv4_subnet(s: IPV4Subnet) -> list[FieldCause]:
    base = "spec.ipv4Subnet"
    causes: list[FieldCause] = []
    parsed = _parse_cidr(s.subnet)
    network: _Net | None = None
    if parsed is None:
        causes.append(
            FieldCause(f"{base}.subnet", f"Invalid value: {_q(s.subnet)}: subnet {s.subnet} is not a valid network")
        )
    else:
        network = parsed[1]
    gateway = _parse_ip(s.gateway)
    if gateway is None:
        causes.append(
            FieldCause(f"{base}.gateway", f"Invalid value: {_q(s.gateway)}: gateway {s.gateway} is not a valid IP")
        )
    elif network is not None and not _contains(network, gateway):
        causes.append(
            FieldCause(
                f"{base}.gateway",
                f"Invalid value: {_q(s.gateway)}: gateway {s.gateway} is not part of subnet {s.subnet}",
            )
        )
    causes.extend(_validate_routes(s.routes, network, bool(s.default_gateway), base))
    return causes


def _range_not_shrinking(new: str, old: str, field: str) -> list[FieldCause]:
    old_parsed, new_parsed = _parse_cidr(old), _parse_cidr(new)
    if old_parsed is None or new_parsed is None:
        # A bad old value cannot be compared; a bad new one is reported by the network/subnet check.
        return []
    old_ip, old_net = old_parsed
    new_net = new_parsed[1]
    if not _contains(new_net, old_ip) or old_net.prefixlen < new_net.prefixlen:
        return [FieldCause(field, f"Invalid value: {_q(new)}: you cannot shrink the ip subnet")]
    return []


def validate_dpuservice_ipam(new: DPUServiceIPAM, old: DPUServiceIPAM | None) -> list[FieldCause]:
    """The rules of DPF's `ipam-validator.svc.dpu.nvidia.com` webhook, each reported at its wire path."""
    causes: list[FieldCause] = []
    spec = new.spec
    if new.metadata.namespace != IPAM_NAMESPACE:
        causes.append(
            FieldCause(
                "metadata.namespace",
                f"Invalid value: {_q(new.metadata.namespace)}: currently only '{IPAM_NAMESPACE}' namespace is supported",
            )
        )
    if old is not None and (
        (old.spec.ipv4_subnet is not None and spec.ipv4_network is not None)
        or (old.spec.ipv4_network is not None and spec.ipv4_subnet is not None)
    ):
        causes.append(
            FieldCause(
                "spec",
                "Forbidden: transitioning from ipv4subnet to ipv4network and vice versa is currently not supported",
                "FieldValueForbidden",
            )
        )
    if spec.ipv4_network is None and spec.ipv4_subnet is None:
        causes.append(
            FieldCause(
                "spec", "Required value: either ipv4Subnet or ipv4Network must be specified", "FieldValueRequired"
            )
        )
    if spec.ipv4_network is not None and spec.ipv4_subnet is not None:
        causes.append(
            FieldCause(
                "spec",
                "Forbidden: either ipv4Subnet or ipv4Network must be specified but not both",
                "FieldValueForbidden",
            )
        )
    if spec.ipv4_network is not None:
        causes.extend(_validate_ipv4_network(spec.ipv4_network))
        if old is not None and old.spec.ipv4_network is not None:
            causes.extend(
                _range_not_shrinking(
                    spec.ipv4_network.network, old.spec.ipv4_network.network, "spec.ipv4Network.network"
                )
            )
    if spec.ipv4_subnet is not None:
        causes.extend(_validate_ipv4_subnet(spec.ipv4_subnet))
        if old is not None and old.spec.ipv4_subnet is not None:
            causes.extend(
                _range_not_shrinking(spec.ipv4_subnet.subnet, old.spec.ipv4_subnet.subnet, "spec.ipv4Subnet.subnet")
            )
    return causes


def _ipam_create(obj: KubeObject, reader: Reader) -> list[FieldCause]:
    return validate_dpuservice_ipam(obj, None) if isinstance(obj, DPUServiceIPAM) else []


def _ipam_update(new: KubeObject, old: KubeObject, reader: Reader) -> list[FieldCause]:
    if not isinstance(new, DPUServiceIPAM) or not isinstance(old, DPUServiceIPAM):
        return []
    return validate_dpuservice_ipam(new, old)


# --- Registration ------------------------------------------------------------------------------------------------------
ALL_KINDS: tuple[type[KubeObject], ...] = (
    DPUService,
    DPUDeployment,
    DPUServiceTemplate,
    DPUServiceConfiguration,
    DPUServiceCredentialRequest,
    DPUServiceInterface,
    DPUServiceChain,
    DPUServiceIPAM,
    ServiceInterfaceSet,
    ServiceChainSet,
    ServiceInterface,
    ServiceChain,
)

for _cls in ALL_KINDS:
    if _cls is DPUServiceIPAM:
        register(_cls, Hooks(validate_create=[_ipam_create], validate_update=[_ipam_update], webhook=IPAM_WEBHOOK))
    else:
        register(_cls, Hooks())
