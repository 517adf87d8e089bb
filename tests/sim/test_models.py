"""World models: streams, parameter types, fleet, BFB server, BlueField/DMS, hosts, quick ports."""

from __future__ import annotations

import errno
import random
from collections.abc import Generator
from typing import Any

import pytest
import simpy
from pydantic import ValidationError

from dpf_core.ports import TaskState
from dpf_core.ports.ops import (
    DmsTarget,
    DownloadBfb,
    EnslaveVf,
    GnmiSetMode,
    OpError,
    OsActivate,
    OsInstall,
    OsVerify,
    OsVerifyResult,
    PowerCycle,
    RebootStatusOp,
    RebootStatusResult,
    SetNumVfs,
    Sleep,
    WarmReboot,
)
from dpf_sim.durations import Duration, parse_rate, parse_seconds, parse_size
from dpf_sim.fleet import FleetSpec, build_fleet
from dpf_sim.models import (
    BfbDirectory,
    BfbFault,
    BfbImage,
    BfbServerParams,
    BfbServers,
    BlueField,
    BlueFieldParams,
    BlueFields,
    DpuState,
    HostParams,
    Hosts,
)
from dpf_sim.net import Network
from dpf_sim.rng import Streams
from dpf_sim.tasks import Executor, SimTasks
from dpf_sim.worldports import SimBfbStore, SimDms, SimHostExec, SimHostNetwork

MiB = 2**20
URL = "http://bfb-server/bf-bundle-2.9.1-19_24.11_ubuntu-22.04_prod.bfb"
BFB = "bf-bundle.bfb"
DPU = "worker-0-0-0000-04-00"
TARGET = DmsTarget(dpu=f"dpf-operator-system/{DPU}", address="10.0.110.10:9339", pci_address="0000:04:00")

# Constant timings so the test can state the timeline exactly.
FAST_DPU = BlueFieldParams(dms_latency=0.1, gnmi_set_latency=0.5, rshim_rate="20MiB/s", flash_rate="10MiB/s",
                           boot_time="60s", cloud_init_time="30s", join_time="10s")
FAST_HOST = HostParams(exec_latency=0.2, arm_reset_time=5, arm_shutdown_time=12, reboot_time="4m",
                       power_cycle_time="5m", sriov_time=1)


class World:
    def __init__(self, seed: int = 0, hosts: int = 1, dpu: BlueFieldParams | None = FAST_DPU,
                 host: HostParams | None = FAST_HOST, bfb_size: int = 100 * MiB, **spec: Any) -> None:
        self.env = simpy.Environment()
        self.fleet = build_fleet(FleetSpec(racks=1, hosts_per_rack=hosts, **spec))
        self.streams = Streams(seed)
        self.net = Network(self.env, self.fleet)
        self.dir = BfbDirectory()
        self.servers = BfbServers(self.env, self.net, self.dir,
                                  BfbServerParams(catalogue={URL: BfbImage(size=bfb_size)}, request_latency=0.05),
                                  self.streams)
        self.joined: list[tuple[float, str]] = []
        self.bfs = BlueFields(self.env, self.net, self.dir, dpu, self.streams, on_booted=self._booted)
        self.hosts = Hosts(self.env, self.bfs, host, self.streams)
        self.executor = Executor()
        for model in (self.servers, self.bfs, self.hosts):
            model.register(self.executor)
        self.tasks = SimTasks(self.env, self.executor)
        self.join_ready = True

    def _booted(self, bf: BlueField) -> bool:
        if not self.join_ready:
            return False
        self.joined.append((self.env.now, bf.name))
        return True

    def run_task(self, proc: Any, key: str = "k", until: float | None = None) -> Any:
        self.tasks.start(key, proc)
        self.env.run(until=until)
        return self.tasks.status(key)

    def put_bfb(self) -> None:
        self.dir.write(BFB, b"")
        f = self.dir.get(BFB)
        assert f is not None
        f.size = 100 * MiB


def install(target: DmsTarget = TARGET, times: list[tuple[str, float]] | None = None) -> Any:
    """The provisioning install task's shape (facts 3.3): mode, BFB, bf.cfg, activate, poll every 3 s."""
    def proc() -> Generator[Any, Any, RebootStatusResult]:
        yield GnmiSetMode(target)
        yield OsInstall(target, version=BFB, file_name=BFB)
        if times is not None:
            times.append(("bfb", 0.0))
        yield OsInstall(target, version=f"{DPU}.cfg", content=b"#bf.cfg\nUPDATE_DPU_OS=yes\n")
        yield OsActivate(target, version=f"{BFB};{DPU}.cfg")
        while True:
            st: RebootStatusResult = yield RebootStatusOp(target)
            if not st.active:
                return st
            yield Sleep(3)

    return proc


