"""Ordering and pruning the candidates of a request by their estimates (scheduling
``fair``; ``lai.engine.estimate`` makes the estimates).

The request still waits for a slot on every candidate left in ``Route.candidates`` at
once and takes whichever frees first (the queue stays work-conserving); the order
decides which one it takes when several have room. Candidates that should not be used
now go to ``Route.reserve``: tried only when every other one failed, or when the wait
ran past the best estimate (``Engine`` then waits on them too). The rules, in order:

1. Spill (``auto`` with ``spill_after`` set, local and cloud candidates): when every
   local candidate's expected time to first token is over ``spill_after``, the cloud
   candidates go first (the request takes one at once); otherwise they are reserve.
2. Priorities: a lower priority (a larger number) is reserve while a higher one is
   expected to give the first token within ``prefer_priority_within`` seconds.

   In rules 1 and 2 a candidate with a free slot and its model loaded, whose prefill
   only the built-in guess prices (lai measured none on that provider), counts as
   expected at once: it is tried and measured, rather than a guess sending its
   provider's traffic to a lower priority or the cloud for good.
3. What is left is ordered by rank (time to first token plus the cost of swapping back a
   model a cold load would evict), priority breaking ties.
4. A candidate that would be worse than waiting for the best one even if its slot were
   free now (its load + prefill + swap over the best's expected time) is reserve: this
   keeps a request from swapping a cold model in on an idle box when a warm one is
   expected sooner.
5. Sticky: when the provider that served the conversation's last turn is a candidate
   (not held back by the rules above) expected within ``sticky_within`` seconds of the
   best, the request waits for it alone; the others are reserve.

``Route.hold_s`` is the longest the rules that held candidates back allow waiting for
the preferred ones (``spill_after`` for a cloud kept back, ``prefer_priority_within``
for a lower priority, the sticky provider's estimate plus ``sticky_within``): once the
wait passes it, the estimate was wrong and the bound the operator set is what counts,
so the engine lets the held-back candidates join then (or a second past the best
estimate, whichever comes first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from lai.engine.estimate import Estimate
from lai.engine.routing import Candidate


@dataclass(frozen=True, slots=True)
class Route:
    """The candidates to wait on, best first, and those held back."""

    candidates: list[Candidate]
    reserve: list[Candidate] = field(default_factory=list)
    estimates: dict[tuple[str, str], Estimate] = field(default_factory=dict)
    note: str = ""
    """Why this order, for the request's row and the debug log."""
    hold_s: float | None = None
    """The longest wait the rules that held candidates back allow (None: no such
    bound, only the estimate)."""

    def estimate_of(self, cand: Candidate) -> Estimate | None:
        return self.estimates.get((cand.provider.id, cand.model.id))


def choose(
    candidates: Sequence[Candidate],
    estimates: Sequence[Estimate],
    *,
    auto: bool,
    prefer_within: float,
    spill_after: float | None,
    sticky: str | None = None,
    sticky_within: float = 0.0,
) -> Route:
    """Order and prune ``candidates`` (as ``plan`` returned them) by ``estimates`` (one
    each, same order). See the module docstring."""
    if len(candidates) == 1 and len(estimates) == 1:
        return _alone(candidates[0], estimates[0], sticky, sticky_within)
    return _choose(candidates, estimates, auto=auto, prefer_within=prefer_within,
                   spill_after=spill_after, sticky=sticky, sticky_within=sticky_within)


def _alone(cand: Candidate, estimate: Estimate, sticky: str | None,
           sticky_within: float) -> Route:
    """``choose`` for a single candidate (one provider serves the model: the common
    case), without the general rules' lists, tiers and sorts; the same Route. Of the
    rules only the sticky one can apply, and only to say so: nothing is held back."""
    note, hold = "", None
    if (sticky is not None and cand.provider.id == sticky
            and estimate.rank_s <= estimate.rank_s + sticky_within):
        note = f"sticky: {sticky} served the last turn"
        hold = estimate.rank_s + sticky_within
    return Route([cand], [], {(cand.provider.id, cand.model.id): estimate}, note, hold)


