"""BlueField DPUs and their DMS (DOCA Management Service) as the provisioning task sees them.

Per DPU: mode, installed BFB, images staged by OS.Install (by version), and a boot cycle
(Running -> [Flashing ->] Booting -> Running, or Off after an ARM reset). The DMS ops:

- GnmiSetMode: a small latency, then the mode is set.
- OsInstall: a BFB is streamed from the BFB share over the network to the host (shared bandwidth) and into
  the DPU through rshim (one flow capped at `rshim_rate`: the stream is pipelined, so the slower of the two
  sets the pace); bf.cfg content is a few KiB sent with the RPC. The version is then staged.
- OsActivate: both `<bfb>;<dpu>.cfg` must be staged; starts flash (BFB size / `flash_rate`) then boot
  (`boot_time`) and returns at once (no_reboot=false).
- RebootStatusOp: active while flashing or booting; afterwards the last reboot's status.
- OsVerify: the running version, i.e. the activate version (`<bfb>;<dpu>.cfg`) of the last flash, once a boot
  after it succeeded (before any flash: `initial_version`, "" when unknown); `activation_fail_message` after a
  failed boot, cleared by the next good one; Unavailable while flashing, booting or off (gNOI's "UNAVAILABLE
  during reboot"). What a real dmsd reports here is not documented (DPF never calls Verify): assumed.
Every op runs under the DMS `-exec_timeout` -> OpError "DeadlineExceeded". Each DPU's DMS takes it from its
`<dpu>-dms` pod's dmsd command line (DPF renders `-exec_timeout <--dms-timeout>`, i.e. the DPFOperatorConfig's
`provisioningController.dmsTimeout`): `mark_dms_running(..., exec_timeout=dms_exec_timeout(args))`. A pod without
the flag gets dmsd's default of 900 s. `BlueFieldParams.exec_timeout`, when a scenario sets it, overrides the
pod's flag for every DPU (a what-if knob: the twin's dmsd ignoring what DPF passes it).

After a boot into a fresh install the DPU runs cloud-init, then joins its DPU cluster: `on_booted(dpu)` is the
composition's hook (it creates the DPU's Node); returning False means "not yet" and the join is retried every
5 s, as `join_k8s_cluster.sh` retries `kubeadm join` until its marker file exists.
"""

from __future__ import annotations

import re
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import simpy
from pydantic import BaseModel, ConfigDict, Field

from dpf_core.ports.ops import (
    AwaitReboot,
    DmsTarget,
    GnmiSetMode,
    OpError,
    OsActivate,
    OsInstall,
    OsVerify,
    OsVerifyResult,
    RebootStatusOp,
    RebootStatusResult,
)

from ..durations import Duration, Rate, Seconds, parse_rate
from ..fleet import DpuRecord
from ..net import Network
from ..rng import RandomSource, Streams
from ..tasks import original_error
from .bfbserver import BfbDirectory
from .packing import Content, History, Packer, unpack

if TYPE_CHECKING:
    from .host import Hosts

STATUS_UNKNOWN = "STATUS_UNKNOWN"
STATUS_SUCCESS = "STATUS_SUCCESS"
STATUS_RETRIABLE_FAILURE = "STATUS_RETRIABLE_FAILURE"
STATUS_FAILURE = "STATUS_FAILURE"

BFCFG_MAX_SIZE = 131072
DEFAULT_EXEC_TIMEOUT = 900.0  # dmsd's own default, and DPF's `--dms-timeout` default
# Go's flag package takes `-name value`, `-name=value` and the same with `--`.
_EXEC_TIMEOUT_FLAG = re.compile(r"(?:^|\s)--?exec_timeout(?:=|\s+)(\S+)")
JOIN_RETRY = 5.0


class DpuState(StrEnum):
    RUNNING = "Running"
    FLASHING = "Flashing"
    BOOTING = "Booting"
    OFF = "Off"  # ARM held in reset ("System Off") until the host reboot resets the chip
    FAILED = "Failed"  # boot failed; stays down until the next reboot
    HUNG = "Hung"  # never finishes booting (fault); RebootStatus stays active


class BlueFieldParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dms_latency: Duration = Duration.of("50ms")
    gnmi_set_latency: Duration = Duration.of("500ms")
    rshim_rate: Rate = parse_rate("20MiB/s")
    flash_rate: Rate = parse_rate("3MiB/s")
    boot_time: Duration = Duration.of({"dist": "triangular", "low": "2m", "mode": "2m30s", "high": "3m"})
    cloud_init_time: Duration = Duration.of({"dist": "triangular", "low": "30s", "mode": "45s", "high": "75s"})
    join_time: Duration = Duration.of("15s")
    # None: each DMS runs with its pod's `-exec_timeout` (900 s without one); a number overrides every pod's.
    exec_timeout: Seconds | None = Field(None, gt=0)
    boot_failure_probability: float = Field(0.0, ge=0, le=1)
    initial_mode: str = "DPU"
    initial_version: str | None = None  # what the DPU runs before DPF installs anything (unknown by default)


class StagedImage:
    """An image OS.Install staged on the DPU (`content`: the bytes when the twin knows them, e.g. a bf.cfg)."""

    __slots__ = ("_content", "kind", "sha256", "size", "version")

    def __init__(self, version: str, kind: str, size: int, sha256: str | None = None,
                 content: bytes | None = None, *, packer: Packer | None = None, packed: Content = None) -> None:
        self.version = version
        self.kind = kind  # "bfb" | "cfg"
        self.size = size
        self.sha256 = sha256
        # `packed`: a file's content as the share keeps it (no inflate-deflate round trip).
        self._content: Content = packed if packed is not None else packer.pack(content) if packer is not None else content

    @property
    def packed_content(self) -> Content:
        return self._content

    @property
    def content(self) -> bytes | None:
        return unpack(self._content)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StagedImage):
            return NotImplemented
        return ((self.version, self.kind, self.size, self.sha256, self.content)
                == (other.version, other.kind, other.size, other.sha256, other.content))

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass it replaces

    def __repr__(self) -> str:
        return (f"StagedImage(version={self.version!r}, kind={self.kind!r}, size={self.size!r}, "
                f"sha256={self.sha256!r}, content={self.content!r})")


@dataclass(slots=True)
class BlueField:
    name: str
    record: DpuRecord
    mode: str = "DPU"
    installed_version: str | None = None
    state: DpuState = DpuState.RUNNING
    os_booted: bool = True
    reboot_status: str = STATUS_SUCCESS
    staged: dict[str, StagedImage] = field(default_factory=dict)
    pending_activation: tuple[str, str | None] | None = None  # (bfb version, cfg version) when no_reboot
    # bf.cfg of the running install (read `bfcfg`; kept packed as its staged image is).
    bfcfg_packed: Content = None
    dms_address: str | None = None
    dms_running: bool = False
    exec_timeout: float = DEFAULT_EXEC_TIMEOUT  # the `-exec_timeout` its DMS runs with
    joined: bool = False
    boot_fault: str | None = None  # "fail" | "hang": the next boot does that (fault injection)
    generation: int = 0  # bumped by every reset; an older boot sequence stops at its next step
    installs: int = 0  # completed flashes
    flashes_started: int = 0
    flashing: int = 0  # flashes in progress right now (an invariant: never above 1)
    max_flashing: int = 0
    boots: int = 0
    last_boot: float | None = None
    history: History = field(default_factory=History)
    flashed_version: str = ""  # the activate version on the flash; what the next good boot runs
    # When the current flash or boot step ends (None: not in a timed step). RebootStatus cannot change before.
    phase_until: float | None = None
    # RebootStatus latencies drawn ahead by a skipped-poll window and not yet used (see await_reboot).
    status_latencies: list[float] = field(default_factory=list)
    running_version: str = ""  # what OS.Verify reports
    activation_fail_message: str = ""

    def __post_init__(self) -> None:
        # Before DPF flashes anything the DPU runs whatever it came with (`initial_version`, maybe unknown).
        self.flashed_version = self.flashed_version or self.installed_version or ""
        self.running_version = self.running_version or self.flashed_version

    @property
    def host(self) -> str:
        return self.record.host

    @property
    def bfcfg(self) -> bytes | None:
        return unpack(self.bfcfg_packed)

    @bfcfg.setter
    def bfcfg(self, value: bytes | None) -> None:
        self.bfcfg_packed = value

    @property
    def rebooting(self) -> bool:
        return self.state in (DpuState.FLASHING, DpuState.BOOTING, DpuState.HUNG, DpuState.OFF)


OnBooted = Callable[[BlueField], bool | None]

