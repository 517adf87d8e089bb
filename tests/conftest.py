"""Shared fixtures. Kept small: test kinds live in the test modules that need them."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

# Every MemoryStore built in tests checks that nobody edits a shared snapshot in place (client-go's
# KUBE_CACHE_MUTATION_DETECTOR); a test that needs it off passes detect_mutation=False.
os.environ.setdefault("DPF_MUTATION_DETECTOR", "1")


class FakeClock:
    """A settable epoch clock (seconds) for deterministic timestamps."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def registry_sandbox() -> Iterator[None]:
    """Register test kinds inside; the global kind registry is restored afterwards, so test kinds never
    leak into other modules' view of the registry (CRD rendering, discovery)."""
    from dpf_core.api import registry

    saved = (dict(registry._BY_API_KIND), dict(registry._BY_GROUP_KIND), dict(registry._HOOKS))
    try:
        yield
    finally:
        registry._BY_API_KIND.clear()
        registry._BY_API_KIND.update(saved[0])
        registry._BY_GROUP_KIND.clear()
        registry._BY_GROUP_KIND.update(saved[1])
        registry._HOOKS.clear()
        registry._HOOKS.update(saved[2])


@pytest.fixture(autouse=True)
def _dpf_log_level_restored() -> Iterator[None]:
    """Tests that quiet the "dpf" logger for a noisy scenario leave it as they found it for the next test."""
    logger = logging.getLogger("dpf")
    level = logger.level
    yield
    logger.setLevel(level)
