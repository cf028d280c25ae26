"""A fake model that plays an agent's tool loop, for running real agent clients
(Claude Code, Codex, opencode, aider, llm) against lai.

`agent_behaviour(body)` decides a chat request's answer from the request itself, as a
model would, so a client's whole loop runs without scripting each turn:

- the last message is a tool result: the answer says what it was
  ("The command printed: ...");
- the last user message asks to run a command in backticks (``run `echo hi` ``) and the
  request offers a shell-like tool (`Bash`, `bash`, `shell`, `exec_command`, ...): the
  answer is a call of that tool, its arguments built from the tool's own schema (a
  string or an argv list, as the tool wants);
- it asks to call a tool by its name with arguments (``call `name` with `{...}` ``) and
  the request offers a tool of that name: a call of it with those arguments;
- without tools, it asks to write text into a file (``write `text` to `calc.py` ``):
  the file's new content in a fenced block under its path (aider's "whole" edit format);
- the request asks for a JSON schema (``response_format``): an object with "fake" in
  each string property;
- otherwise plain text: `PLAIN_ANSWER`, streamed a word a delta when asked to stream.

A user message holding `THINK` also gets a reasoning part (`reasoning_content`), as a
thinking model behind llama.cpp or vLLM sends it.

Run standalone with `python -m tests.fakes.agent --port 9000 [--log requests.jsonl]`;
`--log` appends every chat request body lai sent, one JSON object a line.
"""

from __future__ import annotations

import argparse
import re
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from tests.fakes.upstream import Behaviour, FakeUpstream

PLAIN_ANSWER = "PONG from the fake model, streamed word by word."
TOOL_ANSWER = "The command printed: "
SHELL_TOOLS = ("Bash", "bash", "shell", "exec_command", "shell_command", "local_shell")
"""Tool names taken for "run a command", in order of preference."""
_RUN = re.compile(r"\brun\s+`([^`]+)`", re.IGNORECASE)
_WRITE = re.compile(r"\bwrite\s+`([^`]*)`\s+(?:in)?to\s+`([^`]+)`", re.IGNORECASE)
_CALL = re.compile(r"\bcall\s+`([^`]+)`\s+with\s+`([^`]*)`", re.IGNORECASE)


def _text(content: Any) -> str:
    """The text of a chat message's content (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content
                         if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _shell_tool(tools: Any) -> dict[str, Any] | None:
    """The function definition of the request's shell-like tool, if it offers one."""
    if not isinstance(tools, list):
        return None
    by_name = {}
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            by_name[fn["name"]] = fn
    return next((by_name[n] for n in SHELL_TOOLS if n in by_name), None)


def _tool_names(tools: Any) -> set[str]:
    if not isinstance(tools, list):
        return set()
    return {t["function"]["name"] for t in tools if isinstance(t, dict)
            and isinstance(t.get("function"), dict) and isinstance(t["function"].get("name"), str)}


def _json_answer(response_format: Any) -> str | None:
    """For a ``json_schema`` response format: an object giving each string property of
    the schema the value "fake" (None for any other format)."""
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    schema = (response_format.get("json_schema") or {}).get("schema") or {}
    props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    answer = {name: "fake" for name, p in props.items()
              if isinstance(p, dict) and p.get("type") == "string"}
    return orjson.dumps(answer).decode()


def tool_arguments(fn: dict[str, Any], command: str) -> dict[str, Any]:
    """Arguments for a call of shell tool `fn` running `command`, shaped by its schema:
    the command goes in `command` or `cmd` (an argv list when the schema wants an
    array), a `description` says why, other required strings are left empty."""
    schema = fn.get("parameters") if isinstance(fn.get("parameters"), dict) else {}
    props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    required = schema.get("required") if isinstance(schema.get("required"), list) else []
    args: dict[str, Any] = {}
    for name in ("command", "cmd"):
        if name in props:
            wants_list = props[name].get("type") == "array"
            args[name] = ["bash", "-lc", command] if wants_list else command
            break
    else:
        args["command"] = command
    if "description" in props:
        args["description"] = "Run the command the user asked for"
    for name in required:
        if name not in args and props.get(name, {}).get("type") == "string":
            args[name] = ""
    return args


def agent_behaviour(body: Any) -> Behaviour | None:
    """How a model with a shell tool would answer this chat body (None: not a chat body)."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return None
    # System messages are context, wherever they are (Claude Code adds one after the user's).
    messages = [m for m in body["messages"] if isinstance(m, dict) and m.get("role") != "system"]
    if not messages:
        return None
    last = messages[-1]
    user = next((_text(m.get("content")) for m in reversed(messages)
                 if m.get("role") == "user"), "")
    reasoning = ["Thinking ", "it ", "over."] if "THINK" in user else None
    if last.get("role") == "tool":
        output = " ".join(_text(last.get("content")).split())[:200]
        return Behaviour(content=TOOL_ANSWER + output, reasoning=reasoning, delay=0.01)
    asks = last.get("role") == "user"
    named = _CALL.search(user) if asks else None
    if named and named.group(1) in _tool_names(body.get("tools")):
        call = {"id": "call_fake1", "name": named.group(1), "arguments": named.group(2)}
        return Behaviour(tool_calls=[call], reasoning=reasoning, chunks=3, delay=0.01)
    wanted = _RUN.search(user) if asks else None
    fn = _shell_tool(body.get("tools"))
    if wanted and fn is not None:
        args = tool_arguments(fn, wanted.group(1))
        call = {"id": "call_fake1", "name": fn["name"], "arguments": orjson.dumps(args).decode()}
        return Behaviour(tool_calls=[call], reasoning=reasoning, chunks=3, delay=0.01)
    shaped = _json_answer(body.get("response_format"))
    if shaped is not None:
        return Behaviour(content=[shaped], delay=0.01)
    written = _WRITE.search(user) if asks and not body.get("tools") else None
    if written:
        text, path = written.group(1).replace("\\n", "\n"), written.group(2)
        return Behaviour(content=f"{path}\n```\n{text}\n```\n", delay=0.01)
    return Behaviour(content=PLAIN_ANSWER, reasoning=reasoning, delay=0.01)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until SIGINT or SIGTERM, printing the URL first (for scripts to read)."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--log", type=Path, default=None,
                        help="append each chat request body here, one JSON object a line")
    parser.add_argument("--models", default="fake-model", help="comma-separated")
    args = parser.parse_args(argv)
    fake = FakeUpstream(models=args.models.split(","), record=False)
    log_path: Path | None = args.log

    def respond(body: Any) -> Behaviour | None:
        if log_path is not None:
            with log_path.open("ab") as f:
                f.write(orjson.dumps(body) + b"\n")
        return agent_behaviour(body)

    fake.responder = respond
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    fake.start(args.port)
    print(f"fake agent model listening on {fake.url}", flush=True)
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
