"""The core's hottest modules compiled with mypyc, used only when the build matches the sources exactly.

A fleet run spends most of its time in the store's write path and the runtime's queues (docs/performance.md).
These modules are already `mypy --strict` clean, which is what mypyc needs to compile them to C; compiled, a
run takes ~10% less CPU with the same results to the byte (tests/unit/test_compiled.py compares event logs).

- `python -m dpf_core.build_compiled` (run by `make compiled`) compiles `MODULES` as one mypyc group into
  `build/mypyc/<SOABI>/`, beside the sources, never into them, and records each source's sha256.
- Importing `dpf_core` calls `install()`: when every recorded hash matches its source as it is now, a finder
  placed first on `sys.meta_path` loads those modules from the build. A source edited since the build, a
  build for another interpreter, no build at all, or `DPF_COMPILED=0` in the environment: the pure-Python
  sources run. All or none: the group's modules call each other natively, so one stale module rules out all.

Compiled modules are closed for monkeypatching (their classes are native): tests patch a wrapper or a subclass.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

__all__ = ["MODULES", "Status", "build", "install", "status"]

# What a fleet run's profile puts on top, compiled as one group. dpf_core.api holds pydantic models, which mypyc
# cannot compile; compiled, the DPU and DPUSet controllers gained nothing measurable (their time is pydantic
# attribute access and model calls either way); store/selectors.py behaved differently compiled.
MODULES: tuple[str, ...] = (
    "dpf_core.store.compact",
    "dpf_core.store.memory",
    "dpf_core.runtime.workqueue",
    "dpf_core.runtime.controller",
)

ENV = "DPF_COMPILED"
_PACKAGE = Path(__file__).resolve().parent
_MANIFEST = "manifest.json"


def build_dir(root: Path | None = None) -> Path:
    """Where this interpreter's build lives: one directory per ABI, so two Pythons never share one."""
    base = root if root is not None else _PACKAGE.parent
    return base / "build" / "mypyc" / str(sysconfig.get_config_var("SOABI") or sys.implementation.cache_tag)


def _source(module: str, package: Path) -> Path:
    return package.parent.joinpath(*module.split(".")).with_suffix(".py")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Status:
    active: bool
    reason: str  # why not, or where from
    paths: dict[str, Path]  # module name -> extension file, when usable


def status(package: Path = _PACKAGE, out: Path | None = None, *, use_env: bool = True) -> Status:
    """Whether the build in `out` (default: build_dir()) may stand in for the sources under `package`
    (`use_env`: and DPF_COMPILED does not say 0)."""
    if use_env and os.environ.get(ENV, "1") == "0":
        return Status(False, f"{ENV}=0", {})
    where = out if out is not None else build_dir(package.parent)
    try:
        manifest = json.loads((where / _MANIFEST).read_text())
    except FileNotFoundError:
        return Status(False, f"no build in {where}", {})
    except (OSError, ValueError) as e:
        return Status(False, f"unreadable {where / _MANIFEST}: {e}", {})
    paths: dict[str, Path] = {}
    for module, entry in manifest.get("modules", {}).items():
        src = _source(module, package)
        if not src.is_file() or _digest(src) != entry["sha256"]:
            return Status(False, f"{src} changed since the build (run `make compiled`)", {})
        paths[module] = where / entry["file"]
    if set(paths) != set(MODULES):
        return Status(False, "the build compiled other modules than MODULES lists", {})
    group = manifest.get("group")
    if group:
        paths[group["name"]] = where / group["file"]
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        return Status(False, f"missing from the build: {', '.join(missing)}", {})
    return Status(True, str(where), paths)


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths

    def find_spec(self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None) -> ModuleSpec | None:
        file = self.paths.get(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


_installed: Status | None = None


def install() -> Status:
    """Serve the compiled modules when the build is usable (idempotent; must run before they are imported)."""
    global _installed
    if _installed is None:
        st = status()
        loaded = [m for m in MODULES if m in sys.modules]
        if st.active and loaded:
            st = Status(False, f"imported before install(): {', '.join(loaded)}", {})
        if st.active:
            sys.meta_path.insert(0, _Finder(st.paths))
        _installed = st
    return _installed


def _mypy_ini(pyproject: Path) -> str:
    """The project's [tool.mypy] settings as a mypy.ini (mypyc type-checks what it compiles with them)."""
    conf = tomllib.loads(pyproject.read_text()).get("tool", {}).get("mypy", {})

    def value(v: object) -> str:
        return ",".join(map(str, v)) if isinstance(v, list) else str(v)

    lines = ["[mypy]", *(f"{k} = {value(v)}" for k, v in conf.items() if k != "overrides")]
    for o in conf.get("overrides", []):
        lines.append(f"[mypy-{value(o['module'])}]")
        lines += [f"{k} = {value(v)}" for k, v in o.items() if k != "module"]
    return "\n".join(lines) + "\n"


def build(root: Path | None = None, python: str = sys.executable) -> Path:
    """Compile MODULES from a staged copy of the package (mypyc writes its output beside what it compiles)
    and record the sources' hashes. Returns the build directory."""
    base = root if root is not None else _PACKAGE.parent
    package = base / "dpf_core"
    out = build_dir(base)
    stage = out.with_name(out.name + ".new")
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(package, stage / "dpf_core", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    (stage / "mypy.ini").write_text(_mypy_ini(base / "pyproject.toml"))  # strict, the pydantic plugin
    sources = [str(_source(m, stage / "dpf_core")).removeprefix(f"{stage}/") for m in MODULES]
    subprocess.run([python, "-m", "mypyc", *sources], cwd=stage, check=True, stdout=subprocess.DEVNULL)
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    modules = {}
    for m in MODULES:
        rel = Path(*m.split(".")).with_suffix(suffix)
        if not (stage / rel).is_file():
            raise RuntimeError(f"mypyc did not produce {rel}")
        modules[m] = {"file": str(rel), "sha256": _digest(_source(m, package))}
    groups = list(stage.glob(f"*__mypyc{suffix}"))
    if len(groups) > 1:
        raise RuntimeError(f"more than one mypyc group library in {stage}: {groups}")
    group = {"name": groups[0].name.removesuffix(suffix), "file": groups[0].name} if groups else None
    shutil.rmtree(stage / "build", ignore_errors=True)  # mypyc's C sources and objects
    (stage / _MANIFEST).write_text(json.dumps({"modules": modules, "group": group}, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    stage.rename(out)
    return out
