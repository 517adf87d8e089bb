"""ParsedOnceOvs: the twin's OVS port that parses one shape of chain flows once and applies it with each
chain's own cookie must leave every switch exactly as a plain parse of each bundle does."""

from __future__ import annotations

import pytest

from dpf_core.controllers import sfc
from dpf_sim.ovs import ModelOvs, OvsError
from dpf_sim.servicechain import ParsedOnceOvs, ServiceChainParams, cookie_template, dpu_datapath

PARAMS = ServiceChainParams()


def _switch(node: str) -> tuple[ModelOvs, object]:
    dp = dpu_datapath(lambda: 0.0, node, PARAMS)
    return ModelOvs(dp), dp


def _ported(ovs: ModelOvs) -> None:
    ovs.ensure_port(sfc.SFC_BRIDGE, "pf1hpf", sfc.IFACE_TYPE_DPDK)
    ovs.ensure_port(sfc.SFC_BRIDGE, "pf0vf1", sfc.IFACE_TYPE_DPDK)


def _flows(chain: str, ports: list[str]) -> list[str]:
    return sfc.chain_flows(sfc.chain_cookie("dpf-operator-system", chain), ports)


def test_cached_shapes_apply_each_chains_own_cookie_as_a_plain_parse_would() -> None:
    shared: dict[object, object] = {}
    for node in ("worker-1", "worker-2", "worker-3"):
        plain, plain_dp = _switch(node)
        cached_dp = dpu_datapath(lambda: 0.0, node, PARAMS)
        cached = ParsedOnceOvs(cached_dp, shared)
        for ovs in (plain, cached):
            _ported(ovs)
            for chain, ports in ((f"p0-to-host-pf1-{node}", ["1", "3"]), (f"p1-to-host-vf1-{node}", ["2", "4"])):
                ovs.add_flows_bundle(sfc.SFC_BRIDGE, _flows(chain, ports))
        got = cached_dp.dump_flows(sfc.SFC_BRIDGE, stats=False)
        assert got == plain_dp.dump_flows(sfc.SFC_BRIDGE, stats=False)  # type: ignore[attr-defined]
        cookies = sfc.flow_cookies(got)
        assert cookies == {sfc.chain_cookie("dpf-operator-system", f"p0-to-host-pf1-{node}"),
                           sfc.chain_cookie("dpf-operator-system", f"p1-to-host-vf1-{node}")}
        # The learn actions carry the chain's cookie too (what the flows they learn are swept by).
        for line in got:
            cookie = next(iter(sfc.flow_cookies([line])))
            assert f"cookie={cookie:#x}" in line.split("actions=", 1)[1]
    assert len(shared) == 2  # two shapes parsed, for six chains


def test_template_needs_exactly_one_cookie() -> None:
    one = _flows("c", ["1", "2"])
    templated = cookie_template(one)
    assert templated is not None
    assert templated[1] == sfc.chain_cookie("dpf-operator-system", "c")
    assert all(str(templated[1]) not in line for line in templated[0])
    assert cookie_template(["table=0, priority=1 actions=drop"]) is None
    assert cookie_template(one + _flows("d", ["1", "2"])) is None


def test_a_bad_bundle_changes_nothing_and_names_the_line_as_written() -> None:
    dp = dpu_datapath(lambda: 0.0, "w", PARAMS)
    ovs = ParsedOnceOvs(dp)
    cookie = sfc.chain_cookie("ns", "c")
    bad = [f"cookie={cookie}, table=0, priority=20, in_port=1 actions=output:2",
           f"cookie={cookie}, table=0, priority=20, in_port=nosuchport actions=output:1"]
    with pytest.raises(OvsError, match="nosuchport"):
        ovs.add_flows_bundle(sfc.SFC_BRIDGE, bad)
    assert [ln for ln in dp.dump_flows(sfc.SFC_BRIDGE, stats=False) if "actions=" in ln] == []
