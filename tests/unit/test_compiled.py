"""dpf_core.compiled: the mypyc build of the core's hot modules stands in for the sources only when it matches
them exactly, and a run gives the same results to the byte either way."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from real_rule import require_real

from dpf_core import compiled
from dpf_core.compiled import MODULES, build_dir, status

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "dpf_core"


def _require_build() -> None:
    st = status(use_env=False)
    require_real("the mypyc build of dpf_core (make compiled: needs gcc and the Python headers)", st.active, st.reason)


def test_this_process_runs_the_build_when_it_is_fresh() -> None:
    _require_build()
    import dpf_core.store.memory as memory

    assert compiled.install().active
    for name in MODULES:
        module = sys.modules.get(name) or __import__(name, fromlist=["_"])
        assert module.__file__ is not None and module.__file__.startswith(str(build_dir(ROOT))), name
    assert not memory.__file__.endswith(".py")


def test_a_source_edited_after_the_build_rules_out_every_compiled_module(tmp_path: Path) -> None:
    _require_build()
    copy = tmp_path / "dpf_core"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert status(copy, build_dir(ROOT), use_env=False).active  # the same sources: usable
    source = copy / "store" / "memory.py"
    source.write_text(source.read_text() + "\n# edited\n")
    st = status(copy, build_dir(ROOT), use_env=False)
    assert not st.active and st.paths == {}
    assert st.reason == f"{source} changed since the build (run `make compiled`)"


def test_no_build_another_module_list_or_dpf_compiled_0_means_pure_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = status(PACKAGE, tmp_path)
    assert not st.active and st.reason == f"no build in {tmp_path}"
    (tmp_path / "manifest.json").write_text(json.dumps({"modules": {}, "group": None}))
    assert status(PACKAGE, tmp_path).reason == "the build compiled other modules than MODULES lists"
    (tmp_path / "manifest.json").write_text("{not json")
    assert status(PACKAGE, tmp_path).reason.startswith(f"unreadable {tmp_path / 'manifest.json'}: ")
    monkeypatch.setenv("DPF_COMPILED", "0")
    assert status().reason == "DPF_COMPILED=0" and not status().active


def test_a_build_missing_its_files_is_not_used(tmp_path: Path) -> None:
    _require_build()
    out = tmp_path / "build"
    shutil.copytree(build_dir(ROOT), out)
    group = json.loads((out / "manifest.json").read_text())["group"]
    (out / group["file"]).unlink()
    st = status(PACKAGE, out, use_env=False)
    assert not st.active and st.reason == f"missing from the build: {out / group['file']}"


_PROBE = """
import json, sys
from pathlib import Path
import dpf_core.store.memory as memory
from dpf_sim.runner import run_scenario
from dpf_sim.scenario import load_scenario
report = run_scenario(load_scenario(Path(sys.argv[1])), progress=False).report
print(json.dumps({"memory": memory.__file__, "sha": report["event_log_sha256"], "passed": report["passed"]}))
"""


@pytest.mark.parametrize("scenario", ["rolling-bfb-upgrade.yaml", "dpuservice-lifecycle.yaml", "service-chain-hbn.yaml", "node-effects.yaml"])
def test_compiled_and_pure_python_runs_write_the_same_event_log(scenario: str) -> None:
    _require_build()
    runs = {}
    for flag in ("1", "0"):
        done = subprocess.run([sys.executable, "-c", _PROBE, str(ROOT / "scenarios" / scenario)], capture_output=True,
                              text=True, timeout=300, check=True, cwd=ROOT, env={**_env(), "DPF_COMPILED": flag})
        runs[flag] = json.loads(done.stdout.strip().splitlines()[-1])
    assert runs["1"]["memory"].endswith(".so") and runs["0"]["memory"].endswith("memory.py")
    assert runs["1"]["passed"] and runs["0"]["passed"]
    assert runs["1"]["sha"] == runs["0"]["sha"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DPF_COMPILED"}


_CENSUS = """
import collections, gc, json
from dpf_core.store import MemoryStore
from dpf_core.api.external import Node
store = MemoryStore(lambda: 0.0, seed=1)
for i in range(500):
    store.create(Node.new(f"n{i}"))
seen, count, stack = set(), collections.Counter(), [store]
while stack:
    x = stack.pop()
    if id(x) in seen or isinstance(x, type) or type(x).__name__ in ("module", "function", "builtin_function_or_method"):
        continue
    seen.add(id(x))
    count[type(x).__name__] += 1
    stack.extend(gc.get_referents(x))
print(json.dumps({k: count[k] for k in ("tuple", "dict", "str", "Node")}))
"""


def test_a_stored_object_holds_as_many_objects_compiled_as_interpreted() -> None:
    """mypyc keeps a fixed-size tuple unboxed and boxes it anew wherever it is stored: a key in three indexes
    was three tuples (+112 bytes per stored object, +230 MB at 100,000 DPUs) until `Key` was declared
    variable-length. Counted as a fleet run stores objects: without the tests' mutation detector."""
    _require_build()
    counts = {}
    for flag in ("1", "0"):
        done = subprocess.run([sys.executable, "-c", _CENSUS], capture_output=True, text=True, timeout=120, check=True,
                              cwd=ROOT, env={**_env(), "DPF_COMPILED": flag, "DPF_MUTATION_DETECTOR": "0"})
        counts[flag] = json.loads(done.stdout)
    assert counts["1"]["Node"] == 500
    assert counts["1"] == counts["0"]
