"""The results contract: what a ``servecap run`` folder holds, file by file, column by column.

The bottom of servecap's imports: the recorder and the collectors write these files, the
orchestrator writes the summary, analysis, reports and gates read them. This module imports
only the standard library, so the Locust processes can use it too.

::

    <run>/summary.json  meta.json  scenario.yaml        (SUMMARY_FILE, META_FILE, SCENARIO_FILE)
    <run>/<target>/requests.parquet   REQUEST_COLUMNS + LABEL_COLUMNS, one row per request
                   resources.parquet  SAMPLE_COLUMNS (+ the Docker / NVML extras) + stage
                   timeline.json      stage boundaries (TimelineRow)
                   load_config.json   what the generator was told
                   locust_*.csv       Locust's own statistics;  logs/  the target's logs

While a run goes, requests are appended to ``requests-<part>.csv`` parts and samples to
:data:`SAMPLE_PARTS`; finalising turns them into the Parquet files. Every JSON and Parquet
file is written atomically (a temporary file in the same folder, then a rename), so a file
is either the old one or the complete new one, never a truncated mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Literal, TypedDict

# The job queue's request names, decided by its protocol (targets/ must not import analysis:
# the images carry targets/ alone); part of the records' contract, re-exported here.
from targets.record_names import JOB_POLL_REQUEST as JOB_POLL_REQUEST
from targets.record_names import JOB_REQUEST as JOB_REQUEST
from targets.record_names import JOB_SUBMIT_REQUEST as JOB_SUBMIT_REQUEST

# --------------------------------------------------------------------------- file names

SUMMARY_FILE = "summary.json"
META_FILE = "meta.json"
SCENARIO_FILE = "scenario.yaml"
REQUESTS_FILE = "requests.parquet"
RESOURCES_FILE = "resources.parquet"
TIMELINE_FILE = "timeline.json"
LOAD_CONFIG_FILE = "load_config.json"
SERVER_METRICS_FILE = "server_metrics.parquet"
SERVER_METRICS_PART = "server-metrics.csv"
FINDMAX_FILE = "findmax.json"
SEQUENTIAL_FILE = "sequential.json"
REQUEST_PARTS = "requests-*.csv"
SAMPLE_PARTS = ("resources.csv", "resources-docker.csv", "resources-gpu.csv")
"""psutil (target processes, generator, host), Docker stats API (target containers; extra
net/blk/mem-limit columns), NVML (GPUs; extra gpu_* columns): SAMPLE_COLUMNS first in each."""

# --------------------------------------------------------------------------- columns

Outcome = Literal["ok", "error", "rejected"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "error", "rejected")
REJECT_STATUS = 503
"""The status a target answers when it refuses work for load (max_works): a rejection."""

REQUEST_COLUMNS: dict[str, str] = {
    "ts": "float64",
    "latency_ms": "float64",
    "status": "int64",
    "bytes": "int64",
    "name": "object",
    "outcome": "object",
    "users": "int64",
    "error": "object",
    "service_ms": "float64",
    "lag_ms": "float64",
    "client_ms": "float64",
    "model_version": "object",
}
"""Per-request records, in the order the recorder writes them (pandas dtypes).

``ts``: request start (Unix s; for open-loop requests the *scheduled* send time);
``latency_ms``: ``service_ms`` + ``lag_ms``; ``service_ms``: wire time (first byte sent to last
byte received) when the client measured one, else the client's own timing; ``lag_ms``: how
late an open-loop request was sent (0 in closed loop); ``client_ms``: the generator's own
overhead around the wire time; ``outcome``: ok | error | rejected (503); ``model_version``:
the model version that answered (the ``X-Model-Version`` header of servecap's servers; empty
when the server does not say)."""


LABEL_COLUMNS: dict[str, str] = {"stage": "int64", "in_window": "bool"}
"""Added when a run is finalised: the stage a request started in, and whether it lies in
that stage's steady window (after ``settle_s``)."""

SAMPLE_COLUMNS: dict[str, str] = {
    "ts": "float64",
    "role": "object",
    "source": "object",
    "name": "object",
    "cpu_pct": "float64",
    "mem_mb": "float64",
    "pss_mb": "float64",
    "n_procs": "float64",
}
"""Resource samples, long format. role: target | generator | host | gpu; source: psutil |
docker | nvml; cpu_pct: 100 = one core; mem_mb: RSS (summed over the tree); pss_mb:
proportional set size, which counts pages shared between forked workers once."""

DOCKER_COLUMNS = ("net_rx_mb", "net_tx_mb", "blk_read_mb", "blk_write_mb", "mem_limit_mb")
"""After SAMPLE_COLUMNS in Docker stats rows (cumulative counters)."""
GPU_COLUMNS = ("gpu_util_pct", "gpu_mem_util_pct", "gpu_mem_mb", "gpu_mem_total_mb", "gpu_power_w")
"""After SAMPLE_COLUMNS in NVML rows."""

SERVER_METRICS_COLUMNS: dict[str, str] = {
    "ts": "float64",
    "requests": "float64",
    "inferences": "float64",
    "executions": "float64",
    "queue_s": "float64",
    "model_s": "float64",
    "in_flight": "float64",
}
"""The target's own metrics (Prometheus, scraped at the sampling interval), cumulative:
requests that reached the model, rows (images) it ran, model calls, per-request queue and
model seconds summed; ``in_flight`` is the server's gauge. ``stage`` added when finalised."""

# --------------------------------------------------------------------------- summary.json


