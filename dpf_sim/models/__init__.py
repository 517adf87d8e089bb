"""The twin's world models: what the ports and task ops act on (hosts, BlueFields + DMS, BFB servers)."""

from __future__ import annotations

from .bfbserver import BfbDirectory, BfbFault, BfbImage, BfbServerParams, BfbServers
from .bluefield import BlueField, BlueFieldParams, BlueFields, DpuState
from .host import Host, HostParams, Hosts

__all__ = [
    "BfbDirectory",
    "BfbFault",
    "BfbImage",
    "BfbServerParams",
    "BfbServers",
    "BlueField",
    "BlueFieldParams",
    "BlueFields",
    "DpuState",
    "Host",
    "HostParams",
    "Hosts",
]
