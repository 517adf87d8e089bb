"""Named random streams: one `random.Random` per model, each seeded from the run's seed and its own name.

Seeding per name (not drawing child seeds from one parent generator) means adding a model, or a model drawing
one more number, never shifts any other model's numbers: a scenario that changes one thing changes one thing.
"""

from __future__ import annotations

import hashlib
import random


def derive_seed(seed: int | str, name: str) -> int:
    """A 256-bit seed from `sha256("<seed>/<name>")`: stable across runs, Python versions and platforms
    (unlike `hash()`, which is salted per process for str)."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest(), "big")


class Streams:
    """The run's random streams. Nothing global: two runs in one process never share state."""

    def __init__(self, seed: int | str = 0) -> None:
        self.seed = seed
        self._prefix = ""
        self._streams: dict[str, random.Random] = {}

    def get(self, name: str) -> random.Random:
        """The stream called `name`, created on first use; later calls continue the same sequence."""
        full = self._prefix + name
        rng = self._streams.get(full)
        if rng is None:
            rng = random.Random(derive_seed(self.seed, full))
            self._streams[full] = rng
        return rng

    def child(self, prefix: str) -> Streams:
        """A view whose names are prefixed with `prefix/`: a sub-model hands these on without knowing the full
        names. The view shares the streams, so `child("a").get("b")` IS `get("a/b")`, never a correlated twin."""
        view = Streams.__new__(Streams)
        view.seed = self.seed
        view._prefix = f"{self._prefix}{prefix}/"
        view._streams = self._streams
        return view

    def names(self) -> list[str]:
        return sorted(self._streams)