# await_reboot's "no result yet: keep polling".
_GO_ON: Any = object()


@dataclass
class _Window:
    """Polls of one AwaitReboot waited out as one event: when each begins and reads (both ascending; a poll
    reads before the next begins), what comes after them ("poll": a real poll at `end`; "read": the last poll
    reads at `end`; "expire": the budget is over at `end`), and the event a disturbance fires. The times are
    kept as arrays of doubles (16 bytes a poll, not a 112-byte tuple): a window holds ~170 polls per DPU for
    the whole flash, which was ~19 KB per DPU in flight at fleet scale."""

    bf: BlueField
    began: float
    begins: array[float]
    reads: array[float]
    kind: str
    end: float
    disturbed: simpy.Event


class BlueFields:
    """Every BlueField of the fleet plus the DMS op handlers (register them on an Executor)."""

    def __init__(self, env: simpy.Environment, net: Network, directory: BfbDirectory,
                 params: BlueFieldParams | None = None, streams: Streams | None = None,
                 on_booted: OnBooted | None = None) -> None:
        self.env = env
        self.net = net
        self.fleet = net.fleet
        self.directory = directory
        self.params = params or BlueFieldParams()
        self.streams = (streams or Streams(0)).child("bluefield")
        self.on_booted = on_booted
        self.hosts: Hosts | None = None
        self.dpus: dict[str, BlueField] = {
            name: BlueField(name, rec, mode=self.params.initial_mode, installed_version=self.params.initial_version,
                            exec_timeout=self.params.exec_timeout or DEFAULT_EXEC_TIMEOUT)
            for name, rec in self.fleet.dpus.items()
        }
        self._by_address: dict[str, str] = {}
        self.flashing_now = 0
        self.max_flashing_now = 0
        self.ops = 0
        self.timeouts = 0
        # AwaitReboot skips polls whose answer cannot differ while the world is quiet (no fault ever injected);
        # `poll` is the RebootStatus handler in force (the executor's, fault guards included).
        self.coalesce_polls = True
        self.quiet = True
        self.poll: Callable[[RebootStatusOp], Generator[Any, Any, Any]] = self.reboot_status
        self.polls_skipped = 0
        self.windows_disturbed = 0
        self._windows: dict[str, _Window] = {}
        self.packer: Packer = directory.packer

    def get(self, name: str) -> BlueField:
        return self.dpus[name]

    def rng(self, dpu: str) -> RandomSource:
        # Lazy: a DPU draws a few numbers per boot, not worth a live 2.5 KB generator each between draws.
        return self.streams.lazy(dpu)

    # --- what the composition tells the model ------------------------------------------------------------
    def mark_dms_running(self, dpu: str, address: str | None, running: bool = True,
                         exec_timeout: float | None = None) -> None:
        """The DMS pod `<dpu>-dms` is Running at `address` (`<podIP>:9339`) with dmsd's `-exec_timeout`
        (None: the pod passes none, dmsd's default), or no longer."""
        bf = self.dpus[dpu]
        if bf.dms_address is not None and self._by_address.get(bf.dms_address) == dpu:
            del self._by_address[bf.dms_address]
        bf.dms_running = running
        bf.dms_address = address
        if running:
            bf.exec_timeout = self.params.exec_timeout or exec_timeout or DEFAULT_EXEC_TIMEOUT
        if address is not None:
            self._by_address[address] = dpu
        self.disturb(dpu)

    def dms_reachable(self, address: str) -> bool:
        dpu = self._by_address.get(address)
        return dpu is not None and self._serving(self.dpus[dpu])

    def _serving(self, bf: BlueField) -> bool:
        # The DMS runs on the host (hostNetwork pod), so it answers while the host is up, whatever the DPU does.
        return bf.dms_running and (self.hosts is None or self.hosts.is_up(bf.host))

    # --- op handlers -------------------------------------------------------------------------------------
    def register(self, executor: Any) -> None:
        executor.register(GnmiSetMode, self.set_mode)
        executor.register(OsInstall, self.os_install)
        executor.register(OsActivate, self.os_activate)
        executor.register(RebootStatusOp, self.reboot_status)
        executor.register(AwaitReboot, self.await_reboot)
        executor.register(OsVerify, self.os_verify)

    def _resolve(self, target: DmsTarget) -> BlueField:
        name = self._by_address.get(target.address) or target.dpu.rsplit("/", 1)[-1]
        bf = self.dpus.get(name)
        if bf is None or not self._serving(bf):
            raise OpError(f"dial {target.address}: connection refused", "Unavailable")
        return bf

    def _bounded(self, what: str, bf: BlueField, body: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
        """Run `body` under the DMS exec timeout; on the deadline the body is interrupted (freeing its
        bandwidth) and the caller gets DeadlineExceeded, as grpc reports an expired server context."""
        self.ops += 1
        proc = self.env.process(_interruptible(body))
        timeout = bf.exec_timeout
        deadline = self.env.timeout(timeout)
        try:
            yield proc | deadline
        except simpy.Interrupt:
            if proc.is_alive:
                proc.interrupt("cancelled")
            raise
        except OpError as e:
            raise original_error(e) from None
        if proc.triggered:
            if not proc.ok:
                error = proc.value
                raise error if isinstance(error, BaseException) else OpError(str(error))
            return proc.value
        proc.interrupt("deadline")
        self.timeouts += 1
        raise OpError(f"{what}: context deadline exceeded after {timeout:g}s", "DeadlineExceeded")

    def _latency(self, bf: BlueField, d: Duration | None = None) -> simpy.Event:
        return self.env.timeout((d or self.params.dms_latency).sample(self.rng(bf.name)))

    def _rpc(self, what: str, bf: BlueField, d: Duration | None = None,
             latency: float | None = None) -> Generator[Any, Any, None]:
        """The round trip of an RPC whose body is only its latency: `_bounded` without the extra process and
        the exec-timeout timer per call (RebootStatus is polled every 3 s for the whole flash; at fleet scale
        those timers were most of the event heap). Same outcome: the latency, or DeadlineExceeded at the
        exec timeout when a slow DMS makes the latency longer."""
        self.ops += 1
        if latency is None:
            latency = (d or self.params.dms_latency).sample(self.rng(bf.name))
        timeout = bf.exec_timeout
        if latency < timeout:
            yield self.env.timeout(latency)
            return
        yield self.env.timeout(timeout)
        self.timeouts += 1
        raise OpError(f"{what}: context deadline exceeded after {timeout:g}s", "DeadlineExceeded")

    def set_mode(self, op: GnmiSetMode) -> Generator[Any, Any, None]:
        bf = self._resolve(op.target)

        yield from self._rpc(f"gNMI Set mode on {bf.name}", bf, self.params.gnmi_set_latency)
        bf.mode = op.mode
        self._log(bf, f"mode={op.mode}")

    def os_install(self, op: OsInstall) -> Generator[Any, Any, str]:
        bf = self._resolve(op.target)

        def body() -> Generator[Any, Any, str]:
            yield self._latency(bf)  # TransferRequest -> TransferReady
            if op.content is not None:
                if len(op.content) > BFCFG_MAX_SIZE:
                    raise OpError(f"{op.version}: {len(op.content)} bytes exceeds {BFCFG_MAX_SIZE}", "InvalidArgument")
                yield self._latency(bf)
                bf.staged[op.version] = StagedImage(op.version, "cfg", len(op.content), content=op.content,
                                                    packer=self.packer)
            elif op.file_name is not None:
                f = self.directory.get(op.file_name)
                if f is None or not f.complete:
                    raise OpError(f"open /bfb/{op.file_name}: no such file or directory", "NotFound")
                flow = self.net.transfer(self.fleet.bfb_share, bf.name, f.size, max_rate=self.params.rshim_rate,
                                         tag=f"os-install:{bf.name}")
                try:
                    yield flow
                finally:
                    if not flow.triggered:
                        self.net.cancel(flow)
                kind = "cfg" if op.version.endswith(".cfg") else "bfb"
                bf.staged[op.version] = StagedImage(op.version, kind, f.size, f.sha256, packed=f.packed_content)
            else:
                raise OpError("OS.Install without content", "InvalidArgument")
            yield self._latency(bf)  # TransferEnd -> Validated
            self._log(bf, f"staged {op.version}")
            return op.version

        result: str = yield from self._bounded(f"OS.Install {op.version} on {bf.name}", bf, body())
        return result

    def os_activate(self, op: OsActivate) -> Generator[Any, Any, None]:
        bf = self._resolve(op.target)

        def body() -> Generator[Any, Any, None]:
            yield self._latency(bf)
            versions = [v for v in op.version.split(";") if v]
            missing = [v for v in versions if v not in bf.staged]
            if missing:
                raise OpError(f"OS.Activate {op.version}: version {', '.join(missing)} not installed", "NonExistentVersion")
            bfbs = [v for v in versions if bf.staged[v].kind == "bfb"]
            cfgs = [v for v in versions if bf.staged[v].kind == "cfg"]
            if len(bfbs) != 1:
                raise OpError(f"OS.Activate {op.version}: need exactly one BFB image", "InvalidArgument")
            activation = (bfbs[0], cfgs[0] if cfgs else None)
            if op.no_reboot:
                bf.pending_activation = activation
                return
            self.reboot(bf.name, flash=activation)

        yield from self._bounded(f"OS.Activate {op.version} on {bf.name}", bf, body())

    def reboot_status(self, op: RebootStatusOp) -> Generator[Any, Any, RebootStatusResult]:
        bf = self._resolve(op.target)
        yield from self._rpc(f"RebootStatus on {bf.name}", bf, latency=self._status_latency(bf))
        return self._status_of(bf)

    @staticmethod
    def _status_of(bf: BlueField) -> RebootStatusResult:
        if bf.rebooting:
            return RebootStatusResult(active=True, status=STATUS_UNKNOWN, message=f"DPU {bf.state}")
        return RebootStatusResult(active=False, status=bf.reboot_status,
                                  message="" if bf.reboot_status == STATUS_SUCCESS else f"DPU {bf.state}")

    def _status_latency(self, bf: BlueField) -> float:
        """RebootStatus latencies come from their own stream, in call order, so drawing some ahead (a
        skipped-poll window) gives every poll the number it would have had anyway."""
        latency = self.params.dms_latency
        if latency.is_constant:
            return latency.sample(None)  # type: ignore[arg-type]  # a constant draws nothing
        if bf.status_latencies:
            return bf.status_latencies.pop(0)
        return float(latency.sample(self.streams.get(f"{bf.name}/reboot-status")))

    def _latency_ahead(self, bf: BlueField, i: int) -> float:
        """The latency the i-th RebootStatus call from now will take (drawn now, kept in order)."""
        if self.params.dms_latency.is_constant:
            return self.params.dms_latency.sample(None)  # type: ignore[arg-type]
        while len(bf.status_latencies) <= i:
            bf.status_latencies.append(float(self.params.dms_latency.sample(self.streams.get(f"{bf.name}/reboot-status"))))
        return bf.status_latencies[i]

    # --- AwaitReboot: RebootStatus polled until the reboot is over ------------------------------------------
    def await_reboot(self, op: AwaitReboot) -> Generator[Any, Any, Any]:
        """The composite op natively: the same polls as its expansion (same times, same latencies, same
        answers), except that while the world is quiet a run of polls that must answer "active" (they read
        before the DPU's current flash or boot step ends) is waited out as one event. Anything that could
        change an answer earlier (a reset, the DMS pod, the host, any fault) ends the window at that instant
        and the remaining polls run one by one."""
        start = self.env.now
        while True:
            if self.env.now - start > op.budget:
                return None
            window = self._window(op, start) if self.quiet and self.coalesce_polls else None
            if window is not None:
                outcome = yield from self._wait_window(op, window)
                if outcome is not _GO_ON:
                    return outcome
                continue
            yield self.env.timeout(op.interval)
            result = yield from self.poll(RebootStatusOp(op.target))
            if not isinstance(result, RebootStatusResult) or not result.active:
                return result

    def _window(self, op: AwaitReboot, start: float) -> _Window | None:
        """From a check at now: the polls that must read "active", and what follows them."""
        name = self._by_address.get(op.target.address) or op.target.dpu.rsplit("/", 1)[-1]
        bf = self.dpus.get(name)
        if bf is None or bf.phase_until is None or not bf.rebooting or not self._serving(bf) or name in self._windows:
            return None
        horizon = bf.phase_until
        t = self.env.now
        begins: array[float] = array("d")
        reads: array[float] = array("d")
        # A constant latency is the same number every poll (nothing drawn): hoisted, the loop is plain float
        # arithmetic, the same additions in the same order as drawing it poll by poll.
        d = self.params.dms_latency
        constant = float(d.sample(None)) if d.is_constant else None  # type: ignore[arg-type]  # draws nothing
        interval, exec_timeout, budget = op.interval, bf.exec_timeout, op.budget
        while True:
            begin = t + interval
            if begin >= horizon:
                end, kind = begin, "poll"  # the next poll starts when the answer may differ: a real one
                break
            latency = constant if constant is not None else self._latency_ahead(bf, len(reads))
            if latency >= exec_timeout:
                end, kind = begin, "poll"
                break
            read = begin + latency
            begins.append(begin)
            reads.append(read)
            if read >= horizon:
                end, kind = read, "read"  # this one reads after the step ends: read it then
                break
            t = read
            if t - start > budget:
                end, kind = t, "expire"
                break
        if not reads:
            return None
        return _Window(bf, self.env.now, begins, reads, kind, end, self.env.event())

    def _wait_window(self, op: AwaitReboot, w: _Window) -> Generator[Any, Any, Any]:
        bf = w.bf
        self._windows[bf.name] = w
        try:
            yield self.env.timeout(w.end - self.env.now) | w.disturbed
        finally:
            self._windows.pop(bf.name, None)
        now = self.env.now
        if not w.disturbed.triggered:
            done = len(w.reads) if w.kind != "read" else len(w.reads) - 1
            self._skipped(bf, done)
            if w.kind == "expire":
                return None
            if w.kind == "read":
                self._skipped(bf, 0, used=1)
                result = self._status_of(bf)
                return result if not result.active else _GO_ON
            result = yield from self.poll(RebootStatusOp(op.target))
            return result if not isinstance(result, RebootStatusResult) or not result.active else _GO_ON
        # Disturbed at `now`: polls that read before now answered "active"; one in flight reads at its end;
        # otherwise the next poll starts after the sleep that is under way.
        finished = bisect_left(w.reads, now)  # the polls that read before now
        self._skipped(bf, finished)
        i = bisect_right(w.begins, now) - 1  # the last poll begun by now: in flight unless it has read
        if i >= 0 and now < w.reads[i]:
            self._skipped(bf, 0, used=1)
            yield self.env.timeout(w.reads[i] - now)
            result = self._status_of(bf)
            return result if not result.active else _GO_ON
        last_read = w.reads[finished - 1] if finished else w.began
        yield self.env.timeout(max(0.0, last_read + op.interval - now))
        result = yield from self.poll(RebootStatusOp(op.target))
        return result if not isinstance(result, RebootStatusResult) or not result.active else _GO_ON

    def _skipped(self, bf: BlueField, polls: int, used: int = 0) -> None:
        """Count `polls` answered inside a window (and `used` drawn latencies consumed without a poll call)."""
        n = polls + used
        del bf.status_latencies[:n]
        self.ops += n
        self.polls_skipped += polls

    def disturb(self, dpu: str | None = None) -> None:
        """Something that could change a RebootStatus answer happened now: end the window(s) waiting on it."""
        targets = [dpu] if dpu is not None else sorted(self._windows)
        for name in targets:
            w = self._windows.get(name)
            if w is not None and not w.disturbed.triggered:
                self.windows_disturbed += 1
                w.disturbed.succeed()

    def disturb_all(self, *, quiet: bool = True) -> None:
        """A fault: from now on every poll runs one by one (fault guards see each of them)."""
        self.quiet = self.quiet and quiet
        self.disturb(None)

    def os_verify(self, op: OsVerify) -> Generator[Any, Any, OsVerifyResult]:
        bf = self._resolve(op.target)
        yield from self._rpc(f"OS.Verify on {bf.name}", bf)
        if bf.rebooting:
            raise OpError(f"OS.Verify on {bf.name}: DPU {bf.state}, no OS is running", "Unavailable")
        return OsVerifyResult(version=bf.running_version, activation_fail_message=bf.activation_fail_message)

    # --- the DPU's own life --------------------------------------------------------------------------------
    def arm_off(self, dpu: str) -> None:
        """`mlxfwreset ... -l 1 reset`: the ARM cores stop ("System Off") until the chip is reset."""
        bf = self.dpus[dpu]
        bf.generation += 1
        bf.state = DpuState.OFF
        bf.phase_until = None
        self.disturb(dpu)
        bf.os_booted = False
        bf.joined = False
        self._log(bf, "ARM off")

    def reboot(self, dpu: str, flash: tuple[str, str | None] | None = None) -> None:
        """Reset the DPU now: flash `flash` (bfb version, cfg version) first if given, else a plain boot
        (a staged no_reboot activation is flashed at this boot, as the DMS does)."""
        bf = self.dpus[dpu]
        if flash is None and bf.pending_activation is not None:
            flash, bf.pending_activation = bf.pending_activation, None
        bf.generation += 1
        bf.phase_until = None
        self.disturb(dpu)
        self.env.process(self._boot(bf, bf.generation, flash))

    def _boot(self, bf: BlueField, gen: int, flash: tuple[str, str | None] | None) -> Generator[Any, Any, None]:
        rng = self.rng(bf.name)
        bf.os_booted = False
        bf.joined = False
        fresh = False
        if flash is not None:
            image = bf.staged[flash[0]]
            bf.state = DpuState.FLASHING
            bf.flashes_started += 1
            bf.flashing += 1
            bf.max_flashing = max(bf.max_flashing, bf.flashing)
            self.flashing_now += 1
            self.max_flashing_now = max(self.max_flashing_now, self.flashing_now)
            self._log(bf, f"flashing {flash[0]}")
            flash_time = image.size / self.params.flash_rate
            bf.phase_until = self.env.now + flash_time
            try:
                yield self.env.timeout(flash_time)
            finally:
                bf.flashing -= 1
                self.flashing_now -= 1
            if gen != bf.generation:
                return  # reset mid-flash: the install is lost (the DPU boots what a later reset says)
            bf.installed_version = flash[0]
            bf.flashed_version = flash[0] if flash[1] is None else f"{flash[0]};{flash[1]}"
            bf.bfcfg_packed = bf.staged[flash[1]].packed_content if flash[1] is not None else None
            bf.installs += 1
            fresh = True
        bf.state = DpuState.BOOTING
        self._log(bf, "booting")
        fault, bf.boot_fault = bf.boot_fault, None
        if fault == "hang":
            bf.state = DpuState.HUNG
            bf.phase_until = None
            self._log(bf, "hung")
            return
        boot = self.params.boot_time.sample(rng)
        failed = fault == "fail" or (self.params.boot_failure_probability > 0
                                     and rng.random() < self.params.boot_failure_probability)
        bf.phase_until = self.env.now + boot
        yield self.env.timeout(boot)
        if gen != bf.generation:
            return
        bf.phase_until = None
        if failed:
            bf.state = DpuState.FAILED
            bf.reboot_status = STATUS_FAILURE
            bf.activation_fail_message = f"{bf.flashed_version or 'the installed image'} failed to boot"
            self._log(bf, "boot failed")
            return
        bf.state = DpuState.RUNNING
        bf.os_booted = True
        bf.reboot_status = STATUS_SUCCESS
        bf.running_version = bf.flashed_version
        bf.activation_fail_message = ""
        bf.boots += 1
        bf.last_boot = self.env.now
        self._log(bf, "booted")
        if fresh:
            yield self.env.timeout(self.params.cloud_init_time.sample(rng))
            if gen != bf.generation:
                return
        yield self.env.timeout(self.params.join_time.sample(rng))
        while gen == bf.generation:
            if self.on_booted is None or self.on_booted(bf) is not False:
                bf.joined = True
                self._log(bf, "joined")
                return
            yield self.env.timeout(JOIN_RETRY)

    def _log(self, bf: BlueField, what: str) -> None:
        # Interned: most entries ("booting", "flashing <bfb>", "mode=DPU") read the same on every DPU.
        bf.history.append((self.env.now, sys.intern(what)))

    def install_counts(self) -> dict[str, int]:
        return {name: bf.installs for name, bf in self.dpus.items()}


def dms_exec_timeout(command_line: Iterable[str]) -> float | None:
    """The `-exec_timeout` dmsd gets from a DMS pod's container command and args (the last one given wins, as
    with Go's flag package); None when there is none or it is not a positive number of seconds."""
    # Joined: the flag and its value may be separate argv entries or sit inside one `bash -c` script.
    values = _EXEC_TIMEOUT_FLAG.findall(" ".join(command_line))
    if not values:
        return None
    try:
        seconds = float(values[-1])
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def _interruptible(body: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """An op body as a process that ends quietly when interrupted (nobody waits on it any more)."""
    try:
        return (yield from body)
    except simpy.Interrupt:
        return None

