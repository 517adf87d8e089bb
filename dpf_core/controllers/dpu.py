"""The DPU controller: takes one BlueField from a fresh DPU object to a Ready node of a DPU cluster.

Reads like DPF v24.10's `dpu_controller.go` + `state/*.go`: add the finalizer (and return), count the DPU
in the allocator, run the handler of the current phase on a copy of the status, write the status only if
it changed, otherwise poll again in 5 s unless the DPU is in Error. A handler's error is returned (rate-
limited retry) only when the status changed or the phase is Error; otherwise the 5 s poll covers it.

Long operations (OS install, host reboot) run as task procedures (dpu_tasks.py) on the Tasks port and are
polled here. Everything the controller needs after a restart is in the store: the allocator resyncs from
the DPUs' `spec.cluster`, and an install that was started is recorded in the DPU annotation
`provisioning.dpu.nvidia.com/install-started` (our extension).

Differences from DPF, for docs/differences.md:
- No cert-manager in the twin: the per-DPU DMS server Secret `<dpu>-server-secret` is created directly
  (placeholder PEM data, controller-owned by the DPU) instead of through Certificate `<dpu>-dms-server-cert`.
- The join command comes from a bootstrap token we create in the DPU cluster ourselves (what `kubeadm token
  create` does) rather than from running kubeadm; it skips CA pinning (`--discovery-token-unsafe-skip-ca-verification`).
- Power cycle runs once as a task and is re-issued only after it failed; DPF re-executes ipmitool on every
  5 s pass until the uptime check passes, which can power-cycle a host again while it boots.
- A finished warm reboot is not restarted while the uptime check waits (DPF forgets the task and starts
  another bf-slr on the next pass unless the host's uptime already shows the reboot).
- In Ready, a failure to recreate a missing DMS/hostnetwork pod ends the pass in Error (DPF carries on and
  may overwrite the Ready condition in the same pass, leaving phase Error with Ready True).
- A DPU without `spec.dpuFlavor` gets a hostnetwork pod with the default VF count and renders bf.cfg with
  defaults (DPF fails to get a flavor with an empty name and never creates the pod / fails the install).
- A pod whose `status.phase` is still empty counts as Pending (the API server defaults it so; DPF would
  count it toward the DMS pod timeout).
- With no DPFOperatorConfig (or several) the VF MTU is 1500 instead of failing the hostnetwork pod.
- `HostNetworkReady` False/`InitializationFailed` after 10 init-container restarts is dead code in DPF
  (the pod has no init containers) and is not implemented.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from dpf_core.api.conditions import get_condition, set_condition
from dpf_core.api.external import (
    NODE_MAINTENANCE_CONDITION_READY,
    ContainerStatus,
    Node,
    NodeMaintenance,
    Pod,
    Secret,
)
from dpf_core.api.meta import KubeObject, OwnerReference, shallow_copy
from dpf_core.api.operator import DPFOperatorConfig
from dpf_core.api.provisioning import (
    BFB,
    BFB_VERSION_NODE_LABEL,
    DPU,
    DPU_FINALIZER,
    DPU_OOB_BRIDGE_CONFIGURED_LABEL,
    DPU_PCI_ADDRESS_LABEL,
    HOST_NODE_LABEL,
    REBOOT_SKIP,
    BFBPhase,
    DPUCluster,
    DPUClusterPhase,
    DPUConditionReason,
    DPUConditionType,
    DPUFlavor,
    DPUPhase,
    DPUStatus,
)
from dpf_core.errors import AlreadyExists, ApiError, NotFound, is_transient
from dpf_core.ports.ops import DmsTarget, OpError
from dpf_core.ports.ports import BfbStore, ClusterClients, Dms, HostExec, Tasks, TaskState
from dpf_core.runtime import DONE, Context, Controller, Lister, Request, Result, Watch, from_object, owner
from dpf_core.runtime.types import parse_rfc3339, rfc3339
from dpf_core.store.protocol import Client

from .allocator import AllocationError, Allocator
from .dpu_tasks import (
    INSTALL_STARTED_ANNOTATION,
    InstallSpec,
    RebootType,
    bfcfg_file_name,
    bootstrap_token,
    host_reboot_command,
    install_procedure,
    install_started_value,
    install_task_key,
    join_command,
    kubeconfig_server,
    parse_install_started,
    power_cycle_procedure,
    reboot_task_key,
    warm_reboot_procedure,
)
from .options import ProvisioningOptions

NAME: Final = "dpu"

NODE_MAINTENANCE_REQUESTOR_ID: Final = "dpu.nvidia.com"
PROVISIONING_GROUP_NAME: Final = "provisioning.dpu.nvidia.com"
KUBECONFIG_KEY: Final = "admin.conf"

TOLERATION_NOT_READY_KEY: Final = "node.kubernetes.io/not-ready"
TOLERATION_UNREACHABLE_KEY: Final = "node.kubernetes.io/unreachable"
TOLERATION_UNSCHEDULABLE_KEY: Final = "node.kubernetes.io/unschedulable"

DMS_PATH: Final = "/opt/mellanox/doca/services/dms/dmsd"
DMS_IMAGE_FOLDER: Final = "/bfb"
DMS_USERNAME: Final = "admin"
DMS_PASSWORD: Final = "admin"
DMS_SERVER_CERT_DIR: Final = "/etc/ssl/certs/server"
DMS_RSHIM_ERROR: Final = (
    "rshim is installed on host which is not supported. Please remove the rshim package from the host"
)

# Ready-condition reasons DPF writes as plain strings (not in its reason constants).
REASON_DPU_CLUSTER_CLIENT_GET_ERROR: Final = "DPUClusterClientGetError"
REASON_DPU_NODE_GET_ERROR: Final = "DPUNodeGetError"

MESSAGE_OS_INSTALLED: Final = "DPU is rebooting"
MESSAGE_CLUSTER_CONFIGURED: Final = "cluster configured"
MESSAGE_WAITING_FOR_JOIN: Final = "waiting for dpu joining cluster"

BOOTSTRAP_TOKEN_NAMESPACE: Final = "kube-system"
BOOTSTRAP_TOKEN_TTL: Final = 24 * 3600.0
EVENT_INSTALL_RESTARTED: Final = "InstallRestarted"

_NUM_OF_VFS = re.compile(r"^NUM_OF_VFS=([0-9]+)")

_log = logging.getLogger("dpf.controllers.dpu")


class DPUError(Exception):
    """A handler cannot go on this pass; the message is what DPF would return as the error."""


# --- names --------------------------------------------------------------------------------------------


def dms_pod_name(dpu_name: str) -> str:
    return f"{dpu_name}-dms"


def hostnetwork_pod_name(dpu_name: str) -> str:
    return f"{dpu_name}-hostnetwork"


def dms_server_secret_name(dpu_name: str) -> str:
    return f"{dpu_name}-server-secret"


def dms_server_cert_name(dpu_name: str) -> str:
    return f"{dpu_name}-dms-server-cert"


def bfb_version_from_url(url: str) -> str:
    """The BFB file's base name without its extension: what /etc/mlnx-release says on the DPU."""
    base = url.rstrip("/").rsplit("/", 1)[-1]
    dot = base.rfind(".")
    return base[:dot] if dot > 0 else base


