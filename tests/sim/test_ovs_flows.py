"""Flow text: parsing as ovs-ofctl does, prerequisites, and printing as `ovs-ofctl -O OpenFlow13 dump-flows`."""

from __future__ import annotations

import pytest

from dpf_sim.ovs.flows import (
    OFP_DEFAULT_PRIORITY,
    FlowParseError,
    format_actions,
    key_values,
    parse_flow,
    parse_flows_file,
)


def match_text(flow: str) -> str:
    fm = parse_flow(flow + " actions=drop")
    return fm.match.format(fm.priority)


def actions_text(flow: str) -> str:
    return format_actions(parse_flow(flow).actions)


def test_tokenizer_splits_like_ofputil_parse_key_value() -> None:
    assert list(key_values("cookie=5, table=0, priority=20, in_port=97")) == [
        ("cookie", "5"), ("table", "0"), ("priority", "20"), ("in_port", "97")]
    assert list(key_values("learn(a=1,b=2),output:3 drop")) == [("learn", "a=1,b=2"), ("output", "3"), ("drop", "")]


def test_defaults_table_zero_priority_32768_no_cookie() -> None:
    fm = parse_flow("actions=drop")
    assert (fm.table, fm.priority, fm.cookie, fm.idle_timeout, fm.hard_timeout) == (0, OFP_DEFAULT_PRIORITY, 0, 0, 0)
    assert fm.match.format(fm.priority) == ""


def test_header_keywords() -> None:
    fm = parse_flow("table=3,priority=7,cookie=0x10,idle_timeout=10,hard_timeout=20,actions=drop")
    assert (fm.table, fm.priority, fm.cookie, fm.idle_timeout, fm.hard_timeout) == (3, 7, 16, 10, 20)
    # DPF writes the cookie in decimal with spaces after the commas.
    assert parse_flow("cookie=81985529216486895, table=0, priority=20, in_port=1 actions=2").cookie == 0x123456789ABCDEF


@pytest.mark.parametrize(("flow", "printed"), [
    ("in_port=3", "in_port=3"),
    ("in_port=LOCAL", "in_port=LOCAL"),
    ("dl_src=AA:bb:cc:dd:ee:01", "dl_src=aa:bb:cc:dd:ee:01"),
    ("dl_src=aa:bb:cc:00:00:00/ff:ff:ff:00:00:00", "dl_src=aa:bb:cc:00:00:00/ff:ff:ff:00:00:00"),
    ("dl_dst=01:00:00:00:00:00/01:00:00:00:00:00", "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00"),
    ("eth_dst=02:00:00:00:00:09", "dl_dst=02:00:00:00:00:09"),
    ("dl_type=0x88cc", "dl_type=0x88cc"),
    ("dl_type=0x0800", "ip"),
    ("dl_vlan=100", "dl_vlan=100"),
    ("dl_vlan=0xffff", "vlan_tci=0x0000"),
    ("dl_vlan_pcp=5", "dl_vlan_pcp=5"),
    ("dl_vlan=10,dl_vlan_pcp=3", "dl_vlan=10,dl_vlan_pcp=3"),
    ("vlan_tci=0x1064", "dl_vlan=100,dl_vlan_pcp=0"),  # exact TCI with CFI prints as its parts
    ("vlan_tci=0x0064", "vlan_tci=0x0064"),
    ("vlan_tci=0x1000/0x1000", "vlan_tci=0x1000/0x1000"),
    ("ip,nw_src=10.0.0.1", "ip,nw_src=10.0.0.1"),
    ("ip,nw_src=10.1.2.3/16", "ip,nw_src=10.1.0.0/16"),
    ("ip,nw_dst=10.0.0.0/255.0.255.0", "ip,nw_dst=10.0.0.0/255.0.255.0"),
    ("ip,nw_dst=10.0.0.0/255.255.255.0", "ip,nw_dst=10.0.0.0/24"),
    ("arp,nw_src=10.0.0.1", "arp,arp_spa=10.0.0.1"),
    ("ip,nw_proto=89", "ip,nw_proto=89"),
    ("ip,nw_proto=6", "tcp"),
    ("tcp,tp_dst=80", "tcp,tp_dst=80"),
    ("udp,tp_src=53", "udp,tp_src=53"),
    ("tcp,tp_dst=0x50/0xfff0", "tcp,tp_dst=0x50/0xfff0"),
    ("icmp", "icmp"),
    ("arp", "arp"),
    ("reg0=5", "reg0=0x5"),
    ("reg7=0x10/0xf0", "reg7=0x10/0xf0"),
    ("reg3=0", "reg3=0"),
    ("metadata=0x1", "metadata=0x1"),
    ("priority=0", "priority=0"),
    ("priority=30,in_port=2,dl_dst=aa:aa:aa:aa:aa:01", "priority=30,in_port=2,dl_dst=aa:aa:aa:aa:aa:01"),
])
def test_match_fields_parse_and_print_as_ovs(flow: str, printed: str) -> None:
    assert match_text(flow) == printed


