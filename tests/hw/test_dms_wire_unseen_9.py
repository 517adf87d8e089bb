"""DMS wire compatibility, checked from the outside with a client and a server built from upstream field numbers.

The message descriptions below are written for this test from openconfig's published protos (gnoi v0.4.1, the
version DPF v24.10 pins, checked against gnoi HEAD; gnmi v0.10.0): os/os.proto, system/system.proto,
types/types.proto, proto/gnmi/gnmi.proto. They live in their own descriptor pool, independent of dpf_hw/proto, so
a wrong number in our .proto files shows up as a decode mismatch here. The behaviour expected of our client is
that of DPF's dmsHandler (internal/provisioning/controllers/dpu/state/installing.go) through gnoigo (os/os.go at
ebd033e): TransferRequest, wait TransferReady (or Validated at once), 64 KiB content chunks, TransferEnd, wait
Validated whose version must be the requested one; RebootStatus failures are reported with `reason`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest

try:
    import grpc
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # type: ignore[import-untyped]

    from dpf_hw.dms import DmsClient, DmsTls
    from dpf_hw.proto import gnmi_pb2, os_pb2, system_pb2, types_pb2
    from dpf_sim.dmsgrpc import DmsGrpcServer, DmsPki, issue_dms_pki
except ImportError as missing:  # pragma: no cover - depends on the machine
    if os.environ.get("DPF_REQUIRE_REAL") == "1":
        pytest.fail(f"DPF_REQUIRE_REAL=1 but the gRPC DMS stack cannot be imported: {missing}", pytrace=False)
    pytest.skip(f"grpc/protobuf not installed: {missing}", allow_module_level=True)

from dpf_core.ports.ops import DmsTarget, GnmiSetMode, OpError, OsActivate, OsInstall, RebootStatusOp

pytestmark = pytest.mark.real

# --- upstream, as field specs: "name=number:type", "*" prefix = repeated, "|oneof" suffix --------------------
# A type is a scalar name, a message full name (starting with "."), "enum:<full name>" or "map:<entry name>".
MsgSpec = dict[str, Any]

UPSTREAM: dict[str, tuple[str, dict[str, MsgSpec], dict[str, dict[str, int]]]] = {
    # file: (package, messages {name: {"fields": [...], "enums": {...}, "nested": {...}}}, top-level enums)
    "up/any.proto": ("google.protobuf", {"Any": {"fields": ["type_url=1:string", "value=2:bytes"]}}, {}),
    "up/gnmi_ext.proto": ("gnmi_ext", {"Extension": {"fields": []}}, {}),
    "up/bootconfig.proto": ("gnoi.bootconfig", {"SetBootConfigRequest": {"fields": []}}, {}),
    "up/types.proto": ("gnoi.types", {
        "Path": {"fields": ["origin=2:string", "*elem=3:.gnoi.types.PathElem"]},
        "PathElem": {"fields": ["name=1:string", "*key=2:map:KeyEntry"],
                     "nested": {"KeyEntry": {"map": True, "fields": ["key=1:string", "value=2:string"]}}},
    }, {}),
    "up/os.proto": ("gnoi.os", {
        "InstallRequest": {"fields": ["transfer_request=1:.gnoi.os.TransferRequest|request",
                                      "transfer_content=2:bytes|request", "transfer_end=3:.gnoi.os.TransferEnd|request"]},
        "TransferRequest": {"fields": ["version=1:string", "standby_supervisor=2:bool", "package_size=3:uint64"]},
        "TransferEnd": {"fields": []},
        "InstallResponse": {"fields": ["transfer_ready=1:.gnoi.os.TransferReady|response",
                                       "transfer_progress=2:.gnoi.os.TransferProgress|response",
                                       "sync_progress=3:.gnoi.os.SyncProgress|response",
                                       "validated=4:.gnoi.os.Validated|response",
                                       "install_error=5:.gnoi.os.InstallError|response"]},
        "TransferReady": {"fields": []},
        "TransferProgress": {"fields": ["bytes_received=1:uint64"]},
        "SyncProgress": {"fields": ["percentage_transferred=1:uint32"]},
        "Validated": {"fields": ["version=1:string", "description=2:string"]},
        "InstallError": {"fields": ["type=1:enum:.gnoi.os.InstallError.Type", "detail=2:string"],
                         "enums": {"Type": {"UNSPECIFIED": 0, "INCOMPATIBLE": 1, "TOO_LARGE": 2, "PARSE_FAIL": 3,
                                            "INTEGRITY_FAIL": 4, "INSTALL_RUN_PACKAGE": 5, "INSTALL_IN_PROGRESS": 6,
                                            "UNEXPECTED_SWITCHOVER": 7, "SYNC_FAIL": 8,
                                            "NOT_SUPPORTED_ON_BACKUP": 9}}},
        "ActivateRequest": {"fields": ["version=1:string", "standby_supervisor=2:bool", "no_reboot=3:bool",
                                       "boot_config=4:.gnoi.bootconfig.SetBootConfigRequest"]},
        "ActivateResponse": {"fields": ["activate_ok=1:.gnoi.os.ActivateOK|response",
                                        "activate_error=2:.gnoi.os.ActivateError|response"]},
        "ActivateOK": {"fields": []},
        "ActivateError": {"fields": ["type=1:enum:.gnoi.os.ActivateError.Type", "detail=2:string"],
                          "enums": {"Type": {"UNSPECIFIED": 0, "NON_EXISTENT_VERSION": 1,
                                             "NOT_SUPPORTED_ON_BACKUP": 2}}},
        "VerifyRequest": {"fields": []},
        "VerifyResponse": {"fields": ["version=1:string", "activation_fail_message=2:string",
                                      "verify_standby=3:.gnoi.os.VerifyStandby",
                                      "individual_supervisor_install=4:bool"]},
        "VerifyStandby": {"fields": ["standby_state=1:.gnoi.os.StandbyState|state",
                                     "verify_response=2:.gnoi.os.StandbyResponse|state"]},
        "StandbyState": {"fields": ["state=1:enum:.gnoi.os.StandbyState.State"],
                         "enums": {"State": {"UNSPECIFIED": 0, "UNSUPPORTED": 1, "NON_EXISTENT": 2,
                                             "UNAVAILABLE": 3}}},
        "StandbyResponse": {"fields": ["id=1:string", "version=2:string", "activation_fail_message=3:string"]},
    }, {}),
    "up/system.proto": ("gnoi.system", {
        "RebootRequest": {"fields": ["method=1:enum:.gnoi.system.RebootMethod", "delay=2:uint64", "message=3:string",
                                     "*subcomponents=4:.gnoi.types.Path", "force=5:bool"]},
        "RebootResponse": {"fields": []},
        "RebootStatusRequest": {"fields": ["*subcomponents=1:.gnoi.types.Path"]},
        "RebootStatusResponse": {"fields": ["active=1:bool", "wait=2:uint64", "when=3:uint64", "reason=4:string",
                                            "count=5:uint32", "method=6:enum:.gnoi.system.RebootMethod",
                                            "status=7:.gnoi.system.RebootStatus"]},
        "RebootStatus": {"fields": ["status=1:enum:.gnoi.system.RebootStatus.Status", "message=2:string"],
                         "enums": {"Status": {"STATUS_UNKNOWN": 0, "STATUS_SUCCESS": 1, "STATUS_RETRIABLE_FAILURE": 2,
                                              "STATUS_FAILURE": 3}}},
    }, {"RebootMethod": {"UNKNOWN": 0, "COLD": 1, "POWERDOWN": 2, "HALT": 3, "WARM": 4, "NSF": 5, "POWERUP": 7}}),
    "up/gnmi.proto": ("gnmi", {
        "Path": {"fields": ["*element=1:string", "origin=2:string", "*elem=3:.gnmi.PathElem", "target=4:string"]},
        "PathElem": {"fields": ["name=1:string", "*key=2:map:KeyEntry"],
                     "nested": {"KeyEntry": {"map": True, "fields": ["key=1:string", "value=2:string"]}}},
        "Value": {"fields": ["value=1:bytes", "type=2:enum:.gnmi.Encoding"]},
        "Decimal64": {"fields": ["digits=1:int64", "precision=2:uint32"]},
        "ScalarArray": {"fields": ["*element=1:.gnmi.TypedValue"]},
        "TypedValue": {"fields": ["string_val=1:string|value", "int_val=2:int64|value", "uint_val=3:uint64|value",
                                  "bool_val=4:bool|value", "bytes_val=5:bytes|value", "float_val=6:float|value",
                                  "double_val=14:double|value", "decimal_val=7:.gnmi.Decimal64|value",
                                  "leaflist_val=8:.gnmi.ScalarArray|value", "any_val=9:.google.protobuf.Any|value",
                                  "json_val=10:bytes|value", "json_ietf_val=11:bytes|value",
                                  "ascii_val=12:string|value", "proto_bytes=13:bytes|value"]},
        "Update": {"fields": ["path=1:.gnmi.Path", "value=2:.gnmi.Value", "val=3:.gnmi.TypedValue",
                              "duplicates=4:uint32"]},
        "Error": {"fields": ["code=1:uint32", "message=2:string", "data=3:.google.protobuf.Any"]},
        "SetRequest": {"fields": ["prefix=1:.gnmi.Path", "*delete=2:.gnmi.Path", "*replace=3:.gnmi.Update",
                                  "*update=4:.gnmi.Update", "*union_replace=6:.gnmi.Update",
                                  "*extension=5:.gnmi_ext.Extension"]},
        "SetResponse": {"fields": ["prefix=1:.gnmi.Path", "*response=2:.gnmi.UpdateResult", "message=3:.gnmi.Error",
                                   "timestamp=4:int64", "*extension=5:.gnmi_ext.Extension"]},
        "UpdateResult": {"fields": ["timestamp=1:int64", "path=2:.gnmi.Path", "message=3:.gnmi.Error",
                                    "op=4:enum:.gnmi.UpdateResult.Operation"],
                         "enums": {"Operation": {"INVALID": 0, "DELETE": 1, "REPLACE": 2, "UPDATE": 3,
                                                 "UNION_REPLACE": 4}}},
    }, {"Encoding": {"JSON": 0, "BYTES": 1, "PROTO": 2, "ASCII": 3, "JSON_IETF": 4}}),
}
# Service paths and streaming shapes: (request, response, client streams, server streams).
UPSTREAM_METHODS = {
    "/gnmi.gNMI/Set": ("gnmi.SetRequest", "gnmi.SetResponse", False, False),
    "/gnoi.os.OS/Install": ("gnoi.os.InstallRequest", "gnoi.os.InstallResponse", True, True),
    "/gnoi.os.OS/Activate": ("gnoi.os.ActivateRequest", "gnoi.os.ActivateResponse", False, False),
    "/gnoi.os.OS/Verify": ("gnoi.os.VerifyRequest", "gnoi.os.VerifyResponse", False, False),
    "/gnoi.system.System/Reboot": ("gnoi.system.RebootRequest", "gnoi.system.RebootResponse", False, False),
    "/gnoi.system.System/RebootStatus": ("gnoi.system.RebootStatusRequest", "gnoi.system.RebootStatusResponse",
                                         False, False),
}
UPSTREAM_CHUNK = 64 * 1024  # gnoigo's transferContent buffer

F = descriptor_pb2.FieldDescriptorProto
SCALARS = {"string": F.TYPE_STRING, "bytes": F.TYPE_BYTES, "bool": F.TYPE_BOOL, "int64": F.TYPE_INT64,
           "uint64": F.TYPE_UINT64, "uint32": F.TYPE_UINT32, "double": F.TYPE_DOUBLE, "float": F.TYPE_FLOAT}


def _message(name: str, spec: MsgSpec, scope: str) -> descriptor_pb2.DescriptorProto:
    m = descriptor_pb2.DescriptorProto(name=name)
    if spec.get("map"):
        m.options.map_entry = True
    for nested_name, nested in spec.get("nested", {}).items():
        m.nested_type.append(_message(nested_name, nested, f"{scope}.{name}"))
    for enum_name, values in spec.get("enums", {}).items():
        m.enum_type.append(_enum(enum_name, values))
    oneofs: list[str] = []
    for text in spec["fields"]:
        repeated = text.startswith("*")
        head, _, oneof = text.lstrip("*").partition("|")
        fname, _, rest = head.partition("=")
        number, _, ftype = rest.partition(":")
        f = m.field.add(name=fname, number=int(number), json_name=_json_name(fname),
                        label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
        if ftype in SCALARS:
            f.type = SCALARS[ftype]
        elif ftype.startswith("enum:"):
            f.type, f.type_name = F.TYPE_ENUM, ftype[5:]
        elif ftype.startswith("map:"):
            f.type, f.type_name = F.TYPE_MESSAGE, f"{scope}.{name}.{ftype[4:]}"
        else:
            f.type, f.type_name = F.TYPE_MESSAGE, ftype
        if oneof:
            if oneof not in oneofs:
                oneofs.append(oneof)
                m.oneof_decl.add(name=oneof)
            f.oneof_index = oneofs.index(oneof)
    return m


def _json_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def _enum(name: str, values: dict[str, int]) -> descriptor_pb2.EnumDescriptorProto:
    e = descriptor_pb2.EnumDescriptorProto(name=name)
    for vname, number in values.items():
        e.value.add(name=vname, number=number)
    return e


def _upstream_pool() -> Any:
    pool = descriptor_pool.DescriptorPool()
    for file_name, (package, messages, enums) in UPSTREAM.items():
        fd = descriptor_pb2.FileDescriptorProto(name=file_name, package=package, syntax="proto3")
        # Each file may use any file listed before it (the dict is in dependency order).
        fd.dependency.extend(list(UPSTREAM)[:list(UPSTREAM).index(file_name)])
        for enum_name, values in enums.items():
            fd.enum_type.append(_enum(enum_name, values))
        for name, spec in messages.items():
            fd.message_type.append(_message(name, spec, f".{package}"))
        pool.Add(fd)
    return pool


POOL = _upstream_pool()


def up(full_name: str) -> Any:
    """The upstream message class of `full_name`."""
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(full_name))


# --- 1. our descriptors, field by field, against upstream ---------------------------------------------------
OUR_MODULES = (gnmi_pb2, os_pb2, system_pb2, types_pb2)


def _all_messages(container: Any) -> Iterator[Any]:
    for m in container.message_types_by_name.values() if hasattr(container, "message_types_by_name") \
            else container.nested_types:
        if not m.GetOptions().map_entry:
            yield m
        yield from _all_messages(m) if m.nested_types else ()


def test_every_field_we_define_has_upstreams_number_type_label_and_oneof() -> None:
    checked = 0
    mismatches: list[str] = []
    for module in OUR_MODULES:
        for ours in _all_messages(module.DESCRIPTOR):
            theirs = POOL.FindMessageTypeByName(ours.full_name)
            for f in ours.fields:
                u = theirs.fields_by_name.get(f.name)
                if u is None:
                    mismatches.append(f"{ours.full_name}.{f.name}: not upstream")
                    continue
                mine = (f.number, f.type, f.is_repeated, f.containing_oneof and f.containing_oneof.name,
                        (f.message_type or f.enum_type) and (f.message_type or f.enum_type).full_name)
                upstream = (u.number, u.type, u.is_repeated, u.containing_oneof and u.containing_oneof.name,
                            (u.message_type or u.enum_type) and (u.message_type or u.enum_type).full_name)
                if mine != upstream:
                    mismatches.append(f"{ours.full_name}.{f.name}: ours {mine}, upstream {upstream}")
                checked += 1
            # A number we left out must not be reused by another of our fields.
            ours_by_number = {f.number: f.name for f in ours.fields}
            for u in theirs.fields:
                if u.number in ours_by_number and ours_by_number[u.number] != u.name:
                    mismatches.append(f"{ours.full_name}: number {u.number} is {ours_by_number[u.number]} here, "
                                      f"{u.name} upstream")
    assert not mismatches, "\n".join(mismatches)
    assert checked >= 80  # every message of all four files was visited


def test_every_enum_value_we_define_is_upstreams() -> None:
    def enums(d: Any) -> Iterator[Any]:
        yield from d.enum_types_by_name.values()
        for m in _all_messages(d):
            yield from m.enum_types

    seen = 0
    for module in OUR_MODULES:
        for e in enums(module.DESCRIPTOR):
            theirs = POOL.FindEnumTypeByName(e.full_name)
            assert {v.name: v.number for v in e.values} == {v.name: v.number for v in theirs.values}, e.full_name
            seen += 1
    assert seen == 6  # InstallError.Type, ActivateError.Type, StandbyState.State, RebootMethod, Status, Operation


def test_our_services_are_upstreams_paths_messages_and_streaming_shapes() -> None:
    ours: dict[str, tuple[str, str, bool, bool]] = {}
    for module in OUR_MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                ours[f"/{service.full_name}/{m.name}"] = (m.input_type.full_name, m.output_type.full_name,
                                                          m.client_streaming, m.server_streaming)
    assert ours == UPSTREAM_METHODS


def test_dpfs_mode_set_bytes_decode_the_same_both_ways() -> None:
    """Bytes of our SetRequest read by an upstream decoder, and upstream bytes read by ours."""
    from dpf_hw.dms import mode_update

    decoded = up("gnmi.SetRequest").FromString(mode_update("DPU").SerializeToString())
    assert [e.name for e in decoded.update[0].path.elem] == ["nvidia", "mode", "config", "mode"]
    assert decoded.update[0].val.WhichOneof("value") == "string_val" and decoded.update[0].val.string_val == "DPU"
    assert not decoded.replace and not decoded.delete and not decoded.HasField("prefix")

    theirs = up("gnmi.SetRequest")()
    u = theirs.update.add()
    u.path.origin, u.path.target = "openconfig", "dpu"
    u.path.elem.add(name="nvidia").key["k"] = "v"
    u.val.json_ietf_val = b'"DPU"'
    u.duplicates = 3
    mine = gnmi_pb2.SetRequest.FromString(theirs.SerializeToString())
    assert (mine.update[0].path.origin, mine.update[0].path.target, dict(mine.update[0].path.elem[0].key),
            mine.update[0].val.json_ietf_val, mine.update[0].duplicates) == ("openconfig", "dpu", {"k": "v"},
                                                                              b'"DPU"', 3)


# --- mTLS plumbing ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki() -> DmsPki:
    return issue_dms_pki("127.0.0.1")


def client_tls(pki: DmsPki) -> DmsTls:
    return DmsTls(root_ca=pki.ca_cert, client_key=pki.client_key, client_cert=pki.client_cert)


def upstream_channel(pki: DmsPki, address: str) -> Any:
    creds = grpc.ssl_channel_credentials(root_certificates=pki.ca_cert, private_key=pki.client_key,
                                         certificate_chain=pki.client_cert)
    return grpc.secure_channel(address, creds)


def unary(channel: Any, method: str, request: Any, metadata: Any = None) -> Any:
    response_type = up(UPSTREAM_METHODS[method][1])
    call = channel.unary_unary(method, request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=response_type.FromString)
    return call(request, timeout=10, metadata=metadata)


# --- 2. an upstream client against the twin's DMS server -----------------------------------------------------
BFB = "bf-bundle-2.9.1-40_24.11_ubuntu-22.04_prod.bfb"
BFB_BYTES = bytes(range(251)) * 1100  # ~270 KB: five 64 KiB chunks and a tail
NAMESPACE = "dpf-operator-system"


class Twin:
    def __init__(self, pki: DmsPki, hosts: int) -> None:
        import simpy

        from dpf_sim.fleet import FleetSpec, build_fleet
        from dpf_sim.models.bfbserver import BfbDirectory
        from dpf_sim.models.bluefield import BlueFieldParams, BlueFields
        from dpf_sim.net import Network
        from dpf_sim.rng import Streams

        params = BlueFieldParams(dms_latency=0.05, gnmi_set_latency=1.0, rshim_rate="20MiB/s", flash_rate="4MiB/s",
                                 boot_time="30s", cloud_init_time="10s", join_time="5s", initial_mode="NIC")
        self.env = simpy.Environment()
        fleet = build_fleet(FleetSpec(racks=1, hosts_per_rack=hosts))
        self.bfs = BlueFields(self.env, Network(self.env, fleet), BfbDirectory(), params, Streams(0))
        self.names = sorted(self.bfs.dpus)
        self.addresses = {}
        for i, name in enumerate(self.names):
            self.addresses[name] = f"10.0.110.{10 + i}:9339"
            self.bfs.mark_dms_running(name, self.addresses[name])
        self.server = DmsGrpcServer(self.bfs, pki.server_tls(), speed=300.0).start()

    def read(self, fn: Any) -> Any:
        with self.server.pacer.lock:
            return fn()


@pytest.fixture
def twin(pki: DmsPki) -> Iterator[Twin]:
    t = Twin(pki, hosts=2)
    yield t
    t.server.stop()


def gnoigo_install(channel: Any, version: str, data: bytes, metadata: Any) -> tuple[Any, list[str]]:
    """gnoigo's InstallOperation.Execute: TransferRequest, await, 64 KiB chunks + TransferEnd, await Validated."""
    InstallRequest = up("gnoi.os.InstallRequest")
    ready = threading.Event()
    done = threading.Event()

    def requests() -> Iterator[Any]:
        yield InstallRequest(transfer_request=up("gnoi.os.TransferRequest")(version=version))
        ready.wait(10)
        if done.is_set():
            return
        for i in range(0, len(data), UPSTREAM_CHUNK):
            yield InstallRequest(transfer_content=data[i:i + UPSTREAM_CHUNK])
        yield InstallRequest(transfer_end=up("gnoi.os.TransferEnd")())

    stream = channel.stream_stream("/gnoi.os.OS/Install", request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=up("gnoi.os.InstallResponse").FromString)
    kinds: list[str] = []
    try:
        for response in stream(requests(), timeout=20, metadata=metadata):
            kind = response.WhichOneof("response")
            kinds.append(kind)
            if kind == "transfer_ready":
                ready.set()
            elif kind in ("validated", "install_error"):
                return response, kinds
    finally:
        done.set()
        ready.set()
    raise AssertionError(f"stream ended without Validated: {kinds}")


