"""Finding a DPU object by name alone.

Models know a BlueField (or a DPU-cluster Node) by the DPU's name, not its namespace. Scanning every DPU for
each lookup made per-DPU events O(N) and a fleet run O(N^2); a watch on DPUs keeps name -> namespace instead,
and the object itself is always read from the store (never a stale copy).

The same watch knows which DPUs are Ready and in which DPU cluster: a fault that makes an API server fail or
recover wakes exactly those (dpf_sim.faults), so the twin's Ready-phase poll can be long.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from dpf_core.api.meta import KubeObject
from dpf_core.api.provisioning import DPU, DPUPhase
from dpf_core.store.memory import MemoryStore
from dpf_core.store.protocol import WatchEvent


class DpuNames:
    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self._namespaces: dict[str, str] = {}
        # DPUs waiting for a DPUCluster (no spec.cluster yet), and who to tell when an assigned DPU goes
        # away: its slot may be what they wait for.
        self.unassigned: dict[str, str] = {}
        self.on_slot_freed: list[Callable[[], None]] = []
        # Ready DPUs -> "<namespace>/<name>" of their DPUCluster ("" while unassigned).
        self._ready: dict[str, str] = {}
        for d in store.list(DPU):
            self._track(d, gone=False)
        store.subscribe(self._on_dpu, [DPU])

    def _track(self, dpu: KubeObject, gone: bool) -> None:
        name, ns = dpu.name, dpu.namespace or ""
        assigned = isinstance(dpu, DPU) and bool(dpu.spec.cluster.name)
        if gone or not (isinstance(dpu, DPU) and dpu.status.phase == DPUPhase.READY):
            self._ready.pop(name, None)
        else:
            cluster = dpu.spec.cluster
            self._ready[name] = f"{cluster.namespace or ns}/{cluster.name}" if cluster.name else ""
        if gone:
            self._namespaces.pop(name, None)
            self.unassigned.pop(name, None)
        else:
            self._namespaces[name] = ns
            if assigned:
                self.unassigned.pop(name, None)
            else:
                self.unassigned[name] = ns
        if gone and assigned and self.unassigned:
            for hook in self.on_slot_freed:
                hook()

    def _on_dpu(self, ev: WatchEvent) -> None:
        self._track(ev.object, ev.type == "DELETED")

    def namespace(self, name: str) -> str | None:
        return self._namespaces.get(name)

    def ready(self, clusters: Collection[str] | None = None) -> list[str]:
        """Names of the DPUs in phase Ready, sorted; only those of the DPU clusters `clusters` ("<ns>/<name>")
        when given."""
        if clusters is None:
            return sorted(self._ready)
        return sorted(n for n, c in self._ready.items() if c in clusters)

    def is_ready(self, name: str) -> bool:
        return name in self._ready

    def find(self, name: str) -> DPU | None:
        ns = self._namespaces.get(name)
        return None if ns is None else self.store.try_get(DPU, name, ns)
