"""The DMS exec timeout flows as in DPF: DPFOperatorConfig `provisioningController.dmsTimeout` -> the provisioning
controller's `--dms-timeout` -> the DMS pod's `-exec_timeout` -> the twin's dmsd. Scenario overrides
(`models.provisioning.dms_timeout`, `models.blueField.exec_timeout`) win where they are set."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from dpf_core.api.external import Pod
from dpf_core.api.provisioning import DPU, DPUPhase
from dpf_sim.models.bluefield import DEFAULT_EXEC_TIMEOUT, dms_exec_timeout
from dpf_sim.twin import Twin, TwinConfig

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "provisioning.yaml"
MANIFESTS: list[dict[str, Any]] = list(yaml.safe_load_all(SAMPLES.read_text()))
# A 1.5 GiB BFB through rshim at 20 MiB/s: the OS.Install stream alone takes ~77 s.
INSTALL_DONE = 400.0
SETTLED = 2400.0


def manifests(dms_timeout: int | None) -> list[Mapping[str, Any]]:
    docs = copy.deepcopy(MANIFESTS)
    config = next(d for d in docs if d["kind"] == "DPFOperatorConfig")
    if dms_timeout is None:
        config["spec"]["provisioningController"].pop("dmsTimeout", None)
    else:
        config["spec"]["provisioningController"]["dmsTimeout"] = dms_timeout
    return list(docs)


def provision(dms_timeout: int | None, until: float, models: dict[str, Any] | None = None, hosts: int = 2) -> Twin:
    twin = Twin(TwinConfig(seed=3, fleet={"racks": 1, "hosts_per_rack": hosts}, keep_log=False, models=models or {}))
    twin.apply(manifests(dms_timeout))
    twin.run(until)
    return twin


def dms_args(twin: Twin, dpu: DPU) -> str:
    pod = twin.host.get(Pod, f"{dpu.name}-dms", dpu.namespace)
    (dms,) = [c for c in pod.spec.containers if c.name == "dms"]
    return " ".join((dms.model_extra or {}).get("args") or [])


def condition(dpu: DPU, kind: str) -> tuple[str, str, str]:
    (c,) = [c for c in dpu.status.conditions if c.type == kind]
    return c.status, c.reason, c.message


def test_a_dms_timeout_shorter_than_the_install_ends_in_deadline_exceeded() -> None:
    twin = provision(60, INSTALL_DONE)
    dpus = twin.host.list(DPU)
    assert len(dpus) == 2
    for d in dpus:
        assert "-exec_timeout 60 " in dms_args(twin, d)
        assert twin.bluefields.get(d.name).exec_timeout == 60.0
        assert d.status.phase == DPUPhase.ERROR
        status, reason, message = condition(d, "OSInstalled")
        assert (status, reason) == ("False", "InstallationFailed")
        assert "context deadline exceeded after 60s" in message
        assert twin.bluefields.get(d.name).flashes_started == 0
    assert twin.options.dms_timeout == 60
    assert twin.bluefields.timeouts == 2


def test_a_dms_timeout_longer_than_the_install_provisions_to_ready() -> None:
    twin = provision(3600, SETTLED)
    for d in twin.host.list(DPU):
        assert "-exec_timeout 3600 " in dms_args(twin, d)
        assert twin.bluefields.get(d.name).exec_timeout == 3600.0
        assert d.status.phase == DPUPhase.READY
    assert twin.bluefields.timeouts == 0


def test_without_dms_timeout_the_operator_default_of_900_is_rendered() -> None:
    twin = provision(None, 200, hosts=1)
    (d,) = twin.host.list(DPU)
    assert "-exec_timeout 900 " in dms_args(twin, d)
    assert twin.bluefields.get(d.name).exec_timeout == DEFAULT_EXEC_TIMEOUT


def test_a_pinned_provisioning_dms_timeout_wins_over_the_operator_config() -> None:
    twin = provision(60, SETTLED, models={"provisioning": {"dms_timeout": 3600}})
    assert twin.options.dms_timeout == 3600
    for d in twin.host.list(DPU):
        assert "-exec_timeout 3600 " in dms_args(twin, d)
        assert d.status.phase == DPUPhase.READY


def test_a_scenario_exec_timeout_overrides_what_the_dms_pod_passes() -> None:
    twin = provision(3600, INSTALL_DONE, models={"blueField": {"exec_timeout": 30}}, hosts=1)
    (d,) = twin.host.list(DPU)
    assert "-exec_timeout 3600 " in dms_args(twin, d)
    assert twin.bluefields.get(d.name).exec_timeout == 30.0
    assert d.status.phase == DPUPhase.ERROR
    assert "context deadline exceeded after 30s" in condition(d, "OSInstalled")[2]


def test_a_changed_dms_timeout_reaches_new_dms_pods_and_leaves_running_ones() -> None:
    twin = provision(3600, 200, hosts=1)
    (d,) = twin.host.list(DPU)
    twin.patch("DPFOperatorConfig", "dpfoperatorconfig", "dpf-operator-system",
               {"spec": {"provisioningController": {"dmsTimeout": 1200}}})
    assert twin.options.dms_timeout == 1200
    assert twin.manager is not None
    reconciler: Any = twin.manager.controller("dpu").reconciler
    assert reconciler.options.dms_timeout == 1200
    # The running DMS keeps the flag its pod started with (DPF does not recreate the pod either).
    assert "-exec_timeout 3600 " in dms_args(twin, d)
    assert twin.bluefields.get(d.name).exec_timeout == 3600.0


def test_a_paused_or_foreign_operator_config_is_not_followed() -> None:
    docs = copy.deepcopy(MANIFESTS)
    config = next(x for x in docs if x["kind"] == "DPFOperatorConfig")
    config["spec"]["provisioningController"]["dmsTimeout"] = 60
    config["spec"]["overrides"] = {"paused": True}
    twin = Twin(TwinConfig(seed=3, fleet={"racks": 1, "hosts_per_rack": 1}, keep_log=False))
    twin.apply(list(docs))
    assert twin.options.dms_timeout == 900
    other = {**config, "spec": {**config["spec"], "overrides": {"paused": False}}}
    other["metadata"] = {"name": "another", "namespace": "dpf-operator-system"}
    twin.apply([other])
    assert twin.options.dms_timeout == 900
    # Unpaused, the operator renders the singleton's flag again.
    twin.patch("DPFOperatorConfig", "dpfoperatorconfig", "dpf-operator-system", {"spec": {"overrides": {"paused": False}}})
    assert twin.options.dms_timeout == 60


@pytest.mark.parametrize(("command_line", "expected"), [
    (["/bin/bash", "-c", "--", "./rshim.sh && dmsd -v 99 -exec_timeout 60 -disable_unbind_at_activate"], 60.0),
    (["dmsd", "-exec_timeout=5", "--exec_timeout", "7"], 7.0),  # Go's flag package: the last one wins
    (["dmsd", "-bind_address", "0.0.0.0:9339"], None),
    (["dmsd", "-exec_timeout", "soon"], None),
    (["dmsd", "-dms_exec_timeout", "5"], None),
])
def test_the_exec_timeout_is_read_from_the_dmsd_command_line(command_line: list[str], expected: float | None) -> None:
    assert dms_exec_timeout(command_line) == expected


def test_a_dms_pod_without_the_flag_runs_with_dmsds_default() -> None:
    twin = Twin(TwinConfig(seed=3, fleet={"racks": 1, "hosts_per_rack": 1}, keep_log=False))
    name = next(iter(twin.bluefields.dpus))
    twin.bluefields.mark_dms_running(name, "10.128.0.9:9339", exec_timeout=45.0)
    assert twin.bluefields.get(name).exec_timeout == 45.0
    twin.bluefields.mark_dms_running(name, "10.128.0.10:9339")
    assert twin.bluefields.get(name).exec_timeout == DEFAULT_EXEC_TIMEOUT
