"""Scenario files: schema, defaults, and loader errors that name file, line and field (all of them at once)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from dpf_sim.expect import Check, Invariant, register_invariant, unregister_invariant
from dpf_sim.scenario import ScenarioError, fleet_config, json_schema, load_scenario, parse_duration

BFB_DOC = """\
apiVersion: provisioning.dpu.nvidia.com/v1alpha1
kind: BFB
metadata: {name: bf-bundle, namespace: dpf-operator-system}
spec: {url: "http://bfb.example/bf-bundle-2.9.1.bfb"}
"""


def write(tmp_path: Path, text: str, name: str = "scenario.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def problems(path: Path) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return info.value.problems


def test_a_valid_scenario_loads_with_defaults_and_resolved_manifests(tmp_path: Path) -> None:
    write(tmp_path, BFB_DOC, "bfb.yaml")
    path = write(tmp_path, """\
        seed: 7
        fleet: {racks: 2, hostsPerRack: 3}
        timeline:
          - at: 0s
            apply: {file: bfb.yaml}
          - at: 1h30m
            name: roll
            patch: {kind: BFB, namespace: dpf-operator-system, name: bf-bundle, patch: {metadata: {labels: {a: b}}}}
          - at: 90
            apply:
              - {file: bfb.yaml}
              - manifests:
                  - {apiVersion: v1, kind: Secret, metadata: {name: s, namespace: dpf-operator-system}}
        expect:
          - await: {name: ready, kind: BFB, phase: Ready, within: 10m}
          - invariant: {name: gone, type: noLeftovers, after: roll, within: 5m, params: {kinds: [BFB]}}
        """)
    loaded = load_scenario(path)
    sc = loaded.scenario
    assert loaded.name == "scenario"  # no name: the file's stem
    assert sc.seed == 7 and sc.epoch == "2025-01-01T00:00:00Z" and sc.until is None
    assert [s.at for s in sc.timeline] == [0.0, 5400.0, 90.0]
    assert [s.action for s in sc.timeline] == ["apply", "patch", "apply"]
    assert [d["kind"] for d in loaded.manifests[0]] == ["BFB"]
    assert [d["kind"] for d in loaded.manifests[2]] == ["BFB", "Secret"]
    assert sc.expect[0].await_ is not None and sc.expect[0].await_.count == "all"
    assert loaded.step_index("roll") == 1
    assert fleet_config(sc.fleet) == {"racks": 2, "hosts_per_rack": 3}


def test_every_schema_error_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        name: broken
        seed: many
        timeline:
          - at: 0s
            patch: {kind: BFB, name: b, patch: {}}
          - at: 5 minutes
            delete: {kind: BFB, name: b}
          - at: 1m
            delete: {kind: BFB, name: b}
            powerCycle: {host: worker-0}
        expect:
          - await: {name: a, kind: DPU, within: 10m, count: lots, colour: blue}
        """)
    got = problems(path)
    assert got == [
        f'{path}:2: seed: Input should be a valid integer, unable to parse string as an integer',
        f'{path}:6: timeline[1].at: invalid duration "5 minutes" (write e.g. 90s, 5m, 1h30m, or seconds)',
        f'{path}:8: timeline[2]: give exactly one action of apply, patch, delete, powerCycle, fault (got delete, powerCycle)',
        f'{path}:12: expect[0].await.count: invalid count \'lots\': write "all", a number, or ">=N"',
        f'{path}:12: expect[0].await.colour: unknown field',
    ]


