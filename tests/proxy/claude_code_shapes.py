"""Requests shaped as Claude Code 2.1.197 sends them to lai (captured from lai's side
while the real `claude -p` ran against it; docs/clients.md). The texts are ours; the
shape is Claude Code's: system blocks led by a billing block, a system message after the
user's in `messages`, adaptive thinking, `context_management`, `output_config`, a JSON
`metadata.user_id`, its beta list and session header."""

from __future__ import annotations

import json
from typing import Any

import anthropic

SESSION = "fd12d282-0ba3-46e6-947b-f4a4c2f6364a"
HEADERS = {
    "anthropic-beta": "claude-code-20250219,context-1m-2025-08-07,"
                      "interleaved-thinking-2025-05-14,context-management-2025-06-27,"
                      "mid-conversation-system-2026-04-07,effort-2025-11-24",
    "anthropic-dangerous-direct-browser-access": "true",
    "x-app": "cli",
    "User-Agent": "claude-cli/2.1.197 (external, sdk-cli)",
    "X-Claude-Code-Session-Id": SESSION,
}
BASH = {"name": "Bash", "description": "Run a shell command.",
        "input_schema": {"type": "object", "properties": {
            "command": {"type": "string"}, "description": {"type": "string"}},
            "required": ["command"], "additionalProperties": False}}
USER_TURN = {"role": "user", "content": [
    {"type": "text", "text": "<system-reminder>\nToday is 2026-12-02.\n</system-reminder>\n"},
    {"type": "text", "text": "run the tests", "cache_control": {"type": "ephemeral"}}]}
AGENTS = {"role": "system", "content": "Agent types you may start: general, explore."}


def system(billing: str = "cc_version=2.1.197.1c0; cc_entrypoint=sdk-cli;") -> list[Any]:
    return [{"type": "text", "text": f"x-anthropic-billing-header: {billing}"},
            {"type": "text", "text": "You are a coding agent.",
             "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Use the tools you are given.",
             "cache_control": {"type": "ephemeral"}}]


def extra(**more: Any) -> dict[str, Any]:
    """The fields Claude Code adds that the SDK's signature does not name."""
    return {"thinking": {"type": "adaptive"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "output_config": {"effort": "high"},
            "metadata": {"user_id": json.dumps({"device_id": "d" * 64, "account_uuid": "",
                                                "session_id": SESSION})},
            **more}


def client(proxy: Any) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=proxy.url, auth_token="lai_unused",
                                    max_retries=0, default_headers=HEADERS)


async def main_turn(c: anthropic.AsyncAnthropic, messages: list[Any],
                    **kw: Any) -> tuple[anthropic.types.Message, str]:
    """One streamed turn of the main loop: (the message, its X-Conversation-ID)."""
    async with c.messages.stream(model="claude-opus-4-8", max_tokens=64000,
                                 system=kw.pop("system", system()), messages=messages,
                                 tools=[BASH], extra_body=extra(), **kw) as stream:
        final = await stream.get_final_message()
        conversation = stream.response.headers["x-conversation-id"]
    return final, conversation
