"""helpers.extras.require_extra: a missing optional extra skips on a user's machine and fails in CI."""

from __future__ import annotations

import pytest

from helpers.extras import extras_required, require_extra

MISSING = "wbpose_no_such_module_for_tests"


CASES = [({}, False), ({"CI": "true"}, True), ({"WBPOSE_REQUIRE_EXTRAS": "1"}, True), ({"CI": "false"}, False)]


@pytest.mark.parametrize(("env", "required"), CASES)
def test_missing_extra_skips_or_fails(monkeypatch, env: dict[str, str], required: bool) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("WBPOSE_REQUIRE_EXTRAS", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert extras_required() is required
    outcome = pytest.fail.Exception if required else pytest.skip.Exception
    with pytest.raises(outcome, match=rf'{MISSING} is not installed \(pip install -e "\.\[onnx\]"\)'):
        require_extra(MISSING, "onnx")


def test_present_extra_is_returned() -> None:
    assert require_extra("json", "dev").dumps([1]) == "[1]"