# --- streams, durations, sizes, rates -------------------------------------------------------------------
def test_streams_are_reproducible_and_independent() -> None:
    a, b = Streams(42), Streams(42)
    assert [a.get("host/w1").random() for _ in range(3)] == [b.get("host/w1").random() for _ in range(3)]
    assert Streams(43).get("host/w1").random() != Streams(42).get("host/w1").random()
    # Using another stream first does not shift this one.
    c = Streams(42)
    c.get("bluefield/x").random()
    assert c.get("host/w2").random() == Streams(42).get("host/w2").random()
    assert c.child("host").get("w2") is c.get("host/w2")


def test_duration_shorthands() -> None:
    assert parse_seconds("90s") == 90 and parse_seconds("5m") == 300 and parse_seconds("1h30m") == 5400
    assert parse_seconds("250ms") == 0.25 and parse_seconds(12.5) == 12.5 and parse_seconds("1d") == 86400
    rng = random.Random(0)
    assert Duration.of("2m30s").sample(rng) == 150
    for bad in ("5 minutes", "-3s", "m5", "", True):
        with pytest.raises(ValidationError):
            Duration.model_validate(bad)


@pytest.mark.parametrize("spec,low,high,mean", [
    ({"dist": "uniform", "low": "1m", "high": "2m"}, 60, 120, 90),
    ({"dist": "uniform", "min": 10, "max": 20}, 10, 20, 15),
    ({"dist": "normal", "mean": "100s", "sd": "10s", "min": 90, "max": 105}, 90, 105, None),
    ({"dist": "lognormal", "mean": "150s", "sd": "20s"}, 0, 1e9, 150),
    ({"dist": "exponential", "mean": 30}, 0, 1e9, 30),
    ({"dist": "triangular", "low": 120, "mode": 150, "high": 180}, 120, 180, 150),
])
def test_distributions_stay_in_bounds_and_hit_their_mean(spec: dict[str, Any], low: float, high: float,
                                                         mean: float | None) -> None:
    d = Duration.of(spec)
    rng = random.Random(7)
    xs = [d.sample(rng) for _ in range(4000)]
    assert all(low <= x <= high for x in xs)
    if mean is not None:
        assert sum(xs) / len(xs) == pytest.approx(mean, rel=0.05)


def test_distribution_parameters_are_checked() -> None:
    with pytest.raises(ValidationError, match="needs sd"):
        Duration.model_validate({"dist": "normal", "mean": 3})
    with pytest.raises(ValidationError, match="does not take"):
        Duration.model_validate({"dist": "exponential", "mean": 3, "mode": 2})
    with pytest.raises(ValidationError):
        Duration.model_validate({"dist": "triangular", "low": 3, "high": 2, "mode": 2})


def test_sizes_and_rates() -> None:
    assert parse_size("1.5GiB") == 1610612736 and parse_size("512KB") == 512000 and parse_size("512KiB") == 524288
    assert parse_size(42) == 42 and parse_size("8Mbit") == 1_000_000
    assert parse_rate("10Gbit/s") == 1.25e9 and parse_rate("25Gbps") == 3.125e9
    assert parse_rate("40MB/s") == 40e6 and parse_rate("1GiB/s") == 2**30 and parse_rate(1000) == 1000
    for bad in ("fast", "0MB/s", "-1Gbps"):
        with pytest.raises(ValueError):
            parse_rate(bad)


