"""Scenario file (``scenarios.yaml``): validated models, and a loader whose errors say the fix.

The file has two sections: ``targets`` (what to start, :class:`targets.config.TargetConfig`)
and ``scenarios`` (which targets to drive, with which load). Every mapping refuses unknown
keys; every error names the key path, what was found and what is allowed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from analysis.defaults import DEFAULT_LATE_MS
from loadtests.faults import GENERIC_PARTS, Fault
from targets.common.dataset import CLASSES as CIFAR_CLASSES
from targets.config import ScenarioName, StrictModel, TargetName, parse_cpuset
from targets.inputs import Encoding
from targets.protocols.base import LoadMode
from targets.registry import KindConfig

DEFAULT_SCENARIOS_FILE = Path("scenarios.yaml")
MAX_RPS = 100_000
"""The highest arrival rate any plan may ask for (far above what one generator host sends)."""
MAX_SEQUENTIAL_REQUESTS = 1_000_000


class SpecError(ValueError):
    """The scenario file is missing, unparsable or invalid; the message says where and the fix."""


class Stage(StrictModel):
    """One step of the load, held for ``duration_s``: ``users`` (ramp) or ``rps`` (rate)."""

    users: int | None = Field(default=None, ge=1, le=100_000, description="closed-loop users")
    rps: float | None = Field(
        default=None, ge=0, le=MAX_RPS, description="arrivals per second (0: none, idle)"
    )
    duration_s: float = Field(gt=0, le=86_400)
    spawn_rate: float | None = Field(
        default=None, gt=0, le=100_000,
        description="ramp: users started per second; default all at once",
    )  # fmt: skip
    ramp: bool = Field(
        default=False, description="rate: rise linearly from the previous stage's rps"
    )


class Sequential(StrictModel):
    """The paper's method: ``requests`` sent one after another, each run repeated."""

    requests: tuple[int, ...] = Field(
        default=(1, 10, 100, 1_000, 10_000), min_length=1, max_length=100
    )
    repeat: int = Field(default=10, ge=1, le=1_000)
    max_duration_s: float = Field(
        default=7_200, gt=0, le=86_400, description="hard bound on the run"
    )

    @model_validator(mode="after")
    def _positive(self) -> Sequential:
        if any(n < 1 or n > MAX_SEQUENTIAL_REQUESTS for n in self.requests):
            raise ValueError(f"every entry of requests must be 1..{MAX_SEQUENTIAL_REQUESTS}")
        return self


class FindMax(StrictModel):
    """Search the highest arrival rate meeting the SLO: step up, then bisect."""

    start_rps: float = Field(default=10, gt=0, le=MAX_RPS)
    max_rps: float = Field(default=5_000, gt=0, le=MAX_RPS)
    step_factor: float = Field(default=1.5, gt=1, le=10)
    window_s: float = Field(default=4, gt=0, le=600, description="p99 is measured per window")
    stable_windows: int = Field(
        default=3, ge=2, le=20, description="consecutive windows that agree"
    )
    stability: float = Field(
        default=0.25, gt=0, le=10,
        description="windows agree when their p99 differ by <= this x SLO",
    )  # fmt: skip
    max_hold_s: float = Field(default=40, gt=0, le=3_600, description="longest time at one rate")
    tolerance: float = Field(default=0.05, gt=0, le=1, description="stop when hi/lo - 1 is below")
    max_points: int = Field(default=16, ge=2, le=100)
    drain_idle_s: float = Field(
        default=1.0, ge=0, le=60,
        description="between rates: once nothing is in flight, idle this long (independent "
        "probes: no backlog of one rate is measured in the next)",
    )  # fmt: skip
    confirm: bool = Field(
        default=False,
        description="once settled, hold the highest passing rate again; if it fails, the next "
        "lower passing rate, until one passes twice (capacities a plan is made from)",
    )  # fmt: skip

    @property
    def max_duration_s(self) -> float:
        """Bound on the search: every point held to the end, drained and idle after it."""
        return self.max_points * (self.max_hold_s + self.drain_idle_s + 30.0)