def pci_address_from_labels(labels: dict[str, str], remove_prefix: bool) -> str:
    """`0000-04-00` (DPU label) -> `0000:04:00`, or `04:00` without the PCI domain."""
    value = labels.get(DPU_PCI_ADDRESS_LABEL)
    if value is None:
        raise DPUError("not found pci address")
    if remove_prefix and "-" in value:
        value = value.split("-", 1)[1]
    return value.replace("-", ":")


def num_of_vfs(flavor: DPUFlavor | None, default: int) -> int:
    if flavor is not None:
        for nvconfig in flavor.spec.nvconfig:
            for parameter in nvconfig.parameters:
                m = _NUM_OF_VFS.match(parameter)
                if m:
                    return int(m.group(1))
    return default


def kubeconfig_of(secret: Secret) -> bytes | None:
    """The `admin.conf` of a DPUCluster's kubeconfig Secret. Only `data`: the API server folds a written
    `stringData` into it and never returns `stringData`."""
    return secret.value(KUBECONFIG_KEY)


def _controller_ref(dpu: DPU) -> OwnerReference:
    return dpu.controller_ref()


# --- ports ----------------------------------------------------------------------------------------------


def _port(ctx: Context, name: str) -> Any:
    port = getattr(ctx.ports, name, None) if ctx.ports is not None else None
    if port is None:
        raise RuntimeError(f"the {NAME} controller needs the {name!r} port and none was supplied")
    return port


def _tasks(ctx: Context) -> Tasks:
    tasks: Tasks = _port(ctx, "tasks")
    return tasks


def _bfb_store(ctx: Context) -> BfbStore:
    store: BfbStore = _port(ctx, "bfb_store")
    return store


def _dms(ctx: Context) -> Dms:
    dms: Dms = _port(ctx, "dms")
    return dms


def _host_exec(ctx: Context) -> HostExec:
    host_exec: HostExec = _port(ctx, "host_exec")
    return host_exec


def dpu_cluster_client(ctx: Context, dc: DPUCluster) -> tuple[Client, bytes]:
    """A client of the DPU cluster from its kubeconfig Secret (DPF's dpucluster.NewConfig(...).Client)."""
    if not dc.spec.kubeconfig:
        raise DPUError(f"DPUCluster {dc.namespace}/{dc.name} has no kubeconfig")
    secret = ctx.client.try_get(Secret, dc.spec.kubeconfig, dc.namespace)
    if secret is None:
        raise DPUError(f"kubeconfig Secret {dc.namespace}/{dc.spec.kubeconfig} not found")
    kubeconfig = kubeconfig_of(secret)
    if kubeconfig is None:
        raise DPUError(f"kubeconfig Secret {dc.namespace}/{dc.spec.kubeconfig} has no {KUBECONFIG_KEY}")
    clusters: ClusterClients = _port(ctx, "clusters")
    client = clusters.for_kubeconfig(kubeconfig)
    if client is None:
        raise DPUError(f"failed to create client for DPU cluster {dc.namespace}/{dc.name}")
    return client, kubeconfig


# --- objects the controller creates -----------------------------------------------------------------


def _tolerations(dpu: DPU) -> list[dict[str, Any]]:
    tolerations: list[dict[str, Any]] = [
        {"key": TOLERATION_NOT_READY_KEY, "operator": "Exists", "effect": "NoExecute"},
        {"key": TOLERATION_NOT_READY_KEY, "operator": "Exists", "effect": "NoSchedule"},
        {"key": TOLERATION_UNREACHABLE_KEY, "operator": "Exists", "effect": "NoExecute"},
        {"key": TOLERATION_UNSCHEDULABLE_KEY, "operator": "Exists", "effect": "NoSchedule"},
    ]
    taint = dpu.spec.node_effect.taint
    if taint is not None:
        # The DMS pod must run on a host the DPU controller itself tainted for provisioning.
        t: dict[str, Any] = {"key": taint.key, "operator": "Equal", "effect": taint.effect}
        if taint.value is not None:
            t["value"] = taint.value
        tolerations.append(t)
    return tolerations


def _node_affinity(node_name: str) -> dict[str, Any]:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}
                ]
            }
        }
    }


