"""The svc.dpu.nvidia.com kinds: real manifests load unchanged, every schema/CEL/webhook rule both ways."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from pydantic import ValidationError

from dpf_core.api import registry, svc
from dpf_core.api.admission import admit_create, admit_status_update, admit_update, decode
from dpf_core.api.meta import KubeObject
from dpf_core.errors import Invalid

MANIFESTS = Path(__file__).parent / "manifests" / "svc"
T = TypeVar("T", bound=KubeObject)


class Reader:
    """The read access webhooks get; the svc webhook needs none, so an empty cluster will do."""

    def __init__(self, *objs: KubeObject) -> None:
        self.objs = list(objs)

    def list(self, cls: type[T], namespace: str | None = None) -> list[T]:
        return [o for o in self.objs if isinstance(o, cls) and (namespace is None or o.namespace == namespace)]


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _admit(raw: dict[str, Any]) -> KubeObject:
    cls = registry.lookup(raw["apiVersion"], raw["kind"])
    assert cls is not None, f"{raw['apiVersion']}/{raw['kind']} is not registered"
    return admit_create(decode(raw, cls), Reader())


def _causes(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(Invalid) as info:
        _admit(raw)
    return {c.field: c.message for c in info.value.causes}


VALID = [
    pytest.param(doc, id=f"{p.stem}/{doc['metadata']['name']}")
    for p in sorted((MANIFESTS / "valid").glob("*.yaml"))
    for doc in _docs(p)
]


@pytest.mark.parametrize("raw", VALID)
def test_real_manifests_load_unchanged(raw: dict[str, Any]) -> None:
    obj = _admit(copy.deepcopy(raw))
    assert type(obj).KIND.kind == raw["kind"]
    # No CRD defaults in this group: what the user wrote is exactly what is stored.
    assert obj.wire() == raw
    assert decode(obj.wire(), type(obj)) == obj


def test_every_kind_of_the_group_is_covered_by_a_valid_manifest() -> None:
    kinds = {p.values[0]["kind"] for p in VALID}  # type: ignore[index]
    assert kinds == {c.KIND.kind for c in svc.ALL_KINDS}


# --- kind metadata ---------------------------------------------------------------------------------------------------
def test_twelve_kinds_registered_with_crd_names() -> None:
    assert len(svc.ALL_KINDS) == 12
    for cls in svc.ALL_KINDS:
        info = cls.KIND
        assert registry.lookup("svc.dpu.nvidia.com/v1alpha1", info.kind) is cls
        assert registry.lookup_plural("svc.dpu.nvidia.com", info.plural) is cls
        assert info.plural == info.kind.lower() + "s"
        assert info.singular == info.kind.lower()
        assert info.short_names == () and info.categories == ()
        assert info.namespaced and info.status_subresource and info.dpf


@pytest.mark.parametrize(
    ("cls", "columns"),
    [
        (svc.DPUService, ["Ready", "Phase", "Age"]),
        (svc.DPUDeployment, ["Ready", "Phase", "Age"]),
        (svc.DPUServiceCredentialRequest, ["Ready", "Phase", "Age"]),
        (svc.DPUServiceIPAM, ["Ready", "Phase", "Age"]),
        (svc.DPUServiceChain, ["Ready", "Phase", "Age"]),
        (svc.DPUServiceInterface, ["Ready", "Phase", "IfType", "IfName", "Age"]),
        (svc.ServiceInterfaceSet, ["IfType", "IfName", "Age"]),
        (svc.ServiceInterface, ["IfType", "IfName", "Age"]),
        (svc.ServiceChainSet, []),
        (svc.ServiceChain, []),
        (svc.DPUServiceTemplate, []),
        (svc.DPUServiceConfiguration, []),
    ],
)
def test_printer_columns_as_in_the_crds(cls: type[KubeObject], columns: list[str]) -> None:
    assert [c.name for c in cls.KIND.printer_columns] == columns


def test_phase_column_reads_the_ready_reason_and_iftype_the_nested_template() -> None:
    by_name = {c.name: c.json_path for c in svc.DPUServiceInterface.KIND.printer_columns}
    assert by_name["Phase"] == ".status.conditions[?(@.type=='Ready')].reason"
    assert by_name["IfType"] == ".spec.template.spec.template.spec.interfaceType"


# --- invalid manifests: every bad field at once --------------------------------------------------------------------
INVALID_EXPECTED: dict[str, set[str]] = {
    "dpuservice-many-errors": {
        "spec.helmChart.source.repoURL",
        "spec.helmChart.source.version",
        "spec.deployInCluster",
        "spec",
    },
    "dpuservice-interfaces-empty": {"spec.helmChart.source.repoURL", "spec.interfaces", "spec.helmTemplate"},
    "dpudeployment-bad-ports": {
        "spec.dpus.flavor",
        "spec.dpus.dpuSets[0].nameSuffix",
        "spec.dpus.dpuSets[1].nameSuffix",
        "spec.services.hbn.serviceConfiguration",
        "spec.serviceChains[0].ports[0]",
        "spec.serviceChains[0].ports[1]",
        "spec.serviceChains[1].ports",
    },
    "dpuserviceinterface-bad-types": {
        "spec.template.spec.template.spec.vf.vfID",
        "spec.template.spec.template.spec",
    },
    "serviceinterface-bond": {"spec.interfaceType", "spec.service.interfaceName"},
    "dpuservicechain-bad": {
        "spec.template.spec.template.spec.switches[0].ports[0].serviceInterface.matchLabels",
        "spec.template.spec.template.spec.switches[0].ports[1].serviceInterface.ipam.matchLabels",
        "spec.template.spec.template.spec.switches[1].ports",
    },
    "servicechain-no-switches": {"spec.switches"},
    "dpuservicecredentialrequest-bad": {
        "spec.serviceAccount.name",
        "spec.duration",
        "spec.type",
        "spec.secret",
    },
    "dpuserviceipam-bad-network": {
        "metadata.namespace",
        "spec.ipv4Network.prefixSize",
        "spec.ipv4Network.exclusions[0]",
        "spec.ipv4Network.exclusions[1]",
        "spec.ipv4Network.allocations.dpu-node-1",
        "spec.ipv4Network.allocations.dpu-node-2",
        "spec.ipv4Network.routes[0].dst",
        "spec.ipv4Network.routes[1].dst",
        "spec.ipv4Network.routes[2].dst",
    },
}


def test_every_invalid_manifest_has_expectations() -> None:
    assert {p.stem for p in (MANIFESTS / "invalid").glob("*.yaml")} == set(INVALID_EXPECTED)


@pytest.mark.parametrize("stem", sorted(INVALID_EXPECTED))
def test_invalid_manifests_report_every_bad_field(stem: str) -> None:
    (raw,) = _docs(MANIFESTS / "invalid" / f"{stem}.yaml")
    with pytest.raises(Invalid) as info:
        _admit(raw)
    err = info.value
    assert {c.field for c in err.causes} == INVALID_EXPECTED[stem]
    assert err.kind == raw["kind"] and err.name == raw["metadata"]["name"]
    assert err.to_status()["code"] == 422


def test_cel_messages_are_dpfs() -> None:
    (raw,) = _docs(MANIFESTS / "invalid" / "dpuservice-many-errors.yaml")
    assert "serviceID must be provided when interfaces are provided" in _causes(raw)["spec"]
    (raw,) = _docs(MANIFESTS / "invalid" / "dpudeployment-bad-ports.yaml")
    assert "either service or serviceInterface must be specified" in _causes(raw)["spec.serviceChains[0].ports[1]"]


# --- DPUService ----------------------------------------------------------------------------------------------------------
def _dpuservice(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "helmChart": {"source": {"repoURL": "https://helm.ngc.nvidia.com/nvidia/doca", "version": "1.0.1"}}
    }
    base.update(spec)
    return {
        "apiVersion": "svc.dpu.nvidia.com/v1alpha1",
        "kind": "DPUService",
        "metadata": {"name": "svc", "namespace": "default"},
        "spec": base,
    }


def test_service_id_required_only_with_interfaces() -> None:
    assert set(_causes(_dpuservice(interfaces=["p0-if"]))) == {"spec"}
    assert _admit(_dpuservice(interfaces=["p0-if"], serviceID="doca-hbn"))
    assert _admit(_dpuservice(serviceID="doca-hbn"))
    assert _admit(_dpuservice())


def test_service_id_rule_also_applies_to_objects_built_in_python() -> None:
    chart = {"helm_chart": {"source": {"repo_url": "oci://r/c", "version": "1"}}}
    with pytest.raises(ValidationError, match="serviceID must be provided"):
        svc.DPUService.new("x", "default", spec={**chart, "interfaces": ["a"]})
    ok = svc.DPUService.new("x", "default", spec={**chart, "interfaces": ["a"], "service_id": "s"})
    assert ok.spec.service_id == "s" and ok.wire()["spec"]["serviceID"] == "s"


@pytest.mark.parametrize("url", ["https://helm.ngc.nvidia.com/nvidia/doca", "oci://ghcr.io/nvidia/charts"])
def test_repo_url_accepts_https_and_oci(url: str) -> None:
    assert _admit(_dpuservice(helmChart={"source": {"repoURL": url, "version": "HEAD"}}))


@pytest.mark.parametrize("url", ["http://example.com/charts", "https://", "oci:/x", "git@github.com:x/y.git"])
def test_repo_url_refuses_other_schemes(url: str) -> None:
    causes = _causes(_dpuservice(helmChart={"source": {"repoURL": url, "version": "HEAD"}}))
    assert set(causes) == {"spec.helmChart.source.repoURL"}
    assert "^(oci://|https://).+$" in causes["spec.helmChart.source.repoURL"]


def test_version_min_length() -> None:
    src = {"repoURL": "https://x/charts", "version": ""}
    assert set(_causes(_dpuservice(helmChart={"source": src}))) == {"spec.helmChart.source.version"}
    assert _admit(_dpuservice(helmChart={"source": {**src, "version": "0"}}))


def test_interfaces_between_1_and_50() -> None:
    fifty = [f"if-{i}" for i in range(50)]
    assert _admit(_dpuservice(serviceID="s", interfaces=fifty))
    assert set(_causes(_dpuservice(serviceID="s", interfaces=[*fifty, "one-more"]))) == {"spec.interfaces"}
    assert set(_causes(_dpuservice(serviceID="s", interfaces=[]))) == {"spec.interfaces"}


def test_helm_values_are_free_form() -> None:
    values = {"a": {"b": [1, {"c": None}]}, "nvidia.com/bf_sf": 3, "flag": True}
    obj = _admit(_dpuservice(helmChart={"source": {"repoURL": "https://r/c", "version": "1"}, "values": values}))
    assert isinstance(obj, svc.DPUService)
    assert obj.spec.helm_chart.values == values


def test_argo_repo_url_drops_the_oci_scheme() -> None:
    obj = _admit(_dpuservice(helmChart={"source": {"repoURL": "oci://ghcr.io/nvidia", "version": "1"}}))
    assert isinstance(obj, svc.DPUService)
    assert obj.spec.helm_chart.source.get_argo_repo_url() == "ghcr.io/nvidia"


def test_nil_booleans_mean_false() -> None:
    obj = _admit(_dpuservice())
    assert isinstance(obj, svc.DPUService)
    assert not obj.spec.should_deploy_in_cluster() and not obj.spec.is_paused()
    assert "deployInCluster" not in obj.wire()["spec"]


# --- DPUDeployment -------------------------------------------------------------------------------------------------------
def _deployment(ports: list[dict[str, Any]], name_suffix: str = "dpuset1") -> dict[str, Any]:
    return {
        "apiVersion": "svc.dpu.nvidia.com/v1alpha1",
        "kind": "DPUDeployment",
        "metadata": {"name": "example", "namespace": "dpf-operator-system"},
        "spec": {
            "dpus": {
                "bfb": "bf-bundle",
                "flavor": "dpf-provisioning-hbn-ovn",
                "dpuSets": [{"nameSuffix": name_suffix}],
            },
            "services": {"hbn": {"serviceTemplate": "hbn", "serviceConfiguration": "hbn"}},
            "serviceChains": [{"ports": ports}],
        },
    }


SERVICE_PORT = {"service": {"name": "hbn", "interface": "p0_if"}}
IFC_PORT = {"serviceInterface": {"matchLabels": {"uplink": "p0"}}}


def test_port_is_exactly_one_of_service_or_service_interface() -> None:
    assert _admit(_deployment([SERVICE_PORT]))
    assert _admit(_deployment([IFC_PORT]))
    assert set(_causes(_deployment([{**SERVICE_PORT, **IFC_PORT}]))) == {"spec.serviceChains[0].ports[0]"}
    assert set(_causes(_deployment([IFC_PORT, {}]))) == {"spec.serviceChains[0].ports[1]"}


def test_name_suffix_between_1_and_63() -> None:
    assert _admit(_deployment([IFC_PORT], name_suffix="s" * 63))
    assert set(_causes(_deployment([IFC_PORT], name_suffix="s" * 64))) == {"spec.dpus.dpuSets[0].nameSuffix"}
    assert set(_causes(_deployment([IFC_PORT], name_suffix=""))) == {"spec.dpus.dpuSets[0].nameSuffix"}


def test_deployment_ports_between_1_and_50() -> None:
    assert _admit(_deployment([IFC_PORT] * 50))
    assert set(_causes(_deployment([IFC_PORT] * 51))) == {"spec.serviceChains[0].ports"}


def test_template_resource_requirements_are_quantities() -> None:
    raw = {
        "apiVersion": "svc.dpu.nvidia.com/v1alpha1",
        "kind": "DPUServiceTemplate",
        "metadata": {"name": "hbn", "namespace": "dpf-operator-system"},
        "spec": {
            "deploymentServiceName": "hbn",
            "helmChart": {"source": {"repoURL": "https://r/c", "version": "1"}},
            "resourceRequirements": {"memory": "6Gi", "cpu": "500m", "nvidia.com/bf_sf": 3},
        },
    }
    assert _admit(raw)
    raw["spec"]["resourceRequirements"]["memory"] = "lots"
    assert set(_causes(raw)) == {"spec.resourceRequirements.memory"}


# --- ServiceInterface ------------------------------------------------------------------------------------------------------
SUB_STRUCTS: dict[str, dict[str, Any]] = {
    "physical": {"interfaceName": "p0"},
    "pf": {"pfID": 0},
    "vf": {"pfID": 0, "vfID": 3, "parentInterfaceRef": "pf0"},
    "vlan": {"vlanID": 100, "parentInterfaceRef": "p0"},
    "service": {"serviceID": "doca-hbn", "network": "mybrhbn", "interfaceName": "p0_if"},
}


def _service_interface(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "svc.dpu.nvidia.com/v1alpha1",
        "kind": "ServiceInterface",
        "metadata": {"name": "si", "namespace": "dpf-operator-system"},
        "spec": spec,
    }


@pytest.mark.parametrize("itype", sorted(SUB_STRUCTS))
def test_interface_type_needs_its_sub_struct(itype: str) -> None:
    assert _admit(_service_interface({"interfaceType": itype, itype: SUB_STRUCTS[itype]}))
    causes = _causes(_service_interface({"interfaceType": itype}))
    assert set(causes) == {"spec"}
    assert f"for interfaceType={itype}, {itype} must be set" in causes["spec"]
    # Another type's sub-struct does not stand in for the right one.
    other = "pf" if itype != "pf" else "physical"
    assert set(_causes(_service_interface({"interfaceType": itype, other: SUB_STRUCTS[other]}))) == {"spec"}


def test_ovn_needs_no_sub_struct() -> None:
    obj = _admit(_service_interface({"interfaceType": "ovn"}))
    assert isinstance(obj, svc.ServiceInterface) and obj.spec.interface_type == svc.INTERFACE_TYPE_OVN


@pytest.mark.parametrize(
    ("itype", "missing"), [("vf", "vfID"), ("vf", "pfID"), ("vlan", "vlanID"), ("service", "network")]
)
def test_sub_struct_fields_are_required(itype: str, missing: str) -> None:
    sub = {k: v for k, v in SUB_STRUCTS[itype].items() if k != missing}
    causes = _causes(_service_interface({"interfaceType": itype, itype: sub}))
    assert set(causes) == {f"spec.{itype}.{missing}"}


def test_initialism_fields_use_dpf_wire_names() -> None:
    obj = _admit(_service_interface({"interfaceType": "vf", "vf": SUB_STRUCTS["vf"]}))
    assert isinstance(obj, svc.ServiceInterface) and obj.spec.vf is not None
    assert (obj.spec.vf.pf_id, obj.spec.vf.vf_id) == (0, 3)
    assert obj.wire()["spec"]["vf"] == {"vfID": 3, "pfID": 0, "parentInterfaceRef": "pf0"}
    assert set(_causes(_service_interface({"interfaceType": "pf", "pf": {"pfId": 0}}))) == {
        "spec.pf.pfID",
        "spec.pf.pfId",
    }


def test_service_network_splits_namespace_and_name() -> None:
    assert svc.ServiceDef(serviceID="s", network="ns1/nad", interfaceName="i").get_network() == ("ns1", "nad")
    assert svc.ServiceDef(serviceID="s", network="nad", interfaceName="i").get_network() == ("", "nad")
    assert svc.ServiceDef(serviceID="s", network="a/b/c", interfaceName="i").get_network() == ("", "")


def test_interface_rule_applies_inside_the_set_and_dpu_service_interface_templates() -> None:
    raw = {
        "apiVersion": "svc.dpu.nvidia.com/v1alpha1",
        "kind": "ServiceInterfaceSet",
        "metadata": {"name": "s", "namespace": "dpf-operator-system"},
        "spec": {"template": {"spec": {"interfaceType": "physical"}}},
    }
    assert set(_causes(raw)) == {"spec.template.spec"}


# --- ServiceChain ----------------------------------------------------------------------------------------------------------
def _chain(switches: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "svc.dpu.nvidia.com/v1alpha1",
        "kind": "ServiceChain",
        "metadata": {"name": "c", "namespace": "dpf-operator-system"},
        "spec": {"switches": switches},
    }


def _port(n_labels: int = 1, ipam_labels: int | None = None) -> dict[str, Any]:
    ifc: dict[str, Any] = {"matchLabels": {f"k{i}": "v" for i in range(n_labels)}}
    if ipam_labels is not None:
        ifc["ipam"] = {"matchLabels": {f"p{i}": "v" for i in range(ipam_labels)}}
    return {"serviceInterface": ifc}


def test_switches_and_ports_between_1_and_50() -> None:
    assert _admit(_chain([{"ports": [_port()] * 50}] * 50))
    assert set(_causes(_chain([{"ports": [_port()]}] * 51))) == {"spec.switches"}
    assert set(_causes(_chain([{"ports": [_port()] * 51}]))) == {"spec.switches[0].ports"}
    assert set(_causes(_chain([]))) == {"spec.switches"}
    assert set(_causes(_chain([{"ports": []}]))) == {"spec.switches[0].ports"}


def test_match_labels_between_1_and_50_entries() -> None:
    assert _admit(_chain([{"ports": [_port(50, ipam_labels=50)]}]))
    causes = _causes(_chain([{"ports": [_port(51, ipam_labels=0), _port(0)]}]))
    assert set(causes) == {
        "spec.switches[0].ports[0].serviceInterface.matchLabels",
        "spec.switches[0].ports[0].serviceInterface.ipam.matchLabels",
        "spec.switches[0].ports[1].serviceInterface.matchLabels",
    }


# --- DPUServiceCredentialRequest -----------------------------------------------------------------------------------------
def _credential_request(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"serviceAccount": {"name": "sa"}, "type": "kubeconfig", "secret": {"name": "s"}}
    base.update(spec)
    return {
        "apiVersion": "svc.dpu.nvidia.com/v1alpha1",
        "kind": "DPUServiceCredentialRequest",
        "metadata": {"name": "cr", "namespace": "default"},
        "spec": base,
    }


@pytest.mark.parametrize("duration", ["10m", "1h", "1.5h", "2h45m", "100ms", "30s", "24h"])
def test_duration_accepts_go_durations(duration: str) -> None:
    assert _admit(_credential_request(duration=duration))


@pytest.mark.parametrize("duration", ["1d", "h", "10", "-1h", "1h ", "1.h", "1w"])
def test_duration_refuses_others(duration: str) -> None:
    assert set(_causes(_credential_request(duration=duration))) == {"spec.duration"}


@pytest.mark.parametrize("stype", ["kubeconfig", "tokenFile"])
def test_type_enum(stype: str) -> None:
    assert _admit(_credential_request(type=stype))
    assert set(_causes(_credential_request(type=stype.upper()))) == {"spec.type"}


def test_nil_namespace_resolves_to_default_not_the_objects() -> None:
    obj = _admit(_credential_request())
    assert isinstance(obj, svc.DPUServiceCredentialRequest)
    assert obj.spec.service_account.get_namespace() == "default"
    assert obj.spec.secret.namespace is None


def test_credential_request_status_fields() -> None:
    raw = _credential_request()
    raw["status"] = {
        "serviceAccount": "default/sa",
        "targetCluster": "dpu-cplane-tenant1/dpu-cplane-tenant1",
        "secret": "default/s",
        "expirationTimestamp": "2024-10-01T11:00:00Z",
        "issuedAt": "2024-10-01T10:00:00Z",
        "conditions": [
            {
                "type": "SecretReconciled",
                "status": "True",
                "reason": "Success",
                "lastTransitionTime": "2024-10-01T10:00:00Z",
            }
        ],
    }
    obj = admit_status_update(decode(raw, svc.DPUServiceCredentialRequest))
    assert obj.wire()["status"] == raw["status"] | {"conditions": [raw["status"]["conditions"][0] | {"message": ""}]}
    with pytest.raises(Invalid):
        decode({**raw, "status": {"observedGeneration": 1}}, svc.DPUServiceCredentialRequest)


# --- Status models ---------------------------------------------------------------------------------------------------------
def test_sets_report_number_applied_and_ready() -> None:
    (raw, *_) = _docs(MANIFESTS / "valid" / "dpu-cluster-side.yaml")
    raw["status"] = {"numberApplied": 1, "numberReady": 1, "observedGeneration": 2}
    obj = decode(raw, svc.ServiceInterfaceSet)
    assert isinstance(obj, svc.ServiceInterfaceSet)
    assert (obj.status.number_applied, obj.status.number_ready, obj.status.observed_generation) == (1, 1, 2)


def test_service_interface_and_chain_status_is_our_extension_and_optional() -> None:
    si = _admit(_service_interface({"interfaceType": "ovn"}))
    assert "status" not in si.wire()
    raw = si.wire() | {
        "status": {
            "observedGeneration": 1,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Success", "lastTransitionTime": "t", "message": ""}
            ],
        }
    }
    assert decode(raw, svc.ServiceInterface).wire()["status"] == raw["status"]


def test_empty_status_accepted_for_template_and_configuration() -> None:
    raw = {
        "apiVersion": "svc.dpu.nvidia.com/v1alpha1",
        "kind": "DPUServiceConfiguration",
        "metadata": {"name": "c", "namespace": "default"},
        "spec": {"deploymentServiceName": "hbn"},
        "status": {},
    }
    assert "status" not in decode(raw, svc.DPUServiceConfiguration).wire()
    assert set(_causes({**raw, "status": {"conditions": []}})) == {"status.conditions"}


def test_controllers_can_build_objects_with_defaults_and_private_copies() -> None:
    obj = svc.DPUServiceChain.new(
        "c", "ns", spec={"template": {"spec": {"template": {"spec": {"switches": [{"ports": [_port()]}]}}}}}
    )
    assert obj.api_version == "svc.dpu.nvidia.com/v1alpha1" and obj.kind == "DPUServiceChain"
    assert obj.status.conditions == []
    mine = obj.deepcopy()
    mine.status.observed_generation = 3
    mine.spec.template.spec.template.spec.switches[0].ports[0].service_interface.match_labels["x"] = "y"
    assert obj.status.observed_generation is None
    assert obj.spec.template.spec.template.spec.switches[0].ports[0].service_interface.match_labels == {"k0": "v"}


def test_wrong_api_version_or_kind_is_refused() -> None:
    raw = _dpuservice()
    with pytest.raises(Invalid) as info:
        decode({**raw, "apiVersion": "svc.dpu.nvidia.com/v1beta1"}, svc.DPUService)
    assert {c.field for c in info.value.causes} == {"apiVersion"}


def test_version_label_key_per_service() -> None:
    assert svc.dpuservice_version_label_key("hbn") == "svc.dpu.nvidia.com/dpuservice-hbn-version"


# --- ipam-validator.svc.dpu.nvidia.com -------------------------------------------------------------------------------------
def _ipam(namespace: str = "dpf-operator-system", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "svc.dpu.nvidia.com/v1alpha1",
        "kind": "DPUServiceIPAM",
        "metadata": {"name": "pool1", "namespace": namespace},
        "spec": spec,
    }


def _net(**kw: Any) -> dict[str, Any]:
    return {"network": "10.0.120.0/22", "gatewayIndex": 3, "prefixSize": 29} | kw


def _subnet(**kw: Any) -> dict[str, Any]:
    return {"subnet": "192.168.0.0/20", "gateway": "192.168.0.1", "perNodeIPCount": 256} | kw


def _update(old: dict[str, Any], new: dict[str, Any]) -> KubeObject:
    stored = _admit(old)
    return admit_update(decode(new, svc.DPUServiceIPAM), stored, Reader())


def _update_causes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(Invalid) as info:
        _update(old, new)
    return {c.field: c.message for c in info.value.causes}


def test_ipam_only_in_the_operator_namespace() -> None:
    assert _admit(_ipam(ipv4Network=_net()))
    causes = _causes(_ipam(namespace="default", ipv4Network=_net()))
    assert set(causes) == {"metadata.namespace"}
    assert "currently only 'dpf-operator-system' namespace is supported" in causes["metadata.namespace"]


def test_ipam_exactly_one_mode() -> None:
    assert _admit(_ipam(ipv4Subnet=_subnet()))
    assert "either ipv4Subnet or ipv4Network must be specified" in _causes(_ipam())["spec"]
    assert "but not both" in _causes(_ipam(ipv4Network=_net(), ipv4Subnet=_subnet()))["spec"]


def test_ipam_mode_switch_refused_on_update_only() -> None:
    assert _update(_ipam(ipv4Network=_net()), _ipam(ipv4Network=_net(gatewayIndex=1)))
    causes = _update_causes(_ipam(ipv4Network=_net()), _ipam(ipv4Subnet=_subnet()))
    assert set(causes) == {"spec"} and "transitioning from ipv4subnet to ipv4network" in causes["spec"]
    assert set(_update_causes(_ipam(ipv4Subnet=_subnet()), _ipam(ipv4Network=_net()))) == {"spec"}


@pytest.mark.parametrize("new", ["10.0.120.0/22", "10.0.120.0/21", "10.0.0.0/16", "10.0.121.7/22"])
def test_ipam_network_may_grow(new: str) -> None:
    assert _update(_ipam(ipv4Network=_net()), _ipam(ipv4Network=_net(network=new)))


@pytest.mark.parametrize("new", ["10.0.120.0/23", "10.0.124.0/22", "10.1.0.0/16"])
def test_ipam_network_may_not_shrink_or_move(new: str) -> None:
    causes = _update_causes(_ipam(ipv4Network=_net()), _ipam(ipv4Network=_net(network=new)))
    assert "you cannot shrink the ip subnet" in causes["spec.ipv4Network.network"]


def test_ipam_subnet_may_not_shrink() -> None:
    assert _update(_ipam(ipv4Subnet=_subnet()), _ipam(ipv4Subnet=_subnet(subnet="192.168.0.0/16")))
    causes = _update_causes(_ipam(ipv4Subnet=_subnet()), _ipam(ipv4Subnet=_subnet(subnet="192.168.0.0/24")))
    assert set(causes) == {"spec.ipv4Subnet.subnet"}


@pytest.mark.parametrize("network", ["10.0.120.0", "10.0.120.0/33", "banana/22", ""])
def test_ipam_network_must_be_a_cidr(network: str) -> None:
    assert set(_causes(_ipam(ipv4Network=_net(network=network)))) == {"spec.ipv4Network.network"}


def test_ipam_network_cidr_may_have_host_bits_like_go() -> None:
    assert _admit(_ipam(ipv4Network=_net(network="10.0.121.5/22")))


@pytest.mark.parametrize(("prefix", "ok"), [(22, True), (29, True), (32, True), (21, False), (33, False)])
def test_ipam_prefix_size_within_network(prefix: int, ok: bool) -> None:
    raw = _ipam(ipv4Network=_net(prefixSize=prefix))
    if ok:
        assert _admit(raw)
    else:
        assert set(_causes(raw)) == {"spec.ipv4Network.prefixSize"}


def test_ipam_exclusions_inside_network() -> None:
    assert _admit(_ipam(ipv4Network=_net(exclusions=["10.0.120.1", "10.0.123.255"])))
    causes = _causes(_ipam(ipv4Network=_net(exclusions=["10.0.120.1", "10.0.124.0", "10.0.120.256"])))
    assert set(causes) == {"spec.ipv4Network.exclusions[1]", "spec.ipv4Network.exclusions[2]"}
    assert "is not part of network" in causes["spec.ipv4Network.exclusions[1]"]
    assert "is not a valid IP" in causes["spec.ipv4Network.exclusions[2]"]


def test_ipam_allocations_inside_with_exact_prefix() -> None:
    assert _admit(_ipam(ipv4Network=_net(allocations={"dpu-a": "10.0.120.8/29", "dpu-b": "10.0.123.248/29"})))
    causes = _causes(
        _ipam(
            ipv4Network=_net(
                allocations={
                    "good": "10.0.120.8/29",
                    "outside": "10.0.124.0/29",
                    "wrong-prefix": "10.0.120.0/28",
                    "garbage": "10.0.120.8",
                }
            )
        )
    )
    assert set(causes) == {
        "spec.ipv4Network.allocations.outside",
        "spec.ipv4Network.allocations.wrong-prefix",
        "spec.ipv4Network.allocations.garbage",
    }
    assert "is not a valid subnet" in causes["spec.ipv4Network.allocations.garbage"]


def test_ipam_subnet_gateway_inside() -> None:
    causes = _causes(_ipam(ipv4Subnet=_subnet(gateway="192.168.16.1")))
    assert set(causes) == {"spec.ipv4Subnet.gateway"} and "is not part of subnet" in causes["spec.ipv4Subnet.gateway"]
    assert "is not a valid IP" in _causes(_ipam(ipv4Subnet=_subnet(gateway="gw")))["spec.ipv4Subnet.gateway"]
    assert set(_causes(_ipam(ipv4Subnet=_subnet(subnet="192.168.0.0")))) == {"spec.ipv4Subnet.subnet"}


@pytest.mark.parametrize("mode", ["ipv4Network", "ipv4Subnet"])
def test_ipam_routes(mode: str) -> None:
    def raw(routes: list[str], default_gateway: bool) -> dict[str, Any]:
        block = (_net if mode == "ipv4Network" else _subnet)(
            routes=[{"dst": d} for d in routes], defaultGateway=default_gateway
        )
        return _ipam(**{mode: block})

    assert _admit(raw(["10.20.0.0/16", "0.0.0.0/0"], default_gateway=False))
    assert _admit(raw(["10.20.0.0/16"], default_gateway=True))
    causes = _causes(raw(["10.20.0.0", "fd00::/64", "0.0.0.0/0"], default_gateway=True))
    assert set(causes) == {f"spec.{mode}.routes[0].dst", f"spec.{mode}.routes[1].dst", f"spec.{mode}.routes[2].dst"}
    assert "is not a valid subnet" in causes[f"spec.{mode}.routes[0].dst"]
    assert "is not same address family" in causes[f"spec.{mode}.routes[1].dst"]
    assert "is not allowed if 'defaultGateway' is true" in causes[f"spec.{mode}.routes[2].dst"]


def test_ipam_ipv6_default_route_with_default_gateway() -> None:
    # DPF parses with net.ParseCIDR, so an IPv6 "ipv4Network" passes and ::/0 is its default route.
    assert set(
        _causes(
            _ipam(ipv4Network=_net(network="fd00::/48", prefixSize=64, defaultGateway=True, routes=[{"dst": "::/0"}]))
        )
    ) == {"spec.ipv4Network.routes[0].dst"}


def test_ipam_schema_requires_network_and_prefix_size() -> None:
    assert set(_causes(_ipam(ipv4Network={"gatewayIndex": 3}))) == {
        "spec.ipv4Network.network",
        "spec.ipv4Network.prefixSize",
    }
    assert set(_causes(_ipam(ipv4Subnet={"subnet": "10.0.0.0/24"}))) == {
        "spec.ipv4Subnet.gateway",
        "spec.ipv4Subnet.perNodeIPCount",
    }


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (svc.DPUServiceSpec, "serviceID must be provided when interfaces are provided"),
        (svc.DPUDeploymentPort, "either service or serviceInterface must be specified"),
        (svc.ServiceInterfaceSpec, "for interfaceType=vf, vf must be set"),
    ],
)
def test_cel_rules_are_published_for_the_crd_renderer(model: type, message: str) -> None:
    ((rule, published),) = model.CEL_RULES
    assert message in published and rule.count("has(self.") >= 1
