"""Every fault of the catalogue (dpf_sim.faults) on a small fleet: what the system does while it lasts, and
that it converges once it clears, or ends in Error with a reason the fault explains."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from dpf_core.api.external import Node
from dpf_core.api.provisioning import BFB, DPU, BFBPhase, DPUCluster, DPUClusterPhase, DPUPhase
from dpf_sim import faults
from dpf_sim.chaos import dpu_error_reason
from dpf_sim.faults import FaultError
from dpf_sim.models.bluefield import DpuState
from dpf_sim.twin import Twin, TwinConfig

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "provisioning.yaml"
MANIFESTS = list(yaml.safe_load_all(SAMPLES.read_text()))
SAMPLE_BFB = next(m for m in MANIFESTS if m["kind"] == "BFB")
D0, D1, D2 = "worker-0-0-0000-04-00", "worker-0-1-0000-04-00", "worker-0-2-0000-04-00"
NS = "dpf-operator-system"

# Landmarks of the healthy run (seed 1, 3 hosts): DMS reachable ~100 s, BFB streamed into the DPU ~100-177 s,
# flash ~177-690 s, boot until ~850 s, host warm reboot ~920 s, every DPU Ready by ~1250 s.
SETTLED = 4000.0


def twin_with(fault: dict[str, Any] | None = None, at: float = 0.0, hosts: int = 3, seed: int = 1) -> Twin:
    """The sample provisioning objects applied at t=0; `fault` injected at `at` (before the apply at 0)."""
    twin = Twin(TwinConfig(seed=seed, fleet={"racks": 1, "hosts_per_rack": hosts}, keep_log=True))
    if fault is not None and at == 0.0:
        twin.inject(fault)
    twin.apply(MANIFESTS)
    if fault is not None and at > 0.0:
        twin.run(at)
        twin.inject(fault)
    return twin


def phases(twin: Twin) -> dict[str, str]:
    return {d.name: str(d.status.phase) for d in twin.host.list(DPU)}


def dpu(twin: Twin, name: str) -> DPU:
    return twin.host.get(DPU, name, NS)


def ready_condition(twin: Twin, name: str) -> tuple[str, str]:
    for c in dpu(twin, name).status.conditions:
        if c.type == "Ready":
            return c.status, c.reason or ""
    return "", ""


def assert_explained_error(twin: Twin, name: str, fault_type: str) -> str:
    d = dpu(twin, name)
    assert d.status.phase == DPUPhase.ERROR, phases(twin)
    reason, message = dpu_error_reason(d)
    rec = faults.injector(twin).explaining(name, reason, message)
    assert rec is not None and rec.type == fault_type, (reason, message)
    return message


def assert_all_ready(twin: Twin, n: int = 3) -> None:
    assert Counter(phases(twin).values()) == {"Ready": n}, phases(twin)
    assert all(bf.max_flashing <= 1 for bf in twin.bluefields.dpus.values())


# --- DMS -------------------------------------------------------------------------------------------------------


def test_dms_unreachable_before_the_install_only_delays_it() -> None:
    twin = twin_with({"type": "dmsUnreachable", "dpus": [D0], "duration": 300}, at=50)
    twin.run(340)
    # The DPU waits in DMS Deployment (the inline dial fails) while the others are installing already.
    assert phases(twin)[D0] == "DMS Deployment"
    assert phases(twin)[D1] == "OS Installing"
    twin.run(SETTLED)
    assert_all_ready(twin)


def test_dms_unreachable_during_the_install_fails_it_with_the_fault_in_the_message() -> None:
    twin = twin_with({"type": "dmsUnreachable", "dpus": [D0], "duration": 600}, at=150)
    twin.run(SETTLED)
    message = assert_explained_error(twin, D0, "dmsUnreachable")
    assert "connection refused (injected dmsUnreachable#1)" in message
    assert phases(twin)[D1] == phases(twin)[D2] == "Ready"


def test_slow_dms_delays_only_its_dpu() -> None:
    base = twin_with()
    base.run(SETTLED)
    slow = twin_with({"type": "dmsSlow", "dpus": [D0], "delay": 120, "duration": 1200}, at=50)
    slow.run(SETTLED)
    assert_all_ready(slow)

    def ready_at(t: Twin, name: str) -> float:
        return float(next(float(line.split()[0]) for line in t.log.lines
                          if f"DPU {NS}/{name} " in line and line.endswith("phase=Ready")))

    assert ready_at(slow, D0) > ready_at(base, D0) + 120
    assert abs(ready_at(slow, D1) - ready_at(base, D1)) < 60


def test_a_failing_os_activate_is_retried_then_the_install_fails() -> None:
    twin = twin_with({"type": "dmsRpcFailure", "dpus": [D0], "rpc": "OS.Activate", "duration": 600}, at=50)
    twin.run(SETTLED)
    message = assert_explained_error(twin, D0, "dmsRpcFailure")
    assert "failed after 10 attempts" in message
    assert twin.bluefields.get(D0).flashes_started == 0
    assert phases(twin)[D1] == "Ready"


def test_flash_failure_ends_in_error_and_the_dpu_stays_down() -> None:
    twin = twin_with({"type": "flashFailure", "dpus": [D1], "duration": 600}, at=50)
    twin.run(SETTLED)
    message = assert_explained_error(twin, D1, "flashFailure")
    assert message.startswith("reboot failure")
    assert twin.bluefields.get(D1).state == DpuState.FAILED
    assert phases(twin)[D0] == phases(twin)[D2] == "Ready"


def test_a_hang_after_the_flash_is_cleared_by_the_watchdog_and_fails_the_install() -> None:
    twin = twin_with({"type": "dpuHang", "dpus": [D0], "duration": 900}, at=50)
    twin.run(950)
    assert twin.bluefields.get(D0).state == DpuState.HUNG
    assert phases(twin)[D0] == "OS Installing"  # RebootStatus stays active: the install task keeps polling
    twin.run(SETTLED)
    assert twin.hosts.get("worker-0-0").power_cycles == 1
    assert_explained_error(twin, D0, "dpuHang")


def test_a_hang_in_the_host_reboot_recovers_after_the_watchdog_power_cycle() -> None:
    twin = twin_with({"type": "dpuHang", "dpus": [D0], "duration": 900}, at=800)
    twin.run(1650)
    assert twin.bluefields.get(D0).state == DpuState.HUNG
    assert phases(twin)[D0] != "Ready"  # the DPU never joins its cluster while hung
    twin.run(SETTLED)
    assert_all_ready(twin)
    assert twin.bluefields.get(D0).installs == 1  # recovered without a second flash


# --- BFB server ------------------------------------------------------------------------------------------------


def test_a_bfb_404_leaves_the_bfb_in_error_and_a_new_bfb_recovers_the_rollout() -> None:
    url = SAMPLE_BFB["spec"]["url"]
    twin = twin_with({"type": "bfbNotFound", "url": url, "duration": 600})
    twin.run(500)
    assert [b.status.phase for b in twin.host.list(BFB)] == [BFBPhase.ERROR]
    # DPUs wait for the BFB; none is flashed, none is in Error (DPF: BFB Error is terminal until deletion,
    # and the webhook refuses to delete a BFB a DPUSet uses).
    assert set(phases(twin).values()) == {"Pending"}
    assert all(bf.flashes_started == 0 for bf in twin.bluefields.dpus.values())
    twin.run(700)
    # The operator's remedy once the server is fixed: a new BFB object, and the DPUSet pointed at it.
    twin.apply([{**SAMPLE_BFB, "metadata": {"name": "bf-bundle-retry", "namespace": NS}}])
    twin.patch("DPUSet", "dpuset", NS, {"spec": {"dpuTemplate": {"spec": {"bfb": {"name": "bf-bundle-retry"}}}}})
    twin.run(SETTLED + 700)
    assert_all_ready(twin)
    assert {d.spec.bfb for d in twin.host.list(DPU)} == {"bf-bundle-retry"}


def test_a_corrupt_bfb_is_ready_but_every_dpu_flashed_with_it_fails_to_boot() -> None:
    url = SAMPLE_BFB["spec"]["url"]
    twin = twin_with({"type": "bfbCorrupt", "url": url, "duration": 600})
    twin.run(SETTLED)
    assert [b.status.phase for b in twin.host.list(BFB)] == [BFBPhase.READY]  # DPF checks no checksum
    for name in (D0, D1, D2):
        assert assert_explained_error(twin, name, "bfbCorrupt").startswith("reboot failure")


def test_a_slow_bfb_server_delays_the_download_and_everything_converges() -> None:
    twin = twin_with({"type": "bfbSlow", "url": SAMPLE_BFB["spec"]["url"], "rate": "5MiB/s", "duration": 3600})
    twin.run(200)
    assert [b.status.phase for b in twin.host.list(BFB)] == [BFBPhase.DOWNLOADING]  # 1.5 GiB at 5 MiB/s: ~5 min
    twin.run(SETTLED + 400)
    assert_all_ready(twin)


# --- network ---------------------------------------------------------------------------------------------------


def test_a_short_link_outage_stalls_the_install_stream_which_then_resumes() -> None:
    twin = twin_with({"type": "linkDown", "host": "worker-0-0", "duration": 300}, at=120)
    twin.run(400)
    assert phases(twin)[D0] == "OS Installing" and twin.bluefields.get(D0).flashes_started == 0
    twin.run(SETTLED)
    assert_all_ready(twin)


def test_a_link_outage_longer_than_the_dms_timeout_fails_the_install() -> None:
    twin = twin_with({"type": "linkDown", "host": "worker-0-0", "duration": 1200}, at=120)
    twin.run(SETTLED)
    message = assert_explained_error(twin, D0, "linkDown")
    assert "deadline exceeded" in message
    assert phases(twin)[D1] == "Ready"


def test_a_degraded_link_slows_the_transfer_but_converges() -> None:
    twin = twin_with({"type": "linkDegraded", "host": "worker-0-0", "factor": 0.0005, "duration": 600}, at=110)
    twin.run(SETTLED)
    assert_all_ready(twin)
    history = dict((what, t) for t, what in twin.bluefields.get(D0).history)
    assert history["flashing dpf-operator-system-bf-bundle.bfb"] > 250  # ~77 s when healthy


# --- API server ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [503, 429, 500])
def test_an_api_brownout_makes_controllers_retry_and_they_converge(code: int) -> None:
    twin = twin_with({"type": "apiBrownout", "store": "host", "latency": 0.2, "errorRate": 0.5, "code": code,
                      "duration": 900}, at=30)
    twin.run(SETTLED)
    assert_all_ready(twin)
    guard = faults.injector(twin)._guards["host"]
    assert guard.failed > 10
    errors = sum(int(c["errors"]) for c in (twin.manager.metrics() if twin.manager else []))
    assert errors > 10


def test_a_dpu_cluster_brownout_turns_ready_dpus_not_ready_until_it_ends() -> None:
    twin = twin_with()
    twin.run(1800)
    assert_all_ready(twin)
    twin.inject({"type": "apiBrownout", "store": "dpuClusters", "errorRate": 1.0, "duration": 600})
    twin.run(2100)
    assert ready_condition(twin, D0) == ("False", "DPUNodeGetError")
    assert phases(twin)[D0] == "Ready"  # the phase stays: only the condition reports the trouble
    twin.run(SETTLED)
    assert all(ready_condition(twin, d) == ("True", "DPUNodeReady") for d in (D0, D1, D2))


CLUSTER = "dpu-cplane-tenant1/dpu-cplane-tenant1"


@pytest.mark.parametrize("fault", [{"type": "apiBrownout", "store": CLUSTER, "errorRate": 1.0, "duration": 600},
                                   {"type": "controlPlaneDown", "cluster": CLUSTER, "duration": 600}],
                         ids=["apiBrownout", "controlPlaneDown"])
def test_a_dpu_cluster_fault_wakes_its_ready_dpus_when_it_starts_and_when_it_ends(fault: dict[str, Any]) -> None:
    twin = twin_with()
    twin.run(1800)
    assert twin.dpu_names.ready([CLUSTER]) == [D0, D1, D2]
    assert twin.dpu_names.ready(["elsewhere/other"]) == []
    # Far inside the Ready poll (an hour in the twin): only the fault's wake can have run the check.
    assert twin.options.ready_poll >= 3600
    twin.inject(fault)
    twin.run(1805)
    assert all(ready_condition(twin, d) == ("False", "DPUNodeGetError") for d in (D0, D1, D2))
    twin.run(2405)
    assert all(ready_condition(twin, d) == ("True", "DPUNodeReady") for d in (D0, D1, D2))


def test_a_partial_dpu_cluster_brownout_is_rechecked_while_it_lasts() -> None:
    twin = twin_with()
    twin.run(1800)
    # Latency only: every check of a Ready DPU passes, so no retry adds calls; what calls there are come from
    # the fault's wakes, one Node read per Ready DPU at the start and then every READY_RECHECK.
    twin.inject({"type": "apiBrownout", "store": CLUSTER, "latency": 0.1, "errorRate": 0.0, "duration": 1000})
    guard = faults.injector(twin)._guards[CLUSTER]
    twin.run(1801)
    at_start = guard.calls
    assert at_start >= 3
    twin.run(1800 + faults.READY_RECHECK + 1)
    assert guard.calls == 2 * at_start
    twin.run(1800 + 3 * faults.READY_RECHECK + 1)
    assert guard.calls == 4 * at_start
    twin.run(3600)  # cleared at 2800: no more wakes, the fault sees no call
    assert guard.calls == 4 * at_start


def test_dropped_watches_starve_the_controllers_until_they_re_list() -> None:
    twin = twin_with({"type": "watchDrop", "duration": 600}, at=100)
    assert twin.manager is not None
    dpu_ctl = twin.manager.controller("dpu")
    before = dpu_ctl.metrics()["events"]
    twin.run(650)
    assert dpu_ctl.metrics()["events"] == before  # nothing delivered while the stream is down
    twin.run(701)
    assert int(dpu_ctl.metrics()["events"]) > int(before)  # the re-list delivered every object as ADDED
    twin.run(SETTLED)
    assert_all_ready(twin)


@pytest.mark.parametrize("at", [20, 150, 400, 1300])
def test_a_crashed_controller_rebuilds_from_the_store_and_never_flashes_twice(at: float) -> None:
    twin = twin_with({"type": "controllerCrash", "downtime": 60}, at=at)
    old = twin.manager
    twin.run(at + 30)
    assert twin.manager is old  # still down
    twin.run(SETTLED)
    assert twin.manager is not old
    assert_all_ready(twin)
    # A crash during the flash (400 s) adopts the flash in progress instead of installing over it.
    assert all(bf.flashes_started == 1 for bf in twin.bluefields.dpus.values())


# --- DPU cluster -----------------------------------------------------------------------------------------------


def test_dpu_cluster_control_plane_down_and_back() -> None:
    twin = twin_with()
    twin.run(1800)
    twin.inject({"type": "controlPlaneDown", "duration": 600})
    twin.run(2100)
    assert [c.status.phase for c in twin.host.list(DPUCluster)] == [DPUClusterPhase.NOT_READY]
    assert ready_condition(twin, D1)[0] == "False"
    twin.run(SETTLED)
    assert [c.status.phase for c in twin.host.list(DPUCluster)] == [DPUClusterPhase.READY]
    assert all(ready_condition(twin, d) == ("True", "DPUNodeReady") for d in (D0, D1, D2))


def test_control_plane_down_while_dpus_join_delays_the_join() -> None:
    twin = twin_with({"type": "controlPlaneDown", "duration": 900}, at=700)
    twin.run(1590)
    store = twin.dpu_cluster_store("dpu-cplane-tenant1", "dpu-cplane-tenant1")
    assert store is not None and store.list(Node) == []  # kubeadm join keeps failing
    twin.run(SETTLED)
    assert_all_ready(twin)


def test_node_not_ready_flips_the_dpu_ready_condition_and_back() -> None:
    twin = twin_with()
    twin.run(1800)
    twin.inject({"type": "nodeNotReady", "dpus": [D1], "duration": 600})
    twin.run(2100)
    assert ready_condition(twin, D1) == ("False", "DPUNodeNotReady")
    assert ready_condition(twin, D0) == ("True", "DPUNodeReady")
    twin.run(SETTLED)
    assert ready_condition(twin, D1) == ("True", "DPUNodeReady")


def test_ovs_restart_needs_the_service_chain_twin() -> None:
    twin = twin_with()
    with pytest.raises(FaultError, match="service-chain twin"):
        twin.inject({"type": "ovsRestart", "dpus": [D0]})
    assert faults.stats(twin)["injected"] == 0


# --- the catalogue itself --------------------------------------------------------------------------------------


def test_bad_fault_specs_name_every_bad_field() -> None:
    twin = twin_with()
    with pytest.raises(FaultError, match="unknown fault type 'meteor'"):
        twin.inject({"type": "meteor"})
    with pytest.raises(FaultError) as e:
        twin.inject({"type": "apiBrownout", "errorRate": 2, "code": 404, "colour": "red"})
    assert "errorRate" in str(e.value) and "code" in str(e.value) and "colour: unknown field" in str(e.value)
    with pytest.raises(FaultError, match="no DPU nope"):
        twin.inject({"type": "dmsUnreachable", "dpus": ["nope"]})
    with pytest.raises(FaultError, match="exactly one of link, between, host, rack"):
        twin.inject({"type": "linkDown"})
    assert faults.check_fault({"type": "dmsSlow", "delay": "2m"}) == []


def test_clear_faults_ends_every_active_fault_at_once() -> None:
    twin = twin_with({"type": "dmsUnreachable", "dpus": [D0]}, at=50)  # no duration: for good
    twin.inject({"type": "bfbSlow", "bfb": "bf-bundle", "duration": 5000})
    twin.run(300)
    assert phases(twin)[D0] == "DMS Deployment"
    twin.inject({"type": "clearFaults"})
    assert faults.injector(twin).active == []
    twin.run(SETTLED)
    assert_all_ready(twin)
    assert faults.stats(twin)["by_type"] == {"bfbSlow": 1, "clearFaults": 1, "dmsUnreachable": 1}


def test_count_picks_targets_from_the_seed() -> None:
    picks = []
    for _ in range(2):
        twin = twin_with(hosts=8, seed=5)
        rec = twin.inject({"type": "nodeNotReady", "count": 3, "duration": 10})
        picks.append(rec.dpus)
    assert picks[0] == picks[1] and picks[0] is not None and len(picks[0]) == 3
