"""The BFB directory (`/bfb`, the PVC shared with the DMS pods) and the real BFB download.

`DirectoryBfbStore` is the `BfbStore` port over a directory. `HttpBfbDownloader` executes the core op
`DownloadBfb` as DPF's downloader does (GET the URL into `<dir>/<temp_name>`, rename to `<dir>/<file_name>`,
chmod 0644, a non-200 answer fails), plus what DPF lacks: streaming in chunks (DPF buffers 128 MiB), resume
with `Range` after a cut connection (`If-Range` guards against the file changing meanwhile), a size check
against Content-Length / Content-Range, and the sha256 check when the op carries one. Failures surface as
`OpError` with a reason word, which the executor throws into the download procedure.

A temp file left by an earlier run (a crashed operator, a failed task) is resumed only when it carries the
server's validator (ETag or Last-Modified) in the extended attribute `user.dpf.validator`, written as soon
as the first bytes arrive; without it (a filesystem without user xattrs, e.g. older NFS) the download starts
over, since a prefix of an image that changed meanwhile would otherwise be glued to the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from dpf_core.ports.ops import DownloadBfb, OpError

from .executor import raise_if_cancelled

log = logging.getLogger(__name__)

FILE_MODE = 0o644
CHUNK_SIZE = 1 << 20
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$")
_RETRIABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
VALIDATOR_XATTR = "user.dpf.validator"


def _safe_name(file_name: str) -> str:
    # Names come from BFB specs (validated by admission) and uids, but the directory is shared with DMS:
    # never let a name climb out of it.
    if not file_name or file_name in {".", ".."} or "/" in file_name or "\x00" in file_name:
        raise ValueError(f"invalid BFB file name {file_name!r}")
    return file_name


class DirectoryBfbStore:
    """dpf_core.ports.BfbStore over a directory (the mounted BFB PVC)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, file_name: str) -> Path:
        return self.directory / _safe_name(file_name)

    def exists(self, file_name: str) -> bool:
        return self.path(file_name).is_file()

    def size(self, file_name: str) -> int | None:
        try:
            return self.path(file_name).stat().st_size
        except FileNotFoundError:
            return None

    def remove(self, file_name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(file_name).unlink()

    def write(self, file_name: str, content: bytes) -> None:
        """Atomic: a DMS pod reading `<dpu>.cfg` sees the old file or the new one, never half of one."""
        target = self.path(file_name)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


class _Retry(Exception):
    """One attempt ended early but the download may go on from where it stopped."""


class HttpBfbDownloader:
    """Executes `DownloadBfb` for real. `attempts` bounds the tries of one op (a cut connection, a 503);
    each try resumes from the bytes already in the temp file. A temp file left by an earlier run of the
    same op (same BFB uid, so the same URL) is resumed too."""

    def __init__(self, directory: str | os.PathLike[str], *, timeout: float = 30.0, attempts: int = 5,
                 retry_delay: float = 1.0, chunk_size: int = CHUNK_SIZE, ssl_context: ssl.SSLContext | None = None,
                 user_agent: str = "dpf-twin-bfb-downloader") -> None:
        self.store = DirectoryBfbStore(directory)
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.retry_delay = retry_delay
        self.chunk_size = chunk_size
        self.ssl_context = ssl_context
        self.user_agent = user_agent

    def register(self, handlers: Any) -> None:
        """Plug into an `OpHandlers` (dpf_hw.executor)."""
        handlers.register(DownloadBfb, self)

    def __call__(self, op: DownloadBfb) -> int:
        return self.download(op)

    def download(self, op: DownloadBfb) -> int:
        temp = self.store.path(op.temp_name)
        final = self.store.path(op.file_name)
        state = _Transfer(temp)
        state.adopt()
        last = ""
        for attempt in range(self.attempts):
            raise_if_cancelled()
            if attempt:
                time.sleep(self.retry_delay * (2 ** (attempt - 1)))
                raise_if_cancelled()
            try:
                self._attempt(op.url, state)
                break
            except _Retry as e:
                last = str(e)
                log.info("download %s: attempt %d stopped at %d bytes: %s", op.url, attempt + 1, state.size, last)
        else:
            raise OpError(f"failed to download {op.url}: {last} (after {self.attempts} attempts, "
                          f"{state.size} bytes received)", "Unavailable")
        size = state.size
        if state.total is not None and size != state.total:
            raise OpError(f"failed to download {op.url}: size {size} != expected {state.total}", "Size")
        digest = state.digest()
        if op.sha256 is not None and digest != op.sha256.lower():
            self.store.remove(op.temp_name)
            raise OpError(f"checksum mismatch for {op.url}: want {op.sha256}, got {digest}", "Checksum")
        os.chmod(temp, FILE_MODE)
        os.replace(temp, final)
        return size

    # --- one GET ----------------------------------------------------------------------------------------
    def _attempt(self, url: str, state: _Transfer) -> None:
        offset = state.sync()
        headers = {"User-Agent": self.user_agent}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if state.validator:
                headers["If-Range"] = state.validator
        request = urllib.request.Request(url, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout, context=self.ssl_context)
        except urllib.error.HTTPError as e:
            with contextlib.closing(e):
                self._http_error(url, e, state)
            return
        except urllib.error.URLError as e:
            raise _Retry(_reason_text(e.reason)) from e
        except (OSError, http.client.HTTPException) as e:
            raise _Retry(_reason_text(e)) from e
        with contextlib.closing(response):
            self._body(url, response, state, offset)

    def _http_error(self, url: str, e: urllib.error.HTTPError, state: _Transfer) -> None:
        if e.code == 416 and state.size:
            # The range starts at or past the end: complete when the server's length is what we hold.
            total = _content_range(e.headers.get("Content-Range", ""))[2]
            if total is not None and total == state.size:
                state.total = total
                return
            state.restart()
            raise _Retry("416 Range Not Satisfiable: starting over")
        # DPF's downloader words every non-200 answer this way (bfb/state/downloading.go).
        if e.code == 404:
            raise OpError(f"failed to get: {url} status: 404", "NotFound") from e
        if e.code in _RETRIABLE_STATUS:
            raise _Retry(f"{e.code} {e.reason}") from e
        raise OpError(f"failed to get: {url} status: {e.code}", "HTTPError") from e

    def _body(self, url: str, response: Any, state: _Transfer, offset: int) -> None:
        status = int(response.status)
        if status == 206:
            start, _, total = _content_range(response.headers.get("Content-Range", ""))
            if start != offset:
                state.restart()
                raise _Retry(f"server resumed at {start}, not {offset}: starting over")
            state.total = total
        elif status == 200:
            # Either a first GET, or the server ignored Range / If-Range says the file changed: from zero.
            if offset:
                state.restart()
            length = response.headers.get("Content-Length")
            state.total = int(length) if length is not None and length.isdigit() else None
        else:
            raise OpError(f"failed to get: {url} status: {status}", "HTTPError")
        try:
            with open(state.path, "ab") as f:
                state.remember(_validator(response.headers))
                while True:
                    raise_if_cancelled()
                    chunk = response.read(self.chunk_size)
                    if not chunk:
                        break
                    f.write(chunk)
                    state.feed(chunk)
                f.flush()
                os.fsync(f.fileno())
        except (OSError, http.client.HTTPException) as e:
            raise _Retry(f"read error: {_reason_text(e)}") from e
        if state.total is not None and state.size < state.total:
            raise _Retry(f"connection closed after {state.size} of {state.total} bytes")


class _Transfer:
    """The temp file and a running sha256 over its bytes (so a resume need not re-read the prefix)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self.total: int | None = None
        self.validator: str | None = None
        self._hash = hashlib.sha256()
        self._hashed = 0

    def adopt(self) -> None:
        """Before the first GET: keep a leftover temp file only when we know which version it holds."""
        try:
            if self.path.stat().st_size == 0:
                return
        except FileNotFoundError:
            return
        try:
            self.validator = os.getxattr(self.path, VALIDATOR_XATTR).decode() or None
        except OSError:
            self.validator = None
        if self.validator is None:
            self.restart()

    def remember(self, validator: str | None) -> None:
        if validator is None or validator == self.validator:
            return
        self.validator = validator
        with contextlib.suppress(OSError):  # no user xattrs here: a later run simply starts over
            os.setxattr(self.path, VALIDATOR_XATTR, validator.encode())

    def sync(self) -> int:
        """The bytes on disk now; the hash is brought up to them when they are not what we streamed."""
        try:
            on_disk = self.path.stat().st_size
        except FileNotFoundError:
            on_disk = 0
        if on_disk != self._hashed:
            self._hash = hashlib.sha256()
            self._hashed = 0
            if on_disk:
                with open(self.path, "rb") as f:
                    for block in iter(lambda: f.read(CHUNK_SIZE), b""):
                        self._hash.update(block)
                        self._hashed += len(block)
        self.size = self._hashed
        return self.size

    def feed(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self._hashed += len(chunk)
        self.size = self._hashed

    def restart(self) -> None:
        with open(self.path, "wb"):
            pass
        with contextlib.suppress(OSError):
            os.removexattr(self.path, VALIDATOR_XATTR)
        self.validator = None
        self._hash = hashlib.sha256()
        self._hashed = 0
        self.size = 0
        self.total = None

    def digest(self) -> str:
        return self._hash.hexdigest()


def _content_range(value: str) -> tuple[int | None, int | None, int | None]:
    m = _CONTENT_RANGE.match(value or "")
    if m is None:
        return None, None, None
    start, end, total = m.groups()
    return (int(start) if start is not None else None, int(end) if end is not None else None,
            int(total) if total not in (None, "*") else None)


def _validator(headers: Any) -> str | None:
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):  # If-Range needs a strong validator
        return str(etag)
    modified = headers.get("Last-Modified")
    return str(modified) if modified else None


def _reason_text(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__
