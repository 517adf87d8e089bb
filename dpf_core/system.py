"""The composition: which controllers run where. The twin and the operator build their Managers from these
lists, so both run the same set of controllers.

- the host cluster: DPF's provisioning manager (BFB, DPUSet, DPU, DPUCluster), the Kamaji and static cluster
  managers, and the DPUServiceInterface/Chain/IPAM mirrors of the dpuservicechain manager;
- each DPU cluster: the servicechainset-controller (ServiceInterfaceSet, ServiceChainSet), NVIPAM's controller
  (IPPool, CIDRPool) and the Pod IPAM injector;
- each DPU node: the SFC controller (ServiceInterface, ServiceChain, stale object remover), on that node's OVS.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def provisioning_controllers(options: ProvisioningOptions | None = None) -> list[Controller]:
    return [
        bfb.controller(options),
        dpuset.controller(options),
        dpu.controller(options),
        dpucluster.controller(options),
        kamaji_cluster_manager.controller(options),
        static_cluster_manager.controller(options),
    ]


def service_chain_host_controllers() -> list[Controller]:
    return [dpuserviceinterface.controller(), dpuservicechain.controller(), dpuserviceipam.controller()]


def dpuservice_controllers() -> list[Controller]:
    """DPF's dpuservice manager and the operator's config controller (need ClusterClients and a TokenIssuer in
    `Ports.extra["tokens"]` for credential requests)."""
    return [credential_request.controller(), dpuservice.controller(), dpudeployment.controller(), operator_config.controller()]


def host_controllers(options: ProvisioningOptions | None = None) -> list[Controller]:
    """Everything that runs against the host cluster's API server (needs the Tasks, BfbStore, Dms, HostExec and
    ClusterClients ports)."""
    return [*provisioning_controllers(options), *service_chain_host_controllers(), *dpuservice_controllers()]


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
