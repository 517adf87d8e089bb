"""Scenario files: the YAML schema (pydantic), and a loader whose errors name file, line and field.

A scenario is what a person would write down to describe an experiment on the twin: the fleet, what users
(and faults) do at which simulated time, and what must hold. Example:

    name: rolling-bfb-upgrade
    seed: 7
    fleet: {racks: 2, hostsPerRack: 8}
    timeline:
      - at: 0s
        apply: {file: manifests/provisioning.yaml}
      - at: 40m
        name: roll
        patch: {kind: DPUSet, namespace: dpf-operator-system, name: dpuset, patch: {spec: {...}}}
    expect:
      - await: {name: all-ready, kind: DPU, phase: Ready, count: 16, within: 40m}
      - invariant: {name: budget, type: maxUnavailable}

Every problem in a file is reported at once, each as `<file>:<line>: <field path>: <what is wrong>`, so a
scenario is fixed in one edit rather than one error per run. `docs/scenarios.md` is the user's guide.
"""

from __future__ import annotations

import enum
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from dpf_core.api import admission, registry
from dpf_core.api.kubeyaml import KubeYamlLoader, read_text
from dpf_core.api.meta import KubeObject, Model
from dpf_core.errors import ApiError, Invalid
from dpf_core.runtime import parse_rfc3339
from dpf_core.store.selectors import compile_label_selector

from .durations import parse_seconds

DEFAULT_EPOCH = "2025-01-01T00:00:00Z"
# Validation context key: a loaded file reports duplicate names itself, each at its line (see _check_names).
_NAMES_CHECKED_LATER = "dpf-names-checked-later"

# A field's place in the scenario file: map keys and list indices from the root (`timeline[2].at`).
PathPart = str | int
FieldPath = tuple[PathPart, ...]


