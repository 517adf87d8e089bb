"""The real-component rule shared by tests/hw and tests/e2e (this directory is on sys.path through its
conftest, the test directories are no packages): a test needing something this machine lacks (Open vSwitch,
network namespaces, kubectl, grpc, a python package) SKIPS with the reason, and FAILS under
DPF_REQUIRE_REAL=1, so CI can never pass by skipping."""

from __future__ import annotations

import os

import pytest

REQUIRE_REAL_ENV = "DPF_REQUIRE_REAL"


def real_required() -> bool:
    return os.environ.get(REQUIRE_REAL_ENV, "") == "1"


def require_real(what: str, available: bool, why: str = "") -> None:
    """Skip (or, under DPF_REQUIRE_REAL=1, fail) the calling test when `what` is not available."""
    if available:
        return
    detail = f"{what} is not available" + (f": {why}" if why else "")
    if real_required():
        pytest.fail(f"{REQUIRE_REAL_ENV}=1 and {detail}", pytrace=False)
    pytest.skip(detail)
