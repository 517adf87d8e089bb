"""DMS over real gRPC: the production client (dpf_hw.dms) against the twin's DMS server (dpf_sim.dmsgrpc).

Certificates are made here with `cryptography` (ECDSA P-256, as DPF's cert-manager issuer): a CA, a server
certificate with IP SAN 127.0.0.1 and a client certificate, plus the bad ones (another CA, expired).
The twin's SimPy clock runs SPEED times faster than the wall clock, so a 30 s DPU boot takes 0.1 s.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

try:
    import grpc
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from dpf_hw.dms import DmsClient, DmsTimeouts, DmsTls, check_client_certificate
    from dpf_hw.proto import DPU_METADATA, OS_ACTIVATE, OS_VERIFY, os_pb2
    from dpf_sim.dmsgrpc import DmsGrpcServer, ServerTls
except ImportError as missing:  # pragma: no cover - depends on the machine
    if os.environ.get("DPF_REQUIRE_REAL") == "1":
        pytest.fail(f"DPF_REQUIRE_REAL=1 but the gRPC DMS stack cannot be imported: {missing}", pytrace=False)
    pytest.skip(f"grpc/cryptography not installed: {missing}", allow_module_level=True)

from dpf_core.controllers.dpu_tasks import InstallSpec, install_procedure
from dpf_core.ports.dispatch import inline_composites
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
    Sleep,
)
from dpf_sim.fleet import FleetSpec, build_fleet
from dpf_sim.models.bfbserver import BfbDirectory
from dpf_sim.models.bluefield import BlueFieldParams, BlueFields, DpuState
from dpf_sim.net import Network
from dpf_sim.rng import Streams

pytestmark = pytest.mark.real

SPEED = 300.0  # simulated seconds per wall second
KiB, MiB = 1024, 1024 * 1024
BFB = "bf-bundle-2.9.1.bfb"
BFB_BYTES = bytes(range(256)) * (3 * MiB // 256 + 7)  # a little over 3 MiB: several chunks
NAMESPACE = "dpf-operator-system"
# Constant timings, so what the test waits for is bounded: flash ~1 s, boot 30 s (sim).
PARAMS = BlueFieldParams(dms_latency=0.05, gnmi_set_latency=3.0, rshim_rate="20MiB/s", flash_rate="4MiB/s",
                         boot_time="30s", cloud_init_time="10s", join_time="5s", initial_mode="NIC")


# --- certificates -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pki:
    key: bytes
    cert: bytes


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _issue(cn: str, signer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None, *,
           ca: bool = False, ip: str | None = None, usage: Any = None, valid_from: dt.datetime | None = None,
           valid_to: dt.datetime | None = None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(signer[0].subject if signer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(valid_from or now - dt.timedelta(minutes=5))
               .not_valid_after(valid_to or now + dt.timedelta(hours=24))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                                        critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(signer[1] if signer else key, hashes.SHA256()), key


def _pki(pair: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> Pki:
    return Pki(_pem_key(pair[1]), pair[0].public_bytes(serialization.Encoding.PEM))


@dataclass(frozen=True)
class Certs:
    ca: Pki
    server: Pki
    client: Pki
    other_ca: Pki
    expired_client: Pki
    expired_server: Pki

    def client_tls(self, client: Pki | None = None, root: Pki | None = None) -> DmsTls:
        c = client or self.client
        return DmsTls(root_ca=(root or self.ca).cert, client_key=c.key, client_cert=c.cert)

    def server_tls(self, server: Pki | None = None) -> ServerTls:
        s = server or self.server
        return ServerTls(server_key=s.key, server_cert=s.cert, client_ca=self.ca.cert)


@pytest.fixture(scope="module")
def certs() -> Certs:
    ca = _issue("dpf-provisioning-ca", ca=True)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    return Certs(
        ca=_pki(ca),
        server=_pki(_issue("dpu-0-dms-server-cert", ca, ip="127.0.0.1", usage=ExtendedKeyUsageOID.SERVER_AUTH)),
        client=_pki(_issue("dpf-provisioning-client", ca, usage=ExtendedKeyUsageOID.CLIENT_AUTH)),
        other_ca=_pki(_issue("someone-else-ca", ca=True)),
        expired_client=_pki(_issue("dpf-provisioning-client", ca, usage=ExtendedKeyUsageOID.CLIENT_AUTH,
                                   valid_from=past, valid_to=past + dt.timedelta(hours=24))),
        expired_server=_pki(_issue("dpu-0-dms-server-cert", ca, ip="127.0.0.1",
                                   usage=ExtendedKeyUsageOID.SERVER_AUTH, valid_from=past,
                                   valid_to=past + dt.timedelta(hours=24))),
    )


# --- the twin's DMS -----------------------------------------------------------------------------------------
class World:
    """Two hosts with one BlueField each, both DMS pods Running, served over gRPC."""

    def __init__(self, certs: Certs, bfb_dir: Path, server_tls: ServerTls | None = None) -> None:
        import simpy

        self.env = simpy.Environment()
        self.fleet = build_fleet(FleetSpec(racks=1, hosts_per_rack=2))
        self.bfs = BlueFields(self.env, Network(self.env, self.fleet), BfbDirectory(), PARAMS, Streams(0))
        self.names = sorted(self.bfs.dpus)
        self.targets: dict[str, DmsTarget] = {}
        for i, name in enumerate(self.names):
            address = f"10.0.110.{10 + i}:9339"
            self.bfs.mark_dms_running(name, address)
            self.targets[name] = DmsTarget(dpu=f"{NAMESPACE}/{name}", address=address, pci_address="0000:04:00")
        self.server = DmsGrpcServer(self.bfs, server_tls or certs.server_tls(), speed=SPEED).start()
        self.bfb_dir = bfb_dir

    def client(self, tls: DmsTls, **kw: Any) -> DmsClient:
        kw.setdefault("dial", self.server.dial)
        return DmsClient(tls, self.bfb_dir, chunk_size=256 * KiB, **kw)

    def read(self, fn: Callable[[], Any]) -> Any:
        with self.server.pacer.lock:
            return fn()

    def close(self) -> None:
        self.server.stop()


@pytest.fixture
def bfb_dir(tmp_path: Path) -> Path:
    (tmp_path / BFB).write_bytes(BFB_BYTES)
    return tmp_path


@pytest.fixture
def world(certs: Certs, bfb_dir: Path) -> Iterator[World]:
    w = World(certs, bfb_dir)
    yield w
    w.close()


@pytest.fixture
def client(world: World, certs: Certs) -> Iterator[DmsClient]:
    with world.client(certs.client_tls()) as c:
        yield c


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def wait_reboot(client: DmsClient, target: DmsTarget, limit: float = 10.0) -> tuple[RebootStatusResult, int]:
    """Poll RebootStatus until not active; returns the last answer and how many active answers came first."""
    active = 0
    give_up = time.monotonic() + limit
    while time.monotonic() < give_up:
        result = client.reboot_status(RebootStatusOp(target))
        if not result.active:
            return result, active
        active += 1
        time.sleep(0.01)
    raise AssertionError(f"still rebooting after {limit}s wall")


# --- the happy path --------------------------------------------------------------------------------------------
def test_install_sequence_over_grpc_provisions_the_model(world: World, client: DmsClient) -> None:
    name = world.names[0]
    target = world.targets[name]
    bf = world.bfs.get(name)
    progress: list[int] = []
    client.on_progress = lambda _t, _v, n: progress.append(n)

    client.set_mode(GnmiSetMode(target, mode="DPU"))
    assert world.read(lambda: bf.mode) == "DPU"

    assert client.os_install(OsInstall(target, version=BFB, file_name=BFB)) == BFB
    staged = world.read(lambda: bf.staged[BFB])
    assert (staged.kind, staged.size, staged.sha256) == ("bfb", len(BFB_BYTES), hashlib.sha256(BFB_BYTES).hexdigest())
    assert progress[-1] == len(BFB_BYTES)

    cfg = b"# bf.cfg for DPU\nbfb_modify_os()\n{\n  true\n}\n"
    cfg_version = f"{name}.cfg"
    assert client.os_install(OsInstall(target, version=cfg_version, content=cfg)) == cfg_version
    assert world.read(lambda: bf.staged[cfg_version].content) == cfg

    client.os_activate(OsActivate(target, version=f"{BFB};{cfg_version}"))
    result, active_answers = wait_reboot(client, target)
    assert active_answers >= 1  # flash + boot take ~31 s simulated, ~0.1 s wall: the poll saw it
    assert (result.status, result.active) == ("STATUS_SUCCESS", False)
    assert world.read(lambda: (bf.state, bf.installed_version, bf.bfcfg, bf.installs)) == (
        DpuState.RUNNING, BFB, cfg, 1)
    # The other DPU was never addressed: routing by metadata reached exactly one model.
    other = world.bfs.get(world.names[1])
    assert world.read(lambda: (other.mode, other.staged, other.installs)) == ("NIC", {}, 0)


class DirStore:
    """The BfbStore port over a directory (the `/bfb` PVC)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def exists(self, file_name: str) -> bool:
        return (self.root / file_name).exists()

    def size(self, file_name: str) -> int | None:
        p = self.root / file_name
        return p.stat().st_size if p.exists() else None

    def remove(self, file_name: str) -> None:
        (self.root / file_name).unlink(missing_ok=True)

    def write(self, file_name: str, content: bytes) -> None:
        (self.root / file_name).write_bytes(content)


