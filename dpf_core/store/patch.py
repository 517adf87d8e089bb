"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902) on wire dicts.

Pure functions on JSON values; the store turns `PatchError` into the API error the API server would
answer: a patch that cannot be read is 400 BadRequest, one that cannot be applied (missing path, failed
`test`) is 422 Invalid naming the path. "strategic" patches are applied as merge patches: DPF's kinds are
CRDs, and the API server itself refuses strategic merge patch for custom resources, so a caller who
needs list merging must send a JSON patch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


class PatchError(ValueError):
    """`malformed` = the patch document itself is wrong (400); otherwise applying it failed (422)."""

    def __init__(self, message: str, path: str = "", *, malformed: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.malformed = malformed


def deep_copy(value: Any) -> Any:
    """Copy a JSON value (dicts, lists, scalars): several times faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [deep_copy(v) for v in value]
    return value


def json_equal(a: Any, b: Any) -> bool:
    """RFC 6902 `test` equality: numbers by value, but true is not 1 and "1" is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def load_patch(patch: Any) -> Any:
    """Accept a parsed patch or its JSON text (str/bytes)."""
    if isinstance(patch, bytes | bytearray):
        patch = patch.decode()
    if isinstance(patch, str):
        try:
            return json.loads(patch)
        except json.JSONDecodeError as e:
            raise PatchError(f"invalid JSON in patch: {e}", malformed=True) from None
    return patch


# ---- RFC 7386 ----------------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply a merge patch. Neither argument is modified; untouched subtrees of `target` are shared."""
    if not isinstance(patch, Mapping):
        return deep_copy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def create_merge_patch(original: Any, modified: Any) -> Any:
    """The merge patch that turns `original` into `modified` (for clients that compute a patch from two copies)."""
    if not isinstance(original, Mapping) or not isinstance(modified, Mapping):
        return deep_copy(modified)
    out: dict[str, Any] = {}
    for k in original:
        if k not in modified:
            out[k] = None
    for k, v in modified.items():
        if k not in original:
            out[k] = deep_copy(v)
        elif isinstance(v, Mapping) and isinstance(original[k], Mapping):
            sub = create_merge_patch(original[k], v)
            if sub:
                out[k] = sub
        elif not json_equal(original[k], v):
            out[k] = deep_copy(v)
    return out


# ---- RFC 6901 / 6902 ---------------------------------------------------------------------------------------


def escape_token(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def parse_pointer(pointer: str) -> list[str]:
    """`/a/b~1c/0` -> ["a", "b/c", "0"]; "" is the whole document."""
    if not isinstance(pointer, str):
        raise PatchError(f"JSON pointer must be a string, got {type(pointer).__name__}", malformed=True)
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f'JSON pointer "{pointer}" must start with "/"', pointer, malformed=True)
    tokens = pointer[1:].split("/")
    out = []
    for t in tokens:
        i = t.find("~")
        while i != -1:
            if i + 1 >= len(t) or t[i + 1] not in "01":
                raise PatchError(f'JSON pointer "{pointer}" has an invalid escape "~" (only ~0 and ~1)', pointer, malformed=True)
            i = t.find("~", i + 2)
        # ~1 first, then ~0: "~01" must become "~1", not "/".
        out.append(t.replace("~1", "/").replace("~0", "~"))
    return out


def _index(token: str, length: int, pointer: str, *, allow_end: bool) -> int:
    if token == "-":
        if allow_end:
            return length
        raise PatchError(f'index "-" refers past the end of the array at "{pointer}"', pointer)
    if not token.isdigit() or not token.isascii() or (len(token) > 1 and token[0] == "0"):
        raise PatchError(f'"{token}" is not a valid array index at "{pointer}"', pointer)
    idx = int(token)
    limit = length if allow_end else length - 1
    if idx > limit:
        raise PatchError(f'array index {idx} out of bounds (length {length}) at "{pointer}"', pointer)
    return idx


def _resolve(doc: Any, tokens: list[str], pointer: str) -> Any:
    node = doc
    for t in tokens:
        if isinstance(node, dict):
            if t not in node:
                raise PatchError(f'path "{pointer}" does not exist', pointer)
            node = node[t]
        elif isinstance(node, list):
            node = node[_index(t, len(node), pointer, allow_end=False)]
        else:
            raise PatchError(f'path "{pointer}" does not exist', pointer)
    return node


def get_pointer(doc: Any, pointer: str) -> Any:
    return _resolve(doc, parse_pointer(pointer), pointer)


def _add(doc: Any, tokens: list[str], value: Any, pointer: str) -> Any:
    if not tokens:
        return value
    parent = _resolve(doc, tokens[:-1], pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(last, len(parent), pointer, allow_end=True), value)
    else:
        raise PatchError(f'path "{pointer}" does not exist: its parent is not an object or array', pointer)
    return doc


def _remove(doc: Any, tokens: list[str], pointer: str) -> tuple[Any, Any]:
    if not tokens:
        return None, doc
    parent = _resolve(doc, tokens[:-1], pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f'path "{pointer}" does not exist', pointer)
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(last, len(parent), pointer, allow_end=False))
    raise PatchError(f'path "{pointer}" does not exist', pointer)