def _pod_meta(dpu: DPU, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": dpu.namespace, "ownerReferences": [_controller_ref(dpu).wire()]}


def dms_pod(dpu: DPU, options: ProvisioningOptions) -> Pod:
    """Pod `<dpu>-dms` (DPF's dms.CreateDMSPod): dmsd on the host network, pinned to the DPU's host."""
    pci = pci_address_from_labels(dpu.metadata.labels, remove_prefix=True)
    dmsd = (
        f"./rshim.sh && {DMS_PATH} -bind_address 0.0.0.0:{options.dms_port} -v 99 -auth cert"
        f" -ca {DMS_SERVER_CERT_DIR}/ca.crt -tls_key_file {DMS_SERVER_CERT_DIR}/tls.key"
        f" -tls_cert_file {DMS_SERVER_CERT_DIR}/tls.crt -password {DMS_PASSWORD} -username {DMS_USERNAME}"
        f" -image_folder {DMS_IMAGE_FOLDER} -target_pci {pci} -exec_timeout {options.dms_timeout}"
        " -disable_unbind_at_activate -reboot_status_check none"
    )
    # Fails the pod (and tells the user why, through the termination message) when the host's own rshim
    # driver already owns this DPU: DMS needs the rshim device for itself.
    rshim_preflight = (
        "for misc in /dev/rshim*/misc; do [ -e \"$misc\" ] || continue; "
        f"echo 'DISPLAY_LEVEL 1' > \"$misc\" && grep -q '{pci}' \"$misc\" && "
        f"{{ printf '%s' '{DMS_RSHIM_ERROR}' > /dev/termination-log; exit 1; }}; done; exit 0"
    )
    # Temporary in DPF too: a SW_RESET during install can hit a firmware fatal error that is not recovered
    # automatically; zero the grace period and recover PF0/PF1 and their VFs (PFs first) before DMS starts.
    devlink_grace = (
        f"for dev in $(readlink /sys/bus/pci/devices/0000:{pci}.[01] /sys/bus/pci/devices/0000:{pci}.[01]/virtfn*"
        " | xargs -n1 basename | sort -u); do devlink health set pci/$dev reporter fw_fatal grace_period 0;"
        " devlink health recover pci/$dev reporter fw_fatal; done"
    )
    privileged = {"privileged": True}
    return Pod.model_validate(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": _pod_meta(dpu, dms_pod_name(dpu.name)),
            "spec": {
                "hostNetwork": True,
                "initContainers": [
                    {
                        "name": "rshim-preflight",
                        "image": options.dms_image,
                        "imagePullPolicy": "IfNotPresent",
                        "securityContext": privileged,
                        "command": ["/bin/bash", "-c"],
                        "args": [rshim_preflight],
                    },
                    {
                        "name": "devlink-grace-period",
                        "image": options.dms_image,
                        "imagePullPolicy": "IfNotPresent",
                        "securityContext": privileged,
                        "command": ["/bin/bash", "-xc"],
                        "args": [devlink_grace],
                    },
                ],
                "containers": [
                    {
                        "name": "dms",
                        "image": options.dms_image,
                        "imagePullPolicy": "IfNotPresent",
                        "ports": [{"containerPort": options.dms_port}],
                        "securityContext": privileged,
                        "command": ["/bin/bash", "-c", "--"],
                        "args": [dmsd],
                        "volumeMounts": [
                            {"name": "server-volume", "mountPath": DMS_SERVER_CERT_DIR, "readOnly": True},
                            {"name": "bfb", "mountPath": DMS_IMAGE_FOLDER},
                            {"name": "dev", "mountPath": "/dev"},
                        ],
                    }
                ],
                "imagePullSecrets": [{"name": s} for s in options.image_pull_secrets],
                "volumes": [
                    {"name": "server-volume", "secret": {"secretName": dms_server_secret_name(dpu.name)}},
                    {"name": "bfb", "persistentVolumeClaim": {"claimName": options.bfb_pvc}},
                    {"name": "dev", "hostPath": {"path": "/dev", "type": "Directory"}},
                ],
                "affinity": _node_affinity(dpu.spec.node_name),
                "tolerations": _tolerations(dpu),
            },
        }
    )


def dms_server_secret(dpu: DPU, node_ip: str) -> Secret:
    """Stands in for cert-manager's Certificate `<dpu>-dms-server-cert` (CN = cert name, IP SAN = host IP):
    the twin has no CA, so the keys hold placeholder PEM blocks that name what a real one would carry."""

    def pem(kind: str, body: str) -> str:
        text = f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n"
        return base64.b64encode(text.encode()).decode()

    cn = dms_server_cert_name(dpu.name)
    return Secret.model_validate(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": dms_server_secret_name(dpu.name),
                "namespace": dpu.namespace,
                "ownerReferences": [_controller_ref(dpu).wire()],
                "annotations": {"cert-manager.io/common-name": cn, "cert-manager.io/ip-sans": node_ip},
            },
            "type": "kubernetes.io/tls",
            "data": {
                "ca.crt": pem("CERTIFICATE", "dpf-provisioning-issuer"),
                "tls.crt": pem("CERTIFICATE", f"CN={cn} IP={node_ip}"),
                "tls.key": pem("EC PRIVATE KEY", cn),
            },
        }
    )


def hostnetwork_pod(dpu: DPU, flavor: DPUFlavor | None, vf_mtu: int, options: ProvisioningOptions) -> Pod:
    """Pod `<dpu>-hostnetwork`: puts VF0 of PF0 into the host's br-dpu so the DPU reaches the host."""
    return Pod.model_validate(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": _pod_meta(dpu, hostnetwork_pod_name(dpu.name)),
            "spec": {
                "hostNetwork": True,
                "containers": [
                    {
                        "name": "hostnetwork",
                        "image": options.hostnetwork_image,
                        "imagePullPolicy": "IfNotPresent",
                        "securityContext": {"privileged": True},
                        "command": ["/bin/bash", "-c", "--"],
                        "args": ["hostnetwork.sh"],
                        "env": [
                            {
                                "name": "device_pci_address",
                                "value": pci_address_from_labels(dpu.metadata.labels, remove_prefix=False),
                            },
                            {"name": "num_of_vfs", "value": str(num_of_vfs(flavor, options.default_num_vfs))},
                            {"name": "vf_mtu", "value": str(vf_mtu)},
                        ],
                        "volumeMounts": [{"name": "dev", "mountPath": "/dev"}],
                        "readinessProbe": {
                            "exec": {"command": ["ls", "/tmp/hostnetwork_succeed"]},
                            "periodSeconds": 5,
                        },
                    }
                ],
                "imagePullSecrets": [{"name": s} for s in options.image_pull_secrets],
                "volumes": [{"name": "dev", "hostPath": {"path": "/dev", "type": "Directory"}}],
                "affinity": _node_affinity(dpu.spec.node_name),
                "tolerations": _tolerations(dpu),
            },
        }
    )


def node_maintenance(dpu: DPU) -> NodeMaintenance:
    return NodeMaintenance.model_validate(
        {
            "apiVersion": NodeMaintenance.KIND.api_version,
            "kind": "NodeMaintenance",
            "metadata": {
                "name": dpu.spec.node_name,
                "namespace": dpu.namespace,
                "ownerReferences": [_controller_ref(dpu).wire()],
            },
            "spec": {
                "nodeName": dpu.spec.node_name,
                "requestorID": NODE_MAINTENANCE_REQUESTOR_ID,
                "drainSpec": {"force": True, "deleteEmptyDir": True},
                "additionalRequestors": [PROVISIONING_GROUP_NAME],
            },
        }
    )


# --- one pass --------------------------------------------------------------------------------------


