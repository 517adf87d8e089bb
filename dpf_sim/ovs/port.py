"""The core's `Ovs` port over the model: what the sfc-controller's OVSDB and `ovs-ofctl` calls do on a DPU."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .datapath import PORTS, Change, Datapath, OvsError


class ModelOvs:
    """Implements dpf_core.ports.Ovs for one DPU's Open vSwitch model."""

    def __init__(self, datapath: Datapath) -> None:
        self.datapath = datapath

    def ensure_port(self, bridge: str, port: str, iface_type: str, *, iface_external_ids: Mapping[str, str] | None = None,
                    port_external_ids: Mapping[str, str] | None = None, options: Mapping[str, str] | None = None,
                    ofport_request: int | None = None) -> None:
        """An existing Port row is not recreated; its maps get an OVSDB `insert` mutation, which adds only
        the keys that are not there yet (existing values win), as the sfc-controller writes them."""
        br = self.datapath.bridge(bridge)
        existing = self.datapath.find_port(port)
        if existing is None:
            br.add_port(port, iface_type, ofport_request=ofport_request, external_ids=port_external_ids,
                        iface_external_ids=iface_external_ids, options=options)
            return
        br_of, row = existing
        added = False
        for target, extra in ((row.interface.external_ids, iface_external_ids), (row.external_ids, port_external_ids),
                              (row.interface.options, options)):
            for k, v in (extra or {}).items():
                if k not in target:
                    target[k] = v
                    added = True
        if added:
            self.datapath.changed(Change(br_of.name, PORTS, frozenset((row.interface.external_ids.get("dpf-id", ""),))))

    def delete_port(self, bridge: str, port: str) -> None:
        """Tolerant of absence: deleting a port that is not there succeeds."""
        if bridge not in self.datapath.bridges:
            return
        self.datapath.bridges[bridge].del_port(port)

    def ports(self, bridge: str) -> list[dict[str, Any]]:
        return self.datapath.ports(bridge)

    def add_flows_bundle(self, bridge: str, flows: list[str]) -> None:
        """`ovs-ofctl --bundle add-flows`: all lines or none; the error names the offending line. The caller
        restores its own flows with it: what it replaces is no change to tell listeners about (Datapath.mute)."""
        with self.datapath.mute():
            self.datapath.add_flows(bridge, flows)

    def del_flows_cookie(self, bridge: str, cookie: int) -> None:
        """`del-flows cookie=C/-1` in every table, learned flows carrying the cookie included."""
        self.datapath.del_flows_cookie(bridge, cookie)

    def dump_flows(self, bridge: str) -> list[str]:
        return self.datapath.dump_flows(bridge)


__all__ = ["ModelOvs", "OvsError"]
