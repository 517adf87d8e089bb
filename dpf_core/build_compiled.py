"""`python -m dpf_core.build_compiled [--if-stale | --status]`: compile the core's hot modules with mypyc
(compiled.py says which and why); `--if-stale` only when the build does not match the sources (what `make`
runs); `--status` tells whether this interpreter runs them compiled. Exit 1 when they could not be compiled
(no C compiler or Python headers): everything still runs, as pure Python."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from dpf_core.compiled import MODULES, build, status


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    if args == ["--status"]:
        st = status()
        print(("compiled: " if st.active else "pure Python: ") + st.reason)
        return 0
    if args == ["--if-stale"]:
        st = status(use_env=False)
        if st.active:
            print(f"compiled modules up to date in {st.reason}")
            return 0
    elif args:
        print("usage: python -m dpf_core.build_compiled [--if-stale | --status]", file=sys.stderr)
        return 2
    try:
        out = build()
    except (subprocess.CalledProcessError, OSError, RuntimeError) as e:
        # No compiler or headers: everything still runs, as pure Python.
        print(f"dpf_core.compiled: not compiled ({e}); the pure-Python core runs", file=sys.stderr)
        return 1
    print(f"compiled {len(MODULES)} modules into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
