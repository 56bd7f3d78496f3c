"""docs/operations.md matches the metrics the code exports: its Grafana dashboard is valid JSON whose every query
names only metrics we export, its alert rules are valid YAML with the same property, and every metric we export
is described in its table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from nodeops import metrics

OPERATIONS = Path(__file__).resolve().parent.parent / "docs" / "operations.md"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
# what PromQL names besides metrics: functions, keywords, Prometheus' own series
PROMQL_WORDS = frozenset(
    {"sum", "max", "min", "by", "on", "and", "or", "rate", "increase", "deriv", "absent", "clamp_min"}
    | {"histogram_quantile", "le", "up"}
)


def _families() -> dict[str, str]:
    """Every metric family the code exports (the store's included, as in celery mode) -> its type."""
    counts = metrics.StoreCounts(
        jobs={("INSTALL_AGENT", "SUCCESS"): 1},
        instances={("INSTALL_AGENT", "SUCCESS"): 1},
        agents={"running": 1},
        workers_alive=1,
        queue_depth=0,
    )
    text = metrics.render(counts).decode()
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def exported() -> set[str]:
    """Every series name a scrape may hold."""
    return {name + suffix for name, kind in _families().items() for suffix in SUFFIXES.get(kind, ("",))}


def _block(language: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", OPERATIONS.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, f"no {language} block in {OPERATIONS}"
    return str(blocks[-1] if language == "yaml" else blocks[0])


def names_in(expr: str) -> set[str]:
    """The metric names an expression uses: its identifiers, without label matchers, strings, durations and
    PromQL's own words."""
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^]]*\]", "", expr)  # ranges
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\b(?:by|on|without)\s*\([^)]*\)", "", expr)  # grouping labels
    return {word for word in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr) if word not in PROMQL_WORDS}


def test_the_name_reader_finds_metrics_only():
    expr = 'histogram_quantile(0.99, sum by (le, route) (rate(nodeops_x_bucket{code="0"}[$__rate_interval])))'
    assert names_in(expr.replace("$__rate_interval", "5m")) == {"nodeops_x_bucket"}


def test_the_dashboard_is_json_and_queries_only_exported_metrics():
    dashboard = json.loads(_block("json"))
    assert dashboard["title"] and dashboard["panels"]
    known = exported()
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(exprs) >= len(dashboard["panels"])
    used: set[str] = set()
    for expr in exprs:
        found = names_in(expr.replace("$__rate_interval", "5m"))
        assert found, expr
        assert found <= known, (expr, found - known)
        used |= found
    # every family of ours has a panel
    for family in _families():
        if family.startswith("nodeops_"):
            assert any(name.startswith(family) for name in used), family


def test_the_alert_rules_are_yaml_and_name_only_exported_metrics():
    rules = yaml.safe_load(_block("yaml"))["groups"][0]["rules"]
    known = exported()
    alerts = {rule["alert"] for rule in rules}
    for wanted in ("AgentsAbnormal", "JobsStuck", "LogFlushFailing", "HeartbeatsRefused", "WorkersMissing"):
        assert f"Nodeops{wanted}" in alerts
    assert "NodeopsQueueGrowing" in alerts
    for rule in rules:
        found = names_in(rule["expr"])
        assert found and found <= known, (rule["alert"], found - known)
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def test_every_exported_metric_is_described():
    text = OPERATIONS.read_text(encoding="utf-8")
    for family, kind in _families().items():
        if family.startswith("nodeops_"):
            described = family + ("_total" if kind == "counter" else "")
            assert f"| `{described}`" in text, described
