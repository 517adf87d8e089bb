"""provisioning.dpu.nvidia.com/v1alpha1: BFB, DPUFlavor, DPUSet, DPU, DPUCluster.

Field names, enums, patterns, bounds and defaults follow DPF v24.10's CRD bases; the admission hooks follow
its webhooks (mbfb, vbfb, mdpuset, vdpuset, vdpu, vdpuflavor) and CEL immutability rules.

Difference from DPF (goes in docs/differences.md): vbfb's DPU check in DPF compares each DPU's `spec.bfb`
with the DPU's own name, so it never refuses; we refuse deleting a BFB while a DPU in its namespace has
`spec.bfb` equal to the BFB's name.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final, Literal, TypeVar

from pydantic import Field, field_validator

from dpf_core.errors import FieldCause

from .meta import (
    Condition,
    IntOrString,
    KindInfo,
    KubeObject,
    LabelSelector,
    Model,
    PrinterColumn,
    StrList,
    StrMap,
    Taint,
)
from .quantity import ResourceList, exceeding, format_quantity
from .registry import Hooks, Reader, register

GROUP: Final = "provisioning.dpu.nvidia.com"
VERSION: Final = "v1alpha1"
API_VERSION: Final = "provisioning.dpu.nvidia.com/v1alpha1"

# --- phases -------------------------------------------------------------------------------------------


class BFBPhase(StrEnum):
    INITIALIZING = "Initializing"
    DOWNLOADING = "Downloading"
    READY = "Ready"
    DELETING = "Deleting"
    ERROR = "Error"


class DPUPhase(StrEnum):
    """In the healthy order up to READY; ERROR and DELETING are off the main road."""

    INITIALIZING = "Initializing"
    NODE_EFFECT = "Node Effect"
    PENDING = "Pending"
    DMS_DEPLOYMENT = "DMS Deployment"
    OS_INSTALLING = "OS Installing"
    REBOOTING = "Rebooting"
    HOST_NETWORK_CONFIGURATION = "Host Network Configuration"
    DPU_CLUSTER_CONFIG = "DPU Cluster Config"
    READY = "Ready"
    ERROR = "Error"
    DELETING = "Deleting"


class DPUClusterPhase(StrEnum):
    PENDING = "Pending"
    CREATING = "Creating"
    READY = "Ready"
    NOT_READY = "NotReady"
    FAILED = "Failed"  # in the enum, never set by DPF


# --- conditions and reasons ---------------------------------------------------------------------------


class DPUConditionType(StrEnum):
    INITIALIZED = "Initialized"
    BFB_READY = "BFBReady"
    NODE_EFFECT_READY = "NodeEffectReady"
    DMS_RUNNING = "DMSRunning"
    OS_INSTALLED = "OSInstalled"
    REBOOTED = "Rebooted"
    HOST_NETWORK_READY = "HostNetworkReady"
    READY = "Ready"


class DPUConditionReason(StrEnum):
    """Reasons the DPU controller writes. A True condition's reason defaults to its type's name."""

    DPU_OOB_BRIDGE_NOT_CONFIGURED = "DPUOOBBridgeNotConfigured"
    DPU_CLUSTER_NOT_READY = "DPUClusterNotReady"
    ERROR_OCCURED = "ErrorOccured"  # sic, as DPF spells it
    GET_BFB_FAILED = "GetBFBFailed"
    EXISTING_RSHIM_INSTALL_DETECTED = "ExistingRshimInstallDetected"
    DMS_POD_FAILED = "DMSPodFailed"
    DMS_POD_TIMEDOUT = "DMSPodTimedout"
    INSTALLATION_FAILED = "InstallationFailed"
    INVALID_STATE = "InvalidState"
    WAITING_FOR_MANUAL_POWER_CYCLE_OR_REBOOT = "WaitingForManualPowerCycleOrReboot"
    INITIALIZATION_FAILED = "InitializationFailed"
    DPU_NODE_READY = "DPUNodeReady"
    DPU_NODE_NOT_READY = "DPUNodeNotReady"
    NODE_EFFECT_ERROR = "NodeEffectError"


class DPUClusterConditionType(StrEnum):
    CREATED = "Created"
    READY = "Ready"
    KEEPALIVED_READY = "KeepalivedReady"  # Kamaji cluster manager only


class DPUClusterConditionReason(StrEnum):
    HEALTH_CHECK_PASSED = "HealthCheckPassed"
    HEALTH_CHECK_FAILED = "HealthCheckFailed"
    CREATED = "Created"
    EMPTY_KUBECONFIG = "EmptyKubeconfig"
    CLUSTER_NOT_READY = "ClusterNotReady"
    DEPLOYED = "Deployed"


class EventReason(StrEnum):
    FAILED_DOWNLOAD = "FailedDownload"
    SUCCESSFUL_DOWNLOAD = "SuccessfulDownload"
    FAILED_CREATE = "FailedCreate"
    SUCCESSFUL_CREATE = "SuccessfulCreate"
    FAILED_DELETE = "FailedDelete"
    SUCCESSFUL_DELETE = "SuccessfulDelete"


class ClusterType(StrEnum):
    STATIC = "static"
    KAMAJI = "kamaji"


RECREATE_STRATEGY_TYPE: Final = "Recreate"
ROLLING_UPDATE_STRATEGY_TYPE: Final = "RollingUpdate"
StrategyType = Literal["Recreate", "RollingUpdate"]
FileOperation = Literal["override", "append"]

# --- finalizers, labels, annotations ------------------------------------------------------------------

BFB_FINALIZER: Final = "provisioning.dpu.nvidia.com/bfb-protection"
DPUSET_FINALIZER: Final = "provisioning.dpu.nvidia.com/dpuset-protection"
DPU_FINALIZER: Final = "provisioning.dpu.nvidia.com/dpu-protection"
DPUCLUSTER_FINALIZER_CLEAN_UP: Final = "provisioning.dpu.nvidia.com/cluster-manager-clean-up"
DPUCLUSTER_FINALIZER_INTERNAL_CLEAN_UP: Final = "provisioning.dpu.nvidia.com/cluster-manager-internal-clean-up"

BFB_FILE_NAME_EXTENSION: Final = ".bfb"

NFD_LABEL_PREFIX: Final = "feature.node.kubernetes.io/"
DPU_ENABLED_LABEL: Final = "feature.node.kubernetes.io/dpu-enabled"
DPU_OOB_BRIDGE_CONFIGURED_LABEL: Final = "feature.node.kubernetes.io/dpu-oob-bridge-configured"
# dpuSelector keys that pick a DPU index on a node.
DPU_INDEX_LABEL_PATTERN: Final = r"^feature.node.kubernetes.io/dpu-\d+-.*$"


def dpu_pci_address_label(index: int) -> str:
    return f"{NFD_LABEL_PREFIX}dpu-{index}-pci-address"


def dpu_pf0_name_label(index: int) -> str:
    return f"{NFD_LABEL_PREFIX}dpu-{index}-pf0-name"


def dpu_ps_id_label(index: int) -> str:
    return f"{NFD_LABEL_PREFIX}dpu-{index}-ps-id"


DPUSET_NAME_LABEL: Final = "provisioning.dpu.nvidia.com/dpuset-name"
DPUSET_NAMESPACE_LABEL: Final = "provisioning.dpu.nvidia.com/dpuset-namespace"
DPU_PCI_ADDRESS_LABEL: Final = "provisioning.dpu.nvidia.com/dpu-pciAddress"
DPU_PF_NAME_LABEL: Final = "provisioning.dpu.nvidia.com/dpu-pf-name"
DPU_HOST_IP_LABEL: Final = "provisioning.dpu.nvidia.com/dpu-host-ip"
# Added to spec.cluster.nodeLabels after the OS install.
BFB_VERSION_NODE_LABEL: Final = "provisioning.dpu.nvidia.com/DOCA-BFB-version"
HOST_NODE_LABEL: Final = "provisioning.dpu.nvidia.com/host"
DPU_CLUSTER_LABEL: Final = "dpu.nvidia.com/cluster"

REBOOT_COMMAND_ANNOTATION: Final = "provisioning.dpu.nvidia.com/reboot-command"
POWERCYCLE_COMMAND_ANNOTATION: Final = "provisioning.dpu.nvidia.com/powercycle-command"
HOST_POWER_CYCLE_REQUIRED_ANNOTATION: Final = "provisioning.dpu.nvidia.com/host-power-cycle-required"
REBOOT_CYCLE: Final = "cycle"
REBOOT_RESET: Final = "reset"
REBOOT_SKIP: Final = "skip"

# --- helpers shared by webhooks and controllers --------------------------------------------------------

_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_go_bool(value: str) -> bool:
    """strconv.ParseBool: the spellings DPF accepts for `host-power-cycle-required`."""
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{value}": invalid syntax')


def scaled_value_from_int_or_percent(value: IntOrString | None, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent: an int as is, "N%" of total (ceil or floor); nil is 0."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    if not value.endswith("%"):
        raise ValueError(f"invalid value for IntOrString: invalid type: string is not a percentage: {value!r}")
    digits = value[:-1]
    # Go's Atoi: optional sign, decimal digits, nothing else.
    body = digits[1:] if digits[:1] in ("+", "-") else digits
    if not body.isascii() or not body.isdigit():
        raise ValueError(f'invalid value "{value}": strconv.Atoi: parsing "{digits}": invalid syntax')
    percent = int(digits)
    scaled = percent * total
    return -(-scaled // 100) if round_up else scaled // 100


def _value(v: Any) -> str:
    if isinstance(v, Model):
        v = v.wire()
    try:
        return json.dumps(v, sort_keys=True)
    except (TypeError, ValueError):
        return repr(v)


def _invalid(path: str, value: Any, detail: str) -> FieldCause:
    return FieldCause(path, f"Invalid value: {_value(value)}: {detail}", "FieldValueInvalid")


def _omit_empty(v: object) -> bool:
    return not v


_M = TypeVar("_M", bound=Model)


def _empty(cls: type[_M]) -> Callable[[], _M]:
    """A default_factory building `cls` with every field defaulted.

    Passing the class itself trips the pydantic mypy plugin, which counts fields defaulted through
    `Annotated[..., Field(default_factory=...)]` (StrMap, StrList) as required.
    """
    return lambda: cls.model_validate({})


# --- BFB ----------------------------------------------------------------------------------------------


class BFBSpec(Model):
    """The content of the BFB."""

    url: str = Field(pattern=r"^(http|https)://.+\.bfb$", description="The url of the bfb image to download.")
    file_name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9\_\-\.]+\.bfb$",
        description='File name the BFB is downloaded to on the volume; "<namespace>-<name>.bfb" when omitted.',
    )


class BFBStatus(Model):
    phase: BFBPhase = Field(default=BFBPhase.INITIALIZING, description="The current state of BFB.")


class BFB(KubeObject):
    """A BlueField bundle the provisioning controller downloads to the shared BFB volume."""

    KIND: ClassVar[KindInfo] = KindInfo(group=GROUP, version=VERSION, kind="BFB", plural="bfbs", singular="bfb")

    api_version: Literal["provisioning.dpu.nvidia.com/v1alpha1"] = "provisioning.dpu.nvidia.com/v1alpha1"
    kind: Literal["BFB"] = "BFB"
    spec: BFBSpec
    status: BFBStatus = Field(default_factory=_empty(BFBStatus), json_schema_extra={"default": {"phase": "Initializing"}})


def default_bfb_file_name(obj: KubeObject) -> None:
    """mbfb.kb.io: an empty fileName becomes `<namespace>-<name>.bfb`."""
    assert isinstance(obj, BFB)
    if not obj.spec.file_name:
        obj.spec.file_name = f"{obj.metadata.namespace or ''}-{obj.name}{BFB_FILE_NAME_EXTENSION}"


def validate_bfb_delete(obj: KubeObject, reader: Reader) -> str | None:
    """vbfb.kb.io: refuse while a DPUSet (any namespace) or a DPU (same namespace) uses the BFB."""
    sets = sorted(s.name for s in reader.list(DPUSet) if s.spec.dpu_template.spec.bfb.name == obj.name)
    if sets:
        return f"being referred to by DPUSet(s) [{' '.join(sets)}], you must delete the DPUSet(s) first"
    dpus = sorted(d.name for d in reader.list(DPU, obj.namespace) if d.spec.bfb == obj.name)
    if dpus:
        return f"being referred to by DPU(s) [{' '.join(dpus)}], you must delete the DPU(s) first"
    return None


# --- DPUFlavor ----------------------------------------------------------------------------------------


class DPUFlavorGrub(Model):
    kernel_parameters: StrList
    """Kernel command-line parameters of the DPU OS, written into bf.cfg's GRUB configuration."""


