"""bf.cfg rendering: installer parameters, the embedded cloud-init user-data and what it does on first boot."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from dpf_core.api.provisioning import DPUFlavor
from dpf_core.controllers.bfcfg import (
    JOIN_MARKER,
    pf_total_sf,
    render_bfcfg,
    split_bfcfg_parameters,
    user_data_of,
)

JOIN = "kubeadm join 10.0.0.1:6443 --token abcdef.0123456789abcdef --discovery-token-unsafe-skip-ca-verification --v=5"


def hbn_ovn_flavor(**extra: Any) -> DPUFlavor:
    """Shaped like DPF's default flavor `dpf-provisioning-hbn-ovn`."""
    spec: dict[str, Any] = {
        "grub": {"kernelParameters": ["console=hvc0", "console=ttyAMA0", "hugepagesz=2048kB", "hugepages=3072"]},
        "sysctl": {"parameters": ["net.ipv4.ip_forward=1", "net.ipv4.ip_forward_update_priority=0"]},
        "nvconfig": [{"device": "*", "parameters": ["PF_TOTAL_SF=20", "NUM_OF_VFS=46", "SRIOV_EN=1"]}],
        "ovs": {"rawConfigScript": "ovs-vsctl set Open_vSwitch . other_config:doca-init=true\n"},
        "bfcfgParameters": ["UPDATE_ATF_UEFI=yes", "UPDATE_DPU_OS=yes", "WITH_NIC_FW_UPDATE=yes"],
        "configFiles": [
            {"path": "/etc/mellanox/mlnx-ovs.conf", "operation": "override", "raw": 'CREATE_OVS_BRIDGES="no"\n',
             "permissions": "0644"},
            {"path": "/etc/hosts.extra", "operation": "append", "raw": "10.0.0.9 registry\n", "permissions": "0600"},
        ],
        **extra,
    }
    return DPUFlavor.new("dpf-provisioning-hbn-ovn", "dpf-operator-system", spec=spec)


def cloud_config(data: bytes) -> dict[str, Any]:
    parsed = yaml.safe_load(user_data_of(data))
    assert isinstance(parsed, dict)
    return parsed


def files_of(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in cfg["write_files"]}


def test_installer_parameters_come_first_and_the_password_moves_to_cloud_init() -> None:
    flavor = hbn_ovn_flavor(bfcfgParameters=["UPDATE_DPU_OS=yes", "ubuntu_PASSWORD=$1$salt$hash", "NO_EQUALS"])
    text = render_bfcfg(flavor, "worker1-0000-04-00", JOIN, False).decode()
    head = text.split("bfb_modify_os()")[0]
    assert "UPDATE_DPU_OS=yes\n" in head
    assert "NO_EQUALS\n" in head
    assert "ubuntu_PASSWORD" not in text
    cfg = cloud_config(text.encode())
    user = cfg["users"][0]
    assert user["name"] == "ubuntu"
    assert user["passwd"] == "$1$salt$hash"
    assert "chpasswd" not in cfg


def test_without_a_password_the_default_user_gets_ubuntu_and_must_change_it() -> None:
    cfg = cloud_config(render_bfcfg(None, "dpu-a", JOIN, False))
    assert cfg["chpasswd"] == {"expire": True, "list": "ubuntu:ubuntu\n"}
    assert "passwd" not in cfg["users"][0]


def test_split_parameters_takes_a_quoted_password_as_written() -> None:
    lines, password = split_bfcfg_parameters(["A=1", "ubuntu_PASSWORD='x=y'"])
    assert lines == ["A=1"]
    assert password == "'x=y'"
    cfg = cloud_config(render_bfcfg(hbn_ovn_flavor(bfcfgParameters=["ubuntu_PASSWORD='x=y'"]), "d", JOIN, False))
    assert cfg["users"][0]["passwd"] == "x=y"


def test_networking_comm_channel_bridge_tmfifo_and_oob() -> None:
    files = files_of(cloud_config(render_bfcfg(None, "dpu-a", JOIN, False)))
    comm = yaml.safe_load(files["/etc/netplan/99-dpf-comm-ch.yaml"]["content"])["network"]
    assert comm["bridges"]["br-comm-ch"] == {"interfaces": ["pf0vf0"], "dhcp4": True}
    oob = yaml.safe_load(files["/etc/netplan/98-oob-tmfifo.yaml"]["content"])["network"]["ethernets"]
    assert oob["tmfifo_net0"]["addresses"] == ["192.168.100.2/30"]
    assert oob["oob_net0"]["dhcp4"] is False
    assert files["/etc/netplan/60-mlnx.yaml"]["content"] == ""
    assert files["/etc/netplan/99-dpf-comm-ch.yaml"]["permissions"] == "0600"