class ScenarioError(Exception):
    """An invalid scenario. `problems` holds one `<file>:<line>: <path>: <message>` line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems) or "invalid scenario")


# --- field types ------------------------------------------------------------------------------------------


def parse_duration(value: Any) -> float:
    """Seconds from a number or "90s", "5m", "1h30m"; ValueError says what was wrong."""
    try:
        return parse_seconds(value)
    except ValueError:
        shown = value if isinstance(value, str) else repr(value)
        raise ValueError(f'invalid duration "{shown}" (write e.g. 90s, 5m, 1h30m, or seconds)') from None


_DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?|\.\d+)(ns|us|ms|s|m|h|d)?((\d+(\.\d+)?|\.\d+)(ns|us|ms|s|m|h|d))*\s*$"},
    ],
    "description": 'seconds, or a Go-style duration: "90s", "5m", "1h30m"',
}

Seconds = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA)]

_COUNT = re.compile(r"^(all|>=\s*\d+|\d+)$")
_CONDITION = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_./]*)(=(True|False|Unknown))?$")


def _count(value: Any) -> int | str:
    if isinstance(value, bool):
        raise ValueError(f'invalid count {value!r}: write "all", a number, or ">=N"')
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid count {value}: must be >= 0")
        return value
    if isinstance(value, str) and _COUNT.match(value.strip()):
        text = value.strip().replace(" ", "")
        return int(text) if text.isdigit() else text
    raise ValueError(f'invalid count {value!r}: write "all", a number, or ">=N"')


Count = Annotated[
    int | str,
    BeforeValidator(_count),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": r"^(all|>=\s*\d+|\d+)$"}],
                    "default": "all"}),
]


# --- timeline ---------------------------------------------------------------------------------------------


class ApplySource(Model):
    """One source of manifests: a multi-document YAML file (relative to the scenario file) or inline objects."""

    file: str | None = None
    manifests: list[dict[str, Any]] | None = None
    namespace: str | None = Field(
        default=None,
        description="kubectl apply -n: the namespace of documents of namespaced kinds that name none; a document "
        "naming another one is refused",
    )

    @model_validator(mode="after")
    def _one(self) -> ApplySource:
        if (self.file is None) == (self.manifests is None):
            raise ValueError("give exactly one of file, manifests")
        return self


class PatchStep(Model):
    kind: str
    name: str
    namespace: str | None = None
    type: Literal["merge", "json"] = "merge"
    patch: Any
    subresource: Literal["status"] | None = Field(
        default=None, description='"status" writes the status subresource (what a controller or kubelet would do)'
    )
    store: str = Field(default="host", description='"host", or a DPU cluster\'s store "<namespace>/<name>"')


class DeleteStep(Model):
    kind: str
    name: str
    namespace: str | None = None
    store: str = "host"


class PowerCycleStep(Model):
    host: str


ACTIONS = ("apply", "patch", "delete", "power_cycle", "fault")


class Step(Model):
    """One user action (or fault) at a simulated time since the start of the run."""

    at: Seconds
    name: str | None = Field(default=None, description="a name expectations can refer to with `after`")
    apply: ApplySource | list[ApplySource] | None = None
    patch: PatchStep | None = None
    delete: DeleteStep | None = None
    power_cycle: PowerCycleStep | None = None
    fault: dict[str, Any] | None = None
    store: str = Field(default="host", description="the store `apply` writes into")

    @model_validator(mode="after")
    def _exactly_one(self) -> Step:
        given = [a for a in ACTIONS if getattr(self, a) is not None]
        if len(given) != 1:
            wire = ", ".join(to_wire(a) for a in ACTIONS)
            got = ", ".join(to_wire(a) for a in given) or "none"
            raise ValueError(f"give exactly one action of {wire} (got {got})")
        return self

    @property
    def action(self) -> str:
        return next(a for a in ACTIONS if getattr(self, a) is not None)

    def sources(self) -> list[ApplySource]:
        if self.apply is None:
            return []
        return list(self.apply) if isinstance(self.apply, list) else [self.apply]


# --- expectations -----------------------------------------------------------------------------------------


StepRef = Annotated[int | str, Field(description="a timeline step: its index (from 0) or its name")]


class AwaitSpec(Model):
    """A set of objects reaches a phase or condition (or just exists) within a deadline."""

    name: str
    kind: str = Field(description='as kubectl takes it: "DPU", "dpus", or "<apiVersion>/<kind>"')
    namespace: str | None = Field(default=None, description="none = every namespace")
    selector: str | dict[str, str] | None = Field(
        default=None, description='a label selector ("app=x,tier in (a,b)") or matchLabels'
    )
    names: list[str] | None = None
    fields: dict[str, str | bool | int] | None = Field(
        default=None,
        description='only objects whose wire fields have these values, e.g. {"spec.bfb": "bf-bundle-2"}; a map '
                    'field takes one key after it: {"status.dpuStatistics.Ready": 4}',
    )
    phase: str | None = None
    condition: str | None = Field(default=None, description='"Ready=True" (a bare type means =True)')
    count: Count = "all"
    within: Seconds
    after: StepRef | None = None
    store: str = "host"

    @field_validator("condition")
    @classmethod
    def _condition(cls, v: str | None) -> str | None:
        if v is not None and not _CONDITION.match(v):
            raise ValueError(f'invalid condition {v!r}: write "<Type>=<True|False|Unknown>", e.g. "Ready=True"')
        return v

    @field_validator("selector")
    @classmethod
    def _selector(cls, v: str | dict[str, str] | None) -> str | dict[str, str] | None:
        if v is not None:
            try:
                compile_label_selector(v)
            except ApiError as e:
                raise ValueError(f"invalid label selector: {e.message}") from None
        return v

    @model_validator(mode="after")
    def _phase_or_condition(self) -> AwaitSpec:
        if self.phase is not None and self.condition is not None:
            raise ValueError("give phase or condition, not both")
        return self

    def condition_parts(self) -> tuple[str, str] | None:
        if self.condition is None:
            return None
        ctype, _, status = self.condition.partition("=")
        return ctype, status or "True"


InvariantType = Annotated[
    str,
    Field(description="maxUnavailable | singleFlash | noLeftovers | a registered custom name | module:function"),
]


class InvariantSpec(Model):
    """Something that must hold after every store event (noLeftovers: by a deadline after a step)."""

    name: str
    type: InvariantType
    params: dict[str, Any] = Field(default_factory=dict)
    after: StepRef | None = Field(default=None, description="checked from this step on (noLeftovers: required)")
    within: Seconds | None = Field(default=None, description="noLeftovers: the deadline after `after`")


# --- packet traces (dpf_sim.servicechain) -----------------------------------------------------------------


def _trace_endpoint(value: Any) -> Any:
    """"p0" or "br-sfc:p0" is a port (optionally on a bridge); a mapping names a port or a pod's interface."""
    if isinstance(value, str):
        bridge, _, port = value.rpartition(":")
        return {"port": port, **({"bridge": bridge} if bridge else {})}
    return value