class TimelineRow(TypedDict, total=False):
    """One stage in timeline.json: ramp (users), rate and find-max (rps), sequential (N)."""

    index: int
    start_ts: float
    end_ts: float | None
    users: int
    rps: float
    requests: int
    repeat: int
    total_s: float
    passed: bool | None
    reason: str | None
    steady_from_ts: float | None
    """find-max: where the windows that decided the rate begin. The stage's figures are taken
    from there (the rate's steady state), not from the drain of the previous rate's backlog."""
    steady_to_ts: float | None
    """find-max: where they end (the window sent while the last one was judged is left out)."""


class WindowStats(TypedDict, total=False):
    """Figures of the requests in a steady window (a stage's, the run's, a request type's)."""

    measured_requests: int
    ok: int
    errors: int
    rejected: int
    rps: float | None
    goodput_rps: float | None
    error_rate: float | None
    reject_rate: float | None
    mean_ms: float | None
    latency_cv: float | None
    """std / mean of successful latencies (the replica model's service variability)."""
    max_ms: float | None
    bytes_per_request: float | None
    p50_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    p50_ci_ms: list[float] | None
    """95% confidence interval of p50 from order statistics (analysis.intervals)."""
    p95_ci_ms: list[float] | None
    p99_ci_ms: list[float] | None
    """The same for p95 and p99; None when too few requests to bound it (p99_ci_note)."""
    p99_ci_note: str
    reject_p50_ms: float
    reject_p99_ms: float
    top_error: str
    client_overhead_p50_ms: float
    send_lag_p99_ms: float
    late_share: float


def stage_number(index: Any) -> Any:
    """The number a person reads for the stage at ``index`` (an int or a pandas Series):
    stages are numbered from 1 wherever they are shown (console, reports, plans), while
    files keep the 0-based ``index`` (summary.json, timeline.json, the ``stage`` column of
    the records)."""
    return index + 1


class StageSummary(WindowStats, total=False):
    index: int
    """0-based, as every file holds it; shown as :func:`stage_number`."""
    users: int
    arrival_rps: float
    """Open loop (rate, trace, find-max): the arrival rate the stage offered."""
    duration_s: float
    start_ts: float
    window_s: float
    requests: int
    by_name: dict[str, WindowStats]
    cpu_pct: float | None
    cpu_max_pct: float | None
    mem_mb: float | None
    mem_max_mb: float | None
    pss_mb: float | None
    resource_samples: int
    generator_cpu_pct: float | None
    host_cpu_pct: float | None
    littles_law_users: float | None
    generator_ok: bool
    generator_issues: list[str]
    server_batch_size_mean: float | None
    server_queue_ms: float | None
    server_model_ms: float | None


class OverallSummary(WindowStats, total=False):
    window_s: float


class CapacitySummary(TypedDict, total=False):
    """A run's ``capacity`` section (analysis.capacity.RunCapacity.to_dict)."""

    slo: dict[str, float]
    basis: str
    """open-loop (arrival rates offered on a schedule), closed-loop (users) or none."""
    throughput: str
    max_rps: float | None
    capacity_rps: float | None
    method: str
    extrapolated: bool
    limited_by: str | None
    evidence_stages: list[int]
    knee: dict[str, Any]
    usl: dict[str, Any]
    per_replica: dict[str, Any]
    find_max: dict[str, Any] | None
    littles_law_suspect_stages: list[int | None]
    warnings: list[str]
    error: str


RunStatus = Literal["ok", "failed", "interrupted"]


class RunSummary(TypedDict, total=False):
    """One target's run in summary.json (``runs[]``)."""

    target: str
    kind: str
    mode: str
    """The load mode (ramp, rate, find-max, sequential; a trace runs as rate)."""
    launcher: str
    status: RunStatus
    error: str | None
    time_to_ready_s: float | None
    warmup_mean_ms: float
    gpu: str | None
    paper_architecture: str | None
    paper_same_path: bool | None
    server_metrics: str
    """How the target's own metrics were sampled (absent when it exposes none)."""
    resources: str
    """Where the target's CPU and memory came from (``psutil``, ``docker``), or ``not
    measured: ...`` for an external server given no resources (its cpu_pct/mem_mb are then
    None, never zeros)."""
    faults: dict[str, Any]
    """The scenario's faults against this target (``injected``: each with its ``impact``;
    ``jobs``: accepted, finished, lost, unresolved jobs of a job queue); absent without
    faults (analysis.faults)."""
    restarts: list[str]
    """Processes the launcher restarted after a fault killed them."""
    sampling_gaps: list[str]
    """Collectors whose samples failed during the run, when and why (absent when none did)."""
    stages: list[StageSummary]
    overall: OverallSummary
    requests: int
    find_max: dict[str, Any]
    sequential: list[dict[str, Any]]
    capacity: CapacitySummary


class GateResultSummary(TypedDict):
    target: str
    scope: str
    objective: str
    measured: float | None
    limit: float
    passed: bool
    message: str


class GatesSummary(TypedDict):
    slo: dict[str, Any]
    results: list[GateResultSummary]
    passed: bool


class Summary(TypedDict, total=False):
    """summary.json: the scenario, one entry per target run, and the SLO gates."""

    scenario: str
    runs: list[RunSummary]
    gates: GatesSummary


# --------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write ``path`` through a temporary file in its folder, renamed over it when the block
    ends without error (and flushed to disk first); on error the old file stays as it was."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: Path, data: Any) -> Path:
    """``data`` as strict, indented JSON at ``path``, atomically."""
    with atomic_file(path) as f:
        json.dump(data, f, indent=2, allow_nan=False)
        f.write("\n")
    return path


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Let ``write(tmp_path)`` produce the file (e.g. ``frame.to_parquet``), then rename it
    over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