# --- fleet ---------------------------------------------------------------------------------------------
def test_fleet_names_labels_and_topology() -> None:
    fleet = build_fleet(FleetSpec(racks=2, hosts_per_rack=2, dpus_per_host=2, bfb_servers=2))
    assert list(fleet.hosts) == ["worker-0-0", "worker-0-1", "worker-1-0", "worker-1-1"]
    assert list(fleet.dpus)[:2] == ["worker-0-0-0000-04-00", "worker-0-0-0000-05-00"]
    labels = fleet.hosts["worker-1-0"].labels
    assert labels == {
        "feature.node.kubernetes.io/dpu-0-pci-address": "0000-04-00",
        "feature.node.kubernetes.io/dpu-0-pf0-name": "ens1f0np0",
        "feature.node.kubernetes.io/dpu-0-ps-id": "MT_0000000884",
        "feature.node.kubernetes.io/dpu-1-pci-address": "0000-05-00",
        "feature.node.kubernetes.io/dpu-1-pf0-name": "ens2f0np0",
        "feature.node.kubernetes.io/dpu-1-ps-id": "MT_0000000884",
        "feature.node.kubernetes.io/dpu-enabled": "true",
        "feature.node.kubernetes.io/dpu-oob-bridge-configured": "",
    }
    assert fleet.kind("core") == "core" and fleet.kind("tor-1") == "tor" and fleet.kind("bfb-server-1") == "bfb-server"
    assert fleet.kind("worker-1-1-0000-05-00") == "dpu"
    assert fleet.path("bfb-server-1", "worker-1-1-0000-05-00") == (
        "bfb-server-1->core", "core->tor-1", "tor-1->worker-1-1", "worker-1-1->worker-1-1-0000-05-00")
    assert fleet.bandwidth("tor-1->core") == parse_rate("100Gbit/s")
    assert fleet.dpu_at("worker-0-1", "0000-05-00") == fleet.dpus["worker-0-1-0000-05-00"]
    assert fleet.bfb_share == "bfb-server-0"


def test_fleet_total_hosts_fill_racks_and_patterns_are_checked() -> None:
    spec = FleetSpec(racks=3, hosts=7, host_name_pattern="dpu-host-{n:03d}", dpu_device_id="a2d6")
    assert spec.rack_sizes() == [3, 2, 2]
    fleet = build_fleet(spec)
    assert next(iter(fleet.hosts)) == "dpu-host-000" and fleet.hosts["dpu-host-006"].rack == 2
    assert fleet.dpus["dpu-host-000-0000-04-00"].device_id == "a2d6"
    assert "feature.node.kubernetes.io/dpu-oob-bridge-configured" not in build_fleet(
        FleetSpec(oob_bridge_configured=False)).hosts["worker-0-0"].labels
    with pytest.raises(ValidationError):
        FleetSpec(host_name_pattern="Worker_{index}")
    with pytest.raises(ValidationError):
        FleetSpec(hosts=4, hosts_per_rack=2)
    with pytest.raises(ValueError, match="twice"):
        build_fleet(FleetSpec(racks=2, hosts_per_rack=1, host_name_pattern="w{index}"))


# --- BFB server ----------------------------------------------------------------------------------------
def test_download_streams_to_a_temp_name_then_renames() -> None:
    w = World(bfb_share="worker-0-0", bfb_size=int(1.25e9))
    st = w.run_task(lambda: (yield DownloadBfb(URL, "bfb-uid-1", BFB)), until=0.5)
    assert st.state is TaskState.RUNNING
    assert w.dir.names() == ["bfb-uid-1"] and not w.dir.exists(BFB)
    w.env.run()
    st = w.tasks.status("k")
    # 50 ms request latency + 1.25e9 B over the 10 Gbit/s BFB server uplink.
    assert st is not None and st.state is TaskState.SUCCEEDED and st.finished_at == pytest.approx(st.started_at + 1.05)
    assert w.dir.names() == [BFB] and w.dir.size(BFB) == int(1.25e9)


def test_download_404_checksum_and_faults() -> None:
    w = World()
    st = w.run_task(lambda: (yield DownloadBfb("http://nowhere/x.bfb", "t1", "x.bfb")), key="404")
    assert (st.state, st.reason) == (TaskState.FAILED, "NotFound") and "404" in st.message
    good = w.servers.checksum(URL)
    st = w.run_task(lambda: (yield DownloadBfb(URL, "t2", BFB, sha256=good)), key="ok")
    assert st.state is TaskState.SUCCEEDED
    w.servers.set_fault(URL, BfbFault(corrupt=True))
    st = w.run_task(lambda: (yield DownloadBfb(URL, "t3", "again.bfb", sha256=good)), key="corrupt")
    assert (st.state, st.reason) == (TaskState.FAILED, "Checksum") and not w.dir.exists("t3")
    w.servers.set_fault(URL, BfbFault(not_found=True))
    st = w.run_task(lambda: (yield DownloadBfb(URL, "t4", "again.bfb")), key="gone")
    assert st.reason == "NotFound"


