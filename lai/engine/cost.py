"""What a request cost in USD."""

from __future__ import annotations

from lai.config.models import ModelConfig, ProviderConfig, ServerSettings
from lai.engine.types import Usage


def request_cost(
    model: ModelConfig,
    provider: ProviderConfig,
    server: ServerSettings,
    usage: Usage,
    duration_s: float,
) -> float:
    """Token price (one rate for all tokens, or separate input and output rates) plus,
    for a provider with ``power_watts``, the energy drawn over the request's duration at
    ``server.electricity_rate_kwh``."""
    cost = 0.0
    if model.cost_per_1k_tokens is not None:
        cost += usage.total_tokens / 1000 * model.cost_per_1k_tokens
    else:
        cost += usage.prompt_tokens / 1000 * (model.cost_per_1k_input or 0.0)
        cost += usage.completion_tokens / 1000 * (model.cost_per_1k_output or 0.0)
    if provider.power_watts and server.electricity_rate_kwh:
        kwh = provider.power_watts * max(0.0, duration_s) / 3600 / 1000
        cost += kwh * server.electricity_rate_kwh
    return round(cost, 10)
