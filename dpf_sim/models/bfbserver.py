"""The BFB HTTP server(s) and the BFB directory (`/bfb`, the PVC `bfbPVCName` shared with the DMS pods).

A BFB download is an HTTP GET of `spec.url` from a BFB server node to the node holding the share (by default
the first BFB server itself, i.e. the PVC's NFS export lives with the files), written to `<temp name>` while
it streams and renamed to `<fileName>` at the end, as DPF does (`/bfb/bfb-<uid>` -> `/bfb/<fileName>`).
The catalogue says which URLs exist and how big they are; any other URL is a 404. Faults (404, slow, corrupt)
are per URL and can be set at any time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import simpy
from pydantic import BaseModel, ConfigDict, Field

from dpf_core.ports.ops import DownloadBfb, OpError

from ..durations import Duration, Rate, Size, parse_size
from ..net import Network
from ..rng import Streams
from .packing import Content, Packer, unpack

DEFAULT_BFB_SIZE = parse_size("1.5GiB")


class BfbFile:
    """A file under `/bfb`; `content` only for small files written by the controllers (bf.cfg), kept packed."""

    __slots__ = ("_content", "complete", "created_at", "name", "sha256", "size")

    def __init__(self, name: str, size: int, sha256: str | None = None, content: bytes | None = None,
                 complete: bool = True, created_at: float = 0.0, *, packer: Packer | None = None) -> None:
        self.name = name
        self.size = size  # bytes written so far; the full size once complete
        self.sha256 = sha256
        self._content: Content = packer.pack(content) if packer is not None else content
        self.complete = complete
        self.created_at = created_at

    @property
    def content(self) -> bytes | None:
        return unpack(self._content)

    @property
    def packed_content(self) -> Content:
        return self._content

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BfbFile):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass it replaced

    def _fields(self) -> tuple[object, ...]:
        return (self.name, self.size, self.sha256, self.content, self.complete, self.created_at)

    def __repr__(self) -> str:
        return (f"BfbFile(name={self.name!r}, size={self.size!r}, sha256={self.sha256!r}, content={self.content!r}, "
                f"complete={self.complete!r}, created_at={self.created_at!r})")


class BfbDirectory:
    """The files under `/bfb`. Controllers see it through `SimBfbStore`; the DMS model reads BFBs from it."""

    def __init__(self) -> None:
        self.files: dict[str, BfbFile] = {}
        self.renames = 0
        self.packer = Packer()

    def get(self, name: str) -> BfbFile | None:
        return self.files.get(name)

    def exists(self, name: str) -> bool:
        return name in self.files

    def size(self, name: str) -> int | None:
        f = self.files.get(name)
        return None if f is None else f.size

    def remove(self, name: str) -> None:
        self.files.pop(name, None)

    def write(self, name: str, content: bytes, now: float = 0.0) -> None:
        self.files[name] = BfbFile(name, len(content), hashlib.sha256(content).hexdigest(), content, True, now,
                                   packer=self.packer)

    def begin(self, name: str, now: float = 0.0) -> BfbFile:
        f = BfbFile(name, 0, complete=False, created_at=now)
        self.files[name] = f
        return f

    def rename(self, old: str, new: str) -> None:
        """os.Rename: atomic, replaces `new`; the file keeps its content."""
        f = self.files.pop(old)
        f.name = new
        self.files[new] = f
        self.renames += 1

    def names(self) -> list[str]:
        return sorted(self.files)


class BfbImage(BaseModel):
    """One catalogue entry: what the server returns for a URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: Size = DEFAULT_BFB_SIZE
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    server: int | None = Field(None, ge=0, description="which BFB server holds it; default by URL hash")


class BfbServerParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    catalogue: dict[str, BfbImage] = Field(default_factory=dict)
    request_latency: Duration = Duration.of("50ms")
    max_rate: Rate | None = None  # per download (an origin that throttles); None = network limited


@dataclass
class BfbFault:
    not_found: bool = False
    max_rate: float | None = None  # "slow": this URL is served at most this fast
    corrupt: bool = False  # the bytes arrive but their sha256 is not the catalogue's


def fake_sha256(url: str, size: int) -> str:
    """A stable stand-in checksum for an image whose scenario gave none."""
    return hashlib.sha256(f"bfb:{url}:{size}".encode()).hexdigest()


class BfbServers:
    """The HTTP side of BFB downloads; `download` is the DownloadBfb op handler."""

    def __init__(self, env: simpy.Environment, net: Network, directory: BfbDirectory,
                 params: BfbServerParams | None = None, streams: Streams | None = None) -> None:
        self.env = env
        self.net = net
        self.directory = directory
        self.params = params or BfbServerParams()
        self.rng = (streams or Streams(0)).get("bfb-server")
        self.servers = net.fleet.bfb_servers
        self.share = net.fleet.bfb_share
        self.catalogue: dict[str, BfbImage] = dict(self.params.catalogue)
        self.faults: dict[str, BfbFault] = {}
        self.requests = 0
        self.downloads = 0
        self.failures = 0

    def add(self, url: str, image: BfbImage | None = None) -> None:
        self.catalogue[url] = image or BfbImage()

    def set_fault(self, url: str, fault: BfbFault | None) -> None:
        if fault is None:
            self.faults.pop(url, None)
        else:
            self.faults[url] = fault

    def server_for(self, url: str) -> str:
        image = self.catalogue.get(url)
        if image is not None and image.server is not None:
            return self.servers[image.server % len(self.servers)]
        h = int.from_bytes(hashlib.sha256(url.encode()).digest()[:8], "big")
        return self.servers[h % len(self.servers)]

    def checksum(self, url: str) -> str | None:
        image = self.catalogue.get(url)
        if image is None:
            return None
        return image.sha256 or fake_sha256(url, image.size)

    def register(self, executor: Any) -> None:
        executor.register(DownloadBfb, self.download)

    def download(self, op: DownloadBfb) -> Generator[Any, Any, int]:
        self.requests += 1
        yield self.env.timeout(self.params.request_latency.sample(self.rng))
        image = self.catalogue.get(op.url)
        fault = self.faults.get(op.url, BfbFault())
        if image is None or fault.not_found:
            self.failures += 1
            # DPF's downloader (bfb/state/downloading.go) on a non-200 answer, word for word.
            raise OpError(f"failed to get: {op.url} status: 404", "NotFound")
        caps = [c for c in (self.params.max_rate, fault.max_rate) if c is not None]
        partial = self.directory.begin(op.temp_name, self.env.now)
        flow = self.net.transfer(self.server_for(op.url), self.share, image.size,
                                 max_rate=min(caps) if caps else None, tag=f"bfb-download:{op.file_name}")
        try:
            yield flow
        finally:
            if not flow.triggered:
                # Cancelled mid-stream: the partial temp file stays behind, as it would on a real PVC;
                # the BFB controller's Deleting phase is what removes it.
                self.net.cancel(flow)
                partial.size = int(flow.transferred)
        partial.size = image.size
        sha = self.checksum(op.url)
        if fault.corrupt:
            sha = hashlib.sha256(f"corrupt:{op.url}".encode()).hexdigest()
        partial.sha256 = sha
        if op.sha256 is not None and op.sha256 != sha:
            self.failures += 1
            self.directory.remove(op.temp_name)
            raise OpError(f"checksum mismatch for {op.url}: want {op.sha256}, got {sha}", "Checksum")
        partial.complete = True
        self.directory.rename(op.temp_name, op.file_name)
        self.downloads += 1
        return image.size
