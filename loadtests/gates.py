"""SLO gates: check a run's figures against the scenario's ``slo:`` and report as text or JUnit.

This is how Locust-headless-in-CI users gate a deployment: ``servecap run`` exits non-zero
when a gate fails, printing what failed and by how much, and ``--junit FILE`` writes one
test case per target and objective for CI systems.

Scopes: ``overall`` checks the whole run's steady windows taken together (exact percentiles
over all of them, not an average of stage percentiles); ``every-stage`` checks each stage;
``last-stage`` the last one. A target whose run failed fails every gate.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

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


def _check(
    target: str, scope: str, stats: dict[str, Any], objective: str, limit: float
) -> GateResult:
    figure, at_most = OBJECTIVES[objective]
    value = stats.get(figure)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        message = f"{target} {scope}: no {figure} measured (no successful requests?)"
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
        return [GateResult(target, "run", name, None, limit, False,
                           f"{target}: run {run.get('status')}: {run.get('error')}")
                for name, limit in objectives]  # fmt: skip
    if slo.scope == "overall":
        scopes = [("overall", run.get("overall") or {})]
    else:
        stages = run.get("stages") or []
        chosen = stages if slo.scope == "every-stage" else stages[-1:]
        scopes = [(f"stage {s['index'] + 1}", s) for s in chosen] or [("overall", {})]
    return [_check(target, scope, stats, name, limit)
            for scope, stats in scopes for name, limit in objectives]  # fmt: skip


def check_summary(summary: dict[str, Any], slo: SLO) -> list[GateResult]:
    return [result for run in summary.get("runs", []) for result in check_run(run, slo)]


def junit_xml(results: list[GateResult], suite: str) -> str:
    """JUnit XML: one test case per target, scope and objective."""
    failures = sum(not r.passed for r in results)
    root = ET.Element("testsuites", name="servecap", tests=str(len(results)),
                      failures=str(failures))  # fmt: skip
    node = ET.SubElement(root, "testsuite", name=suite, tests=str(len(results)),
                         failures=str(failures))  # fmt: skip
    for r in results:
        case = ET.SubElement(node, "testcase", classname=f"{suite}.{r.target}",
                             name=f"{r.scope}: {r.objective}")  # fmt: skip
        if not r.passed:
            ET.SubElement(case, "failure", message=r.message, type="SLOBreach").text = r.message
        else:
            ET.SubElement(case, "system-out").text = r.message
    return ET.tostring(root, encoding="unicode", xml_declaration=True)