class DPUFlavorSysctl(Model):
    parameters: StrList
    """sysctl settings (key=value) applied on the DPU OS."""


class DPUFlavorNVConfig(Model):
    device: str | None = Field(default=None, description="The device the parameters apply to; all when omitted.")
    parameters: StrList
    """NVConfig parameters (NAME=value) set with mlxconfig on the device."""
    # Carried on the wire; DPF never reads it.
    host_power_cycle_required: bool | None = None
    """Whether the parameters need a host power cycle to take effect (not read by DPF v24.10)."""


class DPUFlavorOVS(Model):
    raw_config_script: str | None = None
    """A shell script run on the DPU at first boot to configure Open vSwitch (bridges, ports, other_config)."""


class ConfigFile(Model):
    path: str | None = None
    """Absolute path of the file on the DPU."""
    operation: FileOperation | None = None
    """override replaces the file, append adds to it."""
    raw: str | None = None
    """The file's content."""
    permissions: str | None = None
    """The file's mode, e.g. "0644"."""


class ContainerdConfig(Model):
    registry_endpoint: str | None = None
    """The registry endpoint containerd on the DPU pulls images from."""


class DPUFlavorSpec(Model):
    grub: DPUFlavorGrub | None = None
    """GRUB settings of the DPU OS."""
    sysctl: DPUFlavorSysctl | None = None
    """sysctl settings of the DPU OS."""
    nvconfig: Annotated[list[DPUFlavorNVConfig], Field(default_factory=list, exclude_if=_omit_empty)]
    """NVConfig of the DPU: at most one entry, applying to every device ("*")."""
    ovs: DPUFlavorOVS | None = None
    """Open vSwitch configuration of the DPU."""
    bfcfg_parameters: StrList
    """Extra KEY=value lines for bf.cfg (e.g. UPDATE_DPU_OS=yes)."""
    config_files: Annotated[list[ConfigFile], Field(default_factory=list, exclude_if=_omit_empty)]
    """Files written on the DPU at install."""
    containerd_config: ContainerdConfig | None = None
    """containerd settings of the DPU."""
    # nil and {} differ for the webhook (systemReservedResources needs dpuResources), so no empty default.
    dpu_resources: ResourceList | None = None
    """Resources the DPU offers to DPUServices (cpu, memory, ...)."""
    system_reserved_resources: ResourceList | None = None
    """Resources kept for the DPU's system; must fit within dpuResources, which it requires."""


