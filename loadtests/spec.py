"""Scenario file (``scenarios.yaml``): validated models, and a loader whose errors say the fix.

The file has two sections: ``targets`` (what to start, :class:`targets.config.TargetConfig`)
and ``scenarios`` (which targets to drive, with which load). Every mapping refuses unknown
keys; every error names the key path, what was found and what is allowed.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from targets.config import Encoding, StrictModel, TargetConfig

DEFAULT_SCENARIOS_FILE = Path("scenarios.yaml")


class SpecError(ValueError):
    """The scenario file is missing, unparsable or invalid; the message says where and the fix."""


class Stage(StrictModel):
    """One step of a ramp: hold ``users`` concurrent users for ``duration_s``."""

    users: int = Field(ge=1, le=100_000, description="concurrent closed-loop users")
    duration_s: float = Field(gt=0, le=86_400)
    spawn_rate: float | None = Field(
        default=None, gt=0, description="users started per second; default: all at once"
    )


class LoadPlan(StrictModel):
    """How the load generator drives a target."""

    mode: str = Field(default="ramp", pattern="^ramp$", description="closed-loop users by stage")
    stages: tuple[Stage, ...] = Field(min_length=1)
    images_per_request: int = Field(default=1, ge=1, le=256)
    encoding: Encoding = "json"
    think_time_s: float = Field(default=0.0, ge=0, description="pause between a user's requests")
    settle_s: float = Field(
        default=2.0,
        ge=0,
        description="seconds at the start of each stage excluded from its statistics",
    )
    warmup_requests: int = Field(
        default=20, ge=0, description="requests sent before the measured load, not recorded"
    )
    request_timeout_s: float = Field(default=30.0, gt=0)
    image_pool: int = Field(
        default=512, ge=1, le=10_000, description="distinct test images the users cycle through"
    )

    @model_validator(mode="after")
    def _settle_shorter_than_stages(self) -> LoadPlan:
        for i, stage in enumerate(self.stages):
            if self.settle_s >= stage.duration_s:
                raise ValueError(
                    f"settle_s ({self.settle_s}) must be shorter than every stage; "
                    f"stage {i} lasts {stage.duration_s} s: lower settle_s or lengthen the stage"
                )
        return self

    @property
    def duration_s(self) -> float:
        return sum(s.duration_s for s in self.stages)


class Collect(StrictModel):
    """Resource sampling."""

    interval_s: float = Field(default=1.0, gt=0, le=60)


class Scenario(StrictModel):
    description: str = ""
    targets: tuple[str, ...] = Field(min_length=1, description="names under the top-level targets:")
    load: LoadPlan
    collect: Collect = Collect()


class ScenarioFile(StrictModel):
    """The whole ``scenarios.yaml``."""

    version: int = Field(default=1, ge=1, le=1)
    targets: dict[str, TargetConfig] = Field(min_length=1)
    scenarios: dict[str, Scenario] = Field(min_length=1)

    @model_validator(mode="after")
    def _targets_exist(self) -> ScenarioFile:
        for name, scenario in self.scenarios.items():
            for target in scenario.targets:
                if target not in self.targets:
                    raise ValueError(
                        f"scenarios.{name}.targets names '{target}', which is not defined; "
                        f"{_choices(target, self.targets)}"
                    )
        return self

    def scenario(self, name: str) -> Scenario:
        if name not in self.scenarios:
            raise SpecError(f"no scenario '{name}'; {_choices(name, self.scenarios)}")
        return self.scenarios[name]


def _choices(name: str, known: dict[str, Any]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"{hint}defined: {', '.join(sorted(known))}"


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem: ``file: key.path: message (got: value)``."""
    lines = [f"{source} is invalid ({err.error_count()} problem(s)):"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        got = ""
        if e["type"] not in ("missing",) and "input" in e and not isinstance(e["input"], dict):
            got = f" (got: {e['input']!r})"
        if e["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"  {loc}: {msg}{got}")
    return "\n".join(lines)


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
