"""bf.cfg: the BlueField installer's configuration file for one DPU.

The BFB installer sources bf.cfg as bash: plain `KEY=value` lines tune the install itself
(`UPDATE_DPU_OS=yes`, ...), and a `bfb_modify_os` function runs against the freshly installed root
(mounted at /mnt) before the first boot. We use that hook to seed cloud-init (NoCloud) with user-data
that, on first boot, sets the hostname to the DPU's name (= its Node name in the DPU cluster), lays out
the networking DPF relies on (br-comm-ch over pf0vf0 for the host<->DPU channel, tmfifo_net0 for rshim,
oob_net0 without DHCP), creates the scalable functions, applies the DPUFlavor (NVConfig, sysctl, kernel
command line, files, OVS script, containerd mirror) and joins the DPU cluster.

Written for dpf-twin with the effects DPF v24.10 gives bf.cfg; the text is ours, not DPF's template.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from dpf_core.api.provisioning import DPUFlavor

JOIN_MARKER = "/opt/dpf/joined_cluster_successfully"
COMM_CHANNEL_BRIDGE = "br-comm-ch"
COMM_CHANNEL_PORT = "pf0vf0"
TMFIFO_ADDRESS = "192.168.100.2/30"
SF_DEVICE = "0000:03:00.0"
DEFAULT_USER = "ubuntu"
UBUNTU_PASSWORD_PARAMETER = "ubuntu_PASSWORD"
USER_GROUPS = "adm, audio, cdrom, dialout, dip, floppy, lxd, netdev, plugdev, sudo, video"

_PF_TOTAL_SF = re.compile(r"^PF_TOTAL_SF=([0-9]+)")


@dataclass(frozen=True)
class _File:
    path: str
    permissions: str
    content: str
    append: bool = False


def pf_total_sf(flavor: DPUFlavor | None) -> int:
    """The number of SFs to create on PF0: the flavor's NVConfig `PF_TOTAL_SF=`, else none."""
    if flavor is None:
        return 0
    for nvconfig in flavor.spec.nvconfig:
        for parameter in nvconfig.parameters:
            m = _PF_TOTAL_SF.match(parameter)
            if m:
                return int(m.group(1))
    return 0


def split_bfcfg_parameters(parameters: Iterable[str]) -> tuple[list[str], str | None]:
    """The bf.cfg lines, and the `ubuntu_PASSWORD=` value pulled out of them for cloud-init.

    DPF splits on every "=" and only recognises the parameter with exactly one; we split on the first so a
    value containing "=" still counts (difference noted in docs/differences.md).
    """
    lines: list[str] = []
    password: str | None = None
    for parameter in parameters:
        key, sep, value = parameter.partition("=")
        if sep and key.strip() == UBUNTU_PASSWORD_PARAMETER:
            password = value.strip() or None
            continue
        lines.append(parameter)
    return lines, password


def _yaml_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _password_scalar(password: str) -> str:
    # A value the user already single-quoted is taken as written, as DPF does.
    if password.startswith("'") and password.endswith("'") and len(password) >= 2:
        return password
    return _yaml_quote(password)


def _block(content: str, indent: int) -> str:
    """`content` as a YAML literal block scalar header + body at `indent` spaces."""
    if content == "":
        return '""\n'
    if not content.endswith("\n"):
        chomp = "-"
    elif content.endswith("\n\n"):
        chomp = "+"
    else:
        chomp = ""
    first = next((line for line in content.split("\n") if line.strip()), "")
    # An explicit indentation indicator keeps a body that starts with spaces from redefining the indent.
    indicator = "2" if first[:1] in (" ", "\t") else ""
    body = content[:-1] if content.endswith("\n") else content
    pad = " " * indent
    lines = [(pad + line) if line else "" for line in body.split("\n")]
    return f"|{indicator}{chomp}\n" + "\n".join(lines) + "\n"


