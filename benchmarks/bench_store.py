"""MemoryStore throughput with 100,000 objects in the store.

Run: .venv/bin/pytest -q benchmarks/bench_store.py --benchmark-only
Each benchmark's `extra_info` carries the derived rate (ops/s or ms per list). Numbers, not assertions.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from pydantic import Field

from dpf_core.api.meta import KindInfo, KubeObject, Model, StrList
from dpf_core.store import MemoryStore

N = 100_000
GROUPS = N // 100  # label group=gNNN selects exactly 100 objects
NAMESPACES = 10


class BenchSpec(Model):
    size: int = 1
    color: str | None = None
    items: StrList


class BenchStatus(Model):
    phase: str = "Pending"


class BenchWidget(KubeObject):
    KIND = KindInfo(group="bench.dpf.local", version="v1", kind="BenchWidget", plural="benchwidgets", singular="benchwidget", dpf=False)
    spec: BenchSpec = Field(default_factory=lambda: BenchSpec.model_validate({}))
    status: BenchStatus | None = None


def _obj(i: int, group: str | None = None) -> BenchWidget:
    return BenchWidget.model_validate(
        {
            "apiVersion": BenchWidget.KIND.api_version,
            "kind": "BenchWidget",
            "metadata": {
                "name": f"w-{i:06d}",
                "namespace": f"ns-{i % NAMESPACES}",
                "labels": {"group": group or f"g{i % GROUPS}", "app": "bench"},
            },
            "spec": {"size": i % 50, "items": ["a", "b"]},
        }
    )


@pytest.fixture(scope="module")
def big_store() -> MemoryStore:
    store = MemoryStore(clock=lambda: 1_700_000_000.0, seed=0, detect_mutation=False, history=N)
    for i in range(N):
        store.create(_obj(i))
    store.list(BenchWidget)  # build the sorted key cache once, as the first controller list would
    return store


def _rate(benchmark: Any, ops_per_call: int, key: str) -> None:
    mean = benchmark.stats.stats.mean
    benchmark.extra_info[key] = round(ops_per_call / mean)


def test_get(benchmark: Any, big_store: MemoryStore) -> None:
    rnd = random.Random(1)
    keys = [(f"w-{i:06d}", f"ns-{i % NAMESPACES}") for i in (rnd.randrange(N) for _ in range(1000))]
    get = big_store.get

    def gets() -> None:
        for name, ns in keys:
            get(BenchWidget, name, ns)

    benchmark(gets)
    _rate(benchmark, len(keys), "gets_per_s")


def test_create(benchmark: Any, big_store: MemoryStore) -> None:
    counter = itertools.count(N)
    objs = [_obj(next(counter), group="created") for _ in range(20_000)]
    it = iter(objs)

    def create() -> None:
        big_store.create(next(it))

    benchmark.pedantic(create, rounds=5000, iterations=1)
    _rate(benchmark, 1, "creates_per_s")


def test_update_spec(benchmark: Any, big_store: MemoryStore) -> None:
    base = big_store.get(BenchWidget, "w-000007", "ns-7")
    sizes = itertools.count(100)

    def setup() -> tuple[tuple[BenchWidget], dict[str, Any]]:
        mine = big_store.get(BenchWidget, "w-000007", "ns-7").deepcopy()
        mine.spec.size = next(sizes)
        return (mine,), {}

    benchmark.pedantic(big_store.update, setup=setup, rounds=3000, iterations=1)
    _rate(benchmark, 1, "updates_per_s")
    assert (big_store.get(BenchWidget, "w-000007", "ns-7").metadata.generation or 0) > (base.metadata.generation or 0)


def test_update_status(benchmark: Any, big_store: MemoryStore) -> None:
    phases = itertools.cycle(["A", "B", "C"])

    def setup() -> tuple[tuple[BenchWidget], dict[str, Any]]:
        mine = big_store.get(BenchWidget, "w-000011", "ns-1").deepcopy()
        mine.status = BenchStatus(phase=next(phases))
        return (mine,), {}

    benchmark.pedantic(big_store.update_status, setup=setup, rounds=3000, iterations=1)
    _rate(benchmark, 1, "status_updates_per_s")


def test_merge_patch(benchmark: Any, big_store: MemoryStore) -> None:
    values = itertools.count()

    def patch() -> None:
        big_store.patch(BenchWidget, "w-000013", "ns-3", {"metadata": {"annotations": {"n": str(next(values))}}})

    benchmark.pedantic(patch, rounds=3000, iterations=1)
    _rate(benchmark, 1, "patches_per_s")


def test_list_label_selected_100_of_100k(benchmark: Any, big_store: MemoryStore) -> None:
    out = benchmark(big_store.list, BenchWidget, None, "group=g42")
    assert len(out) == 100
    benchmark.extra_info["ms_per_list"] = round(benchmark.stats.stats.mean * 1000, 3)


def test_list_label_selected_in_namespace(benchmark: Any, big_store: MemoryStore) -> None:
    out = benchmark(big_store.list, BenchWidget, "ns-2", {"group": "g42", "app": "bench"})
    assert len(out) == 100
    benchmark.extra_info["ms_per_list"] = round(benchmark.stats.stats.mean * 1000, 3)


def test_list_namespace_10k(benchmark: Any, big_store: MemoryStore) -> None:
    out = benchmark(big_store.list, BenchWidget, "ns-4")
    assert len(out) >= N // NAMESPACES
    benchmark.extra_info["ms_per_list"] = round(benchmark.stats.stats.mean * 1000, 3)


def test_list_all(benchmark: Any, big_store: MemoryStore) -> None:
    out = benchmark.pedantic(big_store.list, args=(BenchWidget,), rounds=20, iterations=1)
    assert len(out) >= N
    benchmark.extra_info["ms_per_list"] = round(benchmark.stats.stats.mean * 1000, 3)


def test_events_since_recent(benchmark: Any, big_store: MemoryStore) -> None:
    rv = str(int(big_store.current_resource_version()) - 1000)
    out = benchmark(big_store.events_since, BenchWidget, rv)
    assert len(out) == 1000
    benchmark.extra_info["ms_per_call"] = round(benchmark.stats.stats.mean * 1000, 3)
