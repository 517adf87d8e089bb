"""DPFOperatorConfig: the operator's own controller. It deploys DPF's system components and tears them down in
order.

One pass (DPF's dpfoperatorconfig controller):
1. only the configured singleton (`--config-namespace`/`--config-name`); paused -> nothing at all;
2. deleting -> staged: DPUDeployments; then DPUServiceChains, DPUServiceInterfaces, DPUServiceIPAMs; then
   DPUServices (other than the system components) and DPUServiceCredentialRequests; then DPUClusters, DPUSets,
   BFBs, DPUFlavors. Each stage is deleted in every namespace and must be empty before the next starts
   (requeue while waiting); then the component objects are deleted and waited for; then the finalizer goes;
3. image pull secrets: Secrets named in `imagePullSecrets` (own namespace) get `dpu.nvidia.com/image-pull-secret=""`,
   others lose it;
4. components: host ones as Deployments/DaemonSets in the operator namespace; DPU ones as DPUServices named by
   component with the networking chart, values `<name>.enabled=true`, the image override, the pull secrets and
   the MTUs (`flannel.flannel.mtu` = controlPlaneMTU, `multus.mtu` = highSpeedMTU). A component no longer
   rendered (disabled) is deleted, as the ApplySet prune does;
5. `SystemComponentsReady`: every host workload fully ready and every system DPUService Ready; summary.

Differences from DPF (docs/differences.md): the singleton guard compares the namespace with the configured
namespace (DPF compares it with the name, so any object named `dpfoperatorconfig` passes); host components
are rendered as one workload each, not DPF's full manifests (RBAC, webhooks, Services).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from dpf_core.api.conditions import (
    REASON_AWAITING_DELETION,
    REASON_PENDING,
    REASON_SUCCESS,
    list_names,
    set_condition,
)
from dpf_core.api.external import DaemonSet, Deployment, Secret
from dpf_core.api.meta import KubeObject
from dpf_core.api.operator import (
    CONDITIONS,
    DEFAULT_CONFIG_NAME,
    DEFAULT_CONFIG_NAMESPACE,
    DPF_COMPONENT_LABEL_KEY,
    DPFOPERATORCONFIG_FINALIZER,
    DPU_DETECTOR_NAME,
    DPUSERVICE_CONTROLLER_NAME,
    FLANNEL_NAME,
    IMAGE_PULL_SECRET_LABEL,
    KAMAJI_CLUSTER_MANAGER_NAME,
    MULTUS_NAME,
    NVIPAM_NAME,
    OVS_CNI_NAME,
    OVS_HELPER_NAME,
    PROVISIONING_CONTROLLER_NAME,
    SERVICE_SET_CONTROLLER_NAME,
    SFC_CONTROLLER_NAME,
    SRIOV_DEVICE_PLUGIN_NAME,
    STATIC_CLUSTER_MANAGER_NAME,
    ComponentConfig,
    DPFOperatorConfig,
    DPFOperatorConfigConditionType,
)
from dpf_core.api.provisioning import BFB, DPUCluster, DPUFlavor, DPUSet
from dpf_core.api.svc import (
    DPUDeployment,
    DPUService,
    DPUServiceChain,
    DPUServiceCredentialRequest,
    DPUServiceInterface,
    DPUServiceIPAM,
)
from dpf_core.errors import AlreadyExists, NotFound
from dpf_core.runtime import DONE, Context, Controller, Request, Result, Watch, event_types, from_object

from .mirror import apply
from .reconcile_base import FinalizerReconciler, phase

NAME = "dpfoperatorconfig"
FIELD_OWNER = "dpfoperatorconfig-controller"
APPLYSET_PART_OF = "applyset.kubernetes.io/part-of"
DELETION_REQUEUE = 10.0

HOST_COMPONENTS = (PROVISIONING_CONTROLLER_NAME, DPUSERVICE_CONTROLLER_NAME, DPU_DETECTOR_NAME,
                   KAMAJI_CLUSTER_MANAGER_NAME, STATIC_CLUSTER_MANAGER_NAME)
DPU_COMPONENTS = (FLANNEL_NAME, MULTUS_NAME, SRIOV_DEVICE_PLUGIN_NAME, OVS_CNI_NAME, NVIPAM_NAME, SFC_CONTROLLER_NAME,
                  SERVICE_SET_CONTROLLER_NAME, OVS_HELPER_NAME)
DAEMONSET_COMPONENTS = frozenset({DPU_DETECTOR_NAME})

# The deletion stages: each must be gone (in every namespace) before the next is deleted.
DELETION_STAGES: tuple[tuple[type[KubeObject], ...], ...] = (
    (DPUDeployment,),
    (DPUServiceChain, DPUServiceInterface, DPUServiceIPAM),
    (DPUService, DPUServiceCredentialRequest),
    (DPUCluster, DPUSet, BFB, DPUFlavor),
)


# The DPUFlavor the provisioning-controller component ships (its manifests hold it, in the operator namespace):
# the user guide's HBN + OVN flavor, which DPF's own DPUSet samples and fixtures name without shipping it.
DEFAULT_DPU_FLAVOR = "dpf-provisioning-hbn-ovn"


def default_dpu_flavor_spec() -> dict[str, Any]:
    """The wire spec of DEFAULT_DPU_FLAVOR, as DPF v24.10's provisioning-controller manifests carry it."""
    other_config = [("doca-init", "true"), ("dpdk-max-memzones", "50000"), ("hw-offload", "true"),
                    ("pmd-quiet-idle", "true"), ("max-idle", "20000"), ("max-revalidator", "5000"),
                    ("ctl-pipe-size", "1024")]
    vsctl = "_ovs-vsctl"
    script = [
        "_ovs-vsctl() {", '  ovs-vsctl --no-wait --timeout 15 "$@"', "}", "",
        *(f"{vsctl} set Open_vSwitch . other_config:{k}={v}" for k, v in other_config),
        *(f"{vsctl} --if-exists del-br {br}" for br in ("ovsbr1", "ovsbr2")),
        f"{vsctl} --may-exist add-br br-sfc",
        f"{vsctl} set bridge br-sfc datapath_type=netdev",
        f"{vsctl} set bridge br-sfc fail_mode=secure",
        f"{vsctl} --may-exist add-port br-sfc p0",
        f"{vsctl} set Interface p0 type=dpdk",
        f"{vsctl} set Port p0 external_ids:dpf-type=physical",
        "",
        f"{vsctl} set Open_vSwitch . external-ids:ovn-bridge-datapath-type=netdev",
        f"{vsctl} --may-exist add-br br-ovn",
        f"{vsctl} set bridge br-ovn datapath_type=netdev",
        f"{vsctl} --may-exist add-port br-ovn pf0hpf",
        f"{vsctl} set Interface pf0hpf type=dpdk",
    ]
    mellanox = {"mlnx-bf.conf": 'ALLOW_SHARED_RQ="no"\nIPSEC_FULL_OFFLOAD="no"\nENABLE_ESWITCH_MULTIPORT="yes"\n',
                "mlnx-ovs.conf": 'CREATE_OVS_BRIDGES="no"\n', "mlnx-sf.conf": ""}
    return {
        "bfcfgParameters": ["UPDATE_ATF_UEFI=yes", "UPDATE_DPU_OS=yes", "WITH_NIC_FW_UPDATE=yes"],
        "configFiles": [{"path": f"/etc/mellanox/{name}", "operation": "override", "raw": raw, "permissions": "0644"}
                        for name, raw in mellanox.items()],
        "grub": {"kernelParameters": ["console=hvc0", "console=ttyAMA0", "earlycon=pl011,0x13010000", "fixrttc",
                                      "net.ifnames=0", "biosdevname=0", "iommu.passthrough=1",
                                      "cgroup_no_v1=net_prio,net_cls", "hugepagesz=2048kB", "hugepages=3072"]},
        "nvconfig": [{"device": "*", "parameters": [
            "PF_BAR2_ENABLE=0", "PER_PF_NUM_SF=1", "PF_TOTAL_SF=20", "PF_SF_BAR_SIZE=10", "NUM_PF_MSIX_VALID=0",
            "PF_NUM_PF_MSIX_VALID=1", "PF_NUM_PF_MSIX=228", "INTERNAL_CPU_MODEL=1", "INTERNAL_CPU_OFFLOAD_ENGINE=0",
            "SRIOV_EN=1", "NUM_OF_VFS=46", "LAG_RESOURCE_ALLOCATION=1"]}],
        "ovs": {"rawConfigScript": "\n".join(script) + "\n"},
    }


