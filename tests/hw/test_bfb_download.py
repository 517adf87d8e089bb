"""The real BFB download (DownloadBfb over HTTP) and the BfbStore over a directory, against a local server."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from dpf_core.controllers.bfb_tasks import download_procedure, temp_file_name
from dpf_core.ports import TaskState
from dpf_core.ports.ops import DownloadBfb, OpError
from dpf_hw.bfb import DirectoryBfbStore, HttpBfbDownloader
from dpf_hw.executor import OpHandlers, ThreadTasks

if TYPE_CHECKING:  # fixtures' types; tests/hw is no package, pytest loads the conftest itself
    from conftest import BfbHttpServer

BODY = os.urandom(300_000) + b"end-of-bfb"
SHA = hashlib.sha256(BODY).hexdigest()


def downloader(tmp_path: Path, **kw: object) -> HttpBfbDownloader:
    opts: dict[str, object] = {"timeout": 5.0, "attempts": 3, "retry_delay": 0.01, "chunk_size": 16_384}
    opts.update(kw)
    return HttpBfbDownloader(tmp_path / "bfb", **opts)  # type: ignore[arg-type]


def op(url: str, sha256: str | None = None) -> DownloadBfb:
    return DownloadBfb(url=url, temp_name="bfb-uid-1", file_name="doca.bfb", sha256=sha256)


def test_download_streams_into_temp_then_renames_0644(tmp_path: Path, http_server: BfbHttpServer) -> None:
    http_server.files["/images/doca.bfb"] = BODY
    d = downloader(tmp_path)
    size = d(op(http_server.url("/images/doca.bfb"), SHA))
    final = tmp_path / "bfb" / "doca.bfb"
    assert size == len(BODY)
    assert final.read_bytes() == BODY
    assert stat.S_IMODE(final.stat().st_mode) == 0o644
    assert not (tmp_path / "bfb" / "bfb-uid-1").exists()
    assert [s.status for s in http_server.served] == [200]


def test_resume_with_range_after_the_server_cuts_the_body(tmp_path: Path, http_server: BfbHttpServer) -> None:
    http_server.files["/doca.bfb"] = BODY
    http_server.cut["/doca.bfb"] = 100_000
    size = downloader(tmp_path)(op(http_server.url("/doca.bfb"), SHA))
    assert size == len(BODY)
    assert (tmp_path / "bfb" / "doca.bfb").read_bytes() == BODY
    first, second = http_server.served
    assert (first.status, first.range) == (200, None)
    # The second GET asks only for what is missing, guarded by the first response's ETag.
    assert (second.status, second.range, second.if_range) == (206, "bytes=100000-", '"v1"')


def test_a_temp_file_left_by_an_earlier_run_is_resumed(tmp_path: Path, http_server: BfbHttpServer) -> None:
    http_server.files["/doca.bfb"] = BODY
    http_server.cut["/doca.bfb"] = 250_000
    with pytest.raises(OpError) as e:
        downloader(tmp_path, attempts=1)(op(http_server.url("/doca.bfb"), SHA))
    assert e.value.reason == "Unavailable" and "250000 bytes received" in str(e.value)
    assert (tmp_path / "bfb" / "bfb-uid-1").stat().st_size == 250_000
    # The controller's next task for the same BFB (same uid, same temp file): a fresh downloader resumes.
    downloader(tmp_path)(op(http_server.url("/doca.bfb"), SHA))
    assert (tmp_path / "bfb" / "doca.bfb").read_bytes() == BODY
    assert [(s.status, s.range, s.if_range) for s in http_server.served] == [
        (200, None, None), (206, "bytes=250000-", '"v1"')]


def test_a_leftover_without_a_known_version_starts_over(tmp_path: Path, http_server: BfbHttpServer) -> None:
    http_server.files["/doca.bfb"] = BODY
    (tmp_path / "bfb").mkdir()
    (tmp_path / "bfb" / "bfb-uid-1").write_bytes(b"garbage from who knows where")
    downloader(tmp_path)(op(http_server.url("/doca.bfb"), SHA))
    assert (tmp_path / "bfb" / "doca.bfb").read_bytes() == BODY
    assert [(s.status, s.range) for s in http_server.served] == [(200, None)]


def test_a_changed_file_on_the_server_restarts_from_zero(tmp_path: Path, http_server: BfbHttpServer) -> None:
    http_server.files["/doca.bfb"] = BODY
    http_server.cut["/doca.bfb"] = 50_000
    with pytest.raises(OpError):
        downloader(tmp_path, attempts=1)(op(http_server.url("/doca.bfb")))
    # The image is replaced before the next run: If-Range no longer matches, the server answers 200 with
    # the whole new image and the old prefix is thrown away.
    new = BODY[::-1]
    http_server.files["/doca.bfb"] = new
    http_server.etag = '"v2"'
    assert downloader(tmp_path)(op(http_server.url("/doca.bfb"), hashlib.sha256(new).hexdigest())) == len(new)
    assert (tmp_path / "bfb" / "doca.bfb").read_bytes() == new
    assert [(s.status, s.if_range) for s in http_server.served] == [(200, None), (200, '"v1"')]


def test_checksum_mismatch_fails_and_leaves_no_file(tmp_path: Path, http_server: BfbHttpServer) -> None:
    http_server.files["/doca.bfb"] = BODY
    with pytest.raises(OpError) as e:
        downloader(tmp_path)(op(http_server.url("/doca.bfb"), "0" * 64))
    assert e.value.reason == "Checksum"
    assert "checksum mismatch" in str(e.value) and SHA in str(e.value)
    assert sorted(os.listdir(tmp_path / "bfb")) == []


def test_404_is_an_op_error_with_the_message(tmp_path: Path, http_server: BfbHttpServer) -> None:
    url = http_server.url("/missing.bfb")
    with pytest.raises(OpError) as e:
        downloader(tmp_path)(op(url))
    assert e.value.reason == "NotFound"
    assert str(e.value) == f"failed to get: {url} status: 404"  # DPF's words
    assert len(http_server.served) == 1  # a 404 is final: no retries
    assert not (tmp_path / "bfb" / "doca.bfb").exists()


def test_connection_refused_is_an_op_error_with_the_message(tmp_path: Path, refused_url: Callable[[str], str]) -> None:
    url = refused_url("/doca.bfb")
    with pytest.raises(OpError) as e:
        downloader(tmp_path, attempts=2)(op(url))
    assert e.value.reason == "Unavailable"
    assert url in str(e.value) and "refused" in str(e.value).lower()


def test_the_bfb_controllers_download_task_runs_on_threads(tmp_path: Path, http_server: BfbHttpServer) -> None:
    """The core procedure, the threaded Tasks port and the real downloader together."""
    http_server.files["/doca.bfb"] = BODY
    handlers = OpHandlers()
    downloader(tmp_path).register(handlers)
    tasks = ThreadTasks(handlers)
    tasks.start("download/ns/b", download_procedure(http_server.url("/doca.bfb"), "u-1", "ns-b.bfb"))
    status = tasks.wait("download/ns/b", timeout=10)
    assert status is not None and status.state is TaskState.SUCCEEDED and status.result == "ns-b.bfb"
    store = DirectoryBfbStore(tmp_path / "bfb")
    assert store.exists("ns-b.bfb") and store.size("ns-b.bfb") == len(BODY)
    assert not store.exists(temp_file_name("u-1"))

    tasks.start("download/ns/gone", download_procedure(http_server.url("/gone.bfb"), "u-2", "gone.bfb"))
    failed = tasks.wait("download/ns/gone", timeout=10)
    assert failed is not None and failed.state is TaskState.FAILED
    assert (failed.reason, failed.message) == ("NotFound", f"failed to get: {http_server.url('/gone.bfb')} status: 404")


def test_directory_store_write_is_atomic_and_names_stay_inside(tmp_path: Path) -> None:
    store = DirectoryBfbStore(tmp_path / "bfb")
    assert not store.exists("dpu-1.cfg") and store.size("dpu-1.cfg") is None
    store.write("dpu-1.cfg", b"a" * 10)
    store.write("dpu-1.cfg", b"b" * 3)
    assert (tmp_path / "bfb" / "dpu-1.cfg").read_bytes() == b"bbb"
    assert store.size("dpu-1.cfg") == 3
    assert os.listdir(tmp_path / "bfb") == ["dpu-1.cfg"]  # no temp file left behind
    store.remove("dpu-1.cfg")
    store.remove("dpu-1.cfg")  # removing what is gone is fine
    assert not store.exists("dpu-1.cfg")
    for bad in ("../escape.bfb", "", "..", "a/b.bfb"):
        with pytest.raises(ValueError):
            store.write(bad, b"x")
