"""Applying a new config to a running engine: what a reload changes, and how.

New requests use the new providers, models, prices, timeouts, priorities and limits at
once; requests in flight finish on the provider and model objects they started with
(frozen config values they hold). For a provider that stays, its slots, queue places,
health and warm models carry over (what its server reported loaded too, unless its
``server`` or ``endpoint`` changed; the service times and prefill rates learnt on it,
unless its ``endpoint`` changed) and ``max_concurrent`` changes in place (a lower one
applies as requests finish, a higher one serves waiters at once). A change of
``server.scheduling`` re-sorts the requests already queued. A removed provider
takes no new requests and drains; an added one is probed at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from lai.config.models import ProviderConfig, Settings
from lai.engine.health import ProviderState
from lai.engine.routing import Catalog
from lai.engine.slots import model_capacities

if TYPE_CHECKING:
    from lai.engine.engine import Engine


def provider_timeout(p: ProviderConfig, pool: float = 30.0) -> httpx.Timeout:
    """The timeouts of a request to ``p``; ``pool`` is how long lai waits for a free
    connection of its own pool (the engine's ``pool_timeout``)."""
    return httpx.Timeout(connect=p.effective_connect_timeout, read=p.effective_read_timeout,
                         write=30.0, pool=pool)


def describe_changes(old: Settings, new: Settings) -> list[str]:
    """One short line per provider, model or server setting that differs."""
    changes: list[str] = []
    old_p = {p.id: p for p in old.providers}
    new_p = {p.id: p for p in new.providers}
    for pid in new_p.keys() - old_p.keys():
        changes.append(f"provider {pid} added")
    for pid in old_p.keys() - new_p.keys():
        changes.append(f"provider {pid} removed (drains)")
    for pid in sorted(new_p.keys() & old_p.keys()):
        before, after = old_p[pid].model_dump(), new_p[pid].model_dump()
        changed = sorted(k for k in after if before.get(k) != after[k])
        if changed:
            changes.append(f"provider {pid}: {', '.join(changed)}")
    old_m = {(m.provider_id, m.id): m for m in old.models}
    new_m = {(m.provider_id, m.id): m for m in new.models}
    for key in sorted(new_m.keys() - old_m.keys()):
        changes.append(f"model {key[0]}/{key[1]} added")
    for key in sorted(old_m.keys() - new_m.keys()):
        changes.append(f"model {key[0]}/{key[1]} removed")
    for key in sorted(new_m.keys() & old_m.keys()):
        if old_m[key] != new_m[key]:
            changes.append(f"model {key[0]}/{key[1]} changed")
    before_s, after_s = old.server.model_dump(), new.server.model_dump()
    changed_s = sorted(k for k in after_s if before_s.get(k) != after_s[k])
    if changed_s:
        changes.append(f"server: {', '.join(changed_s)}")
    return changes


def apply(engine: Engine, new: Settings) -> list[str]:
    """Make ``engine`` serve ``new`` from now on; returns what changed (see the module
    docstring). Does no IO; a newly added provider's first probe is scheduled."""
    old = engine.settings
    changes = describe_changes(old, new)
    old_ids = {p.id for p in old.providers}
    new_by_id = {p.id: p for p in new.providers}
    for pid, cfg in new_by_id.items():
        state = engine.states.get(pid)
        if state is None or pid not in old_ids:
            engine.states[pid] = ProviderState(cfg, cfg.enabled)
        else:
            before = state.config
            state.config = cfg
            if cfg.enabled != before.enabled:
                # The file changed it: the file wins over a runtime toggle.
                state.enabled = cfg.enabled
            if (cfg.server, cfg.endpoint) != (before.server, before.endpoint):
                # Another server (or kind) now: what the old one had loaded says nothing.
                state.loaded = state.load = state.loaded_at = None
            if cfg.endpoint != before.endpoint:
                engine.estimator.forget(pid)  # another box: its times are not the old one's
        engine.timeouts[pid] = provider_timeout(cfg, engine.pool_timeout)
        engine.slots.set_capacity(pid, cfg.max_concurrent)
    engine.settings = new
    engine.catalog = Catalog(new)
    engine.slots.queue_max_size = new.server.queue_max_size
    engine.slots.set_model_capacities(model_capacities(new))
    engine.slots.set_scheduling(new.server.scheduling)
    for pid in old_ids - new_by_id.keys():
        engine.slots.set_capacity(pid, 0)  # in flight finish; nothing new starts
        engine.health.unwatch(pid)
        engine.estimator.forget(pid)  # a provider of that id added later starts afresh
    for pid in new_by_id.keys() - old_ids:
        engine.health.watch(pid)
    return changes
