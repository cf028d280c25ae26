"""What the redactor takes out of messages, and what it leaves readable."""

from __future__ import annotations

import pytest

from lai.config.models import Settings
from lai.engine.redact import Redactor


@pytest.mark.parametrize(("text", "expected"), [
    ("Incorrect API key provided: Bearer sk-abc123def456ghi.",
     "Incorrect API key provided: Bearer [redacted]."),
    ("authorization: bearer eyJhbGciOiJIUzI1NiJ9.e30.abc", "authorization: bearer [redacted]"),
    ("Incorrect API key provided: sk-proj-********************************wxyz.",
     "Incorrect API key provided: [redacted]."),
    ('{"api_key": "0123456789abcdef"}', '{"api_key": "[redacted]"}'),
    ("x-api-key: AbCdEf123456", "x-api-key: [redacted]"),
    ("key lai_0123456789abcdef0123456789abcdef revoked", "key [redacted] revoked"),
])
def test_credential_shapes_are_redacted(text: str, expected: str) -> None:
    assert Redactor()(text) == expected


@pytest.mark.parametrize("text", [
    "The bearer of this message", "task-12345678 failed", "key lai_5f4d (agent-1) expired",
    "max_tokens: 4096", "invalid api key", "HTTP 500: upstream overloaded",
])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Redactor(["sk-configured-1"])(text) == text


def test_configured_secrets_are_redacted_wherever_they_appear() -> None:
    redact = Redactor(["zk.9f8e7d6c5b4a", "zk.9f8e7d6c5b4a-and-more", "abc"])
    assert redact("got zk.9f8e7d6c5b4a-and-more and zk.9f8e7d6c5b4a") == (
        "got [redacted] and [redacted]")
    assert redact("abc is too short to be searched for") == "abc is too short to be searched for"


def test_for_settings_knows_provider_keys_and_the_database_password() -> None:
    settings = Settings.model_validate({
        "server": {"database_url": "postgresql+psycopg://lai:pg-Passw0rd@db/lai"},
        "providers": [{"id": "z", "endpoint": "https://api.z.ai/v4", "type": "openai",
                       "auth_type": "bearer", "auth_secret": "zk.9f8e7d6c5b4a"},
                      {"id": "box", "endpoint": "http://me:box-pass-42@10.0.0.2:8000"}],
        "models": [{"id": "glm", "provider_id": "z"}, {"id": "m", "provider_id": "box"}],
    })
    redact = Redactor.for_settings(settings)
    assert redact("zk.9f8e7d6c5b4a / pg-Passw0rd / http://me:box-pass-42@10.0.0.2") == (
        "[redacted] / [redacted] / http://me:[redacted]@10.0.0.2")
