"""The twin models' memory savings keep every number and byte the same: lazy random streams draw exactly what a
live generator draws, packed bf.cfg contents read back byte for byte."""

from __future__ import annotations

import random
import sys
from collections.abc import Generator
from typing import Any

import pytest
import simpy

from dpf_core.ports.ops import AwaitReboot, DmsTarget, OsActivate, OsInstall
from dpf_sim.durations import Duration
from dpf_sim.engine import release_free_memory
from dpf_sim.fleet import FleetSpec, build_fleet
from dpf_sim.models.bfbserver import BfbDirectory
from dpf_sim.models.bluefield import BlueFieldParams, BlueFields, DpuState, StagedImage
from dpf_sim.models.packing import PACK_MIN, RECENT, History, Packed, Packer, unpack
from dpf_sim.net import Network, Utilisation
from dpf_sim.rng import KEEP_LIVE_WORDS, LazyStream, Streams, derive_seed


def _draws(rng: random.Random | LazyStream, n: int) -> list[float]:
    """A mix of every draw a Duration makes, including gauss's cached second value."""
    out: list[float] = []
    for i in range(n):
        kind = i % 7
        if kind == 0:
            out.append(rng.random())
        elif kind == 1:
            out.append(rng.gauss(10.0, 2.0))
        elif kind == 2:
            out.append(rng.gauss(10.0, 2.0))  # the pair's cached half: no words drawn
        elif kind == 3:
            out.append(rng.lognormvariate(1.0, 0.5))
        elif kind == 4:
            out.append(rng.uniform(1.0, 5.0))
        elif kind == 5:
            out.append(rng.expovariate(0.5))
        else:
            out.append(rng.triangular(1.0, 9.0, 2.0))
    return out


def test_lazy_stream_draws_exactly_what_a_live_generator_draws() -> None:
    live = Streams(7).get("bluefield/dpu-0")
    lazy = Streams(7).lazy("bluefield/dpu-0")
    assert isinstance(lazy, LazyStream)
    assert _draws(lazy, 200) == _draws(live, 200)
    assert not lazy.live  # 200 mixed draws stay under the keep-live threshold: nothing held between draws


