"""The DMS client: DPF's install-task RPCs over real gRPC with mTLS, executing the core's DMS ops.

One `DmsClient` serves every DPU. Per op it dials `<podIP>:9339` (the op's `DmsTarget.address`) with the
client certificate of Secret `dpf-provisioning-client-secret` and the root CA `ca.crt` of the DPU's
`<dpu>-server-secret`, exactly the trust DPF sets up, and runs:

- GnmiSetMode    -> gNMI.Set, update `/nvidia/mode/config/mode` = string_val "DPU";
- OsInstall      -> gNOI OS.Install stream: TransferRequest{version}, wait TransferReady, content chunks (a
                    file of the BFB directory, or the bytes of bf.cfg), TransferEnd, wait Validated, which
                    must name the requested version (gnoigo's check; a Validated at once needs not);
- OsActivate     -> gNOI OS.Activate{version, no_reboot};
- RebootStatusOp -> gNOI System.RebootStatus for subcomponent `CPU` -> RebootStatusResult (message = the
                    response's `reason`, which DPF reports failures with);
- OsVerify       -> gNOI OS.Verify -> OsVerifyResult(version, activation_fail_message) (only a resumed install
                    asks; a DMS without it answers UNIMPLEMENTED -> OpError "Unimplemented").

Every call has a deadline and fails fast when the channel cannot connect (no wait-for-ready), so a dead
or untrusted DMS is an `OpError` in seconds, never a hung task. gRPC failures become `OpError` reasons:
UNAVAILABLE -> "Unavailable", DEADLINE_EXCEEDED -> "DeadlineExceeded", a failed TLS handshake (server not
signed by our CA, expired server certificate) or a client certificate that is expired, not yet valid or
not matching its key (checked before dialing: a server that rejects our certificate only closes the
socket, which says nothing) -> "TLSError"; other codes by name ("NotFound", "InvalidArgument", ...).
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

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
    GNMI_SET,
    MODE_PATH,
    OS_ACTIVATE,
    OS_INSTALL,
    OS_VERIFY,
    REBOOT_STATUS_SUBCOMPONENT,
    SYSTEM_REBOOT,
    SYSTEM_REBOOT_STATUS,
    TARGET_METADATA,
    gnmi_pb2,
    os_pb2,
    system_pb2,
    types_pb2,
)

# The Secret keys DPF reads (client secret: tls.crt/tls.key, server secret: ca.crt).
TLS_CRT = "tls.crt"
TLS_KEY = "tls.key"
CA_CRT = "ca.crt"

DEFAULT_CHUNK_SIZE = 512 * 1024  # well under gRPC's 4 MiB default message limit

# Substrings of gRPC's UNAVAILABLE details that mean the TLS handshake failed (BoringSSL's wording).
_TLS_MARKERS = ("handshake", "ssl_error", "certificate_verify_failed", "certificate", "tsi_")


@dataclass(frozen=True)
class DmsTls:
    """mTLS material, PEM bytes. `server_name` overrides the name checked against the server certificate
    (DPF checks the dialled IP against the certificate's IP SAN, which is the node address)."""

    root_ca: bytes
    client_key: bytes
    client_cert: bytes
    server_name: str | None = None

    @classmethod
    def from_secrets(cls, client_secret: Mapping[str, bytes], server_secret: Mapping[str, bytes]) -> DmsTls:
        """From decoded Secret data, with DPF's messages for missing keys."""
        if TLS_CRT not in client_secret:
            raise OpError("tls.crt not found in client secret", "TLSError")
        if TLS_KEY not in client_secret:
            raise OpError("tls.key not found in client secret", "TLSError")
        if CA_CRT not in server_secret:
            raise OpError("ca.crt not found in Server secret", "TLSError")
        return cls(root_ca=server_secret[CA_CRT], client_key=client_secret[TLS_KEY], client_cert=client_secret[TLS_CRT])


@dataclass(frozen=True)
class DmsTimeouts:
    """Per-call deadlines in seconds. Activate has DPF's 30-minute context; the rest are ours."""

    set_mode: float = 30.0
    install: float = 1800.0
    activate: float = 1800.0
    reboot_status: float = 10.0
    verify: float = 10.0
    reboot: float = 30.0
    dial: float = 5.0  # the Dms port's reachability probe (DPF dials with a 5 s timeout)


Progress = Callable[[DmsTarget, str, int], None]


def check_client_certificate(tls: DmsTls, now: dt.datetime | None = None) -> None:
    """Raise OpError("TLSError") when our side of the handshake cannot work: the server would just close
    the connection, and the operator would see "Socket closed" instead of the cause."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        cert = x509.load_pem_x509_certificate(tls.client_cert)
    except ValueError as e:
        raise OpError(f"client certificate is not a PEM certificate: {e}", "TLSError") from None
    try:
        x509.load_pem_x509_certificates(tls.root_ca)
    except ValueError as e:
        raise OpError(f"DMS root CA is not a PEM certificate: {e}", "TLSError") from None
    subject = cert.subject.rfc4514_string()
    if now > cert.not_valid_after_utc:
        raise OpError(f"TLS client certificate {subject} expired at {cert.not_valid_after_utc.isoformat()}; "
                      "the DMS would reject it (renew dpf-provisioning-client-secret)", "TLSError")
    if now < cert.not_valid_before_utc:
        raise OpError(f"TLS client certificate {subject} is not valid before "
                      f"{cert.not_valid_before_utc.isoformat()}", "TLSError")
    try:
        key = serialization.load_pem_private_key(tls.client_key, password=None)
    except (ValueError, TypeError) as e:
        raise OpError(f"client key is not an unencrypted PEM private key: {e}", "TLSError") from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if (key.public_key().public_bytes(serialization.Encoding.DER, spki)
            != cert.public_key().public_bytes(serialization.Encoding.DER, spki)):
        raise OpError(f"client key does not match TLS client certificate {subject}", "TLSError")


def _camel(code_name: str) -> str:
    return "".join(part.capitalize() for part in code_name.split("_"))


def op_error(e: grpc.RpcError, what: str, target: DmsTarget, address: str) -> OpError:
    """A gRPC failure as the OpError a task procedure understands (reason = one machine word)."""
    code = e.code() if hasattr(e, "code") else None
    details = str(e.details() if hasattr(e, "details") else e) or ""
    where = f"{what} on {target.dpu} at {address}"
    if code == grpc.StatusCode.UNAVAILABLE:
        lowered = details.lower()
        if any(m in lowered for m in _TLS_MARKERS):
            return OpError(f"{where}: TLS handshake failed: the DMS server certificate is not trusted (wrong CA "
                           f"or expired certificate): {details}", "TLSError")
        hint = ""
        if "socket closed" in lowered:
            hint = " (the DMS closed the connection; it may have rejected our client certificate)"
        return OpError(f"{where}: DMS unavailable{hint}: {details}", "Unavailable")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return OpError(f"{where}: context deadline exceeded: {details}", "DeadlineExceeded")
    name = code.name if code is not None else "UNKNOWN"
    return OpError(f"{where}: {name}: {details}", _camel(name))


def _go_quote(text: str) -> str:
    """Go's %q of a plain string, as gnoigo's messages print versions."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mode_update(mode: str) -> gnmi_pb2.SetRequest:
    """DPF's setModeRequest: one update of /nvidia/mode/config/mode with a string value."""
    path = gnmi_pb2.Path(elem=[gnmi_pb2.PathElem(name=n) for n in MODE_PATH])
    return gnmi_pb2.SetRequest(update=[gnmi_pb2.Update(path=path, val=gnmi_pb2.TypedValue(string_val=mode))])


def cpu_subcomponent() -> types_pb2.Path:
    return types_pb2.Path(elem=[types_pb2.PathElem(name=REBOOT_STATUS_SUBCOMPONENT)])


@dataclass
class _Channel:
    channel: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


class DmsClient:
    """The gRPC side of DPF's install task. Handlers are blocking; run them from the production Tasks
    worker threads (`register(executor)` or `handlers()`), never inside reconcile.

    `tls` is the material for all DPUs or a function of the target (per-DPU server secrets). `dial`
    maps a target to the address actually dialled (identity in production; the twin maps every DPU to
    its loopback server). `bfb_dir` is where OsInstall(file_name=...) reads BFBs (the `/bfb` PVC)."""

    def __init__(self, tls: DmsTls | Callable[[DmsTarget], DmsTls], bfb_dir: str | Path = "/bfb", *,
                 timeouts: DmsTimeouts | None = None, dial: Callable[[DmsTarget], str] | None = None,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, on_progress: Progress | None = None,
                 check_certificates: bool = True,
                 cancellation: Callable[[], threading.Event | None] | None = None) -> None:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be > 0")
        self._tls = tls
        self.bfb_dir = Path(bfb_dir)
        self.timeouts = timeouts or DmsTimeouts()
        self._dial = dial or (lambda target: target.address)
        self.chunk_size = chunk_size
        self.on_progress = on_progress
        self.check_certificates = check_certificates
        # The running task's cancel event (the operator passes dpf_hw.executor.cancellation): a cancelled
        # install stops streaming between chunks instead of pushing the rest of a 1.5 GiB BFB.
        self.cancellation = cancellation
        self._channels: dict[tuple[str, DmsTls], _Channel] = {}
        self._lock = threading.Lock()

    # --- wiring ----------------------------------------------------------------------------------------
    def handlers(self) -> dict[type, Callable[[Any], Any]]:
        return {GnmiSetMode: self.set_mode, OsInstall: self.os_install, OsActivate: self.os_activate,
                RebootStatusOp: self.reboot_status, OsVerify: self.os_verify}

    def register(self, executor: Any) -> None:
        for op_type, handler in self.handlers().items():
            executor.register(op_type, handler)

    def __call__(self, op: Any) -> Any:
        handler = self.handlers().get(type(op))
        if handler is None:
            raise OpError(f"the DMS client does not execute {type(op).__name__}", "Unimplemented")
        return handler(op)

    def reachable(self, address: str) -> bool:
        """dpf_core.ports.Dms: a plain TCP dial, as DPF probes the DMS port before starting the task."""
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=self.timeouts.dial):
                return True
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        with self._lock:
            channels, self._channels = list(self._channels.values()), {}
        for c in channels:
            c.channel.close()

    def __enter__(self) -> DmsClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- channels --------------------------------------------------------------------------------------
    def _tls_for(self, target: DmsTarget) -> DmsTls:
        tls = self._tls(target) if callable(self._tls) else self._tls
        if self.check_certificates:
            check_client_certificate(tls)
        return tls

    def _channel(self, target: DmsTarget) -> tuple[Any, str]:
        address = self._dial(target)
        tls = self._tls_for(target)
        key = (address, tls)
        with self._lock:
            entry = self._channels.get(key)
            if entry is None:
                creds = grpc.ssl_channel_credentials(root_certificates=tls.root_ca, private_key=tls.client_key,
                                                     certificate_chain=tls.client_cert)
                options = [("grpc.ssl_target_name_override", tls.server_name)] if tls.server_name else []
                entry = _Channel(grpc.secure_channel(address, creds, options=options))
                self._channels[key] = entry
        return entry.channel, address

    @staticmethod
    def _metadata(target: DmsTarget) -> tuple[tuple[str, str], ...]:
        return ((DPU_METADATA, target.dpu), (TARGET_METADATA, target.address))

    def _unary(self, target: DmsTarget, method: str, request: Any, response_type: Any, timeout: float,
               what: str) -> Any:
        channel, address = self._channel(target)
        call = channel.unary_unary(method, request_serializer=type(request).SerializeToString,
                                   response_deserializer=response_type.FromString)
        try:
            return call(request, timeout=timeout, metadata=self._metadata(target), wait_for_ready=False)
        except grpc.RpcError as e:
            raise op_error(e, what, target, address) from None

    # --- the ops ---------------------------------------------------------------------------------------
    def set_mode(self, op: GnmiSetMode) -> None:
        self._unary(op.target, GNMI_SET, mode_update(op.mode), gnmi_pb2.SetResponse, self.timeouts.set_mode,
                    f"gNMI Set {'/' + '/'.join(MODE_PATH)}={op.mode}")

    def os_activate(self, op: OsActivate) -> None:
        what = f"OS.Activate {op.version}"
        response: os_pb2.ActivateResponse = self._unary(
            op.target, OS_ACTIVATE, os_pb2.ActivateRequest(version=op.version, no_reboot=op.no_reboot),
            os_pb2.ActivateResponse, self.timeouts.activate, what)
        if response.WhichOneof("response") == "activate_error":
            err = response.activate_error
            kind = os_pb2.ActivateError.Type.Name(err.type)
            reason = "NonExistentVersion" if err.type == os_pb2.ActivateError.NON_EXISTENT_VERSION else "ActivateError"
            raise OpError(f"{what} on {op.target.dpu}: {kind}: {err.detail}", reason)

    def os_verify(self, op: OsVerify) -> OsVerifyResult:
        response: os_pb2.VerifyResponse = self._unary(
            op.target, OS_VERIFY, os_pb2.VerifyRequest(), os_pb2.VerifyResponse, self.timeouts.verify, "OS.Verify")
        return OsVerifyResult(version=response.version, activation_fail_message=response.activation_fail_message)

    def reboot_status(self, op: RebootStatusOp) -> RebootStatusResult:
        response: system_pb2.RebootStatusResponse = self._unary(
            op.target, SYSTEM_REBOOT_STATUS, system_pb2.RebootStatusRequest(subcomponents=[cpu_subcomponent()]),
            system_pb2.RebootStatusResponse, self.timeouts.reboot_status, "System.RebootStatus")
        status = response.status
        # DPF words a failed reboot with the response's `reason`; RebootStatus.message only fills in for a
        # target that leaves `reason` empty.
        return RebootStatusResult(active=response.active, status=system_pb2.RebootStatus.Status.Name(status.status),
                                  message=response.reason or status.message)

    def reboot(self, target: DmsTarget, method: str = "COLD", message: str = "") -> None:
        """gNOI System.Reboot of the DPU's CPU (no core op asks for it; DPF reboots through the host)."""
        request = system_pb2.RebootRequest(method=system_pb2.RebootMethod.Value(method), message=message,
                                           subcomponents=[cpu_subcomponent()])
        self._unary(target, SYSTEM_REBOOT, request, system_pb2.RebootResponse, self.timeouts.reboot,
                    f"System.Reboot {method}")

    def os_install(self, op: OsInstall) -> str:
        what = f"OS.Install {op.version}"
        chunks = self._content(op)
        channel, address = self._channel(op.target)
        stream = channel.stream_stream(OS_INSTALL, request_serializer=os_pb2.InstallRequest.SerializeToString,
                                       response_deserializer=os_pb2.InstallResponse.FromString)
        # The request iterator runs on a gRPC thread; content may only go once the target said TransferReady
        # (it may instead answer Validated at once when it already has that version, or InstallError).
        ready = threading.Event()
        finished = threading.Event()
        cancel = self.cancellation() if self.cancellation is not None else None
        calls: list[Any] = []

        def requests() -> Iterator[os_pb2.InstallRequest]:
            yield os_pb2.InstallRequest(transfer_request=os_pb2.TransferRequest(version=op.version))
            ready.wait()
            if finished.is_set():
                return
            for chunk in chunks():
                if finished.is_set():
                    return
                if cancel is not None and cancel.is_set():
                    calls[0].cancel()
                    return
                yield os_pb2.InstallRequest(transfer_content=chunk)
            yield os_pb2.InstallRequest(transfer_end=os_pb2.TransferEnd())

        call = stream(requests(), timeout=self.timeouts.install, metadata=self._metadata(op.target),
                      wait_for_ready=False)
        calls.append(call)
        try:
            for response in call:
                kind = response.WhichOneof("response")
                if kind == "transfer_ready":
                    ready.set()
                elif kind == "transfer_progress":
                    if self.on_progress is not None:
                        self.on_progress(op.target, op.version, response.transfer_progress.bytes_received)
                elif kind == "validated":
                    got = response.validated.version
                    # gnoigo, which DPF installs through, holds a target to the version it was sent once
                    # content went; a Validated at once (the target already has it) is taken as is.
                    if ready.is_set() and got != op.version:
                        raise OpError(f"{what} on {op.target.dpu}: installed version {_go_quote(got)} does not "
                                      f"match requested version {_go_quote(op.version)}", "InstallError")
                    return got or op.version
                elif kind == "install_error":
                    err = response.install_error
                    kind_name = os_pb2.InstallError.Type.Name(err.type)
                    raise OpError(f"{what} on {op.target.dpu}: {kind_name}: {err.detail}", "InstallError")
            raise OpError(f"{what} on {op.target.dpu}: the DMS closed the stream without Validated", "InstallError")
        except grpc.RpcError as e:
            if cancel is not None and cancel.is_set():
                raise OpError(f"{what} on {op.target.dpu}: cancelled", "Cancelled") from None
            raise op_error(e, what, op.target, address) from None
        finally:
            finished.set()
            ready.set()
            call.cancel()

    def _content(self, op: OsInstall) -> Callable[[], Iterator[bytes]]:
        """The bytes to stream, checked before dialing so a missing file is NotFound, not a half stream."""
        if op.content is not None:
            data = op.content
            size = self.chunk_size
            return lambda: (data[i:i + size] for i in range(0, len(data), size))
        if op.file_name is None:
            raise OpError(f"OS.Install {op.version}: neither a file nor content to send", "InvalidArgument")
        if "/" in op.file_name or op.file_name in ("", ".", ".."):
            raise OpError(f"OS.Install {op.version}: {op.file_name!r} is not a file name", "InvalidArgument")
        path = self.bfb_dir / op.file_name
        if not path.is_file():
            raise OpError(f"open {path}: no such file or directory", "NotFound")

        def read() -> Iterator[bytes]:
            with path.open("rb") as f:
                while chunk := f.read(self.chunk_size):
                    yield chunk

        return read