def test_slow_fault_caps_the_download() -> None:
    w = World(bfb_share="worker-0-0", bfb_size=10 * MiB)
    w.servers.set_fault(URL, BfbFault(max_rate=MiB))
    st = w.run_task(lambda: (yield DownloadBfb(URL, "t", BFB)))
    assert st.finished_at - st.started_at == pytest.approx(10.05)


def test_cancelled_download_frees_bandwidth_and_leaves_the_partial_temp_file() -> None:
    w = World(bfb_share="worker-0-0", bfb_size=int(2.5e9))
    w.tasks.start("k", lambda: (yield DownloadBfb(URL, "bfb-uid", BFB)))
    w.env.run(until=1.05)
    w.tasks.cancel("k")
    w.env.run()
    assert w.net.active() == [] and w.net.cancelled == 1
    partial = w.dir.get("bfb-uid")
    assert partial is not None and not partial.complete and partial.size == pytest.approx(1.25e9, rel=1e-6)


# --- BlueField + DMS -----------------------------------------------------------------------------------
def test_install_activate_reboot_status_timeline() -> None:
    w = World()
    w.put_bfb()
    w.bfs.mark_dms_running(DPU, TARGET.address)
    st = w.run_task(install())
    assert st.state is TaskState.SUCCEEDED
    assert st.result == RebootStatusResult(active=False, status="STATUS_SUCCESS")
    bf = w.bfs.get(DPU)
    # set mode 0.5; BFB: 0.1 + 100 MiB at the 20 MiB/s rshim cap (5 s) + 0.1; bf.cfg 0.3; activate 0.1.
    events = dict((what, t) for t, what in bf.history)
    assert events["mode=DPU"] == pytest.approx(0.5)
    assert events[f"staged {BFB}"] == pytest.approx(5.7)
    assert events[f"staged {DPU}.cfg"] == pytest.approx(6.0)
    assert events[f"flashing {BFB}"] == pytest.approx(6.1)
    assert events["booting"] == pytest.approx(16.1)  # 100 MiB at 10 MiB/s
    assert events["booted"] == pytest.approx(76.1)
    # Polls return at 6.2 + 3.1 k; the first at or after 76.1 is k = 23.
    assert st.finished_at - st.started_at == pytest.approx(6.2 + 3.1 * 23)
    assert [d for _, d in w.joined] == [DPU] and w.joined[0][0] == pytest.approx(116.1)  # + cloud-init 30 s, join 10 s
    assert (bf.installed_version, bf.installs, bf.max_flashing, bf.mode) == (BFB, 1, 1, "DPU")
    assert bf.bfcfg == b"#bf.cfg\nUPDATE_DPU_OS=yes\n" and bf.state is DpuState.RUNNING
    assert w.net.link_bytes()[f"worker-0-0->{DPU}"] == pytest.approx(100 * MiB)


def test_reboot_status_is_active_while_flashing_and_booting() -> None:
    w = World()
    w.put_bfb()
    w.bfs.mark_dms_running(DPU, TARGET.address)
    seen: list[tuple[float, bool]] = []

    def proc() -> Generator[Any, Any, None]:
        yield OsInstall(TARGET, version=BFB, file_name=BFB)
        yield OsActivate(TARGET, version=BFB)
        for _ in range(30):
            st = yield RebootStatusOp(TARGET)
            seen.append((w.env.now, st.active))
            yield Sleep(10)

    w.run_task(proc)
    assert all(active for t, active in seen if t < 5.4 + 70)
    assert all(not active for t, active in seen if t > 5.4 + 70.1)


def _verify(answers: list[tuple[float, Any]], now: Any) -> Generator[Any, Any, None]:
    try:
        result = yield OsVerify(TARGET)
        answers.append((now(), result))
    except OpError as e:
        answers.append((now(), e.reason))


