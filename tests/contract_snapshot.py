"""The shape of a results folder: key sets of summary.json, columns and dtypes of the Parquet
files. ``tests/fixtures/smoke_contract.json`` holds the shape of a ``smoke`` run; the smoke
test compares each new run's shape with it, so the contract cannot drift silently.

Regenerate it after a deliberate change of the contract (and say so in the commit)::

    .venv/bin/python -m tests.contract_snapshot results/<a smoke run> > \\
        tests/fixtures/smoke_contract.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

FIXTURE = Path(__file__).with_name("fixtures") / "smoke_contract.json"

OPTIONAL_STAGE_KEYS = {
    "reject_p50_ms",
    "reject_p99_ms",
    "top_error",
    "by_name",
    "p99_ci_note",
    "arrival_rps",
}
"""Stage keys present only when a stage has rejections, errors, several request types, too few
requests to bound its p99 (a slow or busy machine) or an arrival rate (open loop)."""


def _keys(items: list[dict[str, Any]]) -> list[str]:
    return sorted({k for item in items for k in item})


def snapshot(run_dir: Path) -> dict[str, Any]:
    summary = json.loads((run_dir / "summary.json").read_text())
    runs = summary["runs"]
    stages = [s for r in runs for s in r.get("stages", [])]
    out: dict[str, Any] = {
        "summary": sorted(summary),
        "run": _keys(runs),
        "stage": sorted(set(_keys(stages)) - OPTIONAL_STAGE_KEYS),
        "overall": sorted(set(_keys([r["overall"] for r in runs])) - OPTIONAL_STAGE_KEYS),
        "capacity": _keys([r["capacity"] for r in runs if "capacity" in r]),
        "meta": sorted(json.loads((run_dir / "meta.json").read_text())),
    }
    for name in ("requests.parquet", "resources.parquet"):
        schema = pq.read_schema(run_dir / runs[0]["target"] / name)
        out[name] = {field.name: str(field.type) for field in schema}
    return out


if __name__ == "__main__":
    json.dump(snapshot(Path(sys.argv[1])), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