def test_upstream_client_runs_dpfs_install_sequence_against_the_twin(twin: Twin, pki: DmsPki) -> None:
    name = twin.names[0]
    md = (("dpf-dpu", f"{NAMESPACE}/{name}"), ("dpf-dms-target", twin.addresses[name]))
    bf = twin.bfs.get(name)
    with upstream_channel(pki, twin.server.address) as channel:
        set_request = up("gnmi.SetRequest")()
        update = set_request.update.add()
        for elem in ("nvidia", "mode", "config", "mode"):
            update.path.elem.add(name=elem)
        update.val.string_val = "DPU"
        set_response = unary(channel, "/gnmi.gNMI/Set", set_request, md)
        assert [r.op for r in set_response.response] == [3]  # UpdateResult.UPDATE
        assert [e.name for e in set_response.response[0].path.elem] == ["nvidia", "mode", "config", "mode"]
        assert set_response.timestamp > 1_700_000_000 * 10**9  # nanoseconds since the epoch
        assert twin.read(lambda: bf.mode) == "DPU"

        response, kinds = gnoigo_install(channel, BFB, BFB_BYTES, md)
        assert kinds[0] == "transfer_ready" and kinds[-1] == "validated"
        assert response.validated.version == BFB  # gnoigo fails the install otherwise
        cfg_version = f"{name}.cfg"
        response, _ = gnoigo_install(channel, cfg_version, b"# bf.cfg\n", md)
        assert response.validated.version == cfg_version
        assert twin.read(lambda: (bf.staged[BFB].size, bf.staged[cfg_version].content)) == (len(BFB_BYTES),
                                                                                           b"# bf.cfg\n")

        activate = unary(channel, "/gnoi.os.OS/Activate",
                         up("gnoi.os.ActivateRequest")(version=f"{BFB};{cfg_version}", no_reboot=False), md)
        assert activate.WhichOneof("response") == "activate_ok"

        status_request = up("gnoi.system.RebootStatusRequest")()
        status_request.subcomponents.add().elem.add(name="CPU")
        give_up = time.monotonic() + 10
        while True:
            status = unary(channel, "/gnoi.system.System/RebootStatus", status_request, md)
            if not status.active:
                break
            assert time.monotonic() < give_up, "still rebooting"
            time.sleep(0.02)
        assert status.status.status == 1  # RebootStatus.STATUS_SUCCESS

        verify = unary(channel, "/gnoi.os.OS/Verify", up("gnoi.os.VerifyRequest")(), md)
        assert verify.version.split(";")[0] == BFB and verify.activation_fail_message == ""
        assert verify.verify_standby.standby_state.state == 1  # UNSUPPORTED: a BlueField has no standby