def _choose(
    candidates: Sequence[Candidate],
    estimates: Sequence[Estimate],
    *,
    auto: bool,
    prefer_within: float,
    spill_after: float | None,
    sticky: str | None = None,
    sticky_within: float = 0.0,
) -> Route:
    """``choose`` by the rules of the module docstring, for any number of candidates."""
    est = {(c.provider.id, c.model.id): e for c, e in zip(candidates, estimates, strict=True)}

    def of(c: Candidate) -> Estimate:
        return est[(c.provider.id, c.model.id)]

    def expected(c: Candidate) -> float:
        """Its time to first token for the spill and priority rules: 0 for a free,
        loaded candidate only the built-in guess calls slow (``Estimate.untried``)."""
        e = of(c)
        return 0.0 if e.untried else e.total_s

    pool = list(candidates)
    reserve: list[Candidate] = []
    notes: list[str] = []
    spilled: list[Candidate] = []
    bounds: list[float] = []
    locals_ = [c for c in pool if not c.provider.is_cloud]
    clouds = [c for c in pool if c.provider.is_cloud]
    if auto and spill_after is not None and locals_ and clouds:
        best_local = min(expected(c) for c in locals_)
        if best_local > spill_after:
            spilled = sorted(clouds, key=lambda c: of(c).rank_s)
            notes.append(f"spill: every local candidate is over {spill_after:g}s "
                         f"(best {best_local:.1f}s)")
            pool = locals_
        else:
            reserve += clouds
            pool = locals_
            bounds.append(spill_after)

    # Tiers: runs of equal priority, in plan order.
    tiers: list[list[Candidate]] = []
    for c in pool:
        if tiers and tiers[-1][0].provider.priority == c.provider.priority:
            tiers[-1].append(c)
        else:
            tiers.append([c])
    kept: list[Candidate] = []
    tier_of: dict[int, int] = {}
    for i, tier in enumerate(tiers):
        if kept:
            best = min(expected(c) for c in kept)
            if best <= prefer_within:
                held = [c for t in tiers[i:] for c in t]
                reserve += held
                bounds.append(prefer_within)
                notes.append(f"priority {kept[0].provider.priority} expected within "
                             f"{prefer_within:g}s")
                break
        for c in tier:
            tier_of[id(c)] = i
        kept += tier
    kept.sort(key=lambda c: (of(c).rank_s, tier_of[id(c)]))
    if kept:
        best_total = of(kept[0]).total_s
        lead = kept[:1]
        for c in kept[1:]:
            e = of(c)
            if e.load_s + e.prefill_s + e.swap_s < best_total:
                lead.append(c)
            else:
                reserve.append(c)
        kept = lead
    ordered = spilled + kept
    if sticky is not None and not spilled and ordered:
        mine = next((c for c in ordered if c.provider.id == sticky), None)
        if mine is not None and of(mine).rank_s <= of(ordered[0]).rank_s + sticky_within:
            # Only the sticky provider is waited on (the others are held back, so a
            # free one cannot take the request first), for at most about sticky_within.
            reserve += [c for c in ordered if c is not mine]
            bounds.append(of(ordered[0]).rank_s + sticky_within)
            ordered = [mine]
            notes.append(f"sticky: {sticky} served the last turn")
    if not ordered:  # nothing survived (cannot happen with a non-empty plan)
        ordered, reserve = list(candidates), []
    if len(candidates) > 1:
        notes.insert(0, f"best of {len(candidates)}")
    # Reserve in plan order, without repeats.
    seen = {id(c) for c in ordered}
    reserved = {id(c) for c in reserve}
    rest = [c for c in candidates if id(c) not in seen and id(c) in reserved]
    return Route(ordered, rest, est, "; ".join(notes), max(bounds) if bounds else None)
