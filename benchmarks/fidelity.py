"""Fidelity benchmark: servecap's load generator against wrk, on the same running target.

Run on demand (not in CI)::

    .venv/bin/python -m benchmarks.fidelity --target fastapi --users 1,4 --duration-s 20

For each concurrency, the target is driven for the same time by servecap (Locust, closed
loop, N users) and by wrk (``-t1 -cN``, the same request body); both report p50/p99 and the
rate. It also prints each generator's requests per second per CPU-second it used, i.e.
its maximum request rate per generator core. wrk is an independent C implementation with
HdrHistogram percentiles: agreement says servecap measures the target, not itself.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from analysis.load import read_requests
from analysis.stages import percentile_ms
from loadtests.bodies import build_bodies
from loadtests.generator import start_locust, warm_up
from loadtests.runconfig import LoadRunConfig
from loadtests.spec import LoadPlan, Stage, load_scenarios
from targets.launchers.process import ProcessLauncher, stop_process_group

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "{ctype}"
local f = io.open("{body}", "rb")
wrk.body = f:read("*all")
f:close()
"""
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def cpu_seconds(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def run_servecap(base: LoadRunConfig, users: int, duration_s: float, out: Path) -> dict[str, float]:
    settle = 2.0
    plan = base.plan.model_copy(update={"stages": (Stage(users=users, duration_s=duration_s),),
                                        "settle_s": settle})  # fmt: skip
    config = base.model_copy(update={"plan": plan, "out_dir": str(out)})
    out.mkdir(parents=True)
    path = out / "load_config.json"
    config.write(path)
    proc = start_locust(path, config, out)
    ps = psutil.Process(proc.pid)
    cpu = 0.0
    try:
        while proc.poll() is None:
            cpu = max(cpu, cpu_seconds(ps))
            time.sleep(0.2)
    finally:
        stop_process_group(proc)
    records = read_requests(out)
    start = records["ts"].min() + settle
    window = records[(records["ts"] >= start) & (records["outcome"] == "ok")]
    span = records["ts"].max() - start
    return {
        "rps": len(window) / span,
        "p50_ms": percentile_ms(window["latency_ms"], 50),
        "p99_ms": percentile_ms(window["latency_ms"], 99),
        "rps_per_core": len(records) / max(cpu, 1e-9),
    }


def parse_wrk(text: str) -> dict[str, float]:
    def latency(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not m:
            raise ValueError(f"no {label}% latency in wrk output:\n{text}")
        return float(m.group(1)) * UNITS_MS[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    if not rps or not total:
        raise ValueError(f"unexpected wrk output:\n{text}")
    return {"rps": float(rps.group(1)), "p50_ms": latency("50"), "p99_ms": latency("99"),
            "requests": float(total.group(1))}  # fmt: skip


def run_wrk(url: str, body: bytes, ctype: str, users: int, duration_s: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        body_path = Path(tmp) / "body"
        body_path.write_bytes(body)
        script = Path(tmp) / "post.lua"
        script.write_text(WRK_SCRIPT.format(ctype=ctype, body=body_path))
        proc = subprocess.Popen(
            ["wrk", "-t1", f"-c{users}", f"-d{int(duration_s)}s", "--latency", "-s", str(script),
             url], stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        ps = psutil.Process(proc.pid)
        cpu = 0.0
        while proc.poll() is None:
            cpu = max(cpu, cpu_seconds(ps))
            time.sleep(0.2)
        out = proc.stdout.read() if proc.stdout else ""
    result = parse_wrk(out)
    result["rps_per_core"] = result["requests"] / max(cpu, 1e-9)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default="scenarios.yaml")
    parser.add_argument("--target", default="fastapi")
    parser.add_argument("--users", default="1,4", help="comma-separated concurrencies")
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--data", default=os.environ.get("SERVECAP_CIFAR10_DIR"))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    spec = load_scenarios(args.scenarios)
    config = spec.targets[args.target]
    plan = LoadPlan(stages=(Stage(users=1, duration_s=10),))
    base = LoadRunConfig(
        target=args.target, base_url=config.base_url, data_dir=args.data, plan=plan, out_dir=""
    )
    bodies, ctype = build_bodies(base)
    rows = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        ProcessLauncher().launch(args.target, config, Path(tmp) / "logs"),
    ):
        warm_up(base, bodies[0], ctype, 50)
        for users in (int(u) for u in args.users.split(",")):
            ours = run_servecap(base, users, args.duration_s, Path(tmp) / f"sc-{users}")
            theirs = run_wrk(base.base_url + base.predict_path, bodies[0], ctype, users,
                             args.duration_s)  # fmt: skip
            rows.append((users, ours, theirs))
    print(f"target {args.target}, {args.duration_s:.0f} s per run, closed loop")
    print(f"{'users':>5} | {'servecap rps':>12} {'p50':>7} {'p99':>7} | {'wrk rps':>8} {'p50':>7}"
          f" {'p99':>7} | {'p50 ratio':>9} {'p99 ratio':>9} | {'req/core-s servecap':>19}"
          f" {'wrk':>7}")  # fmt: skip
    for users, ours, theirs in rows:
        print(f"{users:>5} | {ours['rps']:>12.1f} {ours['p50_ms']:>7.2f} {ours['p99_ms']:>7.2f} | "
              f"{theirs['rps']:>8.1f} {theirs['p50_ms']:>7.2f} {theirs['p99_ms']:>7.2f} | "
              f"{ours['p50_ms'] / theirs['p50_ms']:>9.3f} {ours['p99_ms'] / theirs['p99_ms']:>9.3f}"
              f" | {ours['rps_per_core']:>19.0f} {theirs['rps_per_core']:>7.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
