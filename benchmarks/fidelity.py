"""Fidelity benchmark: servecap's load generator against independent ones, on the same target.

Run on demand (not in CI; needs ``apt-get install wrk nghttp2-client``)::

    .venv/bin/python -m benchmarks.fidelity --target fastapi --rates 100,200 --users 1,4

One target is started; then, for each load, servecap and an independent C generator take
turns driving it for the same time with the same request body, ``--repeat`` times (the
order alternates, so drift in the target hits both alike):

* **Fixed rate** (``--rates``): servecap's open-loop ``rate`` mode (constant arrivals, latency
  from the scheduled send time) against ``h2load --rps`` (nghttp2; one HTTP/1.1 connection,
  per-request log). wrk has no fixed-rate mode (that is wrk2, which Debian does not ship).
  Below capacity the p50s should agree within 10%.
* **Closed loop** (``--users``): servecap with N users against ``wrk -t1 -cN``; for a target
  spoken to over gRPC (``api: grpc``), against N threads of ``tritonclient.grpc``
  (:mod:`benchmarks.threaded_grpc`: the plain threaded Python client, one client per
  thread). servecap's throughput and p50 should be within 10% of it.

Both independent generators time a request from its first byte written to its answer read,
as servecap's wire time does (:mod:`loadtests.wiretime`). With ``--pin`` (the default on
hosts with 2+ CPUs) the target runs on all CPUs but the last and every generator on the last,
so a generator's own CPU use cannot slow the target down and the comparison is of the
measurement alone. Each row prints medians over the repeats, the ratio of the medians, the
range of the per-repeat ratios, each generator's requests per CPU-second (its maximum rate
per core), and servecap's own per-request time around the wire (``client_ms``, reported by
servecap but kept out of its latencies).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import psutil

from analysis.load import read_requests
from analysis.stages import percentile_ms
from loadtests.bodies import build_bodies
from loadtests.generator import start_locust, warm_up
from loadtests.runconfig import LoadRunConfig
from loadtests.spec import LoadPlan, Stage, load_scenarios
from targets.launchers.process import ProcessLauncher, stop_process_group
from targets.protocols import get_protocol
from targets.registry import endpoint_for

SETTLE_S = 2.0
"""Each run's first seconds are left out (connections opening, generator starting)."""
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "{ctype}"
local f = io.open("{body}", "rb")
wrk.body = f:read("*all")
f:close()
"""
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
Result = dict[str, float]


def cpu_seconds(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def watch_cpu(proc: subprocess.Popen[Any]) -> pd.Series:
    """Wait for ``proc``, sampling its (and its children's) CPU seconds: indexed by time."""
    ps = psutil.Process(proc.pid)
    samples: dict[float, float] = {}
    while proc.poll() is None:
        samples[time.time()] = cpu_seconds(ps)
        time.sleep(0.1)
    return pd.Series(samples, dtype=float)


def cpu_between(cpu: pd.Series, start: float, end: float) -> float:
    """CPU seconds used between two wall-clock times (from the nearest samples inside)."""
    inside = cpu[(cpu.index >= start) & (cpu.index <= end)]
    return float(inside.iloc[-1] - inside.iloc[0]) if len(inside) > 1 else float("nan")


def run_servecap(
    base: LoadRunConfig, stage: Stage, out: Path, cpus: str | None, workers: int = 1
) -> Result:
    """One stage (users: closed loop; rps: open loop, constant arrivals) of servecap."""
    mode = "ramp" if stage.users else "rate"
    plan = base.plan.model_copy(update={
        "mode": mode, "stages": (stage,), "settle_s": SETTLE_S, "generator_cpuset": cpus,
        "workers": workers,
    })  # fmt: skip
    config = base.model_copy(update={"plan": plan, "out_dir": str(out)})
    out.mkdir(parents=True)
    path = out / "load_config.json"
    config.write(path)
    proc = start_locust(path, config, out)
    try:
        cpu = watch_cpu(proc)
    finally:
        stop_process_group(proc)
    records = read_requests(out)
    start, end = records["ts"].min() + SETTLE_S, records["ts"].max()
    steady = records[records["ts"] >= start]
    ok = steady[steady["outcome"] == "ok"]
    return {
        "rps": len(ok) / (end - start),
        "p50_ms": percentile_ms(ok["latency_ms"], 50),
        "p99_ms": percentile_ms(ok["latency_ms"], 99),
        "errors": float(len(steady) - len(ok)),
        # Startup (imports, decoding images) is left out: the steady part's sends per CPU-s.
        "rps_per_core": len(steady) / cpu_between(cpu, start, end),
        "client_p50_ms": percentile_ms(ok["client_ms"], 50),
    }


def parse_wrk(text: str) -> Result:
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


def parse_h2load_log(path: Path, settle_s: float) -> Result:
    """h2load ``--log-file`` rows (start µs since epoch, status, duration µs): exact p50/p99."""
    log = pd.read_csv(path, sep="\t", header=None, usecols=[0, 1, 2],
                      names=["start_us", "status", "duration_us"])  # fmt: skip
    steady = log[log["start_us"] >= log["start_us"].min() + settle_s * 1e6]
    ok = steady[steady["status"] == 200]
    span_s = (steady["start_us"].max() - steady["start_us"].min()) / 1e6
    latency_ms = ok["duration_us"] / 1000
    return {"rps": len(ok) / max(span_s, 1e-9), "p50_ms": percentile_ms(latency_ms, 50),
            "p99_ms": percentile_ms(latency_ms, 99), "errors": float(len(steady) - len(ok)),
            "requests": float(len(log))}  # fmt: skip


def run_external(cmd: list[str], cpus: str | None) -> tuple[int, str, float]:
    """Run an independent generator (pinned to ``cpus``): exit status, output, CPU seconds."""
    pinned = ["taskset", "-c", cpus, *cmd] if cpus else cmd
    proc = subprocess.Popen(pinned, stdout=subprocess.PIPE, text=True)
    cpu = watch_cpu(proc)
    output = proc.stdout.read() if proc.stdout else ""
    return proc.wait(), output, float(cpu.iloc[-1]) if len(cpu) else float("nan")


def run_wrk(url: str, body: Path, ctype: str, users: int, duration_s: float,
            cpus: str | None) -> Result:  # fmt: skip
    """Closed loop: ``wrk -t1 -c<users>`` for ``duration_s``."""
    script = body.with_suffix(".lua")
    script.write_text(WRK_SCRIPT.format(ctype=ctype, body=body))
    cmd = ["wrk", "-t1", f"-c{users}", f"-d{int(duration_s)}s", "--latency", "-s", str(script),
           url]  # fmt: skip
    _status, output, cpu_s = run_external(cmd, cpus)
    result = parse_wrk(output)
    result["rps_per_core"] = result["requests"] / max(cpu_s, 1e-9)
    return result


def run_h2load(url: str, body: Path, ctype: str, rps: float, duration_s: float,
               cpus: str | None) -> Result:  # fmt: skip
    """Fixed rate: ``h2load --rps`` on one HTTP/1.1 connection, every request logged."""
    log = body.with_suffix(".h2load.tsv")
    log.unlink(missing_ok=True)
    cmd = ["h2load", "--h1", "-c1", f"--rps={rps:g}", f"--duration={duration_s:g}",
           "--warm-up-time=0", "-d", str(body), "-H", f"content-type: {ctype}",
           f"--log-file={log}", url]  # fmt: skip
    status, output, cpu_s = run_external(cmd, cpus)
    if status != 0 or not log.exists():
        raise RuntimeError(f"h2load failed ({status}): {output}")
    result = parse_h2load_log(log, SETTLE_S)
    result["rps_per_core"] = result["requests"] / max(cpu_s, 1e-9)
    return result


def run_threaded_grpc(grpc_target: str, model: str, body: Path, users: int, duration_s: float,
                      cpus: str | None) -> Result:  # fmt: skip
    """Closed loop over gRPC: ``users`` threads of tritonclient.grpc for ``duration_s``."""
    import json
    import sys

    out = body.with_suffix(".grpc.json")
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.threaded_grpc", "--url", grpc_target,
           "--model", model, "--body", str(body), "--threads", str(users),
           "--duration-s", f"{duration_s:g}", "--out", str(out)]  # fmt: skip
    status, output, cpu_s = run_external(cmd, cpus)
    if status != 0 or not out.exists():
        raise RuntimeError(f"threaded gRPC client failed ({status}): {output[-2000:]}")
    log = pd.DataFrame(json.loads(out.read_text())["requests"])
    start, end = log["ts"].min() + SETTLE_S, log["ts"].max()
    steady = log[log["ts"] >= start]
    ok = steady[steady["ok"]]
    return {"rps": len(ok) / max(end - start, 1e-9), "p50_ms": percentile_ms(ok["latency_ms"], 50),
            "p99_ms": percentile_ms(ok["latency_ms"], 99), "errors": float(len(steady) - len(ok)),
            "rps_per_core": len(log) / max(cpu_s, 1e-9)}  # fmt: skip