def drive(proc: Any, client: DmsClient) -> tuple[Any, list[str]]:
    """A minimal thread-free task runner: each op through the real client, Sleep on the wall clock."""
    proc = inline_composites(proc, time.monotonic)  # AwaitReboot as its polls, as ThreadTasks runs it
    ops: list[str] = []
    send: Any = None
    throw: OpError | None = None
    while True:
        try:
            op = proc.throw(throw) if throw is not None else proc.send(send)
        except StopIteration as stop:
            return stop.value, ops
        send, throw = None, None
        ops.append(type(op).__name__)
        if isinstance(op, Sleep):
            time.sleep(op.seconds)
            continue
        try:
            send = client(op)
        except OpError as e:
            throw = e


def test_core_install_procedure_runs_end_to_end_against_the_twin(world: World, client: DmsClient,
                                                                 bfb_dir: Path) -> None:
    """The core's install procedure (DPF's dmsHandler) over gRPC, then resumed by a "restarted controller"."""
    name = world.names[1]
    spec = InstallSpec(target=world.targets[name], dpu_name=name, bfb_file_name=BFB,
                       join_command="kubeadm join 10.0.0.1:6443", additional_reboot=False,
                       reboot_status_poll=0.01, cloud_init_timeout=0.0)
    result, ops = drive(install_procedure(spec, DirStore(bfb_dir), now=time.monotonic), client)
    assert result == {"bfb": BFB, "cfg": f"{name}.cfg"}
    assert ops[:4] == ["GnmiSetMode", "OsInstall", "OsInstall", "OsActivate"]
    assert ops[-1] == "Sleep" and "RebootStatusOp" in ops
    bf = world.bfs.get(name)
    rendered = (bfb_dir / f"{name}.cfg").read_bytes()
    assert world.read(lambda: (bf.mode, bf.installed_version, bf.bfcfg)) == ("DPU", BFB, rendered)

    # The same install resumed after its reboot finished: OS.Verify over gRPC reports it running; no new flash.
    resumed = replace(spec, resume_bfb=BFB)
    result, ops = drive(install_procedure(resumed, DirStore(bfb_dir), now=time.monotonic), client)
    assert result == {"bfb": BFB, "cfg": f"{name}.cfg"}
    assert ops == ["RebootStatusOp", "OsVerify", "Sleep"]
    assert world.read(lambda: (bf.flashes_started, bf.installs)) == (1, 1)


