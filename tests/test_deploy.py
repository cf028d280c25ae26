"""The deployment files, checked as far as this machine can: these machines cannot pull base
images or run containers, so the image itself is not built here. hadolint lints the
Dockerfile, actionlint the workflows, `systemd-analyze verify` the unit, promtool the
alerts; the compose files must name only services, files and variables that exist, and
the image must run the commands tests/test_wheel.py proves on an installed wheel."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import lai
from lai.config.models import ServerSettings, env_name
from tests.deploy_files import (
    COMPOSE,
    COMPOSE_PROD,
    DOCKERFILE,
    ENV_EXAMPLE,
    ROOT,
    UNIT,
    WORKFLOWS,
    dockerfile_instructions,
    image_command,
    image_healthcheck,
    load_yaml,
    unit_directives,
)
from tests.tools import (
    ACTIONLINT,
    HADOLINT,
    PROMTOOL,
    SHELLCHECK,
    SYSTEMD_ANALYZE,
    require_tool,
)

OPERATIONS = ROOT / "docs" / "operations.md"
PROVIDER_SUFFIXES = ("ENDPOINT", "ENABLED", "API_KEY")
COMPOSE_ONLY = {"PUBLISH", "GHCR_OWNER", "IMAGE_TAG"}
"""Variables the compose files read for themselves; lai never sees them."""


def lai_variables() -> set[str]:
    """Every LAI_* environment variable lai's code (and its migrations) names."""
    names: set[str] = set()
    for path in [*(ROOT / "lai").rglob("*.py"), *(ROOT / "alembic").rglob("*.py")]:
        names |= set(re.findall(r"[\"'](LAI_[A-Z0-9_]+)[\"']", path.read_text()))
    return names


def example_provider_ids() -> set[str]:
    """Provider ids in config.toml.example, commented-out examples included."""
    ids, table = set(), ""
    for raw in (ROOT / "config.toml.example").read_text().splitlines():
        line = raw.lstrip("# ").strip()
        if line.startswith("["):
            table = line
        elif table == "[[providers]]" and (m := re.match(r'^id = "([^"]+)"', line)):
            ids.add(m.group(1))
    return ids


def check_variable(name: str) -> str | None:
    """None when lai (or compose itself) reads ``name``, else why it is wrong."""
    if name in COMPOSE_ONLY:
        return None
    if name.startswith("LAI_"):
        return None if name in lai_variables() else "lai reads no such LAI_ variable"
    if name.startswith("PROVIDER_"):
        ids = {env_name(i) for i in example_provider_ids()}
        for suffix in PROVIDER_SUFFIXES:
            if name.endswith("_" + suffix) and name[len("PROVIDER_"):-len(suffix) - 1] in ids:
                return None
        return f"not PROVIDER_{{ID}}_{{{'|'.join(PROVIDER_SUFFIXES)}}} of an example provider"
    return "neither lai's nor one the compose files document in .env.example"


def variables_in(path: Path) -> set[str]:
    text = path.read_text()
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    if path.name.startswith(".env"):
        names |= set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.M))
    else:
        # Other services' own variables (GF_* for Grafana) are theirs to know.
        names |= set(load_yaml(path)["services"]["lai"].get("environment") or {})
    return names


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_passes_hadolint() -> None:
    hadolint = require_tool(*HADOLINT)
    done = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_is_a_slim_multi_stage_non_root_build_of_the_wheel() -> None:
    steps = dockerfile_instructions()
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) >= 2 and " AS " in froms[0].upper()
    base = next(rest for word, rest in steps if word == "ARG" and rest.startswith("PYTHON_IMAGE"))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim(-\w+)?", base), base
    build = " ".join(rest for word, rest in steps if word in ("COPY", "RUN"))
    # The build stage copies what tests/test_wheel.py builds the wheel from.
    from tests.test_wheel import SOURCES

    copied = {part.rstrip("/") for w, rest in steps if w == "COPY" for part in rest.split()}
    assert set(SOURCES) <= copied, set(SOURCES) - copied
    kept = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
            if line.startswith("!")}
    assert set(SOURCES) <= kept, set(SOURCES) - kept
    assert "pip wheel" in build and "/wheels/lai-" in build
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM"):]
    user = [rest for word, rest in final if word == "USER"]
    assert user and re.fullmatch(r"[1-9]\d*(:\d+)?", user[-1]), user
    assert ("VOLUME", '["/data"]') in final
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "LAI_CONFIG=/data/config.toml" in env
    port = ServerSettings().port
    assert ("EXPOSE", str(port)) in final