class DPUFlavor(KubeObject):
    """How a DPU is configured at install: kernel, sysctl, NVConfig, OVS, bf.cfg, files, resources."""

    KIND: ClassVar[KindInfo] = KindInfo(
        group=GROUP, version=VERSION, kind="DPUFlavor", plural="dpuflavors", singular="dpuflavor", status_subresource=False
    )

    api_version: Literal["provisioning.dpu.nvidia.com/v1alpha1"] = "provisioning.dpu.nvidia.com/v1alpha1"
    kind: Literal["DPUFlavor"] = "DPUFlavor"
    spec: DPUFlavorSpec = Field(default_factory=_empty(DPUFlavorSpec))


def validate_dpuflavor_create(obj: KubeObject, reader: Reader) -> list[FieldCause]:
    """vdpuflavor.kb.io on create: resources must fit, at most one nvconfig entry applying to all devices."""
    assert isinstance(obj, DPUFlavor)
    spec = obj.spec
    causes: list[FieldCause] = []
    if spec.system_reserved_resources is not None and spec.dpu_resources is None:
        causes.append(
            FieldCause(
                "spec.systemReservedResources",
                "Forbidden: spec.systemReservedResources must not be specified if spec.dpuResources are not specified",
                "FieldValueForbidden",
            )
        )
    else:
        need = exceeding(spec.dpu_resources, spec.system_reserved_resources)
        if need:
            listed = " ".join(f"{k}: {format_quantity(v)}" for k, v in sorted(need.items()))
            causes.append(
                _invalid(
                    "spec.systemReservedResources",
                    spec.system_reserved_resources,
                    "reserved resource specified in spec.systemReservedResources exceed the ones defined in "
                    f"spec.dpuResources: Additional resources needed in spec.dpuResources: [{listed}]",
                )
            )
    if len(spec.nvconfig) > 1:
        causes.append(
            FieldCause(
                "spec.nvconfig",
                f"Too many: {len(spec.nvconfig)}: there must be at most one element in nvconfig, "
                "and the element applies to all devices on a host",
                "FieldValueTooMany",
            )
        )
    elif spec.nvconfig and spec.nvconfig[0].device is not None and spec.nvconfig[0].device.strip() != "*":
        causes.append(_invalid("spec.nvconfig[0].device", spec.nvconfig[0].device, 'nvconfig[*].device must be "*"'))
    return causes