@dataclass
class _Pass:
    ctx: Context
    reconciler: DPUReconciler
    # The latest stored DPU: handlers that write the DPU replace it, so the status write carries its
    # resourceVersion instead of conflicting with our own patch.
    dpu: DPU
    # The stored status (a shared, read-only snapshot) and the pass's own copy, made on the first change:
    # most passes change nothing (echoes of our own writes, pod events, polls), and a copy per pass was the
    # biggest single cost of a no-op reconcile at fleet scale.
    base: DPUStatus
    _status: DPUStatus | None = None
    after_write: list[Callable[[], None]] = field(default_factory=list)
    # How long until the next poll when nothing changed (options.requeue unless the handler knows better).
    poll: float | None = None

    @property
    def status(self) -> DPUStatus:
        """The status to edit (copied on first use)."""
        if self._status is None:
            # Shallow, with its own conditions list: `set` replaces a condition it changes (copy on write),
            # so the snapshot's conditions stay shared and untouched, and the store's status write copies
            # only what changed (meta.share_copy).
            self._status = shallow_copy(self.base, {"conditions": list(self.base.conditions)})
        return self._status

    @property
    def current(self) -> DPUStatus:
        """The status as this pass sees it, for reading: no copy."""
        return self._status if self._status is not None else self.base

    @property
    def changed(self) -> bool:
        """Whether the status to write differs on the wire from the stored one. Typed equality first; a
        new phase or a condition that differs in a wire field certainly differs on the wire (the common
        case, decided without dumping); anything else is decided by the wire (None vs empty)."""
        s, b = self._status, self.base
        if s is None or s == b:
            return False
        if s.phase != b.phase or len(s.conditions) != len(b.conditions):
            return True
        for x, y in zip(s.conditions, b.conditions, strict=True):
            if x != y and (x.type, x.status, x.reason, x.message, x.last_transition_time) != (
                y.type, y.status, y.reason, y.message, y.last_transition_time
            ):
                return True
        return s.wire() != b.wire()

    @property
    def client(self) -> Client:
        return self.ctx.client

    @property
    def options(self) -> ProvisioningOptions:
        return self.reconciler.options

    @property
    def deleting(self) -> bool:
        return self.dpu.metadata.deletion_timestamp is not None

    @property
    def namespace(self) -> str:
        return self.dpu.namespace or ""

    def set(self, type: DPUConditionType, ok: bool, reason: str = "", message: str = "") -> None:
        """DPF's DPUCondition + SetDPUCondition: an empty reason is the type's name."""
        if self._status is None:
            c = get_condition(self.base.conditions, type.value)
            if (c is not None and c.status == ("True" if ok else "False") and c.reason == (reason or type.value)
                    and c.message == message and c.observed_generation is None):
                return  # SetStatusCondition would change nothing: no copy
        set_condition(
            self.status.conditions,
            type.value,
            "True" if ok else "False",
            reason or type.value,
            message,
            self.ctx.timestamp(),
            copy_on_write=True,
        )

    def fail(self, type: DPUConditionType, reason: str, message: str) -> DPUError:
        """Move to Error with `type` False; the caller raises the returned error."""
        self.status.phase = DPUPhase.ERROR
        self.set(type, False, reason, message)
        return DPUError(message)

    def node(self) -> Node:
        return self.client.get(Node, self.dpu.spec.node_name)

    def dpu_cluster(self) -> DPUCluster:
        cluster = self.dpu.spec.cluster
        return self.client.get(DPUCluster, cluster.name or "", cluster.namespace or "")


Handler = Callable[[_Pass], None]


# --- node effect -----------------------------------------------------------------------------------


def _drain(p: _Pass) -> bool:
    """Create or adopt NodeMaintenance `<dpu ns>/<node>` and report whether it is Ready."""
    nm = p.client.try_get(NodeMaintenance, p.dpu.spec.node_name, p.namespace)
    if nm is None:
        p.client.create(node_maintenance(p.dpu))
        return False
    if PROVISIONING_GROUP_NAME not in nm.spec.additional_requestors:
        requestors = [*nm.spec.additional_requestors, PROVISIONING_GROUP_NAME]
        nm = p.client.patch(
            NodeMaintenance, nm.name, nm.namespace, {"spec": {"additionalRequestors": requestors}}
        )
    ready = get_condition(nm.status.conditions, NODE_MAINTENANCE_CONDITION_READY)
    return ready is not None and ready.status == "True"


def apply_node_effect(p: _Pass) -> bool:
    """DPF's Node Effect: True once the host is ready for provisioning."""
    effect = p.dpu.spec.node_effect
    if effect.no_effect:
        return True
    node = p.node()
    if effect.custom_label:
        if any(node.metadata.labels.get(k) != v for k, v in effect.custom_label.items()):
            edited = node.deepcopy()
            edited.metadata.labels.update(effect.custom_label)
            p.client.update(edited)
    elif effect.taint is not None:
        if all(t.key != effect.taint.key for t in node.spec.taints):
            edited = node.deepcopy()
            edited.spec.taints.append(effect.taint.model_copy())
            p.client.update(edited)
    elif effect.drain is not None:
        try:
            return _drain(p)
        except ApiError as e:
            raise p.fail(
                DPUConditionType.NODE_EFFECT_READY, DPUConditionReason.ERROR_OCCURED, f"NodeMaintenance: {e}"
            ) from e
    return True


def delete_node_maintenance(p: _Pass) -> None:
    nm = p.client.try_get(NodeMaintenance, p.dpu.spec.node_name, p.namespace)
    if nm is None:
        return
    if PROVISIONING_GROUP_NAME in nm.spec.additional_requestors:
        # Our claim goes first so the maintenance operator knows provisioning no longer needs the node.
        requestors = [r for r in nm.spec.additional_requestors if r != PROVISIONING_GROUP_NAME]
        try:
            p.client.patch(NodeMaintenance, nm.name, nm.namespace, {"spec": {"additionalRequestors": requestors}})
        except NotFound:
            return
    with contextlib.suppress(NotFound):
        p.client.delete(NodeMaintenance, nm.name, nm.namespace)


def _remove_taint(p: _Pass, node: Node, key: str) -> None:
    if any(t.key == key for t in node.spec.taints):
        edited = node.deepcopy()
        edited.spec.taints = [t for t in edited.spec.taints if t.key != key]
        p.client.update(edited)


def release_node_effect_when_ready(p: _Pass) -> None:
    """DPF's HandleNodeEffect (Ready): lift the taint and the drain; a custom label stays on the node."""
    effect = p.dpu.spec.node_effect
    if effect.no_effect:
        return
    node = p.node()
    if effect.taint is not None:
        _remove_taint(p, node, effect.taint.key)
    if effect.drain is not None:
        delete_node_maintenance(p)


def remove_node_effect(p: _Pass) -> None:
    """DPF's RemoveNodeEffect (Error, Deleting): also takes the custom labels off the node."""
    effect = p.dpu.spec.node_effect
    if effect.no_effect:
        return
    if effect.drain is not None:
        delete_node_maintenance(p)
        return
    node = p.client.try_get(Node, p.dpu.spec.node_name)
    if node is None:
        return
    if effect.custom_label:
        if any(k in node.metadata.labels for k in effect.custom_label):
            edited = node.deepcopy()
            for k in effect.custom_label:
                edited.metadata.labels.pop(k, None)
            p.client.update(edited)
    elif effect.taint is not None:
        _remove_taint(p, node, effect.taint.key)


