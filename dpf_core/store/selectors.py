"""Label, node and field selectors with apimachinery's semantics, compiled once into fast matchers.

Label selectors come in three spellings (the string form `a=b,c!=d,e in (x,y),f notin (z),g,!h`, a
`LabelSelector` model, a plain match-labels dict); all compile to the same `LabelMatcher`. As in
`labels.Requirement`, `!=` and `notin` also match objects that do not carry the key at all.
Parse errors are `BadRequest`, which is what the API server answers for a bad `labelSelector` query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from dpf_core.api.meta import KubeObject, LabelSelector, NodeSelector, NodeSelectorRequirement
from dpf_core.errors import BadRequest

Operator = Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]

_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
DNS1123_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end "
    "with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


def dns1123_subdomain_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not DNS1123_SUBDOMAIN_RE.match(value):
        errs.append(DNS1123_SUBDOMAIN_MSG)
    return errs


def dns1123_label_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not DNS1123_LABEL_RE.match(value):
        errs.append(DNS1123_LABEL_MSG)
    return errs


def qualified_name_errors(key: str) -> list[str]:
    """validation.IsQualifiedName: `[prefix/]name`, prefix a DNS subdomain, name <= 63 characters."""
    prefix, sep, name = key.rpartition("/")
    errs: list[str] = []
    if sep:
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + e for e in dns1123_subdomain_errors(prefix))
        if prefix.count("/"):
            errs.append("a qualified name must consist of alphanumeric characters, '-', '_' or '.', with an optional DNS subdomain prefix and '/'")
    if not name:
        errs.append("name part must be non-empty")
    else:
        if len(name) > 63:
            errs.append("name part must be no more than 63 characters")
        if not _NAME_RE.match(name):
            errs.append(
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
                "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
            )
    return errs


def label_value_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _VALUE_RE.match(value):
        errs.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
            "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        )
    return errs


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ANDed term. `values` is empty for Exists/DoesNotExist; Gt/Lt compare integers."""

    key: str
    operator: Operator
    values: frozenset[str] = frozenset()
    bound: int = 0

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op == "In":
            v = labels.get(self.key)
            return v is not None and v in self.values
        if op == "NotIn":
            v = labels.get(self.key)
            return v is None or v not in self.values
        if op == "Exists":
            return self.key in labels
        if op == "DoesNotExist":
            return self.key not in labels
        v = labels.get(self.key)
        if v is None:
            return False
        try:
            n = int(v)
        except ValueError:
            return False
        return n > self.bound if op == "Gt" else n < self.bound

    def __str__(self) -> str:
        vals = sorted(self.values)
        if self.operator == "In":
            return f"{self.key}={vals[0]}" if len(vals) == 1 else f"{self.key} in ({','.join(vals)})"
        if self.operator == "NotIn":
            return f"{self.key}!={vals[0]}" if len(vals) == 1 else f"{self.key} notin ({','.join(vals)})"
        if self.operator == "Exists":
            return self.key
        if self.operator == "DoesNotExist":
            return f"!{self.key}"
        return f"{self.key}{'>' if self.operator == 'Gt' else '<'}{self.bound}"


class LabelMatcher:
    """A compiled selector: requirements ANDed. No requirements selects everything."""

    __slots__ = ("_eq", "_rest", "requirements")

    def __init__(self, requirements: Iterable[Requirement]) -> None:
        self.requirements: tuple[Requirement, ...] = tuple(sorted(requirements, key=lambda r: (r.key, r.operator)))
        # Plain equality is by far the most common term; checking it without a method call per term is what
        # keeps a filtered list cheap.
        self._eq = tuple((r.key, next(iter(r.values))) for r in self.requirements if r.operator == "In" and len(r.values) == 1)
        self._rest = tuple(r for r in self.requirements if not (r.operator == "In" and len(r.values) == 1))

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: Mapping[str, str]) -> bool:
        for k, v in self._eq:
            if labels.get(k) != v:
                return False
        return all(r.matches(labels) for r in self._rest)

    __call__ = matches

    def index_terms(self) -> list[tuple[str, frozenset[str] | None]]:
        """Terms an index can answer: (key, values) for In, (key, None) for Exists. The rest only filter."""
        out: list[tuple[str, frozenset[str] | None]] = []
        for r in self.requirements:
            if r.operator == "In":
                out.append((r.key, r.values))
            elif r.operator in ("Exists", "Gt", "Lt"):
                out.append((r.key, None))
        return out

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return f"LabelMatcher({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMatcher) and self.requirements == other.requirements

    def __hash__(self) -> int:
        return hash(self.requirements)