def test_upstream_activate_with_a_boot_config_is_still_understood(twin: Twin, pki: DmsPki) -> None:
    """A field we left out (ActivateRequest.boot_config, 4) arrives as an unknown field and is ignored."""
    name = twin.names[1]
    md = (("dpf-dpu", f"{NAMESPACE}/{name}"), ("dpf-dms-target", twin.addresses[name]))
    request = up("gnoi.os.ActivateRequest")(version="never-installed.bfb;x.cfg")
    request.boot_config.SetInParent()
    with upstream_channel(pki, twin.server.address) as channel:
        response = unary(channel, "/gnoi.os.OS/Activate", request, md)
    assert response.WhichOneof("response") == "activate_error"
    assert response.activate_error.type == 1  # NON_EXISTENT_VERSION


def _dpu_mode_set() -> Any:
    """DPF's mode set (gNMI Set of nvidia/mode/config/mode = "DPU"), built from the upstream descriptions."""
    request = up("gnmi.SetRequest")()
    update = request.update.add()
    for elem in ("nvidia", "mode", "config", "mode"):
        update.path.elem.add(name=elem)
    update.val.string_val = "DPU"
    return request


def test_upstream_client_without_routing_metadata_reaches_a_single_dpu_twin(pki: DmsPki) -> None:
    """A real DMS serves one DPU and knows no dpf-dpu metadata; an upstream client sends none."""
    t = Twin(pki, hosts=1)
    try:
        request = _dpu_mode_set()
        with upstream_channel(pki, t.server.address) as channel:
            unary(channel, "/gnmi.gNMI/Set", request)
        assert t.read(lambda: t.bfs.get(t.names[0]).mode) == "DPU"
    finally:
        t.server.stop()