def test_os_verify_reports_the_activated_version_only_once_the_dpu_booted_it() -> None:
    w = World(dpu=FAST_DPU.model_copy(update={"initial_version": "bf-bundle-2.7.0.bfb"}))
    w.put_bfb()
    w.bfs.mark_dms_running(DPU, TARGET.address)
    answers: list[tuple[float, Any]] = []

    def proc() -> Generator[Any, Any, None]:
        yield from _verify(answers, lambda: w.env.now)
        yield OsInstall(TARGET, version=BFB, file_name=BFB)
        yield OsInstall(TARGET, version=f"{DPU}.cfg", content=b"#bf.cfg\n")
        yield OsActivate(TARGET, version=f"{BFB};{DPU}.cfg")
        for _ in range(10):
            yield Sleep(10)
            yield from _verify(answers, lambda: w.env.now)

    assert w.run_task(proc).state is TaskState.SUCCEEDED
    # Flash 10 s + boot 60 s from the activation at ~5.9 s: the DPU runs the new install from ~75.9 s.
    assert answers[0] == (pytest.approx(0.1), OsVerifyResult("bf-bundle-2.7.0.bfb"))
    during = [a for t, a in answers[1:] if t < 75]
    after = [a for t, a in answers[1:] if t > 76]
    assert during and set(during) == {"Unavailable"}  # no OS to ask while flashing and booting
    assert after and set(after) == {OsVerifyResult(f"{BFB};{DPU}.cfg")}
    assert w.bfs.get(DPU).installed_version == BFB


def test_os_verify_after_a_failed_boot_reports_the_old_version_and_why() -> None:
    w = World()
    w.put_bfb()
    w.bfs.mark_dms_running(DPU, TARGET.address)
    w.bfs.get(DPU).boot_fault = "fail"
    answers: list[tuple[float, Any]] = []

    def proc() -> Generator[Any, Any, None]:
        st = yield from install()()
        assert st.status == "STATUS_FAILURE"
        yield from _verify(answers, lambda: w.env.now)
        w.bfs.reboot(DPU)  # a plain reboot into the flashed image, which boots this time
        while (yield RebootStatusOp(TARGET)).active:
            yield Sleep(5)
        yield from _verify(answers, lambda: w.env.now)

    assert w.run_task(proc).state is TaskState.SUCCEEDED
    assert [a for _, a in answers] == [
        OsVerifyResult("", f"{BFB};{DPU}.cfg failed to boot"),  # unknown initial version, kept
        OsVerifyResult(f"{BFB};{DPU}.cfg"),  # a good boot clears the message
    ]


def test_activate_needs_staged_versions() -> None:
    w = World()
    w.bfs.mark_dms_running(DPU, TARGET.address)
    st = w.run_task(lambda: (yield OsActivate(TARGET, version=f"{BFB};{DPU}.cfg")))
    assert (st.state, st.reason) == (TaskState.FAILED, "NonExistentVersion")
    assert w.bfs.get(DPU).flashes_started == 0


def test_install_of_a_missing_file_is_not_found() -> None:
    w = World()
    w.bfs.mark_dms_running(DPU, TARGET.address)
    st = w.run_task(lambda: (yield OsInstall(TARGET, version=BFB, file_name=BFB)))
    assert (st.state, st.reason) == (TaskState.FAILED, "NotFound")


def test_dms_exec_timeout_is_deadline_exceeded_and_frees_the_stream() -> None:
    w = World(dpu=FAST_DPU.model_copy(update={"exec_timeout": 3.0}))
    w.put_bfb()
    w.bfs.mark_dms_running(DPU, TARGET.address)
    st = w.run_task(lambda: (yield OsInstall(TARGET, version=BFB, file_name=BFB)))
    assert (st.state, st.reason) == (TaskState.FAILED, "DeadlineExceeded")
    assert st.finished_at - st.started_at == pytest.approx(3.0)
    assert w.net.active() == [] and BFB not in w.bfs.get(DPU).staged and w.bfs.timeouts == 1


def test_dms_unreachable_until_marked_running_and_while_the_host_is_down() -> None:
    w = World()
    dms = SimDms(w.bfs)
    assert not dms.reachable(TARGET.address)
    st = w.run_task(lambda: (yield GnmiSetMode(TARGET)), key="a")
    assert (st.state, st.reason) == (TaskState.FAILED, "Unavailable")
    w.bfs.mark_dms_running(DPU, TARGET.address)
    assert dms.reachable(TARGET.address)
    w.hosts.reboot("worker-0-0", 60)
    assert not dms.reachable(TARGET.address)
    w.env.run()
    assert dms.reachable(TARGET.address)
    w.bfs.mark_dms_running(DPU, TARGET.address, running=False)
    assert not dms.reachable(TARGET.address)