EVERYTHING = LabelMatcher(())


def _bad(message: str) -> BadRequest:
    return BadRequest(f"unable to parse requirement: {message}")


def _check_key(key: str) -> None:
    errs = qualified_name_errors(key)
    if errs:
        raise _bad(f'key: Invalid value: "{key}": {"; ".join(errs)}')


def _check_value(key: str, value: str) -> None:
    errs = label_value_errors(value)
    if errs:
        raise _bad(f'values[0][{key}]: Invalid value: "{value}": {"; ".join(errs)}')


def requirement(key: str, operator: str, values: Iterable[str] = ()) -> Requirement:
    """Build one validated requirement (the checks of labels.NewRequirement)."""
    _check_key(key)
    vals = list(values)
    if operator in ("In", "NotIn"):
        if not vals:
            raise _bad(f"values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty (key {key})")
        for v in vals:
            _check_value(key, v)
        return Requirement(key, operator, frozenset(vals))  # type: ignore[arg-type]
    if operator in ("Exists", "DoesNotExist"):
        if vals:
            raise _bad(f"values: Invalid value: {vals}: values set must be empty for exists and does not exist (key {key})")
        return Requirement(key, operator)  # type: ignore[arg-type]
    if operator in ("Gt", "Lt"):
        if len(vals) != 1:
            raise _bad(f"values: Invalid value: {vals}: for 'Gt', 'Lt' operators, exactly one value is required (key {key})")
        try:
            bound = int(vals[0])
        except ValueError:
            raise _bad(f"values[0]: Invalid value: \"{vals[0]}\": for 'Gt', 'Lt' operators, the value must be an integer (key {key})") from None
        return Requirement(key, operator, frozenset(vals), bound)  # type: ignore[arg-type]
    raise _bad(f'operator: Unsupported value: "{operator}": supported values: "In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"')


# ---- the string form -------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"\s*(==|!=|=|!|\(|\)|,|>|<|[^\s=!(),<>]+)")
_OPERATOR_WORDS = {"in": "In", "notin": "NotIn"}


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    end = len(text.rstrip())
    while pos < end:
        m = _TOKEN_RE.match(text, pos)
        if m is None:  # pragma: no cover - the pattern accepts any non-space run
            raise _bad(f"unexpected character at {pos} in {text!r}")
        tokens.append(m.group(1))
        pos = m.end()
    return tokens