def test_without_routing_metadata_a_twin_serving_several_dpus_refuses_to_guess(pki: DmsPki) -> None:
    t = Twin(pki, hosts=2)
    try:
        request = _dpu_mode_set()
        with upstream_channel(pki, t.server.address) as channel, pytest.raises(grpc.RpcError) as err:
            unary(channel, "/gnmi.gNMI/Set", request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "2 DMS are serving" in str(err.value.details())
        assert all(t.read(lambda n=n: t.bfs.get(n).mode) != "DPU" for n in t.names)
    finally:
        t.server.stop()

# --- 3. our client against an upstream-built DMS ----------------------------------------------------------------
class FakeDms:
    """A DMS built from the upstream descriptions: records what arrives, answers what a test scripts."""

    def __init__(self, pki: DmsPki) -> None:
        self.requests: dict[str, list[Any]] = {}
        self.install_script: Any = None
        self.reboot_status: Any = None
        self.activate: Any = None
        handlers: dict[str, dict[str, Any]] = {}
        for path, (req, _resp, client_streams, _server_streams) in UPSTREAM_METHODS.items():
            service, method = path[1:].split("/")
            handler = self._stream if client_streams else self._unary(path)
            make = grpc.stream_stream_rpc_method_handler if client_streams else grpc.unary_unary_rpc_method_handler
            handlers.setdefault(service, {})[method] = make(handler, request_deserializer=up(req).FromString,
                                                            response_serializer=lambda m: m.SerializeToString())
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        for service, methods in handlers.items():
            self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, methods),))
        creds = grpc.ssl_server_credentials([(pki.server_key, pki.server_cert)], root_certificates=pki.ca_cert,
                                            require_client_auth=True)
        self.port = self.server.add_secure_port("127.0.0.1:0", creds)
        self.server.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _unary(self, path: str) -> Any:
        def handle(request: Any, _context: Any) -> Any:
            self.requests.setdefault(path, []).append(request)
            if path.endswith("/Set"):
                return up("gnmi.SetResponse")(timestamp=time.time_ns())
            if path.endswith("/Activate"):
                return self.activate or up("gnoi.os.ActivateResponse")(activate_ok=up("gnoi.os.ActivateOK")())
            if path.endswith("/RebootStatus"):
                return self.reboot_status
            return up(UPSTREAM_METHODS[path][1])()
        return handle

    def _stream(self, request_iterator: Iterator[Any], _context: Any) -> Iterator[Any]:
        log = self.requests.setdefault("/gnoi.os.OS/Install", [])
        first = next(request_iterator)
        log.append(first)
        yield from self.install_script(first, request_iterator, log)


