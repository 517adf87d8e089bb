"""The CLI against bad input: every case exits cleanly (no traceback) with the documented code, and each
message names the file, the line and the field. `dpf run`: 2 invalid scenario, 1 a failed expectation or step;
`dpf validate`: 1; `dpf sweep`: 2 for a bad scenario or --param, before any run starts."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from typer.testing import CliRunner

from dpf_cli.main import app

BFB = """\
apiVersion: provisioning.dpu.nvidia.com/v1alpha1
kind: BFB
metadata: {name: bf-bundle, namespace: dpf-operator-system}
spec: {url: "http://bfb.example/bf.bfb"}
"""

# Three bad fields and one key given twice, on lines 5 to 9.
BAD_DPUSET = """\
apiVersion: provisioning.dpu.nvidia.com/v1alpha1
kind: DPUSet
metadata: {name: dpuset, namespace: dpf-operator-system}
spec:
  strategy: {type: Sideways}
  dpuTemplate: {spec: {bfb: {name: 5}}}
  bogusField: 1
  nodeSelector: {matchLabels: {a: b}}
  nodeSelector: {matchLabels: {c: d}}
"""


def dpf(*args: str | Path) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, [str(a) for a in args])
    # A crash would be an exception other than the SystemExit typer raises for the exit code.
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output
    return res.exit_code, res.stdout, res.stderr


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# --- dpf run: the scenario file itself -------------------------------------------------------------------


def test_a_missing_scenario_file_is_invalid(tmp_path: Path) -> None:
    code, _, err = dpf("run", tmp_path / "nope.yaml")
    assert code == 2
    assert f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory" in err


def test_a_directory_is_not_a_scenario(tmp_path: Path) -> None:
    code, _, err = dpf("run", tmp_path)
    assert code == 2
    assert f"{tmp_path}: cannot read: Is a directory" in err


def test_an_empty_or_comments_only_file_is_invalid_not_a_vacuous_pass(tmp_path: Path) -> None:
    for text in ("", "# nothing here yet\n"):
        path = write(tmp_path, text)
        code, out, err = dpf("run", "-q", path)
        assert code == 2, out
        assert f"{path}:1: <root>: the scenario is empty" in err


def test_a_binary_file_names_the_byte_and_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"name: x\nseed: \xff\n")
    code, _, err = dpf("run", path)
    assert code == 2
    assert f"{path}: cannot read: not UTF-8 text (byte 0xff on line 2)" in err


def test_a_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nseed: [1\n")
    code, _, err = dpf("run", path)
    assert code == 2
    assert f"{path}:3: YAML syntax error: expected ',' or ']'" in err


def test_a_top_level_list_is_not_a_scenario(tmp_path: Path) -> None:
    path = write(tmp_path, "- at: 0s\n- at: 1s\n")
    code, _, err = dpf("run", path)
    assert code == 2
    assert f"{path}:1: <root>: a scenario is a mapping, not a list" in err


def test_every_unknown_top_level_key_is_listed(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nbogus: 1\nalsoBad: 2\n")
    code, _, err = dpf("run", path)
    assert code == 2
    assert f"{path}:2: bogus: unknown field" in err
    assert f"{path}:3: alsoBad: unknown field" in err
    assert "invalid scenario (2 problem(s))" in err


def test_wrong_types_are_all_listed_with_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        name: x
        seed: abc
        fleet: {hosts: -1}
        timeline:
          - at: 5 parsecs
            delete: {kind: DPUSet, namespace: dpf-operator-system, name: dpuset}
        """)
    code, _, err = dpf("run", path)
    assert code == 2
    assert f"{path}:2: seed: Input should be a valid integer" in err
    assert f"{path}:3: fleet.hosts: Input should be greater than or equal to 0" in err
    assert f'{path}:5: timeline[0].at: invalid duration "5 parsecs"' in err
    assert "(3 problem(s))" in err


