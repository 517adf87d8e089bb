"""Hostile input through the scenario loader: whatever the text, it either loads or raises ScenarioError whose
every problem is `<file>:<line>: ...`; never another exception.

`FUZZ_EXAMPLES=N` raises the example count (docs/reliability.md reports a large run); CI keeps it small.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dpf_sim.scenario import ScenarioError, load_scenario_text

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
FILE = SCENARIOS / "fuzz.yaml"  # never read: the loader only names it in messages
LINE = re.compile(r"^" + re.escape(str(FILE)) + r":\d+: ")
REAL = [yaml.safe_load(p.read_text()) for p in sorted(SCENARIOS.glob("*.yaml"))]
SEEN = {"inputs": 0}

keys = st.one_of(st.sampled_from(["name", "seed", "fleet", "timeline", "expect", "at", "apply", "patch", "delete",
                                  "fault", "await", "invariant", "kind", "within", "count", "after", "until",
                                  "racks", "hostsPerRack", "manifests", "file", "type", "params", "models"]),
                 st.text(max_size=10), st.integers(-3, 3), st.booleans())
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**66), 2**66), st.floats(), st.text(max_size=16),
                    st.sampled_from(["5m", "1h30m", "-1s", "all", ">=3", "Ready=True", "DPU", "../../etc/passwd",
                                     "manifests/base.yaml", "x" * 300]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(keys, inner, max_size=5)), max_leaves=25)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, (*prefix, i)))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A shipped scenario with a few values replaced by arbitrary YAML values, dumped back to text."""
    doc = copy.deepcopy(draw(st.sampled_from(REAL)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from([p for p in _paths(doc) if p] or [()]))
        if not path:
            break
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = draw(values)
    return yaml.safe_dump(doc, sort_keys=False)


texts = st.one_of(
    st.text(max_size=200),
    values.map(lambda v: yaml.safe_dump(v)),
    mutated(),
    st.sampled_from(["a: [1, 2", "- !!python/object:os.system {}", "x: &a [*a]", "{a: 1, a: 2}", "\t- x", ": :",
                     "timeline: [{at: 1s}]", "seed: 99999999999999999999999999"]),
)


def check(text: str) -> None:
    SEEN["inputs"] += 1
    try:
        load_scenario_text(text, path=FILE, base_dir=SCENARIOS)
    except ScenarioError as e:
        assert e.problems, "a ScenarioError without problems"
        for line in e.problems:
            assert LINE.match(line), f"problem without file:line: {line!r}"


@FUZZ
@given(texts)
@example("x: &a [*a]")  # a recursive alias: found by this test (RecursionError in scenario._index)
@example("timeline:\n  - at: 1s\n    apply: {manifests: [{apiVersion: v1, kind: 7}]}\n")
def test_the_loader_raises_only_scenario_errors_with_file_and_line(text: str) -> None:
    check(text)


@FUZZ
@given(mutated())
def test_mutated_shipped_scenarios_raise_only_scenario_errors(text: str) -> None:
    check(text)


def test_a_broken_scenario_reports_every_problem_with_its_line() -> None:
    text = "seed: x\ntimeline:\n  - at: soon\n    power_cycle: {host: h}\nexpect:\n  - await: {name: a}\n"
    try:
        load_scenario_text(text, path=FILE, base_dir=SCENARIOS)
    except ScenarioError as e:
        lines = {int(p.split(":")[1]) for p in e.problems}
        assert {1, 3, 6} <= lines, e.problems
    else:
        raise AssertionError("a scenario with three bad fields loaded")