# --- pods ------------------------------------------------------------------------------------------


def create_dms_pod(p: _Pass) -> None:
    node = p.node()
    if not node.status.addresses:
        raise DPUError(f"no IP addresses found in node {node.name} status")
    if p.client.try_get(Secret, dms_server_secret_name(p.dpu.name), p.namespace) is None:
        with contextlib.suppress(AlreadyExists):
            p.client.create(dms_server_secret(p.dpu, node.status.addresses[0].address))
    p.client.create(dms_pod(p.dpu, p.options))


def _vf_mtu(p: _Pass) -> int:
    configs = p.client.list(DPFOperatorConfig)
    if len(configs) == 1:
        return configs[0].spec.networking.high_speed_mtu
    return 1500


def _flavor(p: _Pass) -> DPUFlavor | None:
    name = p.dpu.spec.dpu_flavor
    if not name:
        return None
    return p.client.get(DPUFlavor, name, p.namespace)


def create_hostnetwork_pod(p: _Pass) -> None:
    p.client.create(hostnetwork_pod(p.dpu, _flavor(p), _vf_mtu(p), p.options))


def _extra(status: ContainerStatus, key: str) -> Any:
    extra = status.model_extra or {}
    return extra.get(key)


def _failed_termination(state: Any) -> dict[str, Any] | None:
    if not isinstance(state, dict):
        return None
    terminated = state.get("terminated")
    if not isinstance(terminated, dict) or terminated.get("exitCode", 1) == 0:
        return None
    return terminated


def _go_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


# --- the phases ------------------------------------------------------------------------------------


def initializing(p: _Pass) -> None:
    if p.deleting:
        p.status.phase = DPUPhase.DELETING
        return
    node = p.node()
    if DPU_OOB_BRIDGE_CONFIGURED_LABEL not in node.metadata.labels:
        p.set(
            DPUConditionType.INITIALIZED,
            False,
            DPUConditionReason.DPU_OOB_BRIDGE_NOT_CONFIGURED,
            "DPU OOB bridge is not configured",
        )
        return
    if not p.dpu.spec.cluster.name:
        try:
            p.dpu = p.reconciler.allocator.allocate(p.client, p.dpu)
        except AllocationError as e:
            p.set(DPUConditionType.INITIALIZED, False, DPUConditionReason.DPU_CLUSTER_NOT_READY, str(e))
            p.poll = p.options.init_poll
        # Allocated or not, DPF moves on only on a pass that sees the cluster in the spec.
        return
    p.status.phase = DPUPhase.NODE_EFFECT
    p.set(DPUConditionType.INITIALIZED, True)


def node_effect(p: _Pass) -> None:
    if p.deleting:
        p.status.phase = DPUPhase.DELETING
        return
    if not apply_node_effect(p):
        return
    p.status.phase = DPUPhase.PENDING
    p.set(DPUConditionType.NODE_EFFECT_READY, True)


def pending(p: _Pass) -> None:
    if p.deleting:
        p.status.phase = DPUPhase.DELETING
        return
    try:
        bfb = p.client.get(BFB, p.dpu.spec.bfb, p.namespace)
    except NotFound as e:
        p.set(DPUConditionType.BFB_READY, False, DPUConditionReason.GET_BFB_FAILED, str(e))
        raise
    if bfb.status.phase != BFBPhase.READY:
        return
    p.status.phase = DPUPhase.DMS_DEPLOYMENT
    p.set(DPUConditionType.BFB_READY, True)


def dms_deployment(p: _Pass) -> None:
    if p.deleting:
        p.status.phase = DPUPhase.DELETING
        return
    name = dms_pod_name(p.dpu.name)
    pod = p.client.try_get(Pod, name, p.namespace)
    if pod is None:
        try:
            create_dms_pod(p)
        except (ApiError, DPUError) as e:
            p.set(DPUConditionType.DMS_RUNNING, False, DPUConditionReason.ERROR_OCCURED, str(e))
            raise
        return
    if pod.metadata.deletion_timestamp is not None:
        return
    phase = pod.status.phase or "Pending"
    if phase == "Pending":
        containers, inits = pod.status.container_statuses, pod.status.init_container_statuses
        if containers and not (containers[0].state or {}).get("waiting"):
            return
        if not inits:
            return
        terminated = _failed_termination(_extra(inits[0], "lastState")) or _failed_termination(inits[0].state)
        if terminated is None:
            return
        message = f"the DMS server {name} is not ready yet, wait for {_go_quote(str(terminated.get('message', '')))}"
        p.set(DPUConditionType.DMS_RUNNING, False, DPUConditionReason.EXISTING_RSHIM_INSTALL_DETECTED, message)
        raise DPUError(message)
    if phase == "Running":
        ip = pod.status.pod_ip
        if not ip or not _dms(p.ctx).reachable(f"{ip}:{p.options.dms_port}"):
            return
        p.status.phase = DPUPhase.OS_INSTALLING
        p.set(DPUConditionType.DMS_RUNNING, True)
        return
    if phase == "Failed":
        raise p.fail(DPUConditionType.DMS_RUNNING, DPUConditionReason.DMS_POD_FAILED, "DMS Pod Failed")
    created = pod.metadata.creation_timestamp
    if created and p.ctx.now() - parse_rfc3339(created) > p.options.dms_pod_timeout:
        raise p.fail(
            DPUConditionType.DMS_RUNNING, DPUConditionReason.DMS_POD_TIMEDOUT, "DMS Pod didn't run and timed out"
        )