def test_the_image_runs_the_proxy_on_every_interface_with_a_health_check() -> None:
    assert image_command() == ["lai", "proxy", "--host", "0.0.0.0"]
    probe = image_healthcheck()
    assert probe[0] == "python" and f"http://127.0.0.1:{ServerSettings().port}/health" in probe[-1]


# --------------------------------------------------------------------------- compose


def compose_problems(path: Path) -> list[str]:
    problems: list[str] = []
    doc = load_yaml(path)
    services: dict[str, Any] = doc["services"]
    declared = set(doc.get("volumes") or {})
    for name, service in services.items():
        if "build" in service and not (ROOT / service["build"] / "Dockerfile").is_file():
            problems.append(f"{name}: builds {service['build']}, which has no Dockerfile")
        for other in service.get("depends_on") or []:
            if other not in services:
                problems.append(f"{name}: depends_on unknown service {other}")
        for volume in service.get("volumes") or []:
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                user_file = ROOT / (source[2:] + ".example")
                if not (ROOT / source).exists() and not user_file.exists():
                    problems.append(f"{name}: mounts {source}, which is not in the repository")
            elif source not in declared:
                problems.append(f"{name}: volume {source} is not declared")
            assert target.startswith("/")
        for env_file in service.get("env_file") or []:
            file = env_file["path"] if isinstance(env_file, dict) else env_file
            if not (ROOT / file).exists() and not (ROOT / (file + ".example")).exists():
                problems.append(f"{name}: env_file {file} has no .example")
    for variable in sorted(variables_in(path)):
        wrong = check_variable(variable)
        if wrong:
            problems.append(f"${variable}: {wrong}")
    return problems


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_PROD, ENV_EXAMPLE], ids=lambda p: p.name)
def test_compose_files_name_only_what_exists(path: Path) -> None:
    if path == ENV_EXAMPLE:
        problems = [f"{v}: {w}" for v in sorted(variables_in(path)) if (w := check_variable(v))]
    else:
        problems = compose_problems(path)
    assert not problems, problems


def test_the_compose_lai_service_matches_the_image() -> None:
    config = next(rest for w, rest in dockerfile_instructions() if w == "ENV")
    image_config = re.search(r"LAI_CONFIG=(\S+)", config)
    assert image_config
    port = ServerSettings().port
    for path in (COMPOSE, COMPOSE_PROD):
        lai_service = load_yaml(path)["services"]["lai"]
        assert lai_service["environment"]["LAI_CONFIG"] == image_config.group(1)
        mounts = {v.split(":")[1]: v.split(":")[0] for v in lai_service["volumes"]}
        assert mounts[image_config.group(1)] == "./config.toml"  # from config.toml.example
        assert mounts["/data"] == "lai-data"
        assert all(p.endswith(f":{port}") for p in lai_service["ports"])
        assert "profiles" not in lai_service


def test_the_production_file_pins_a_minor_release() -> None:
    image = load_yaml(COMPOSE_PROD)["services"]["lai"]["image"]
    found = re.fullmatch(r"ghcr\.io/\$\{GHCR_OWNER[^}]*\}/lai:\$\{IMAGE_TAG:-(\d+\.\d+)\}", image)
    assert found, image
    minor = ".".join(lai.__version__.split(".")[:2])
    assert found.group(1) == minor
    assert re.search(rf"^IMAGE_TAG={re.escape(minor)}$", ENV_EXAMPLE.read_text(), re.M)


