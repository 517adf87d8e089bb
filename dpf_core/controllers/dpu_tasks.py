"""The DPU controller's long operations as task procedures (generators of ops), in DPF's order.

- install: gNMI mode, OS.Install of the BFB, bf.cfg render + OS.Install, OS.Activate (retried), then
  System.RebootStatus polled until the DPU came back, then the cloud-init wait (DPF's `dmsHandler`). Resumed
  by a restarted controller (our extension), it first adopts the earlier attempt's activation: a reboot still
  running (RebootStatus active), or one already done whose OS.Verify reports this install running;
- warm reboot: `bf-slr.sh` ARM then host (DPF's `rebootHandler`);
- power cycle: `ipmitool chassis power <cmd>` in the DMS pod.

The Tasks port runs them outside reconcile; the controller starts them with the keys below and polls.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from dpf_core.api.provisioning import (
    HOST_POWER_CYCLE_REQUIRED_ANNOTATION,
    POWERCYCLE_COMMAND_ANNOTATION,
    REBOOT_COMMAND_ANNOTATION,
    REBOOT_CYCLE,
    REBOOT_RESET,
    REBOOT_SKIP,
    DPUFlavor,
    parse_go_bool,
)
from dpf_core.ports.ops import (
    AwaitReboot,
    DmsTarget,
    GnmiSetMode,
    OpError,
    OsActivate,
    OsInstall,
    OsVerify,
    OsVerifyResult,
    PowerCycle,
    RebootStatusOp,
    RebootStatusResult,
    Sleep,
    WarmReboot,
)
from dpf_core.ports.ports import BfbStore, Procedure

from .bfcfg import render_bfcfg

# Our extension: what the controller started, so a restarted controller can tell an install was under way.
INSTALL_STARTED_ANNOTATION: Final = "provisioning.dpu.nvidia.com/install-started"
CFG_EXTENSION: Final = ".cfg"

STATUS_SUCCESS: Final = "STATUS_SUCCESS"
STATUS_RETRIABLE_FAILURE: Final = "STATUS_RETRIABLE_FAILURE"
STATUS_FAILURE: Final = "STATUS_FAILURE"


def install_task_key(namespace: str, name: str) -> str:
    return f"install/{namespace}/{name}"


def reboot_task_key(namespace: str, name: str) -> str:
    return f"reboot/{namespace}/{name}"


def bfcfg_file_name(dpu_name: str) -> str:
    """DMS only takes a configuration whose version ends in `.cfg`."""
    return f"{dpu_name}{CFG_EXTENSION}"


class InstallError(Exception):
    """The install cannot go on; the message becomes the `OSInstalled` condition's message."""


@dataclass(frozen=True)
class InstallSpec:
    """Everything the install needs, captured when the task starts (the procedure reads no store)."""

    target: DmsTarget
    dpu_name: str
    bfb_file_name: str
    join_command: str
    additional_reboot: bool
    flavor: DPUFlavor | None = None
    # Why bf.cfg cannot be rendered (a missing DPUFlavor, a bad reboot annotation): DPF fails the install
    # at the render step, after the BFB went over, so we do too.
    render_error: str | None = None
    bfcfg_max_bytes: int = 131072
    activate_attempts: int = 10
    activate_timeout: float = 1800.0
    reboot_status_poll: float = 3.0
    cloud_init_timeout: float = 90.0
    # Set when a restarted controller installs again (the install-started annotation outlived its task): the
    # BFB the earlier attempt was installing. Its activation may still be flashing the DPU.
    resume_bfb: str | None = None


def activation_version(bfb_file_name: str, cfg: str) -> str:
    """What DPF passes to OS.Activate: the BFB and the DPU's bf.cfg, in that order."""
    return f"{bfb_file_name};{cfg}"


def runs_activation(running: OsVerifyResult, bfb_file_name: str, cfg: str) -> bool:
    """Whether OS.Verify says the DPU booted this install. The full activate version is what DPF's
    (commented-out) check expects and what the twin reports; a DMS that reports only the image version
    (the BFB fileName) matches too. A fail message means the activated version did not boot."""
    if running.activation_fail_message:
        return False
    return running.version in (activation_version(bfb_file_name, cfg), bfb_file_name)