def validate_dpuflavor_delete(obj: KubeObject, reader: Reader) -> str | None:
    """vdpuflavor.kb.io on delete: refuse while a DPUSet or DPU in the namespace uses the flavor."""
    sets = sorted(s.name for s in reader.list(DPUSet, obj.namespace) if s.spec.dpu_template.spec.dpu_flavor == obj.name)
    if sets:
        return f"DPUFlavor is being referred to by DPUSet(s) [{' '.join(sets)}], you must delete the DPUSet(s) first"
    dpus = sorted(d.name for d in reader.list(DPU, obj.namespace) if d.spec.dpu_flavor == obj.name)
    if dpus:
        return f"DPUFlavor is being referred to by DPU(s) [{' '.join(dpus)}], you must delete the DPU(s) first"
    return None


# --- node effect (DPUSet template and DPU) -----------------------------------------------------------


class Drain(Model):
    automatic_node_reboot: bool = Field(
        default=True, description="Whether the DPU controller reboots the node on upgrades."
    )


class NodeEffect(Model):
    """How provisioning affects the host Node: at most one of taint, noEffect, customLabel, drain."""

    taint: Taint | None = None
    """Taint the host Node while its DPU is provisioned."""
    no_effect: bool | None = None
    """Leave the host Node alone."""
    custom_label: StrMap
    """Label the host Node with these labels while its DPU is provisioned."""
    drain: Drain | None = None
    """Drain the host Node (through a NodeMaintenance) before provisioning."""

    def effects(self) -> list[str]:
        """The effects set, in DPF's sense of set (noEffect false and an empty customLabel do not count)."""
        out = []
        if self.taint is not None:
            out.append("taint")
        if self.no_effect:
            out.append("noEffect")
        if self.custom_label:
            out.append("customLabel")
        if self.drain is not None:
            out.append("drain")
        return out


