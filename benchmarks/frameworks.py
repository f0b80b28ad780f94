"""Frameworks benchmark: each serving framework, batching off and on, against the model itself.

Run on demand (not in CI)::

    .venv/bin/python -m benchmarks.frameworks [--targets ray-serve,ray-serve-batch,...]
        [--cpus 0] [--price-core-hour 0.04 --price-gb-hour 0.005]

In one run, on the same pinned CPUs (machinery of :mod:`benchmarks.batching`):

1. **reference**: the SavedModel called in-process at batch 64 (and 1), pinned to the target
   CPUs: images per second, the cores it kept busy, its RSS;
2. **each target**: find-max under p99 <= ``--slo-p99-ms`` (open-loop arrivals), the target
   pinned to the CPUs and the load generator on the others; its lightest point is its light
   load.

Per target (:mod:`analysis.frameworks`): capacity under the SLO, p50 at light load, CPU cores
and RAM per 1,000 rps at capacity, core-/GB-hours and cost per million, each also as a ratio
of the reference: the in-process model at batch 64 (its throughput, cores and RSS per image);
p50 against the in-process single-image call, the model's own light-load latency.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from analysis.cost import Prices
from analysis.frameworks import FIGURES, figures, ratios
from analysis.load import read_summary
from benchmarks.batching import TARGET_CPUS_DEFAULT, best_stage, fmt, scenario_file

FRAMEWORK_TARGETS = (
    "ray-serve,ray-serve-batch,bentoml,bentoml-batch,litserve,litserve-batch,"
    "mlserver,mlserver-batch,kserve"
)
INPROCESS_SECONDS = 8.0
SEARCH = {"start_rps": 20, "step_factor": 1.6, "window_s": 3, "stable_windows": 2,
          "max_hold_s": 12, "tolerance": 0.1, "max_points": 8}  # fmt: skip
REFERENCE_CODE = """
import json, time, psutil
from pathlib import Path
from benchmarks.batching import inprocess
me = psutil.Process()
light = inprocess(Path({model!r}), 1, {seconds})
cpu0, t0 = sum(me.cpu_times()[:2]), time.perf_counter()
full = inprocess(Path({model!r}), 64, {seconds})
cores = (sum(me.cpu_times()[:2]) - cpu0) / (time.perf_counter() - t0)
print(json.dumps({{"light": light, "full": full, "cores": cores,
                  "mem_mb": me.memory_info().rss / 2**20}}))
"""


def measure_reference(model: Path, cpus: str, seconds: float) -> dict[str, Any]:
    """The in-process model at batch 1 and 64 in a child pinned to ``cpus``: images/s and ms a
    call (``benchmarks.batching.inprocess``), the cores busy at batch 64 and the RSS."""
    from targets.config import parse_cpuset

    pinned = parse_cpuset(cpus)
    proc = subprocess.run(
        [sys.executable, "-c", REFERENCE_CODE.format(model=str(model), seconds=seconds)],
        capture_output=True, text=True, check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, pinned),
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    found: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return found


def reference_figures(measured: dict[str, Any], prices: Prices) -> dict[str, float]:
    """The reference's :data:`~analysis.frameworks.FIGURES`: throughput, cores and RSS at batch
    64; its light-load p50 is the single-image call."""
    return figures(measured["full"]["images_per_s"], measured["light"]["ms_per_call"],
                   measured["cores"], measured["mem_mb"], prices)  # fmt: skip


def target_figures(entry: dict[str, Any], prices: Prices) -> dict[str, float]:
    """A target's figures from its find-max run in ``summary.json``."""
    at = best_stage(entry)
    found = (entry.get("find_max") or {}).get("max_rps")
    stages = [s for s in entry.get("stages", []) if s.get("rps")]
    light = min(stages, key=lambda s: float(s["rps"])) if stages else {}
    cores = float(at["cpu_pct"]) / 100 if at.get("cpu_pct") is not None else float("nan")
    return figures(float(found) if found else float("nan"),
                   float(light.get("p50_ms") or "nan"), cores,
                   float(at.get("mem_mb") or "nan"), prices)  # fmt: skip