def install_procedure(
    spec: InstallSpec, bfb_store: BfbStore, now: Callable[[], float] | None = None
) -> Procedure:
    """DPF's dmsHandler. `now` bounds activate + reboot polling by `activate_timeout` (DPF's 30-minute
    context); without a clock the time slept between polls is counted instead."""
    target = spec.target
    cfg = bfcfg_file_name(spec.dpu_name)
    slept = 0.0
    started = now() if now is not None else 0.0

    def elapsed() -> float:
        return (now() - started) if now is not None else slept

    def expired() -> bool:
        return elapsed() > spec.activate_timeout

    adopted = False
    if spec.resume_bfb is not None:
        # Our extension (not in DPF): a second OS.Activate while the first one's flash runs would flash the
        # DPU twice at once. A reboot in progress is the earlier attempt's activation: of the same BFB, wait
        # for it as if we had started it; of another BFB, let it finish before installing over it.
        first = yield RebootStatusOp(target)
        if isinstance(first, RebootStatusResult) and first.active:
            if spec.resume_bfb == spec.bfb_file_name:
                adopted = True
            else:
                yield AwaitReboot(target, spec.reboot_status_poll, spec.activate_timeout - elapsed())
        elif (
            isinstance(first, RebootStatusResult)
            and first.status == STATUS_SUCCESS
            and spec.resume_bfb == spec.bfb_file_name
            # The earlier attempt wrote bf.cfg right before activating, and a DPU deletion removes it: without
            # it that attempt never activated, and a matching version is an older install (stale join data).
            and bfb_store.exists(cfg)
        ):
            # The reboot already finished, which RebootStatus cannot tell from "never activated": ask what
            # runs. The BFB being installed means the earlier activation took; go on as DPF does after a
            # successful RebootStatus. Anything else (another version, a failed boot, a DMS without
            # OS.Verify) installs again, as before.
            try:
                running = yield OsVerify(target)
            except OpError:
                running = None
            if isinstance(running, OsVerifyResult) and runs_activation(running, spec.bfb_file_name, cfg):
                yield Sleep(spec.cloud_init_timeout)
                return {"bfb": spec.bfb_file_name, "cfg": cfg}

    if not adopted:
        yield GnmiSetMode(target)
        yield OsInstall(target, version=spec.bfb_file_name, file_name=spec.bfb_file_name)

        if spec.render_error:
            raise InstallError(spec.render_error)
        data = render_bfcfg(spec.flavor, spec.dpu_name, spec.join_command, spec.additional_reboot)
        if len(data) > spec.bfcfg_max_bytes:
            raise InstallError(
                f"bf.cfg for {spec.dpu_name} size ({len(data)}) exceeds the maximum limit ({spec.bfcfg_max_bytes})"
            )
        # A stale file from an earlier install must not be what DMS picks up.
        if bfb_store.exists(cfg):
            bfb_store.remove(cfg)
        bfb_store.write(cfg, data)
        yield OsInstall(target, version=cfg, content=data)
        # The rendered bf.cfg (~8 KiB) is on the share and the DPU now; this task lives on for the activation
        # and the reboot (minutes), so it must not keep its own copy: at fleet scale that is thousands in flight.
        del data

        started = now() if now is not None else 0.0
        slept = 0.0
        version = activation_version(spec.bfb_file_name, cfg)
        last: OpError | None = None
        for _attempt in range(spec.activate_attempts):
            if expired():
                break
            try:
                yield OsActivate(target, version=version, no_reboot=False)
            except OpError as e:
                last = e
                continue
            last = None
            break
        if last is not None:
            raise InstallError(f"OS.Activate {version} failed after {spec.activate_attempts} attempts: {last}")

    # DPF polls RebootStatus every 3 s until the reboot is over, within the activate context.
    status = yield AwaitReboot(target, spec.reboot_status_poll, spec.activate_timeout - elapsed())
    if status is None:
        raise InstallError(f"DMS {target.dpu} RebootStatusOperation timed out: context deadline exceeded")
    if not isinstance(status, RebootStatusResult) or status.active:
        raise InstallError(f"unexpected RebootStatus result {status!r}")
    if status.status == STATUS_SUCCESS:
        # DPF's fixed wait for cloud-init to finish on the DPU (CLOUD_INIT_TIMEOUT).
        yield Sleep(spec.cloud_init_timeout)
        return {"bfb": spec.bfb_file_name, "cfg": cfg}
    if status.status == STATUS_RETRIABLE_FAILURE:
        raise InstallError(f"retriable failure: {status.message}")
    if status.status == STATUS_FAILURE:
        raise InstallError(f"reboot failure: {status.message}")
    raise InstallError(f"unknown reboot status: {status.status}")


