"""A key's own limits as values: how many requests it may have in flight and queued,
its requests and tokens per minute, and its budgets per period. Nothing here touches the
database; the checks against what the key has used are in :mod:`lai.store.keyusage`.

Budgets are in USD per UTC calendar period: ``day`` (from 00:00 UTC), ``week`` (from
Monday 00:00 UTC) or ``month`` (from the 1st, 00:00 UTC). They are written
``AMOUNT/PERIOD`` (``5.00/day``, ``50/month``) on the command line.

Errors: ``ValueError`` from the parsers, with a message saying what is allowed.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from lai.engine.quota import PERIODS, KeyQuota, budget_text

__all__ = ["PERIODS", "KeyQuota", "budget_text", "parse_budget", "parse_limit",
           "period_end", "period_start", "quota_from_row"]

NONE_WORDS = frozenset({"none", "off", "unlimited", "-"})
"""What clears a limit on ``lai keys update`` (``--rpm none``)."""


def quota_from_row(max_concurrent: int | None, max_queued: int | None, rpm: int | None,
                   tpm: int | None, budgets: dict[str, float] | None) -> KeyQuota:
    """The quota of an ``api_keys`` row (unknown budget periods are ignored)."""
    return KeyQuota(max_concurrent, max_queued, rpm, tpm).with_budgets(
        {p: float(v) for p, v in (budgets or {}).items() if p in PERIODS})


def parse_limit(text: str, flag: str, *, minimum: int = 1) -> int | None:
    """A whole number >= ``minimum`` for ``flag``, or None for ``none``. Raises
    ValueError."""
    value = text.strip().lower()
    if value in NONE_WORDS:
        return None
    try:
        number = int(value)
    except ValueError:
        raise ValueError(
            f"{flag} takes a whole number >= {minimum} or 'none', not {text!r}") from None
    if number < minimum:
        raise ValueError(f"{flag} must be >= {minimum} (or 'none' for no limit), not {number}")
    return number


def parse_budget(text: str, *, label: str = "--budget amount") -> tuple[str, float | None]:
    """``5.00/day`` -> ("day", 5.0); ``none/day`` -> ("day", None). Raises ValueError
    (its message names ``label``)."""
    amount, sep, period = text.strip().lower().partition("/")
    amount = amount.strip().lstrip("$")
    period = period.strip()
    if not sep or period not in PERIODS:
        raise ValueError(
            f"--budget takes AMOUNT/PERIOD with PERIOD one of {', '.join(PERIODS)} "
            f"(e.g. 5.00/day), not {text!r}")
    if amount in NONE_WORDS:
        return period, None
    try:
        usd = float(amount)
    except ValueError:
        raise ValueError(f"{label} must be a number of USD, not {amount!r}") from None
    if not math.isfinite(usd) or usd <= 0:
        raise ValueError(f"{label} must be more than 0 USD, not {amount!r}")
    return period, usd


def period_start(period: str, now: datetime) -> datetime:
    """When the UTC calendar ``period`` holding ``now`` began."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown budget period {period!r}")


def period_end(period: str, now: datetime) -> datetime:
    """When the UTC calendar ``period`` holding ``now`` ends (and its budget resets)."""
    start = period_start(period, now)
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)
