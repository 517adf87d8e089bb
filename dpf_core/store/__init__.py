"""The object store: the client protocol, the in-memory store with Kubernetes semantics, selectors, patches."""

from dpf_core.errors import ResourceVersionTooLarge

from .memory import FOREGROUND_DELETION, ORPHAN, MemoryStore, SnapshotMutated
from .patch import PatchError, json_patch, merge_patch
from .protocol import Client, Listener, PatchType, Propagation, Selector, Watchable, WatchEvent
from .selectors import (
    LabelMatcher,
    compile_field_selector,
    compile_label_selector,
    matches_labels,
    node_selector_matches,
    parse_label_selector,
)

__all__ = [
    "FOREGROUND_DELETION",
    "ORPHAN",
    "Client",
    "LabelMatcher",
    "Listener",
    "MemoryStore",
    "PatchError",
    "PatchType",
    "Propagation",
    "ResourceVersionTooLarge",
    "Selector",
    "SnapshotMutated",
    "WatchEvent",
    "Watchable",
    "compile_field_selector",
    "compile_label_selector",
    "json_patch",
    "matches_labels",
    "merge_patch",
    "node_selector_matches",
    "parse_label_selector",
]
