"""The provisioning manager's flags (DPF's command-line options), with DPF's defaults."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProvisioningOptions:
    # Namespace of the operator: Argo objects, DMS client certificate, DPFOperatorConfig.
    operator_namespace: str = "dpf-operator-system"
    dms_image: str = "nvcr.io/nvidia/doca/dms:latest"
    hostnetwork_image: str = "nvcr.io/nvidia/doca/hostnetwork:latest"
    bfb_pvc: str = "bfb-pvc"
    image_pull_secrets: tuple[str, ...] = ()
    dms_timeout: int = 900  # `--dms-timeout`, the DMS `-exec_timeout`
    dms_pod_timeout: float = 300.0  # `--dms-pod-timeout`
    dms_port: int = 9339
    requeue: float = 5.0  # BFB/DPU: requeue when nothing changed
    # DPF polls every DPU every 5 s whatever it waits for. A world that wakes the DPU itself when the thing
    # it waits for happens (its Tasks port on completion, host up, DPU-cluster Node events) may poll those
    # waits less often without changing when a phase advances; the twin does, production keeps DPF's 5 s.
    task_poll: float = 5.0  # waiting on its own running install / reboot task
    reboot_wait_poll: float = 5.0  # waiting for the host to come back (uptime check) or a manual reboot
    ready_poll: float = 5.0  # the Ready phase's self-healing check
    init_poll: float = 5.0  # Initializing: waiting for a DPUCluster to be Ready and have room
    activate_attempts: int = 10
    activate_timeout: float = 1800.0  # OS.Activate context: 30 minutes
    reboot_status_poll: float = 3.0
    cloud_init_timeout: float = 90.0  # `CLOUD_INIT_TIMEOUT`
    bfcfg_max_bytes: int = 131072
    default_num_vfs: int = 16
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SfcOptions:
    """The SFC agent's periods (`sfc-controller` on every DPU node), with DPF's values."""

    # DPF re-applies every programmed chain's flows every 5 s and re-ensures every ServiceInterface's ports every
    # 20 s, whatever changed. A world that wakes the agent when what that re-apply restores changes (the node's
    # OVS restarting or losing flows, ports or ofports moving, the ServiceInterfaces/Pods a chain resolves
    # through changing) may re-apply a programmed chain less often; the twin does, production keeps DPF's 5 s.
    # A pass that failed (a member missing, a flow or status write refused) retries at `chain_retry` either way.
    chain_requeue: float = 5.0
    chain_retry: float = 5.0
    stale_removal_period: float = 60.0  # `--stale-flows-removal-period`
    # Our Ready writes (DPF writes no ServiceInterface/ServiceChain status) wake the controller that wrote them
    # for one more pass, which re-tries a chain that failed while its members were being wired. DPF's agent
    # has no such pass (it waits its 5 s); the twin drops it, production keeps it.
    status_writes_wake: bool = True