R = "gnoi.os.InstallResponse"


def accept(validated_version: str | None = None) -> Any:
    """TransferReady, read to TransferEnd, TransferProgress + SyncProgress (gnoigo logs both), Validated."""
    def script(first: Any, rest: Iterator[Any], log: list[Any]) -> Iterator[Any]:
        yield up(R)(transfer_ready=up("gnoi.os.TransferReady")())
        received = 0
        for request in rest:
            log.append(request)
            if request.WhichOneof("request") == "transfer_end":
                break
            received += len(request.transfer_content)
        yield up(R)(transfer_progress=up("gnoi.os.TransferProgress")(bytes_received=received))
        yield up(R)(sync_progress=up("gnoi.os.SyncProgress")(percentage_transferred=100))
        version = first.transfer_request.version if validated_version is None else validated_version
        yield up(R)(validated=up("gnoi.os.Validated")(version=version, description="staged"))
    return script


@pytest.fixture
def fake(pki: DmsPki) -> Iterator[FakeDms]:
    f = FakeDms(pki)
    yield f
    f.server.stop(None).wait()


@pytest.fixture
def our_client(fake: FakeDms, pki: DmsPki, tmp_path: Path) -> Iterator[DmsClient]:
    (tmp_path / BFB).write_bytes(BFB_BYTES)
    with DmsClient(client_tls(pki), tmp_path, dial=lambda _t: fake.address) as c:
        yield c