def test_system_reboot_reboots_the_dpu(world: World, client: DmsClient) -> None:
    name = world.names[0]
    client.reboot(world.targets[name])
    result, active_answers = wait_reboot(client, world.targets[name])
    assert active_answers >= 1 and result.status == "STATUS_SUCCESS"
    assert world.read(lambda: world.bfs.get(name).boots) == 1


def test_os_verify_reports_the_activation_once_booted_and_is_unavailable_while_rebooting(
        world: World, client: DmsClient) -> None:
    name, other = world.names
    target = world.targets[name]
    assert client.os_verify(OsVerify(target)) == OsVerifyResult(version="")  # nothing known installed yet

    cfg_version = f"{name}.cfg"
    client.os_install(OsInstall(target, version=BFB, file_name=BFB))
    client.os_install(OsInstall(target, version=cfg_version, content=b"# bf.cfg\n"))
    client.os_activate(OsActivate(target, version=f"{BFB};{cfg_version}"))
    wait_reboot(client, target)
    assert client.os_verify(OsVerify(target)) == OsVerifyResult(version=f"{BFB};{cfg_version}")

    # A DPU that never comes back from a reboot has no OS to report: UNAVAILABLE, which gNOI says to retry.
    world.read(lambda: setattr(world.bfs.get(other), "boot_fault", "hang"))
    client.reboot(world.targets[other])
    with pytest.raises(OpError) as err:
        client.os_verify(OsVerify(world.targets[other]))
    assert err.value.reason == "Unavailable" and "OS.Verify" in str(err.value)


