"""The twin's Open vSwitch: OVSDB rows, OpenFlow tables with learn, ofproto/trace and dump-flows text."""

from __future__ import annotations

from .datapath import FLOWS, PORTS, RESTART, Bridge, Change, ChangeListener, Datapath, Interface, OvsError, Port, Rule
from .flows import FlowMod, FlowParseError, Match, parse_actions, parse_flow, parse_flows_file
from .port import ModelOvs
from .trace import Delivery, Packet, RuleHit, TraceResult, send, trace

__all__ = [
    "FLOWS",
    "PORTS",
    "RESTART",
    "Bridge",
    "Change",
    "ChangeListener",
    "Datapath",
    "Delivery",
    "FlowMod",
    "FlowParseError",
    "Interface",
    "Match",
    "ModelOvs",
    "OvsError",
    "Packet",
    "Port",
    "Rule",
    "RuleHit",
    "TraceResult",
    "parse_actions",
    "parse_flow",
    "parse_flows_file",
    "send",
    "trace",
]