def test_monitoring_is_an_optional_profile_with_the_dashboard_provisioned() -> None:
    services = load_yaml(COMPOSE)["services"]
    assert set(services) == {"lai", "prometheus", "grafana"}
    assert services["prometheus"]["profiles"] == services["grafana"]["profiles"] == ["monitoring"]
    grafana_mounts = {v.split(":")[0]: v.split(":")[1] for v in services["grafana"]["volumes"]}
    dashboard = grafana_mounts["./deploy/grafana/lai-dashboard.json"]
    provisioning = grafana_mounts["./deploy/grafana/provisioning"]
    assert provisioning == "/etc/grafana/provisioning"
    dashboards = load_yaml(ROOT / "deploy/grafana/provisioning/dashboards/lai.yml")
    assert Path(dashboard).parent.as_posix() == dashboards["providers"][0]["options"]["path"]
    sources = load_yaml(ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml")
    assert sources["datasources"][0]["url"] == "http://prometheus:9090"

    prometheus_mounts = {v.split(":")[1]: v.split(":")[0]
                         for v in services["prometheus"]["volumes"]}
    scrape = load_yaml(ROOT / prometheus_mounts["/etc/prometheus/prometheus.yml"])
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == [
        f"lai:{ServerSettings().port}"]
    for rules in scrape["rule_files"]:
        assert rules in prometheus_mounts, f"{rules} is not mounted"


def test_the_alerts_are_valid_and_use_exported_metrics(tmp_path: Path) -> None:
    alerts = ROOT / "deploy" / "prometheus" / "lai-alerts.yml"
    exported = set(re.findall(r"^\s+(local_ai_\w+)", (ROOT / "lai/proxy/metrics.py").read_text(),
                              re.M))
    used = set(re.findall(r"\b(local_ai_\w+)", alerts.read_text()))
    assert used and used <= exported, used - exported
    promtool = require_tool(*PROMTOOL)
    done = subprocess.run([promtool, "check", "rules", str(alerts)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# --------------------------------------------------------------------------- workflows


def test_workflows_pass_actionlint() -> None:
    actionlint = require_tool(*ACTIONLINT)
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert len(files) == 2
    # The `run:` scripts are the next test's, so this one needs no shellcheck.
    done = subprocess.run([actionlint, "-no-color", "-shellcheck=", *files],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_workflow_scripts_pass_shellcheck() -> None:
    actionlint = require_tool(*ACTIONLINT)
    shellcheck = require_tool(*SHELLCHECK)
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    done = subprocess.run([actionlint, "-no-color", f"-shellcheck={shellcheck}", *files],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ci_runs_the_tests_on_pushes_and_pull_requests_with_the_services() -> None:
    ci = load_yaml(WORKFLOWS / "ci.yml")
    triggers = ci[True]  # PyYAML reads the key `on` as the boolean true
    assert "push" in triggers and "pull_request" in triggers
    job = ci["jobs"]["test"]
    assert set(job["services"]) == {"postgres", "redis"}
    assert job["env"]["CI"] == "true"
    script = "\n".join(step.get("run", "") for step in job["steps"])
    assert "python -m pytest" in script and "pip install -e '.[test]'" in script
    from tests.tools import OPENSSL, TMUX

    for _tool, hint in (PROMTOOL, TMUX, OPENSSL, SYSTEMD_ANALYZE, SHELLCHECK):
        assert hint.split()[-1] in script, hint  # the Debian package the test needs


def test_release_publishes_the_seed_tags_and_pull_requests_only_build() -> None:
    release = load_yaml(WORKFLOWS / "release.yml")
    triggers = release[True]
    assert "pull_request" in triggers and "v*.*.*" in triggers["push"]["tags"]
    steps = release["jobs"]["image"]["steps"]
    meta = next(s for s in steps if s.get("uses", "").startswith("docker/metadata-action"))
    tags = meta["with"]["tags"]
    for wanted in ("type=raw,value=latest", "type=ref,event=branch",
                   "type=semver,pattern=v{{version}}", "type=semver,pattern={{major}}.{{minor}}",
                   "type=sha"):
        assert wanted in tags, wanted
    assert meta["with"]["images"].startswith("ghcr.io/")
    build = next(s for s in steps if s.get("uses", "").startswith("docker/build-push-action"))
    assert build["with"]["push"] == "${{ github.event_name != 'pull_request' }}"
    login = next(s for s in steps if s.get("uses", "").startswith("docker/login-action"))
    assert login["if"] == "github.event_name != 'pull_request'"


# --------------------------------------------------------------------------- systemd


def test_the_systemd_unit_has_the_service_settings_and_hardening() -> None:
    unit = unit_directives(UNIT.read_text())
    expect = {
        "Service.Environment": "LAI_CONFIG=/etc/lai/config.toml",
        "Service.Restart": "on-failure",
        "Service.ExecReload": "/bin/kill -HUP $MAINPID",
        "Service.StateDirectory": "lai",
        "Service.NoNewPrivileges": "yes",
        "Service.ProtectSystem": "strict",
        "Service.ProtectHome": "yes",
        "Service.PrivateTmp": "yes",
        "Service.ReadWritePaths": "/var/lib/lai",
        "Service.User": "lai",
    }
    for key, value in expect.items():
        assert value in unit.get(key, []), f"{key}={value}"
    assert unit["Service.ExecStart"] == ["/opt/lai/bin/lai proxy"]


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = require_tool(*SYSTEMD_ANALYZE)
    # verify needs ExecStart's binary to exist: this Python running lai stands in for the
    # /opt/lai/bin/lai of an installed system; the rest of the unit is verified as shipped.
    text = UNIT.read_text()
    assert text.count("/opt/lai/bin/lai proxy") == 1
    unit = tmp_path / "lai-proxy.service"
    unit.write_text(text.replace("/opt/lai/bin/lai proxy", f"{sys.executable} -m lai proxy"))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)
    about_us = [line for line in (done.stdout + done.stderr).splitlines()
                if "lai-proxy" in line]
    assert done.returncode == 0 and not about_us, done.stdout + done.stderr


def test_the_systemd_unit_exposure_is_ok(tmp_path: Path) -> None:
    """`systemd-analyze security` scores the sandboxing from 0 (locked down) to 10; the
    unit must stay at 2.0 or below, what systemd calls "OK"."""
    analyze = require_tool(*SYSTEMD_ANALYZE)
    unit = tmp_path / "lai-proxy.service"
    unit.write_text(UNIT.read_text().replace("/opt/lai/bin/lai proxy",
                                             f"{sys.executable} -m lai proxy"))
    done = subprocess.run([analyze, "security", "--offline=yes", "--threshold=20", str(unit)],
                          capture_output=True, text=True, timeout=60)
    score = re.search(r"Overall exposure level for lai-proxy\.service: ([\d.]+)", done.stdout)
    assert score and float(score.group(1)) <= 2.0 and done.returncode == 0, done.stdout[-500:]


def test_systemd_analyze_catches_a_mistake(tmp_path: Path) -> None:
    """The check above can fail: a misspelt directive is reported."""
    analyze = require_tool(*SYSTEMD_ANALYZE)
    unit = tmp_path / "lai-proxy.service"
    unit.write_text(UNIT.read_text()
                    .replace("/opt/lai/bin/lai proxy", f"{sys.executable} -m lai proxy")
                    .replace("ProtectHome=yes", "ProtectHomes=yes"))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)
    assert "ProtectHomes" in done.stdout + done.stderr


# --------------------------------------------------------------------------- docs


def test_every_environment_variable_is_documented() -> None:
    text = OPERATIONS.read_text()
    wanted = {*lai_variables(), *COMPOSE_ONLY,
              *(f"PROVIDER_{{ID}}_{suffix}" for suffix in PROVIDER_SUFFIXES)}
    missing = sorted(v for v in wanted if f"`{v}`" not in text)
    assert not missing, f"not in docs/operations.md: {missing}"
    loader = (ROOT / "lai" / "config" / "loader.py").read_text()
    assert all(f'"{suffix}"' in loader for suffix in PROVIDER_SUFFIXES)
    assert "image build itself was not run here" in " ".join(text.split())


def test_the_compose_check_catches_what_does_not_exist(tmp_path: Path) -> None:
    """The checks above can fail: a made-up variable, service, volume or file is named."""
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(
        "services:\n"
        "  lai:\n"
        "    image: lai\n"
        "    depends_on: [db]\n"
        "    environment:\n"
        "      LAI_PORT: '9000'\n"
        "      PROVIDER_GPU_BOX_ENDPOINT: ${BOX_URL}\n"
        "      PROVIDER_NOPE_API_KEY: x\n"
        "    volumes:\n"
        "      - ./deploy/nothing.yml:/etc/nothing.yml\n"
        "      - undeclared:/data\n"
    )
    problems = compose_problems(bad)
    assert sorted(problems) == sorted([
        "lai: depends_on unknown service db",
        "lai: mounts ./deploy/nothing.yml, which is not in the repository",
        "lai: volume undeclared is not declared",
        "$BOX_URL: neither lai's nor one the compose files document in .env.example",
        "$LAI_PORT: lai reads no such LAI_ variable",
        "$PROVIDER_NOPE_API_KEY: not PROVIDER_{ID}_{ENDPOINT|ENABLED|API_KEY} of an example "
        "provider",
    ]), problems