def os_installing(p: _Pass) -> None:
    # No deletion check, as in DPF: a deletion waits for the install task to finish.
    bfb = p.client.try_get(BFB, p.dpu.spec.bfb, p.namespace)
    if bfb is None:
        return
    tasks = _tasks(p.ctx)
    key = install_task_key(p.namespace, p.dpu.name)
    started = parse_install_started(p.dpu.metadata.annotations.get(INSTALL_STARTED_ANNOTATION))
    status = tasks.status(key)
    if status is not None and started is None:
        # A task we have no record of starting belongs to an earlier DPU of the same name.
        tasks.forget(key)
        status = None
    if status is None:
        p.reconciler.start_install(p, bfb, started)
        p.poll = p.options.task_poll
        return
    if not status.done:
        p.poll = p.options.task_poll
        return
    if status.state is TaskState.SUCCEEDED:
        labels = {BFB_VERSION_NODE_LABEL: bfb_version_from_url(bfb.spec.url), HOST_NODE_LABEL: p.dpu.spec.node_name}
        if any(p.dpu.spec.cluster.node_labels.get(k) != v for k, v in labels.items()):
            p.dpu = p.client.patch(DPU, p.dpu.name, p.namespace, {"spec": {"cluster": {"nodeLabels": labels}}})
        p.status.phase = DPUPhase.REBOOTING
        p.set(DPUConditionType.OS_INSTALLED, True, message=MESSAGE_OS_INSTALLED)
        p.after_write.append(lambda: tasks.forget(key))
        return
    message = status.message or f"install task {status.state.value.lower()}"
    p.after_write.append(lambda: tasks.forget(key))
    raise p.fail(DPUConditionType.OS_INSTALLED, DPUConditionReason.INSTALLATION_FAILED, message)


def _reboot_done(p: _Pass) -> None:
    p.status.phase = DPUPhase.HOST_NETWORK_CONFIGURATION
    p.set(DPUConditionType.REBOOTED, True)
    tasks = _tasks(p.ctx)
    key = reboot_task_key(p.namespace, p.dpu.name)
    p.after_write.append(lambda: tasks.forget(key))


def rebooting(p: _Pass) -> None:
    tasks = _tasks(p.ctx)
    reboot_key = reboot_task_key(p.namespace, p.dpu.name)
    if p.deleting:
        tasks.cancel(reboot_key)
        tasks.forget(reboot_key)
        p.status.phase = DPUPhase.DELETING
        return
    install_key = install_task_key(p.namespace, p.dpu.name)
    leftover = tasks.status(install_key)
    if leftover is not None and leftover.done:
        # A restart between the Rebooting status write and the forget leaves the finished install behind.
        tasks.forget(install_key)
    node = p.node()
    dms_running = get_condition(p.current.conditions, DPUConditionType.DMS_RUNNING.value)
    if dms_running is None or dms_running.status != "True":
        # DPF's message names OSInstalled although it checks DMSRunning.
        message = f"trying to reboot the host before {DPUConditionType.OS_INSTALLED.value}"
        p.set(DPUConditionType.REBOOTED, False, DPUConditionReason.INVALID_STATE, message)
        raise DPUError(message)
    uptime = _host_exec(p.ctx).uptime(p.dpu.spec.node_name)
    p.poll = p.options.reboot_wait_poll
    if uptime is None:
        raise DPUError(f"cannot read the uptime of host {p.dpu.spec.node_name}: it is probably rebooting")
    # The host rebooted iff it has been up for less time than DMS has been running since before the install.
    since_dms = p.ctx.now() - parse_rfc3339(dms_running.last_transition_time)
    if int(since_dms) > int(uptime):
        _reboot_done(p)
        return
    spec = p.dpu.spec
    automatic = (spec.node_effect.drain is not None and spec.node_effect.drain.automatic_node_reboot) or (
        spec.automatic_node_reboot
    )
    if not automatic:
        p.set(DPUConditionType.REBOOTED, False, DPUConditionReason.WAITING_FOR_MANUAL_POWER_CYCLE_OR_REBOOT)
        return
    command, kind = host_reboot_command(node.metadata.annotations, p.dpu.metadata.annotations)
    if command == REBOOT_SKIP:
        _log.warning(
            "DPU %s/%s: not rebooting host %s (skip): this may cause issues with DPU firmware installation "
            "and configuration",
            p.namespace,
            p.dpu.name,
            spec.node_name,
        )
        _reboot_done(p)
        return
    task = tasks.status(reboot_key)
    if kind is RebootType.POWER_CYCLE:
        if task is None or task.state in (TaskState.FAILED, TaskState.CANCELLED):
            if task is not None:
                tasks.forget(reboot_key)
            node_name = spec.node_name
            tasks.start(reboot_key, lambda: power_cycle_procedure(node_name, command))
            p.poll = p.options.task_poll
        return
    pci = pci_address_from_labels(p.dpu.metadata.labels, remove_prefix=True)
    if task is None:
        node_name = spec.node_name
        tasks.start(reboot_key, lambda: warm_reboot_procedure(node_name, pci, command))
        p.poll = p.options.task_poll
        return
    if not task.done:
        p.poll = p.options.task_poll
        return
    if task.state is TaskState.SUCCEEDED:
        # Phase stays Rebooting until the uptime check sees the host come back.
        p.set(DPUConditionType.REBOOTED, True)
        return
    message = task.message or "warm reboot failed"
    p.after_write.append(lambda: tasks.forget(reboot_key))
    # DPF reports a failed warm reboot on the OSInstalled condition.
    raise p.fail(DPUConditionType.OS_INSTALLED, DPUConditionReason.INSTALLATION_FAILED, message)


def host_network_configuration(p: _Pass) -> None:
    if p.deleting:
        p.status.phase = DPUPhase.DELETING
        return
    pod = p.client.try_get(Pod, hostnetwork_pod_name(p.dpu.name), p.namespace)
    if pod is None:
        create_hostnetwork_pod(p)
        return
    statuses = pod.status.container_statuses
    if statuses and statuses[0].ready:
        p.status.phase = DPUPhase.DPU_CLUSTER_CONFIG
        p.set(DPUConditionType.HOST_NETWORK_READY, True, message=MESSAGE_WAITING_FOR_JOIN)


def dpu_cluster_config(p: _Pass) -> None:
    if p.deleting:
        p.status.phase = DPUPhase.DELETING
        return
    client, _ = dpu_cluster_client(p.ctx, p.dpu_cluster())
    node = client.get(Node, p.dpu.name)
    if not node.is_ready():
        return
    labels = p.dpu.spec.cluster.node_labels
    if any(node.metadata.labels.get(k) != v for k, v in labels.items()):
        edited = node.deepcopy()
        edited.metadata.labels.update(labels)
        client.update(edited)
    p.status.phase = DPUPhase.READY
    p.set(DPUConditionType.READY, True, message=MESSAGE_CLUSTER_CONFIGURED)