def test_missing_fields_point_at_their_parent(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        timeline:
          - at: 0s
            patch:
              kind: BFB
              name: b
        """)
    assert problems(path) == [f"{path}:3: timeline[0].patch.patch: required field"]


def test_semantic_errors_are_collected_together(tmp_path: Path) -> None:
    write(tmp_path, BFB_DOC + "---\n" + textwrap.dedent("""\
        apiVersion: provisioning.dpu.nvidia.com/v1alpha1
        kind: DPUSet
        metadata: {name: s, namespace: dpf-operator-system}
        spec:
          strategy: {type: Sideways}
          bogus: 1
        """), "manifests.yaml")
    path = write(tmp_path, """\
        fleet: {racks: 0, hostsPerRack: 2, colour: red}
        timeline:
          - at: 0s
            apply: {file: nowhere.yaml}
          - at: 1m
            name: m
            apply: {file: manifests.yaml}
          - at: 2m
            apply:
              manifests:
                - apiVersion: provisioning.dpu.nvidia.com/v1alpha1
                  kind: BFB
                  metadata: {name: b, namespace: x}
                  spec: {url: "ftp://nope"}
          - at: 3m
            delete: {kind: Widget, name: w}
        expect:
          - await: {name: a, kind: DPU, phase: Readyish, within: 10m}
          - invariant: {name: b, type: noSuchThing}
          - invariant: {name: c, type: noLeftovers}
          - await: {name: d, kind: DPU, within: 1m, after: nope}
          - await: {name: e, kind: DPU, within: 1m, after: 9}
        """)
    got = problems(path)
    manifests = tmp_path / "manifests.yaml"
    # The known invariant types grow with the modules that register them: check the message's start only.
    unknown = f'{path}:19: expect[1].invariant.type: unknown invariant type "noSuchThing" (known: '
    assert [p for p in got if p.startswith(unknown)] and "maxUnavailable" in next(p for p in got if p.startswith(unknown))
    got = [p for p in got if not p.startswith(unknown)]
    assert got == [
        f"{path}:1: fleet.racks: Input should be greater than or equal to 1",
        f"{path}:1: fleet.colour: unknown field",
        f"{path}:4: timeline[0].apply.file: manifest file {tmp_path / 'nowhere.yaml'}: No such file or directory",
        f"{path}:7: timeline[1].apply.file: manifest {manifests}: document 2 (line 10): spec.strategy.type: "
        "Unsupported value: \"Sideways\": supported values: \"Recreate\", \"RollingUpdate\"",
        f'{path}:7: timeline[1].apply.file: manifest {manifests}: document 2 (line 11): spec.bogus: unknown field "spec.bogus"',
        f"{path}:14: timeline[2].apply.manifests[0].spec.url: Invalid value: \"ftp://nope\": spec.url in body should "
        "match '^(http|https)://.+\\.bfb$'",
        f'{path}:16: timeline[3].delete.kind: the server doesn\'t have a resource type "Widget"',
        f'{path}:18: expect[0].await.phase: DPU has no phase "Readyish" (one of "Initializing", "Node Effect", "Pending", '
        '"DMS Deployment", "OS Installing", "Rebooting", "Host Network Configuration", "DPU Cluster Config", "Ready", '
        '"Error", "Deleting")',
        f"{path}:20: expect[2].invariant.after: noLeftovers needs the step it checks after",
        f"{path}:20: expect[2].invariant.within: noLeftovers needs a deadline",
        f'{path}:21: expect[3].await.after: no timeline step named "nope"',
        f"{path}:22: expect[4].await.after: no timeline step 9 (there are 4)",
    ]


def test_yaml_syntax_errors_and_duplicate_keys(tmp_path: Path) -> None:
    bad = write(tmp_path, "seed: 1\ntimeline: [\n  - at: 0s\n", "syntax.yaml")
    (msg,) = problems(bad)
    assert msg.startswith(f"{bad}:3: YAML syntax error")
    dup = write(tmp_path, "seed: 1\nname: a\nseed: 2\n", "dup.yaml")
    assert problems(dup) == [f"{dup}:3: seed: duplicate key (the later value would silently win)"]
    assert problems(tmp_path / "absent.yaml") == [f"{tmp_path / 'absent.yaml'}: cannot read: No such file or directory"]


def test_names_must_be_unique_and_await_needs_one_predicate(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        expect:
          - await: {name: x, kind: BFB, phase: Ready, condition: Ready=True, within: 1m}
          - await: {name: y, kind: BFB, condition: "Ready is True", within: 1m}
          - await: {name: z, kind: Secret, selector: "a in (", within: 1m}
          - {await: {name: w, kind: BFB, within: 1m}, invariant: {name: v, type: singleFlash}}
          - await: {name: x, kind: BFB, within: 1m}
        """)
    got = problems(path)
    assert got[0] == f"{path}:2: expect[0].await: give phase or condition, not both"
    assert got[1].startswith(f"{path}:3: expect[1].await.condition: invalid condition 'Ready is True'")
    assert got[2].startswith(f"{path}:4: expect[2].await.selector: invalid label selector")
    assert got[3].startswith(f"{path}:5: expect[3]: give exactly one of await, invariant")
    assert len(got) == 4  # the duplicate name is checked once each expectation is valid
    path.write_text("expect:\n  - await: {name: x, kind: BFB, within: 1m}\n  - await: {name: x, kind: BFB, within: 2m}\n")
    assert problems(path) == [f'{path}:3: expect[1].await.name: expectation name "x" is used twice (first by expect[0])']


