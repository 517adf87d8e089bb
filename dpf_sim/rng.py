"""Named random streams: one `random.Random` per model, each seeded from the run's seed and its own name.

Seeding per name (not drawing child seeds from one parent generator) means adding a model, or a model drawing
one more number, never shifts any other model's numbers: a scenario that changes one thing changes one thing.

Per-DPU and per-host streams (`Streams.lazy`) draw a handful of numbers in a whole run but a live Mersenne
Twister holds 2.5 KB of state: at 100k DPUs that is half a gigabyte of generators idling between draws. A lazy
stream keeps only its seed and how many 32-bit words it has consumed, and rebuilds the generator for each draw
(seed, skip the words in one C call, draw): the same numbers in the same order as a live generator, for ~10 us
per draw. A stream that turns out to draw a lot is kept live from then on (replaying would grow with it).
"""

from __future__ import annotations

import hashlib
import random
from typing import Protocol, cast

# Past this many consumed words a lazy stream keeps its generator (rebuilding would replay them every draw).
KEEP_LIVE_WORDS = 1024


def derive_seed(seed: int | str, name: str) -> int:
    """A 256-bit seed from `sha256("<seed>/<name>")`: stable across runs, Python versions and platforms
    (unlike `hash()`, which is salted per process for str)."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest(), "big")


class RandomSource(Protocol):
    """What a duration draw needs from a stream: `random.Random` and `LazyStream` both are one."""

    def random(self) -> float: ...

    def gauss(self, mu: float, sigma: float) -> float: ...

    def lognormvariate(self, mu: float, sigma: float) -> float: ...

    def uniform(self, a: float, b: float) -> float: ...

    def expovariate(self, lambd: float) -> float: ...

    def triangular(self, low: float, high: float, mode: float | None) -> float: ...


class _Counting(random.Random):
    """A Mersenne Twister that counts the 32-bit words it consumes. Every draw of `random.Random` goes through
    `random()` (two words) or `getrandbits(k)` (ceil(k/32) words), so the count is exact."""

    words: int = 0

    def random(self) -> float:
        self.words += 2
        return super().random()

    def getrandbits(self, k: int) -> int:
        if k > 0:
            self.words += (k + 31) // 32
        return super().getrandbits(k)


def _skip(rng: random.Random, words: int) -> None:
    if words > 0:
        # One C call consumes exactly `words` outputs of the generator (getrandbits(k > 32) takes ceil(k/32)).
        random.Random.getrandbits(rng, 32 * words)


class LazyStream:
    """A stream whose generator exists only while it draws (see the module docstring)."""

    __slots__ = ("_gauss_next", "_live", "_seed", "_words")

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._words = 0
        self._gauss_next: float | None = None
        self._live: random.Random | None = None

    @property
    def live(self) -> bool:
        return self._live is not None

    def pin(self) -> random.Random:
        """The generator itself, kept from now on (for a caller that holds on to it)."""
        if self._live is None:
            rng = random.Random(self._seed)
            _skip(rng, self._words)
            rng.gauss_next = self._gauss_next  # type: ignore[attr-defined]  # random.Random's gauss cache
            self._live = rng
        return self._live

    def _open(self) -> _Counting:
        rng = _Counting(self._seed)
        _skip(rng, self._words)
        rng.words = self._words
        rng.gauss_next = self._gauss_next  # type: ignore[attr-defined]
        return rng

    def _close(self, rng: _Counting) -> None:
        self._words = rng.words
        self._gauss_next = rng.gauss_next  # type: ignore[attr-defined]
        if rng.words > KEEP_LIVE_WORDS:
            self.pin()

    def _draw(self, method: str, *args: float | None) -> float:
        """One `random.Random` draw by name: on the live generator, or on one rebuilt for this draw."""
        if self._live is not None:
            return cast(float, getattr(self._live, method)(*args))
        rng = self._open()
        x = cast(float, getattr(rng, method)(*args))
        self._close(rng)
        return x

    def random(self) -> float:
        return self._draw("random")

    def gauss(self, mu: float = 0.0, sigma: float = 1.0) -> float:
        return self._draw("gauss", mu, sigma)

    def lognormvariate(self, mu: float, sigma: float) -> float:
        return self._draw("lognormvariate", mu, sigma)

    def uniform(self, a: float, b: float) -> float:
        return self._draw("uniform", a, b)

    def expovariate(self, lambd: float = 1.0) -> float:
        return self._draw("expovariate", lambd)

    def triangular(self, low: float = 0.0, high: float = 1.0, mode: float | None = None) -> float:
        return self._draw("triangular", low, high, mode)


class Streams:
    """The run's random streams. Nothing global: two runs in one process never share state."""

    def __init__(self, seed: int | str = 0) -> None:
        self.seed = seed
        self._prefix = ""
        self._streams: dict[str, random.Random | LazyStream] = {}

    def get(self, name: str) -> random.Random:
        """The stream called `name`, created on first use; later calls continue the same sequence."""
        full = self._prefix + name
        rng = self._streams.get(full)
        if rng is None:
            rng = random.Random(derive_seed(self.seed, full))
            self._streams[full] = rng
        elif isinstance(rng, LazyStream):
            rng = rng.pin()  # the caller may keep it: one generator from here on, shared with the lazy handle
        return rng

    def lazy(self, name: str) -> RandomSource:
        """The same stream as `get(name)` (one sequence, whichever is asked first or later), without keeping
        a generator alive between draws while it stays small."""
        full = self._prefix + name
        rng = self._streams.get(full)
        if rng is None:
            rng = LazyStream(derive_seed(self.seed, full))
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