def test_os_verify_response_says_a_bluefield_has_no_standby_supervisor(world: World, certs: Certs) -> None:
    tls = certs.client_tls()
    creds = grpc.ssl_channel_credentials(tls.root_ca, tls.client_key, tls.client_cert)
    with grpc.secure_channel(world.server.address, creds) as channel:
        call = channel.unary_unary(OS_VERIFY, request_serializer=os_pb2.VerifyRequest.SerializeToString,
                                   response_deserializer=os_pb2.VerifyResponse.FromString)
        response = call(os_pb2.VerifyRequest(), timeout=5,
                        metadata=((DPU_METADATA, f"{NAMESPACE}/{world.names[0]}"),))
    assert response.verify_standby.standby_state.state == os_pb2.StandbyState.UNSUPPORTED
    assert (response.version, response.activation_fail_message, response.individual_supervisor_install) == (
        "", "", False)


# --- DMS-side failures -------------------------------------------------------------------------------------------
def test_activate_of_a_version_never_installed_is_non_existent_version(world: World, client: DmsClient) -> None:
    with pytest.raises(OpError) as err:
        client.os_activate(OsActivate(world.targets[world.names[0]], version=f"{BFB};nothing.cfg"))
    assert err.value.reason == "NonExistentVersion"
    assert "NON_EXISTENT_VERSION" in str(err.value) and BFB in str(err.value)


def test_oversized_bfcfg_is_an_install_error_too_large(world: World, client: DmsClient) -> None:
    name = world.names[0]
    with pytest.raises(OpError) as err:
        client.os_install(OsInstall(world.targets[name], version=f"{name}.cfg", content=b"x" * (200 * KiB)))
    assert err.value.reason == "InstallError" and "TOO_LARGE" in str(err.value)
    assert world.read(lambda: world.bfs.get(name).staged) == {}


def test_missing_bfb_file_is_not_found_before_dialing(world: World, client: DmsClient) -> None:
    with pytest.raises(OpError) as err:
        client.os_install(OsInstall(world.targets[world.names[0]], version="gone.bfb", file_name="gone.bfb"))
    assert err.value.reason == "NotFound" and "gone.bfb" in str(err.value)
    assert world.server.calls == 0


def test_dms_pod_not_running_is_unavailable(world: World, client: DmsClient) -> None:
    name = world.names[0]
    world.read(lambda: world.bfs.mark_dms_running(name, world.targets[name].address, running=False))
    with pytest.raises(OpError) as err:
        client.set_mode(GnmiSetMode(world.targets[name]))
    assert err.value.reason == "Unavailable" and "connection refused" in str(err.value)


def test_slow_dms_call_hits_the_client_deadline(world: World, certs: Certs) -> None:
    # gNMI Set takes 3 s simulated = 10 ms wall; the client allows 2 ms.
    with world.client(certs.client_tls(), timeouts=DmsTimeouts(set_mode=0.002)) as slow:
        started = time.monotonic()
        with pytest.raises(OpError) as err:
            slow.set_mode(GnmiSetMode(world.targets[world.names[0]]))
    assert err.value.reason == "DeadlineExceeded"
    assert time.monotonic() - started < 2.0