TARGET = DmsTarget(dpu=f"{NAMESPACE}/worker-1-0000-04-00", address="10.0.110.10:9339", pci_address="0000:04:00")


def test_our_mode_set_arrives_as_dpfs_set_request(fake: FakeDms, our_client: DmsClient) -> None:
    our_client.set_mode(GnmiSetMode(TARGET, mode="DPU"))
    (request,) = fake.requests["/gnmi.gNMI/Set"]
    assert [[e.name for e in u.path.elem] for u in request.update] == [["nvidia", "mode", "config", "mode"]]
    assert request.update[0].val.string_val == "DPU" and not request.update[0].HasField("value")
    assert not request.replace and not request.delete and not request.union_replace


def test_our_install_stream_is_gnoigos_sequence(fake: FakeDms, our_client: DmsClient) -> None:
    fake.install_script = accept()
    assert our_client.os_install(OsInstall(TARGET, version=BFB, file_name=BFB)) == BFB
    log = fake.requests["/gnoi.os.OS/Install"]
    kinds = [r.WhichOneof("request") for r in log]
    assert kinds[0] == "transfer_request" and kinds[-1] == "transfer_end"
    assert set(kinds[1:-1]) == {"transfer_content"}
    assert log[0].transfer_request.version == BFB and not log[0].transfer_request.standby_supervisor
    assert b"".join(r.transfer_content for r in log[1:-1]) == BFB_BYTES


