"""What a DPU node's kubelet advertises in the services attachment: the BlueField's cpu and memory, a flavor's
dpuResources minus systemReserved instead where it names them, and - when no CNI model plays DPF's SR-IOV device
plugin - the flavor's PF_TOTAL_SF as `nvidia.com/bf_sf`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dpf_core.api.provisioning import DPU, DPUFlavor
from dpf_core.store.memory import MemoryStore
from dpf_sim.cni import SF_RESOURCE
from dpf_sim.services import Services, ServicesParams, pf_total_sf

NS = "dpf-operator-system"


def _flavor(name: str, **spec: Any) -> DPUFlavor:
    return DPUFlavor.new(name, NS, spec=spec)


@dataclass
class _Names:
    dpus: dict[str, DPU]

    def find(self, node: str) -> DPU | None:
        return self.dpus.get(node)


@dataclass
class _Twin:
    host: MemoryStore
    dpu_names: _Names


@dataclass
class _Composition:
    """The parts of Services that allocatable_for reads (the rule under test is the method itself)."""

    twin: _Twin
    sf_plugin: bool
    params: ServicesParams = field(default_factory=ServicesParams)


def _allocatable(flavor: DPUFlavor | None, *, sf_plugin: bool) -> dict[str, Any] | None:
    host = MemoryStore(name="host")
    spec: dict[str, Any] = {"nodeName": "worker-0", "bfb": "bf-bundle"}
    if flavor is not None:
        host.create(flavor)
        spec["dpuFlavor"] = flavor.name
    dpu = DPU.new("worker-0-0000-04-00", NS, spec=spec)
    world = _Composition(_Twin(host, _Names({dpu.name: dpu})), sf_plugin)
    return Services.allocatable_for(world, dpu.name)  # type: ignore[arg-type]


def test_pf_total_sf_reads_the_flavors_nvconfig() -> None:
    assert pf_total_sf(None) == 20
    assert pf_total_sf(_flavor("f", nvconfig=[{"device": "*", "parameters": ["SRIOV_EN=1", "PF_TOTAL_SF=8"]}])) == 8
    assert pf_total_sf(_flavor("g", nvconfig=[{"parameters": ["PF_TOTAL_SF=x"]}])) == 20


def test_a_node_without_flavor_resources_offers_the_bluefield_and_its_sfs() -> None:
    assert _allocatable(None, sf_plugin=False) == {"cpu": "16", "memory": "32Gi", SF_RESOURCE: "20"}
    # With the CNI model the plugin advertises the SFs itself.
    assert _allocatable(None, sf_plugin=True) == {"cpu": "16", "memory": "32Gi"}


def test_flavor_resources_replace_what_they_name() -> None:
    flavor = _flavor("hbn", dpuResources={"cpu": "12", "memory": "16Gi"}, systemReservedResources={"cpu": "2"},
                     nvconfig=[{"device": "*", "parameters": ["PF_TOTAL_SF=10"]}])
    assert _allocatable(flavor, sf_plugin=False) == {"cpu": "10", "memory": "16Gi", SF_RESOURCE: "10"}
