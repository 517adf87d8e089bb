"""The DPUCluster allocator: a DPU joins the first Ready DPUCluster by name that has room (DPF v24.10: the first
DPUCluster by name, full or not).

DPF keeps a cache of clusters (fed by the DPUCluster controller) and of the DPUs assigned to each (fed by
every DPU reconcile), synced once from the API server before the first allocation. We keep only the DPU
side in memory and read the clusters from the store at allocation time (there are few of them), so the
allocator needs no feed from the DPUCluster controller and a restarted controller rebuilds it from the
store alone: the lazy sync lists every DPU's `spec.cluster`.

Differences from DPF (docs/differences.md): clusters being deleted are skipped (DPF drops them when the
DPUCluster controller sees the deletion); order is by name then namespace (DPF: name only, so equal names
in two namespaces order arbitrarily); DPF's cache removal leaves the name index behind, ours has none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dpf_core.api.provisioning import DPU, DPUCluster, DPUClusterPhase
from dpf_core.store.protocol import Client

ClusterKey = tuple[str, str]  # (namespace, name)


class AllocationError(Exception):
    """No DPUCluster can take the DPU now (none, not Ready, or full): the DPU waits in Initializing."""


@dataclass
class Allocator:
    synced: bool = False
    # cluster -> uids of the DPUs assigned to it
    _assigned: dict[ClusterKey, set[str]] = field(default_factory=dict)
    _cluster_of: dict[str, ClusterKey] = field(default_factory=dict)

    def sync(self, client: Client) -> None:
        for dpu in client.list(DPU):
            self.save_assigned_dpu(dpu)
        self.synced = True

    def save_assigned_dpu(self, dpu: DPU) -> None:
        """Count a DPU that already names its cluster (created with one, or allocated before a restart)."""
        cluster = dpu.spec.cluster
        uid = dpu.metadata.uid or ""
        if dpu.metadata.deletion_timestamp is not None or not cluster.name or not uid:
            return
        key = (cluster.namespace or "", cluster.name)
        if self._cluster_of.get(uid) == key:
            return
        self._release_uid(uid)
        self._assigned.setdefault(key, set()).add(uid)
        self._cluster_of[uid] = key

    def release_dpu(self, dpu: DPU) -> None:
        self._release_uid(dpu.metadata.uid or "")

    def _release_uid(self, uid: str) -> None:
        key = self._cluster_of.pop(uid, None)
        if key is not None:
            members = self._assigned.get(key)
            if members is not None:
                members.discard(uid)

    def assigned(self, namespace: str, name: str) -> int:
        return len(self._assigned.get((namespace, name), ()))

    def feasible_cluster(self, client: Client) -> DPUCluster:
        clusters = sorted(
            (dc for dc in client.list(DPUCluster) if dc.metadata.deletion_timestamp is None),
            key=lambda dc: (dc.name, dc.namespace or ""),
        )
        if not clusters:
            raise AllocationError("no cluster available")
        # DPF v24.10 tries only the first cluster, so with maxNodes <= 1000 a fleet over 1,000 DPUs never
        # finishes; we take the first Ready cluster (by name) with room (docs/differences.md). With none, the
        # error is about the first cluster, as in DPF.
        for dc in clusters:
            if dc.status.phase == DPUClusterPhase.READY and self.assigned(dc.namespace or "", dc.name) < dc.spec.max_nodes:
                return dc
        dc = clusters[0]
        if dc.status.phase != DPUClusterPhase.READY:
            raise AllocationError(f"cluster {dc.name} is not ready, phase: {dc.status.phase.value}")
        raise AllocationError(f"cluster {dc.namespace}/{dc.name} is full, max node: {dc.spec.max_nodes}")

    def allocate(self, client: Client, dpu: DPU) -> DPU:
        """Assign the DPU to the feasible cluster: patch `spec.cluster.{name,namespace}`, count it, return the patched DPU."""
        if not self.synced:
            self.sync(client)
        dc = self.feasible_cluster(client)
        patched = client.patch(
            DPU,
            dpu.name,
            dpu.namespace,
            {"spec": {"cluster": {"name": dc.name, "namespace": dc.namespace}}},
        )
        # Counted at once so the next DPU in the queue sees the cluster fuller without waiting for a watch.
        self.save_assigned_dpu(patched)
        return patched
