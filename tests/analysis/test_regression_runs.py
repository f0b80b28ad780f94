"""compare on real runs: a 20% slower target is flagged, reruns of an unchanged one are not.

The target is the ``sleepy`` test kind (tests/fixtures/kinds): a server whose every answer
takes ``delay_ms``, driven through ``servecap run`` like any target.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from analysis.load import read_summary
from analysis.regression import compare_folders
from loadtests.orchestrator import RunOptions, run
from loadtests.spec import parse_scenarios
from targets.registry import KIND_PATH_ENV, kinds
from tests.ports import free_port

pytestmark = pytest.mark.integration
KINDS = Path(__file__).resolve().parents[1] / "fixtures" / "kinds"
RERUNS = 5


@pytest.fixture
def sleepy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(KIND_PATH_ENV, str(KINDS))
    kinds.cache_clear()
    yield
    kinds.cache_clear()


def measure(out: Path, delay_ms: float, cifar_dir: Path) -> Path:
    spec = parse_scenarios({
        "targets": {"svc": {"kind": "sleepy", "port": free_port(), "delay_ms": delay_ms}},
        "scenarios": {"s": {"targets": ["svc"], "load": {
            "warmup_requests": 5, "settle_s": 1, "image_pool": 16,
            "stages": [{"users": 2, "duration_s": 5}]}}},
    })  # fmt: skip
    outcome = run(RunOptions("s", spec, out / "s.yaml", out, data_dir=str(cifar_dir)),
                  echo=lambda _: None)  # fmt: skip
    assert outcome.ok, outcome.failures
    return out


def test_a_slowdown_is_worse_and_reruns_are_not(
    sleepy: None, tmp_path: Path, cifar_dir: Path
) -> None:
    baseline = measure(tmp_path / "base", 10.0, cifar_dir)
    false_alarms = 0
    for i in range(RERUNS):
        rerun = measure(tmp_path / f"rerun-{i}", 10.0, cifar_dir)
        verdicts = [c.verdict for c in compare_folders(baseline, rerun)]
        false_alarms += "worse" in verdicts
    print(f"\ncompare: {false_alarms} false alarm(s) in {RERUNS} reruns")
    assert false_alarms == 0
    # A slowdown of 25% of the measured median (the client's share of the latency included).
    base_p50_ms = stage_p50_ms(baseline)
    slower = measure(tmp_path / "slower", 10.0 + 0.25 * base_p50_ms, cifar_dir)
    (stage,) = compare_folders(baseline, slower)
    figures = {f.figure: f for f in stage.figures}
    print(f"baseline p50 {base_p50_ms:.1f} ms; slower: p50 x{figures['p50_ms'].ratio:.3f} "
          f"(95% CI {figures['p50_ms'].ratio_ci})")  # fmt: skip
    assert stage.verdict == "worse" and figures["p50_ms"].verdict == "worse"
    assert figures["p50_ms"].ratio == pytest.approx(1.25, abs=0.1)


def stage_p50_ms(out: Path) -> float:
    summary = read_summary(out)
    (stage,) = summary["runs"][0]["stages"]
    return float(stage["p50_ms"])
