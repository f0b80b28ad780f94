"""A run's results folder: made for it alone, then finished (parts merged, stages labelled,
summary.json written).

:func:`new_results_dir` creates the folder atomically, so two runs never share one, even
when they start in the same second.

:class:`SummaryWriter` is the one writer of ``summary.json``: the orchestrator hands it each
target's entry as soon as that target is done (so an interrupted run keeps a summary of what
finished) and the SLO gates at the end; every write is atomic (:mod:`analysis.contract`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from analysis.contract import (
    FINDMAX_FILE,
    REQUEST_PARTS,
    REQUESTS_FILE,
    RESOURCES_FILE,
    SAMPLE_PARTS,
    SEQUENTIAL_FILE,
    SERVER_METRICS_FILE,
    SERVER_METRICS_PART,
    SUMMARY_FILE,
    GatesSummary,
    RunSummary,
    Summary,
    read_json,
    write_atomically,
    write_json,
)
from analysis.load import read_requests, read_samples, read_server_metrics, read_timeline
from analysis.sequential import sequential_summary
from analysis.server_metrics import add_to_stages as add_server_metrics
from analysis.stages import (
    assign_stage,
    json_safe,
    label_requests,
    overall_stats,
    stage_stats,
    steady_windows,
    timeline_frame,
)
from loadtests import clock
from loadtests.gates import GateResult
from loadtests.spec import SLO
from targets.launchers.base import held_signals

RESULTS_ROOT = Path("results")
MAX_SAME_SECOND_RUNS = 1_000


class ResultsFolderError(ValueError):
    """The results folder given cannot be this run's alone (it holds files)."""


def run_stamp() -> str:
    """The timestamp of a default results folder's name (local time, to the second)."""
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def new_results_dir(given: Path | None, scenario: str, root: Path = RESULTS_ROOT) -> Path:
    """This run's own results folder, created now (absolute).

    ``given`` (``--out``) is created, or taken when it is an empty folder; one holding files
    is refused (servecap never writes into earlier results). Without it, the folder is
    ``root/<scenario>-<timestamp>``, or ``...-2``, ``-3`` when runs started in the same second
    took those: each name is claimed by ``mkdir`` without ``exist_ok``, which only one of
    several racing runs can win.
    """
    if given is not None:
        given = given.resolve()
        given.parent.mkdir(parents=True, exist_ok=True)
        try:
            given.mkdir()
        except FileExistsError:
            if not given.is_dir() or any(given.iterdir()):
                raise ResultsFolderError(
                    f"results folder {given} is not empty: servecap never overwrites results; "
                    "give --out a new folder (or leave it out for a timestamped one)"
                ) from None
        return given
    root.mkdir(parents=True, exist_ok=True)
    base = f"{scenario}-{run_stamp()}"
    for n in range(1, MAX_SAME_SECOND_RUNS + 1):
        path = root / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path.resolve()
    raise ResultsFolderError(f"{MAX_SAME_SECOND_RUNS} runs named {root / base}: pass --out")


@dataclass
class Finalized:
    stages: list[dict[str, Any]] = field(default_factory=list)
    overall: dict[str, Any] = field(default_factory=dict)