def _netplan_comm_channel() -> str:
    return (
        "network:\n"
        "  version: 2\n"
        "  renderer: networkd\n"
        "  ethernets:\n"
        f"    {COMM_CHANNEL_PORT}: {{}}\n"
        "  bridges:\n"
        f"    {COMM_CHANNEL_BRIDGE}:\n"
        "      interfaces:\n"
        f"        - {COMM_CHANNEL_PORT}\n"
        "      dhcp4: true\n"
    )


def _netplan_oob_tmfifo() -> str:
    return (
        "network:\n"
        "  version: 2\n"
        "  renderer: networkd\n"
        "  ethernets:\n"
        "    oob_net0:\n"
        "      dhcp4: false\n"
        "    tmfifo_net0:\n"
        "      dhcp4: false\n"
        "      addresses:\n"
        f"        - {TMFIFO_ADDRESS}\n"
    )


def _configure_sfs(count: int) -> str:
    return (
        "#!/bin/bash\n"
        "# Creates the scalable functions DPF's service chains attach to, numbered from 0.\n"
        "set -ex\n"
        f"PF_TOTAL_SF={count}\n"
        'if [ "${1:-}" != "setup" ]; then\n'
        '    echo "usage: $0 setup" >&2\n'
        "    exit 1\n"
        "fi\n"
        "sfnum=0\n"
        'while [ "${sfnum}" -lt "${PF_TOTAL_SF}" ]; do\n'
        f"    /sbin/mlnx-sf --action create --device {SF_DEVICE} --sfnum \"${{sfnum}}\" || true\n"
        "    sfnum=$((sfnum + 1))\n"
        "done\n"
    )


def _join_script(join_command: str) -> str:
    return (
        "#!/bin/bash\n"
        "# Joins this DPU to its DPU cluster once the host<->DPU channel has an address.\n"
        f"marker={JOIN_MARKER}\n"
        f"bridge={COMM_CHANNEL_BRIDGE}\n"
        'until [ -d "/sys/class/net/${bridge}" ]; do sleep 5; done\n'
        "until ip -4 -o addr show dev \"${bridge}\" | grep -q ' inet '; do sleep 5; done\n"
        "systemctl enable kubelet\n"
        "# The marker survives reboots: a DPU that already joined must not join again.\n"
        'if [ -e "${marker}" ]; then\n'
        '    echo "${marker} exists: already a member of the DPU cluster"\n'
        "    exit 0\n"
        "fi\n"
        f"until {join_command}; do\n"
        "    sleep 5\n"
        "    # A failed attempt leaves these behind and the next kubeadm join would refuse to run.\n"
        "    rm -f /etc/kubernetes/pki/ca.crt /etc/kubernetes/bootstrap-kubelet.conf\n"
        "done\n"
        'touch "${marker}"\n'
    )


