"""The twin's DMS over real gRPC: every simulated DPU's DMS behind one mTLS server on loopback.

The servicers speak our gNMI/gNOI stubs (`dpf_hw.proto`, the one piece of dpf_hw the twin may import) and
execute each RPC with the SAME BlueField op handlers the simulated install task uses
(`BlueFields.set_mode/os_install/os_activate/os_verify/reboot_status`), so a real client sees the model's timing,
staging rules and failures.

Routing: one server, per-call routing by metadata. Every call of our client carries `dpf-dpu`
(`<namespace>/<name>`) and `dpf-dms-target` (`<podIP>:9339` as the controller resolved it); the servicer
builds the op's DmsTarget from them and the model resolves the DPU exactly as for a simulated op (by DMS
address, then by name), answering UNAVAILABLE when that DMS pod is not running or its host is down. One
listening port for a whole fleet keeps a 1k-DPU twin to one socket and one thread pool; `dial` maps any
target to it. The server certificate is the loopback one (IP SAN 127.0.0.1), standing in for the per-DPU
`<dpu>-server-secret`.

Time: the model is SimPy code on the twin's environment, which is not thread-safe, and gRPC calls arrive on
server threads. One pacer owns the environment while the server runs (`SimPacer`, or in `dpf serve` the
serve loop's pacer, passed in as `pacer=`: anything with `env`, `lock` and `run_process`): a thread advances it in small
steps to `sim start + wall elapsed x speed`, holding `lock`; servicers start the model's op as a SimPy
process under the same lock and wait (wall clock) for it to finish. Everything else that touches the twin
meanwhile (a test applying objects, injecting a fault) takes `pacer.lock`. We chose lockstep pacing over
`simpy.rt.RealtimeEnvironment` because the twin builds a plain Environment and some callers drive it
directly; the pacer needs no other environment class and stops cleanly. `speed` is simulated seconds per
wall second: 1 is real time, 1000 makes a 150 s DPU boot take 0.15 s.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Generator, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import grpc
import simpy

from dpf_core.ports.ops import (
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
from dpf_hw.proto import (
    DPU_METADATA,
    MODE_PATH,
    TARGET_METADATA,
    gnmi_pb2,
    gnmi_pb2_grpc,
    os_pb2,
    os_pb2_grpc,
    system_pb2,
    system_pb2_grpc,
)

from .models.bfbserver import BfbFile
from .models.bluefield import BlueField, BlueFields
from .tasks import Executor, original_error

# Content of a `.cfg` version is kept in memory for the model; anything bigger than this is not a bf.cfg
# (the model itself rejects bf.cfg over 128 KiB with its own message).
CFG_BUFFER_LIMIT = 16 * 1024 * 1024
PROGRESS_EVERY = 4 * 1024 * 1024  # TransferProgress after this many bytes

_STATUS_BY_REASON = {
    "Unavailable": grpc.StatusCode.UNAVAILABLE,
    "DeadlineExceeded": grpc.StatusCode.DEADLINE_EXCEEDED,
    "NotFound": grpc.StatusCode.NOT_FOUND,
    "InvalidArgument": grpc.StatusCode.INVALID_ARGUMENT,
    "Cancelled": grpc.StatusCode.CANCELLED,
    "Unimplemented": grpc.StatusCode.UNIMPLEMENTED,
}


class SimPacer:
    """Advances a SimPy environment with the wall clock (x `speed`) on a thread; `lock` guards it."""

    def __init__(self, env: simpy.Environment, speed: float = 1.0, tick: float = 0.002) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.env = env
        self.speed = speed
        self.tick = tick
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sim0 = 0.0
        self._wall0 = 0.0
        self.error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        with self.lock:
            self._sim0 = float(self.env.now)
            self._wall0 = time.monotonic()
        self._stop.clear()
        self._thread = threading.Thread(target=self._pump, name="dms-sim-pacer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _pump(self) -> None:
        while not self._stop.is_set():
            with self.lock:
                target = self._sim0 + (time.monotonic() - self._wall0) * self.speed
                if target > self.env.now:
                    try:
                        self.env.run(until=target)
                    except BaseException as e:  # a model crash must surface, not kill the pacer silently
                        self.error = e
                        self._stop.set()
                        return
            self._stop.wait(self.tick)

    def run_process(self, body: Callable[[], Generator[Any, Any, Any]], is_active: Callable[[], bool],
                    timeout: float | None) -> Any:
        """Run `body` as a SimPy process and wait for it on this (gRPC) thread. Returns its value or raises
        what it raised; a caller that goes away (cancelled, deadline) interrupts it."""
        return run_sim_process(self.env, self.lock, body, is_active, timeout, failed=lambda: self.error)


class EnvPacer(Protocol):
    """What the DMS server needs of whoever advances the twin's environment: the environment, the lock that
    guards it, and a way to run a SimPy process from another thread and wait for it (SimPacer here, the
    serve loop's pacer in `dpf serve`: one thing advances the environment)."""

    env: simpy.Environment
    lock: threading.RLock

    def run_process(self, body: Callable[[], Generator[Any, Any, Any]], is_active: Callable[[], bool],
                    timeout: float | None) -> Any: ...


def run_sim_process(env: simpy.Environment, lock: threading.RLock, body: Callable[[], Generator[Any, Any, Any]],
                    is_active: Callable[[], bool], timeout: float | None, *,
                    failed: Callable[[], BaseException | None] = lambda: None,
                    wake: Callable[[], None] = lambda: None) -> Any:
    """Start `body` as a process of `env` (under `lock`) and wait on the calling thread, polling the wall
    clock, until it ends; `wake` tells the pacer a new event is due now. The process is interrupted when the
    caller goes away (`is_active` false) or `timeout` wall seconds pass; `failed` reports a stopped clock."""
    done = threading.Event()
    box: dict[str, Any] = {}

    def process() -> Generator[Any, Any, None]:
        try:
            box["value"] = yield from body()
        except OpError as e:
            box["error"] = original_error(e)
        except simpy.Interrupt as i:
            box["error"] = OpError(f"cancelled: {i.cause}", "Cancelled")
        except Exception as e:  # a model bug: reported to the caller as INTERNAL, not swallowed
            box["error"] = e
        finally:
            done.set()

    with lock:
        proc = env.process(process())
    wake()
    give_up = None if timeout is None else time.monotonic() + timeout
    while not done.wait(0.01):
        error = failed()
        if error is not None:
            raise OpError(f"the twin's clock stopped: {error!r}", "Unavailable")
        if not is_active() or (give_up is not None and time.monotonic() > give_up):
            with lock:
                if proc.is_alive:
                    proc.interrupt("client went away")
            raise OpError("the client cancelled the call or its deadline passed", "Cancelled")
    if "error" in box:
        raise box["error"]
    return box.get("value")


@dataclass(frozen=True)
class ServerTls:
    """PEM bytes: the server's key and certificate, and the CA that signs client certificates."""

    server_key: bytes
    server_cert: bytes
    client_ca: bytes


class _Dms:
    """What every servicer shares: routing, the model, the pacer."""

    def __init__(self, bluefields: BlueFields, pacer: EnvPacer) -> None:
        self.bluefields = bluefields
        self.pacer = pacer
        self.executor = Executor()
        bluefields.register(self.executor)
        self.calls = 0

    def target(self, context: Any) -> DmsTarget:
        md = {k: v for k, v in (context.invocation_metadata() or ())}
        address, dpu = str(md.get(TARGET_METADATA, "")), str(md.get(DPU_METADATA, ""))
        if not address and not dpu:
            # A real DMS serves one DPU and reads no metadata: with one DMS serving, a client built from the
            # upstream protos alone reaches it; with several the twin cannot tell which one is meant.
            with self.pacer.lock:
                serving = [b for b in self.bluefields.dpus.values() if b.dms_running and b.dms_address]
            if len(serving) != 1:
                abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                      f"the twin's DMS routes by metadata when {len(serving)} DMS are serving: send {DPU_METADATA} "
                      f"and/or {TARGET_METADATA}")
            address = str(serving[0].dms_address)
        self.calls += 1
        return DmsTarget(dpu=dpu, address=address, pci_address="")

    def run(self, op: Any, context: Any) -> Any:
        return self.pacer.run_process(lambda: self.executor(op), context.is_active, context.time_remaining())

    def blue_field(self, target: DmsTarget, context: Any) -> BlueField:
        """The DPU a call is for, if its DMS is serving (what the model's own resolve does)."""
        with self.pacer.lock:
            bf = next((b for b in self.bluefields.dpus.values() if target.address and b.dms_address == target.address),
                      None) or self.bluefields.dpus.get(target.dpu.rsplit("/", 1)[-1])
            serving = bf is not None and bf.dms_address is not None and self.bluefields.dms_reachable(bf.dms_address)
        if bf is None or not serving:
            abort(context, grpc.StatusCode.UNAVAILABLE, f"dial {target.address or target.dpu}: connection refused")
        return bf