class Trace(StrictModel):
    """``mode: trace``: the rate plan's stages from a CSV file (:mod:`loadtests.trace`)."""

    file: str = Field(description="CSV: a header with rps (and duration_s), or timestamp_s")
    format: Literal["rates", "timestamps"] = Field(
        default="rates", description="rates per interval, or one timestamp per request"
    )
    interval_s: float = Field(
        default=1.0, gt=0, le=86_400,
        description="rates: each row's duration when the file has no duration_s; timestamps: "
        "the bin width",
    )  # fmt: skip
    time_scale: float = Field(
        default=1.0, gt=0, le=1_000_000, description="play this many times faster"
    )
    rate_scale: float = Field(default=1.0, gt=0, le=1_000_000, description="multiply every rate")


class LoadPlan(StrictModel):
    """How the load generator drives a target."""

    mode: LoadMode = "ramp"
    stages: tuple[Stage, ...] = Field(
        default=(), max_length=1_000, description="ramp and rate modes"
    )
    trace: Trace | None = Field(
        default=None, description="mode trace: the file whose rates become the stages"
    )
    arrival: Literal["constant", "poisson"] = Field(
        default="constant", description="rate: evenly spaced or Poisson arrivals"
    )
    max_in_flight: int = Field(
        default=1_000, ge=1, le=100_000,
        description="rate: requests outstanding at once before sends fail",
    )  # fmt: skip
    late_ms: float = Field(
        default=DEFAULT_LATE_MS,
        gt=0,
        le=60_000,
        description="rate: a send this far behind schedule counts as late (generator health)",
    )
    sequential: Sequential = Field(default_factory=Sequential, description="sequential mode")
    find_max: FindMax = Field(default_factory=FindMax, description="find-max mode")
    workers: int = Field(default=1, ge=1, le=64, description="Locust worker processes")
    remote_workers: int = Field(
        default=0, ge=0, le=1_000,
        description="Locust workers started elsewhere with `servecap worker`: the run's "
        "generator becomes a master that sends no load and waits for them",
    )  # fmt: skip
    master_bind_host: str = Field(
        default="127.0.0.1", description="remote_workers: the address the master listens on"
    )
    master_port: int = Field(default=5557, ge=1024, le=65_535, description="remote_workers")
    generator_cpuset: str | None = Field(
        default=None, description="pin the generator to these CPUs, e.g. '1' or '2-3'"
    )
    connections: Literal["keep-alive", "per-request"] = Field(
        default="keep-alive",
        description="HTTP: reuse a pool of keep-alive connections, or open one per request "
        "(a population of clients: what a kernel balancer such as SO_REUSEPORT spreads over "
        "replicas as its model assumes)",
    )
    images_per_request: int = Field(default=1, ge=1, le=256)
    encoding: Encoding = "json"
    think_time_s: float = Field(
        default=0.0, ge=0, le=3_600, description="pause between a user's requests"
    )
    settle_s: float = Field(
        default=2.0,
        ge=0,
        le=3_600,
        description="seconds at the start of each stage excluded from its statistics",
    )
    warmup_requests: int = Field(
        default=20, ge=0, le=100_000,
        description="requests sent before the measured load, not recorded",
    )  # fmt: skip
    request_timeout_s: float = Field(default=30.0, gt=0, le=3_600)
    image_pool: int = Field(
        default=512, ge=1, le=10_000, description="distinct test images the users cycle through"
    )
    dataset: str | None = Field(
        default=None,
        description="a folder of test images, one subfolder per class (or test/<class>/); "
        "images are resized to the model's input. Default: CIFAR-10 (--data)",
    )
    classes: tuple[str, ...] | None = Field(
        default=None,
        min_length=1,
        max_length=100_000,
        description="dataset: the class names in label order (default: its folders, sorted)",
    )

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """The classes labels index: ``classes``; a dataset's sorted folders (None); CIFAR-10's
        ten, exactly, by default."""
        if self.classes is not None:
            return self.classes
        return None if self.dataset is not None else CIFAR_CLASSES

    @model_validator(mode="before")
    @classmethod
    def _trace_to_stages(cls, data: Any) -> Any:
        """``mode: trace``: a rate plan, one stage per interval of the trace file."""
        if not isinstance(data, dict) or data.get("mode") != "trace":
            return data
        from loadtests.trace import trace_stages

        if data.get("stages"):
            raise ValueError("mode trace takes its stages from trace.file; remove stages")
        if not isinstance(data.get("trace"), dict):
            raise ValueError("mode trace needs trace: {file: <CSV>} (see loadtests/trace.py)")
        trace = Trace.model_validate(data["trace"])
        stages = trace_stages(Path(trace.file), trace.format, trace.interval_s,
                              trace.time_scale, trace.rate_scale)  # fmt: skip
        return {**data, "mode": "rate", "stages": stages, "settle_s": data.get("settle_s", 0)}

    @model_validator(mode="after")
    def _consistent(self) -> LoadPlan:
        if self.generator_cpuset is not None:
            parse_cpuset(self.generator_cpuset)
        if self.mode in ("ramp", "rate"):
            key, other = ("users", "rps") if self.mode == "ramp" else ("rps", "users")
            if not self.stages:
                raise ValueError(f"mode {self.mode} needs stages, each with {key} and duration_s")
            for i, stage in enumerate(self.stages):
                if getattr(stage, key) is None or getattr(stage, other) is not None:
                    raise ValueError(
                        f"stages.{i}: mode {self.mode} takes '{key}' (not '{other}') per stage"
                    )
                if self.settle_s >= stage.duration_s:
                    raise ValueError(
                        f"settle_s ({self.settle_s}) must be shorter than every stage; "
                        f"stages.{i} lasts {stage.duration_s} s: lower settle_s or lengthen it"
                    )
            if self.mode == "rate" and not any(s.rps for s in self.stages):
                raise ValueError("mode rate needs a stage with rps above 0")
        elif self.stages:
            raise ValueError(f"mode {self.mode} takes no stages; remove them")
        if self.mode in ("sequential", "find-max") and self.generator_processes != 1:
            raise ValueError(
                f"mode {self.mode} runs in one generator process: set workers: 1 and no "
                "remote_workers"
            )
        if self.remote_workers and self.workers != 1:
            raise ValueError(
                "remote_workers and workers do not mix: leave workers at 1 and start every "
                "worker, this host's too, with `servecap worker`"
            )
        return self

    @property
    def generator_processes(self) -> int:
        """Processes that send load: local workers, or the remote ones."""
        return self.remote_workers or self.workers

    @property
    def stage_settle_s(self) -> float:
        """Seconds excluded at each stage's start: none for sequential runs (no spawning)."""
        return 0.0 if self.mode == "sequential" else self.settle_s

    @property
    def duration_s(self) -> float:
        """Planned (ramp, rate) or longest possible (sequential, find-max) load time."""
        if self.mode == "sequential":
            return self.sequential.max_duration_s
        if self.mode == "find-max":
            return self.find_max.max_duration_s
        return sum(s.duration_s for s in self.stages)