def test_validated_at_once_sends_no_content(fake: FakeDms, our_client: DmsClient) -> None:
    """gnoigo's awaitPackageInstall: a Validated answer to the TransferRequest means the target has it."""
    def script(first: Any, _rest: Iterator[Any], _log: list[Any]) -> Iterator[Any]:
        yield up(R)(validated=up("gnoi.os.Validated")(version=first.transfer_request.version))
    fake.install_script = script
    assert our_client.os_install(OsInstall(TARGET, version=BFB, file_name=BFB)) == BFB
    assert [r.WhichOneof("request") for r in fake.requests["/gnoi.os.OS/Install"]] == ["transfer_request"]


def test_validated_of_another_version_after_the_transfer_fails_the_install(fake: FakeDms,
                                                                          our_client: DmsClient) -> None:
    """gnoigo (os.go, InstallOperation.Execute): `installed version %q does not match requested version %q`."""
    fake.install_script = accept(validated_version="bf-bundle-2.7.0.bfb")
    with pytest.raises(OpError) as e:
        our_client.os_install(OsInstall(TARGET, version=BFB, file_name=BFB))
    assert e.value.reason == "InstallError"
    assert f'installed version "bf-bundle-2.7.0.bfb" does not match requested version "{BFB}"' in str(e.value)


