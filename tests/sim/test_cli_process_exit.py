"""`dpf run` as its own process: it leaves without freeing the fleet's heap object by object (main.py), so
what it promises at exit must still all be there: the exit code, every line of output through a pipe or a
file (block-buffered), and the report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"


def dpf(*args: str | Path, stdout: int | object = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dpf_cli.main", *map(str, args)], stdout=stdout,  # type: ignore[arg-type]
                          stderr=subprocess.PIPE, text=True, timeout=120, check=False, cwd=ROOT)


def test_a_passing_run_exits_0_with_every_line_and_the_report(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    done = dpf("run", QUICKSTART, "--report", report)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("scenario quickstart (seed ") and "PASSED" in lines[0]
    assert lines[-1] == f"report: {report}"
    assert json.loads(report.read_text())["expectations"]


def test_output_to_a_file_is_complete(tmp_path: Path) -> None:
    """A file is block-buffered: what is still in the buffer at the hard exit must be flushed first."""
    out = tmp_path / "out.txt"
    with out.open("w") as fh:
        done = dpf("run", QUICKSTART, "-q", stdout=fh)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == "quickstart: PASSED\n"


def test_a_failed_run_exits_1_and_an_invalid_scenario_2(tmp_path: Path) -> None:
    failed = dpf("run", QUICKSTART, "-q", "--until", "1m")
    assert failed.returncode == 1
    assert failed.stdout.splitlines()[-1] == "quickstart: FAILED (1 failed)"
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: x\n")
    invalid = dpf("run", bad)
    assert invalid.returncode == 2
    assert invalid.stderr.splitlines()[-1] == f"{bad}: invalid scenario (1 problem(s))"
