"""``lai.engine.choice.choose`` as a pure function: a request with one candidate (one
provider serves the model, the common case) takes a short way that must give the Route
the general rules give: the same order, nothing held back, the same note (the request's
``route_reason``) and the same bound (how long the request waits before failing over)."""

from __future__ import annotations

import itertools

from lai.config.models import Settings
from lai.engine.choice import _choose, choose
from lai.engine.estimate import Estimate
from lai.engine.routing import Candidate
from tests.harness import model, provider


def candidates() -> list[Candidate]:
    settings = Settings.model_validate({
        "providers": [provider("box", "http://127.0.0.1:1"),
                      provider("cloud", "http://127.0.0.1:2/v1", type="openai",
                               auth_type="bearer", auth_secret="sk-test")],
        "models": [model("m", "box"), model("g", "cloud")],
    })
    providers = {p.id: p for p in settings.providers}
    return [Candidate(providers[m.provider_id], m) for m in settings.models]


ESTIMATES = [
    Estimate(0.0, 0.0, 0.01, "free slot, warm"),
    Estimate(0.0, 0.0, 3.0, "free slot, warm, guessed prefill", guessed=True),  # untried
    Estimate(12.0, 10.0, 0.5, "wait, cold", swap_s=10.0),
    Estimate(float("inf"), 0.0, 0.0, "never"),
]


def test_one_candidate_gets_the_route_the_general_rules_give() -> None:
    for cand, estimate, auto, spill, sticky, within, prefer in itertools.product(
        candidates(), ESTIMATES, (True, False), (None, 0.0, 2.0),
        (None, "box", "cloud", "elsewhere"), (0.0, 1.5, -1.0), (0.0, 5.0),
    ):
        kw = {"auto": auto, "prefer_within": prefer, "spill_after": spill,
              "sticky": sticky, "sticky_within": within}
        route = choose([cand], [estimate], **kw)  # type: ignore[arg-type]
        assert route == _choose([cand], [estimate], **kw)  # type: ignore[arg-type]
        assert route.candidates == [cand] and route.reserve == []


def test_the_sticky_provider_alone_is_named_and_bounds_the_wait() -> None:
    box = candidates()[0]
    estimate = ESTIMATES[2]
    route = choose([box], [estimate], auto=False, prefer_within=5.0, spill_after=None,
                   sticky="box", sticky_within=1.5)
    assert route.note == "sticky: box served the last turn"
    assert route.hold_s == estimate.rank_s + 1.5
    assert route.estimate_of(box) is estimate
    other = choose([box], [estimate], auto=False, prefer_within=5.0, spill_after=None,
                   sticky="cloud", sticky_within=1.5)
    assert other.note == "" and other.hold_s is None
