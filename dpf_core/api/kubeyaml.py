"""YAML as Kubernetes clients read it.

kubectl and sigs.k8s.io/yaml turn YAML into JSON through go-yaml v2 decoding into interface{}, which has no
timestamp type: a scalar that looks like a YAML 1.1 timestamp stays the string it is written as. PyYAML's
SafeLoader would make it a date, or crash on one it cannot build: a DPU's PCI label value `0000-04-00` in a
dpuSelector matches the timestamp pattern and has year 0."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["KubeYamlLoader", "read_text"]

TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class KubeYamlLoader(yaml.SafeLoader):
    """SafeLoader without timestamps: implicit ones resolve as strings, an explicit `!!timestamp` is its text."""


KubeYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _timestamp_as_written(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    assert isinstance(node, yaml.ScalarNode)
    return loader.construct_scalar(node)


KubeYamlLoader.add_constructor(TIMESTAMP_TAG, _timestamp_as_written)


def read_text(path: Path) -> str:
    """A YAML file's text; OSError (with strerror) when it cannot be read or is not UTF-8 text."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        # A binary or Latin-1 file: say where, as a YAML parser would, rather than a decoder's traceback.
        line = data.count(b"\n", 0, e.start) + 1
        raise OSError(0, f"not UTF-8 text (byte 0x{data[e.start]:02x} on line {line})") from None
