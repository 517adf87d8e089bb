"""The twin's Open vSwitch: OVSDB rows, OpenFlow tables with learn, ofproto/trace and dump-flows text."""

from __future__ import annotations

from .datapath import Bridge, Datapath, Interface, OvsError, Port, Rule
from .flows import FlowMod, FlowParseError, Match, parse_actions, parse_flow, parse_flows_file
from .port import ModelOvs
from .trace import Delivery, Packet, RuleHit, TraceResult, send, trace

__all__ = [
    "Bridge",
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
