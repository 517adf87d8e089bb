"""operator.dpu.nvidia.com/v1alpha1: DPFOperatorConfig, the singleton that says which DPF components run.

Every component runs unless its block says `disable: true`, except the static cluster manager, which is off
until a `staticClusterManager` block without `disable: true` is present.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Final, Literal

from pydantic import Field

from .meta import Condition, KindInfo, KubeObject, Model, PrinterColumn
from .registry import Hooks, register

GROUP: Final = "operator.dpu.nvidia.com"
VERSION: Final = "v1alpha1"
API_VERSION: Final = "operator.dpu.nvidia.com/v1alpha1"

DPFOPERATORCONFIG_FINALIZER: Final = "dpu.nvidia.com/dpfoperatorconfig"
DPF_COMPONENT_LABEL_KEY: Final = "dpu.nvidia.com/component"
IMAGE_PULL_SECRET_LABEL: Final = "dpu.nvidia.com/image-pull-secret"
# Defaults of the operator's --config-namespace / --config-name flags.
DEFAULT_CONFIG_NAMESPACE: Final = "dpf-operator-system"
DEFAULT_CONFIG_NAME: Final = "dpfoperatorconfig"

DEFAULT_MTU: Final = 1500
MAX_MTU: Final = 9216


class DPFOperatorConfigConditionType(StrEnum):
    READY = "Ready"
    IMAGE_PULL_SECRETS_RECONCILED = "ImagePullSecretsReconciled"
    SYSTEM_COMPONENTS_RECONCILED = "SystemComponentsReconciled"
    SYSTEM_COMPONENTS_READY = "SystemComponentsReady"


# Every condition the controller pre-creates (Ready summarizes the others).
CONDITIONS: Final = (
    DPFOperatorConfigConditionType.READY,
    DPFOperatorConfigConditionType.IMAGE_PULL_SECRETS_RECONCILED,
    DPFOperatorConfigConditionType.SYSTEM_COMPONENTS_RECONCILED,
    DPFOperatorConfigConditionType.SYSTEM_COMPONENTS_READY,
)

# Component names, as the operator names their objects, ApplySets and DPUServices.
PROVISIONING_CONTROLLER_NAME: Final = "provisioning-controller"
DPUSERVICE_CONTROLLER_NAME: Final = "dpuservice-controller"
SERVICE_SET_CONTROLLER_NAME: Final = "servicechainset-controller"
DPU_DETECTOR_NAME: Final = "dpudetector"
FLANNEL_NAME: Final = "flannel"
MULTUS_NAME: Final = "multus"
SRIOV_DEVICE_PLUGIN_NAME: Final = "sriov-device-plugin"
OVS_CNI_NAME: Final = "ovs-cni"
NVIPAM_NAME: Final = "nvidia-k8s-ipam"
SFC_CONTROLLER_NAME: Final = "sfc-controller"
KAMAJI_CLUSTER_MANAGER_NAME: Final = "kamaji-cluster-manager"
STATIC_CLUSTER_MANAGER_NAME: Final = "static-cluster-manager"
OVS_HELPER_NAME: Final = "ovs-helper"

COMPONENT_NAMES: Final = (
    PROVISIONING_CONTROLLER_NAME,
    DPUSERVICE_CONTROLLER_NAME,
    SERVICE_SET_CONTROLLER_NAME,
    DPU_DETECTOR_NAME,
    FLANNEL_NAME,
    MULTUS_NAME,
    SRIOV_DEVICE_PLUGIN_NAME,
    OVS_CNI_NAME,
    NVIPAM_NAME,
    SFC_CONTROLLER_NAME,
    KAMAJI_CLUSTER_MANAGER_NAME,
    STATIC_CLUSTER_MANAGER_NAME,
    OVS_HELPER_NAME,
)

DISABLED_BY_DEFAULT: Final = frozenset({STATIC_CLUSTER_MANAGER_NAME})

# A docker image reference (distribution/reference), as DPF's CRD publishes it.
IMAGE_PATTERN: Final = (
    r"^((?:(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"|\[(?:[a-fA-F0-9:]+)\])(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*)"
    r"(?::([\w][\w.-]{0,127}))?(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}))?$"
)
HELM_CHART_PATTERN: Final = r"^(oci://|https://).+$"

Image = Annotated[str, Field(pattern=IMAGE_PATTERN, description="Overrides the container image of the component.")]
HelmChart = Annotated[str, Field(pattern=HELM_CHART_PATTERN, description="Overrides the Helm chart of the component.")]


class Overrides(Model):
    paused: bool | None = Field(default=None, description="Stops the operator from reconciling anything.")


class Networking(Model):
    control_plane_mtu: int = Field(default=DEFAULT_MTU, alias="controlPlaneMTU", ge=0, le=MAX_MTU)
    """MTU of the DPU clusters' control-plane network, given to flannel."""
    high_speed_mtu: int = Field(default=DEFAULT_MTU, alias="highSpeedMTU", ge=0, le=MAX_MTU)
    """MTU of the high-speed network for DPU services, given to multus."""