def finalize_target(
    target_dir: Path, settle_s: float, primary: str | None = None, late_ms: float | None = None
) -> Finalized:
    """Write requests.parquet / resources.parquet (with ``stage``); stage and overall stats.

    The Parquet files are written atomically and the CSV parts removed only afterwards, so a
    failure here loses nothing. Empty when the load never started (no timeline).
    """
    requests = read_requests(target_dir)
    samples = read_samples(target_dir)
    server = read_server_metrics(target_dir)
    raw = read_timeline(target_dir)
    if raw is None:
        return Finalized()
    last_ts = float(requests["ts"].max()) if len(requests) else None
    timeline = timeline_frame(raw, open_end_ts=max(last_ts or 0.0, clock.now()))
    labelled = label_requests(requests, timeline, settle_s)
    if not samples.empty:
        samples = samples.assign(stage=assign_stage(samples["ts"], timeline, clip=False))
    if not server.empty:
        server = server.assign(stage=assign_stage(server["ts"], timeline, clip=False))
    with held_signals():  # the Parquet files and the removal of their parts: all or nothing
        write_atomically(target_dir / REQUESTS_FILE,
                         lambda p: labelled.to_parquet(p, index=False))  # fmt: skip
        write_atomically(target_dir / RESOURCES_FILE,
                         lambda p: samples.to_parquet(p, index=False))  # fmt: skip
        if not server.empty:
            write_atomically(target_dir / SERVER_METRICS_FILE,
                             lambda p: server.to_parquet(p, index=False))  # fmt: skip
        parts = [*target_dir.glob(REQUEST_PARTS), *(target_dir / n for n in SAMPLE_PARTS),
                 target_dir / SERVER_METRICS_PART]  # fmt: skip
        for part in parts:
            part.unlink(missing_ok=True)
    stages = stage_stats(labelled, samples, timeline, settle_s, primary, late_ms)
    add_server_metrics(stages, server, steady_windows(timeline, settle_s))
    return Finalized(stages, overall_stats(labelled, timeline, settle_s, primary, late_ms))


def mode_results(target_dir: Path, mode: str) -> dict[str, Any]:
    """Mode-specific results for summary.json: find-max's search, sequential totals."""
    if mode == "find-max" and (target_dir / FINDMAX_FILE).exists():
        return {"find_max": read_json(target_dir / FINDMAX_FILE)}
    if mode == "sequential" and (target_dir / SEQUENTIAL_FILE).exists():
        return {"sequential": sequential_summary(read_json(target_dir / SEQUENTIAL_FILE))}
    return {}


class SummaryWriter:
    """Builds summary.json and writes it, atomically, after every change."""

    def __init__(self, out_dir: Path, scenario: str) -> None:
        self.path = out_dir / SUMMARY_FILE
        self.summary: Summary = {"scenario": scenario, "runs": []}
        self.write()

    @property
    def runs(self) -> list[RunSummary]:
        return self.summary["runs"]

    def add_run(self, entry: RunSummary) -> None:
        self.summary["runs"].append(entry)
        self.write()

    def set_gates(self, slo: SLO, results: list[GateResult]) -> GatesSummary:
        gates: GatesSummary = {
            "slo": slo.model_dump(),
            "results": [cast(Any, asdict(r)) for r in results],
            "passed": all(r.passed for r in results),
        }
        self.summary["gates"] = gates
        self.write()
        return gates

    def write(self) -> None:
        write_json(self.path, json_safe(self.summary))


def write_paper_tables(out: Path, summary: Summary) -> list[Path]:
    """Tables 3 and 4 in the paper's layout, ours beside the published figures (CSV + text)."""
    from analysis.paper import table3, table4
    from analysis.tables import stage_table

    stages = stage_table(cast(dict[str, Any], summary), source="run")
    if stages.empty:
        return []
    summaries = {"run": cast(dict[str, Any], summary)}
    t3 = table3(stages, summaries=summaries)
    t4 = table4(stages, summaries=summaries)
    paths = [out / "table3.csv", out / "table4.csv", out / "paper_tables.txt"]
    write_atomically(paths[0], lambda p: t3.to_csv(p))
    write_atomically(paths[1], lambda p: t4.to_csv(p, index=False))
    text = (
        "Table 3: mean total seconds for N sequential requests (paper vs ours)\n\n"
        f"{t3.round(3).to_string()}\n\nTable 4: CPU and RAM while serving (paper: 8 cores)\n\n"
        f"{t4.round(2).to_string(index=False)}\n"
    )
    write_atomically(paths[2], lambda p: p.write_text(text, encoding="utf-8"))
    return paths