def test_duplicate_keys_are_refused_not_silently_overwritten(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nseed: 1\nseed: 2\nfleet: {racks: 1, racks: 2}\n")
    code, _, err = dpf("run", path)
    assert code == 2
    assert f"{path}:3: seed: duplicate key" in err
    assert f"{path}:4: fleet.racks: duplicate key" in err


def test_bad_until_is_invalid(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nfleet: {racks: 1, hostsPerRack: 1}\n")
    for until in ("abc", "-5m", "", "5 parsecs", "inf"):
        code, _, err = dpf("run", path, "--until", until)
        assert code == 2, until
        assert err.startswith(f'--until: invalid duration "{until}"'), err


# --- dpf run: what the scenario refers to ------------------------------------------------------------------


def test_a_manifest_file_that_does_not_exist_names_the_step(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\ntimeline:\n  - at: 0s\n    apply: {file: nope.yaml}\n")
    code, _, err = dpf("run", path)
    assert code == 2
    assert f"{path}:4: timeline[0].apply.file: manifest file {tmp_path / 'nope.yaml'}: No such file or directory" in err


def test_every_bad_field_of_a_manifest_is_listed_with_its_own_line(tmp_path: Path) -> None:
    write(tmp_path, BAD_DPUSET, "dpuset.yaml")
    path = write(tmp_path, "name: x\ntimeline:\n  - at: 0s\n    apply: {file: dpuset.yaml}\n")
    code, _, err = dpf("run", path)
    assert code == 2
    head = f"{path}:4: timeline[0].apply.file: manifest {tmp_path / 'dpuset.yaml'}: document 1"
    assert f'{head} (line 5): spec.strategy.type: Unsupported value: "Sideways"' in err
    assert f"{head} (line 6): spec.dpuTemplate.spec.bfb.name: Invalid value: 5" in err
    assert f"{head} (line 7): spec.bogusField: unknown field" in err
    assert f"{head} (line 9): spec.nodeSelector: duplicate key" in err
    assert "(4 problem(s))" in err


def test_broken_manifest_files_each_name_their_step(tmp_path: Path) -> None:
    write(tmp_path, "- a\n", "list.yaml")
    write(tmp_path, "kind: BFB\nspec: [1\n", "syntax.yaml")
    write(tmp_path, "a: &x [*x]\n", "recursive.yaml")
    (tmp_path / "binary.yaml").write_bytes(b"\x00\xfe\xff")
    path = write(tmp_path, """\
        name: x
        timeline:
          - at: 0
            apply: {file: list.yaml}
          - at: 1
            apply: {file: syntax.yaml}
          - at: 2
            apply: {file: recursive.yaml}
          - at: 3
            apply: {file: binary.yaml}
        """)
    code, _, err = dpf("run", path)
    assert code == 2
    assert f"{path}:4: timeline[0].apply.file: manifest {tmp_path / 'list.yaml'}: document 1 (line 1): not a Kubernetes object" in err
    assert f"{path}:6: timeline[1].apply.file: manifest {tmp_path / 'syntax.yaml'} (line 3): YAML syntax error" in err
    assert f"{path}:8: timeline[2].apply.file: manifest {tmp_path / 'recursive.yaml'} (line 1): recursive YAML alias" in err
    assert f"{path}:10: timeline[3].apply.file: manifest file {tmp_path / 'binary.yaml'}: not UTF-8 text" in err


def test_awaits_on_missing_fields_and_unknown_invariants_are_invalid(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        name: x
        expect:
          - await: {name: a, kind: DPU, fields: {spec.noSuchField: x, status.bogus: 1}, within: 1h}
          - invariant: {name: i, type: noSuchInvariant}
          - invariant: {name: j, type: "nosuchmodule:check"}
        """)
    code, _, err = dpf("run", path)
    assert code == 2
    assert f"{path}:3: expect[0].await.fields.spec.noSuchField: DPU has no field spec.noSuchField" in err
    assert f"{path}:3: expect[0].await.fields.status.bogus: DPU has no field status.bogus" in err
    assert f'{path}:4: expect[1].invariant.type: unknown invariant type "noSuchInvariant"' in err
    assert f"{path}:5: expect[2].invariant.type: cannot import nosuchmodule:check" in err


def test_a_bad_fault_is_invalid_at_load_time_not_a_failed_step(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        name: x
        fleet: {racks: 1, hostsPerRack: 1}
        timeline:
          - at: 0s
            fault: {type: meteorStrike}
          - at: 1s
            fault: {type: dmsSlow, delay: forever}
        """)
    code, _, err = dpf("run", path)
    assert code == 2
    assert f"{path}:5: timeline[0].fault: unknown fault type 'meteorStrike' (one of " in err
    assert f'{path}:7: timeline[1].fault: fault dmsSlow: delay: invalid duration "forever"' in err


def test_a_step_refused_at_run_time_names_its_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        name: x
        fleet: {racks: 1, hostsPerRack: 1}
        timeline:
          - at: 0s
            delete: {kind: DPUSet, namespace: nowhere, name: nothing}
          - at: 1s
            power_cycle: {host: no-such-host}
          - at: 2s
            store: nowhere/nothing
            apply: {manifests: [{apiVersion: v1, kind: Namespace, metadata: {name: ok}}]}
        """)
    code, out, _ = dpf("run", "-q", path)
    assert code == 1
    assert f'step 0 failed: {path}:5: timeline[0].delete: dpusets.provisioning.dpu.nvidia.com "nothing" not found' in out
    # The file's own spelling of the key, and a KeyError's text without its repr quotes.
    assert f"step 1 failed: {path}:7: timeline[1].power_cycle: no host 'no-such-host' in the fleet" in out
    assert f'step 2 failed: {path}:9: timeline[2].store: no store "nowhere/nothing" (have: host)' in out


# --- dpf validate ------------------------------------------------------------------------------------------


def test_validate_refuses_duplicate_keys_and_lists_every_bad_field(tmp_path: Path) -> None:
    path = write(tmp_path, BAD_DPUSET, "dpuset.yaml")
    code, out, _ = dpf("validate", path)
    assert code == 1
    head = f"{path}:1 DPUSet/dpf-operator-system/dpuset"
    assert f"{head}: spec.nodeSelector: duplicate key on line 9" in out
    for field in ("spec.strategy.type", "spec.dpuTemplate.spec.bfb.name", "spec.bogusField"):
        assert f"{head}: {field}: " in out


def test_validate_a_binary_or_missing_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"kind: BFB\n\xff\n")
    code, out, _ = dpf("validate", binary, tmp_path / "nope.yaml")
    assert code == 1
    assert f"{binary}: cannot read: not UTF-8 text (byte 0xff on line 2)" in out
    assert f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory" in out


# --- dpf scenario schema -----------------------------------------------------------------------------------


def test_scenario_schema_is_json_and_refuses_extra_arguments() -> None:
    code, out, _ = dpf("scenario", "schema")
    assert code == 0
    assert json.loads(out)["title"] == "dpf-twin scenario"
    code, _, err = dpf("scenario", "schema", "extra.yaml")
    assert code == 2 and "unexpected extra argument" in err


# --- dpf sweep ---------------------------------------------------------------------------------------------

SWEEP_SCENARIO = """\
name: tiny
fleet: {racks: 1, hostsPerRack: 1}
timeline:
  - at: 0s
    apply: {file: bfb.yaml}
expect:
  - await: {name: bfb, kind: BFB, within: 1h}
"""


def sweep_scenario(tmp_path: Path) -> Path:
    write(tmp_path, BFB, "bfb.yaml")
    return write(tmp_path, SWEEP_SCENARIO)


def test_sweep_replications_zero_is_refused(tmp_path: Path) -> None:
    path = sweep_scenario(tmp_path)
    for r in ("0", "-3"):
        code, _, err = dpf("sweep", path, "-p", "fleet.racks=1", "-r", r, "--out", tmp_path / "o")
        assert code == 2 and "--replications must be >= 1" in err
    assert not (tmp_path / "o").exists()


def test_sweep_bad_params_name_the_original_file_line_and_every_bad_point(tmp_path: Path) -> None:
    path = sweep_scenario(tmp_path)
    code, _, err = dpf("sweep", path, "-p", "fleet.hostsPerRack=1,abc", "-p", "timeline[0].at=5 parsecs,1m",
                       "-p", "nosuch.deep=1", "--out", tmp_path / "o")
    assert code == 2
    # Lines are the user's file's, not the re-dumped YAML's: fleet is on line 2, timeline[0].at on line 4.
    assert f"{path}:2: fleet.hostsPerRack: Input should be a valid integer" in err
    assert f'{path}:4: timeline[0].at: invalid duration "5 parsecs"' in err
    assert f"{path}:1: nosuch: unknown field" in err
    # All four points are bad (nosuch is in every one), and each is listed.
    assert err.count(f"{path} with ") == 4
    assert not (tmp_path / "o").exists()


def test_sweep_param_values_that_are_not_yaml_are_refused(tmp_path: Path) -> None:
    path = sweep_scenario(tmp_path)
    for spec in ("fleet.hostsPerRack=[1", "fleet.hostsPerRack=1,{"):
        code, _, err = dpf("sweep", path, "-p", spec, "--out", tmp_path / "o")
        assert code == 2, spec
        assert err.startswith("--param fleet.hostsPerRack: values ") and "not YAML" in err


def test_sweep_param_paths_that_do_not_exist_are_refused(tmp_path: Path) -> None:
    path = sweep_scenario(tmp_path)
    cases = {
        "timeline[5].at=1": f"{path} with timeline[5].at=1: timeline[5]: no item 5 (the list has 1)",
        "timeline.at=1": f"{path} with timeline.at=1: timeline.at: .at needs a mapping, found list",
        "DPUSet[nope].spec.x=1": f"{path}: DPUSet[nope].spec.x: no DPUSet named nope is applied in the timeline",
        "BFB[bf-bundle].spec.url=5": f"{path} with BFB[bf-bundle].spec.url=5: invalid manifest(s):\n  BFB bf-bundle: spec.url",
        "a..b=1": "parameter path 'a..b': cannot read from '..b'",
        "noequals": "--param 'noequals': write PATH=V1,V2,...",
    }
    for spec, message in cases.items():
        code, _, err = dpf("sweep", path, "-p", spec, "--out", tmp_path / "o")
        assert code == 2, spec
        assert message in err, (spec, err)


def test_sweep_an_out_that_is_a_file_fails_before_any_run(tmp_path: Path) -> None:
    path = sweep_scenario(tmp_path)
    code, out, err = dpf("sweep", path, "-p", "fleet.racks=1", "-j", "1", "--out", path)
    assert code == 2
    assert f"--out {path}: cannot create the output directory: File exists" in err
    assert "[1]" not in err + out  # no run was started only to be lost


def test_sweep_a_scenario_that_cannot_be_read_is_invalid(tmp_path: Path) -> None:
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff")
    empty = write(tmp_path, "", "empty.yaml")
    code, _, err = dpf("sweep", binary, "-p", "fleet.racks=1", "--out", tmp_path / "o")
    assert code == 2 and f"{binary}: cannot read: not UTF-8 text" in err
    code, _, err = dpf("sweep", empty, "-p", "fleet.racks=1", "--out", tmp_path / "o")
    assert code == 2 and f"{empty}:1: <root>: the scenario is empty" in err