def abort(context: Any, code: Any, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("context.abort returned")  # grpc raises; this keeps the type checker honest


def abort_op_error(context: Any, e: BaseException) -> NoReturn:
    if isinstance(e, OpError):
        abort(context, _STATUS_BY_REASON.get(e.reason, grpc.StatusCode.UNKNOWN), str(e))
    abort(context, grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")


class GnmiServicer(gnmi_pb2_grpc.gNMIServicer):
    def __init__(self, dms: _Dms) -> None:
        self.dms = dms

    def Set(self, request: gnmi_pb2.SetRequest, context: Any) -> gnmi_pb2.SetResponse:
        target = self.dms.target(context)
        if request.delete:
            abort(context, grpc.StatusCode.UNIMPLEMENTED, "delete is not supported by the DMS model")
        results = []
        for kind, updates in (("replace", request.replace), ("update", request.update)):
            for update in updates:
                names = tuple(e.name for e in [*request.prefix.elem, *update.path.elem])
                if names != MODE_PATH:
                    abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"unsupported path /{'/'.join(names)}")
                if update.val.WhichOneof("value") != "string_val":
                    abort(context, grpc.StatusCode.INVALID_ARGUMENT, "/nvidia/mode/config/mode takes a string_val")
                try:
                    self.dms.run(GnmiSetMode(target, mode=update.val.string_val), context)
                except Exception as e:
                    abort_op_error(context, e)
                op = gnmi_pb2.UpdateResult.REPLACE if kind == "replace" else gnmi_pb2.UpdateResult.UPDATE
                results.append(gnmi_pb2.UpdateResult(path=update.path, op=op))
        return gnmi_pb2.SetResponse(response=results, timestamp=time.time_ns())


class OsServicer(os_pb2_grpc.OSServicer):
    def __init__(self, dms: _Dms) -> None:
        self.dms = dms

    def Install(self, request_iterator: Iterator[os_pb2.InstallRequest],
                context: Any) -> Iterator[os_pb2.InstallResponse]:
        target = self.dms.target(context)
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("request") != "transfer_request":
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "the first InstallRequest must be a TransferRequest")
        version = first.transfer_request.version
        if not version:
            yield _install_error(os_pb2.InstallError.PARSE_FAIL, "TransferRequest without a version")
            return
        self.dms.blue_field(target, context)
        is_cfg = version.endswith(".cfg")
        yield os_pb2.InstallResponse(transfer_ready=os_pb2.TransferReady())

        received, next_progress = 0, PROGRESS_EVERY
        sha = hashlib.sha256()
        buffer = bytearray()
        ended = False
        for request in request_iterator:
            kind = request.WhichOneof("request")
            if kind == "transfer_content":
                chunk = request.transfer_content
                received += len(chunk)
                sha.update(chunk)
                if is_cfg:
                    if received > CFG_BUFFER_LIMIT:
                        yield _install_error(os_pb2.InstallError.TOO_LARGE, f"{version}: over {CFG_BUFFER_LIMIT} bytes")
                        return
                    buffer += chunk
                if received >= next_progress:
                    next_progress += PROGRESS_EVERY
                    yield os_pb2.InstallResponse(transfer_progress=os_pb2.TransferProgress(bytes_received=received))
            elif kind == "transfer_end":
                ended = True
                break
            else:
                abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"unexpected {kind} after TransferReady")
        if not ended:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "the stream closed before TransferEnd")
        yield os_pb2.InstallResponse(transfer_progress=os_pb2.TransferProgress(bytes_received=received))

        if is_cfg:
            op = OsInstall(target, version=version, content=bytes(buffer))
        else:
            # What went over the wire lands in the image folder (/bfb), where the model reads BFBs from; a
            # file already there with the same digest (the BFB controller's download) is left alone.
            self._stage(version, received, sha.hexdigest())
            op = OsInstall(target, version=version, file_name=version)
        try:
            staged = self.dms.run(op, context)
        except OpError as e:
            if e.reason in ("Unavailable", "DeadlineExceeded", "Cancelled"):
                abort_op_error(context, e)
            too_large = e.reason == "InvalidArgument" and "exceeds" in str(e)
            yield _install_error(os_pb2.InstallError.TOO_LARGE if too_large else os_pb2.InstallError.UNSPECIFIED,
                                 str(e))
            return
        except Exception as e:
            abort_op_error(context, e)
        yield os_pb2.InstallResponse(validated=os_pb2.Validated(version=str(staged or version),
                                                                description=f"{received} bytes staged"))

    def _stage(self, version: str, size: int, sha256: str) -> None:
        directory = self.dms.bluefields.directory
        with self.dms.pacer.lock:
            existing = directory.get(version)
            if existing is not None and existing.complete and existing.size == size and existing.sha256 in (None, sha256):
                return
            directory.files[version] = BfbFile(version, size, sha256, None, True, float(self.dms.pacer.env.now))

    def Activate(self, request: os_pb2.ActivateRequest, context: Any) -> os_pb2.ActivateResponse:
        target = self.dms.target(context)
        try:
            self.dms.run(OsActivate(target, version=request.version, no_reboot=request.no_reboot), context)
        except OpError as e:
            if e.reason == "NonExistentVersion":
                return _activate_error(os_pb2.ActivateError.NON_EXISTENT_VERSION, str(e))
            if e.reason == "InvalidArgument":
                return _activate_error(os_pb2.ActivateError.UNSPECIFIED, str(e))
            abort_op_error(context, e)
        except Exception as e:
            abort_op_error(context, e)
        return os_pb2.ActivateResponse(activate_ok=os_pb2.ActivateOK())

    def Verify(self, request: os_pb2.VerifyRequest, context: Any) -> os_pb2.VerifyResponse:
        target = self.dms.target(context)
        try:
            result = self.dms.run(OsVerify(target), context)
        except Exception as e:
            abort_op_error(context, e)  # a rebooting DPU is UNAVAILABLE, which gNOI tells clients to retry
        if not isinstance(result, OsVerifyResult):
            abort(context, grpc.StatusCode.INTERNAL, f"the model answered {result!r}")
        # A BlueField has one ARM complex: no standby supervisor.
        standby = os_pb2.VerifyStandby(standby_state=os_pb2.StandbyState(state=os_pb2.StandbyState.UNSUPPORTED))
        return os_pb2.VerifyResponse(version=result.version, activation_fail_message=result.activation_fail_message,
                                     verify_standby=standby, individual_supervisor_install=False)


