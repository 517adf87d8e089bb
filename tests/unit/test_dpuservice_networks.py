"""The Multus networks annotation a DPUService's serviceDaemonSet gets: DPF decodes the user's entries into
multus' NetworkSelectionElement and marshals the merged list back, so the text is Go's encoding of that struct
(field order, unknown keys gone, map keys sorted), merged by interface and sorted by (name, interface)."""

from __future__ import annotations

import json
from typing import Any

from svc_world import OP_NS, World

from dpf_core.api.external import Application
from dpf_core.api.svc import DPUService, DPUServiceInterface
from dpf_core.controllers import dpuservice
from dpf_core.controllers.dpuservice import merge_networks, network_selection_element

NS = OP_NS
NETWORKS = "k8s.v1.cni.cncf.io/networks"

# The HBN-only guide's annotation (docs/guides/usecases/hbn_only/manifests/04-dpuservice-installation).
GUIDE = """[
{"name": "iprequest", "interface": "ip_lo", "cni-args": {"poolNames": ["loopback"], "poolType": "cidrpool"}},
{"name": "iprequest", "interface": "ip_pf0hpf", "cni-args": {"poolNames": ["pool1"], "poolType": "cidrpool", "allocateDefaultGateway": true}},
{"name": "iprequest", "interface": "ip_pf1hpf", "cni-args": {"poolNames": ["pool2"], "poolType": "cidrpool", "allocateDefaultGateway": true}}
]"""


def _interface(name: str, if_name: str, network: str = "mybrhbn") -> DPUServiceInterface:
    spec = {"interfaceType": "service", "service": {"serviceID": "doca-hbn", "network": network, "interfaceName": if_name}}
    return DPUServiceInterface.new(name, NS, spec={"template": {"spec": {"template": {"spec": spec}}}})


def _rendered(annotation: str, interfaces: dict[str, str]) -> str:
    w = World(dpuservice.controller())
    for name, if_name in interfaces.items():
        w.apply(_interface(name, if_name))
    w.apply(DPUService.new("doca-hbn", NS, spec={
        "serviceID": "doca-hbn", "interfaces": list(interfaces),
        "serviceDaemonSet": {"annotations": {NETWORKS: annotation}},
        "helmChart": {"source": {"repoURL": "https://helm.ngc.nvidia.com/nvidia/doca", "chart": "doca-hbn",
                                 "version": "1.0.1"}}}))
    w.run()
    app = w.host.get(Application, "dc1-doca-hbn", OP_NS)
    assert app.spec.source is not None and app.spec.source.helm is not None
    values: Any = app.spec.source.helm.values_object
    return str(values["serviceDaemonSet"]["annotations"][NETWORKS])


def test_the_hbn_only_guide_annotation_renders_as_dpf_marshals_it() -> None:
    text = _rendered(GUIDE, {"p0-sf": "p0_if", "p1-sf": "p1_if", "host-pf0-sf": "pf0hpf_if", "host-pf1-sf": "pf1hpf_if"})
    # cni-args is a Go map: its keys come out sorted (allocateDefaultGateway first), whatever the manifest's order.
    assert text == (
        '[{"name":"iprequest","interface":"ip_lo","cni-args":{"poolNames":["loopback"],"poolType":"cidrpool"}},'
        '{"name":"iprequest","interface":"ip_pf0hpf","cni-args":{"allocateDefaultGateway":true,"poolNames":["pool1"],"poolType":"cidrpool"}},'
        '{"name":"iprequest","interface":"ip_pf1hpf","cni-args":{"allocateDefaultGateway":true,"poolNames":["pool2"],"poolType":"cidrpool"}},'
        '{"name":"mybrhbn","interface":"p0_if","cni-args":null},{"name":"mybrhbn","interface":"p1_if","cni-args":null},'
        '{"name":"mybrhbn","interface":"pf0hpf_if","cni-args":null},'
        '{"name":"mybrhbn","interface":"pf1hpf_if","cni-args":null}]'
    )


def test_an_entry_is_the_struct_round_trip_field_order_known_keys_only() -> None:
    entry = {"cni-args": {"b": {"z": 1, "a": 2}, "a": [{"y": 1, "x": 2}]}, "interface": "net1", "Namespace": "ns",
             "name": "mybrsfc", "typo": "dropped", "ips": [], "mac": ""}
    out = network_selection_element(entry)
    assert list(out) == ["name", "namespace", "interface", "cni-args"]
    assert out["namespace"] == "ns"  # matched case-insensitively, as encoding/json does
    assert json.dumps(out["cni-args"], separators=(",", ":")) == '{"a":[{"x":2,"y":1}],"b":{"a":2,"z":1}}'
    # cni-args has no omitempty (nil is written null, an empty map stays); bandwidth and default-route are
    # pointers left out only when nil; a missing name is Go's "".
    assert network_selection_element({"interface": "x", "cni-args": {}}) == {"name": "", "interface": "x", "cni-args": {}}
    assert list(network_selection_element({"default-route": [], "DeviceID": "d", "interfacerequest": "i", "x": 1})) == [
        "name", "interfaceRequest", "deviceID", "cni-args", "default-route"]
    assert network_selection_element({"name": "n"})["cni-args"] is None


def test_a_user_entry_for_a_service_interface_wins_field_by_field() -> None:
    wanted = [network_selection_element({"name": "mybrhbn", "namespace": "dpf-operator-system", "interface": "p0_if"}),
              network_selection_element({"name": "mybrhbn", "interface": "p1_if"})]
    existing = [network_selection_element({"name": "custom", "interface": "p0_if", "mac": "02:00:00:00:00:01"})]
    merged = merge_networks(wanted, existing)
    # One entry per interface (DPF keys the merge by interface, not by name): the user's name and mac win, the
    # namespace the user left empty comes from the DPUServiceInterface's network.
    assert merged == [
        {"name": "custom", "namespace": "dpf-operator-system", "mac": "02:00:00:00:00:01", "interface": "p0_if",
         "cni-args": None},
        {"name": "mybrhbn", "interface": "p1_if", "cni-args": None},
    ]
    assert list(merged[0]) == ["name", "namespace", "mac", "interface", "cni-args"]


def test_an_annotation_that_is_not_a_list_of_objects_fails_with_dpfs_message() -> None:
    w = World(dpuservice.controller())
    w.apply(_interface("p0-sf", "p0_if"))
    w.apply(DPUService.new("doca-hbn", NS, spec={
        "serviceID": "doca-hbn", "interfaces": ["p0-sf"],
        "serviceDaemonSet": {"annotations": {NETWORKS: '{"name": "iprequest"}'}},
        "helmChart": {"source": {"repoURL": "https://helm.ngc.nvidia.com/nvidia/doca", "chart": "doca-hbn",
                                 "version": "1.0.1"}}}))
    w.run()
    [cond] = [c for c in w.host.get(DPUService, "doca-hbn", NS).status.conditions
              if c.type == "DPUServiceInterfaceReconciled"]
    assert (cond.status, cond.reason, cond.message) == (
        "False", "Error", "Unable to reconcile interfaces for failed to unmarshal existing networks: json: cannot "
        "unmarshal object into Go value of type []types.NetworkSelectionElement, expected format is a list of objects")
    assert w.host.try_get(Application, "dc1-doca-hbn", OP_NS) is None
