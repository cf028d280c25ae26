"""Upstream adapters, one per provider type."""

from __future__ import annotations

from lai.config.models import ProviderConfig
from lai.engine.adapters.base import Adapter
from lai.engine.adapters.openai import OpenAIAdapter

_OPENAI = OpenAIAdapter()


def adapter_for(provider: ProviderConfig) -> Adapter:
    """The adapter for a provider's ``type``."""
    if provider.type == "anthropic":
        from lai.engine.adapters.anthropic import AnthropicAdapter

        return AnthropicAdapter()
    return _OPENAI
