"""operator.dpu.nvidia.com: DPFOperatorConfig decoding, defaults, validation and component switches."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from dpf_core.api import admission
from dpf_core.api import operator as o
from dpf_core.api.meta import KubeObject
from dpf_core.errors import Invalid

# The user guide's config: pull secret, BFB PVC, DMS timeout, Kamaji cluster manager explicitly on.
USER_GUIDE = """
apiVersion: operator.dpu.nvidia.com/v1alpha1
kind: DPFOperatorConfig
metadata:
  name: dpfoperatorconfig
  namespace: dpf-operator-system
spec:
  imagePullSecrets:
  - dpf-pull-secret
  provisioningController:
    bfbPVCName: bfb-pvc
    dmsTimeout: 900
  kamajiClusterManager:
    disable: false
"""


class NoObjects:
    def list(self, cls: type[KubeObject], namespace: str | None = None) -> list[Any]:
        return []


def raw_config(**spec: Any) -> dict[str, Any]:
    raw = yaml.safe_load(USER_GUIDE)
    assert isinstance(raw, dict)
    raw["spec"].update(spec)
    return raw


def admit(raw: dict[str, Any]) -> o.DPFOperatorConfig:
    obj = admission.admit_create(admission.decode(raw, o.DPFOperatorConfig), NoObjects())
    assert isinstance(obj, o.DPFOperatorConfig)
    return obj


def bad_fields(raw: dict[str, Any]) -> set[str]:
    with pytest.raises(Invalid) as exc:
        admission.decode(raw, o.DPFOperatorConfig)
    return {c.field for c in exc.value.causes}


def test_user_guide_config_loads_with_defaults() -> None:
    cfg = admit(raw_config())
    assert cfg.spec.provisioning_controller.bfb_pvc_name == "bfb-pvc"
    assert cfg.spec.provisioning_controller.dms_timeout == 900
    assert cfg.spec.image_pull_secrets == ["dpf-pull-secret"]
    assert (cfg.spec.networking.control_plane_mtu, cfg.spec.networking.high_speed_mtu) == (1500, 1500)
    wire = cfg.wire()
    assert wire["spec"]["provisioningController"] == {"bfbPVCName": "bfb-pvc", "dmsTimeout": 900}
    assert wire["spec"]["networking"] == {"controlPlaneMTU": 1500, "highSpeedMTU": 1500}
    assert not cfg.paused


def test_networking_partial_block_keeps_the_other_default() -> None:
    cfg = admit(raw_config(networking={"highSpeedMTU": 9000}))
    assert (cfg.spec.networking.control_plane_mtu, cfg.spec.networking.high_speed_mtu) == (1500, 9000)


def test_every_component_but_the_static_cluster_manager_runs_by_default() -> None:
    cfg = admit(raw_config())
    enabled = cfg.enabled_components()
    assert o.STATIC_CLUSTER_MANAGER_NAME not in enabled
    assert set(enabled) == set(o.COMPONENT_NAMES) - {o.STATIC_CLUSTER_MANAGER_NAME}


def test_component_blocks_switch_components() -> None:
    cfg = admit(
        raw_config(
            staticClusterManager={},
            kamajiClusterManager={"disable": True},
            multus={"disable": True, "helmChart": "oci://ghcr.io/nvidia/dpu-networking"},
            ovsCNI={"image": "ghcr.io/nvidia/ovs-cni:v24.10.0"},
            dpuDetector={"collectors": {"psID": True}},
        )
    )
    assert not cfg.is_disabled(o.STATIC_CLUSTER_MANAGER_NAME)
    assert cfg.is_disabled(o.KAMAJI_CLUSTER_MANAGER_NAME)
    assert cfg.is_disabled(o.MULTUS_NAME)
    assert not cfg.is_disabled(o.OVS_CNI_NAME)
    assert cfg.spec.dpu_detector.collectors.ps_id is True
    names = [b.COMPONENT for b in cfg.component_configs()]
    assert names[0] == o.PROVISIONING_CONTROLLER_NAME
    wire = cfg.wire()["spec"]
    assert wire["ovsCNI"] == {"image": "ghcr.io/nvidia/ovs-cni:v24.10.0"}
    assert wire["dpuDetector"] == {"collectors": {"psID": True}}


def test_paused_override() -> None:
    assert admit(raw_config(overrides={"paused": True})).paused


def test_component_names_in_dpf_words() -> None:
    assert o.COMPONENT_NAMES == (
        "provisioning-controller",
        "dpuservice-controller",
        "servicechainset-controller",
        "dpudetector",
        "flannel",
        "multus",
        "sriov-device-plugin",
        "ovs-cni",
        "nvidia-k8s-ipam",
        "sfc-controller",
        "kamaji-cluster-manager",
        "static-cluster-manager",
        "ovs-helper",
    )
    assert [c.value for c in o.CONDITIONS] == [
        "Ready",
        "ImagePullSecretsReconciled",
        "SystemComponentsReconciled",
        "SystemComponentsReady",
    ]


@pytest.mark.parametrize(
    "image",
    [
        "nvcr.io/nvidia/doca/dpf-system:v24.10.0",
        "localhost:5000/dpf-system",
        "dpf-system@sha256:" + "0123456789abcdef" * 4,
        "[::1]:5000/dpf/dpf-system:dev",
    ],
)
def test_image_pattern_accepts_references(image: str) -> None:
    cfg = admit(raw_config(dpuServiceController={"image": image}))
    assert cfg.spec.dpu_service_controller.image == image


@pytest.mark.parametrize("image", ["Bad Image", "nvcr.io/UPPER/case:v1", "repo:tag:again", "repo@sha256:short"])
def test_image_pattern_refuses_non_references(image: str) -> None:
    assert bad_fields(raw_config(dpuServiceController={"image": image})) == {"spec.dpuServiceController.image"}


def test_every_bad_field_reported_together() -> None:
    raw = raw_config(
        networking={"controlPlaneMTU": 9217, "highSpeedMTU": -1},
        provisioningController={"bfbPVCName": "", "dmsTimeout": 0, "image": "Not An Image"},
        flannel={"helmChart": "http://charts.example.com/flannel"},
        sfcController={"helmChart": "ftp://x"},
    )
    assert bad_fields(raw) == {
        "spec.networking.controlPlaneMTU",
        "spec.networking.highSpeedMTU",
        "spec.provisioningController.bfbPVCName",
        "spec.provisioningController.dmsTimeout",
        "spec.provisioningController.image",
        "spec.flannel.helmChart",
        "spec.sfcController.helmChart",
    }


def test_provisioning_controller_and_pvc_are_required() -> None:
    raw = raw_config()
    del raw["spec"]["provisioningController"]
    assert bad_fields(raw) == {"spec.provisioningController"}
    raw = raw_config(provisioningController={"dmsTimeout": 900})
    assert bad_fields(raw) == {"spec.provisioningController.bfbPVCName"}


@pytest.mark.parametrize("mtu", [0, 1450, 9216])
def test_mtu_bounds_inclusive(mtu: int) -> None:
    cfg = admit(raw_config(networking={"controlPlaneMTU": mtu, "highSpeedMTU": mtu}))
    assert cfg.spec.networking.high_speed_mtu == mtu


def test_helm_chart_pattern() -> None:
    cfg = admit(raw_config(flannel={"helmChart": "https://charts.example.com/flannel"}))
    assert cfg.spec.flannel.helm_chart == "https://charts.example.com/flannel"


def test_unknown_spec_field_refused() -> None:
    assert bad_fields(raw_config(kamaji={"disable": True})) == {"spec.kamaji"}