def default_node_effect() -> NodeEffect:
    return NodeEffect(drain=Drain(automatic_node_reboot=True), custom_label={})


_NODE_EFFECT_CRD_DEFAULT: dict[str, Any] = {"default": {"drain": {"automaticNodeReboot": True}}}


def _node_effect_or_default(v: Any) -> Any:
    # The API server prunes an explicit null and then applies the CRD default.
    return default_node_effect() if v is None else v


def _node_effect_causes(path: str, node_effect: NodeEffect | None) -> list[FieldCause]:
    if node_effect is not None and len(node_effect.effects()) > 1:
        return [
            _invalid(
                path, node_effect, 'nodeEffect can only be one of "taint", "noEffect" , "drain" and "customLabel"'
            )
        ]
    return []


def _power_cycle_causes(path: str, annotations: dict[str, str]) -> list[FieldCause]:
    value = annotations.get(HOST_POWER_CYCLE_REQUIRED_ANNOTATION)
    if value is None:
        return []
    try:
        parse_go_bool(value)
    except ValueError:
        return [
            _invalid(
                f"{path}[{HOST_POWER_CYCLE_REQUIRED_ANNOTATION}]",
                value,
                f'invalid value "{value}" for "{HOST_POWER_CYCLE_REQUIRED_ANNOTATION}"',
            )
        ]
    return []


# --- DPUSet -------------------------------------------------------------------------------------------


class RollingUpdateDPU(Model):
    max_unavailable: IntOrString | None = Field(
        default=None, description="The maximum number of DPUs that can be unavailable during the update."
    )


class DPUSetStrategy(Model):
    type: StrategyType = Field(default="Recreate", description='Can be "Recreate" or "RollingUpdate".')
    rolling_update: RollingUpdateDPU | None = None
    """Parameters of the RollingUpdate strategy."""


class BFBReference(Model):
    name: str | None = Field(default=None, description="Name of the BFB CR to use for this DPU.")


class ClusterSpec(Model):
    node_labels: StrMap
    """Labels the DPU's Node in the DPU cluster gets."""


class DPUTemplateSpec(Model):
    bfb: BFBReference = Field(default_factory=_empty(BFBReference))
    """The BFB the DPUs install."""
    node_effect: NodeEffect = Field(default_factory=default_node_effect, json_schema_extra=_NODE_EFFECT_CRD_DEFAULT)
    """How provisioning affects the host Node; drain with automatic reboot by default."""
    cluster: ClusterSpec | None = None
    """Settings of the DPU's Node in the DPU cluster."""
    dpu_flavor: str | None = Field(default=None, description="Name of the DPUFlavor used to deploy the DPU.")
    automatic_node_reboot: bool = True
    """Whether the controller reboots the host after the install; when false it waits for a manual reboot."""

    @field_validator("node_effect", mode="before")
    @classmethod
    def _null_node_effect(cls, v: Any) -> Any:
        return _node_effect_or_default(v)


