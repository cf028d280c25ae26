"""End to end: the anthropic SDK against `lai proxy` run as a subprocess, as a user runs
it, in front of a fake OpenAI-compatible upstream that answers with a streamed tool call
and then text."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import anthropic

from tests.fakes.upstream import Behaviour, FakeUpstream

TOOL = {"name": "read_file", "description": "Read a file",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}


def test_anthropic_sdk_tool_loop_against_lai_proxy(tmp_path: Path) -> None:
    with FakeUpstream() as upstream:
        config = tmp_path / "config.toml"
        config.write_text(textwrap.dedent(f"""
            [server]
            auth = false
            data_dir = "data"
            database_url = "sqlite:///data/lai.db"

            [[providers]]
            id = "box"
            endpoint = "{upstream.url}"
            health_check_interval = 3600

            [[models]]
            id = "coder"
            provider_id = "box"
            aliases = ["claude-*"]
        """))
        proc = subprocess.Popen(
            [sys.executable, "-m", "lai.cli", "proxy", "--config", str(config), "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "listening on" in line, (line, proc.stderr and proc.stderr.read())
            url = line.rsplit(" ", 1)[1].strip()
            client = anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0,
                                         timeout=30)
            ask = [{"role": "user", "content": "show me a.txt"}]
            upstream.script(Behaviour(tool_calls=[{"id": "call_7", "name": "read_file",
                                                   "arguments": '{"path": "a.txt"}'}],
                                      chunks=6))
            with client.messages.stream(model="claude-sonnet-4-5", max_tokens=256,
                                        messages=ask, tools=[TOOL]) as stream:
                first = stream.get_final_message()
            [use] = first.content
            assert (use.type, use.id, use.name, use.input) == (
                "tool_use", "call_7", "read_file", {"path": "a.txt"})
            assert first.stop_reason == "tool_use" and first.model == "claude-sonnet-4-5"

            upstream.default = Behaviour(content="It says hello.")
            reply = client.messages.create(
                model="claude-sonnet-4-5", max_tokens=256, tools=[TOOL], messages=[
                    *ask, {"role": "assistant", "content": [use.model_dump()]},
                    {"role": "user", "content": [{"type": "tool_result",
                                                  "tool_use_id": "call_7",
                                                  "content": "hello"}]}])
            assert reply.content[0].text == "It says hello."
            assert upstream.requests[-1].body["messages"][-1] == {
                "role": "tool", "tool_call_id": "call_7", "content": "hello"}
            count = client.messages.count_tokens(model="claude-sonnet-4-5", messages=ask)
            assert count.input_tokens > 0
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