def test_two_activations_at_once_are_counted_as_overlapping_flashes() -> None:
    w = World()
    w.put_bfb()
    w.bfs.mark_dms_running(DPU, TARGET.address)

    def proc() -> Generator[Any, Any, None]:
        yield OsInstall(TARGET, version=BFB, file_name=BFB)
        yield OsActivate(TARGET, version=BFB)
        yield Sleep(2)
        yield OsActivate(TARGET, version=BFB)

    w.run_task(proc)
    bf = w.bfs.get(DPU)
    assert bf.max_flashing == 2 and bf.flashes_started == 2
    assert bf.installs == 1  # the first flash was overtaken by the second reset
    assert w.bfs.max_flashing_now == 2


def test_boot_faults() -> None:
    w = World()
    w.put_bfb()
    w.bfs.mark_dms_running(DPU, TARGET.address)
    w.bfs.get(DPU).boot_fault = "fail"
    st = w.run_task(install(), key="fail")
    assert st.result.status == "STATUS_FAILURE" and w.joined == []
    w.bfs.get(DPU).boot_fault = "hang"
    w.run_task(install(), key="hang", until=3000)
    hung = w.tasks.status("hang")
    assert hung is not None and hung.state is TaskState.RUNNING  # RebootStatus stays active forever
    assert w.bfs.get(DPU).state is DpuState.HUNG


def test_join_is_retried_every_5s_until_the_cluster_accepts() -> None:
    w = World()
    w.put_bfb()
    w.bfs.mark_dms_running(DPU, TARGET.address)
    w.join_ready = False
    w.run_task(install(), until=200)
    assert w.joined == [] and not w.bfs.get(DPU).joined
    w.join_ready = True
    w.env.run()
    # First try at 116.1, retries every 5 s; the first after t=200 is 116.1 + 17*5.
    assert [d for _, d in w.joined] == [DPU] and w.joined[0][0] == pytest.approx(116.1 + 85)


# --- hosts ---------------------------------------------------------------------------------------------
def test_initial_uptime_is_long_and_seeded() -> None:
    a, b, c = World(seed=1, hosts=3, host=None), World(seed=1, hosts=3, host=None), World(seed=2, hosts=3, host=None)
    ua = [a.hosts.uptime(h) for h in a.fleet.hosts]
    assert ua == [b.hosts.uptime(h) for h in b.fleet.hosts]
    assert ua != [c.hosts.uptime(h) for h in c.fleet.hosts]
    assert all(u is not None and 86400 <= u <= 30 * 86400 for u in ua)
    assert len(set(ua)) == 3


def test_warm_reboot_resets_the_arm_waits_for_system_off_then_reboots_the_host() -> None:
    w = World()
    exec_ = SimHostExec(w.hosts)
    before = exec_.uptime("worker-0-0")
    st = w.run_task(lambda: (yield WarmReboot("worker-0-0", "0000:04:00")), until=25)
    # 0.2 exec + 5 s ARM reset + ceil(12/5)=3 polls of 5 s -> host reboot at 20.2.
    assert st.state is TaskState.SUCCEEDED and st.finished_at - st.started_at == pytest.approx(20.2)
    first_t, first = w.bfs.get(DPU).history[0]
    assert first == "ARM off" and first_t == pytest.approx(5.2)
    assert exec_.uptime("worker-0-0") is None
    w.env.run(until=20.2 + 240 + 10)
    assert exec_.uptime("worker-0-0") == pytest.approx(10)
    assert before is not None and before > 86400
    h = w.hosts.get("worker-0-0")
    assert (h.reboots, h.warm_reboots, h.power_cycles) == (1, 1, 0)
    w.env.run()
    assert w.bfs.get(DPU).boots == 1 and w.joined  # the DPU booted with the host and rejoined


def test_warm_reboot_times_out_when_the_arm_never_reaches_system_off() -> None:
    w = World(host=FAST_HOST.model_copy(update={"arm_shutdown_time": Duration.of("10m")}))
    st = w.run_task(lambda: (yield WarmReboot("worker-0-0", "0000:04:00")))
    assert (st.state, st.reason) == (TaskState.FAILED, "Timeout")
    assert st.finished_at - st.started_at == pytest.approx(0.2 + 5 + 150)
    assert w.hosts.get("worker-0-0").reboots == 0


