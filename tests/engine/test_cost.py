"""Cost arithmetic: one price for all tokens, separate input and output prices, energy."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lai.config.models import ModelConfig, ProviderConfig, ServerSettings
from lai.engine.cost import request_cost
from lai.engine.types import Usage

BOX = ProviderConfig(id="box", endpoint="http://127.0.0.1:9")
USAGE = Usage(prompt_tokens=1200, completion_tokens=300)


def cost(model: dict, *, watts: float = 0.0, rate: float = 0.0, seconds: float = 0.0,
         usage: Usage = USAGE) -> float:
    return request_cost(
        ModelConfig(id="m", provider_id="box", **model),
        BOX.model_copy(update={"power_watts": watts}),
        ServerSettings(electricity_rate_kwh=rate),
        usage,
        seconds,
    )


def test_one_price_for_all_tokens():
    assert cost({"cost_per_1k_tokens": 0.002}) == pytest.approx(1500 / 1000 * 0.002)


def test_separate_input_and_output_prices():
    got = cost({"cost_per_1k_input": 0.01, "cost_per_1k_output": 0.03})
    assert got == pytest.approx(1.2 * 0.01 + 0.3 * 0.03)


def test_only_one_of_input_or_output_priced():
    assert cost({"cost_per_1k_input": 0.01}) == pytest.approx(1.2 * 0.01)
    assert cost({"cost_per_1k_output": 0.03}) == pytest.approx(0.3 * 0.03)


def test_no_price_is_free():
    assert cost({}) == 0.0


def test_energy_is_watts_times_time_at_the_kwh_rate():
    # 350 W for 36 s is 3.5 Wh = 0.0035 kWh; at $0.30 per kWh that is $0.00105.
    assert cost({}, watts=350, rate=0.30, seconds=36) == pytest.approx(0.00105)


def test_energy_adds_to_token_price():
    got = cost({"cost_per_1k_tokens": 0.002}, watts=350, rate=0.30, seconds=36)
    assert got == pytest.approx(0.003 + 0.00105)


def test_energy_needs_both_watts_and_a_rate():
    assert cost({}, watts=350, rate=0.0, seconds=36) == 0.0
    assert cost({}, watts=0, rate=0.30, seconds=36) == 0.0


def test_a_negative_duration_costs_no_energy():
    assert cost({}, watts=350, rate=0.30, seconds=-5) == 0.0


def test_both_price_forms_at_once_is_a_config_error():
    with pytest.raises(ValidationError, match="cost_per_1k_tokens"):
        ModelConfig(id="m", provider_id="box", cost_per_1k_tokens=0.1, cost_per_1k_input=0.1)
