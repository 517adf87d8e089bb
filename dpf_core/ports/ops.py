"""Operations as objects: what a task procedure asks the world to do, one step at a time.

Each op is a frozen dataclass in DPF's words. A world executes it and sends the result back into the
procedure (or throws `OpError` into it). Field names follow the real protocol (gNOI/gNMI, HTTP, sysfs).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any


class OpError(Exception):
    """An operation failed; `reason` is a short machine word (e.g. "Unavailable", "NotFound", "Checksum")."""

    def __init__(self, message: str, reason: str = "Failed") -> None:
        # Both in args: SimPy (and pickling) rebuild an exception from its args.
        super().__init__(message, reason)
        self.message = message
        self.reason = reason

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Sleep:
    seconds: float


# --- BFB server / PVC -------------------------------------------------------------------------------
@dataclass(frozen=True)
class DownloadBfb:
    """HTTP GET `url` into `<bfb dir>/<temp_name>`, then rename to `<bfb dir>/<file_name>` (chmod 0644)."""

    url: str
    temp_name: str
    file_name: str
    sha256: str | None = None  # checked when known (an extension; DPF does no checksum)


# --- DMS (gNMI / gNOI on <podIP>:9339) ---------------------------------------------------------------
@dataclass(frozen=True)
class DmsTarget:
    """Where a DPU's DMS listens and how to trust it (mTLS material names, not contents)."""

    dpu: str  # namespace/name of the DPU
    address: str  # host:port, `<podIP>:9339`
    pci_address: str  # "0000:04:00"


@dataclass(frozen=True)
class GnmiSetMode:
    """gNMI.Set update `/nvidia/mode/config/mode` = "DPU"."""

    target: DmsTarget
    mode: str = "DPU"


@dataclass(frozen=True)
class OsInstall:
    """gNOI OS.Install (client stream): TransferRequest{version}, content chunks, TransferEnd; then Validated."""

    target: DmsTarget
    version: str  # BFB fileName, or "<dpu>.cfg"
    file_name: str | None = None  # a file in the BFB directory to stream
    content: bytes | None = None  # or bytes (bf.cfg)


@dataclass(frozen=True)
class OsActivate:
    """gNOI OS.Activate version `<bfb fileName>;<dpu>.cfg`, no_reboot=false."""

    target: DmsTarget
    version: str
    no_reboot: bool = False


@dataclass(frozen=True)
class OsVerify:
    """gNOI OS.Verify: which OS version the DPU runs now. Result: OsVerifyResult. DPF v24.10 does not call
    it (commented out); we ask it only to tell a finished activation apart from no activation at all."""

    target: DmsTarget


@dataclass(frozen=True)
class OsVerifyResult:
    version: str  # the running version; the twin reports the activated `<bfb fileName>;<dpu>.cfg`
    activation_fail_message: str = ""  # set when the last activated version failed to boot


@dataclass(frozen=True)
class RebootStatusOp:
    """gNOI System.RebootStatus for subcomponent CPU. Result: RebootStatusResult."""

    target: DmsTarget


@dataclass(frozen=True)
class RebootStatusResult:
    active: bool
    status: str  # STATUS_UNKNOWN | STATUS_SUCCESS | STATUS_RETRIABLE_FAILURE | STATUS_FAILURE
    message: str = ""


@dataclass(frozen=True)
class AwaitReboot:
    """System.RebootStatus every `interval` seconds until the DPU is no longer rebooting. Result: that
    RebootStatusResult, or None when, at a check before a poll, more than `budget` seconds have passed since
    the op began (what is left of DPF's 30-minute activate context). An RPC error is raised as from the poll.

    A composite op: `expand` is the loop as primitive ops (Sleep, RebootStatusOp), which any task runner
    can execute (`dispatch.inline_composites`); a world may run it natively instead, with the same
    observable polls (the twin does: its model knows when a reboot ends, so it skips the polls whose answer
    cannot differ, which at fleet scale were most of its events)."""

    target: DmsTarget
    interval: float
    budget: float

    def expand(self, now: Callable[[], float] | None = None) -> Generator[Any, Any, Any]:
        """The reference loop. Without a clock, the time slept is what counts against the budget."""
        started = now() if now is not None else 0.0
        slept = 0.0
        while True:
            elapsed = (now() - started) if now is not None else slept
            if elapsed > self.budget:
                return None
            yield Sleep(self.interval)
            slept += self.interval
            status = yield RebootStatusOp(self.target)
            if not isinstance(status, RebootStatusResult) or not status.active:
                return status  # an unexpected answer goes back for the procedure to judge


# --- Host reboot (exec'd in the DMS pod) ---------------------------------------------------------------
@dataclass(frozen=True)
class WarmReboot:
    """`bf-slr.sh <pci> <cmd> arm` then `... host`: ARM reset then host reboot (`reboot-command`, default reset)."""

    node: str
    pci_address: str
    command: str = "reset"


@dataclass(frozen=True)
class PowerCycle:
    """`ipmitool chassis power cycle|reset` (`powercycle-command`, default cycle)."""

    node: str
    command: str = "cycle"


# --- Host network (the hostnetwork pod's loop) -----------------------------------------------------------
@dataclass(frozen=True)
class SetNumVfs:
    pci_address: str  # PF "0000:04:00.0"
    num_vfs: int
    node: str = ""  # the host, for a world that executes ops for many hosts


@dataclass(frozen=True)
class EnslaveVf:
    """Put VF0 of PF0 into bridge `br-dpu`, set its MTU, bring it up."""

    pci_address: str
    bridge: str = "br-dpu"
    mtu: int = 1500
    node: str = ""