def compare(
    ours: Callable[[], Result], theirs: Callable[[], Result], repeat: int
) -> tuple[list[Result], list[Result]]:
    """Run both ``repeat`` times, alternating which goes first."""
    mine: list[Result] = []
    other: list[Result] = []
    for i in range(repeat):
        if i % 2 == 0:
            mine.append(ours())
            other.append(theirs())
        else:
            other.append(theirs())
            mine.append(ours())
    return mine, other


def median(results: list[Result], key: str) -> float:
    return statistics.median(r[key] for r in results)


HEADER = (
    f"{'load':>12} {'vs':>7} | {'servecap rps':>12} {'p50':>6} {'p99':>6} | {'theirs rps':>10}"
    f" {'p50':>6} {'p99':>6} | {'rps ratio':>9} {'(range)':>11} {'p50 ratio':>9} {'(range)':>11}"
    f" {'p99 ratio':>9} | {'req/core-s ours':>15} {'theirs':>7} | {'client_ms':>9}"
)


def _ratios(ours: list[Result], theirs: list[Result], key: str) -> str:
    each = [o[key] / t[key] for o, t in zip(ours, theirs, strict=True)]
    spread = f"{min(each):.2f}-{max(each):.2f}"
    return f"{median(ours, key) / median(theirs, key):>9.3f} {spread:>11}"