def default_dpu_flavor(namespace: str) -> DPUFlavor:
    return DPUFlavor.model_validate({
        "apiVersion": "provisioning.dpu.nvidia.com/v1alpha1", "kind": "DPUFlavor",
        "metadata": {"name": DEFAULT_DPU_FLAVOR, "namespace": namespace}, "spec": default_dpu_flavor_spec()})


@dataclass(frozen=True)
class OperatorOptions:
    config_namespace: str = DEFAULT_CONFIG_NAMESPACE
    config_name: str = DEFAULT_CONFIG_NAME
    # DPF's build-time default chart of every DPU component: "<repo>/<chart>:<version>".
    dpu_networking_helm_chart: str = "oci://ghcr.io/nvidia/dpf-system-helm/dpu-networking:v24.10.0"
    default_image: str = "nvcr.io/nvidia/doca/dpf-system:v24.10.0"


def parse_helm_chart(text: str) -> tuple[str, str, str]:
    """`<repo>/<chart>:<version>` -> (repo, chart, version), as DPF's ParseHelmChartString splits it."""
    head, sep, version = text.rpartition(":")
    if not sep or "/" not in head:
        raise ValueError(f"failed to parse helm chart source: invalid format {text}")
    repo, _, chart = head.rpartition("/")
    return repo, chart, version


