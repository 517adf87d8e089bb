"""Task procedures of the BFB controller: the download DPF runs in a goroutine per BFB.

DPF's downloader GETs the URL into `/bfb/bfb-<uid>` (no timeout, a 128 MiB buffer), renames it to
`/bfb/<fileName>` and makes it 0644; a non-200 answer or a read error fails the task. The world executes
the `DownloadBfb` op (HTTP in production, a transfer over the fleet's links in the twin); the procedure
only names what to fetch and where.
"""

from __future__ import annotations

from collections.abc import Callable

from dpf_core.ports import Procedure
from dpf_core.ports.ops import DownloadBfb

TEMP_FILE_PREFIX = "bfb-"


def temp_file_name(uid: str) -> str:
    """The partial download's name in the BFB directory, keyed by the BFB's uid so two BFBs never share one."""
    return f"{TEMP_FILE_PREFIX}{uid}"


def download_task_key(namespace: str | None, name: str) -> str:
    return f"download/{namespace or ''}/{name}"


def download_bfb(url: str, temp_name: str, file_name: str) -> Procedure:
    """Fetch `url` to `temp_name`, renamed to `file_name` when complete; the task's result is the file name."""
    yield DownloadBfb(url=url, temp_name=temp_name, file_name=file_name)
    return file_name


def download_procedure(url: str, uid: str, file_name: str) -> Callable[[], Procedure]:
    """What the controller hands to the Tasks port: a factory, so the world decides when the generator starts."""

    def factory() -> Procedure:
        return download_bfb(url, temp_file_name(uid), file_name)

    return factory