def warm_reboot_procedure(node: str, pci_address: str, command: str) -> Procedure:
    yield WarmReboot(node=node, pci_address=pci_address, command=command)
    return None


def power_cycle_procedure(node: str, command: str) -> Procedure:
    yield PowerCycle(node=node, command=command)
    return None


class RebootType(StrEnum):
    POWER_CYCLE = "power-cycle"
    WARM_REBOOT = "warm-reboot"


_SUPPORTED = (REBOOT_CYCLE, REBOOT_RESET, REBOOT_SKIP)


def _command(annotations: Mapping[str, str], key: str, default: str) -> str:
    if key not in annotations:
        return default
    value = annotations[key]
    if value not in _SUPPORTED:
        quoted = " ".join(f'"{s}"' for s in _SUPPORTED)
        raise ValueError(f'invalid value "{value}", supported values: [{quoted}]')
    return value


def power_cycle_required(dpu_annotations: Mapping[str, str]) -> bool:
    value = dpu_annotations.get(HOST_POWER_CYCLE_REQUIRED_ANNOTATION)
    if value is None:
        return False
    try:
        return parse_go_bool(value)
    except ValueError:
        return False


def host_reboot_command(
    node_annotations: Mapping[str, str], dpu_annotations: Mapping[str, str]
) -> tuple[str, RebootType]:
    """DPF's reboot.GenerateCmd: (cycle|reset|skip, type). A DPU asking for a power cycle uses the node's
    `powercycle-command` (default cycle), otherwise a warm reboot with `reboot-command` (default reset)."""
    if power_cycle_required(dpu_annotations):
        return _command(node_annotations, POWERCYCLE_COMMAND_ANNOTATION, REBOOT_CYCLE), RebootType.POWER_CYCLE
    return _command(node_annotations, REBOOT_COMMAND_ANNOTATION, REBOOT_RESET), RebootType.WARM_REBOOT


# --- the join command ------------------------------------------------------------------------------

_SERVER = re.compile(r"^\s*server:\s*['\"]?([^'\"\s]+)", re.MULTILINE)


def kubeconfig_server(kubeconfig: bytes) -> str:
    """The API server address (`host:port`) of the single cluster in a kubeconfig."""
    m = _SERVER.search(kubeconfig.decode(errors="replace"))
    if m is None:
        raise ValueError("kubeconfig has no cluster server")
    return re.sub(r"^https?://", "", m.group(1)).rstrip("/")


def bootstrap_token(seed: str) -> tuple[str, str]:
    """A kubeadm bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`) derived from `seed`, so a replay is identical."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    digest = hashlib.sha256(seed.encode()).digest()
    chars = "".join(alphabet[b % len(alphabet)] for b in digest[:22])
    return chars[:6], chars[6:]


def join_command(server: str, token_id: str, token_secret: str) -> str:
    """What `kubeadm token create --print-join-command` prints, plus DPF's ` --v=5`.

    No CA hash: we do not parse X.509 in core, so discovery skips CA pinning (a difference to DPF).
    """
    return (
        f"kubeadm join {server} --token {token_id}.{token_secret} "
        "--discovery-token-unsafe-skip-ca-verification --v=5"
    )


def install_started_value(bfb_file_name: str, started_at: str, attempt: int) -> str:
    return json.dumps({"bfb": bfb_file_name, "startedAt": started_at, "attempt": attempt}, sort_keys=True)


def parse_install_started(value: str | None) -> dict[str, object] | None:
    if not value:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None
