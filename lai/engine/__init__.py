"""The routing engine: provider and model resolution, slots and the queue, health,
retries and failover, upstream adapters, events.

It knows nothing of Quart, Hypercorn, Textual, SQL or TOML files: it is given its
settings (``lai.config.models``), an ``httpx.AsyncClient`` and a clock. Start at
``lai.engine.engine.Engine``.
"""
