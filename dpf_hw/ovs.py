"""The `Ovs` port over a real Open vSwitch: OVSDB through ovsdbapp, OpenFlow through `ovs-ofctl`.

OVSDB (bridges, ports, interfaces, external_ids) goes over the unix socket (DPF: `unix:/var/run/openvswitch/db.sock`)
with the semantics of DPF's ovsutils client: an existing Port row is left as it is (no re-create, no type
change), and external_ids / options are written as an OVSDB map *insert*, so keys already present keep their
values. Deleting a port removes its Interface and Port rows and the bridge's reference, and a missing port
is not an error.

OpenFlow goes through `ovs-ofctl -O OpenFlow13 -t 5` against the bridge's management socket
`<rundir>/<bridge>.mgmt`, as the sfc-controller does: `--bundle add-flows` from a file (atomic: the switch
applies all of the file or none of it), `del-flows cookie=C/-1` (exact cookie), `dump-flows`.

`ports(bridge)` returns one dict per port, the bridge's own local port excluded (as `ovs-vsctl list-ports`
does; a stale-port sweep must never see it): `bridge`, `name`, `type` (the interface type), `ofport` (None
until ovs-vswitchd assigns one, -1 when it failed), `ofport_request`, `port_external_ids`,
`iface_external_ids` (also as `external_ids`, the key dpf_sim.ovs uses), `options`.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from typing import Any

from ovsdbapp.backend.ovs_idl import connection
from ovsdbapp.schema.open_vswitch import impl_idl

from dpf_core.ports.ops import OpError

DEFAULT_DB = "unix:/var/run/openvswitch/db.sock"
DEFAULT_RUNDIR = "/var/run/openvswitch"
OFCTL_TIMEOUT = 5  # `ovs-ofctl -t 5`, as DPF
OPENFLOW = "OpenFlow13"
SCHEMA = "Open_vSwitch"
MAX_COOKIE = (1 << 64) - 1


class OvsError(OpError):
    """An OVSDB transaction or an ovs-ofctl run failed; the message carries OVS's own words."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "OvsError")


def _optional_int(value: Any) -> int | None:
    # The IDL renders an empty optional column as [] and a set one as its value (or a one-item list).
    if isinstance(value, list):
        value = value[0] if value else None
    return int(value) if isinstance(value, int) else None


