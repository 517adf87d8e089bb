"""The text the Pod IPAM injector patches into `k8s.v1.cni.cncf.io/networks`: DPF parses the annotation with multus
v4.0.2's GetPodNetwork and writes json.Marshal of the []*NetworkSelectionElement back, so the result is Go's
encoding of that struct, not the user's text with cni-args spliced in."""

from __future__ import annotations

import json
import logging

import pytest
from test_nvipam import NS, World, _chain_setup, _pod

from dpf_core.api.external import CIDRPool, Pod
from dpf_core.api.svc import ServiceChain
from dpf_core.controllers.ipam_injector import NetworkAnnotationError, go_map, parse_networks

NETWORKS = "k8s.v1.cni.cncf.io/networks"

# An HBN-style pod as a user writes it: pretty-printed, keys in any order and case, an empty namespace, a key multus
# does not know, empty omitempty fields and a hand-written cni-args whose keys are not sorted.
HBN_POD = """[
  {"interface": "net1", "Name": "mybrsfc", "namespace": "", "comment": "chained to p0"},
  {"name": "iprequest", "interface": "ip_lo", "cni-args": {"poolType": "cidrpool", "poolNames": ["loopback"]}},
  {"name": "mybrhbn", "namespace": "other-ns", "interface": "p1_if", "mac": "", "ips": []}
]"""


def _world_with_pool() -> World:
    w = World(1)
    w.store.create(CIDRPool.new("pool1", NS, metadata={"name": "pool1", "namespace": NS, "labels": {"pool": "one"}},
                                spec={"cidr": "10.0.0.0/16", "perNodeNetworkPrefix": 24, "gatewayIndex": 1}))
    _chain_setup(w, {"matchLabels": {"pool": "one"}, "defaultGateway": True})
    return w


def test_a_realistic_pod_annotation_is_rewritten_as_go_marshals_the_multus_structs() -> None:
    w = _world_with_pool()
    w.store.create(_pod(HBN_POD))
    w.run()
    assert w.store.get(Pod, "app-pod", NS).metadata.annotations[NETWORKS] == (
        f'[{{"name":"mybrsfc","namespace":"{NS}","interface":"net1",'
        '"cni-args":{"allocateDefaultGateway":true,"poolNames":["pool1"],"poolType":"cidrpool"}},'
        f'{{"name":"iprequest","namespace":"{NS}","interface":"ip_lo",'
        '"cni-args":{"poolNames":["loopback"],"poolType":"cidrpool"}},'
        '{"name":"mybrhbn","namespace":"other-ns","interface":"p1_if","cni-args":null}]'
    )


def test_the_comma_form_becomes_json_with_the_pods_namespace() -> None:
    w = _world_with_pool()
    w.store.create(_pod("mybrsfc@net1, other-ns/mybrhbn@p1_if"))
    w.run()
    assert w.store.get(Pod, "app-pod", NS).metadata.annotations[NETWORKS] == (
        f'[{{"name":"mybrsfc","namespace":"{NS}","interface":"net1",'
        '"cni-args":{"allocateDefaultGateway":true,"poolNames":["pool1"],"poolType":"cidrpool"}},'
        '{"name":"mybrhbn","namespace":"other-ns","interface":"p1_if","cni-args":null}]'
    )


def test_the_rewrite_is_a_fixed_point() -> None:
    w = _world_with_pool()
    w.store.create(_pod(HBN_POD))
    w.run()
    first = w.store.get(Pod, "app-pod", NS)
    w.run(61)  # two 30 s retries for the interfaces without a chain port
    again = w.store.get(Pod, "app-pod", NS)
    assert again.metadata.annotations[NETWORKS] == first.metadata.annotations[NETWORKS]
    assert again.metadata.resource_version == first.metadata.resource_version


def test_html_characters_are_escaped_as_go_does() -> None:
    w = _world_with_pool()
    w.store.create(_pod('[{"name":"mybrsfc","interface":"net1"},{"name":"a&b","interface":"x<y>"}]'))
    w.run()
    text = w.store.get(Pod, "app-pod", NS).metadata.annotations[NETWORKS]
    assert text.endswith(f'{{"name":"a\\u0026b","namespace":"{NS}","interface":"x\\u003cy\\u003e","cni-args":null}}]')


def test_parse_matches_keys_case_insensitively_and_defaults_the_namespace() -> None:
    assert parse_networks('[{"NAME":"n","Interface":"eth1","junk":true}]', "pods") == [
        {"name": "n", "namespace": "pods", "interface": "eth1", "cni-args": None}]
    # A quote anywhere selects the JSON form, as multus' strings.ContainsAny does.
    with pytest.raises(NetworkAnnotationError, match="JSON format"):
        parse_networks('n@"eth1"', "pods")
    with pytest.raises(NetworkAnnotationError, match="JSON format"):
        parse_networks('{"name":"n"}', "pods")


def test_a_network_without_a_name_decodes_like_go() -> None:
    # Go's struct has no required fields: a missing name is "" rather than a decode error.
    [network] = parse_networks('[{"interface":"eth1"}]', "pods")
    assert json.dumps(network) == '{"name": "", "namespace": "pods", "interface": "eth1", "cni-args": null}'


def test_cni_args_is_written_null_and_the_deprecated_interface_request_stands_in() -> None:
    # multus v4.0.2's struct has no omitempty on cni-args (DPF's podipam test expects `"cni-args":null` for a
    # network the chain does not cover), keeps deviceID and interfaceRequest, and copies interfaceRequest into an
    # empty interface; the chain port is then found through it.
    w = _world_with_pool()
    w.store.create(_pod('[{"name":"mybrsfc","interfaceRequest":"net1"},'
                        '{"name":"othernet","interface":"dummy","deviceID":"0000:03:00.2","cni-args":null}]'))
    w.run()
    assert w.store.get(Pod, "app-pod", NS).metadata.annotations[NETWORKS] == (
        f'[{{"name":"mybrsfc","namespace":"{NS}","interface":"net1","interfaceRequest":"net1",'
        '"cni-args":{"allocateDefaultGateway":true,"poolNames":["pool1"],"poolType":"cidrpool"}},'
        f'{{"name":"othernet","namespace":"{NS}","interface":"dummy","deviceID":"0000:03:00.2","cni-args":null}}]'
    )


def test_go_map_prints_like_fmt() -> None:
    assert go_map({"svc.dpu.nvidia.com/service": "fw", "app": "a"}) == "map[app:a svc.dpu.nvidia.com/service:fw]"
    assert go_map({}) == "map[]"


def test_unresolvable_chain_ports_are_logged_in_dpfs_words(caplog: pytest.LogCaptureFixture) -> None:
    w = World(1)
    w.store.create(ServiceChain.new("chain-n001", NS, spec={"node": "n001", "switches": [{"ports": [
        {"serviceInterface": {"matchLabels": {"svc": "gone", "app": "x"}}}]}]}))
    w.store.create(_pod("mybrsfc@net1"))
    # On the "dpf" logger itself: a test that ran the benchmarks' CLI logging may have left it at ERROR.
    with caplog.at_level(logging.DEBUG, logger="dpf"):
        w.run()
    assert (f"failed to get serviceInterface for chain. no serviceInterface in namespace({NS}) "
            "matching labels(map[app:x svc:gone]) on node(n001) found") in caplog.text
