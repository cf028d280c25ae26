"""A key's own limits as the engine and the store see them: requests in flight and
queued (enforced by :mod:`lai.engine.slots`), requests and tokens per minute and budgets
per period (enforced before queueing by ``lai.store.keyusage``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

PERIODS = ("day", "week", "month")
"""Budget periods: UTC calendar day, week (from Monday) and month."""


@dataclass(frozen=True, slots=True)
class KeyQuota:
    """A key's limits; None (or no budget) for none."""

    max_concurrent: int | None = None
    max_queued: int | None = None
    rpm: int | None = None
    tpm: int | None = None
    budgets: tuple[tuple[str, float], ...] = ()
    """(period, USD), in the order of :data:`PERIODS`."""

    @property
    def is_empty(self) -> bool:
        return self == KeyQuota()

    @property
    def limits_usage(self) -> bool:
        """True when a request must be counted against rpm, tpm or a budget."""
        return bool(self.rpm or self.tpm or self.budgets)

    def with_budgets(self, budgets: dict[str, float]) -> KeyQuota:
        return replace(self, budgets=tuple((p, budgets[p]) for p in PERIODS if p in budgets))

    def describe(self) -> str:
        """``max 2 in flight, 5 queued, 60 rpm, 100000 tpm, $5.00/day`` or ``none``."""
        parts = []
        if self.max_concurrent is not None:
            parts.append(f"max {self.max_concurrent} in flight")
        if self.max_queued is not None:
            parts.append(f"{self.max_queued} queued")
        if self.rpm is not None:
            parts.append(f"{self.rpm} rpm")
        if self.tpm is not None:
            parts.append(f"{self.tpm} tpm")
        parts += [f"{budget_text(usd, period)}" for period, usd in self.budgets]
        return ", ".join(parts) or "none"

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_concurrent": self.max_concurrent,
            "max_queued": self.max_queued,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "budgets": {period: usd for period, usd in self.budgets},
        }


def budget_text(usd: float, period: str) -> str:
    """``$5.00/day``."""
    return f"${usd:.2f}/{period}"