def ready(p: _Pass) -> None:
    if p.deleting:
        p.status.phase = DPUPhase.DELETING
        return
    p.poll = p.options.ready_poll
    try:
        if p.client.try_get(Pod, dms_pod_name(p.dpu.name), p.namespace) is None:
            create_dms_pod(p)
        if p.client.try_get(Pod, hostnetwork_pod_name(p.dpu.name), p.namespace) is None:
            create_hostnetwork_pod(p)
    except (ApiError, DPUError) as e:
        if is_transient(e):
            # Not in DPF (its cached client never sees a brownout on these reads): an overloaded or unavailable
            # API server is retried, it does not make a Ready DPU terminal (docs/differences.md).
            p.set(DPUConditionType.READY, False, DPUConditionReason.DPU_NODE_NOT_READY, str(e))
            raise
        raise p.fail(DPUConditionType.READY, DPUConditionReason.DPU_NODE_NOT_READY, str(e)) from e
    try:
        release_node_effect_when_ready(p)
    except ApiError as e:
        if is_transient(e):
            p.set(DPUConditionType.READY, False, DPUConditionReason.NODE_EFFECT_ERROR, str(e))
            raise
        raise p.fail(DPUConditionType.READY, DPUConditionReason.NODE_EFFECT_ERROR, str(e)) from e
    # DPF returns a failed DPUCluster Get as is: a DPU whose cluster was deleted keeps its Ready condition.
    dc = p.dpu_cluster()
    try:
        client, _ = dpu_cluster_client(p.ctx, dc)
    except (ApiError, DPUError) as e:
        p.set(DPUConditionType.READY, False, REASON_DPU_CLUSTER_CLIENT_GET_ERROR, str(e))
        raise
    try:
        node = client.get(Node, p.dpu.name)
    except ApiError as e:
        p.set(DPUConditionType.READY, False, REASON_DPU_NODE_GET_ERROR, str(e))
        raise
    if not node.is_ready():
        p.set(
            DPUConditionType.READY, False, DPUConditionReason.DPU_NODE_NOT_READY, f"DPU Node {node.name} is not Ready"
        )
        return
    p.set(DPUConditionType.READY, True, DPUConditionReason.DPU_NODE_READY)
    labels = p.dpu.spec.cluster.node_labels
    if any(node.metadata.labels.get(k) != v for k, v in labels.items()):
        p.status.phase = DPUPhase.DPU_CLUSTER_CONFIG


def error(p: _Pass) -> None:
    if p.deleting:
        p.status.phase = DPUPhase.DELETING
        return
    remove_node_effect(p)


def deleting(p: _Pass) -> None:
    p.reconciler.allocator.release_dpu(p.dpu)
    remove_node_effect(p)
    bfb_store = _bfb_store(p.ctx)
    cfg = bfcfg_file_name(p.dpu.name)
    if bfb_store.exists(cfg):
        # Not counted as left over (as in DPF): only the API objects below hold the finalizer.
        bfb_store.remove(cfg)
    found = False
    doomed: list[tuple[type[KubeObject], str]] = [
        (Secret, dms_server_secret_name(p.dpu.name)),
        (Pod, dms_pod_name(p.dpu.name)),
        (Pod, hostnetwork_pod_name(p.dpu.name)),
    ]
    for cls, name in doomed:
        if p.client.try_get(cls, name, p.namespace) is None:
            continue
        found = True
        with contextlib.suppress(NotFound):
            p.client.delete(cls, name, p.namespace)
    _delete_dpu_node(p)
    if found or DPU_FINALIZER not in p.dpu.metadata.finalizers:
        return
    # The Node is left out of the check on purpose (as in DPF): a DPU still running kubelet re-registers it.
    edited = p.dpu.deepcopy()
    edited.metadata.finalizers = [f for f in edited.metadata.finalizers if f != DPU_FINALIZER]
    p.dpu = p.client.update(edited)
    tasks = _tasks(p.ctx)
    for key in (install_task_key(p.namespace, p.dpu.name), reboot_task_key(p.namespace, p.dpu.name)):
        tasks.cancel(key)
        tasks.forget(key)


def _delete_dpu_node(p: _Pass) -> None:
    if not p.dpu.spec.cluster.name:
        return
    cluster = p.dpu.spec.cluster
    dc = p.client.try_get(DPUCluster, cluster.name or "", cluster.namespace or "")
    if dc is None:
        return
    client, _ = dpu_cluster_client(p.ctx, dc)
    with contextlib.suppress(NotFound):
        client.delete(Node, p.dpu.name)


PHASES: Final[dict[DPUPhase, Handler]] = {
    DPUPhase.INITIALIZING: initializing,
    DPUPhase.NODE_EFFECT: node_effect,
    DPUPhase.PENDING: pending,
    DPUPhase.DMS_DEPLOYMENT: dms_deployment,
    DPUPhase.OS_INSTALLING: os_installing,
    DPUPhase.REBOOTING: rebooting,
    DPUPhase.HOST_NETWORK_CONFIGURATION: host_network_configuration,
    DPUPhase.DPU_CLUSTER_CONFIG: dpu_cluster_config,
    DPUPhase.READY: ready,
    DPUPhase.ERROR: error,
    DPUPhase.DELETING: deleting,
}

# What a handler may fail with and still have its status written (DPF's "return *state, err").
_HANDLED = (ApiError, DPUError, AllocationError, OpError, ValueError)

JoinCommandFn = Callable[[DPUCluster, Client, bytes, DPU, Context], str]


def bootstrap_join_command(dc: DPUCluster, cluster: Client, kubeconfig: bytes, dpu: DPU, ctx: Context) -> str:
    """`kubeadm token create --print-join-command`: a bootstrap token Secret in the DPU cluster's
    kube-system (24 h TTL, as kubeadm's default) and the `kubeadm join` line that uses it."""
    token_id, token_secret = bootstrap_token(f"{dc.metadata.uid}/{dpu.metadata.uid}/{ctx.now()}")
    secret = Secret.model_validate(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"bootstrap-token-{token_id}", "namespace": BOOTSTRAP_TOKEN_NAMESPACE},
            "type": "bootstrap.kubernetes.io/token",
            "stringData": {
                "token-id": token_id,
                "token-secret": token_secret,
                "expiration": rfc3339(ctx.now() + BOOTSTRAP_TOKEN_TTL),
                "usage-bootstrap-authentication": "true",
                "usage-bootstrap-signing": "true",
                "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
                "description": f"DPU {dpu.namespace}/{dpu.name}",
            },
        }
    )
    with contextlib.suppress(AlreadyExists):
        cluster.create(secret)
    return join_command(kubeconfig_server(kubeconfig), token_id, token_secret)