def _parse(text: str) -> LabelMatcher:
    tokens = _tokenize(text)
    reqs: list[Requirement] = []
    i = 0
    n = len(tokens)

    def peek(j: int) -> str | None:
        return tokens[j] if j < n else None

    while i < n:
        tok = tokens[i]
        if tok == "!":
            key = peek(i + 1)
            if key is None or key in "=!(),<>" or key in ("==", "!="):
                raise _bad(f"found '{key or 'EOS'}', expected: identifier after '!'")
            reqs.append(requirement(key, "DoesNotExist"))
            i += 2
        elif tok in ("=", "==", "!=", "(", ")", ",", ">", "<"):
            raise _bad(f"found '{tok}', expected: !, identifier, or 'end of string'")
        else:
            key = tok
            op = peek(i + 1)
            if op is None or op == ",":
                reqs.append(requirement(key, "Exists"))
                i += 1
            elif op in ("=", "==", "!="):
                val = peek(i + 2)
                if val is None or val == ",":
                    value, i = "", i + 2
                elif val in ("=", "==", "!=", "!", "(", ")", ">", "<"):
                    raise _bad(f"found '{val}', expected: identifier for value of '{key}'")
                else:
                    value, i = val, i + 3
                reqs.append(requirement(key, "In" if op != "!=" else "NotIn", [value]))
            elif op in (">", "<"):
                val = peek(i + 2)
                if val is None or val in ("=", "==", "!=", "!", "(", ")", ",", ">", "<"):
                    raise _bad(f"found '{val or 'EOS'}', expected: integer for value of '{key}'")
                reqs.append(requirement(key, "Gt" if op == ">" else "Lt", [val]))
                i += 3
            elif op in _OPERATOR_WORDS:
                if peek(i + 2) != "(":
                    raise _bad(f"found '{peek(i + 2) or 'EOS'}', expected: '(' after '{op}'")
                j = i + 3
                values: list[str] = []
                expect_value = True
                while True:
                    t = peek(j)
                    if t is None:
                        raise _bad(f"found 'EOS', expected: ')' closing the values of '{key}'")
                    if t == ")":
                        if expect_value and values:
                            values.append("")  # "a in (x,)": apimachinery reads the trailing empty value
                        j += 1
                        break
                    if t == ",":
                        if expect_value:
                            values.append("")
                        expect_value = True
                        j += 1
                        continue
                    if t in ("=", "==", "!=", "!", "(", ">", "<") or not expect_value:
                        raise _bad(f"found '{t}', expected: ',' or ')' in the values of '{key}'")
                    values.append(t)
                    expect_value = False
                    j += 1
                reqs.append(requirement(key, _OPERATOR_WORDS[op], values))
                i = j
            else:
                raise _bad(f"found '{op}', expected: in, notin, =, ==, !=, gt, lt")
        if i < n:
            if tokens[i] != ",":
                raise _bad(f"found '{tokens[i]}', expected: ',' or 'end of string'")
            i += 1
            if i == n:
                raise _bad("found 'EOS', expected: !, identifier after ','")
    return LabelMatcher(reqs)


_CACHE: dict[object, LabelMatcher] = {}
_CACHE_LIMIT = 4096


def _cached(key: object, build: LabelMatcher | None = None) -> LabelMatcher | None:
    if build is None:
        return _CACHE.get(key)
    if len(_CACHE) >= _CACHE_LIMIT:
        _CACHE.clear()  # controllers use a handful of selectors; a full cache means someone generates them
    _CACHE[key] = build
    return build


def parse_label_selector(text: str) -> LabelMatcher:
    hit = _cached(text)
    if hit is not None:
        return hit
    built = _parse(text)
    _cached(text, built)
    return built


def from_match_labels(match_labels: Mapping[str, str]) -> LabelMatcher:
    key = ("dict", tuple(sorted(match_labels.items())))
    hit = _cached(key)
    if hit is not None:
        return hit
    built = LabelMatcher(requirement(k, "In", [v]) for k, v in match_labels.items())
    _cached(key, built)
    return built


def from_label_selector(sel: LabelSelector) -> LabelMatcher:
    """metav1.LabelSelectorAsSelector: matchLabels and matchExpressions ANDed; empty selects everything."""
    reqs = [requirement(k, "In", [v]) for k, v in sel.match_labels.items()]
    for e in sel.match_expressions:
        if e.operator in ("Exists", "DoesNotExist") and e.values:
            raise _bad(f"values: Invalid value: {list(e.values)}: values set must be empty for exists and does not exist (key {e.key})")
        reqs.append(requirement(e.key, e.operator, e.values))
    return LabelMatcher(reqs)


def compile_label_selector(sel: LabelSelector | Mapping[str, str] | str | LabelMatcher | None) -> LabelMatcher:
    """Any accepted spelling -> a matcher. None selects everything (the caller decides what nil means)."""
    if sel is None:
        return EVERYTHING
    if isinstance(sel, LabelMatcher):
        return sel
    if isinstance(sel, str):
        return parse_label_selector(sel)
    if isinstance(sel, LabelSelector):
        return from_label_selector(sel)
    if isinstance(sel, Mapping):
        return from_match_labels(sel)
    raise BadRequest(f"unsupported label selector of type {type(sel).__name__}")