_REQUIRED = {
    "add": ("path", "value"),
    "remove": ("path",),
    "replace": ("path", "value"),
    "move": ("from", "path"),
    "copy": ("from", "path"),
    "test": ("path", "value"),
}


def validate_json_patch(ops: Any) -> list[Mapping[str, Any]]:
    """Check the shape of every operation before applying any (a malformed patch is a 400)."""
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be an array of operations", malformed=True)
    for i, op in enumerate(ops):
        if not isinstance(op, Mapping):
            raise PatchError(f"operation {i} is not an object", malformed=True)
        name = op.get("op")
        if not isinstance(name, str) or name not in _REQUIRED:  # an unhashable name must not raise TypeError
            raise PatchError(f'operation {i}: unsupported op "{name}"', malformed=True)
        for k in _REQUIRED[name]:
            if k not in op:
                raise PatchError(f'operation {i} ("{name}") is missing "{k}"', str(op.get("path", "")), malformed=True)
        for k in ("path", "from"):
            if k in op:
                parse_pointer(op[k])
    return ops


def json_patch(doc: Any, ops: Sequence[Mapping[str, Any]] | Any, *, in_place: bool = False) -> Any:
    """Apply an RFC 6902 patch; all operations or none (the input is left untouched unless in_place)."""
    checked = validate_json_patch(load_patch(ops))
    if not in_place:
        doc = deep_copy(doc)
    for op in checked:
        name = op["op"]
        pointer = op["path"]
        tokens = parse_pointer(pointer)
        if name == "add":
            doc = _add(doc, tokens, deep_copy(op["value"]), pointer)
        elif name == "remove":
            doc, _ = _remove(doc, tokens, pointer)
        elif name == "replace":
            _resolve(doc, tokens, pointer)
            doc, _ = _remove(doc, tokens, pointer)
            doc = _add(doc, tokens, deep_copy(op["value"]), pointer)
        elif name == "test":
            have = _resolve(doc, tokens, pointer)
            if not json_equal(have, op["value"]):
                raise PatchError(
                    f'testing value {pointer} failed: have {json.dumps(have, sort_keys=True)}, '
                    f'want {json.dumps(op["value"], sort_keys=True)}',
                    pointer,
                )
        else:
            source = op["from"]
            src_tokens = parse_pointer(source)
            if name == "move":
                if tokens[: len(src_tokens)] == src_tokens and len(tokens) > len(src_tokens):
                    raise PatchError(f'cannot move "{source}" into its own child "{pointer}"', pointer)
                doc, value = _remove(doc, src_tokens, source)
            else:
                value = deep_copy(_resolve(doc, src_tokens, source))
            doc = _add(doc, tokens, value, pointer)
    return doc