class SystemServicer(system_pb2_grpc.SystemServicer):
    def __init__(self, dms: _Dms) -> None:
        self.dms = dms

    def RebootStatus(self, request: system_pb2.RebootStatusRequest,
                     context: Any) -> system_pb2.RebootStatusResponse:
        target = self.dms.target(context)
        try:
            result = self.dms.run(RebootStatusOp(target), context)
        except Exception as e:
            abort_op_error(context, e)
        if not isinstance(result, RebootStatusResult):
            abort(context, grpc.StatusCode.INTERNAL, f"the model answered {result!r}")
        names = system_pb2.RebootStatus.Status.keys()
        status = system_pb2.RebootStatus.Status.Value(result.status if result.status in names else "STATUS_UNKNOWN")
        return system_pb2.RebootStatusResponse(active=result.active, reason=result.message,
                                               status=system_pb2.RebootStatus(status=status, message=result.message))

    def Reboot(self, request: system_pb2.RebootRequest, context: Any) -> system_pb2.RebootResponse:
        target = self.dms.target(context)
        bf = self.dms.blue_field(target, context)
        with self.dms.pacer.lock:
            self.dms.bluefields.reboot(bf.name)
        return system_pb2.RebootResponse()


def _install_error(kind: os_pb2.InstallError.Type, detail: str) -> os_pb2.InstallResponse:
    return os_pb2.InstallResponse(install_error=os_pb2.InstallError(type=kind, detail=detail))


