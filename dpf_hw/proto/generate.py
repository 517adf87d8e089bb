"""Regenerate the checked-in protobuf/gRPC modules from the .proto files next to this script.

Run from anywhere: `python -m dpf_hw.proto.generate`. The output is made lint- and type-check-neutral
(ruff's safe fixes on the stubs, a `# mypy: ignore-errors` header) because it is generated: our own code
gets its types from the .pyi stubs, and nobody edits these files by hand.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent  # imports in the .proto files are spelled from the repository root
MYPY_HEADER = "# mypy: ignore-errors\n"


def main() -> int:
    protos = sorted(p.relative_to(ROOT).as_posix() for p in HERE.glob("*.proto"))
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT), f"--python_out={ROOT}", f"--pyi_out={ROOT}",
         f"--grpc_python_out={ROOT}", *protos],
        check=True,
    )
    for empty in HERE.glob("*_pb2_grpc.py"):
        # Message-only files (types.proto) get a grpc module with no services; it would only be noise.
        if "Stub" not in empty.read_text():
            empty.unlink()
    generated = sorted([*HERE.glob("*_pb2.pyi"), *HERE.glob("*_pb2_grpc.py")])
    subprocess.run([sys.executable, "-m", "ruff", "check", "-q", "--fix", "--exit-zero", *map(str, generated)],
                   check=True)
    for path in generated:
        text = path.read_text()
        if not text.startswith(MYPY_HEADER):
            path.write_text(MYPY_HEADER + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