class ComponentConfig(Model):
    """A component block: present and not disabled means enabled."""

    COMPONENT: ClassVar[str] = ""

    disable: bool | None = None
    """Turns the component off when true; a present block without it enables the component."""

    @property
    def disabled(self) -> bool:
        return bool(self.disable)


class ProvisioningControllerConfiguration(ComponentConfig):
    COMPONENT: ClassVar[str] = PROVISIONING_CONTROLLER_NAME

    image: Image | None = None
    bfb_pvc_name: str = Field(
        alias="bfbPVCName", min_length=1, description="The PVC holding BFB files, shared with the DMS pods."
    )
    dms_timeout: int | None = Field(
        default=None, ge=1, description="Seconds a DMS API call may take (dmsd -exec_timeout); 900 when unset."
    )


class DPUServiceControllerConfiguration(ComponentConfig):
    COMPONENT: ClassVar[str] = DPUSERVICE_CONTROLLER_NAME

    image: Image | None = None


class DPUDetectorCollectors(Model):
    ps_id: bool | None = Field(default=None, alias="psID")
    """Enables the collector that labels host nodes with the PSID of each DPU."""


class DPUDetectorConfiguration(ComponentConfig):
    COMPONENT: ClassVar[str] = DPU_DETECTOR_NAME

    image: Image | None = None
    collectors: DPUDetectorCollectors | None = None
    """Optional data collectors of the DPU detector."""


class KamajiClusterManagerConfiguration(ComponentConfig):
    COMPONENT: ClassVar[str] = KAMAJI_CLUSTER_MANAGER_NAME

    image: Image | None = None


class StaticClusterManagerConfiguration(ComponentConfig):
    COMPONENT: ClassVar[str] = STATIC_CLUSTER_MANAGER_NAME

    image: Image | None = None


class HelmComponentConfig(ComponentConfig):
    """A component deployed to DPU clusters as a DPUService from a Helm chart."""

    image: Image | None = None
    helm_chart: HelmChart | None = None


class ServiceSetControllerConfiguration(HelmComponentConfig):
    COMPONENT: ClassVar[str] = SERVICE_SET_CONTROLLER_NAME


class MultusConfiguration(HelmComponentConfig):
    COMPONENT: ClassVar[str] = MULTUS_NAME


class SRIOVDevicePluginConfiguration(HelmComponentConfig):
    COMPONENT: ClassVar[str] = SRIOV_DEVICE_PLUGIN_NAME


class OVSCNIConfiguration(HelmComponentConfig):
    COMPONENT: ClassVar[str] = OVS_CNI_NAME


class NVIPAMConfiguration(HelmComponentConfig):
    COMPONENT: ClassVar[str] = NVIPAM_NAME


class SFCControllerConfiguration(HelmComponentConfig):
    COMPONENT: ClassVar[str] = SFC_CONTROLLER_NAME


class OVSHelperConfiguration(HelmComponentConfig):
    COMPONENT: ClassVar[str] = OVS_HELPER_NAME


class FlannelConfiguration(ComponentConfig):
    COMPONENT: ClassVar[str] = FLANNEL_NAME

    helm_chart: HelmChart | None = None