def test_match_printed_in_ovs_field_order_not_input_order() -> None:
    # match_format: priority, protocol shorthand, regs, metadata, in_port, vlan, dl_src, dl_dst, nw, tp.
    assert match_text("tp_dst=22,nw_src=1.1.1.1,dl_dst=00:00:00:00:00:02,in_port=4,reg1=1,tcp,priority=9") == \
        "priority=9,tcp,reg1=0x1,in_port=4,dl_dst=00:00:00:00:00:02,nw_src=1.1.1.1,tp_dst=22"


@pytest.mark.parametrize(("flow", "needle"), [
    ("nw_src=10.0.0.1", "nw_src: prerequisites not met"),
    ("nw_dst=10.0.0.0/8", "nw_dst: prerequisites not met"),
    ("ipv6,nw_src=10.0.0.1", "nw_src: prerequisites not met"),
    ("nw_proto=6", "nw_proto: prerequisites not met"),
    ("tp_dst=80", "tp_dst: prerequisites not met"),
    ("ip,tp_src=80", "tp_src: prerequisites not met"),
    ("udp,tcp_dst=80", "tp_dst: prerequisites not met"),
])
def test_match_prerequisites_rejected_like_the_switch(flow: str, needle: str) -> None:
    with pytest.raises(FlowParseError) as e:
        parse_flow(flow + ",actions=drop")
    assert needle in str(e.value) and "OFPBMC_BAD_PREREQ" in str(e.value)


@pytest.mark.parametrize(("flow", "needle"), [
    ("in_port=1", "must specify an action"),
    ("bogus=1,actions=drop", "unknown keyword bogus"),
    ("dl_src=zz:00:00:00:00:00,actions=drop", "invalid Ethernet address"),
    ("ip,nw_src=10.0.0.300,actions=drop", "could not convert to IP address"),
    ("ip,nw_src=10.0.0.1/33,actions=drop", "network prefix bits"),
    ("in_port=1/1,actions=drop", "does not support masking"),
    ("dl_vlan=5000,actions=drop", "invalid VLAN VID"),
    ("dl_vlan_pcp=8,actions=drop", "invalid VLAN PCP"),
    ("priority=70000,actions=drop", "invalid priority"),
    ("table=256,actions=drop", "unknown table"),
    ("cookie=1/-1,actions=drop", "flow additions cannot use a cookie mask"),
    ("table,actions=drop", "field table missing value"),
    ("actions=frobnicate", "unknown action frobnicate"),
    ("actions=output:2,drop", "\"drop\" must not be accompanied"),
    ("actions=output:foo", "output to unknown port"),
    ("actions=goto_table:2,output:1", "may not follow instruction goto_table"),
    ("table=2,actions=goto_table:1", "OFPBRC_BAD_TABLE_ID"),
    ("actions=mod_nw_src:1.2.3.4", "OFPBAC_MATCH_INCONSISTENT"),
    ("actions=pop_vlan", "OFPBAC_MATCH_INCONSISTENT"),
    ("actions=set_field:4196->vlan_vid", "OFPBAC_MATCH_INCONSISTENT"),
    ("actions=set_field:1->eth_type", "eth_type is read-only"),
    ("actions=set_field:1->nope", "not a valid OXM field name"),
    ("actions=load:0x100->NXM_NX_REG0[0..7]", "does not fit into 8 bits"),
    ("actions=load:1->NXM_NX_REG0[40]", "has 32 bits but bit 40"),
    ("actions=move:NXM_OF_ETH_SRC[]->NXM_NX_REG0[]", "48 bits wide but destination is 32"),
    ("actions=push_vlan:0x0800", "not a valid VLAN ethertype"),
    ("actions=mod_vlan_vid:4096", "not a valid VLAN VID"),
    ("actions=resubmit(,)", "at least one"),
    ("actions=learn(table=255,output:NXM_OF_IN_PORT[])", "table id 255 not valid"),
    ("actions=learn(bogus_field=1)", "unknown keyword bogus_field"),
    ("actions=learn(dl_dst=NXM_OF_IN_PORT[])", "bit widths of dl_dst (48) and NXM_OF_IN_PORT[] (16) differ"),
    ("actions=learn(ip_src=1)", "cannot be parsed as a subfield"),
    ("actions=learn(ip_dst=ip_src)", "prerequisites not met by the flow's match"),
])
def test_parse_errors_name_the_problem(flow: str, needle: str) -> None:
    with pytest.raises(FlowParseError) as e:
        parse_flow(flow)
    assert needle in str(e.value)


