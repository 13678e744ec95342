"""Optional extras in the tests: skipped where a user left them out, a failure where CI installed them.

``make setup`` (and so ``.ci/run``, which sets ``CI=true``) installs ``.[dev,onnx]``. A test of an optional extra
calls :func:`require_extra` instead of ``pytest.importorskip``: on a user's machine a missing extra skips the
test with the install line in the reason; under ``CI=true`` or ``WBPOSE_REQUIRE_EXTRAS=1`` it fails, so a broken
set-up cannot turn the suite green by skipping what it was meant to test.
"""

from __future__ import annotations

import os
from types import ModuleType

import pytest

__all__ = ["extras_required", "require_extra"]


def extras_required() -> bool:
    """True in CI (``CI=true``) or when ``WBPOSE_REQUIRE_EXTRAS=1``: a missing extra is a failure."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("WBPOSE_REQUIRE_EXTRAS") == "1"


def require_extra(module: str, extra: str) -> ModuleType:
    """Import ``module`` (from the package extra ``extra``); skip without it, or fail where extras are required."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as error:
        reason = f'{module} is not installed (pip install -e ".[{extra}]"): {error}'
    if extras_required():
        pytest.fail(f"{reason}; CI=true / WBPOSE_REQUIRE_EXTRAS=1 require every extra `make setup` installs",
                    pytrace=False)  # fmt: skip
    pytest.skip(reason, allow_module_level=True)
