"""Reading the deployment files (Dockerfile, compose files, the systemd unit) for tests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_PROD = ROOT / "docker-compose.prod.yml"
ENV_EXAMPLE = ROOT / ".env.example"
UNIT = ROOT / "deploy" / "systemd" / "lai-proxy.service"
WORKFLOWS = ROOT / ".github" / "workflows"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    text = re.sub(r"\\\n", " ", "\n".join(
        line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")
    ))
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    steps = dockerfile_instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def _exec_form(word: str) -> list[str]:
    (args,) = [rest for w, rest in _final_stage() if w == word][-1:]
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def image_command() -> list[str]:
    """What the image runs by default: ENTRYPOINT + CMD of the final stage."""
    return [*_exec_form("ENTRYPOINT"), *_exec_form("CMD")]


def image_healthcheck() -> list[str]:
    """The HEALTHCHECK command of the final stage (exec form), without its options."""
    (args,) = [rest for w, rest in _final_stage() if w == "HEALTHCHECK"][-1:]
    command = args[args.index("CMD ") + len("CMD "):].strip()
    value = json.loads(command)
    assert isinstance(value, list), command
    return value


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def unit_directives(text: str) -> dict[str, list[str]]:
    """``Section.Key`` -> every value given for it (systemd allows repeats)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out