class DPUTemplate(Model):
    annotations: StrMap
    """Annotations every DPU gets (e.g. provisioning.dpu.nvidia.com/host-power-cycle-required)."""
    spec: DPUTemplateSpec = Field(default_factory=_empty(DPUTemplateSpec))
    """The spec every DPU of the set gets."""


class DPUSetSpec(Model):
    strategy: DPUSetStrategy | None = None
    """How DPUs are replaced when the template changes: Recreate (default) or RollingUpdate."""
    node_selector: LabelSelector | None = Field(default=None, description="Nodes to create DPUs on; nil = all.")
    dpu_selector: StrMap
    """Node labels (feature.node.kubernetes.io/dpu-<index>-..., from the DPU detector) naming which DPUs of a
    selected node get a DPU object; empty means the node's first DPU (index 0)."""
    dpu_template: DPUTemplate = Field(default_factory=_empty(DPUTemplate))
    """The template of the DPUs the set creates."""


class DPUSetStatus(Model):
    # Keys are DPUPhase values.
    dpu_statistics: dict[str, int] = Field(default_factory=dict, exclude_if=_omit_empty)
    """The number of the set's DPUs in each phase."""


class DPUSet(KubeObject):
    """Creates a DPU for every selected Node's DPU and rolls them when the template changes."""

    KIND: ClassVar[KindInfo] = KindInfo(group=GROUP, version=VERSION, kind="DPUSet", plural="dpusets", singular="dpuset")

    api_version: Literal["provisioning.dpu.nvidia.com/v1alpha1"] = "provisioning.dpu.nvidia.com/v1alpha1"
    kind: Literal["DPUSet"] = "DPUSet"
    spec: DPUSetSpec = Field(default_factory=_empty(DPUSetSpec))
    status: DPUSetStatus = Field(default_factory=_empty(DPUSetStatus))


def default_dpuset(obj: KubeObject) -> None:
    """mdpuset.kb.io."""
    assert isinstance(obj, DPUSet)
    spec = obj.spec
    if spec.strategy is None:
        spec.strategy = DPUSetStrategy(type=RECREATE_STRATEGY_TYPE)
    elif spec.strategy.type == ROLLING_UPDATE_STRATEGY_TYPE:
        if spec.strategy.rolling_update is None:
            spec.strategy.rolling_update = RollingUpdateDPU(max_unavailable=1)
        elif spec.strategy.rolling_update.max_unavailable is None:
            # DPF's validator dereferences it (a panic); 1 is what the controller's clamp makes of nil anyway.
            spec.strategy.rolling_update.max_unavailable = 1


def _strategy_causes(strategy: DPUSetStrategy | None) -> list[FieldCause]:
    if strategy is None or strategy.type != ROLLING_UPDATE_STRATEGY_TYPE or strategy.rolling_update is None:
        return []
    path = "spec.strategy.rollingUpdate.maxUnavailable"
    value = strategy.rolling_update.max_unavailable
    if isinstance(value, str):
        try:
            scaled = scaled_value_from_int_or_percent(value, 100, False)
        except ValueError as e:
            return [_invalid(path, value, str(e))]
        if scaled <= 0 or scaled > 100:
            return [
                _invalid(path, value, "the value range of maxUnavailable must be greater than 0% and less than or equal to 100%")
            ]
    elif isinstance(value, int) and value <= 0:
        return [_invalid(path, value, "the value range of maxUnavailable must be greater 0")]
    return []


def validate_dpuset_create(obj: KubeObject, reader: Reader) -> list[FieldCause]:
    assert isinstance(obj, DPUSet)
    template = obj.spec.dpu_template
    return (
        _strategy_causes(obj.spec.strategy)
        + _node_effect_causes("spec.dpuTemplate.spec.nodeEffect", template.spec.node_effect)
        + _power_cycle_causes("spec.dpuTemplate.annotations", template.annotations)
    )


def validate_dpuset_update(new: KubeObject, old: KubeObject, reader: Reader) -> list[FieldCause]:
    assert isinstance(new, DPUSet)
    return _strategy_causes(new.spec.strategy) + _node_effect_causes(
        "spec.dpuTemplate.spec.nodeEffect", new.spec.dpu_template.spec.node_effect
    )


# --- DPU ----------------------------------------------------------------------------------------------


class K8sCluster(Model):
    """The DPU cluster this DPU joins; name/namespace are set once by the allocator."""

    name: str | None = None
    """Name of the DPUCluster the DPU joins; set once, when the DPU is assigned a cluster."""
    namespace: str | None = None
    """Namespace of the DPUCluster the DPU joins; set once."""
    node_labels: StrMap
    """Labels the DPU's Node in the DPU cluster gets."""