def row(load: str, tool: str, ours: list[Result], theirs: list[Result]) -> str:
    p50, p99 = median(ours, "p50_ms"), median(ours, "p99_ms")
    t50, t99 = median(theirs, "p50_ms"), median(theirs, "p99_ms")
    return (
        f"{load:>12} {tool:>7} | {median(ours, 'rps'):>12.1f} {p50:>6.2f} {p99:>6.2f} | "
        f"{median(theirs, 'rps'):>10.1f} {t50:>6.2f} {t99:>6.2f} | "
        f"{_ratios(ours, theirs, 'rps')} {_ratios(ours, theirs, 'p50_ms')} {p99 / t99:>9.3f} | "
        f"{median(ours, 'rps_per_core'):>15.0f} {median(theirs, 'rps_per_core'):>7.0f} | "
        f"{median(ours, 'client_p50_ms'):>9.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--scenarios", default="scenarios.yaml")
    parser.add_argument("--target", default="fastapi")
    parser.add_argument("--rates", default="100,200", help="fixed-rate loads (rps), vs h2load")
    parser.add_argument("--users", default="1,4", help="closed-loop loads (users), vs wrk")
    parser.add_argument("--workers", type=int, default=1,
                        help="servecap generator processes (Locust workers)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction,
                        default=(os.cpu_count() or 1) >= 2,
                        help="target on all CPUs but the last, generators on the last")  # fmt: skip
    parser.add_argument("--data", default=os.environ.get("SERVECAP_CIFAR10_DIR"))
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r]
    users = [int(u) for u in args.users.split(",") if u]
    spec = load_scenarios(args.scenarios)
    config = spec.targets[args.target]
    grpc = get_protocol(endpoint_for(config).protocol).transport == "grpc"
    if grpc and rates:
        raise SystemExit("over gRPC only closed loops are compared (no fixed-rate gRPC client "
                         "here): give --rates ''")  # fmt: skip
    for tool, needed in (("wrk", [] if grpc else users), ("h2load", rates)):
        if needed and shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: apt-get install wrk nghttp2-client")
    gen_cpus: str | None = None
    if args.pin:
        last = (os.cpu_count() or 2) - 1
        gen_cpus = str(last)
        config = config.model_copy(update={"cpuset": f"0-{last - 1}" if last > 1 else "0"})
    plan = LoadPlan(stages=(Stage(users=1, duration_s=10),))
    endpoint = endpoint_for(config)
    base = LoadRunConfig(
        target=args.target, endpoint=endpoint, data_dir=args.data, plan=plan, out_dir=""
    )
    bodies, headers = build_bodies(base)
    ctype = headers.get("Content-Type", "")
    url = base.base_url + base.predict_path
    d = args.duration_s
    rows = []
    with (
        tempfile.TemporaryDirectory() as tmp_dir,
        ProcessLauncher().launch(args.target, config, Path(tmp_dir) / "logs"),
    ):
        tmp = Path(tmp_dir)
        body = tmp / "body"
        body.write_bytes(bodies[0])
        warm_up(base, bodies[0], headers, 200)
        loads = [
            (f"{r:g} rps", "h2load", Stage(rps=r, duration_s=d),
             functools.partial(run_h2load, url, body, ctype, r, d, gen_cpus))
            for r in rates
        ] + [
            (f"{n} users", "wrk", Stage(users=n, duration_s=d),
             functools.partial(run_wrk, url, body, ctype, n, d, gen_cpus))
            for n in users if not grpc
        ] + [
            (f"{n} users", "tc-grpc", Stage(users=n, duration_s=d),
             functools.partial(run_threaded_grpc, str(endpoint.grpc_target),
                               str(endpoint.model_name), body, n, d, gen_cpus))
            for n in users if grpc
        ]  # fmt: skip
        runs = itertools.count()
        for label, tool, stage, theirs_once in loads:
            ours, theirs = compare(
                lambda stage=stage: run_servecap(  # type: ignore[misc]
                    base, stage, tmp / f"run-{next(runs)}", gen_cpus, args.workers
                ),
                theirs_once,
                args.repeat,
            )
            rows.append(row(label, tool, ours, theirs))
    pinned = f"target on CPUs {config.cpuset}, generators on CPU {gen_cpus}" if args.pin else ""
    print(f"target {args.target}, {d:g} s per run ({SETTLE_S:g} s left out), "
          f"{args.repeat} repeats, medians; servecap {args.workers} process(es); "
          f"{pinned or 'not pinned'}")  # fmt: skip
    print(HEADER)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