class TraceEndpoint(Model):
    """An OVS port of the node, or the port of a pod's interface on that node (its SF representor)."""

    port: str | None = None
    bridge: str | None = None
    pod: dict[str, str] | str | None = Field(default=None, description="the pod's labels (matchLabels) or its name")
    namespace: str | None = None
    interface: str | None = Field(default=None, description="the pod's interface (the Multus network's `interface`)")

    @model_validator(mode="after")
    def _port_or_pod(self) -> TraceEndpoint:
        if (self.port is None) == (self.pod is None):
            raise ValueError("give exactly one of port, pod")
        if self.pod is not None and self.bridge is not None:
            raise ValueError("bridge goes with port, not pod")
        return self


TraceEndpointIn = Annotated[TraceEndpoint, BeforeValidator(_trace_endpoint)]


class TracePacket(Model):
    """The packet's headers (dpf_sim.ovs.Packet); eth_type defaults to IPv4 when an IP field is given."""

    eth_src: str = "02:00:00:00:00:01"
    eth_dst: str = "ff:ff:ff:ff:ff:ff"
    eth_type: int | None = None
    vlan: int | None = Field(default=None, ge=0, le=4095)
    vlan_pcp: int = Field(default=0, ge=0, le=7)
    ip_src: str | None = None
    ip_dst: str | None = None
    ip_proto: int | None = Field(default=None, ge=0, le=255)
    tp_src: int = Field(default=0, ge=0, le=65535)
    tp_dst: int = Field(default=0, ge=0, le=65535)
    size: int = Field(default=64, ge=14)

    @field_validator("eth_src", "eth_dst")
    @classmethod
    def _mac(cls, v: str) -> str:
        if not re.fullmatch(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}", v):
            raise ValueError(f'invalid MAC address "{v}" (write e.g. 02:00:00:00:00:01)')
        return v.lower()

    @field_validator("ip_src", "ip_dst")
    @classmethod
    def _ip(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", v):
            raise ValueError(f'invalid IPv4 address "{v}"')
        return v


class TraceExpect(Model):
    """What must happen to the packet on every traced node (each given part is checked)."""

    to: list[TraceEndpointIn] | None = Field(
        default=None, description="exactly where it leaves the node (ports or pod interfaces; order ignored)"
    )
    drop: bool | None = Field(default=None, description="true: it leaves through no port")
    via: list[str] = Field(default_factory=list, description="DPUServiceChains (or ServiceChains) whose flows it hits")
    rewrites: dict[str, Any] | None = Field(
        default=None, description="exactly these header changes, new values by packet field ({} = none)"
    )


class TraceSpec(Model):
    """Inject a packet at a port of DPU nodes at a simulated time and check where it goes."""

    name: str
    after: StepRef | None = None
    at: Seconds = Field(default=0.0, description="when, after the `after` step (or the start)")
    store: str | None = Field(default=None, description='the DPU cluster "<namespace>/<name>"; default every one')
    nodes: Count | list[str] = Field(default="all", description='"all", the first N nodes by name, or names')
    namespace: str = Field(default="dpf-operator-system", description="of the chains in `via` and of pods")
    from_: TraceEndpointIn = Field(alias="from")
    packet: TracePacket = Field(default_factory=TracePacket)
    expect: TraceExpect
    side_effects: bool = Field(default=True, description="a real packet (learning, counters); false: ofproto/trace only")

    @property
    def within(self) -> float | None:
        return None


class Expectation(Model):
    await_: AwaitSpec | None = Field(default=None, alias="await")
    invariant: InvariantSpec | None = None
    trace: TraceSpec | None = None

    @model_validator(mode="after")
    def _one(self) -> Expectation:
        if sum(x is not None for x in (self.await_, self.invariant, self.trace)) != 1:
            raise ValueError("give exactly one of await, invariant, trace")
        return self

    @property
    def spec(self) -> AwaitSpec | InvariantSpec | TraceSpec:
        spec = self.await_ or self.invariant or self.trace
        assert spec is not None
        return spec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def after(self) -> int | str | None:
        return self.spec.after


class CostSpec(Model):
    """dpf_sim.engine.CostModel: virtual seconds a reconcile costs, plus per store write."""

    reconcile: Seconds = 0.002
    per_write: Seconds = 0.003
    per_controller: dict[str, Seconds] = Field(default_factory=dict)


class Scenario(Model):
    """A twin experiment: a fleet, a timeline of actions, and what must hold."""

    name: str | None = Field(default=None, description="default: the file name without extension")
    description: str = ""
    seed: int = 0
    epoch: str = Field(default=DEFAULT_EPOCH, description="RFC 3339 wall time of t=0")
    until: Seconds | None = Field(
        default=None, description="end of the run; default: once every await is decided and the last step ran"
    )
    fleet: dict[str, Any] = Field(default_factory=dict, description="dpf_sim.fleet.FleetSpec (camelCase or snake_case)")
    models: dict[str, Any] = Field(default_factory=dict, description="model parameter overrides, by model")
    cost: CostSpec | None = None
    keep_log: bool = Field(default=True, description="keep every event log line in memory (off for huge fleets)")
    record_events: bool = Field(default=True, description="write core/v1 Events into the stores")
    attachments: list[str] = Field(
        default_factory=list, description='twin worlds wired in after provisioning, e.g. ["servicechain"]'
    )
    timeline: list[Step] = Field(default_factory=list)
    expect: list[Expectation] = Field(default_factory=list)

    @field_validator("epoch")
    @classmethod
    def _epoch(cls, v: str) -> str:
        try:
            parse_rfc3339(v)
        except (ValueError, TypeError):
            raise ValueError(f'invalid RFC 3339 time "{v}" (write e.g. 2025-01-01T00:00:00Z)') from None
        return v

    @model_validator(mode="after")
    def _unique_names(self, info: ValidationInfo) -> Scenario:
        if info.context and info.context.get(_NAMES_CHECKED_LATER):
            return self  # load_scenario_text reports each duplicate at its own line, with the other problems
        seen: set[str] = set()
        for e in self.expect:
            if e.name in seen:
                raise ValueError(f'expectation name "{e.name}" is used twice')
            seen.add(e.name)
        steps = [s.name for s in self.timeline if s.name is not None]
        dup = sorted({n for n in steps if steps.count(n) > 1})
        if dup:
            raise ValueError(f"step name(s) used twice: {', '.join(dup)}")
        return self


def to_wire(attr: str) -> str:
    head, *rest = attr.split("_")
    return head + "".join(p.title() for p in rest)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file (what `dpf scenario schema` prints)."""
    schema = Scenario.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "dpf-twin scenario"
    return schema


# --- YAML with line numbers --------------------------------------------------------------------------------


@dataclass
class _Doc:
    data: Any
    lines: dict[FieldPath, int]  # path -> 1-based line of its key (or of the item, for list entries)
    duplicates: list[tuple[FieldPath, int]]




def _compose(text: str) -> tuple[yaml.Node | None, yaml.SafeLoader]:
    loader = KubeYamlLoader(text)
    return loader.get_single_node(), loader


class _RecursiveAlias(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def _index(node: yaml.Node, path: FieldPath, lines: dict[FieldPath, int], dups: list[tuple[FieldPath, int]],
           visiting: frozenset[int] = frozenset()) -> None:
    if id(node) in visiting:
        # `x: &a [*a]`: an alias inside its own anchor. Constructing it would recurse forever.
        raise _RecursiveAlias(node.start_mark.line + 1)
    visiting = visiting | {id(node)}
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark.line)
            p = (*path, key)
            if key in seen:
                dups.append((p, key_node.start_mark.line + 1))
            seen.add(key)
            lines[p] = key_node.start_mark.line + 1
            _index(value_node, p, lines, dups, visiting)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            p = (*path, i)
            lines[p] = item.start_mark.line + 1
            _index(item, p, lines, dups, visiting)


def _load_yaml(text: str) -> _Doc:
    node, loader = _compose(text)
    try:
        if node is None:
            return _Doc(None, {}, [])
        lines: dict[FieldPath, int] = {(): node.start_mark.line + 1}
        dups: list[tuple[FieldPath, int]] = []
        _index(node, (), lines, dups)
        return _Doc(loader.construct_document(node), lines, dups)
    finally:
        loader.dispose()


def format_path(path: FieldPath) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "<root>"


def _line_of(lines: Mapping[FieldPath, int], path: FieldPath) -> int:
    """The line of the deepest part of `path` present in the file (a missing field points at its parent)."""
    for n in range(len(path), -1, -1):
        line = lines.get(path[:n])
        if line is not None:
            return line
    return 1


def _resolve_loc(raw: Any, loc: tuple[int | str, ...]) -> tuple[FieldPath, bool]:
    """A pydantic error loc -> the path through the input it names; union member tags and validator names
    in the loc are skipped because they name no input key. The flag says whether the path exists."""
    path: list[PathPart] = []
    node = raw
    for step in loc:
        in_map = isinstance(node, Mapping) and isinstance(step, str) and step in node
        in_list = isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)
        if in_map or in_list:
            path.append(step)
            node = node[step]
        elif isinstance(node, Mapping) and isinstance(step, str) and not _is_tag(step):
            path.append(step)
            return tuple(path), False
    return tuple(path), True


def _is_tag(step: str) -> bool:
    return (
        step.startswith(("function-", "json-or-python", "literal[", "list[", "dict[", "nullable[", "union["))
        or step in ("int", "str", "bool", "float", "list", "dict", "none", "tagged-union", "is-instance")
        or step[:1].isupper()  # model names in union locs ("ApplySource")
    )


def _message(e: Mapping[str, Any], found: bool) -> str:
    etype = e["type"]
    if etype == "missing":
        return "required field"
    if etype == "extra_forbidden":
        return "unknown field"
    msg = str(e["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    if etype in ("literal_error", "enum") and found:
        return f"unsupported value {e.get('input')!r}: {msg[0].lower() + msg[1:]}"
    return msg


@dataclass
class LoadedScenario:
    """A validated scenario plus what the loader resolved: the manifests of each apply step, the file."""

    scenario: Scenario
    path: Path | None
    # Per timeline index: the raw manifests the apply step applies, in order (files read and decoded).
    manifests: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    lines: dict[FieldPath, int] = field(default_factory=dict)
    # Per timeline index, parallel to `manifests`: `<file>:<line>` where each manifest starts (the scenario
    # file for inline ones, the manifest file for `file:` ones), so a refused apply points at its document.
    manifest_origins: dict[int, list[str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        if self.scenario.name:
            return self.scenario.name
        return self.path.stem if self.path is not None else "scenario"

    def step_index(self, ref: int | str) -> int:
        if isinstance(ref, int):
            return ref
        return next(i for i, s in enumerate(self.scenario.timeline) if s.name == ref)

    def step_label(self, index: int) -> str:
        step = self.scenario.timeline[index]
        return f"step {index}" + (f" ({step.name})" if step.name else "")

    def manifest_origin(self, index: int, k: int) -> str | None:
        """`<file>:<line>` of the `k`-th manifest step `index` applies (None for a hand-built LoadedScenario)."""
        origins = self.manifest_origins.get(index)
        return origins[k] if origins is not None and 0 <= k < len(origins) else None

    def where(self, path: FieldPath) -> str:
        """`<file>:<line>` of a field of the scenario, for messages found after loading."""
        return f"{self.path or '<scenario>'}:{_line_of(self.lines, path)}"


class _Problems:
    def __init__(self, label: str, lines: Mapping[FieldPath, int]) -> None:
        self.label = label
        self.lines = lines
        self.items: list[tuple[int, str]] = []

    def add(self, path: FieldPath, message: str, line: int | None = None) -> None:
        at = line if line is not None else _line_of(self.lines, path)
        self.items.append((at, f"{self.label}:{at}: {format_path(path)}: {message}"))

    def raise_if_any(self) -> None:
        if self.items:
            # File order reads best; the sort is stable, so problems on one line keep their order.
            raise ScenarioError([text for _, text in sorted(self.items, key=lambda x: x[0])])


def load_scenario(path: str | Path) -> LoadedScenario:
    """Read, validate and resolve a scenario file; ScenarioError lists every problem with file:line."""
    p = Path(path)
    try:
        text = read_text(p)
    except OSError as e:
        raise ScenarioError([f"{p}: cannot read: {e.strerror or e}"]) from None
    return load_scenario_text(text, path=p)


def load_scenario_text(text: str, path: Path | None = None, base_dir: Path | None = None,
                       lines: Mapping[FieldPath, int] | None = None) -> LoadedScenario:
    """`lines` (a field path's line in the file the text came from) replaces the text's own line numbers:
    a sweep validates each point from re-dumped YAML, and its problems must still point into the user's file."""
    label = str(path) if path is not None else "<scenario>"
    try:
        doc = _load_yaml(text)
    except yaml.YAMLError as yerr:
        mark = getattr(yerr, "problem_mark", None) or getattr(yerr, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise ScenarioError([f"{label}:{line}: YAML syntax error: {getattr(yerr, 'problem', None) or yerr}"]) from None
    except _RecursiveAlias as rec:
        raise ScenarioError([f"{label}:{rec.line}: recursive YAML alias (an anchor that contains itself)"]) from None
    problems = _Problems(label, doc.lines if lines is None else lines)
    for dup_path, line in doc.duplicates:
        problems.add(dup_path, "duplicate key (the later value would silently win)", line)
    if doc.data is None:
        # An empty (or comments-only) file would otherwise run nothing and pass: almost surely the wrong file.
        problems.add((), "the scenario is empty (write at least a fleet, a timeline or an expectation)")
        problems.raise_if_any()
    raw = doc.data
    if not isinstance(raw, Mapping):
        problems.add((), f"a scenario is a mapping, not a {type(raw).__name__}")
        problems.raise_if_any()
    fleet = raw.get("fleet")
    if isinstance(fleet, Mapping):
        # The fleet is free-form in the schema, so its problems are reported alongside the schema's.
        _check_fleet(fleet, problems)
    try:
        scenario = Scenario.model_validate(raw, context={_NAMES_CHECKED_LATER: True})
    except ValidationError as err:
        for e in err.errors(include_url=False):
            epath, found = _resolve_loc(raw, tuple(e["loc"]))
            problems.add(epath, _message(e, found))
        problems.raise_if_any()
        raise AssertionError("unreachable") from None
    loaded = LoadedScenario(scenario, path, lines=dict(doc.lines if lines is None else lines))
    base = base_dir if base_dir is not None else (path.parent if path is not None else Path.cwd())
    _check(loaded, base, problems)
    problems.raise_if_any()
    return loaded


# --- checks that need more than the schema ----------------------------------------------------------------


def _check_names(sc: Scenario, problems: _Problems) -> None:
    """Step and expectation names are unique; each repeat is reported at its own line."""
    first_step: dict[str, int] = {}
    for i, step in enumerate(sc.timeline):
        if step.name is None:
            continue
        if step.name in first_step:
            problems.add(("timeline", i, "name"),
                         f'step name "{step.name}" is used twice (first by timeline[{first_step[step.name]}])')
        else:
            first_step[step.name] = i
    first_exp: dict[str, int] = {}
    for j, exp in enumerate(sc.expect):
        key = "await" if exp.await_ is not None else "invariant" if exp.invariant is not None else "trace"
        if exp.name in first_exp:
            problems.add(("expect", j, key, "name"),
                         f'expectation name "{exp.name}" is used twice (first by expect[{first_exp[exp.name]}])')
        else:
            first_exp[exp.name] = j


def _check(loaded: LoadedScenario, base: Path, problems: _Problems) -> None:
    sc = loaded.scenario
    registry.load_all()
    _check_names(sc, problems)
    names: dict[str, int] = {}
    for i, s in enumerate(sc.timeline):
        if s.name is not None:
            names.setdefault(s.name, i)
    for i, step in enumerate(sc.timeline):
        where: FieldPath = ("timeline", i)
        if step.apply is not None:
            resolved = _resolve_apply(step, where, base, problems)
            loaded.manifests[i] = [doc for doc, _ in resolved]
            loaded.manifest_origins[i] = [origin for _, origin in resolved]
        elif step.patch is not None:
            _check_kind(step.patch.kind, (*where, "patch", "kind"), problems)
        elif step.delete is not None:
            _check_kind(step.delete.kind, (*where, "delete", "kind"), problems)
        elif step.fault is not None:
            if not _twin_can_inject():
                problems.add((*where, "fault"), "fault injection not available (this twin has no Twin.inject)")
            else:
                # An unknown fault type or a bad parameter is the file's error, found before the run starts.
                from .faults import check_fault

                for message in check_fault(step.fault):
                    problems.add((*where, "fault"), message)
    for j, exp in enumerate(sc.expect):
        key = "await" if exp.await_ is not None else "invariant" if exp.invariant is not None else "trace"
        where = ("expect", j, key)
        ref = exp.after
        if ref is not None:
            if isinstance(ref, int) and not 0 <= ref < len(sc.timeline):
                problems.add((*where, "after"), f"no timeline step {ref} (there are {len(sc.timeline)})")
            elif isinstance(ref, str) and ref not in names:
                problems.add((*where, "after"), f'no timeline step named "{ref}"')
        if exp.await_ is not None:
            _check_await(exp.await_, where, problems)
        elif exp.invariant is not None:
            _check_invariant(exp.invariant, where, problems)


def _to_snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def fleet_config(fleet: Mapping[str, Any]) -> dict[str, Any]:
    """The fleet as TwinConfig.fleet takes it: FleetSpec's own (snake_case) field names."""
    return {_to_snake(k) if isinstance(k, str) else k: v for k, v in fleet.items()}


def _check_fleet(fleet: Mapping[str, Any], problems: _Problems) -> None:
    try:
        from .fleet import FleetSpec
    except ImportError:  # the fleet model is optional for loading; the twin validates it again anyway
        return
    snake = fleet_config(fleet)
    wire: dict[Any, Any] = {(_to_snake(k) if isinstance(k, str) else k): k for k in fleet}
    try:
        FleetSpec.model_validate(snake)
    except ValidationError as err:
        for e in err.errors(include_url=False):
            loc = tuple(e["loc"])
            first = wire.get(loc[0], loc[0]) if loc else None
            epath, found = _resolve_loc(fleet, ((first, *loc[1:]) if first is not None else ()))
            problems.add(("fleet", *epath), _message(e, found))


def _check_kind(kind: str, path: FieldPath, problems: _Problems) -> type[KubeObject] | None:
    from .twin import resolve_kind

    try:
        return resolve_kind(kind)
    except ApiError as e:
        problems.add(path, e.message)
        return None


def _twin_can_inject() -> bool:
    from .twin import Twin

    return callable(getattr(Twin, "inject", None))


def field_attrs(cls: type[Any], dotted: str) -> tuple[str, ...] | None:
    """A dotted wire path ("spec.dpuFlavor") -> the Python attribute names leading to it, or None when the
    model has no such field. Walks declared model types only (a dict or list ends the walk)."""
    attrs: list[str] = []
    model: Any = cls
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        fields = getattr(model, "model_fields", None)
        if not fields:
            return None
        found = next((n for n, f in fields.items() if part in (n, f.alias)), None)
        if found is None:
            return None
        attrs.append(found)
        ann = fields[found].annotation
        if _is_map(ann) and i + 1 < len(parts):
            # The rest is one map key (label keys such as `provisioning.dpu.nvidia.com/host` hold dots).
            attrs.append(MAP_KEY_PREFIX + ".".join(parts[i + 1:]))
            return tuple(attrs)
        model = next((t for t in (ann, *typing.get_args(ann)) if isinstance(t, type) and hasattr(t, "model_fields")), None)
    return tuple(attrs)


# Marks a map key in field_attrs' answer: no Python attribute name starts with it.
MAP_KEY_PREFIX = "["


def _is_map(ann: Any) -> bool:
    """A dict field, bare or inside Optional/Annotated (StrMap, dict[str, int] | None)."""
    for t in (ann, *typing.get_args(ann)):
        if t is dict or typing.get_origin(t) is dict:
            return True
        if typing.get_origin(t) is typing.Annotated and _is_map(typing.get_args(t)[0]):
            return True
    return False


def _has_phase(cls: type[KubeObject]) -> bool:
    status = cls.model_fields.get("status")
    return status is not None and "phase" in getattr(status.annotation, "model_fields", {})


def _phase_enum(cls: type[KubeObject]) -> type[enum.Enum] | None:
    status = cls.model_fields.get("status")
    if status is None or not isinstance(status.annotation, type):
        return None
    phase = getattr(status.annotation, "model_fields", {}).get("phase")
    if phase is None:
        return None
    for t in (phase.annotation, *typing.get_args(phase.annotation)):
        if isinstance(t, type) and issubclass(t, enum.Enum):
            return t
    return None


def _check_await(spec: AwaitSpec, where: FieldPath, problems: _Problems) -> None:
    cls = _check_kind(spec.kind, (*where, "kind"), problems)
    if cls is None:
        return
    if spec.namespace is not None and not cls.KIND.namespaced:
        problems.add((*where, "namespace"), f"{cls.KIND.kind} is cluster-scoped")
    if spec.phase is not None:
        phases = _phase_enum(cls)
        if phases is not None and spec.phase not in {str(m.value) for m in phases}:
            allowed = ", ".join(f'"{m.value}"' for m in phases)
            problems.add((*where, "phase"), f'{cls.KIND.kind} has no phase "{spec.phase}" (one of {allowed})')
        elif phases is None and not _has_phase(cls):
            problems.add((*where, "phase"), f"{cls.KIND.kind} has no status.phase")
    for dotted in spec.fields or {}:
        if field_attrs(cls, dotted) is None:
            problems.add((*where, "fields", dotted), f"{cls.KIND.kind} has no field {dotted}")
    if isinstance(spec.count, int) and spec.names is not None and spec.count > len(spec.names):
        problems.add((*where, "count"), f"count {spec.count} is more than the {len(spec.names)} names listed")


def _check_invariant(spec: InvariantSpec, where: FieldPath, problems: _Problems) -> None:
    from .expect import check_invariant_spec

    for rel, message in check_invariant_spec(spec):
        problems.add((*where, *rel), message)


# --- manifests ----------------------------------------------------------------------------------------------


def _resolve_apply(step: Step, where: FieldPath, base: Path, problems: _Problems) -> list[tuple[dict[str, Any], str]]:
    """The manifests an apply step applies, each with the `<file>:<line>` it starts at."""
    out: list[tuple[dict[str, Any], str]] = []
    single = not isinstance(step.apply, list)
    for k, src in enumerate(step.sources()):
        spath: FieldPath = (*where, "apply") if single else (*where, "apply", k)
        docs: list[tuple[dict[str, Any], str]] = []
        if src.manifests is not None:
            for m, doc in enumerate(src.manifests):
                mpath = (*spath, "manifests", m)
                for rel, message in _manifest_problems(doc):
                    problems.add((*mpath, *rel), message)
                docs.append((doc, f"{problems.label}:{_line_of(problems.lines, mpath)}"))
        elif src.file is not None:
            docs = _read_manifest_file(base / src.file, (*spath, "file"), problems)
        if src.namespace is not None:
            docs = _in_namespace(docs, src.namespace, (*spath, "namespace"), problems)
        out.extend(docs)
    return out


def _in_namespace(
    docs: list[tuple[dict[str, Any], str]], namespace: str, ref: FieldPath, problems: _Problems
) -> list[tuple[dict[str, Any], str]]:
    """kubectl apply -n: documents of namespaced kinds without a namespace get `namespace`; one naming another
    namespace is refused with kubectl's message (cluster-scoped kinds are left alone)."""
    out: list[tuple[dict[str, Any], str]] = []
    for doc, origin in docs:
        try:
            namespaced = admission.model_for(doc).KIND.namespaced
        except ApiError:
            namespaced = False  # an unknown kind is reported by the schema check already
        md = doc.get("metadata")
        if namespaced and isinstance(md, Mapping):
            have = md.get("namespace")
            if not have:
                doc = {**doc, "metadata": {**md, "namespace": namespace}}
            elif have != namespace:
                problems.add(ref, f'{origin}: the namespace from the provided object "{have}" does not match the '
                                  f'namespace "{namespace}". You must pass \'--namespace={have}\' to perform this '
                                  "operation.")
        out.append((doc, origin))
    return out


def _read_manifest_file(file: Path, ref: FieldPath, problems: _Problems) -> list[tuple[dict[str, Any], str]]:
    try:
        text = read_text(file)
    except OSError as e:
        problems.add(ref, f"manifest file {file}: {e.strerror or e}")
        return []
    out: list[tuple[dict[str, Any], str]] = []
    loader = KubeYamlLoader(text)
    try:
        number = 0
        while loader.check_node():
            node = loader.get_node()
            number += 1
            if node is None:
                continue
            lines: dict[FieldPath, int] = {(): node.start_mark.line + 1}
            dups: list[tuple[FieldPath, int]] = []
            _index(node, (), lines, dups)
            doc = loader.construct_document(node)
            if doc is None:
                continue
            head = f"manifest {file}: document {number}"
            # The API server's strict field validation refuses a manifest with a key set twice.
            for dup_path, dup_line in dups:
                problems.add(ref, f"{head} (line {dup_line}): {format_path(dup_path)}: duplicate key (the later value would silently win)")
            if not isinstance(doc, Mapping):
                problems.add(ref, f"{head} (line {lines[()]}): not a Kubernetes object")
                continue
            for rel, message in _manifest_problems(doc):
                problems.add(ref, f"{head} (line {_line_of(lines, rel)}): {format_path(rel)}: {message}")
            out.append((dict(doc), f"{file}:{lines[()]}"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        problems.add(ref, f"manifest {file}{line}: YAML syntax error: {getattr(e, 'problem', None) or e}")
    except _RecursiveAlias as rec:
        problems.add(ref, f"manifest {file} (line {rec.line}): recursive YAML alias (an anchor that contains itself)")
    finally:
        loader.dispose()
    return out


def _manifest_problems(doc: Any) -> list[tuple[FieldPath, str]]:
    """Schema problems of one manifest as (path inside the object, message): what the API server's schema
    validation would reject. Webhooks that read other objects run when the step applies it."""
    if not isinstance(doc, Mapping):
        return [((), "not a Kubernetes object")]
    try:
        admission.decode(doc)
    except Invalid as e:
        return [(_split_wire_path(c.field), c.message) for c in e.causes]
    except ApiError as e:
        return [((), e.message)]
    return []


def _split_wire_path(dotted: str) -> FieldPath:
    out: list[PathPart] = []
    if dotted in ("", "<root>"):
        return ()
    for part in dotted.split("."):
        m = re.fullmatch(r"([^\[]*)((?:\[\d+\])*)", part)
        if m is None:
            out.append(part)
            continue
        if m.group(1):
            out.append(m.group(1))
        out.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return tuple(out)