@pytest.mark.parametrize(("flow", "printed"), [
    ("actions=output:2", "output:2"),
    ("actions=2", "output:2"),
    ("actions=output:NXM_OF_IN_PORT[]", "output:NXM_OF_IN_PORT[]"),
    ("actions=output:NXM_NX_REG0[0..15]", "output:NXM_NX_REG0[0..15]"),
    ("actions=in_port", "IN_PORT"),
    ("actions=IN_PORT", "IN_PORT"),
    ("actions=normal", "NORMAL"),
    ("actions=LOCAL", "LOCAL"),
    ("actions=drop", "drop"),
    ("actions=", "drop"),
    ("actions=resubmit(,3)", "resubmit(,3)"),
    ("actions=resubmit(2,3)", "resubmit(2,3)"),
    ("actions=resubmit:2", "resubmit:2"),
    ("actions=goto_table:4", "goto_table:4"),
    ("actions=set_field:aa:bb:cc:dd:ee:ff->eth_src", "set_field:aa:bb:cc:dd:ee:ff->eth_src"),
    ("actions=set_field:5->reg2", "set_field:0x5->reg2"),
    ("ip,actions=set_field:10.0.0.9->ip_dst", "set_field:10.0.0.9->ip_dst"),
    ("dl_vlan=7,actions=set_field:4196->vlan_vid", "set_field:4196->vlan_vid"),
    ("actions=load:0x1->NXM_NX_REG0[]", "load:0x1->NXM_NX_REG0[]"),
    ("actions=load:5->NXM_NX_REG1[8..15]", "load:0x5->NXM_NX_REG1[8..15]"),
    ("actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[]", "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[]"),
    ("actions=move:reg0[0..15]->NXM_OF_IN_PORT[]", "move:NXM_NX_REG0[0..15]->NXM_OF_IN_PORT[]"),
    # OF1.3 has no mod_dl_*/mod_nw_*/strip_vlan/mod_vlan_vid: they come back re-encoded.
    ("actions=mod_dl_src:00:00:00:00:00:07", "set_field:00:00:00:00:00:07->eth_src"),
    ("actions=mod_dl_dst:00:00:00:00:00:08", "set_field:00:00:00:00:00:08->eth_dst"),
    ("ip,actions=mod_nw_src:1.2.3.4", "set_field:1.2.3.4->ip_src"),
    ("ip,actions=mod_nw_dst:4.3.2.1", "set_field:4.3.2.1->ip_dst"),
    ("actions=push_vlan:0x8100", "push_vlan:0x8100"),
    ("dl_vlan=3,actions=strip_vlan", "pop_vlan"),
    ("dl_vlan=3,actions=pop_vlan", "pop_vlan"),
    ("actions=mod_vlan_vid:100", "push_vlan:0x8100,set_field:4196->vlan_vid"),
    ("dl_vlan=3,actions=mod_vlan_vid:100", "set_field:4196->vlan_vid"),
    ("actions=learn(cookie=10,idle_timeout=10,table=0,priority=30,in_port=2,dl_dst=dl_src,output:NXM_OF_IN_PORT[])",
     "learn(table=0,idle_timeout=10,priority=30,cookie=0xa,in_port=2,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],"
     "output:NXM_OF_IN_PORT[])"),
    ("actions=learn(NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15])",
     "learn(table=1,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],"
     "load:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15])"),
    ("actions=learn(hard_timeout=5,reg1[0..7]=0x12,load:0x3->NXM_NX_REG2[])",
     "learn(table=1,hard_timeout=5,NXM_NX_REG1[0..7]=0x12,load:0x3->NXM_NX_REG2[])"),
])
def test_actions_print_as_openflow13_dump(flow: str, printed: str) -> None:
    assert actions_text(flow) == printed


def test_port_names_resolve_through_the_bridge_map() -> None:
    fm = parse_flow("in_port=p0,actions=output:pf0hpf", port_names={"p0": 1, "pf0hpf": 2})
    assert fm.match.format() == "in_port=1" and format_actions(fm.actions) == "output:2"


def test_flows_file_error_names_the_line_and_skips_comments() -> None:
    text = "# chain\n\npriority=1,actions=drop\npriority=2,in_port=1,actions=output:bogus\n"
    with pytest.raises(FlowParseError) as e:
        parse_flows_file(text)
    assert e.value.line == 4 and str(e.value).startswith("line 4: ")
    assert len(parse_flows_file("priority=1,actions=drop\n# x\npriority=2,actions=drop")) == 2


def test_del_syntax_cookie_mask_and_strict_priority() -> None:
    fm = parse_flow("cookie=0x5/-1", command="del")
    assert (fm.cookie, fm.cookie_mask, fm.table) == (5, (1 << 64) - 1, 255)
    with pytest.raises(FlowParseError, match="cannot set cookie"):
        parse_flow("cookie=5", command="del")
    with pytest.raises(FlowParseError, match="unknown keyword priority"):
        parse_flow("priority=5", command="del")
    assert parse_flow("priority=5,in_port=1", command="del_strict").priority == 5