def test_server_rejects_calls_without_routing_metadata(world: World, certs: Certs) -> None:
    tls = certs.client_tls()
    creds = grpc.ssl_channel_credentials(tls.root_ca, tls.client_key, tls.client_cert)
    with grpc.secure_channel(world.server.address, creds) as channel:
        call = channel.unary_unary(OS_ACTIVATE, request_serializer=os_pb2.ActivateRequest.SerializeToString,
                                   response_deserializer=os_pb2.ActivateResponse.FromString)
        with pytest.raises(grpc.RpcError) as err:
            call(os_pb2.ActivateRequest(version=BFB), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "dpf-dpu" in (err.value.details() or "")


# --- transport and TLS failures: quick, clear, never a hang ---------------------------------------------------------
def test_wrong_ca_is_a_tls_error_quickly(world: World, certs: Certs) -> None:
    with world.client(certs.client_tls(root=certs.other_ca)) as c:
        started = time.monotonic()
        with pytest.raises(OpError) as err:
            c.set_mode(GnmiSetMode(world.targets[world.names[0]]))
    assert time.monotonic() - started < 3.0
    assert err.value.reason == "TLSError"
    assert "TLS handshake failed" in str(err.value) and "not trusted" in str(err.value)
    assert world.read(lambda: world.bfs.get(world.names[0]).mode) == "NIC"


def test_expired_client_certificate_is_a_clear_tls_error_before_dialing(world: World, certs: Certs) -> None:
    with world.client(certs.client_tls(client=certs.expired_client)) as c, pytest.raises(OpError) as err:
        c.set_mode(GnmiSetMode(world.targets[world.names[0]]))
    assert err.value.reason == "TLSError"
    assert "expired" in str(err.value) and "client certificate" in str(err.value)
    assert world.server.calls == 0


def test_expired_client_certificate_rejected_by_the_server_fails_fast_with_a_hint(world: World, certs: Certs) -> None:
    # Without our pre-check the server's rejection is all there is: the connection closes.
    with world.client(certs.client_tls(client=certs.expired_client), check_certificates=False) as c:
        started = time.monotonic()
        with pytest.raises(OpError) as err:
            c.set_mode(GnmiSetMode(world.targets[world.names[0]]))
    assert time.monotonic() - started < 3.0
    assert err.value.reason in ("Unavailable", "TLSError")
    assert "client certificate" in str(err.value)
    assert world.server.calls == 0


def test_expired_server_certificate_is_a_tls_error(certs: Certs, bfb_dir: Path) -> None:
    w = World(certs, bfb_dir, server_tls=certs.server_tls(certs.expired_server))
    try:
        with w.client(certs.client_tls()) as c, pytest.raises(OpError) as err:
            c.reboot_status(RebootStatusOp(w.targets[w.names[0]]))
    finally:
        w.close()
    assert err.value.reason == "TLSError" and "expired" in str(err.value)


def test_unreachable_dms_is_unavailable_within_the_deadline(certs: Certs, bfb_dir: Path) -> None:
    port = closed_port()
    target = DmsTarget(dpu=f"{NAMESPACE}/dpu-x", address=f"127.0.0.1:{port}", pci_address="0000:04:00")
    with DmsClient(certs.client_tls(), bfb_dir, timeouts=DmsTimeouts(reboot_status=2.0, dial=0.5)) as c:
        assert not c.reachable(target.address)
        started = time.monotonic()
        with pytest.raises(OpError) as err:
            c.reboot_status(RebootStatusOp(target))
    assert err.value.reason == "Unavailable" and target.address in str(err.value)
    assert time.monotonic() - started < 2.0


def test_reachable_probes_the_dms_port(world: World, client: DmsClient) -> None:
    assert client.reachable(world.server.address)
    assert not client.reachable(f"127.0.0.1:{closed_port()}")


def test_certificate_precheck_catches_a_key_that_is_not_the_certificates(certs: Certs) -> None:
    mixed = DmsTls(root_ca=certs.ca.cert, client_key=certs.server.key, client_cert=certs.client.cert)
    with pytest.raises(OpError) as err:
        check_client_certificate(mixed)
    assert err.value.reason == "TLSError" and "does not match" in str(err.value)
    check_client_certificate(certs.client_tls())  # the good pair passes


def test_tls_from_secrets_uses_dpfs_keys_and_messages(certs: Certs) -> None:
    client_secret = {"tls.crt": certs.client.cert, "tls.key": certs.client.key}
    tls = DmsTls.from_secrets(client_secret, {"ca.crt": certs.ca.cert})
    assert (tls.root_ca, tls.client_cert, tls.client_key) == (certs.ca.cert, certs.client.cert, certs.client.key)
    with pytest.raises(OpError, match=r"ca\.crt not found in Server secret"):
        DmsTls.from_secrets(client_secret, {})
    with pytest.raises(OpError, match=r"tls\.key not found in client secret"):
        DmsTls.from_secrets({"tls.crt": certs.client.cert}, {"ca.crt": certs.ca.cert})


def test_cancelled_task_stops_streaming_the_bfb(world: World, certs: Certs) -> None:
    cancel = threading.Event()
    cancel.set()
    with world.client(certs.client_tls(), cancellation=lambda: cancel) as c:
        name = world.names[0]
        with pytest.raises(OpError) as err:
            c.os_install(OsInstall(world.targets[name], version=BFB, file_name=BFB))
    assert err.value.reason == "Cancelled"
    assert world.read(lambda: world.bfs.get(name).staged) == {}
