"""Batching benchmark: how much of what the model does in-process each target delivers.

Run on demand (not in CI)::

    .venv/bin/python -m benchmarks.batching [--targets triton,triton-grpc,fastapi-batch,fastapi]

In one run, on the same CPUs:

1. **in-process**: the SavedModel called directly (``Predictor``), at batch 1 and at batch 64,
   in a process pinned to the target CPUs; images per second;
2. **each target**: its highest single-image throughput meeting p99 <= ``--slo-p99-ms``
   (100 ms), found by servecap's ``find-max`` mode (open-loop arrivals, each rate held until
   consecutive windows agree, then bisected), with the target pinned to the same CPUs and the
   load generator on the others (``cpuset`` / ``generator_cpuset``).

Each target's throughput is printed as a ratio of the in-process batch-64 throughput, with its
p50/p99 at that rate, the mean batch size its server reported (``server_batch_size_mean``),
where a request's time went on the server (queue, model) and the target's CPU. The targets
come from scenarios.yaml; the run's results folders are kept (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from analysis.load import read_summary
from targets.common.settings import DEFAULT_MODEL_PATH

TARGET_CPUS_DEFAULT = "0"
INPROCESS_SECONDS = 8.0


def inprocess(model: Path, batch: int, seconds: float) -> dict[str, float]:
    """Images per second and ms per call of the model called directly with ``batch`` images."""
    import numpy as np

    from targets.common.model import Predictor

    predictor = Predictor(model)
    images = np.random.default_rng(0).integers(0, 256, (batch, 32, 32, 3)).astype(np.float32)
    for _ in range(5):
        predictor.predict(images)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        predictor.predict(images)
        calls += 1
    elapsed = time.perf_counter() - start
    return {"images_per_s": calls * batch / elapsed, "ms_per_call": 1000 * elapsed / calls}


def measure_inprocess(model: Path, cpus: str, seconds: float) -> dict[int, dict[str, float]]:
    """:func:`inprocess` at batch 1 and 64 in a child process pinned to ``cpus``."""
    from targets.config import parse_cpuset

    code = (
        "import json, sys; from pathlib import Path; from benchmarks.batching import inprocess; "
        f"print(json.dumps({{b: inprocess(Path({str(model)!r}), b, {seconds}) "
        "for b in (1, 64)}))"
    )
    pinned = parse_cpuset(cpus)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, pinned),
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {int(k): v for k, v in result.items()}


def scenario_file(
    targets: list[str], spec: dict[str, Any], cpus: str, generator_cpus: str, slo_ms: float
) -> dict[str, Any]:
    """A find-max scenario over ``targets`` (their scenarios.yaml entries, pinned)."""
    chosen = {name: {**spec["targets"][name], "cpuset": cpus} for name in targets}
    search = {"start_rps": 50, "step_factor": 1.5, "window_s": 4, "stable_windows": 3,
              "max_hold_s": 24, "tolerance": 0.05, "max_points": 14}  # fmt: skip
    return {
        "targets": chosen,
        "scenarios": {
            "batching-max": {
                "targets": targets,
                "slo": {"p99_ms": slo_ms},
                "load": {
                    "mode": "find-max",
                    "encoding": "binary",
                    "generator_cpuset": generator_cpus,
                    "max_in_flight": 512,
                    "find_max": search,
                },
            }
        },
    }


def best_stage(run: dict[str, Any]) -> dict[str, Any]:
    """The find-max point that was found (the passing stage at its max_rps)."""
    found = (run.get("find_max") or {}).get("max_rps")
    passing = [s for s in run.get("stages", []) if s.get("rps")]
    if found is None or not passing:
        return {}
    return min(passing, key=lambda s: abs(float(s["rps"]) - float(found)))


def fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(float(value), spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", default="triton,triton-grpc,fastapi-batch,fastapi")
    parser.add_argument("--scenarios", type=Path, default=Path("scenarios.yaml"))
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--slo-p99-ms", type=float, default=100.0)
    parser.add_argument("--cpus", default=TARGET_CPUS_DEFAULT, help="target CPUs")
    parser.add_argument("--generator-cpus", default=None, help="default: every other CPU")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--data", default=os.environ.get("SERVECAP_CIFAR10_DIR"))
    args = parser.parse_args()

    import yaml

    from loadtests.orchestrator import RunOptions, run
    from loadtests.spec import parse_scenarios
    from targets.config import parse_cpuset

    target_cpus = set(parse_cpuset(args.cpus))
    others = [c for c in range(os.cpu_count() or 1) if c not in target_cpus]
    generator = args.generator_cpus or ",".join(str(c) for c in others) or args.cpus
    print(f"in-process model on CPUs {args.cpus} ({INPROCESS_SECONDS:g} s per batch size)...")
    model = measure_inprocess(args.model, args.cpus, INPROCESS_SECONDS)
    base = model[64]["images_per_s"]
    targets = [t for t in args.targets.split(",") if t]
    data = scenario_file(targets, yaml.safe_load(args.scenarios.read_text()), args.cpus,
                         generator, args.slo_p99_ms)  # fmt: skip
    spec = parse_scenarios(data, "benchmarks.batching")
    out = args.out or Path("results") / f"batching-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"find-max per target (target on CPUs {args.cpus}, generator on {generator}) -> {out}")
    run(RunOptions("batching-max", spec, args.scenarios, out, data_dir=args.data), echo=print)
    summary = read_summary(out)

    print(f"\nin-process: batch 1 {model[1]['images_per_s']:.0f} images/s "
          f"({model[1]['ms_per_call']:.2f} ms a call), batch 64 {base:.0f} images/s "
          f"({model[64]['ms_per_call']:.1f} ms a call) = 1.00")  # fmt: skip
    header = (f"{'target':<16} {'max rps':>8} {'x b64':>6} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'batch':>6} {'queue ms':>9} {'model ms':>9} {'cpu %':>6}  settings")  # fmt: skip
    print(header)
    for entry in summary["runs"]:
        stage = best_stage(entry)
        found = (entry.get("find_max") or {}).get("max_rps")
        config = data["targets"][entry["target"]]
        knobs = ", ".join(f"{k}={v}" for k, v in config.items()
                          if k in ("max_batch_size", "max_queue_delay_us", "batch_max",
                                   "batch_timeout_ms", "api", "workers"))  # fmt: skip
        ratio = float(found) / base if found else None
        print(f"{entry['target']:<16} {fmt(found):>8} {fmt(ratio, '.2f'):>6} "
              f"{fmt(stage.get('p50_ms')):>7} {fmt(stage.get('p99_ms')):>7} "
              f"{fmt(stage.get('server_batch_size_mean')):>6} "
              f"{fmt(stage.get('server_queue_ms'), '.2f'):>9} "
              f"{fmt(stage.get('server_model_ms'), '.2f'):>9} "
              f"{fmt(stage.get('cpu_pct'), '.0f'):>6}  {knobs or 'no batching'}")  # fmt: skip


if __name__ == "__main__":
    main()