class DPFOperatorConfigSpec(Model):
    overrides: Overrides | None = None
    """Settings that change how the operator itself behaves."""
    networking: Networking = Field(
        default_factory=Networking, json_schema_extra={"default": {"controlPlaneMTU": DEFAULT_MTU}}
    )
    """MTUs of the DPU clusters' networks."""
    image_pull_secrets: Annotated[list[str], Field(default_factory=list, exclude_if=lambda v: not v)]
    """Names of image pull Secrets in the operator's namespace, used by DPF components and copied to DPU clusters."""
    provisioning_controller: ProvisioningControllerConfiguration
    """Settings of the provisioning controller, which provisions DPUs (BFB, DPUSet, DPU, DPUCluster); required."""
    dpu_service_controller: DPUServiceControllerConfiguration | None = None
    """Settings of the DPUService controller, which deploys DPUServices through ArgoCD."""
    service_set_controller: ServiceSetControllerConfiguration | None = None
    """Settings of the ServiceInterfaceSet and ServiceChainSet controller run in the DPU clusters."""
    dpu_detector: DPUDetectorConfiguration | None = None
    """Settings of the DPU detector, which labels host nodes with the DPUs they hold."""
    multus: MultusConfiguration | None = None
    """Settings of the Multus CNI run in the DPU clusters."""
    sriov_device_plugin: SRIOVDevicePluginConfiguration | None = None
    """Settings of the SR-IOV device plugin run in the DPU clusters."""
    flannel: FlannelConfiguration | None = None
    """Settings of flannel, the CNI of the DPU clusters' control-plane network."""
    ovs_cni: OVSCNIConfiguration | None = Field(default=None, alias="ovsCNI")
    """Settings of the OVS CNI plugin run in the DPU clusters."""
    nvipam: NVIPAMConfiguration | None = None
    """Settings of NVIDIA's IPAM (nvidia-k8s-ipam) run in the DPU clusters."""
    sfc_controller: SFCControllerConfiguration | None = None
    """Settings of the SFC controller, which programs service chains into Open vSwitch on the DPUs."""
    kamaji_cluster_manager: KamajiClusterManagerConfiguration | None = None
    """Settings of the cluster manager for DPUClusters of type kamaji."""
    static_cluster_manager: StaticClusterManagerConfiguration | None = None
    """Settings of the cluster manager for DPUClusters of type static; off unless this block is present."""
    ovs_helper: OVSHelperConfiguration | None = None
    """Settings of the OVS helper, which re-adds DPDK interfaces that have no receive queue."""


class DPFOperatorConfigStatus(Model):
    conditions: Annotated[list[Condition], Field(default_factory=list, exclude_if=lambda v: not v)]
    """The latest observations of the operator configuration's state; Ready summarizes the others."""
    observed_generation: int | None = None
    """The .metadata.generation the controller last reconciled."""


class DPFOperatorConfig(KubeObject):
    """Configures the DPF operator: which system components run, their images, charts and the MTUs."""

    KIND: ClassVar[KindInfo] = KindInfo(
        group=GROUP,
        version=VERSION,
        kind="DPFOperatorConfig",
        plural="dpfoperatorconfigs",
        singular="dpfoperatorconfig",
        printer_columns=(
            PrinterColumn(name="Ready", type="string", json_path=".status.conditions[?(@.type=='Ready')].status"),
            PrinterColumn(name="Phase", type="string", json_path=".status.conditions[?(@.type=='Ready')].reason"),
        ),
    )

    api_version: Literal["operator.dpu.nvidia.com/v1alpha1"] = "operator.dpu.nvidia.com/v1alpha1"
    kind: Literal["DPFOperatorConfig"] = "DPFOperatorConfig"
    spec: DPFOperatorConfigSpec
    status: DPFOperatorConfigStatus = Field(default_factory=lambda: DPFOperatorConfigStatus.model_validate({}))

    def component_configs(self) -> list[ComponentConfig]:
        """The configured component blocks, in DPF's order (provisioning controller always first)."""
        s = self.spec
        blocks: list[ComponentConfig | None] = [
            s.provisioning_controller,
            s.dpu_service_controller,
            s.dpu_detector,
            s.flannel,
            s.multus,
            s.sriov_device_plugin,
            s.nvipam,
            s.sfc_controller,
            s.ovs_cni,
            s.service_set_controller,
            s.kamaji_cluster_manager,
            s.static_cluster_manager,
            s.ovs_helper,
        ]
        return [b for b in blocks if b is not None]

    def is_disabled(self, component: str) -> bool:
        for block in self.component_configs():
            if component == block.COMPONENT:
                return block.disabled
        return component in DISABLED_BY_DEFAULT

    def enabled_components(self) -> list[str]:
        return [name for name in COMPONENT_NAMES if not self.is_disabled(name)]

    @property
    def paused(self) -> bool:
        return bool(self.spec.overrides and self.spec.overrides.paused)


register(DPFOperatorConfig, Hooks())