def test_hostname_is_the_dpu_name_and_the_join_script_carries_the_command_and_marker() -> None:
    cfg = cloud_config(render_bfcfg(None, "worker1-0000-04-00", JOIN, False))
    assert cfg["runcmd"][0] == ["hostnamectl", "set-hostname", "worker1-0000-04-00"]
    script = files_of(cfg)["/opt/dpf/join_k8s_cluster.sh"]
    assert script["permissions"] == "0755"
    assert f"until {JOIN}; do" in script["content"]
    assert JOIN_MARKER in script["content"]
    assert ["systemctl", "enable", "kubeadm-join.service"] in cfg["runcmd"]


def test_scalable_functions_follow_pf_total_sf() -> None:
    flavor = hbn_ovn_flavor()
    assert pf_total_sf(flavor) == 20
    sfs = files_of(cloud_config(render_bfcfg(flavor, "d", JOIN, False)))["/opt/dpf/configure-sfs.sh"]["content"]
    assert "PF_TOTAL_SF=20\n" in sfs
    assert "--device 0000:03:00.0" in sfs
    assert pf_total_sf(None) == 0


def test_flavor_settings_become_files_and_commands() -> None:
    cfg = cloud_config(render_bfcfg(hbn_ovn_flavor(), "d", JOIN, False))
    files = files_of(cfg)
    assert "mlxconfig -d \"${device}\" -y set PF_TOTAL_SF=20 NUM_OF_VFS=46 SRIOV_EN=1" in files[
        "/opt/dpf/set-nvconfig-params.sh"
    ]["content"]
    assert files["/etc/sysctl.d/99-dpf.conf"]["content"] == (
        "net.ipv4.ip_forward=1\nnet.ipv4.ip_forward_update_priority=0\n"
    )
    assert files["/etc/default/grub.d/99-dpf.cfg"]["content"] == (
        'GRUB_CMDLINE_LINUX="console=hvc0 console=ttyAMA0 hugepagesz=2048kB hugepages=3072"\n'
    )
    assert "doca-init=true" in files["/opt/dpf/ovs.sh"]["content"]
    override = files["/etc/mellanox/mlnx-ovs.conf"]
    assert override["content"] == 'CREATE_OVS_BRIDGES="no"\n' and "append" not in override
    appended = files["/etc/hosts.extra"]
    assert appended["append"] is True and appended["permissions"] == "0600"
    runcmd = cfg["runcmd"]
    assert runcmd[-1] == ["/opt/dpf/restart.sh"]
    assert ["/opt/dpf/set-nvconfig-params.sh"] in runcmd and ["/opt/dpf/ovs.sh"] in runcmd


def test_restart_script_only_with_kernel_or_sysctl_and_reboots_only_when_asked() -> None:
    plain = files_of(cloud_config(render_bfcfg(None, "d", JOIN, True)))
    assert "/opt/dpf/restart.sh" not in plain
    without = files_of(cloud_config(render_bfcfg(hbn_ovn_flavor(), "d", JOIN, False)))["/opt/dpf/restart.sh"]
    assert "update-grub" in without["content"] and "reboot" not in without["content"].replace("# ", "")
    with_reboot = files_of(cloud_config(render_bfcfg(hbn_ovn_flavor(), "d", JOIN, True)))["/opt/dpf/restart.sh"]
    assert with_reboot["content"].rstrip().endswith("reboot")


def test_containerd_mirror_script_only_with_an_endpoint() -> None:
    assert "/opt/dpf/config_containerd.sh" not in files_of(cloud_config(render_bfcfg(None, "d", JOIN, False)))
    flavor = hbn_ovn_flavor(containerdConfig={"registryEndpoint": "https://mirror.example:5000"})
    cfg = cloud_config(render_bfcfg(flavor, "d", JOIN, False))
    script = files_of(cfg)["/opt/dpf/config_containerd.sh"]["content"]
    assert "endpoint=https://mirror.example:5000" in script
    assert "nvcr.io" in script and "insecure_skip_verify = true" in script
    assert ["systemctl", "restart", "containerd"] in cfg["runcmd"]


@pytest.mark.parametrize(
    "raw",
    ["  indented first line\nsecond\n", "no trailing newline", "two trailing\n\n", "DPF_USER_DATA\nsneaky terminator\n"],
)
def test_config_file_content_round_trips_exactly(raw: str) -> None:
    flavor = hbn_ovn_flavor(configFiles=[{"path": "/etc/x", "operation": "override", "raw": raw, "permissions": "0644"}])
    data = render_bfcfg(flavor, "d", JOIN, False)
    assert files_of(cloud_config(data))["/etc/x"]["content"] == raw


def test_rendering_is_deterministic_and_a_huge_flavor_grows_past_the_limit() -> None:
    flavor = hbn_ovn_flavor()
    assert render_bfcfg(flavor, "d", JOIN, False) == render_bfcfg(flavor, "d", JOIN, False)
    big = hbn_ovn_flavor(configFiles=[{"path": "/etc/big", "operation": "override", "raw": "x" * 140_000,
                                       "permissions": "0644"}])
    assert len(render_bfcfg(big, "d", JOIN, False)) > 131072
