"""deploy/grafana/lai-dashboard.json: a well-formed dashboard whose every query is valid
PromQL (promtool) over metrics that a real proxy exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.proxy.metrics_helpers import known_mix, scrape, two_providers
from tests.tools import PROMTOOL, require_tool

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "lai-dashboard.json"
METRIC = re.compile(r"\b(local_ai_[a-zA-Z0-9_]+)")
# Grafana's variables, replaced by something PromQL accepts for the syntax check.
VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1d",
             "$provider": ".*"}


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # panels inside a collapsed row
    return out


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of every panel target."""
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", []) if t.get("expr")]


def template_queries(dashboard: dict[str, Any]) -> list[str]:
    out = []
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            q = var["query"]
            out.append(q["query"] if isinstance(q, dict) else q)
    return out


def test_dashboard_is_well_formed():
    d = load()
    assert d["uid"] and d["title"] and d["schemaVersion"] >= 36
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in panels(d):
        pos = p["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, p["title"]
        here = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not here & cells, f"panel {p['title']!r} overlaps another"
        cells |= here
        if p["type"] != "row":
            assert p["targets"], p["title"]
            assert p["datasource"]["uid"] == "${datasource}"
    titles = " | ".join(p["title"].lower() for p in panels(d))
    for wanted in ("request rate by provider", "time to first token", "in flight vs max",
                   "health", "failovers", "cost per day", "local"):
        assert wanted in titles


def test_latency_panels_use_histogram_quantile():
    exprs = queries(load())
    for histogram in ("local_ai_request_duration_seconds_bucket",
                      "local_ai_time_to_first_token_seconds_bucket"):
        using = [e for e in exprs if histogram in e]
        assert using and all("histogram_quantile(" in e and "le" in e for e in using)


def test_every_query_is_valid_promql(tmp_path):
    promtool = require_tool(*PROMTOOL)
    rules = []
    for i, expr in enumerate(queries(load())):
        for var, value in VARIABLES.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"unhandled Grafana variable in {expr}"
        rules.append({"record": f"lai:dashboard_query_{i}", "expr": expr})
    path = tmp_path / "rules.yml"  # JSON is YAML
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


async def test_every_metric_the_dashboard_queries_is_exported(proxy_factory, upstream_factory):
    d = load()
    wanted = {m for q in [*queries(d), *template_queries(d)] for m in METRIC.findall(q)}
    assert wanted
    proxy, box, _cloud = await two_providers(proxy_factory, upstream_factory)
    await known_mix(proxy, box)
    text = await scrape(proxy)
    exported = {s.name for family in text_string_to_metric_families(text)
                for s in family.samples}
    assert sorted(wanted - exported) == []


def test_metrics_named_in_the_issue_are_on_the_dashboard():
    used = {m for q in queries(load()) for m in METRIC.findall(q)}
    for name in ("local_ai_requests_total", "local_ai_provider_active_requests",
                 "local_ai_provider_max_concurrent", "local_ai_provider_health",
                 "local_ai_provider_failover_total", "local_ai_cost_usd_total",
                 "local_ai_provider_info"):
        assert name in used