def test_install_error_before_transfer_ready_names_the_upstream_type(fake: FakeDms, our_client: DmsClient) -> None:
    def script(_first: Any, _rest: Iterator[Any], _log: list[Any]) -> Iterator[Any]:
        yield up(R)(install_error=up("gnoi.os.InstallError")(type=6, detail="another install runs"))
    fake.install_script = script
    with pytest.raises(OpError) as e:
        our_client.os_install(OsInstall(TARGET, version="x.cfg", content=b"cfg"))
    assert e.value.reason == "InstallError" and "INSTALL_IN_PROGRESS: another install runs" in str(e.value)
    assert len(fake.requests["/gnoi.os.OS/Install"]) == 1  # no content after an error


def test_our_activate_and_reboot_status_requests_are_dpfs(fake: FakeDms, our_client: DmsClient) -> None:
    our_client.os_activate(OsActivate(TARGET, version=f"{BFB};dpu.cfg"))
    (activate,) = fake.requests["/gnoi.os.OS/Activate"]
    assert (activate.version, activate.no_reboot, activate.standby_supervisor) == (f"{BFB};dpu.cfg", False, False)

    fake.reboot_status = up("gnoi.system.RebootStatusResponse")(active=True, wait=5 * 10**9, count=1, method=1)
    assert our_client.reboot_status(RebootStatusOp(TARGET)).active
    (status_request, ) = fake.requests["/gnoi.system.System/RebootStatus"]
    assert [[e.name for e in p.elem] for p in status_request.subcomponents] == [["CPU"]]


@pytest.mark.parametrize("status, name", [(2, "STATUS_RETRIABLE_FAILURE"), (3, "STATUS_FAILURE")])
def test_reboot_failure_is_reported_with_the_responses_reason(fake: FakeDms, our_client: DmsClient, status: int,
                                                             name: str) -> None:
    """DPF words both failures with `response.Reason` (installing.go: "retriable failure: %s", "reboot
    failure: %s"), not with RebootStatus.message."""
    fake.reboot_status = up("gnoi.system.RebootStatusResponse")(
        active=False, reason="flash verify failed on mmcblk0",
        status=up("gnoi.system.RebootStatus")(status=status, message="bfb-install exited 1"))
    result = our_client.reboot_status(RebootStatusOp(TARGET))
    assert (result.active, result.status, result.message) == (False, name, "flash verify failed on mmcblk0")


def test_activate_error_from_an_upstream_dms_is_an_op_error(fake: FakeDms, our_client: DmsClient) -> None:
    fake.activate = up("gnoi.os.ActivateResponse")(
        activate_error=up("gnoi.os.ActivateError")(type=1, detail="no such image"))
    with pytest.raises(OpError) as e:
        our_client.os_activate(OsActivate(TARGET, version="missing.bfb;x.cfg"))
    assert e.value.reason == "NonExistentVersion" and "NON_EXISTENT_VERSION: no such image" in str(e.value)
