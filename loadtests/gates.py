"""SLO gates: check a run's figures against the scenario's ``slo:`` and report as text or JUnit.

This is how Locust-headless-in-CI users gate a deployment: ``servecap run`` exits non-zero
when a gate fails, printing what failed and by how much, and ``--junit FILE`` writes one
test case per target and objective for CI systems.

Scopes: ``overall`` checks the whole run's steady windows taken together (exact percentiles
over all of them, not an average of stage percentiles); ``every-stage`` checks each stage;
``last-stage`` the last one. ``judge: upper-bound`` checks latency objectives against the
upper end of the percentile's 95% confidence interval (``p99_ci_ms``), so a p99 resting on
too few requests cannot pass. A target whose run failed is one error of its own (a JUnit
``error``), not one breach per objective.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from analysis.contract import stage_number
from loadtests.spec import SLO

# objective -> (figure in the stats, True when the figure must stay at or under the limit)
OBJECTIVES = {
    "p99_ms": ("p99_ms", True),
    "p95_ms": ("p95_ms", True),
    "max_error_rate": ("error_rate", True),
    "max_reject_rate": ("reject_rate", True),
    "min_rps": ("rps", False),
}


@dataclass(frozen=True)
class GateResult:
    target: str
    scope: str
    objective: str
    measured: float | None
    limit: float
    passed: bool
    message: str
    error: bool = False
    """The run itself failed: nothing could be judged."""


def _figure(stats: dict[str, Any], figure: str, judge: str) -> tuple[Any, str]:
    """The value an objective is judged on, and its name."""
    interval = f"{figure.removesuffix('_ms')}_ci_ms"
    if judge != "upper-bound" or interval not in OBJECTIVE_INTERVALS:
        return stats.get(figure), figure
    bounds = stats.get(interval)
    return (bounds[1] if bounds else None), f"{figure} upper 95% bound"


OBJECTIVE_INTERVALS = ("p95_ci_ms", "p99_ci_ms")


def _check(
    target: str, scope: str, stats: dict[str, Any], objective: str, limit: float,
    judge: str = "point",
) -> GateResult:  # fmt: skip
    figure, at_most = OBJECTIVES[objective]
    value, figure = _figure(stats, figure, judge)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        why = stats.get("p99_ci_note") if "bound" in figure else None
        message = f"{target} {scope}: no {figure} ({why or 'no successful requests?'})"
        return GateResult(target, scope, objective, None, limit, False, message)
    passed = value <= limit if at_most else value >= limit
    sign = "<=" if at_most else ">="
    if passed:
        message = f"{target} {scope}: {figure} {value:.4g} {sign} {limit:.4g}"
    else:
        by = (value - limit) / limit if limit else math.inf
        message = (f"{target} {scope}: {figure} {value:.4g} breaks {sign} {limit:.4g} "
                   f"(by {abs(by):.0%})")  # fmt: skip
    return GateResult(target, scope, objective, float(value), limit, passed, message)


def check_run(run: dict[str, Any], slo: SLO) -> list[GateResult]:
    """Every objective of ``slo`` for one run entry of summary.json."""
    target = run["target"]
    objectives = [
        (name, getattr(slo, name)) for name in OBJECTIVES if getattr(slo, name) is not None
    ]
    if run.get("status") != "ok":
        message = f"{target}: run {run.get('status')}: {run.get('error')}"
        return [GateResult(target, "run", "run", None, 0.0, False, message, error=True)]
    if slo.scope == "overall":
        scopes = [("overall", run.get("overall") or {})]
    else:
        stages = run.get("stages") or []
        chosen = stages if slo.scope == "every-stage" else stages[-1:]
        scopes = [(f"stage {stage_number(s['index'])}", s) for s in chosen] or [("overall", {})]
    return [_check(target, scope, stats, name, limit, slo.judge)
            for scope, stats in scopes for name, limit in objectives]  # fmt: skip


def check_summary(summary: dict[str, Any], slo: SLO) -> list[GateResult]:
    return [result for run in summary.get("runs", []) for result in check_run(run, slo)]


def junit_xml(results: list[GateResult], suite: str) -> str:
    """JUnit XML: one test case per target, scope and objective; a failed run is one case
    with an ``error`` (it ran no objective)."""
    errors = sum(r.error for r in results)
    failures = sum(not r.passed and not r.error for r in results)
    counts = {"tests": str(len(results)), "failures": str(failures), "errors": str(errors)}
    root = ET.Element("testsuites", {"name": "servecap", **counts})
    node = ET.SubElement(root, "testsuite", {"name": suite, **counts})
    for r in results:
        case = ET.SubElement(node, "testcase", classname=f"{suite}.{r.target}",
                             name=f"{r.scope}: {r.objective}")  # fmt: skip
        if r.error:
            ET.SubElement(case, "error", message=r.message, type="RunFailed").text = r.message
        elif not r.passed:
            ET.SubElement(case, "failure", message=r.message, type="SLOBreach").text = r.message
        else:
            ET.SubElement(case, "system-out").text = r.message
    return ET.tostring(root, encoding="unicode", xml_declaration=True)
