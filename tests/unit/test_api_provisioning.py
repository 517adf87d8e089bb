"""provisioning.dpu.nvidia.com: real-looking DPF manifests through decode + admission, and every webhook rule."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from dpf_core.api import admission, registry
from dpf_core.api import provisioning as p
from dpf_core.api.meta import KubeObject
from dpf_core.api.quantity import exceeding, parse_quantity
from dpf_core.errors import Forbidden, Invalid

MANIFESTS = Path(__file__).parent / "manifests" / "provisioning"
T = TypeVar("T", bound=KubeObject)


class FakeReader:
    """The read access webhooks get: a list of objects filtered by kind and namespace."""

    def __init__(self, objects: Iterable[KubeObject] = ()) -> None:
        self.objects = list(objects)

    def list(self, cls: type[T], namespace: str | None = None) -> list[T]:
        return [o for o in self.objects if isinstance(o, cls) and (namespace is None or o.namespace == namespace)]


EMPTY = FakeReader()


def load(name: str) -> dict[str, Any]:
    raw = yaml.safe_load((MANIFESTS / name).read_text())
    assert isinstance(raw, dict)
    return raw


def decode(raw: dict[str, Any]) -> KubeObject:
    cls = registry.lookup(raw["apiVersion"], raw["kind"])
    assert cls is not None
    return admission.decode(raw, cls)


def create(raw: dict[str, Any], reader: FakeReader = EMPTY) -> Any:
    return admission.admit_create(decode(raw), reader)


def causes_of(exc: pytest.ExceptionInfo[Invalid]) -> dict[str, str]:
    return {c.field: c.message for c in exc.value.causes}


def dpuset(
    spec: dict[str, Any] | None = None, annotations: dict[str, str] | None = None, **meta: Any
) -> dict[str, Any]:
    spec = dict(spec or {})
    if annotations is not None:
        spec.setdefault("dpuTemplate", {})["annotations"] = annotations
    return {
        "apiVersion": p.API_VERSION,
        "kind": "DPUSet",
        "metadata": {"name": "dpuset-1", "namespace": "dpf-operator-system", **meta},
        "spec": spec,
    }


def dpu(
    spec: dict[str, Any] | None = None, annotations: dict[str, str] | None = None, name: str = "worker1-0000-04-00"
) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": "dpf-operator-system"}
    if annotations is not None:
        md["annotations"] = annotations
    return {
        "apiVersion": p.API_VERSION,
        "kind": "DPU",
        "metadata": md,
        "spec": {"nodeName": "worker1", "bfb": "bf-bundle", **(spec or {})},
    }


def dpucluster(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": p.API_VERSION,
        "kind": "DPUCluster",
        "metadata": {"name": "dc", "namespace": "dpf-operator-system"},
        "spec": {"type": "static", "version": "v1.30.2", **spec},
    }


def flavor(spec: dict[str, Any], name: str = "flavor", namespace: str = "dpf-operator-system") -> dict[str, Any]:
    return {
        "apiVersion": p.API_VERSION,
        "kind": "DPUFlavor",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


# --- real manifests -----------------------------------------------------------------------------------


def test_bfb_fixture_gets_file_name_and_initial_phase() -> None:
    bfb = create(load("valid/bfb.yaml"))
    assert isinstance(bfb, p.BFB)
    assert bfb.spec.url.endswith("/bf-bundle-2.9.1-19_24.11_ubuntu-22.04_prod.bfb")
    assert bfb.spec.file_name == "dpf-operator-system-bf-bundle.bfb"
    assert bfb.status.phase == p.BFBPhase.INITIALIZING
    assert bfb.wire()["status"] == {"phase": "Initializing"}


def test_bfb_keeps_an_explicit_file_name() -> None:
    raw = load("valid/bfb.yaml")
    raw["spec"]["fileName"] = "doca-2.9.1.bfb"
    assert create(raw).spec.file_name == "doca-2.9.1.bfb"


def test_static_dpucluster_fixture() -> None:
    dc = create(load("valid/dpucluster-static.yaml"))
    assert isinstance(dc, p.DPUCluster)
    assert dc.spec.type == p.ClusterType.STATIC
    assert dc.spec.kubeconfig == "dpu-cluster-0-admin-kubeconfig"
    assert dc.spec.cluster_endpoint is None
    assert dc.status.phase == p.DPUClusterPhase.PENDING


def test_kamaji_dpucluster_fixture_with_keepalived() -> None:
    dc = create(load("valid/dpucluster-kamaji.yaml"))
    assert dc.spec.max_nodes == 10
    ka = dc.spec.cluster_endpoint.keepalived
    assert (ka.vip, ka.virtual_router_id, ka.interface) == ("10.0.110.254", 126, "br-dpu")
    wire = dc.wire()
    assert wire["spec"]["clusterEndpoint"]["keepalived"]["virtualRouterID"] == 126
    assert "virtualRouterId" not in str(wire)


def test_dpuset_fixture_keeps_taint_and_percent() -> None:
    ds = create(load("valid/dpuset.yaml"))
    assert isinstance(ds, p.DPUSet)
    assert ds.spec.strategy.type == p.ROLLING_UPDATE_STRATEGY_TYPE
    assert ds.spec.strategy.rolling_update.max_unavailable == "10%"
    effect = ds.spec.dpu_template.spec.node_effect
    assert effect.taint is not None and (effect.taint.key, effect.taint.value, effect.taint.effect) == (
        "dpu",
        "provisioning",
        "NoSchedule",
    )
    # An explicit nodeEffect is not merged with the CRD default.
    assert effect.drain is None
    assert ds.spec.node_selector.match_labels == {"feature.node.kubernetes.io/dpu-enabled": "true"}
    assert ds.spec.dpu_template.spec.bfb.name == "bf-bundle"


def test_dpu_fixture_round_trips_unchanged_plus_defaults() -> None:
    raw = load("valid/dpu.yaml")
    obj = create(raw)
    wire = obj.wire()
    for key, value in raw["spec"].items():
        assert wire["spec"][key] == value
    assert wire["metadata"]["labels"] == raw["metadata"]["labels"]
    assert wire["spec"]["nodeEffect"] == {"drain": {"automaticNodeReboot": True}}
    assert wire["spec"]["automaticNodeReboot"] is True
    assert wire["status"] == {"phase": "Initializing"}


def test_default_flavor_fixture() -> None:
    fl = create(load("valid/dpuflavor-hbn-ovn.yaml"))
    assert isinstance(fl, p.DPUFlavor)
    assert fl.name == "dpf-provisioning-hbn-ovn"
    assert "hugepagesz=2048kB" in fl.spec.grub.kernel_parameters and "hugepages=3072" in fl.spec.grub.kernel_parameters
    params = fl.spec.nvconfig[0].parameters
    assert {"PF_TOTAL_SF=20", "NUM_OF_VFS=46", "SRIOV_EN=1"} <= set(params)
    assert fl.spec.bfcfg_parameters == ["UPDATE_ATF_UEFI=yes", "UPDATE_DPU_OS=yes", "WITH_NIC_FW_UPDATE=yes"]
    assert "doca-init=true" in fl.spec.ovs.raw_config_script and "hw-offload=true" in fl.spec.ovs.raw_config_script
    assert fl.spec.config_files[0].raw == 'CREATE_OVS_BRIDGES="no"\n'
    assert fl.spec.dpu_resources == {"cpu": "16", "memory": "32Gi", "nvidia.com/sf": 20}
    assert "status" not in fl.wire()


# --- invalid manifests: every bad field, with its wire path ------------------------------------------


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("invalid/bfb.yaml", {"spec.url", "spec.fileName", "spec.checksum"}),
        (
            "invalid/dpucluster.yaml",
            {
                "spec.type",
                "spec.maxNodes",
                "spec.version",
                "spec.clusterEndpoint.keepalived.vip",
                "spec.clusterEndpoint.keepalived.virtualRouterID",
                "spec.clusterEndpoint.keepalived.interface",
            },
        ),
        (
            "invalid/dpuset-schema.yaml",
            {
                "spec.strategy.type",
                "spec.dpuTemplate.spec.nodeEffect.taint.effect",
                "spec.dpuTemplate.spec.automaticNodeReboot",
            },
        ),
        ("invalid/dpu.yaml", {"spec.nodeName", "spec.bfb", "status.phase"}),
        ("invalid/dpuflavor-schema.yaml", {"spec.configFiles[0].operation", "spec.dpuResources.memory"}),
    ],
)
def test_schema_errors_list_every_bad_field(name: str, fields: set[str]) -> None:
    with pytest.raises(Invalid) as exc:
        decode(load(name))
    assert set(causes_of(exc)) == fields


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        (
            "invalid/dpuset-webhook.yaml",
            {
                "spec.strategy.rollingUpdate.maxUnavailable",
                "spec.dpuTemplate.spec.nodeEffect",
                "spec.dpuTemplate.annotations[provisioning.dpu.nvidia.com/host-power-cycle-required]",
            },
        ),
        (
            "invalid/dpu-webhook.yaml",
            {"spec.nodeEffect", "metadata.annotations[provisioning.dpu.nvidia.com/host-power-cycle-required]"},
        ),
        ("invalid/dpuflavor-webhook.yaml", {"spec.nvconfig", "spec.systemReservedResources"}),
    ],
)
def test_webhook_errors_list_every_bad_field(name: str, fields: set[str]) -> None:
    with pytest.raises(Invalid) as exc:
        create(load(name))
    assert set(causes_of(exc)) == fields


def test_invalid_carries_kind_name_and_group() -> None:
    with pytest.raises(Invalid) as exc:
        create(load("invalid/dpuset-webhook.yaml"))
    assert (exc.value.kind, exc.value.name, exc.value.group) == ("DPUSet", "dpuset-1", p.GROUP)
    assert exc.value.to_status()["code"] == 422


def test_flavor_webhook_names_the_missing_amounts() -> None:
    with pytest.raises(Invalid) as exc:
        create(load("invalid/dpuflavor-webhook.yaml"))
    needed = causes_of(exc)["spec.systemReservedResources"].split("Additional resources needed in spec.dpuResources:")[
        1
    ]
    assert needed.strip() == "[cpu: 2 hugepages-2Mi: 2Gi]"


# --- mdpuset / vdpuset ---------------------------------------------------------------------------------


def test_dpuset_defaults_strategy_and_node_effect() -> None:
    ds = create(dpuset({"dpuTemplate": {"spec": {"bfb": {"name": "bf-bundle"}}}}))
    assert ds.spec.strategy.type == "Recreate" and ds.spec.strategy.rolling_update is None
    # The CRD default wins over the webhook's noEffect fallback.
    assert ds.wire()["spec"]["dpuTemplate"]["spec"]["nodeEffect"] == {"drain": {"automaticNodeReboot": True}}
    assert ds.spec.dpu_template.spec.automatic_node_reboot is True


def test_dpuset_explicit_null_node_effect_gets_the_crd_default() -> None:
    ds = create(dpuset({"dpuTemplate": {"spec": {"nodeEffect": None}}}))
    assert ds.spec.dpu_template.spec.node_effect.drain is not None


def test_dpuset_strategy_type_defaults_to_recreate_inside_a_strategy() -> None:
    assert create(dpuset({"strategy": {}})).spec.strategy.type == "Recreate"


def test_rolling_update_without_parameters_gets_max_unavailable_one() -> None:
    ds = create(dpuset({"strategy": {"type": "RollingUpdate"}}))
    assert ds.spec.strategy.rolling_update.max_unavailable == 1
    ds = create(dpuset({"strategy": {"type": "RollingUpdate", "rollingUpdate": {}}}))
    assert ds.spec.strategy.rolling_update.max_unavailable == 1


@pytest.mark.parametrize("value", [1, 5, "1%", "10%", "100%"])
def test_max_unavailable_accepted(value: int | str) -> None:
    ds = create(dpuset({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": value}}}))
    assert ds.spec.strategy.rolling_update.max_unavailable == value


@pytest.mark.parametrize("value", [0, -1, "0%", "101%", "10", "abc%", "1.5%", "-5%"])
def test_max_unavailable_refused(value: int | str) -> None:
    with pytest.raises(Invalid) as exc:
        create(dpuset({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": value}}}))
    assert set(causes_of(exc)) == {"spec.strategy.rollingUpdate.maxUnavailable"}


def test_max_unavailable_ignored_for_recreate() -> None:
    ds = create(dpuset({"strategy": {"type": "Recreate", "rollingUpdate": {"maxUnavailable": 0}}}))
    assert ds.spec.strategy.type == "Recreate"


TAINT = {"key": "dpu", "value": "provisioning", "effect": "NoSchedule"}
ONE_EFFECT = [
    {"taint": TAINT},
    {"noEffect": True},
    {"customLabel": {"dpu-provisioning": "true"}},
    {"drain": {}},
    {"taint": TAINT, "noEffect": False},
    {"drain": {"automaticNodeReboot": False}, "customLabel": {}},
]
TWO_EFFECTS = [
    {"taint": TAINT, "noEffect": True},
    {"taint": TAINT, "drain": {}},
    {"customLabel": {"a": "b"}, "noEffect": True},
    {"customLabel": {"a": "b"}, "drain": {}},
    {"taint": TAINT, "customLabel": {"a": "b"}, "drain": {}, "noEffect": True},
]


@pytest.mark.parametrize("effect", ONE_EFFECT)
def test_dpuset_single_node_effect_accepted_on_create_and_update(effect: dict[str, Any]) -> None:
    raw = dpuset({"dpuTemplate": {"spec": {"nodeEffect": effect}}})
    old = create(raw)
    admission.admit_update(raw, old, EMPTY)


@pytest.mark.parametrize("effect", TWO_EFFECTS)
def test_dpuset_several_node_effects_refused_on_create_and_update(effect: dict[str, Any]) -> None:
    raw = dpuset({"dpuTemplate": {"spec": {"nodeEffect": effect}}})
    with pytest.raises(Invalid) as exc:
        create(raw)
    assert set(causes_of(exc)) == {"spec.dpuTemplate.spec.nodeEffect"}
    old = create(dpuset())
    with pytest.raises(Invalid) as exc:
        admission.admit_update(raw, old, EMPTY)
    assert set(causes_of(exc)) == {"spec.dpuTemplate.spec.nodeEffect"}


GO_BOOLS = ["1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"]
NOT_GO_BOOLS = ["yes", "no", "on", "", "tRUE", " true", "2"]


@pytest.mark.parametrize("value", GO_BOOLS)
def test_power_cycle_annotation_go_bools_accepted(value: str) -> None:
    create(dpuset(annotations={p.HOST_POWER_CYCLE_REQUIRED_ANNOTATION: value}))
    create(dpu(annotations={p.HOST_POWER_CYCLE_REQUIRED_ANNOTATION: value}))


@pytest.mark.parametrize("value", NOT_GO_BOOLS)
def test_power_cycle_annotation_refused_on_create_only(value: str) -> None:
    annotations = {p.HOST_POWER_CYCLE_REQUIRED_ANNOTATION: value}
    with pytest.raises(Invalid) as exc:
        create(dpuset(annotations=annotations))
    assert set(causes_of(exc)) == {f"spec.dpuTemplate.annotations[{p.HOST_POWER_CYCLE_REQUIRED_ANNOTATION}]"}
    with pytest.raises(Invalid) as exc:
        create(dpu(annotations=annotations))
    assert set(causes_of(exc)) == {f"metadata.annotations[{p.HOST_POWER_CYCLE_REQUIRED_ANNOTATION}]"}
    # DPF checks the annotation on create only.
    admission.admit_update(dpuset(annotations=annotations), create(dpuset()), EMPTY)
    admission.admit_update(dpu(annotations=annotations), create(dpu()), EMPTY)


def test_dpuset_update_checks_strategy() -> None:
    old = create(dpuset())
    with pytest.raises(Invalid) as exc:
        admission.admit_update(
            dpuset({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "200%"}}}), old, EMPTY
        )
    assert set(causes_of(exc)) == {"spec.strategy.rollingUpdate.maxUnavailable"}


# --- vdpu and DPU immutability -------------------------------------------------------------------------


@pytest.mark.parametrize("effect", ONE_EFFECT)
def test_dpu_single_node_effect_accepted(effect: dict[str, Any]) -> None:
    create(dpu({"nodeEffect": effect}))


@pytest.mark.parametrize("effect", TWO_EFFECTS)
def test_dpu_several_node_effects_refused_on_create_and_update(effect: dict[str, Any]) -> None:
    with pytest.raises(Invalid) as exc:
        create(dpu({"nodeEffect": effect}))
    assert set(causes_of(exc)) == {"spec.nodeEffect"}
    with pytest.raises(Invalid) as exc:
        admission.admit_update(dpu({"nodeEffect": effect}), create(dpu()), EMPTY)
    assert set(causes_of(exc)) == {"spec.nodeEffect"}


def test_dpu_null_node_effect_gets_the_crd_default() -> None:
    obj = create(dpu({"nodeEffect": None}))
    assert obj.spec.node_effect.drain is not None and obj.spec.node_effect.drain.automatic_node_reboot is True


def test_dpu_node_name_immutable() -> None:
    old = create(dpu())
    with pytest.raises(Invalid) as exc:
        admission.admit_update(dpu({"nodeName": "worker2"}), old, EMPTY)
    assert set(causes_of(exc)) == {"spec.nodeName"}


def test_dpu_pci_address_immutable_once_set() -> None:
    unset = create(dpu())
    set_once = admission.admit_update(dpu({"pciAddress": "0000-04-00"}), unset, EMPTY)
    with pytest.raises(Invalid) as exc:
        admission.admit_update(dpu({"pciAddress": "0000-05-00"}), set_once, EMPTY)
    assert set(causes_of(exc)) == {"spec.pciAddress"}


def test_dpu_cluster_assignment_is_set_once() -> None:
    unassigned = create(dpu())
    assigned = admission.admit_update(
        dpu({"cluster": {"name": "dpu-cluster-0", "namespace": "dpf-operator-system"}}), unassigned, EMPTY
    )
    # Labels may still change; the assignment may not.
    admission.admit_update(
        dpu({"cluster": {"name": "dpu-cluster-0", "namespace": "dpf-operator-system", "nodeLabels": {"a": "b"}}}),
        assigned,
        EMPTY,
    )
    with pytest.raises(Invalid) as exc:
        admission.admit_update(dpu({"cluster": {"name": "other", "namespace": "elsewhere"}}), assigned, EMPTY)
    assert set(causes_of(exc)) == {"spec.cluster.name", "spec.cluster.namespace"}


def test_dpu_bfb_and_flavor_may_change() -> None:
    old = create(dpu())
    new = admission.admit_update(dpu({"bfb": "bf-bundle-next", "dpuFlavor": "other"}), old, EMPTY)
    assert new.spec.bfb == "bf-bundle-next"


def test_dpu_status_update_skips_webhooks() -> None:
    raw = dpu({"nodeEffect": {"taint": TAINT, "noEffect": True}})
    raw["status"] = {"phase": "OS Installing", "requiredReset": True, "firmware": {"bmc": "1", "nic": "2", "uefi": "3"}}
    obj = admission.admit_status_update(decode(raw))
    assert obj.status.phase == p.DPUPhase.OS_INSTALLING and obj.status.firmware.nic == "2"


# --- BFB immutability and vbfb ---------------------------------------------------------------------------


def test_bfb_spec_immutable() -> None:
    old = create(load("valid/bfb.yaml"))
    same = load("valid/bfb.yaml")
    admission.admit_update(same, old, EMPTY)  # fileName defaulted again to the same value
    changed = load("valid/bfb.yaml")
    changed["spec"]["url"] = "http://bfb-server/other.bfb"
    with pytest.raises(Invalid) as exc:
        admission.admit_update(changed, old, EMPTY)
    assert set(causes_of(exc)) == {"spec"}


def test_bfb_delete_refused_while_a_dpuset_anywhere_uses_it() -> None:
    bfb = create(load("valid/bfb.yaml"))
    user = create(dpuset({"dpuTemplate": {"spec": {"bfb": {"name": "bf-bundle"}}}}, namespace="elsewhere"))
    with pytest.raises(Forbidden) as exc:
        admission.admit_delete(bfb, FakeReader([user]))
    assert "DPUSet(s) [dpuset-1]" in exc.value.message


def test_bfb_delete_refused_while_a_dpu_in_its_namespace_uses_it() -> None:
    bfb = create(load("valid/bfb.yaml"))
    with pytest.raises(Forbidden) as exc:
        admission.admit_delete(bfb, FakeReader([create(dpu())]))
    assert "DPU(s) [worker1-0000-04-00]" in exc.value.message


def test_bfb_delete_allowed_when_unused() -> None:
    bfb = create(load("valid/bfb.yaml"))
    other_ns = dpu()
    other_ns["metadata"]["namespace"] = "elsewhere"
    unrelated = [
        create(other_ns),
        create(dpu({"bfb": "other-bundle"}, name="worker2-0000-04-00")),
        create(dpuset({"dpuTemplate": {"spec": {"bfb": {"name": "other-bundle"}}}})),
    ]
    admission.admit_delete(bfb, FakeReader(unrelated))


# --- DPUFlavor ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"nvconfig": [{"parameters": ["SRIOV_EN=1"]}]},
        {"nvconfig": [{"device": "*"}]},
        {"nvconfig": [{"device": " * "}]},
        {"dpuResources": {"cpu": 8}},
        {"dpuResources": {"cpu": "8", "memory": "16Gi"}, "systemReservedResources": {"cpu": "8", "memory": "16Gi"}},
        {"dpuResources": {"cpu": "2"}, "systemReservedResources": {"cpu": "500m"}},
        {"dpuResources": {"memory": "16G"}, "systemReservedResources": {"memory": "14Gi"}},
        {"dpuResources": {}, "systemReservedResources": {"cpu": 0}},
    ],
)
def test_flavor_accepted(spec: dict[str, Any]) -> None:
    create(flavor(spec))


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"nvconfig": [{"device": "*"}, {"device": "*"}]}, "spec.nvconfig"),
        ({"nvconfig": [{"device": "mt41692_pciconf0"}]}, "spec.nvconfig[0].device"),
        ({"systemReservedResources": {"cpu": "1"}}, "spec.systemReservedResources"),
        ({"dpuResources": {"cpu": "1"}, "systemReservedResources": {"cpu": "1001m"}}, "spec.systemReservedResources"),
        ({"dpuResources": {"cpu": "1"}, "systemReservedResources": {"memory": "1"}}, "spec.systemReservedResources"),
        (
            {"dpuResources": {"memory": "16G"}, "systemReservedResources": {"memory": "15Gi"}},
            "spec.systemReservedResources",
        ),
    ],
)
def test_flavor_refused(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(Invalid) as exc:
        create(flavor(spec))
    assert set(causes_of(exc)) == {field}


def test_flavor_spec_immutable() -> None:
    old = create(flavor({"bfcfgParameters": ["UPDATE_DPU_OS=yes"]}))
    admission.admit_update(flavor({"bfcfgParameters": ["UPDATE_DPU_OS=yes"]}), old, EMPTY)
    with pytest.raises(Invalid) as exc:
        admission.admit_update(flavor({"bfcfgParameters": ["UPDATE_DPU_OS=no"]}), old, EMPTY)
    assert set(causes_of(exc)) == {"spec"}


def test_flavor_delete_refused_while_used_in_its_namespace() -> None:
    fl = create(flavor({}, name="dpf-provisioning-hbn-ovn"))
    by_set = create(load("valid/dpuset.yaml"))
    by_dpu = create(load("valid/dpu.yaml"))
    with pytest.raises(Forbidden) as exc:
        admission.admit_delete(fl, FakeReader([by_set]))
    assert "DPUSet(s) [dpuset-1]" in exc.value.message
    with pytest.raises(Forbidden) as exc:
        admission.admit_delete(fl, FakeReader([by_dpu]))
    assert "DPU(s) [worker1-0000-04-00]" in exc.value.message


def test_flavor_delete_allowed_when_users_are_elsewhere() -> None:
    fl = create(flavor({}, name="dpf-provisioning-hbn-ovn", namespace="other"))
    admission.admit_delete(fl, FakeReader([create(load("valid/dpuset.yaml")), create(load("valid/dpu.yaml"))]))


# --- DPUCluster -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cluster_type", ["static", "kamaji", "acme.io/k3s", "nvidia/custom", "my-kamaji-variant"])
def test_cluster_type_pattern_is_unanchored(cluster_type: str) -> None:
    assert create(dpucluster(type=cluster_type)).spec.type == cluster_type


@pytest.mark.parametrize("cluster_type", ["", "k3s", "/leading-slash", "Static"])
def test_cluster_type_refused(cluster_type: str) -> None:
    with pytest.raises(Invalid) as exc:
        decode(dpucluster(type=cluster_type))
    assert set(causes_of(exc)) == {"spec.type"}


def test_max_nodes_default_and_bounds() -> None:
    assert create(dpucluster()).spec.max_nodes == 1000
    assert create(dpucluster(maxNodes=1)).spec.max_nodes == 1
    for bad in (0, 1001):
        with pytest.raises(Invalid) as exc:
            decode(dpucluster(maxNodes=bad))
        assert set(causes_of(exc)) == {"spec.maxNodes"}


@pytest.mark.parametrize(("vrid", "ok"), [(0, False), (1, True), (255, True), (256, False)])
def test_virtual_router_id_bounds(vrid: int, ok: bool) -> None:
    raw = dpucluster(
        type="kamaji",
        clusterEndpoint={"keepalived": {"vip": "10.0.0.1", "virtualRouterID": vrid, "interface": "br-dpu"}},
    )
    if ok:
        assert create(raw).spec.cluster_endpoint.keepalived.virtual_router_id == vrid
    else:
        with pytest.raises(Invalid) as exc:
            decode(raw)
        assert set(causes_of(exc)) == {"spec.clusterEndpoint.keepalived.virtualRouterID"}


def test_kubeconfig_immutable_once_set() -> None:
    empty = create(dpucluster())
    assert empty.spec.kubeconfig is None
    named = admission.admit_update(dpucluster(kubeconfig="dc-admin-kubeconfig"), empty, EMPTY)
    admission.admit_update(dpucluster(kubeconfig="dc-admin-kubeconfig", maxNodes=5), named, EMPTY)
    with pytest.raises(Invalid) as exc:
        admission.admit_update(dpucluster(kubeconfig="other"), named, EMPTY)
    assert set(causes_of(exc)) == {"spec.kubeconfig"}


def test_dpucluster_requires_spec() -> None:
    raw = dpucluster()
    del raw["spec"]
    with pytest.raises(Invalid) as exc:
        decode(raw)
    assert set(causes_of(exc)) == {"spec"}


# --- constants and helpers --------------------------------------------------------------------------------


def test_dpu_phases_in_dpf_words_and_order() -> None:
    assert [ph.value for ph in p.DPUPhase] == [
        "Initializing",
        "Node Effect",
        "Pending",
        "DMS Deployment",
        "OS Installing",
        "Rebooting",
        "Host Network Configuration",
        "DPU Cluster Config",
        "Ready",
        "Error",
        "Deleting",
    ]
    assert [ph.value for ph in p.BFBPhase] == ["Initializing", "Downloading", "Ready", "Deleting", "Error"]
    assert [ph.value for ph in p.DPUClusterPhase] == ["Pending", "Creating", "Ready", "NotReady", "Failed"]
    assert p.DPUConditionType.HOST_NETWORK_READY == "HostNetworkReady"
    assert p.DPUConditionReason.ERROR_OCCURED == "ErrorOccured"


def test_phase_enum_refuses_unknown_phase_in_status() -> None:
    raw = load("valid/bfb.yaml")
    raw["status"] = {"phase": "Flashing"}
    with pytest.raises(Invalid) as exc:
        decode(raw)
    assert set(causes_of(exc)) == {"status.phase"}


def test_label_helpers() -> None:
    assert p.dpu_pci_address_label(0) == "feature.node.kubernetes.io/dpu-0-pci-address"
    assert p.dpu_pf0_name_label(1) == "feature.node.kubernetes.io/dpu-1-pf0-name"
    assert p.dpu_ps_id_label(2) == "feature.node.kubernetes.io/dpu-2-ps-id"


@pytest.mark.parametrize(("value", "expected"), [(v, v in ("1", "t", "T", "TRUE", "true", "True")) for v in GO_BOOLS])
def test_parse_go_bool(value: str, expected: bool) -> None:
    assert p.parse_go_bool(value) is expected


@pytest.mark.parametrize(
    ("value", "total", "round_up", "expected"),
    [
        (None, 10, True, 0),
        (3, 10, True, 3),
        ("10%", 15, True, 2),
        ("10%", 15, False, 1),
        ("100%", 7, True, 7),
        ("0%", 7, True, 0),
    ],
)
def test_scaled_value(value: int | str | None, total: int, round_up: bool, expected: int) -> None:
    assert p.scaled_value_from_int_or_percent(value, total, round_up) == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Fraction(1, 2)),
        ("1Gi", Fraction(2**30)),
        ("2", Fraction(2)),
        ("16G", Fraction(16 * 10**9)),
        (3, Fraction(3)),
        ("1e3", Fraction(1000)),
        ("1.5Ki", Fraction(1536)),
        ("100u", Fraction(1, 10**4)),
    ],
)
def test_parse_quantity(text: int | str, value: Fraction) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "lots", "1 Gi", "1GB", "1Gi\n", "Gi"])
def test_parse_quantity_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)


def test_exceeding_treats_absent_as_zero() -> None:
    assert exceeding({"cpu": "2"}, {"cpu": "2500m", "memory": "0"}) == {"cpu": Fraction(1, 2)}
    assert exceeding(None, {"cpu": "100"}) == {}