def _unit(description: str, exec_start: str, *, oneshot: bool, before_kubelet: bool) -> str:
    lines = [
        "[Unit]",
        f"Description={description}",
        "Wants=network-online.target",
        "After=network-online.target",
    ]
    if before_kubelet:
        lines.append("Before=kubelet.service")
    lines += [
        "",
        "[Service]",
        f"Type={'oneshot' if oneshot else 'simple'}",
        f"ExecStart={exec_start}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def _kubelet_dropin() -> str:
    return (
        "[Service]\n"
        'Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf '
        '--kubeconfig=/etc/kubernetes/kubelet.conf"\n'
        'Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"\n'
        "EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env\n"
        "EnvironmentFile=-/etc/default/kubelet\n"
        "ExecStart=\n"
        "ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS "
        "$KUBELET_EXTRA_ARGS\n"
    )


def _cleanup_dns() -> str:
    return (
        "#!/bin/bash\n"
        "# kubelet hands pods the host's resolv.conf: point it at systemd-resolved's real upstreams.\n"
        "set -euo pipefail\n"
        "link=/etc/resolv.conf\n"
        "target=/var/run/systemd/resolve/resolv.conf\n"
        'if [ -e "${link}" ]; then\n'
        '    cp -p "${link}" "${link}.bak"\n'
        '    rm -f "${link}"\n'
        "fi\n"
        'ln -s "${target}" "${link}"\n'
        "systemctl mask dnsmasq\n"
    )


def _remove_bluefield_kubelet_dropin() -> str:
    return (
        "#!/bin/bash\n"
        "# The BFB ships a kubelet drop-in for standalone use; it conflicts with kubeadm's.\n"
        "dropin=/usr/lib/systemd/system/kubelet.service.d/90-kubelet-bluefield.conf\n"
        'if [ -f "${dropin}" ]; then\n'
        '    cp -p "${dropin}" "${dropin}.bak"\n'
        '    rm -f "${dropin}"\n'
        "fi\n"
    )


def _nvconfig(parameters: str) -> str:
    return (
        "#!/bin/bash\n"
        "set -e\n"
        "for device in /dev/mst/*; do\n"
        '    echo "applying NVConfig to ${device}"\n'
        f'    mlxconfig -d "${{device}}" -y set {parameters}\n'
        "done\n"
    )


def _ovs(script: str) -> str:
    body = script if script.endswith("\n") else script + "\n"
    return "#!/bin/bash\nset -e\n" + body


def _restart(additional_reboot: bool) -> str:
    text = "#!/bin/bash\n# The kernel command line and sysctl take effect on the next boot.\nset -e\nupdate-grub\n"
    if additional_reboot:
        # The host reboot that would have restarted the DPU is skipped: reboot the DPU ourselves.
        text += "reboot\n"
    return text


def _containerd_mirror(endpoint: str) -> str:
    return (
        "#!/bin/bash\n"
        "# Pull nvcr.io images through a mirror (and trust it without TLS verification).\n"
        "set -euo pipefail\n"
        "config=/etc/containerd/config.toml\n"
        f"endpoint={shlex.quote(endpoint)}\n"
        '[ -f "${config}" ] || exit 1\n'
        "major=$(containerd --version | awk '{print $3}' | sed 's/^v//' | cut -d. -f1)\n"
        '[ -n "${major}" ] || exit 1\n'
        'if [ "${major}" -ge 2 ]; then\n'
        "    plugin='io.containerd.cri.v1.images'\n"
        "else\n"
        "    plugin='io.containerd.grpc.v1.cri'\n"
        "fi\n"
        'mirror="[plugins.\\"${plugin}\\".registry.mirrors.\\"nvcr.io\\"]"\n'
        'tls="[plugins.\\"${plugin}\\".registry.configs.\\"nvcr.io\\".tls]"\n'
        'if grep -qF "${mirror}" "${config}"; then\n'
        "    # Rewrite the endpoint line right under an existing mirror table.\n"
        '    awk -v table="${mirror}" -v ep="${endpoint}" \'\n'
        '        $0 == table { print; seen = 1; next }\n'
        '        seen && $1 == "endpoint" { print "  endpoint = [\\"" ep "\\"]"; seen = 0; next }\n'
        "        { print }\n"
        '    \' "${config}" > "${config}.dpf" && mv "${config}.dpf" "${config}"\n'
        "else\n"
        '    printf \'\\n%s\\n  endpoint = ["%s"]\\n\' "${mirror}" "${endpoint}" >> "${config}"\n'
        "fi\n"
        'if ! grep -qF "${tls}" "${config}"; then\n'
        '    printf \'\\n%s\\n  insecure_skip_verify = true\\n\' "${tls}" >> "${config}"\n'
        "fi\n"
    )


def _files(flavor: DPUFlavor | None, join_command: str, additional_reboot: bool) -> tuple[list[_File], list[str]]:
    """The files cloud-init writes and the commands it runs after, in order."""
    spec = flavor.spec if flavor is not None else None
    kernel_parameters = " ".join(spec.grub.kernel_parameters).strip() if spec and spec.grub else ""
    sysctl = list(spec.sysctl.parameters) if spec and spec.sysctl else []
    nvconfig = " ".join(spec.nvconfig[0].parameters) if spec and spec.nvconfig else ""
    ovs_script = spec.ovs.raw_config_script if spec and spec.ovs and spec.ovs.raw_config_script else ""
    registry = (
        spec.containerd_config.registry_endpoint
        if spec and spec.containerd_config and spec.containerd_config.registry_endpoint
        else ""
    )

    files = [
        # Emptied, not removed: the BFB's default netplan would otherwise claim the same ports.
        _File("/etc/netplan/60-mlnx.yaml", "0600", ""),
        _File("/etc/netplan/99-dpf-comm-ch.yaml", "0600", _netplan_comm_channel()),
        _File("/etc/netplan/98-oob-tmfifo.yaml", "0600", _netplan_oob_tmfifo()),
        _File("/etc/modules-load.d/br_netfilter.conf", "0644", "br_netfilter\n"),
        _File(
            "/etc/sysctl.conf",
            "0644",
            "net.ipv4.ip_forward=1\nnet.bridge.bridge-nf-call-iptables=1\nnet.bridge.bridge-nf-call-ip6tables=1\n",
            append=True,
        ),
        _File("/opt/dpf/configure-sfs.sh", "0755", _configure_sfs(pf_total_sf(flavor))),
        _File("/etc/systemd/system/kubelet.service.d/10-bf.conf", "0644", _kubelet_dropin()),
        _File("/opt/dpf/join_k8s_cluster.sh", "0755", _join_script(join_command)),
        _File(
            "/etc/systemd/system/kubeadm-join.service",
            "0644",
            _unit("Join the DPU cluster", "/bin/bash /opt/dpf/join_k8s_cluster.sh", oneshot=False, before_kubelet=False),
        ),
        _File(
            "/etc/systemd/system/bootstrap-dpf.service",
            "0644",
            _unit(
                "Create the scalable functions DPF needs",
                "/bin/bash /opt/dpf/configure-sfs.sh setup",
                oneshot=True,
                before_kubelet=True,
            ),
        ),
        _File("/etc/systemd/resolved.conf.d/01-dpf.conf", "0644", "[Resolve]\nDNSStubListener=no\n"),
        _File("/etc/NetworkManager/conf.d/90-dpf.conf", "0644", "[main]\ndns=none\n"),
        _File("/opt/dpf/cleanup-dns.sh", "0755", _cleanup_dns()),
        _File("/opt/dpf/remove-90-kubelet-bluefield.sh", "0755", _remove_bluefield_kubelet_dropin()),
    ]
    if nvconfig:
        files.append(_File("/opt/dpf/set-nvconfig-params.sh", "0755", _nvconfig(nvconfig)))
    if sysctl:
        files.append(_File("/etc/sysctl.d/99-dpf.conf", "0644", "".join(p + "\n" for p in sysctl)))
    if kernel_parameters:
        files.append(_File("/etc/default/grub.d/99-dpf.cfg", "0644", f'GRUB_CMDLINE_LINUX="{kernel_parameters}"\n'))
    for f in spec.config_files if spec else []:
        files.append(
            _File(f.path or "", f.permissions or "0644", f.raw or "", append=f.operation == "append")
        )
    if ovs_script:
        files.append(_File("/opt/dpf/ovs.sh", "0755", _ovs(ovs_script)))
    restart = bool(kernel_parameters or sysctl)
    if restart:
        files.append(_File("/opt/dpf/restart.sh", "0755", _restart(additional_reboot)))
    if registry:
        files.append(_File("/opt/dpf/config_containerd.sh", "0755", _containerd_mirror(registry)))

    commands = [
        "[ hostnamectl, set-hostname, DPU_NAME ]",
        "[ modprobe, br_netfilter ]",
        "[ sysctl, -p ]",
        "[ systemctl, stop, kubelet ]",
        "[ /opt/dpf/remove-90-kubelet-bluefield.sh ]",
        "[ /opt/dpf/cleanup-dns.sh ]",
        "[ systemctl, daemon-reload ]",
        "[ systemctl, enable, containerd ]",
        "[ systemctl, start, containerd ]",
        "[ systemctl, enable, bootstrap-dpf.service ]",
        "[ systemctl, enable, kubeadm-join.service ]",
        "[ systemctl, enable, mlnx_bf_configure_sync.service ]",
    ]
    if nvconfig:
        commands.append("[ /opt/dpf/set-nvconfig-params.sh ]")
    if ovs_script:
        commands.append("[ /opt/dpf/ovs.sh ]")
    if registry:
        commands += ["[ /opt/dpf/config_containerd.sh ]", "[ systemctl, restart, containerd ]"]
    if restart:
        # Last: it may reboot the DPU.
        commands.append("[ /opt/dpf/restart.sh ]")
    return files, commands


def _user_data(flavor: DPUFlavor | None, dpu_name: str, join_command: str, additional_reboot: bool) -> str:
    _, password = split_bfcfg_parameters(flavor.spec.bfcfg_parameters if flavor else [])
    out = [
        "#cloud-config",
        "debug:",
        "  verbose: true",
        "users:",
        f"  - name: {DEFAULT_USER}",
        "    lock_passwd: false",
        f"    groups: {USER_GROUPS}",
        "    sudo: ALL=(ALL) NOPASSWD:ALL",
        "    shell: /bin/bash",
    ]
    if password:
        out.append(f"    passwd: {_password_scalar(password)}")
    else:
        # No password in the flavor: the well-known default, to be changed at first login.
        out += ["chpasswd:", "  expire: true", "  list: |", f"    {DEFAULT_USER}:{DEFAULT_USER}"]
    files, commands = _files(flavor, join_command, additional_reboot)
    out.append("write_files:")
    text = "\n".join(out) + "\n"
    for f in files:
        text += f"  - path: {_yaml_quote(f.path)}\n"
        text += f"    permissions: {_yaml_quote(f.permissions)}\n"
        if f.append:
            text += "    append: true\n"
        text += "    content: " + _block(f.content, 6)
    text += "runcmd:\n"
    for c in commands:
        text += "  - " + c.replace("DPU_NAME", _yaml_quote(dpu_name)) + "\n"
    return text


def _heredoc_tag(base: str, body: str) -> str:
    """A heredoc terminator that no line of `body` equals (user content could contain ours)."""
    lines = set(body.split("\n"))
    tag, n = base, 0
    while tag in lines:
        n += 1
        tag = f"{base}_{n}"
    return tag


def render_bfcfg(flavor: DPUFlavor | None, dpu_name: str, join_command: str, additional_reboot: bool) -> bytes:
    """The bf.cfg for one DPU. `flavor` None renders the defaults (no NVConfig, sysctl, files, ...)."""
    parameters, _ = split_bfcfg_parameters(flavor.spec.bfcfg_parameters if flavor else [])
    user_data = _user_data(flavor, dpu_name, join_command, additional_reboot)
    cloud_cfg = "network:\n  config: disabled\n"
    user_tag = _heredoc_tag("DPF_USER_DATA", user_data)
    lines = [f"# bf.cfg for DPU {dpu_name}"]
    lines += parameters
    lines += [
        "",
        "bfb_modify_os()",
        "{",
        "    # Runs against the installed root (/mnt) before its first boot.",
        "    mkdir -p /mnt/opt/dpf",
        "    # Networking comes from the netplan files in user-data, not from cloud-init's own config.",
        "    cat > /mnt/etc/cloud/cloud.cfg.d/dpf.cfg <<'DPF_CLOUD_CFG'",
        cloud_cfg + "DPF_CLOUD_CFG",
        "    cp /mnt/opt/mellanox/sfc-hbn/mlnx_bf_configure_sync.service /mnt/etc/systemd/system/",
        f"    cat > /mnt/var/lib/cloud/seed/nocloud-net/user-data <<'{user_tag}'",
        user_data + user_tag,
        "}",
        "",
    ]
    return "\n".join(lines).encode()


def user_data_of(bfcfg: bytes) -> str:
    """The cloud-init user-data embedded in a bf.cfg we rendered (for models and tests that read it back)."""
    text = bfcfg.decode()
    m = re.search(r"nocloud-net/user-data <<'([A-Z_0-9]+)'\n", text)
    if m is None:
        raise ValueError("no cloud-init user-data in this bf.cfg")
    start = m.end()
    end = text.index("\n" + m.group(1) + "\n", start - 1)
    return text[start : end + 1]