def test_await_fields_must_exist_on_the_kind(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        expect:
          - await: {name: f, kind: DPU, fields: {spec.bfb: x, spec.nope: y, status.phase: Ready}, within: 1m}
        """)
    assert problems(path) == [f"{path}:2: expect[0].await.fields.spec.nope: DPU has no field spec.nope"]


def test_invariant_params_are_validated(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        timeline: [{at: 0s, delete: {kind: BFB, name: b}}]
        expect:
          - invariant: {name: a, type: maxUnavailable, params: {dpuSet: x, colour: red}}
          - invariant: {name: b, type: noLeftovers, after: 0, within: 1m, params: {kinds: [Widget]}}
        """)
    assert problems(path) == [
        f"{path}:3: expect[0].invariant.params.colour: unknown parameter",
        f'{path}:4: expect[1].invariant.params: the server doesn\'t have a resource type "Widget"',
    ]


class _AlwaysHolds(Invariant):
    pass


@pytest.fixture
def always_holds() -> Iterator[None]:
    register_invariant("testAlwaysHolds")(_AlwaysHolds)
    yield
    unregister_invariant("testAlwaysHolds")


def test_custom_invariants_by_registered_name_or_import_path(tmp_path: Path, always_holds: None) -> None:
    path = write(tmp_path, """\
        expect:
          - invariant: {name: a, type: testAlwaysHolds}
          - invariant: {name: b, type: "dpf_sim.expect:MaxUnavailable"}
          - invariant: {name: c, type: "tests.sim.nowhere:Thing"}
        """)
    (msg,) = problems(path)
    assert msg.startswith(f"{path}:4: expect[2].invariant.type: cannot import tests.sim.nowhere:Thing")
    path.write_text("expect:\n  - invariant: {name: a, type: testAlwaysHolds}\n")
    assert load_scenario(path).scenario.expect[0].invariant is not None
    assert issubclass(_AlwaysHolds, Check)


def test_durations() -> None:
    assert parse_duration("1h30m") == 5400.0
    assert parse_duration(12.5) == 12.5
    assert parse_duration("250ms") == 0.25
    with pytest.raises(ValueError, match='invalid duration "soon"'):
        parse_duration("soon")
    with pytest.raises(ValueError):
        parse_duration(-1)


def test_json_schema_describes_the_file_format() -> None:
    schema = json_schema()
    props = schema["properties"]
    assert {"seed", "epoch", "until", "fleet", "models", "cost", "timeline", "expect"} <= set(props)
    step = schema["$defs"]["Step"]["properties"]
    assert {"at", "apply", "patch", "delete", "powerCycle", "fault"} <= set(step)
    assert step["at"]["anyOf"][0]["type"] == "number" and step["at"]["anyOf"][1]["type"] == "string"
    assert "await" in schema["$defs"]["Expectation"]["properties"]
    json.dumps(schema)  # serializable as is


def test_apply_namespace_is_kubectls_dash_n(tmp_path: Path) -> None:
    """`apply: {file, namespace}` is `kubectl apply -n`: namespaced documents without a namespace land in it,
    cluster-scoped ones are left alone, and one naming another namespace is refused with kubectl's words."""
    write(tmp_path, """\
        apiVersion: svc.dpu.nvidia.com/v1alpha1
        kind: DPUServiceIPAM
        metadata: {name: pool1}
        spec: {ipv4Network: {network: 10.0.0.0/16, prefixSize: 24}}
        ---
        apiVersion: v1
        kind: Node
        metadata: {name: extra-node}
        """, "guide.yaml")
    path = write(tmp_path, """\
        timeline:
          - at: 0s
            apply: {file: guide.yaml, namespace: dpf-operator-system}
        """)
    loaded = load_scenario(path)
    ipam, node = loaded.manifests[0]
    assert ipam["metadata"] == {"name": "pool1", "namespace": "dpf-operator-system"}
    assert node["metadata"] == {"name": "extra-node"}

    path = write(tmp_path, """\
        timeline:
          - at: 0s
            apply:
              namespace: other
              manifests:
                - {apiVersion: v1, kind: Secret, metadata: {name: s, namespace: dpf-operator-system}}
        """)
    (problem,) = problems(path)
    assert problem.startswith(f"{path}:4: timeline[0].apply.namespace: {path}:6: ")
    assert problem.endswith('the namespace from the provided object "dpf-operator-system" does not match the '
                            "namespace \"other\". You must pass '--namespace=dpf-operator-system' to perform this "
                            "operation.")
