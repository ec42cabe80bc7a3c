"""docs/grafana-dashboard.json asks only for series the worker pool serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ops_core.worker.metrics import WorkerMetrics
from ops_core.worker.pool_metrics import _LostProcesses

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana-dashboard.json"


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def _served() -> set[str]:
    families = [*WorkerMetrics().registry.collect(), *_LostProcesses().collect()]
    return {family.name + suffix for family in families for suffix in SUFFIXES[family.type]}


def test_every_series_of_the_dashboard_is_served() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(exprs) > 10
    asked = {name for expr in exprs for name in re.findall(r"\bopscore_\w+", expr)}
    assert asked - _served() == set()
    assert {p["title"] for p in dashboard["panels"]} >= {
        "Queue lag: submission to first claim",
        "Workers lost (per hour)",
    }