class SLO(StrictModel):
    """Service-level objectives checked at the end of a run (and used by find-max)."""

    p99_ms: float | None = Field(default=None, gt=0, le=3_600_000)
    p95_ms: float | None = Field(default=None, gt=0, le=3_600_000)
    max_error_rate: float | None = Field(default=None, ge=0, le=1)
    max_reject_rate: float | None = Field(default=None, ge=0, le=1)
    min_rps: float | None = Field(default=None, ge=0, le=MAX_RPS)
    scope: Literal["overall", "every-stage", "last-stage"] = Field(
        default="overall", description="check the whole run's windows, each stage, or the last"
    )
    judge: Literal["point", "upper-bound"] = Field(
        default="point",
        description="latency objectives judged on the measured percentile (point) or on the "
        "upper end of its 95% confidence interval (upper-bound: passes only when the data "
        "show the objective is met)",
    )


class Collect(StrictModel):
    """Resource sampling."""

    interval_s: float = Field(default=1.0, gt=0, le=60)


class Scenario(StrictModel):
    description: str = ""
    targets: tuple[str, ...] = Field(min_length=1, description="names under the top-level targets:")
    load: LoadPlan
    slo: SLO | None = None
    collect: Collect = Collect()
    faults: tuple[Fault, ...] = Field(
        default=(), max_length=100, description="timed actions against the targets' parts"
    )

    @model_validator(mode="after")
    def _find_max_needs_slo(self) -> Scenario:
        if self.load.mode == "find-max" and (self.slo is None or self.slo.p99_ms is None):
            raise ValueError(
                "load.mode find-max searches against slo.p99_ms: set slo: {p99_ms: ...}"
            )
        return self


