"""The port Protocols. Each world (dpf_sim, dpf_hw) implements them; controllers see only these."""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from dpf_core.store.protocol import Client

# A task procedure: yields ops (dpf_core.ports.ops), receives each op's result, returns the task's result.
Procedure = Generator[Any, Any, Any]


class TaskState(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


@dataclass(frozen=True)
class TaskStatus:
    state: TaskState
    message: str = ""
    reason: str = ""
    result: Any = None
    started_at: float = 0.0
    finished_at: float | None = None

    @property
    def done(self) -> bool:
        return self.state is not TaskState.RUNNING


class Tasks(Protocol):
    """Runs task procedures outside reconcile (DPF's async task map). Keys are the controller's choice,
    e.g. "install/<ns>/<dpu>". A started key keeps its status until `forget`; starting a key that exists
    is a no-op (idempotent, like DPF checking its task map first)."""

    def start(self, key: str, procedure: Callable[[], Procedure]) -> None: ...

    def status(self, key: str) -> TaskStatus | None: ...

    def cancel(self, key: str) -> None: ...

    def forget(self, key: str) -> None: ...


class BfbStore(Protocol):
    """The BFB directory (`/bfb`, the PVC shared with DMS pods)."""

    def exists(self, file_name: str) -> bool: ...

    def size(self, file_name: str) -> int | None: ...

    def remove(self, file_name: str) -> None: ...

    def write(self, file_name: str, content: bytes) -> None: ...


class Dms(Protocol):
    """Quick DMS checks a reconcile makes inline (DPF dials the port with a 5 s timeout)."""

    def reachable(self, address: str) -> bool: ...


class HostExec(Protocol):
    """Commands DPF execs in the DMS pod on the host (`cat /proc/uptime`)."""

    def uptime(self, node: str) -> float | None: ...


class HostNetwork(Protocol):
    """What the host network agent reads and writes on its host (sysfs + netlink)."""

    def num_vfs(self, pci_address: str) -> int: ...

    def set_num_vfs(self, pci_address: str, count: int) -> None: ...

    def bridge_has_ipv4(self, bridge: str) -> bool: ...

    def enslave_vf0(self, pci_address: str, bridge: str, mtu: int) -> None: ...

    def vf0_enslaved(self, pci_address: str, bridge: str) -> bool: ...


class Ovs(Protocol):
    """The DPU's Open vSwitch: OVSDB rows and OpenFlow bundles (service-chain issue)."""

    def ensure_port(self, bridge: str, port: str, iface_type: str, *, iface_external_ids: Mapping[str, str] | None = None,
                    port_external_ids: Mapping[str, str] | None = None, options: Mapping[str, str] | None = None,
                    ofport_request: int | None = None) -> None: ...

    def delete_port(self, bridge: str, port: str) -> None: ...

    def ports(self, bridge: str) -> list[dict[str, Any]]: ...

    def add_flows_bundle(self, bridge: str, flows: list[str]) -> None: ...

    def del_flows_cookie(self, bridge: str, cookie: int) -> None: ...

    def dump_flows(self, bridge: str) -> list[str]: ...


class ClusterClients(Protocol):
    """A client for a DPU cluster, from its kubeconfig (Secret `spec.kubeconfig`, key `admin.conf`)."""

    def for_kubeconfig(self, kubeconfig: bytes) -> Client | None: ...


@dataclass
class Ports:
    """What a composition hands to a Manager. A controller that needs a port nobody supplied fails loudly."""

    tasks: Tasks | None = None
    bfb_store: BfbStore | None = None
    dms: Dms | None = None
    host_exec: HostExec | None = None
    host_network: HostNetwork | None = None
    ovs: Ovs | None = None
    clusters: ClusterClients | None = None
    extra: dict[str, Any] = field(default_factory=dict)
