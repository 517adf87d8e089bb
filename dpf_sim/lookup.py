"""Finding a DPU object by name alone.

Models know a BlueField (or a DPU-cluster Node) by the DPU's name, not its namespace. Scanning every DPU for
each lookup made per-DPU events O(N) and a fleet run O(N^2); a watch on DPUs keeps name -> namespace instead,
and the object itself is always read from the store (never a stale copy).

A DPU object and the BlueField it provisions are matched the way DPF matches them: DPF's DMS pod runs on the
DPU's `spec.nodeName` and targets the PCI address in its `provisioning.dpu.nvidia.com/dpu-pciAddress` label
(dms_deploy.go, util.GetPCIAddrFromLabel); the name plays no part. A DPUSet names its DPUs `<node>-<pci label>`,
which is the fleet's BlueField name, so only DPUs named otherwise (DPF's own controller tests create `obj-dpu`)
need remembering: `aliases` maps such a BlueField to the DPU object on it, and costs nothing for the rest.

The same watch knows which DPUs are Ready and in which DPU cluster: a fault that makes an API server fail or
recover wakes exactly those (dpf_sim.faults), so the twin's Ready-phase poll can be long.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from dpf_core.api.meta import KubeObject
from dpf_core.api.provisioning import DPU, DPU_PCI_ADDRESS_LABEL, DPUPhase
from dpf_core.store.memory import MemoryStore
from dpf_core.store.protocol import WatchEvent

# (node name, PCI address label value) -> the fleet name of the BlueField there, or None.
Locate = Callable[[str, str], str | None]


class DpuNames:
    def __init__(self, store: MemoryStore, locate: Locate | None = None) -> None:
        self.store = store
        self._locate = locate
        # BlueField name -> the DPU object on it, for DPU objects not named after their BlueField; and the
        # reverse, so an alias goes when its DPU is deleted or its label moves it.
        self.aliases: dict[str, str] = {}
        self._placed: dict[str, str] = {}
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
        if isinstance(dpu, DPU) and self._locate is not None:
            self._place(dpu, gone)
        if gone and assigned and self.unassigned:
            for hook in self.on_slot_freed:
                hook()

    def _place(self, dpu: DPU, gone: bool) -> None:
        name = dpu.name
        pci = dpu.metadata.labels.get(DPU_PCI_ADDRESS_LABEL)
        node = dpu.spec.node_name
        if name not in self._placed and (gone or pci is None or name == f"{node}-{pci}"):
            return  # the common case, kept to a string compare per event: named after its BlueField
        old = self._placed.pop(name, None)
        if old is not None and self.aliases.get(old) == name:
            del self.aliases[old]
        if gone or pci is None or not node or self._locate is None:
            return
        # "" when no BlueField is there: its DMS then reaches nothing, whatever the DPU is called.
        bf = self._locate(node, pci) or ""
        self._placed[name] = bf
        if bf and bf != name:
            self.aliases[bf] = name

    def set_locator(self, locate: Locate) -> None:
        """Match DPU objects to BlueFields from now on (the fleet is built after the host store)."""
        self._locate = locate
        for d in self.store.list(DPU):
            self._place(d, gone=False)

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
        """The DPU object named `name`; failing that, the DPU object on the BlueField named `name` (models
        and invariants know a DPU by its BlueField's fleet name)."""
        ns = self._namespaces.get(name)
        if ns is None:
            alias = self.aliases.get(name)
            if alias is None:
                return None
            name, ns = alias, self._namespaces.get(alias)
            if ns is None:
                return None
        return self.store.try_get(DPU, name, ns)

    def bluefield_of(self, name: str) -> str:
        """The fleet name of the BlueField DPU object `name` provisions ("" when its node has none at its
        PCI address); a DPU named `<node>-<pci label>`, or one without the label, by its own name."""
        return self._placed.get(name, name)

    def on_bluefield(self, bluefield: str) -> tuple[str, ...]:
        """The names a DPU object on BlueField `bluefield` may have: the BlueField's own (what a DPUSet
        names it), then the name of one named otherwise."""
        alias = self.aliases.get(bluefield)
        return (bluefield,) if alias is None else (bluefield, alias)
