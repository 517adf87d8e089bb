"""YAML as Kubernetes clients read it.

kubectl and sigs.k8s.io/yaml turn YAML into JSON through go-yaml v2 decoding into interface{}, which has no
timestamp type: a scalar that looks like a YAML 1.1 timestamp stays the string it is written as. PyYAML's
SafeLoader would make it a date, or crash on one it cannot build: a DPU's PCI label value `0000-04-00` in a
dpuSelector matches the timestamp pattern and has year 0."""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["KubeYamlLoader"]

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
