"""`servecap verify`: agreement with the in-process model, and failures reported per target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from loadtests.spec import parse_scenarios
from loadtests.verify import compare, format_verdict, verify
from targets.common.dataset import Split
from tests.ports import free_port


def test_compare_counts_agreement_and_accuracy() -> None:
    split = Split("test", np.zeros((4, 32, 32, 3), np.uint8), np.array([0, 1, 2, 3]), ("",) * 4)
    verdict = compare("t", split, reference=np.array([0, 1, 2, 9]), answered=[0, 1, 5, 9])
    assert verdict.agreement == 0.75 and verdict.accuracy == 0.5
    assert verdict.mismatches == [2] and not verdict.ok
    assert "first mismatches at images [2]" in format_verdict(verdict)


@pytest.mark.integration
@pytest.mark.parametrize("encoding", ["json", "jpeg"])
def test_fastapi_agrees_with_in_process_model(
    tiny_model: Path, cifar_dir: Path, tmp_path: Path, encoding: str
) -> None:
    spec = parse_scenarios(
        {
            "targets": {
                "api": {"kind": "fastapi", "port": free_port(), "model_path": str(tiny_model)},
                "tfs": {"kind": "tfserving", "port": free_port(), "model_path": str(tiny_model)},
            },
            "scenarios": {"s": {"targets": ["api"], "load": {"stages": [{"users": 1,
                                                                          "duration_s": 5}]}}},
        }
    )  # fmt: skip
    lines: list[str] = []
    verdicts = verify(spec, ["api", "tfs"], str(cifar_dir), images=120, batch=50,
                      encoding=encoding, logs_root=tmp_path, echo=lines.append)  # fmt: skip
    api, tfs = verdicts
    assert api.ok and api.images == 120 and api.agreement == 1.0
    assert api.accuracy is not None and 0 <= api.accuracy <= 1
    assert not tfs.ok and tfs.error is not None and "--launcher docker" in tfs.error
    assert any("agreement 100.00% on 120 images" in line for line in lines)