def _set(values: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = values
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def _block(config: DPFOperatorConfig, component: str) -> ComponentConfig | None:
    for b in config.component_configs():
        if component == b.COMPONENT:
            return b
    return None


def is_system_component(obj: KubeObject) -> bool:
    return DPF_COMPONENT_LABEL_KEY in obj.metadata.labels and APPLYSET_PART_OF in obj.metadata.labels


class OperatorConfigReconciler(FinalizerReconciler[DPFOperatorConfig]):
    KIND = DPFOperatorConfig
    CONDITIONS = CONDITIONS
    FINALIZER = DPFOPERATORCONFIG_FINALIZER

    def __init__(self, options: OperatorOptions | None = None) -> None:
        self.options = options or OperatorOptions()
        # The config's imagePullSecrets as of the last pass: the Secret watch wakes this controller only for
        # those and for labelled Secrets (the DPF namespace also holds a few Secrets per DPU, none of them news).
        self.pull_secret_names: frozenset[str] = frozenset()

    def reconcile(self, ctx: Context, req: Request) -> Result:
        o = self.options
        if req.namespace != o.config_namespace or req.name != o.config_name:
            ctx.log.info("ignoring DPFOperatorConfig %s: only %s/%s is reconciled", req, o.config_namespace, o.config_name)
            return DONE
        return super().reconcile(ctx, req)

    def ignores(self, obj: DPFOperatorConfig) -> bool:
        return obj.paused

    def reconcile_normal(self, ctx: Context, new: DPFOperatorConfig, now: str) -> Result:
        conds = new.status.conditions
        with phase(conds, DPFOperatorConfigConditionType.IMAGE_PULL_SECRETS_RECONCILED, now):
            self._label_pull_secrets(ctx, new)
        with phase(conds, DPFOperatorConfigConditionType.SYSTEM_COMPONENTS_RECONCILED, now):
            self._components(ctx, new)
        return DONE

    def summarize(self, ctx: Context, obj: DPFOperatorConfig, new: DPFOperatorConfig, now: str) -> Exception | None:
        # While tearing down, the components are going on purpose: SystemComponentsReady keeps its last word.
        if obj.metadata.deletion_timestamp is None:
            self._components_ready(ctx, new, now)
        return None

    # --- image pull secrets -----------------------------------------------------------------------------
    def _label_pull_secrets(self, ctx: Context, config: DPFOperatorConfig) -> None:
        wanted = set(config.spec.image_pull_secrets)
        self.pull_secret_names = frozenset(wanted)
        # Only the wanted secrets (read by name) and the labelled ones (a label query) can need a change, as in
        # DPF; listing every Secret of the namespace made each pass O(secrets), and the DPF namespace holds a
        # few per DPU. Name order, as a pass over the whole list would write them.
        found = {s.name: s for s in ctx.client.list(Secret, config.namespace, label_selector=IMAGE_PULL_SECRET_LABEL)}
        for name in wanted - found.keys():
            s = ctx.client.try_get(Secret, name, config.namespace)
            if s is not None:
                found[name] = s
        for _, s in sorted(found.items()):
            has = IMAGE_PULL_SECRET_LABEL in s.metadata.labels
            if (s.name in wanted) == has:
                continue
            changed = s.deepcopy()
            if s.name in wanted:
                changed.metadata.labels[IMAGE_PULL_SECRET_LABEL] = ""
            else:
                del changed.metadata.labels[IMAGE_PULL_SECRET_LABEL]
            ctx.client.update(changed)

    # --- components -------------------------------------------------------------------------------------
    def _labels(self, config: DPFOperatorConfig, component: str) -> dict[str, str]:
        return {DPF_COMPONENT_LABEL_KEY: component, APPLYSET_PART_OF: f"applyset-{config.namespace}-{component}"}

    def render_dpu_service(self, config: DPFOperatorConfig, component: str) -> DPUService:
        block = _block(config, component)
        chart = getattr(block, "helm_chart", None) or self.options.dpu_networking_helm_chart
        repo, chart_name, version = parse_helm_chart(chart)
        values: dict[str, Any] = {}
        _set(values, (component, "enabled"), True)
        image = getattr(block, "image", None)
        if image:
            repository, _, tag = image.partition(":")
            prefix: tuple[str, ...] = (component, "flannel") if component == FLANNEL_NAME else (component,)
            _set(values, (*prefix, "image", "repository"), repository)
            _set(values, (*prefix, "image", "tag"), tag)
        if config.spec.image_pull_secrets:
            _set(values, (component, "imagePullSecrets"), [{"name": n} for n in config.spec.image_pull_secrets])
        if component == FLANNEL_NAME:
            _set(values, (FLANNEL_NAME, "flannel", "mtu"), str(config.spec.networking.control_plane_mtu))
        if component == MULTUS_NAME:
            _set(values, (MULTUS_NAME, "mtu"), str(config.spec.networking.high_speed_mtu))
        ns = config.namespace or "default"
        return DPUService.new(component, ns, metadata={
            "name": component, "namespace": ns, "labels": self._labels(config, component),
            "ownerReferences": [config.controller_ref().model_dump(by_alias=True, exclude_none=True)],
        }, spec={"helmChart": {"source": {"repoURL": repo, "chart": chart_name, "version": version,
                                          "releaseName": component}, "values": values}})

    def render_host_workload(self, config: DPFOperatorConfig, component: str) -> KubeObject:
        block = _block(config, component)
        image = getattr(block, "image", None) or self.options.default_image
        ns = config.namespace or "default"
        args: list[str] = []
        if component == PROVISIONING_CONTROLLER_NAME:
            pc = config.spec.provisioning_controller
            args = [f"--bfb-pvc={pc.bfb_pvc_name}", f"--dms-timeout={pc.dms_timeout or 900}"]
            if config.spec.image_pull_secrets:
                args.append("--image-pull-secrets=" + ",".join(config.spec.image_pull_secrets))
        selector = {DPF_COMPONENT_LABEL_KEY: component}
        template = {"metadata": {"labels": selector},
                    "spec": {"containers": [{"name": "manager", "image": image, "args": args,
                                             "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
                             "tolerations": [{"operator": "Exists"}],
                             "imagePullSecrets": [{"name": n} for n in config.spec.image_pull_secrets]}}
        meta = {"name": component, "namespace": ns, "labels": self._labels(config, component),
                "ownerReferences": [config.controller_ref().model_dump(by_alias=True, exclude_none=True)]}
        spec: dict[str, Any] = {"selector": {"matchLabels": selector}, "template": template}
        if component in DAEMONSET_COMPONENTS:
            return DaemonSet.new(component, ns, metadata=meta, spec=spec)
        return Deployment.new(component, ns, metadata=meta, spec={**spec, "replicas": 1})

    def _components(self, ctx: Context, config: DPFOperatorConfig) -> None:
        enabled = set(config.enabled_components())
        for component in HOST_COMPONENTS:
            if component in enabled:
                apply(ctx.client, self.render_host_workload(config, component))
        for component in DPU_COMPONENTS:
            if component in enabled:
                apply(ctx.client, self.render_dpu_service(config, component))
        if PROVISIONING_CONTROLLER_NAME in enabled:
            self._default_flavor(ctx, config)
        # The ApplySet prune: component objects of components no longer rendered go.
        for cls in (Deployment, DaemonSet, DPUService):
            for o in ctx.client.list(cls, config.namespace):
                if is_system_component(o) and o.metadata.labels[DPF_COMPONENT_LABEL_KEY] not in enabled:
                    with contextlib.suppress(NotFound):
                        ctx.client.delete(cls, o.name, o.namespace)

    def _default_flavor(self, ctx: Context, config: DPFOperatorConfig) -> None:
        """Created when absent and never rewritten: a DPUFlavor's spec is immutable (the webhook would refuse
        DPF's re-apply too), and a user's flavor of that name is theirs. Not pruned with the component: DPUs
        may still name it."""
        ns = config.namespace or "default"
        if ctx.client.try_get(DPUFlavor, DEFAULT_DPU_FLAVOR, ns) is None:
            with contextlib.suppress(AlreadyExists):
                ctx.client.create(default_dpu_flavor(ns))

    def _components_ready(self, ctx: Context, config: DPFOperatorConfig, now: str) -> bool:
        unready: list[str] = []
        enabled = set(config.enabled_components())
        for component in HOST_COMPONENTS:
            if component not in enabled:
                continue
            if component in DAEMONSET_COMPONENTS:
                ds = ctx.client.try_get(DaemonSet, component, config.namespace)
                st = ds.status if ds is not None else None
                if st is None or not st.desired_number_scheduled or st.number_ready != st.desired_number_scheduled:
                    unready.append(f"DaemonSet {config.namespace}/{component}")
            else:
                dep = ctx.client.try_get(Deployment, component, config.namespace)
                want = (dep.spec.replicas if dep is not None and dep.spec.replicas is not None else 1)
                if dep is None or (dep.status.ready_replicas or 0) < want:
                    unready.append(f"Deployment {config.namespace}/{component}")
        for component in DPU_COMPONENTS:
            if component not in enabled:
                continue
            svc = ctx.client.try_get(DPUService, component, config.namespace)
            if svc is None or not any(c.type == "Ready" and c.status == "True" for c in svc.status.conditions):
                unready.append(f"DPUService {config.namespace}/{component}")
        cond = DPFOperatorConfigConditionType.SYSTEM_COMPONENTS_READY
        if unready:
            set_condition(config.status.conditions, cond, "False", REASON_PENDING,
                          "System components are not ready: " + list_names(unready, ", "), now)
            return False
        set_condition(config.status.conditions, cond, "True", REASON_SUCCESS, "", now)
        return True

    # --- deletion ---------------------------------------------------------------------------------------
    def reconcile_delete(self, ctx: Context, new: DPFOperatorConfig, now: str) -> Result:
        conds = new.status.conditions
        for stage in DELETION_STAGES:
            left: list[str] = []
            for cls in stage:
                for o in ctx.client.list(cls):
                    if cls is DPUService and is_system_component(o) and o.namespace == new.namespace:
                        continue  # the components go last, after everything that may use them
                    left.append(f"{cls.KIND.kind} {o.namespace}/{o.name}")
                    if o.metadata.deletion_timestamp is None:
                        with contextlib.suppress(NotFound):
                            ctx.client.delete(cls, o.name, o.namespace)
            if left:
                set_condition(conds, DPFOperatorConfigConditionType.SYSTEM_COMPONENTS_RECONCILED, "False",
                              REASON_AWAITING_DELETION, "Waiting for deletion of: " + ", ".join(left[:10]), now)
                return Result(requeue_after=DELETION_REQUEUE)
        left = []
        for cls in (DPUService, Deployment, DaemonSet):
            for o in ctx.client.list(cls, new.namespace):
                if not is_system_component(o):
                    continue
                left.append(f"{cls.KIND.kind} {o.namespace}/{o.name}")
                if o.metadata.deletion_timestamp is None:
                    with contextlib.suppress(NotFound):
                        ctx.client.delete(cls, o.name, o.namespace)
        if left:
            set_condition(conds, DPFOperatorConfigConditionType.SYSTEM_COMPONENTS_RECONCILED, "False",
                          REASON_AWAITING_DELETION, "Waiting for deletion of system components: " + ", ".join(left), now)
            return Result(requeue_after=DELETION_REQUEUE)
        new.metadata.finalizers = [f for f in new.metadata.finalizers if f != DPFOPERATORCONFIG_FINALIZER]
        return DONE


def controller(options: OperatorOptions | None = None) -> Controller:
    opts = options or OperatorOptions()

    def config_request(obj: KubeObject) -> list[Request]:
        return [Request(opts.config_namespace, opts.config_name)]

    def labelled(obj: KubeObject) -> list[Request]:
        return config_request(obj) if DPF_COMPONENT_LABEL_KEY in obj.metadata.labels else []

    reconciler = OperatorConfigReconciler(opts)

    def pull_secret(obj: KubeObject) -> list[Request]:
        # DPF watches no Secret and retries a missing pull secret by backoff; we skip a missing one and are woken
        # when it appears (or when a labelled one changes or goes).
        if obj.namespace != opts.config_namespace:
            return []
        if obj.name in reconciler.pull_secret_names or IMAGE_PULL_SECRET_LABEL in obj.metadata.labels:
            return config_request(obj)
        return []

    return Controller(NAME, reconciler, DPFOperatorConfig, [
        Watch(DPUService, from_object(labelled)),
        Watch(Deployment, from_object(labelled)),
        Watch(DaemonSet, from_object(labelled)),
        Watch(Secret, from_object(pull_secret)),
        # Only a staged teardown looks at these, and it waits for them to be gone: their deletions are the news
        # (a DPUSet's status moves with every DPU, which would otherwise wake this controller fleet-wide).
        *[Watch(cls, from_object(config_request), event_types("DELETED"))
          for stage in DELETION_STAGES for cls in stage if cls is not DPUService],
    ])