class DPUSpec(Model):
    node_name: str = Field(description="The host Node this DPU is in.")
    bfb: str = Field(description="Name of the BFB CR to install.")
    pci_address: str | None = None
    """PCI address of the DPU in the host; immutable once set (the controllers take it from the dpu-pciAddress
    label)."""
    node_effect: NodeEffect = Field(default_factory=default_node_effect, json_schema_extra=_NODE_EFFECT_CRD_DEFAULT)
    """How provisioning affects the host Node; drain with automatic reboot by default."""
    cluster: K8sCluster = Field(default_factory=_empty(K8sCluster))
    """The DPU cluster the DPU joins as a Node."""
    dpu_flavor: str | None = None
    """Name of the DPUFlavor used to install the DPU."""
    automatic_node_reboot: bool = True
    """Whether the controller reboots the host after the install; when false it waits for a manual reboot."""

    @field_validator("node_effect", mode="before")
    @classmethod
    def _null_node_effect(cls, v: Any) -> Any:
        return _node_effect_or_default(v)


class Firmware(Model):
    bmc: str | None = None
    """BMC firmware version."""
    nic: str | None = None
    """NIC firmware version."""
    uefi: str | None = None
    """UEFI firmware version."""


class DPUStatus(Model):
    phase: DPUPhase = DPUPhase.INITIALIZING
    """Where the DPU is in provisioning: Initializing, Node Effect, Pending, DMS Deployment, OS Installing,
    Rebooting, Host Network Configuration, DPU Cluster Config, Ready, Error or Deleting."""
    conditions: Annotated[list[Condition], Field(default_factory=list, exclude_if=_omit_empty)]
    """The DPU's conditions: Initialized, BFBReady, NodeEffectReady, DMSRunning, OSInstalled, Rebooted,
    HostNetworkReady, Ready."""
    bfb_version: str | None = None
    """Version of the BFB installed on the DPU."""
    pci_device: str | None = None
    """PCI device of the DPU."""
    required_reset: bool | None = None
    """Whether the DPU needs a reset."""
    firmware: Firmware | None = None
    """Firmware versions of the DPU."""


class DPU(KubeObject):
    """One BlueField in one host, taken from BFB install to a Ready node of a DPU cluster."""

    KIND: ClassVar[KindInfo] = KindInfo(
        group=GROUP,
        version=VERSION,
        kind="DPU",
        plural="dpus",
        singular="dpu",
        printer_columns=(
            PrinterColumn(name="Ready", type="string", json_path=".status.conditions[?(@.type=='Ready')].status"),
            PrinterColumn(name="Phase", type="string", json_path=".status.phase", description="phase of the cluster"),
        ),
    )

    api_version: Literal["provisioning.dpu.nvidia.com/v1alpha1"] = "provisioning.dpu.nvidia.com/v1alpha1"
    kind: Literal["DPU"] = "DPU"
    spec: DPUSpec
    status: DPUStatus = Field(default_factory=_empty(DPUStatus), json_schema_extra={"default": {"phase": "Initializing"}})


def validate_dpu_create(obj: KubeObject, reader: Reader) -> list[FieldCause]:
    """vdpu.kb.io on create."""
    assert isinstance(obj, DPU)
    return _node_effect_causes("spec.nodeEffect", obj.spec.node_effect) + _power_cycle_causes(
        "metadata.annotations", obj.metadata.annotations
    )


def validate_dpu_update(new: KubeObject, old: KubeObject, reader: Reader) -> list[FieldCause]:
    """vdpu.kb.io on update: the annotation is checked on create only, as in DPF."""
    assert isinstance(new, DPU)
    return _node_effect_causes("spec.nodeEffect", new.spec.node_effect)


# --- DPUCluster ---------------------------------------------------------------------------------------


class KeepalivedSpec(Model):
    vip: str = Field(description="The virtual IP shared by the keepalived instances.")
    virtual_router_id: int = Field(alias="virtualRouterID", ge=1, le=255)
    """The VRRP virtual router ID (1-255)."""
    interface: str = Field(min_length=1, description="The interface the VIP is assigned to.")
    node_selector: StrMap
    """Nodes keepalived runs on."""


class ClusterEndpointSpec(Model):
    keepalived: KeepalivedSpec | None = None
    """A keepalived-managed virtual IP as the cluster's endpoint."""


