"""External kinds: right group/version/plural/scope, and nothing a real cluster sends is ever dropped."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import BaseModel

from dpf_core.api import external as ext
from dpf_core.api import registry
from dpf_core.api.admission import decode
from dpf_core.api.external import Node, Pod
from dpf_core.api.meta import KubeObject
from dpf_core.errors import Invalid

EXPECTED: list[tuple[type[KubeObject], str, str, str, bool]] = [
    (ext.Node, "", "v1", "nodes", False),
    (ext.Pod, "", "v1", "pods", True),
    (ext.Secret, "", "v1", "secrets", True),
    (ext.ConfigMap, "", "v1", "configmaps", True),
    (ext.ServiceAccount, "", "v1", "serviceaccounts", True),
    (ext.Namespace, "", "v1", "namespaces", False),
    (ext.Event, "", "v1", "events", True),
    (ext.Service, "", "v1", "services", True),
    (ext.Lease, "coordination.k8s.io", "v1", "leases", True),
    (ext.DaemonSet, "apps", "v1", "daemonsets", True),
    (ext.Deployment, "apps", "v1", "deployments", True),
    (ext.NodeMaintenance, "maintenance.nvidia.com", "v1alpha1", "nodemaintenances", True),
    (ext.TenantControlPlane, "kamaji.clastix.io", "v1alpha1", "tenantcontrolplanes", True),
    (ext.Application, "argoproj.io", "v1alpha1", "applications", True),
    (ext.AppProject, "argoproj.io", "v1alpha1", "appprojects", True),
    (ext.IPPool, "nv-ipam.nvidia.com", "v1alpha1", "ippools", True),
    (ext.CIDRPool, "nv-ipam.nvidia.com", "v1alpha1", "cidrpools", True),
    (ext.NetworkAttachmentDefinition, "k8s.cni.cncf.io", "v1", "network-attachment-definitions", True),
]


@pytest.mark.parametrize(
    ("cls", "group", "version", "plural", "namespaced"), EXPECTED, ids=lambda v: getattr(v, "__name__", None)
)
def test_kind_info(cls: type[KubeObject], group: str, version: str, plural: str, namespaced: bool) -> None:
    info = cls.KIND
    assert (info.group, info.version, info.plural, info.namespaced) == (group, version, plural, namespaced)
    assert info.dpf is False
    assert registry.lookup(info.api_version, info.kind) is cls
    assert registry.lookup_plural(group, plural) is cls
    obj = cls.model_validate(
        {"apiVersion": info.api_version, "kind": info.kind, "metadata": {"name": "x"}, **_minimal(cls)}
    )
    assert obj.api_version == info.api_version and obj.kind == info.kind


def test_all_external_kinds_listed() -> None:
    assert {c for c, *_ in EXPECTED} == set(ext.ALL_KINDS)


def test_status_subresources_as_in_the_real_crds() -> None:
    no_status = {c.KIND.kind for c in ext.ALL_KINDS if not c.KIND.status_subresource}
    assert no_status == {
        "Secret",
        "ConfigMap",
        "ServiceAccount",
        "Event",
        "Lease",
        "Application",
        "AppProject",
        "NetworkAttachmentDefinition",
    }
    assert ext.TenantControlPlane.KIND.short_names == ("tcp",)
    assert ext.Application.KIND.short_names == ("app", "apps")
    assert ext.NetworkAttachmentDefinition.KIND.singular == "network-attachment-definition"


def _minimal(cls: type[KubeObject]) -> dict[str, Any]:
    """The required parts of kinds whose spec has required fields."""
    return {
        ext.NodeMaintenance: {"spec": {"nodeName": "worker1", "requestorID": "dpu.nvidia.com"}},
        ext.TenantControlPlane: {
            "spec": {"controlPlane": {"service": {"serviceType": "NodePort"}}, "kubernetes": {"version": "v1.30.2"}}
        },
        ext.Application: {"spec": {"destination": {"name": "in-cluster"}, "project": "default"}},
        ext.IPPool: {"spec": {"subnet": "192.168.0.0/20", "perNodeBlockSize": 256}},
        ext.CIDRPool: {"spec": {"cidr": "10.0.120.0/22", "perNodeNetworkPrefix": 29}},
    }.get(cls, {})


# --- unknown fields survive everywhere ---------------------------------------------------------------------------------
POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "worker1-0000-04-00-dms", "namespace": "dpf-operator-system", "labels": {"app": "dms"}},
    "spec": {
        "nodeName": "worker1",
        "hostNetwork": True,
        "nodeSelector": {"kubernetes.io/hostname": "worker1"},
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}},
        "tolerations": [{"key": "dpu", "operator": "Equal", "value": "provisioning", "effect": "NoSchedule"}],
        "containers": [
            {
                "name": "dms",
                "image": "nvcr.io/nvidia/doca/dms:v2.9",
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"nvidia.com/bf_sf": 1}},
                "securityContext": {"privileged": True},
                "ports": [{"containerPort": 9339, "protocol": "TCP"}],
            }
        ],
        "dnsPolicy": "ClusterFirstWithHostNet",
        "priorityClassName": "system-node-critical",
    },
    "status": {
        "phase": "Running",
        "podIP": "10.0.0.11",
        "hostIP": "10.0.0.11",
        "qosClass": "Burstable",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-10-01T10:00:00Z"}],
        "containerStatuses": [
            {
                "name": "dms",
                "ready": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": "t"}},
                "imageID": "sha",
            }
        ],
    },
    "someFutureTopLevelField": {"a": 1},
}


def test_pod_round_trips_unknown_fields_at_every_level() -> None:
    pod = decode(copy.deepcopy(POD), ext.Pod)
    assert isinstance(pod, ext.Pod)
    assert pod.wire() == POD
    assert pod.deepcopy().wire() == POD
    assert pod.spec.containers[0].resources is not None
    assert pod.spec.containers[0].resources.requests == {"cpu": "100m", "memory": "128Mi"}
    assert (pod.status.phase, pod.status.pod_ip) == ("Running", "10.0.0.11")
    assert pod.spec.tolerations[0].effect == "NoSchedule"


def test_pod_phase_is_an_enum() -> None:
    with pytest.raises(Invalid) as info:
        decode({**POD, "status": {"phase": "Crashing"}}, ext.Pod)
    assert [c.field for c in info.value.causes] == ["status.phase"]


NODE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {"name": "worker1", "labels": {"feature.node.kubernetes.io/dpu-enabled": "true"}},
    "spec": {
        "taints": [{"key": "dpu", "value": "provisioning", "effect": "NoSchedule"}],
        "unschedulable": True,
        "podCIDR": "10.244.1.0/24",
    },
    "status": {
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": "2024-10-01T10:00:00Z",
                "lastTransitionTime": "2024-10-01T09:00:00Z",
            }
        ],
        "addresses": [{"type": "InternalIP", "address": "10.0.0.11"}, {"type": "Hostname", "address": "worker1"}],
        "allocatable": {"cpu": "15500m", "memory": "62Gi", "pods": "110"},
        "capacity": {"cpu": "16", "memory": "64Gi", "pods": 110},
        "nodeInfo": {"kubeletVersion": "v1.30.2"},
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
    },
}


def test_node_round_trip_and_readiness() -> None:
    node = decode(copy.deepcopy(NODE), ext.Node)
    assert isinstance(node, ext.Node)
    assert node.wire() == NODE
    assert node.namespace is None
    assert node.is_ready()
    assert node.spec.taints[0].key == "dpu" and node.spec.unschedulable
    assert node.status.addresses[0].address == "10.0.0.11"
    not_ready = node.deepcopy()
    not_ready.status.conditions[0].status = "Unknown"
    assert not not_ready.is_ready() and node.is_ready()


def test_secret_and_configmap_keep_data() -> None:
    raw = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "dpu-cplane-tenant1-admin-kubeconfig", "namespace": "dpu-cplane-tenant1"},
        "type": "Opaque",
        "data": {"admin.conf": "YXBpVmVyc2lvbjogdjE="},
        "stringData": {"extra": "plain"},
    }
    assert decode(copy.deepcopy(raw), ext.Secret).wire() == raw
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "d"}, "data": {"k": "v"}}
    assert decode(copy.deepcopy(cm), ext.ConfigMap).wire() == cm


def test_event_shape_and_type_enum() -> None:
    raw = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "bf-bundle.17f", "namespace": "dpf-operator-system"},
        "involvedObject": {
            "apiVersion": "provisioning.dpu.nvidia.com/v1alpha1",
            "kind": "BFB",
            "name": "bf-bundle",
            "namespace": "dpf-operator-system",
            "uid": "1234",
        },
        "reason": "SuccessfulDownload",
        "message": "BFB downloaded",
        "type": "Normal",
        "count": 1,
        "firstTimestamp": "2024-10-01T10:00:00Z",
        "lastTimestamp": "2024-10-01T10:00:00Z",
        "source": {"component": "bfb-controller"},
        "reportingComponent": "bfb-controller",
        "reportingInstance": "provisioning-controller-manager-0",
    }
    ev = decode(copy.deepcopy(raw), ext.Event)
    assert isinstance(ev, ext.Event)
    assert ev.wire() == raw and ev.involved_object.kind == "BFB"
    with pytest.raises(Invalid):
        decode({**raw, "type": "Info"}, ext.Event)


def test_node_maintenance_crd_defaults() -> None:
    raw = {
        "apiVersion": "maintenance.nvidia.com/v1alpha1",
        "kind": "NodeMaintenance",
        "metadata": {"name": "worker1", "namespace": "dpf-operator-system"},
        "spec": {
            "nodeName": "worker1",
            "requestorID": "dpu.nvidia.com",
            "additionalRequestors": ["provisioning.dpu.nvidia.com"],
            "drainSpec": {"force": True, "deleteEmptyDir": True},
        },
    }
    nm = decode(raw, ext.NodeMaintenance)
    assert isinstance(nm, ext.NodeMaintenance)
    wire = nm.wire()
    assert wire["spec"]["cordon"] is True
    assert wire["spec"]["drainSpec"] == {"force": True, "deleteEmptyDir": True, "timeoutSeconds": 300}
    assert wire["spec"]["requestorID"] == "dpu.nvidia.com"
    status = {
        "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "lastTransitionTime": "t", "message": ""}]
    }
    done = decode({**raw, "status": status}, ext.NodeMaintenance)
    assert (
        isinstance(done, ext.NodeMaintenance) and done.status.conditions[0].type == ext.NODE_MAINTENANCE_CONDITION_READY
    )
    with pytest.raises(Invalid) as info:
        decode({**raw, "spec": {"nodeName": "worker1"}}, ext.NodeMaintenance)
    assert [c.field for c in info.value.causes] == ["spec.requestorID"]


def test_tenant_control_plane_version_status_and_kubeconfig_secret() -> None:
    raw = {
        "apiVersion": "kamaji.clastix.io/v1alpha1",
        "kind": "TenantControlPlane",
        "metadata": {"name": "dpu-cplane-tenant1", "namespace": "dpu-cplane-tenant1"},
        "spec": {
            "dataStore": "default",
            "controlPlane": {
                "deployment": {"replicas": 3, "nodeSelector": {"node-role.kubernetes.io/control-plane": ""}},
                "service": {"serviceType": "NodePort"},
            },
            "kubernetes": {
                "version": "v1.30.2",
                "kubelet": {"cgroupfs": "systemd"},
                "admissionControllers": ["ResourceQuota", "LimitRanger"],
            },
            "networkProfile": {"address": "10.0.110.254", "port": 31053, "certSANs": ["10.0.110.254"]},
            "addons": {"coreDNS": {}, "kubeProxy": {}},
        },
        "status": {
            "kubeconfig": {"admin": {"secretName": "dpu-cplane-tenant1-admin-kubeconfig", "checksum": "abc"}},
            "kubernetesResources": {
                "version": {"version": "v1.30.2", "status": "Ready"},
                "deployment": {"replicas": 3},
            },
            "controlPlaneEndpoint": "10.0.110.254:31053",
            "kubeadmPhase": {"bootstrapToken": {"checksum": "x"}},
        },
    }
    tcp = decode(copy.deepcopy(raw), ext.TenantControlPlane)
    assert isinstance(tcp, ext.TenantControlPlane)
    assert tcp.wire() == raw
    assert tcp.version_status() == ext.TCP_VERSION_READY
    assert tcp.status.kubeconfig is not None and tcp.status.kubeconfig.admin is not None
    assert tcp.status.kubeconfig.admin.secret_name == "dpu-cplane-tenant1-admin-kubeconfig"
    fresh = decode({k: v for k, v in raw.items() if k != "status"}, ext.TenantControlPlane)
    assert isinstance(fresh, ext.TenantControlPlane) and fresh.version_status() is None
    with pytest.raises(Invalid):
        decode({**raw, "status": {"kubernetesResources": {"version": {"status": "Fine"}}}}, ext.TenantControlPlane)


APPLICATION: dict[str, Any] = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "Application",
    "metadata": {
        "name": "dpu-cplane-tenant1-doca-hbn",
        "namespace": "dpf-operator-system",
        "finalizers": ["resources-finalizer.argocd.argoproj.io"],
    },
    "spec": {
        "project": "doca-platform-project-dpu",
        "source": {
            "repoURL": "helm.ngc.nvidia.com/nvidia/doca",
            "chart": "doca-hbn",
            "targetRevision": "1.0.1",
            "helm": {"releaseName": "doca-hbn", "valuesObject": {"serviceDaemonSet": {"labels": {"a": "b"}}}},
        },
        "destination": {"name": "dpu-cplane-tenant1", "namespace": "dpf-operator-system"},
        "syncPolicy": {"automated": {"prune": True, "selfHeal": True}, "syncOptions": ["CreateNamespace=true"]},
        "revisionHistoryLimit": 5,
    },
    "status": {
        "sync": {"status": "Synced", "revision": "1.0.1", "comparedTo": {"source": {}}},
        "health": {"status": "Healthy"},
        "operationState": {"phase": "Succeeded"},
    },
}


def test_application_round_trip_and_readiness() -> None:
    app = decode(copy.deepcopy(APPLICATION), ext.Application)
    assert isinstance(app, ext.Application)
    assert app.wire() == APPLICATION
    assert app.is_synced_and_healthy()
    assert app.spec.source is not None and app.spec.source.helm is not None
    assert app.spec.source.helm.values_object == {"serviceDaemonSet": {"labels": {"a": "b"}}}
    progressing = app.deepcopy()
    assert progressing.status.health is not None
    progressing.status.health.status = "Progressing"
    assert not progressing.is_synced_and_healthy()
    fresh = decode({k: v for k, v in APPLICATION.items() if k != "status"}, ext.Application)
    assert isinstance(fresh, ext.Application) and not fresh.is_synced_and_healthy()


def test_app_project() -> None:
    raw = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": "doca-platform-project-dpu", "namespace": "dpf-operator-system"},
        "spec": {
            "sourceRepos": ["*"],
            "destinations": [{"name": "dpu-cplane-tenant1", "namespace": "*"}],
            "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
        },
    }
    proj = decode(copy.deepcopy(raw), ext.AppProject)
    assert isinstance(proj, ext.AppProject)
    assert proj.wire() == raw and proj.spec.destinations[0].namespace == "*"


def test_nvipam_pools_use_ip_initialisms() -> None:
    cidr = {
        "apiVersion": "nv-ipam.nvidia.com/v1alpha1",
        "kind": "CIDRPool",
        "metadata": {"name": "pool1", "namespace": "dpf-operator-system"},
        "spec": {
            "cidr": "10.0.120.0/22",
            "gatewayIndex": 3,
            "perNodeNetworkPrefix": 29,
            "exclusions": [{"startIP": "10.0.120.1", "endIP": "10.0.120.1"}],
            "staticAllocations": [{"nodeName": "dpu-node-1", "prefix": "10.0.120.8/29"}],
            "routes": [{"dst": "10.20.0.0/16"}],
        },
        "status": {"allocations": [{"nodeName": "dpu-node-1", "gateway": "10.0.120.11", "prefix": "10.0.120.8/29"}]},
    }
    pool = decode(copy.deepcopy(cidr), ext.CIDRPool)
    assert isinstance(pool, ext.CIDRPool)
    assert pool.wire() == cidr and pool.spec.exclusions[0].start_ip == "10.0.120.1"
    assert pool.status.allocations[0].gateway == "10.0.120.11"
    ippool = {
        "apiVersion": "nv-ipam.nvidia.com/v1alpha1",
        "kind": "IPPool",
        "metadata": {"name": "shared", "namespace": "dpf-operator-system"},
        "spec": {"subnet": "192.168.0.0/20", "perNodeBlockSize": 256, "gateway": "192.168.0.1"},
        "status": {"allocations": [{"nodeName": "dpu-node-1", "startIP": "192.168.0.2", "endIP": "192.168.1.1"}]},
    }
    ip = decode(copy.deepcopy(ippool), ext.IPPool)
    assert isinstance(ip, ext.IPPool)
    assert ip.wire() == ippool and ip.status.allocations[0].end_ip == "192.168.1.1"
    # A pool nobody allocated from yet reads as having no status at all.
    assert "status" not in decode({k: v for k, v in ippool.items() if k != "status"}, ext.IPPool).wire()


def test_network_attachment_definition_config_is_a_string() -> None:
    raw = {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {
            "name": "mybrsfc",
            "namespace": "dpf-operator-system",
            "annotations": {"k8s.v1.cni.cncf.io/resourceName": "nvidia.com/bf_sf"},
        },
        "spec": {"config": '{"cniVersion": "0.4.0", "type": "ovs", "bridge": "br-sfc", "ipam": {"type": "nv-ipam"}}'},
    }
    nad = decode(copy.deepcopy(raw), ext.NetworkAttachmentDefinition)
    assert nad.wire() == raw
    with pytest.raises(Invalid):
        decode({**raw, "spec": {"config": {"type": "ovs"}}}, ext.NetworkAttachmentDefinition)


def test_workloads_and_lease_round_trip() -> None:
    ds = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "dpu-cplane-tenant1-keepalived", "namespace": "dpu-cplane-tenant1"},
        "spec": {
            "selector": {"matchLabels": {"app": "keepalived"}},
            "template": {
                "metadata": {"labels": {"app": "keepalived"}},
                "spec": {
                    "hostNetwork": True,
                    "containers": [{"name": "keepalived", "image": "osixia/keepalived:2.0.20"}],
                },
            },
        },
        "status": {"desiredNumberScheduled": 3, "numberReady": 3, "numberAvailable": 3},
    }
    assert decode(copy.deepcopy(ds), ext.DaemonSet).wire() == ds
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "dpuservice-controller-manager", "namespace": "dpf-operator-system"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"spec": {"containers": [{"name": "m"}]}},
        },
        "status": {
            "replicas": 1,
            "readyReplicas": 1,
            "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}],
        },
    }
    d = decode(copy.deepcopy(dep), ext.Deployment)
    assert isinstance(d, ext.Deployment)
    assert d.wire() == dep and d.status.ready_replicas == 1
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "dpuservice-controller", "namespace": "dpf-operator-system"},
        "spec": {"holderIdentity": "pod-1", "leaseDurationSeconds": 15, "renewTime": "2024-10-01T10:00:00.000000Z"},
    }
    assert decode(copy.deepcopy(lease), ext.Lease).wire() == lease


def test_external_kinds_built_by_controllers() -> None:
    ns = ext.Namespace.new("dpf-operator-system")
    assert ns.wire() == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dpf-operator-system"}}
    sa = ext.ServiceAccount.new("ovn-dpu", "dpf-operator-system", automountServiceAccountToken=False)
    assert sa.wire()["automountServiceAccountToken"] is False
    svc = ext.Service.new(
        "dpu-cplane-tenant1",
        "dpu-cplane-tenant1",
        spec={
            "type": "NodePort",
            "selector": {ext.LABEL_KAMAJI_NAME: "dpu-cplane-tenant1"},
            "ports": [{"name": "kube-apiserver", "port": 6443}],
        },
    )
    assert svc.spec.ports[0].port == 6443 and "status" not in svc.wire()


@pytest.mark.parametrize("raw", [
    {},
    {"status": {}},
    {"status": {"phase": "Running"}},
    {"status": {"conditions": []}},
    {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
    {"status": {"podIP": None}},
    {"spec": {"containers": [{"name": "c", "image": "i"}]}, "status": {"containerStatuses": []}},
    {"status": {"someFutureField": {"x": 1}}},
    {"status": {"someFutureField": None}},
])
def test_a_nested_struct_reads_as_absent_exactly_when_its_dump_is_empty(raw: dict[str, Any]) -> None:
    """external._blank decides `_sub` fields without dumping; it must agree with the dump it replaces."""
    from dpf_core.api.external import _blank

    for cls, ns in ((Pod, "ns"), (Node, None)):
        obj = cls.model_validate({"apiVersion": "v1", "kind": cls.KIND.kind, "metadata": {"name": "a", "namespace": ns}, **raw})
        for name in type(obj).model_fields:
            value = getattr(obj, name)
            if isinstance(value, BaseModel):
                assert _blank(value) == (not value.model_dump(exclude_none=True)), (cls.KIND.kind, name, raw)
