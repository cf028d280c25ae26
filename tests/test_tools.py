"""tests/tools.py: a missing system tool skips a test with its reason, and fails it under CI."""

from __future__ import annotations

import pytest

from tests.tools import find_tool, require_tool

MISSING = ("lai-no-such-tool", "apt-get install lai-no-such-tool")


def test_a_missing_tool_skips_with_its_reason_and_install_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"lai-no-such-tool is not installed "
                       r"\(apt-get install lai-no-such-tool; \.ci/run installs it\)"):
        require_tool(*MISSING)


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_a_missing_tool_fails_under_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="CI must run this test"):
        require_tool(*MISSING)


def test_ci_false_is_not_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        require_tool(*MISSING)


def test_a_present_tool_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert require_tool("sh", "") == find_tool("sh")
