"""The passive work queue keeps client-go's semantics: dedup, dirty re-queue, earliest add_after, backoff."""

from __future__ import annotations

import pytest

from dpf_core.runtime.workqueue import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    K,
    MaxOfRateLimiter,
    RateLimiter,
    WorkQueue,
    default_controller_rate_limiter,
)


def drain(q: WorkQueue[K], now: float) -> list[K]:
    out: list[K] = []
    while (k := q.pop_ready(now)) is not None:
        out.append(k)
        q.done(k)
    return out


def test_ready_keys_are_fifo_and_deduplicated() -> None:
    q: WorkQueue[str] = WorkQueue()
    for k in ["b", "a", "b", "c", "a"]:
        q.add(k)
    assert len(q) == 3
    assert drain(q, 0.0) == ["b", "a", "c"]
    assert q.idle()


def test_key_added_while_processing_is_requeued_once_at_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    assert q.pop_ready(0.0) == "a"
    q.add("a")
    q.add("a")
    # Never handed to a second worker while the first still has it.
    assert q.pop_ready(0.0) is None
    assert len(q) == 0
    assert q.is_processing("a") and q.is_pending("a")
    q.done("a")
    assert q.ready_keys() == ["a"]
    assert q.pop_ready(0.0) == "a"
    q.done("a")
    assert q.pop_ready(0.0) is None and q.idle()


def test_done_without_re_add_does_not_requeue() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    assert q.pop_ready(0.0) == "a"
    q.done("a")
    assert len(q) == 0 and q.processing == 0


def test_add_after_waits_until_due_and_orders_by_time_then_insertion() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("late", 10.0, now=100.0)
    q.add_after("x", 5.0, now=100.0)
    q.add_after("y", 5.0, now=100.0)
    assert q.next_ready_at() == 105.0
    assert q.pop_ready(104.999) is None
    assert drain(q, 105.0) == ["x", "y"]
    assert q.next_ready_at() == 110.0
    assert drain(q, 200.0) == ["late"]
    assert q.next_ready_at() is None


def test_add_after_earliest_ready_time_wins() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 30.0, now=0.0)
    q.add_after("a", 10.0, now=0.0)  # earlier: replaces
    q.add_after("a", 20.0, now=0.0)  # later: ignored
    assert q.ready_at("a") == 10.0
    assert q.waiting == 1
    assert q.next_ready_at() == 10.0
    assert drain(q, 10.0) == ["a"]
    # The replaced 30s entry is stale: it never fires again.
    assert q.next_ready_at() is None
    assert drain(q, 100.0) == []


def test_add_after_with_zero_delay_is_an_add() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 0.0, now=5.0)
    assert q.ready_keys() == ["a"] and q.waiting == 0


def test_delayed_key_falling_due_while_ready_is_not_duplicated() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 1.0, now=0.0)
    q.add("a")
    assert drain(q, 2.0) == ["a"]


def test_delayed_entry_survives_a_direct_add_like_client_go() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 5.0, now=0.0)
    q.add("a")
    assert drain(q, 0.0) == ["a"]
    assert drain(q, 5.0) == ["a"]


def test_delayed_key_falling_due_while_processing_is_dirty() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    assert q.pop_ready(0.0) == "a"
    q.add_after("a", 1.0, now=0.0)
    assert q.pop_ready(1.0) is None  # still processing
    q.done("a")
    assert q.pop_ready(1.0) == "a"


def test_backoff_grows_from_5ms_doubling_and_caps_at_1000s() -> None:
    limiter: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter()
    delays = [limiter.when("k", 0.0) for _ in range(25)]
    assert delays[:5] == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08])
    assert delays[17] == pytest.approx(0.005 * 2**17)  # 655.36 s, still under the cap
    assert delays[18:] == [1000.0] * 7
    assert limiter.num_requeues("k") == 25
    # Thousands of failures never overflow.
    for _ in range(5000):
        limiter.when("k", 0.0)
    assert limiter.when("k", 0.0) == 1000.0


def test_rate_limited_requeue_and_forget_reset() -> None:
    q: WorkQueue[str] = WorkQueue()
    now = 0.0
    q.add_rate_limited("k", now)
    assert q.ready_at("k") == pytest.approx(0.005)
    assert drain(q, 0.004) == []
    assert drain(q, 0.005) == ["k"]
    q.add_rate_limited("k", 1.0)
    assert q.ready_at("k") == pytest.approx(1.01)
    q.add_rate_limited("other", 1.0)
    assert q.ready_at("other") == pytest.approx(1.005)  # per item
    assert q.num_requeues("k") == 2
    q.forget("k")
    assert q.num_requeues("k") == 0
    drain(q, 2.0)
    q.add_rate_limited("k", 3.0)
    assert q.ready_at("k") == pytest.approx(3.005)


def test_bucket_limiter_allows_burst_then_paces_at_qps() -> None:
    bucket: BucketRateLimiter[str] = BucketRateLimiter(qps=10.0, burst=3)
    assert [bucket.when("k", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.when("k", 0.0) == pytest.approx(0.1)
    assert bucket.when("k", 0.0) == pytest.approx(0.2)
    # Refills with (caller-supplied) time.
    assert bucket.when("k", 10.0) == 0.0


def test_default_controller_limiter_with_bucket_is_max_of_both() -> None:
    plain: RateLimiter[str] = default_controller_rate_limiter()
    assert isinstance(plain, ItemExponentialFailureRateLimiter)
    limiter: RateLimiter[str] = default_controller_rate_limiter(with_bucket=True)
    assert isinstance(limiter, MaxOfRateLimiter)
    # 100 distinct keys fit in the burst; the 101st waits for a token even on its first failure.
    delays = [limiter.when(f"k{i}", 0.0) for i in range(101)]
    assert delays[:100] == [pytest.approx(0.005)] * 100
    assert delays[100] == pytest.approx(0.1)


def test_notify_fires_on_ready_and_on_earlier_schedule_only() -> None:
    calls: list[str] = []
    q: WorkQueue[str] = WorkQueue(notify=lambda: calls.append("wake"))
    q.add("a")
    assert len(calls) == 1
    q.add("a")  # dedup: nothing new ready
    assert len(calls) == 1
    q.add_after("b", 10.0, now=0.0)  # first delayed key: earlier than "none"
    assert len(calls) == 2
    q.add_after("c", 20.0, now=0.0)  # later than the head: no wake needed
    assert len(calls) == 2
    q.add_after("d", 5.0, now=0.0)  # new earliest
    assert len(calls) == 3
    k = q.pop_ready(0.0)
    assert k == "a"
    q.add("a")  # dirty while processing: not ready yet
    assert len(calls) == 3
    q.done("a")  # now it is
    assert len(calls) == 4


def test_stale_heap_entries_are_compacted() -> None:
    q: WorkQueue[int] = WorkQueue()
    for round_ in range(10):
        for k in range(500):
            q.add_after(k, 1000.0 - round_, now=0.0)
    assert q.waiting == 500
    # Stale entries are dropped lazily; the heap never grows past a few times the live set.
    assert len(q._heap) <= 4 * 500 + 500
    assert q.next_ready_at() == 991.0
    assert len(drain(q, 991.0)) == 500


def test_metrics_report_depth_and_retries() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add("b")
    q.add_rate_limited("c", 0.0)
    m = q.metrics()
    assert m["depth"] == 2 and m["waiting"] == 1 and m["retries"] == 1 and m["max_depth"] == 2
    q.pop_ready(0.0)
    assert q.metrics()["processing"] == 1
