"""``servecap run SCENARIO --repeat N``: the same scenario N times, and how much it moved.

Each repeat is a complete run in ``<out>/run-<i>`` (its own summary, records, gates); after
the last, ``<out>/repeats.json`` holds the run-to-run spread of every target and stage
(:mod:`analysis.spread`) and one line per stage is printed: median throughput and p99 with
their range. The outcome is the repeats' combined one: a target that failed in any repeat
fails, a gate breached in any repeat is breached, an interrupt stops the remaining repeats.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from analysis.contract import read_json, stage_number, write_json
from analysis.spread import REPEATS_FILE, RUN_FOLDER, spread
from analysis.stages import json_safe
from loadtests.orchestrator import PreflightError, RunOptions, RunOutcome, preflight, run
from loadtests.results import ResultsFolderError, new_results_dir

Echo = Callable[[str], None]


def run_repeated(options: RunOptions, repeat: int, echo: Echo = print) -> RunOutcome:
    preflight(options)  # before the first repeat, all of it
    try:
        base = new_results_dir(options.out_dir, options.scenario)  # this --repeat's own
    except ResultsFolderError as err:
        raise PreflightError(str(err)) from None
    outcomes: list[RunOutcome] = []
    for i in range(1, repeat + 1):
        echo(f"servecap: repeat {i}/{repeat}")
        folder = base / RUN_FOLDER.format(i)
        outcome = run(dataclasses.replace(options, out_dir=folder), echo=echo)
        outcomes.append(outcome)
        if outcome.interrupted:
            break
    summaries = [read_json(o.out_dir / "summary.json") for o in outcomes]
    result = spread(summaries)
    write_json(base.resolve() / REPEATS_FILE, json_safe(result))
    for target, info in result["targets"].items():
        for st in info["stages"]:
            rps, p99 = st["goodput_rps"], st["p99_ms"]
            if rps["median"] is None:
                continue
            echo(f"[{target}] stage {stage_number(st['index'])} over {rps['runs']} runs: goodput "
                 f"{rps['median']:.1f} rps ({rps['min']:.1f}-{rps['max']:.1f}), p99 "
                 f"{_ms(p99)}")  # fmt: skip
    return RunOutcome(
        out_dir=base.resolve(),
        summary=outcomes[-1].summary,
        failures=[f"repeat {i}: {f}" for i, o in enumerate(outcomes, 1) for f in o.failures],
        interrupted=any(o.interrupted for o in outcomes),
        gates=[g for o in outcomes for g in o.gates],
    )


def _ms(figure: dict[str, float | None]) -> str:
    if figure["median"] is None:
        return "-"
    return f"{figure['median']:.1f} ms ({figure['min']:.1f}-{figure['max']:.1f})"
