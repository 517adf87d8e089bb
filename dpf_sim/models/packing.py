"""Small contents the twin keeps per DPU (bf.cfg), stored deflated against the first one seen.

DPF renders one bf.cfg per DPU (~8 KiB) that differs from its neighbours' only in the hostname and the join
token; the twin keeps it twice per DPU (the `/bfb` share's `<dpu>.cfg` and the image OS.Install staged on the
DPU). Deflated with the fleet's first bf.cfg as the preset dictionary each is ~100 bytes: at 100k DPUs,
~1.6 GB -> ~20 MB. Reading one back (tests, `bf.bfcfg`) inflates it; the bytes are the same.
"""

from __future__ import annotations

import zlib
from array import array
from collections.abc import Iterable, Iterator
from typing import SupportsIndex, overload

# Contents shorter than this are kept as they are (deflating them saves nothing worth the CPU).
PACK_MIN = 256


class Packed:
    __slots__ = ("data", "zdict")

    def __init__(self, data: bytes, zdict: bytes) -> None:
        self.data = data
        self.zdict = zdict

    def unpack(self) -> bytes:
        return zlib.decompressobj(zdict=self.zdict).decompress(self.data)


Content = Packed | bytes | None


# How many recent contents a Packer remembers (a DPU's OS.Install of its bf.cfg follows the share write by one
# DMS round trip, during which other DPUs write theirs).
RECENT = 64


class Packer:
    """Packs contents against the first one it packed. One per twin: the `/bfb` share and the DPUs share it,
    and the last few contents packed are remembered, so the bf.cfg a DPU is sent right after it was written
    to the share is deflated once."""

    __slots__ = ("_recent", "zdict")

    def __init__(self) -> None:
        self.zdict: bytes | None = None
        self._recent: dict[bytes, Packed] = {}

    def pack(self, content: bytes | None) -> Content:
        if content is None or len(content) < PACK_MIN:
            return content
        packed = self._recent.get(content)
        if packed is not None:
            return packed
        if self.zdict is None:
            self.zdict = content
        # Level 1: the dictionary does the work; higher levels only cost CPU for a few bytes.
        c = zlib.compressobj(1, zdict=self.zdict)
        packed = Packed(c.compress(content) + c.flush(), self.zdict)
        if len(self._recent) >= RECENT:
            del self._recent[next(iter(self._recent))]
        self._recent[content] = packed
        return packed


def unpack(value: Content) -> bytes | None:
    return value.unpack() if isinstance(value, Packed) else value


class History:
    """A model's `(simulated time, what happened)` log, kept as a float array and a list of (interned) strings.

    Reads like the list of tuples it replaces (iteration, indexing, slices, len, ==). As tuples the ten or so
    entries of a provisioned DPU cost ~1.1 KB; here ~300 bytes (~80 MB at 100k DPUs)."""

    __slots__ = ("_times", "_whats")

    def __init__(self, entries: Iterable[tuple[float, str]] = ()) -> None:
        self._times = array("d")
        self._whats: list[str] = []
        for entry in entries:
            self.append(entry)

    def append(self, entry: tuple[float, str]) -> None:
        t, what = entry
        self._times.append(t)
        self._whats.append(what)

    def __len__(self) -> int:
        return len(self._whats)

    def __iter__(self) -> Iterator[tuple[float, str]]:
        return zip(self._times, self._whats, strict=True)

    @overload
    def __getitem__(self, i: SupportsIndex) -> tuple[float, str]: ...

    @overload
    def __getitem__(self, i: slice) -> list[tuple[float, str]]: ...

    def __getitem__(self, i: SupportsIndex | slice) -> tuple[float, str] | list[tuple[float, str]]:
        if isinstance(i, slice):
            return list(zip(self._times[i], self._whats[i], strict=True))
        return (self._times[i], self._whats[i])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, History):
            return self._times == other._times and self._whats == other._whats
        if isinstance(other, list):
            return list(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"History({list(self)!r})"