def test_power_cycle_and_skip() -> None:
    w = World()
    w.run_task(lambda: (yield PowerCycle("worker-0-0", command="skip")), key="skip")
    assert w.hosts.get("worker-0-0").reboots == 0
    w.run_task(lambda: (yield PowerCycle("worker-0-0")), key="cycle", until=100)
    assert not w.hosts.is_up("worker-0-0") and w.hosts.get("worker-0-0").power_cycles == 1
    w.env.run()
    assert w.hosts.uptime("worker-0-0") is not None
    st = w.run_task(lambda: (yield WarmReboot("nope", "0000:04:00")), key="nope")
    assert st.reason == "NotFound"


def test_host_network_port_and_ops() -> None:
    w = World()
    port = SimHostNetwork(w.hosts, "worker-0-0")
    assert port.num_vfs("0000:04:00.0") == 0 and port.bridge_has_ipv4("br-dpu")
    with pytest.raises(OSError) as e:
        port.enslave_vf0("0000:04:00.0", "br-dpu", 1500)
    assert e.value.errno == errno.ENODEV
    port.set_num_vfs("0000:04:00.0", 16)
    with pytest.raises(OSError) as e:
        port.set_num_vfs("0000:04:00.0", 46)
    assert e.value.errno == errno.EBUSY
    port.enslave_vf0("0000:04:00", "br-dpu", 9000)
    assert port.vf0_enslaved("0000:04:00.0", "br-dpu") and not port.vf0_enslaved("0000:04:00.0", "br-x")
    assert w.hosts.get("worker-0-0").pfs["0000:04:00.0"].vf0_mtu == 9000
    w.hosts.reboot("worker-0-0", 10)
    w.env.run()
    assert port.num_vfs("0000:04:00.0") == 0 and not port.vf0_enslaved("0000:04:00.0", "br-dpu")
    w.hosts.set_bridge_ipv4("worker-0-0", "br-dpu", None)
    assert not port.bridge_has_ipv4("br-dpu")
    # The ops, on a one-host fleet (they name no node).
    st = w.run_task(lambda: (yield SetNumVfs("0000:04:00.1", 8)), key="vfs")
    assert st.state is TaskState.SUCCEEDED and port.num_vfs("0000:04:00.1") == 8
    st = w.run_task(lambda: (yield EnslaveVf("0000:04:00.1")), key="enslave")
    assert st.state is TaskState.SUCCEEDED and port.vf0_enslaved("0000:04:00.1", "br-dpu")
    st = w.run_task(lambda: (yield SetNumVfs("0000:04:00.1", 500)), key="range")
    assert (st.state, st.reason) == (TaskState.FAILED, "ERANGE")


def test_ops_without_a_node_are_refused_on_a_multi_host_fleet() -> None:
    w = World(hosts=2)
    st = w.run_task(lambda: (yield SetNumVfs("0000:04:00.0", 8)))
    assert (st.state, st.reason) == (TaskState.FAILED, "InvalidArgument")


def test_bfb_store_port() -> None:
    w = World()
    store = SimBfbStore(w.dir, w.env)
    assert not store.exists(f"{DPU}.cfg") and store.size(f"{DPU}.cfg") is None
    store.write(f"{DPU}.cfg", b"x" * 10)
    assert store.exists(f"{DPU}.cfg") and store.size(f"{DPU}.cfg") == 10
    store.remove(f"{DPU}.cfg")
    store.remove(f"{DPU}.cfg")  # removing a missing file is fine, as DPF ignores ENOENT
    assert not store.exists(f"{DPU}.cfg")


# --- determinism ---------------------------------------------------------------------------------------
def _provision_two(seed: int) -> list[Any]:
    w = World(seed=seed, hosts=2, dpu=BlueFieldParams(), host=HostParams())
    w.put_bfb()
    for i, dpu in enumerate(w.fleet.dpus):
        target = DmsTarget(f"ns/{dpu}", f"10.0.0.{i}:9339", "0000:04:00")
        w.bfs.mark_dms_running(dpu, target.address)
        w.tasks.start(dpu, install(target))
    w.env.run()
    return [(name, bf.history) for name, bf in w.bfs.dpus.items()] + [w.joined, w.net.utilisation]


def test_same_seed_same_run_different_seed_different_run() -> None:
    assert _provision_two(5) == _provision_two(5)
    assert _provision_two(5) != _provision_two(6)


def test_unknown_target_is_unavailable() -> None:
    w = World()
    bad = DmsTarget("ns/ghost", "10.9.9.9:9339", "0000:04:00")
    st = w.run_task(lambda: (yield RebootStatusOp(bad)))
    assert st.reason == "Unavailable"
    with pytest.raises(OpError):
        w.executor(object())