def test_lazy_stream_keeps_its_generator_once_it_draws_a_lot_and_stays_exact() -> None:
    live = Streams(3).get("host/h")
    lazy = LazyStream(derive_seed(3, "host/h"))
    first = [lazy.random() for _ in range(KEEP_LIVE_WORDS // 2 + 1)]  # two words each: past the threshold
    assert lazy.live
    assert first + _draws(lazy, 50) == [live.random() for _ in range(len(first))] + _draws(live, 50)


def test_get_and_lazy_of_one_name_are_one_sequence() -> None:
    reference = Streams(1).get("bluefield/x")
    expected = [reference.random() for _ in range(6)]

    s = Streams(1)
    lazy = s.child("bluefield").lazy("x")
    got = [lazy.random(), lazy.random()]
    pinned = s.get("bluefield/x")  # a caller that keeps the generator: the lazy handle follows it
    got += [pinned.random(), lazy.random(), pinned.random(), lazy.random()]
    assert got == expected
    assert s.get("bluefield/x") is pinned

    s2 = Streams(1)
    first = s2.get("bluefield/x")
    assert s2.lazy("bluefield/x") is first  # asked lazily after a live one exists: the live one


def test_durations_sample_the_same_from_lazy_and_live_streams() -> None:
    d = Duration.of({"dist": "triangular", "low": "2m", "mode": "2m30s", "high": "3m"})
    n = Duration.of({"dist": "normal", "mean": "10s", "sd": "3s"})
    live, lazy = Streams(5).get("d"), Streams(5).lazy("d")
    assert [d.sample(live) if i % 2 else n.sample(live) for i in range(40)] == \
        [d.sample(lazy) if i % 2 else n.sample(lazy) for i in range(40)]


def _cfg(host: str, token: str) -> bytes:
    body = "".join(f"line {i}: some bf.cfg content that every DPU shares\n" for i in range(150))
    return f"# bf.cfg for DPU {host}\n{body}kubeadm join --token {token}\nhostname {host}\n".encode()


def test_packer_round_trips_and_packs_against_the_first_content() -> None:
    p = Packer()
    a, b = _cfg("worker-0-0", "abc.123"), _cfg("worker-0-1", "def.456")
    pa, pb = p.pack(a), p.pack(b)
    assert isinstance(pa, Packed) and isinstance(pb, Packed)
    assert unpack(pa) == a and unpack(pb) == b
    assert len(pb.data) < len(b) // 20  # a neighbour's bf.cfg is a few differing bytes against the first
    assert p.pack(bytes(b)) is pb  # the same bytes again (another object): deflated once
    small = b"#bf.cfg\n"
    assert len(small) < PACK_MIN and p.pack(small) is small and p.pack(None) is None


def test_packer_forgets_old_contents_but_stays_correct() -> None:
    p = Packer()
    first = _cfg("worker-0-0", "t0")
    kept = p.pack(first)
    for i in range(1, RECENT + 1):
        p.pack(_cfg(f"worker-0-{i}", f"t{i}"))
    again = p.pack(first)
    assert again is not kept and unpack(again) == first


def test_the_share_and_the_staged_image_keep_one_packed_bfcfg() -> None:
    d = BfbDirectory()
    cfg = _cfg("worker-0-0", "abc.123")
    d.write("worker-0-0.cfg", cfg, now=3.0)
    f = d.get("worker-0-0.cfg")
    assert f is not None and f.content == cfg and f.size == len(cfg) and f.created_at == 3.0
    staged = StagedImage("worker-0-0.cfg", "cfg", len(cfg), content=cfg, packer=d.packer)
    assert staged.packed_content is f.packed_content  # the install right after the write: not deflated again
    assert staged.content == cfg
    assert staged == StagedImage("worker-0-0.cfg", "cfg", len(cfg), content=cfg)  # compares the bytes


def _world(latency: object = "50ms", seed: int = 0) -> tuple[simpy.Environment, BlueFields, DmsTarget]:
    env = simpy.Environment()
    fleet = build_fleet(FleetSpec(racks=1, hosts_per_rack=1))
    params = BlueFieldParams(dms_latency=Duration.of(latency), boot_time=Duration.of("2m30s"))
    bfs = BlueFields(env, Network(env, fleet), BfbDirectory(), params, Streams(seed))
    name = next(iter(bfs.dpus))
    bfs.mark_dms_running(name, "10.0.0.1:9339")
    return env, bfs, DmsTarget(dpu=name, address="10.0.0.1:9339", pci_address="0000:04:00")


def test_a_bluefield_reports_its_bfcfg_bytes_after_a_packed_install() -> None:
    env, bfs, target = _world()
    name = target.dpu
    bfs.directory.write("img.bfb", b"x" * 10)
    cfg = _cfg(name, "abc.123")

    def run() -> Generator[Any, Any, None]:
        yield from bfs.os_install(OsInstall(target, version="img.bfb", file_name="img.bfb"))
        yield from bfs.os_install(OsInstall(target, version=f"{name}.cfg", content=cfg))
        yield from bfs.os_activate(OsActivate(target, version=f"img.bfb;{name}.cfg"))

    env.process(run())
    env.run()
    bf = bfs.get(name)
    assert bf.state is DpuState.RUNNING and bf.installs == 1 and bf.running_version == f"img.bfb;{name}.cfg"
    assert isinstance(bf.bfcfg_packed, Packed) and bf.bfcfg == cfg
    assert bf.staged[f"{name}.cfg"].content == cfg and bf.staged["img.bfb"].content == b"x" * 10


@pytest.mark.parametrize("latency", ["50ms", {"dist": "uniform", "low": "10ms", "high": "90ms"}])
def test_skipped_polls_end_where_polling_one_by_one_ends(latency: object) -> None:
    """The constant-latency window (plain float arithmetic, nothing drawn) and the drawn one."""

    def run(coalesce: bool) -> tuple[float, object, int, int]:
        env, bfs, target = _world(latency, seed=11)
        bfs.coalesce_polls = coalesce
        out: list[object] = []

        def proc() -> Generator[Any, Any, None]:
            yield env.timeout(1.234)
            bfs.reboot(target.dpu)
            out.append((yield from bfs.await_reboot(AwaitReboot(target, interval=3.0, budget=1800.0))))

        env.process(proc())
        env.run()
        return env.now, out[0], bfs.ops, bfs.polls_skipped

    coalesced, one_by_one = run(True), run(False)
    assert coalesced[:3] == one_by_one[:3]
    assert coalesced[3] > 40 and one_by_one[3] == 0  # ~50 polls of a 150 s boot were waited out as one event


def test_history_reads_like_the_list_of_tuples_it_replaces() -> None:
    entries = [(0.0, "booting"), (12.5, "mode=DPU"), (90.25, "joined")]
    h = History()
    for e in entries:
        h.append(e)
    assert list(h) == entries and len(h) == 3
    assert h[0] == (0.0, "booting") and h[-1] == (90.25, "joined")
    assert h[-2:] == entries[-2:] and h[:0] == []
    assert h == entries and h == History(entries) and h != History(entries[:2]) and h != entries[::-1]
    assert dict((w, t) for t, w in h) == {"booting": 0.0, "mode=DPU": 12.5, "joined": 90.25}
    with pytest.raises(IndexError):
        h[3]


def test_history_is_smaller_than_tuples() -> None:
    entries = [(float(i) * 1.5, f"step {i % 4}") for i in range(10)]
    h = History(entries)
    as_tuples = sys.getsizeof(entries) + sum(sys.getsizeof(e) + sys.getsizeof(e[0]) for e in entries)
    compact = sys.getsizeof(h._times) + sys.getsizeof(h._whats) + sys.getsizeof(h)
    assert compact * 2 < as_tuples


def _resident_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim is Linux-only")
def test_release_free_memory_returns_freed_heap_pages() -> None:
    # Medium blocks come from malloc's heap; one kept above them stops free() from trimming the top itself.
    blocks = [bytearray(b"x" * 60_000) for _ in range(1500)]
    pin = bytearray(b"y" * 60_000)
    before = _resident_mb()
    del blocks
    freed = _resident_mb()
    release_free_memory()
    after = _resident_mb()
    assert freed > before - 10  # glibc keeps what free() gave back resident...
    assert after < freed - 60  # ...until trimmed (~90 MB here)
    assert pin[0] == ord("y")


def test_utilisation_reads_like_the_list_of_changes_it_replaces() -> None:
    changes = [(0.0, "bfb-server-0->core", 1.25e9), (3.5, "core->tor-0", 0.0), (3.5, "bfb-server-0->core", 6e8)]
    u = Utilisation()
    for c in changes:
        u.append(c)
    assert list(u) == changes and u == changes and len(u) == 3 and u[1] == changes[1]
    again = Utilisation()
    for c in changes:
        again.append(c)
    assert u == again
    again.append((4.0, "core->tor-0", 1.0))
    assert u != again and u != changes[:2]
    as_tuples = sys.getsizeof(changes) + sum(sys.getsizeof(c) + sys.getsizeof(c[0]) + sys.getsizeof(c[2]) for c in changes)
    many = Utilisation()
    for i in range(1000):
        many.append((float(i), "core->tor-0", float(i) * 2))
    packed = sys.getsizeof(many._times) + sys.getsizeof(many._rates) + sys.getsizeof(many._links)
    assert packed < 1000 * (as_tuples / 3) / 3