class OvsdbOvs:
    """dpf_core.ports.Ovs for one Open vSwitch. `db` is the OVSDB remote, `rundir` the directory holding
    ovs-vswitchd's `<bridge>.mgmt` sockets. Connects at construction (a wrong socket fails at wiring time)."""

    def __init__(self, db: str = DEFAULT_DB, *, rundir: str = DEFAULT_RUNDIR, ofctl: str = "ovs-ofctl",
                 timeout: float = 10.0, ofctl_timeout: int = OFCTL_TIMEOUT, openflow: str = OPENFLOW) -> None:
        self.db = db
        self.rundir = rundir
        self.ofctl = ofctl
        self.ofctl_timeout = ofctl_timeout
        self.openflow = openflow
        try:
            idl = connection.OvsdbIdl.from_server(db, SCHEMA)
            self._conn = connection.Connection(idl=idl, timeout=timeout)
            # ovsdbapp keeps ONE connection per API class (a class attribute): a class of our own per adapter,
            # or a second adapter in this process (another switch, a reconnect) would talk to the first one's.
            api_class = type("OvsdbIdl", (impl_idl.OvsdbIdl,), {"_ovsdb_connection": None})
            self.api = api_class(self._conn)
        except Exception as e:
            raise OvsError(f"connect to OVSDB {db}: {e}") from e
        self._closed = False
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._conn.stop()

    def __enter__(self) -> OvsdbOvs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- OVSDB ------------------------------------------------------------------------------------------
    def _execute(self, what: str, *commands: Any) -> list[Any]:
        try:
            with self.api.transaction(check_error=True) as txn:
                for cmd in commands:
                    txn.add(cmd)
            return [cmd.result for cmd in commands]
        except Exception as e:
            raise OvsError(f"{what}: {e}") from e

    def _read(self, what: str, command: Any) -> Any:
        try:
            return command.execute(check_error=True)
        except Exception as e:
            raise OvsError(f"{what}: {e}") from e

    def ensure_bridge(self, bridge: str, *, datapath_type: str = "netdev", fail_mode: str | None = "secure",
                      external_ids: Mapping[str, str] | None = None, protocols: list[str] | None = None) -> None:
        """Create the bridge when missing (DPF's flavor OVS script does this on the DPU: br-sfc is
        `datapath_type=netdev`, `fail_mode=secure`); an existing bridge gets these settings applied."""
        columns: list[tuple[str, Any]] = [("datapath_type", datapath_type)]
        if fail_mode is not None:
            columns.append(("fail_mode", fail_mode))
        if protocols is not None:
            columns.append(("protocols", protocols))
        commands = [self.api.add_br(bridge, may_exist=True, datapath_type=datapath_type),
                    self.api.db_set("Bridge", bridge, *columns)]
        if external_ids:
            commands.append(self.api.db_add("Bridge", bridge, "external_ids", dict(external_ids)))
        self._execute(f"ensure bridge {bridge}", *commands)

    def delete_bridge(self, bridge: str) -> None:
        self._execute(f"delete bridge {bridge}", self.api.del_br(bridge, if_exists=True))

    def bridge(self, bridge: str) -> dict[str, Any] | None:
        """The bridge row's settings, or None when there is no such bridge."""
        rows = self._read(f"read bridge {bridge}", self.api.db_find(
            "Bridge", ("name", "=", bridge), columns=["name", "datapath_type", "fail_mode", "external_ids", "protocols"]))
        if not rows:
            return None
        row = dict(rows[0])
        fail_mode = row.get("fail_mode")
        row["fail_mode"] = (fail_mode[0] if fail_mode else None) if isinstance(fail_mode, list) else fail_mode
        return row

    def ensure_port(self, bridge: str, port: str, iface_type: str, *, iface_external_ids: Mapping[str, str] | None = None,
                    port_external_ids: Mapping[str, str] | None = None, options: Mapping[str, str] | None = None,
                    ofport_request: int | None = None) -> None:
        create: dict[str, Any] = {"type": iface_type}
        if ofport_request is not None:
            create["ofport_request"] = ofport_request
        # add_port(may_exist) leaves an existing Port row alone; the map inserts then add only missing keys,
        # both in one transaction so a half-made port is never visible.
        commands = [self.api.add_port(bridge, port, may_exist=True, **create)]
        if iface_external_ids:
            commands.append(self.api.db_add("Interface", port, "external_ids", dict(iface_external_ids)))
        if options:
            commands.append(self.api.db_add("Interface", port, "options", dict(options)))
        if port_external_ids:
            commands.append(self.api.db_add("Port", port, "external_ids", dict(port_external_ids)))
        self._execute(f"ensure port {port} on {bridge}", *commands)

    def delete_port(self, bridge: str, port: str) -> None:
        self._execute(f"delete port {port} from {bridge}", self.api.del_port(port, bridge=bridge, if_exists=True))

    def ports(self, bridge: str) -> list[dict[str, Any]]:
        port_ids = self._read(f"list ports of {bridge}", self.api.db_get("Bridge", bridge, "ports"))
        if not isinstance(port_ids, list):  # db_get answers a one-member set with the bare member
            port_ids = [port_ids]
        if not port_ids:
            return []
        # db_list matches records by the table's index column (name), not by uuid: read the tables, then pick.
        wanted = set(port_ids)
        port_rows = [row for row in self._read(f"read ports of {bridge}", self.api.db_list(
            "Port", columns=["_uuid", "name", "external_ids", "interfaces"])) if row["_uuid"] in wanted]
        iface_ids = {i for row in port_rows for i in row["interfaces"]}
        iface_rows = [row for row in self._read(f"read interfaces of {bridge}", self.api.db_list(
            "Interface", columns=["_uuid", "name", "type", "ofport", "ofport_request", "external_ids", "options"]))
            if row["_uuid"] in iface_ids]
        ifaces = {row["_uuid"]: row for row in iface_rows}
        result: list[dict[str, Any]] = []
        for row in port_rows:
            if row["name"] == bridge:
                continue
            # DPF's ports have exactly one interface (bonds are not in its vocabulary): report the first.
            iface = next((ifaces[i] for i in row["interfaces"] if i in ifaces), None)
            iface_eids: dict[str, str] = dict(iface["external_ids"]) if iface else {}
            result.append({
                "bridge": bridge,
                "name": row["name"],
                "type": iface["type"] if iface else "",
                "ofport": _optional_int(iface["ofport"]) if iface else None,
                "ofport_request": _optional_int(iface["ofport_request"]) if iface else None,
                "port_external_ids": dict(row["external_ids"]),
                "iface_external_ids": iface_eids,
                "external_ids": dict(iface_eids),  # the twin model's key for the same map
                "options": dict(iface["options"]) if iface else {},
            })
        result.sort(key=lambda p: p["name"])
        return result

    # --- OpenFlow ---------------------------------------------------------------------------------------
    def _target(self, bridge: str) -> str:
        return f"unix:{os.path.join(self.rundir, bridge)}.mgmt"

    def _ofctl(self, *args: str) -> str:
        cmd = [self.ofctl, "-O", self.openflow, "-t", str(self.ofctl_timeout), *args]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=self.ofctl_timeout + 5, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise OvsError(f"{' '.join(cmd)}: {e}") from e
        if done.returncode != 0:
            detail = (done.stderr.strip() or done.stdout.strip()).replace("\n", "; ")
            raise OvsError(f"ovs-ofctl {' '.join(args)}: {detail}")
        return done.stdout

    def add_flows_bundle(self, bridge: str, flows: list[str]) -> None:
        """One atomic bundle: every flow applies, or (a parse error or a switch-side rejection) none does."""
        if not flows:
            return
        with tempfile.NamedTemporaryFile("w", prefix="of-output-", suffix=".txt") as f:
            f.write("\n".join(flows) + "\n")
            f.flush()
            self._ofctl("--bundle", "add-flows", self._target(bridge), f.name)

    def del_flows_cookie(self, bridge: str, cookie: int) -> None:
        if not 0 <= cookie <= MAX_COOKIE:
            raise ValueError(f"cookie {cookie} is not a 64-bit unsigned value")
        self._ofctl("del-flows", self._target(bridge), f"cookie={cookie:#x}/-1")

    def dump_flows(self, bridge: str, *, no_stats: bool = False) -> list[str]:
        """One line per flow as `ovs-ofctl dump-flows` prints it (the reply header dropped)."""
        args = ["--no-stats"] if no_stats else []
        out = self._ofctl(*args, "dump-flows", self._target(bridge))
        return [line.strip() for line in out.splitlines() if line.strip() and not line.startswith("OFPST_FLOW")]