class DPUReconciler:
    """DPF's DPUReconciler. One allocator per instance: a new instance (a restarted controller) resyncs it."""

    def __init__(
        self, options: ProvisioningOptions | None = None, *, join_command_fn: JoinCommandFn | None = None
    ) -> None:
        self.options = options or ProvisioningOptions()
        self.allocator = Allocator()
        self.join_command_fn: JoinCommandFn = join_command_fn or bootstrap_join_command

    def reconcile(self, ctx: Context, req: Request) -> Result:
        dpu = ctx.client.try_get(DPU, req.name, req.namespace)
        if dpu is None:
            return DONE
        if DPU_FINALIZER not in dpu.metadata.finalizers and dpu.metadata.deletion_timestamp is None:
            edited = dpu.deepcopy()
            edited.metadata.finalizers.append(DPU_FINALIZER)
            ctx.client.update(edited)
            return DONE
        self.allocator.save_assigned_dpu(dpu)

        p = _Pass(ctx, self, dpu, dpu.status)
        handler = PHASES.get(dpu.status.phase, initializing)
        err: Exception | None = None
        try:
            handler(p)
        except _HANDLED as e:
            err = e
            ctx.log.debug("DPU %s/%s %s: %s", dpu.namespace, dpu.name, dpu.status.phase.value, e)

        # Typed equality first (cheap, and equal objects dump equal); the wire decides when they differ.
        if p.changed:
            ctx.client.update_status(p.dpu.with_status(p.status))
            for hook in p.after_write:
                hook()
            if err is not None:
                raise err
            return DONE
        for hook in p.after_write:
            hook()
        if p.current.phase != DPUPhase.ERROR:
            # DPF drops the handler's error here: the 5 s poll retries anyway.
            return Result(requeue_after=p.poll or self.options.requeue)
        if err is not None:
            raise err
        return DONE

    def start_install(self, p: _Pass, bfb: BFB, previous: dict[str, object] | None) -> None:
        """Start the install task once, recording it on the DPU first so a restart can tell."""
        ctx = p.ctx
        pod = p.client.try_get(Pod, dms_pod_name(p.dpu.name), p.namespace)
        if pod is None or not pod.status.pod_ip:
            raise DPUError(f"DMS pod {p.namespace}/{dms_pod_name(p.dpu.name)} has no IP")
        dc = p.dpu_cluster()
        cluster, kubeconfig = dpu_cluster_client(ctx, dc)
        node = p.node()

        render_error: str | None = None
        flavor: DPUFlavor | None = None
        if p.dpu.spec.dpu_flavor:
            flavor = p.client.try_get(DPUFlavor, p.dpu.spec.dpu_flavor, p.namespace)
            if flavor is None:
                render_error = f'dpuflavors.provisioning.dpu.nvidia.com "{p.dpu.spec.dpu_flavor}" not found'
        additional_reboot = False
        try:
            command, _ = host_reboot_command(node.metadata.annotations, p.dpu.metadata.annotations)
            # Without the host reboot the DPU never restarts into its new kernel settings: bf.cfg reboots it.
            additional_reboot = command == REBOOT_SKIP
        except ValueError as e:
            render_error = render_error or str(e)

        opts = self.options
        spec = InstallSpec(
            target=DmsTarget(
                dpu=f"{p.namespace}/{p.dpu.name}",
                address=f"{pod.status.pod_ip}:{opts.dms_port}",
                pci_address=pci_address_from_labels(p.dpu.metadata.labels, remove_prefix=False),
            ),
            dpu_name=p.dpu.name,
            bfb_file_name=bfb.spec.file_name or "",
            join_command=self.join_command_fn(dc, cluster, kubeconfig, p.dpu, ctx),
            additional_reboot=additional_reboot,
            flavor=flavor,
            render_error=render_error,
            bfcfg_max_bytes=opts.bfcfg_max_bytes,
            activate_attempts=opts.activate_attempts,
            activate_timeout=opts.activate_timeout,
            reboot_status_poll=opts.reboot_status_poll,
            cloud_init_timeout=opts.cloud_init_timeout,
            resume_bfb=str(previous.get("bfb")) if previous is not None and previous.get("bfb") else None,
        )
        attempt = 1
        if previous is not None:
            prior = previous.get("attempt")
            attempt = (prior if isinstance(prior, int) else 1) + 1
        annotation = install_started_value(spec.bfb_file_name, ctx.timestamp(), attempt)
        p.dpu = p.client.patch(
            DPU, p.dpu.name, p.namespace, {"metadata": {"annotations": {INSTALL_STARTED_ANNOTATION: annotation}}}
        )
        if previous is not None:
            # The task that was running is gone (the controller restarted with it): run the install again.
            ctx.recorder.event(
                p.dpu,
                "Warning",
                EVENT_INSTALL_RESTARTED,
                f"install started at {previous.get('startedAt')} has no running task; installing again "
                f"(attempt {attempt})",
            )
        bfb_store = _bfb_store(ctx)
        clock = ctx.clock
        _tasks(ctx).start(
            install_task_key(p.namespace, p.dpu.name),
            lambda: install_procedure(spec, bfb_store, clock.now),
        )


# --- wiring ----------------------------------------------------------------------------------------


class _UnassignedDPUs:
    """A Ready DPUCluster's events wake every DPU still waiting for a cluster (DPF's nonInitializedDPU)."""

    def __init__(self) -> None:
        self.lister: Lister | None = None

    def __call__(self, obj: KubeObject) -> Iterable[Request]:
        if not isinstance(obj, DPUCluster) or obj.status.phase != DPUClusterPhase.READY or self.lister is None:
            return []
        out = []
        for dpu in self.lister(DPU):
            if isinstance(dpu, DPU) and not dpu.spec.cluster.name:
                out.append(Request(dpu.namespace, dpu.name))
        return out


class _DPUController(Controller):
    """Takes the manager's lister at start for the DPUCluster mapper, which must list DPUs."""

    def __init__(self, *args: Any, unassigned: _UnassignedDPUs, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unassigned = unassigned

    def start(self, lister: Lister, listers: dict[str | None, Lister] | None = None) -> None:
        if self._unassigned.lister is None:
            self._unassigned.lister = lister
        super().start(lister, listers)


def controller(options: ProvisioningOptions | None = None, *, lister: Lister | None = None) -> Controller:
    reconciler = DPUReconciler(options)
    unassigned = _UnassignedDPUs()
    unassigned.lister = lister
    return _DPUController(
        NAME,
        reconciler,
        for_kind=DPU,
        watches=[
            Watch(DPUCluster, from_object(unassigned)),
            Watch(Pod, owner(DPU)),
            # Not in DPF (it polls every 5 s): a Ready NodeMaintenance moves Node Effect on at once.
            Watch(NodeMaintenance, owner(DPU)),
        ],
        unassigned=unassigned,
    )