def _activate_error(kind: os_pb2.ActivateError.Type, detail: str) -> os_pb2.ActivateResponse:
    return os_pb2.ActivateResponse(activate_error=os_pb2.ActivateError(type=kind, detail=detail))


# The generated registration functions are untyped; this is their shape.
_SERVICERS: list[tuple[Callable[[Any, Any], None], Callable[[_Dms], Any]]] = [
    (gnmi_pb2_grpc.add_gNMIServicer_to_server, GnmiServicer),
    (os_pb2_grpc.add_OSServicer_to_server, OsServicer),
    (system_pb2_grpc.add_SystemServicer_to_server, SystemServicer),
]


class DmsGrpcServer:
    """Serves every BlueField of `bluefields` over gRPC with mTLS on `host:port` (0 = any free port).

    `start()` also starts the pacer (unless one already runs the environment); `stop()` stops both.
    `dial(target)` is what to hand the real client so every DPU's calls reach this server."""

    def __init__(self, bluefields: BlueFields, tls: ServerTls, *, host: str = "127.0.0.1", port: int = 0,
                 speed: float = 1.0, pacer: EnvPacer | None = None, max_workers: int = 16) -> None:
        self.bluefields = bluefields
        self._own_pacer: SimPacer | None = None
        self.pacer: EnvPacer
        if pacer is None:
            self._own_pacer = self.pacer = SimPacer(bluefields.env, speed)
        else:
            self.pacer = pacer
        self.dms = _Dms(bluefields, self.pacer)
        self.host = host
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="dms-grpc"))
        for add, servicer in _SERVICERS:
            add(servicer(self.dms), self.server)
        creds = grpc.ssl_server_credentials([(tls.server_key, tls.server_cert)], root_certificates=tls.client_ca,
                                            require_client_auth=True)
        self.port: int = self.server.add_secure_port(f"{host}:{port}", creds)
        if self.port == 0:
            raise OSError(f"cannot listen on {host}:{port}")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def dial(self, _target: DmsTarget) -> str:
        return self.address

    @property
    def calls(self) -> int:
        return self.dms.calls

    def start(self) -> DmsGrpcServer:
        self.server.start()
        if self._own_pacer is not None:
            self._own_pacer.start()
        return self

    def stop(self, grace: float | None = None) -> None:
        self.server.stop(grace).wait()
        if self._own_pacer is not None:
            self._own_pacer.stop()

    def __enter__(self) -> DmsGrpcServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class DmsPki:
    """PEM bytes of a throwaway DMS trust: a CA, the server certificate it signed (IP SAN = the listen
    address), and a client certificate it signed, which the server trusts (DPF's cert-manager issuer
    `dpf-provisioning-ca`, `<dpu>-server-secret`, `dpf-provisioning-client-secret`)."""

    ca_cert: bytes
    server_key: bytes
    server_cert: bytes
    client_key: bytes
    client_cert: bytes

    def server_tls(self) -> ServerTls:
        return ServerTls(server_key=self.server_key, server_cert=self.server_cert, client_ca=self.ca_cert)


def issue_dms_pki(host: str = "127.0.0.1", days: int = 7) -> DmsPki:
    """ECDSA P-256 certificates, as DPF's issuer makes them."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def issue(cn: str, signer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, *, ca: bool = False,
              usage: x509.ObjectIdentifier | None = None,
              san: x509.GeneralName | None = None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        builder = (x509.CertificateBuilder().subject_name(name)
                   .issuer_name(signer[0].subject if signer else name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if san is not None:
            builder = builder.add_extension(x509.SubjectAlternativeName([san]), critical=False)
        return builder.sign(signer[1] if signer else key, hashes.SHA256()), key

    def pem(pair: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> tuple[bytes, bytes]:
        return (pair[1].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()),
                pair[0].public_bytes(serialization.Encoding.PEM))

    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    ca = issue("dpf-provisioning-ca", None, ca=True)
    server_key, server_cert = pem(issue("dpf-twin-dms-server", ca, usage=ExtendedKeyUsageOID.SERVER_AUTH, san=san))
    client_key, client_cert = pem(issue("dpf-provisioning-client", ca, usage=ExtendedKeyUsageOID.CLIENT_AUTH))
    return DmsPki(pem(ca)[1], server_key, server_cert, client_key, client_cert)