HEADER = (f"{'target':<16} {'capacity rps':>14} {'p50 light ms':>14} {'cores/1k rps':>14} "
          f"{'RAM GB/1k rps':>14} {'core-h/M':>12} {'GB-h/M':>12} {'cost/M':>12}")  # fmt: skip
FORMATS = (".1f", ".2f", ".2f", ".2f", ".2f", ".2f", ".3f")


def row(name: str, values: dict[str, float], reference: dict[str, float]) -> str:
    """One table line: each figure and, beneath the name's width, its ratio to the reference."""
    ratio = ratios(values, reference)
    cells = [f"{_fmt(values[f], spec)} ({_fmt(ratio[f], '.2f')}x)"
             for f, spec in zip(FIGURES, FORMATS, strict=True)]  # fmt: skip
    widths = (14, 14, 14, 14, 12, 12, 12)
    return f"{name:<16} " + " ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))


def _fmt(value: float, spec: str) -> str:
    return fmt(None if math.isnan(value) else value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", default=FRAMEWORK_TARGETS)
    parser.add_argument("--scenarios", type=Path, default=Path("scenarios.yaml"))
    parser.add_argument("--model", type=Path, default=Path("artifacts/models/cifar10_cnn"))
    parser.add_argument("--slo-p99-ms", type=float, default=100.0)
    parser.add_argument("--cpus", default=TARGET_CPUS_DEFAULT, help="target CPUs")
    parser.add_argument("--generator-cpus", default=None, help="default: every other CPU")
    parser.add_argument("--price-core-hour", type=float, default=0.0)
    parser.add_argument("--price-gb-hour", type=float, default=0.0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--data", default=os.environ.get("SERVECAP_CIFAR10_DIR"))
    args = parser.parse_args()

    import yaml

    from loadtests.orchestrator import RunOptions, run
    from loadtests.spec import parse_scenarios
    from targets.config import parse_cpuset

    prices = Prices(core_hour=args.price_core_hour, gb_hour=args.price_gb_hour)
    target_cpus = set(parse_cpuset(args.cpus))
    others = [c for c in range(os.cpu_count() or 1) if c not in target_cpus]
    generator = args.generator_cpus or ",".join(str(c) for c in others) or args.cpus
    print(f"in-process model on CPUs {args.cpus} ({INPROCESS_SECONDS:g} s per batch size)...")
    measured = measure_reference(args.model, args.cpus, INPROCESS_SECONDS)
    reference = reference_figures(measured, prices)
    targets = [t for t in args.targets.split(",") if t]
    data = scenario_file(targets, yaml.safe_load(args.scenarios.read_text()), args.cpus,
                         generator, args.slo_p99_ms)  # fmt: skip
    load = data["scenarios"]["batching-max"]["load"]
    load.update({"encoding": "json", "max_in_flight": 256, "find_max": SEARCH})  # every protocol
    spec = parse_scenarios(data, "benchmarks.frameworks")
    out = args.out or Path("results") / f"frameworks-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"find-max per target (target on CPUs {args.cpus}, generator on {generator}) -> {out}")
    run(RunOptions("batching-max", spec, args.scenarios, out, data_dir=args.data), echo=print)
    summary = read_summary(out)

    print(f"\nreference: the model in-process on CPUs {args.cpus}: batch 64 "
          f"{measured['full']['images_per_s']:.0f} images/s on {measured['cores']:.2f} cores, "
          f"RSS {measured['mem_mb']:.0f} MB; batch 1 {measured['light']['ms_per_call']:.2f} ms "
          f"a call. Ratios (x) are to it; SLO p99 <= {args.slo_p99_ms:g} ms.")  # fmt: skip
    print(HEADER)
    print(row("in-process b64", reference, reference))
    for entry in summary["runs"]:
        print(row(entry["target"], target_figures(entry, prices), reference))


if __name__ == "__main__":
    main()
