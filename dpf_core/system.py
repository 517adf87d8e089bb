"""The composition: which controllers run where. The twin and the operator build their Managers from these
lists, so both run the same set of controllers.

- the host cluster: DPF's provisioning manager (BFB, DPUSet, DPU, DPUCluster), the DPUServiceInterface/Chain/IPAM
  mirrors of the dpuservicechain manager, and the Kamaji and static cluster managers. Those two are binaries of
  their own in DPF, each a Deployment the dpf-operator creates or prunes from the DPFOperatorConfig: a host
  composition hosts each as its own Manager and starts/stops it as `deployed_cluster_managers` says;
- each DPU cluster: the servicechainset-controller (ServiceInterfaceSet, ServiceChainSet), NVIPAM's controller
  (IPPool, CIDRPool) and the Pod IPAM injector;
- each DPU node: the SFC controller (ServiceInterface, ServiceChain, stale object remover), on that node's OVS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from dpf_core.api.meta import KubeObject
from dpf_core.api.operator import KAMAJI_CLUSTER_MANAGER_NAME, STATIC_CLUSTER_MANAGER_NAME, DPFOperatorConfig
from dpf_core.controllers import (
    bfb,
    credential_request,
    dpu,
    dpucluster,
    dpudeployment,
    dpuservice,
    dpuservicechain,
    dpuserviceinterface,
    dpuserviceipam,
    dpuset,
    ipam_injector,
    kamaji_cluster_manager,
    nvipam,
    operator_config,
    servicechainset,
    serviceinterfaceset,
    sfc,
    static_cluster_manager,
)
from dpf_core.controllers.options import ProvisioningOptions, SfcOptions
from dpf_core.runtime import Controller
from dpf_core.store.protocol import WatchEvent


def provisioning_controllers(options: ProvisioningOptions | None = None) -> list[Controller]:
    """DPF's provisioning manager (`provisioning-controller`); the cluster managers are not part of it."""
    return [
        bfb.controller(options),
        dpuset.controller(options),
        dpu.controller(options),
        dpucluster.controller(options),
    ]


# The cluster managers by the name of the Deployment the operator gives each (also its component name in the
# DPFOperatorConfig), in the operator's order.
CLUSTER_MANAGERS: Mapping[str, Callable[[ProvisioningOptions | None], Controller]] = {
    KAMAJI_CLUSTER_MANAGER_NAME: kamaji_cluster_manager.controller,
    STATIC_CLUSTER_MANAGER_NAME: static_cluster_manager.controller,
}
CLUSTER_MANAGER_NAMES: tuple[str, ...] = tuple(CLUSTER_MANAGERS)


def cluster_manager_controllers(name: str, options: ProvisioningOptions | None = None) -> list[Controller]:
    """The controllers of one cluster manager process (`kamaji-cluster-manager`, `static-cluster-manager`)."""
    try:
        factory = CLUSTER_MANAGERS[name]
    except KeyError:
        raise ValueError(f"unknown cluster manager {name!r} (known: {', '.join(CLUSTER_MANAGER_NAMES)})") from None
    return [factory(options)]


def deployed_cluster_managers(config: DPFOperatorConfig | None) -> tuple[str, ...]:
    """The cluster managers the operator deploys for `config`: `kamaji-cluster-manager` unless disabled,
    `static-cluster-manager` only when configured and not disabled (DPF's inventory defaults). Without a config
    (none applied yet, or one that does not count, see `operator_config_change`) both run: the twin's stand-in
    for an operator configured with both, so a DPUCluster of either type comes up (docs/differences.md; DPF
    without a DPFOperatorConfig deploys nothing)."""
    if config is None:
        return CLUSTER_MANAGER_NAMES
    enabled = set(config.enabled_components())
    return tuple(name for name in CLUSTER_MANAGER_NAMES if name in enabled)


def counts_as_operator_config(obj: KubeObject | None, namespace: str | None = None, name: str | None = None) -> bool:
    """Whether the operator acts on `obj`: only its configured singleton (DPF's `--config-namespace` /
    `--config-name`, default `dpf-operator-system/dpfoperatorconfig`), and nothing while it is paused."""
    options = operator_config.OperatorOptions()
    want = (namespace or options.config_namespace, name or options.config_name)
    return (isinstance(obj, DPFOperatorConfig) and not obj.paused
            and (obj.metadata.namespace, obj.metadata.name) == want)


def operator_config_change(ev: WatchEvent, namespace: str | None = None, name: str | None = None) -> tuple[str, ...] | None:
    """The cluster managers to run after a DPFOperatorConfig watch event, or None when the event changes
    nothing: another object than the singleton, a paused config, and a deletion (the Deployments stay as they
    were, as in the twin)."""
    config = ev.object
    if ev.type == "DELETED" or not isinstance(config, DPFOperatorConfig):
        return None
    return deployed_cluster_managers(config) if counts_as_operator_config(config, namespace, name) else None


def service_chain_host_controllers() -> list[Controller]:
    return [dpuserviceinterface.controller(), dpuservicechain.controller(), dpuserviceipam.controller()]


def dpuservice_controllers() -> list[Controller]:
    """DPF's dpuservice manager and the operator's config controller (need ClusterClients and a TokenIssuer in
    `Ports.extra["tokens"]` for credential requests)."""
    return [credential_request.controller(), dpuservice.controller(), dpudeployment.controller(), operator_config.controller()]


def host_controllers(
    options: ProvisioningOptions | None = None, cluster_managers: Sequence[str] = CLUSTER_MANAGER_NAMES,
) -> list[Controller]:
    """Everything that runs against the host cluster's API server (needs the Tasks, BfbStore, Dms, HostExec and
    ClusterClients ports), with the named cluster managers (`deployed_cluster_managers` of the config)."""
    managers = [c for name in cluster_managers for c in cluster_manager_controllers(name, options)]
    return [*provisioning_controllers(options), *managers, *service_chain_host_controllers(), *dpuservice_controllers()]


def dpu_cluster_controllers() -> list[Controller]:
    """What runs against one DPU cluster's API server (no ports needed)."""
    return [
        serviceinterfaceset.controller(),
        servicechainset.controller(),
        *nvipam.controllers(),
        ipam_injector.controller(),
    ]


def dpu_node_controllers(
    node_name: str,
    *,
    lookup_bridges: Sequence[str] = (sfc.SFC_BRIDGE, sfc.HBN_BRIDGE),
    stale_period: float | None = None,
    options: SfcOptions | None = None,
) -> list[Controller]:
    """The agent of one DPU node (`SFC_NODE_NAME`) against its DPU cluster; needs that node's Ovs port.
    `options` carries its periods (DPF's by default; the twin lengthens the chain re-apply and wakes chains);
    `stale_period`, when given, overrides the stale sweep's."""
    return sfc.controllers(node_name, lookup_bridges=lookup_bridges, stale_period=stale_period, options=options)