def matches_labels(sel: LabelSelector | Mapping[str, str] | str | None, labels: Mapping[str, str]) -> bool:
    return compile_label_selector(sel).matches(labels)


# ---- node selectors ----------------------------------------------------------------------------------------


def _node_requirement_matches(r: NodeSelectorRequirement, values: Mapping[str, str]) -> bool:
    op = r.operator
    v = values.get(r.key)
    if op == "In":
        return v is not None and v in r.values
    if op == "NotIn":
        return v is None or v not in r.values
    if op == "Exists":
        return v is not None
    if op == "DoesNotExist":
        return v is None
    # Gt/Lt: one integer value on both sides, otherwise the term does not match (nodeaffinity semantics).
    if v is None or len(r.values) != 1:
        return False
    try:
        have, bound = int(v), int(r.values[0])
    except ValueError:
        return False
    return have > bound if op == "Gt" else have < bound


def node_selector_matches(
    selector: NodeSelector | None, labels: Mapping[str, str], fields: Mapping[str, str] | None = None
) -> bool:
    """corev1 NodeSelector: terms ORed, each term's expressions and fields ANDed.

    A None selector matches every node; a selector with no terms, or a term with neither expressions
    nor fields, matches nothing (component-helpers' nodeaffinity). `fields` carries e.g. `metadata.name`.
    """
    if selector is None:
        return True
    flds = fields or {}
    for term in selector.node_selector_terms:
        if not term.match_expressions and not term.match_fields:
            continue
        if all(_node_requirement_matches(r, labels) for r in term.match_expressions) and all(
            _node_requirement_matches(r, flds) for r in term.match_fields
        ):
            return True
    return False


# ---- field selectors ---------------------------------------------------------------------------------------

SUPPORTED_FIELDS = ("metadata.name", "metadata.namespace")


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    field: str
    equals: bool
    value: str


class FieldMatcher:
    """A compiled field selector over the fields every custom resource supports."""

    __slots__ = ("requirements",)

    def __init__(self, requirements: Iterable[FieldRequirement]) -> None:
        self.requirements = tuple(requirements)

    def matches(self, obj: KubeObject) -> bool:
        md = obj.metadata
        for r in self.requirements:
            have = (md.name or "") if r.field == "metadata.name" else (md.namespace or "")
            if (have == r.value) != r.equals:
                return False
        return True

    __call__ = matches

    def equal_value(self, field: str) -> str | None:
        """The value an equality term pins `field` to (lets the store go to the key directly)."""
        for r in self.requirements:
            if r.field == field and r.equals:
                return r.value
        return None


def _field_req(field: str, equals: bool, value: str) -> FieldRequirement:
    if field not in SUPPORTED_FIELDS:
        raise BadRequest(f'field label not supported: {field}')
    return FieldRequirement(field, equals, value)


def compile_field_selector(sel: Mapping[str, str] | str | None) -> FieldMatcher | None:
    """`{"metadata.name": "x"}` (equality) or the string form `metadata.name=x,metadata.namespace!=y`."""
    if sel is None:
        return None
    reqs: list[FieldRequirement] = []
    if isinstance(sel, str):
        for part in (p.strip() for p in sel.split(",")):
            if not part:
                continue
            if "!=" in part:
                f, _, v = part.partition("!=")
                reqs.append(_field_req(f.strip(), False, v.strip()))
            elif "==" in part:
                f, _, v = part.partition("==")
                reqs.append(_field_req(f.strip(), True, v.strip()))
            elif "=" in part:
                f, _, v = part.partition("=")
                reqs.append(_field_req(f.strip(), True, v.strip()))
            else:
                raise BadRequest(f'invalid selector: \'{sel}\'; can\'t understand \'{part}\'')
    else:
        for f, v in sel.items():
            reqs.append(_field_req(f, True, v))
    return FieldMatcher(reqs)
