"""Ports: everything a controller needs from outside the store.

Two shapes, as in DPF's own controllers:
- quick calls a reconcile may make inline (is a file there, is the DMS port open, what is the host's uptime);
- long operations, written in core as *task procedures*: generators that yield operation objects
  (`ops.py`) and receive each result. A reconcile never runs one itself; it hands the procedure to the
  `Tasks` port and polls the task on later passes, exactly as DPF keeps its async tasks. The world decides
  how an operation executes: a SimPy process against the twin's models, or a worker thread doing real grpc,
  HTTP and netlink. The sequencing, retries and timeouts stay in core, written once.
"""

from __future__ import annotations

from .ports import (
    BfbStore,
    ClusterClients,
    Dms,
    HostExec,
    HostNetwork,
    Ovs,
    Ports,
    Procedure,
    Tasks,
    TaskState,
    TaskStatus,
)

__all__ = [
    "BfbStore",
    "ClusterClients",
    "Dms",
    "HostExec",
    "HostNetwork",
    "Ovs",
    "Ports",
    "Procedure",
    "TaskState",
    "TaskStatus",
    "Tasks",
]