class DPUClusterSpec(Model):
    # Unanchored on purpose (as in DPF): the API server and pydantic both search, so "x/kamaji-like" passes.
    type: str = Field(
        pattern=r"kamaji|static|[^/]+/.*",
        description='"static", "kamaji", or an ISV type with a prefix ("<vendor>/<type>").',
    )
    max_nodes: int = Field(default=1000, ge=1, le=1000)
    """The most DPUs (Nodes) the cluster takes (1-1000)."""
    version: str = Field(description="Kubernetes control-plane version.")
    kubeconfig: str | None = Field(
        default=None, description="Name of the Secret (key admin.conf) holding the cluster's admin kubeconfig."
    )
    cluster_endpoint: ClusterEndpointSpec | None = None
    """How the cluster's control plane is reached."""


class DPUClusterStatus(Model):
    phase: DPUClusterPhase = DPUClusterPhase.PENDING
    """The cluster's state: Pending, Creating, Ready, NotReady or Failed."""
    conditions: Annotated[list[Condition], Field(default_factory=list, exclude_if=_omit_empty)]
    """The cluster's conditions."""


class DPUCluster(KubeObject):
    """A Kubernetes cluster whose nodes are DPUs."""

    KIND: ClassVar[KindInfo] = KindInfo(
        group=GROUP,
        version=VERSION,
        kind="DPUCluster",
        plural="dpuclusters",
        singular="dpucluster",
        printer_columns=(
            PrinterColumn(name="Ready", type="string", json_path=".status.conditions[?(@.type=='Ready')].status"),
            PrinterColumn(name="Phase", type="string", json_path=".status.phase", description="phase of the cluster"),
            PrinterColumn(name="Type", type="string", json_path=".spec.type", description="type of the cluster"),
            PrinterColumn(name="MaxNodes", type="integer", json_path=".spec.maxNodes", description="max amount of nodes"),
            PrinterColumn(
                name="Version", type="string", json_path=".spec.version", description="Kubernetes control-plane version"
            ),
        ),
    )

    api_version: Literal["provisioning.dpu.nvidia.com/v1alpha1"] = "provisioning.dpu.nvidia.com/v1alpha1"
    kind: Literal["DPUCluster"] = "DPUCluster"
    spec: DPUClusterSpec
    status: DPUClusterStatus = Field(
        default_factory=_empty(DPUClusterStatus), json_schema_extra={"default": {"phase": "Pending"}}
    )


# --- registration ------------------------------------------------------------------------------------

# The CRDs' transition rules (x-kubernetes-validations), rule text and message as DPF's CRDs spell them.
_VALUE_IMMUTABLE = "Value is immutable"
register(
    BFB,
    Hooks(
        default=[default_bfb_file_name],
        validate_delete=[validate_bfb_delete],
        webhook="vbfb.kb.io",
        immutable=["spec"],
        immutable_rules={"spec": ("self == oldSelf", _VALUE_IMMUTABLE)},
    ),
)
register(
    DPUFlavor,
    Hooks(
        validate_create=[validate_dpuflavor_create],
        validate_delete=[validate_dpuflavor_delete],
        webhook="vdpuflavor.kb.io",
        immutable=["spec"],
        immutable_rules={"spec": ("self == oldSelf", "DPUFlavor spec is immutable")},
    ),
)
register(
    DPUSet,
    Hooks(
        default=[default_dpuset],
        validate_create=[validate_dpuset_create],
        validate_update=[validate_dpuset_update],
        webhook="vdpuset.kb.io",
    ),
)
register(
    DPU,
    Hooks(
        validate_create=[validate_dpu_create],
        validate_update=[validate_dpu_update],
        webhook="vdpu.kb.io",
        immutable=["spec.nodeName", "spec.pciAddress?", "spec.cluster.name?", "spec.cluster.namespace?"],
        immutable_rules={
            "spec.nodeName": ("self == oldSelf", _VALUE_IMMUTABLE),
            "spec.pciAddress?": ("self == oldSelf", _VALUE_IMMUTABLE),
            "spec.cluster.name?": ("self==oldSelf", _VALUE_IMMUTABLE),
            "spec.cluster.namespace?": ("self==oldSelf", _VALUE_IMMUTABLE),
        },
    ),
)
register(
    DPUCluster,
    Hooks(
        immutable=["spec.kubeconfig?"],
        immutable_rules={"spec.kubeconfig?": ('oldSelf==""||self==oldSelf', "kubeconfig is immutable")},
    ),
)