class ScenarioFile(StrictModel):
    """The whole ``scenarios.yaml``."""

    version: int = Field(default=1, ge=1, le=1)
    targets: dict[TargetName, KindConfig] = Field(min_length=1)
    scenarios: dict[ScenarioName, Scenario] = Field(min_length=1)

    @model_validator(mode="after")
    def _targets_exist(self) -> ScenarioFile:
        for name, scenario in self.scenarios.items():
            for target in scenario.targets:
                if target not in self.targets:
                    raise ValueError(
                        f"scenarios.{name}.targets names '{target}', which is not defined; "
                        f"{_choices(target, self.targets)}"
                    )
            for i, fault in enumerate(scenario.faults):
                self._check_fault(name, i, fault, scenario)
        return self

    def _check_fault(self, name: str, i: int, fault: Fault, scenario: Scenario) -> None:
        from targets.registry import get_kind

        where = f"scenarios.{name}.faults.{i}"
        if fault.target is not None and fault.target not in scenario.targets:
            raise ValueError(f"{where}.target '{fault.target}' is not a target of the "
                             f"scenario; {_choices(fault.target, scenario.targets)}")  # fmt: skip
        if fault.stage is not None and scenario.load.stages \
                and fault.stage > len(scenario.load.stages):  # fmt: skip
            raise ValueError(f"{where}.stage {fault.stage}: the plan has "
                             f"{len(scenario.load.stages)} stages")  # fmt: skip
        for target in [fault.target] if fault.target else scenario.targets:
            kind = get_kind(self.targets[target].kind)
            if kind.launcher is not None:
                raise ValueError(f"{where}: target '{target}' is not started by servecap; "
                                 "faults act on targets servecap runs")  # fmt: skip
            services = kind.containers.services if kind.containers else ()
            allowed = sorted({*GENERIC_PARTS, *kind.part_roles, *services})
            if fault.part not in allowed:
                raise ValueError(f"{where}.part '{fault.part}' is not a part of target "
                                 f"'{target}' ({kind.name}); parts: "
                                 f"{', '.join(allowed)}")  # fmt: skip

    def scenario(self, name: str) -> Scenario:
        if name not in self.scenarios:
            raise SpecError(f"no scenario '{name}'; {_choices(name, self.scenarios)}")
        return self.scenarios[name]


def _choices(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"{hint}defined: {', '.join(sorted(known))}"


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem: ``file: key.path: message (got: value)``."""
    lines = [f"{source} is invalid ({err.error_count()} problem(s)):"]
    for e in err.errors():
        loc = ".".join(_loc_part(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        got = ""
        if e["type"] not in ("missing",) and "input" in e and not isinstance(e["input"], dict):
            got = f" (got: {e['input']!r})"
        if e["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"  {loc}: {msg}{got}")
    return "\n".join(lines)


def _loc_part(part: object) -> str:
    """A key of an error's path, quoted when it would not read as one (a newline in it)."""
    text = str(part)
    return text if text.isprintable() and " " not in text else repr(text)


def parse_scenarios(data: Any, source: str = "<scenarios>") -> ScenarioFile:
    if not isinstance(data, dict):
        raise SpecError(f"{source}: top level must be a mapping with 'targets' and 'scenarios'")
    try:
        return ScenarioFile.model_validate(data)
    except ValidationError as err:
        raise SpecError(format_validation_error(err, source)) from None


def load_scenarios(path: str | Path = DEFAULT_SCENARIOS_FILE) -> ScenarioFile:
    """Read and validate a scenario file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(
            f"scenario file {path} not found; pass --scenarios FILE or run from the repository root"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise SpecError(f"{path} is not valid YAML: {err}") from None
    return parse_scenarios(data, str(path))
