"""Durations as written on the command line."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lai.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("24h", timedelta(hours=24)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
        (" 2W ", timedelta(weeks=2)),
        ("0s", timedelta(0)),
    ],
)
def test_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "10", "1.5h", "-2d", "1h30m", "2y", "d", "tomorrow"])
def test_refuses_anything_else_with_a_clear_message(text: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_duration(text)
    assert repr(text) in str(err.value) and "90s, 30m, 24h, 30d or 2w" in str(err.value)


def test_too_long_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration("99999999999w")


def test_format_round_trips() -> None:
    for text in ("90s", "30m", "1h", "2d", "2w"):
        assert format_duration(parse_duration(text)) == text
    assert format_duration(timedelta(hours=48)) == "2d"
