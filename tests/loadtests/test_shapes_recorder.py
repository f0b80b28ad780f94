"""Stage shape arithmetic and the per-request recorder."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from loadtests.recorder import COLUMNS, RequestRecorder, classify
from loadtests.shapes import StagesShape, plan_timeline, stage_at
from loadtests.spec import Stage

STAGES = (Stage(users=1, duration_s=5), Stage(users=8, duration_s=10, spawn_rate=2))


def test_stage_at_boundaries() -> None:
    assert stage_at(STAGES, 0) == 0
    assert stage_at(STAGES, 4.99) == 0
    assert stage_at(STAGES, 5.0) == 1
    assert stage_at(STAGES, 14.99) == 1
    assert stage_at(STAGES, 15.0) is None


def test_plan_timeline() -> None:
    tl = plan_timeline(STAGES, 100.0)
    assert [(r["start_ts"], r["end_ts"]) for r in tl] == [(100.0, 105.0), (105.0, 115.0)]
    assert tl[0]["spawn_rate"] == 1 and tl[1]["spawn_rate"] == 2


def test_shape_ticks_and_writes_timeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Shape(StagesShape):
        abstract = False
        stages = STAGES
        out_dir = tmp_path

    shape = Shape()
    run_time = {"t": 0.0}
    monkeypatch.setattr(shape, "get_run_time", lambda: run_time["t"])
    assert shape.tick() == (1, 1.0)
    run_time["t"] = 6
    assert shape.tick() == (8, 2)
    run_time["t"] = 15
    assert shape.tick() is None
    timeline = json.loads((tmp_path / "timeline.json").read_text())
    assert len(timeline) == 2 and abs(timeline[0]["start_ts"] - time.time()) < 5


def test_classify() -> None:
    assert classify(200, None) == "ok"
    assert classify(503, RuntimeError("rejected")) == "rejected"
    assert classify(500, RuntimeError("x")) == "error"
    assert classify(200, RuntimeError("bad content")) == "error"
    assert classify(0, ConnectionRefusedError()) == "error"


def test_recorder_writes_every_request(tmp_path: Path) -> None:
    rec = RequestRecorder(tmp_path)
    rec.user_count = lambda: 3
    rec.on_request("POST", "predict", 12.3456, 100, SimpleNamespace(status_code=200), None, 5.5)
    rec.on_request(
        "POST", "predict", 1.0, 20, SimpleNamespace(status_code=503), RuntimeError("r"), 6.0
    )
    rec.on_request("POST", "predict", 2.0, 0, None, ConnectionResetError("reset"), 7.0)
    rec.close()
    with rec.path.open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS
    assert [r["outcome"] for r in rows] == ["ok", "rejected", "error"]
    assert rows[0]["latency_ms"] == "12.346" and rows[0]["ts"] == "5.500000"
    assert rows[0]["users"] == "3" and rows[2]["status"] == "0" and "reset" in rows[2]["error"]


def test_orchestrator_does_not_import_locust() -> None:
    """Locust's import gevent-patches the process; the orchestrator must stay unpatched."""
    import subprocess
    import sys

    code = "import loadtests.cli, loadtests.orchestrator, sys; print('locust' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_forwarding_recorder_sends_batches_and_writes_nothing(tmp_path: Path) -> None:
    from loadtests.recorder import append_rows

    sent: list[list[list[str | int]]] = []
    rec = RequestRecorder(tmp_path, flush_interval_s=3600, forward=sent.append)
    ok = SimpleNamespace(status_code=200)
    rec.on_request("POST", "predict", 2.0, 10, ok, None, 5.0, {"wire_ms": 1.5, "sent_ts": 5.1})
    rec.on_request("POST", "predict", 3.0, 10, ok, None, 6.0)
    assert sent == [] and not list(tmp_path.iterdir())  # batched until a flush
    rec.close()
    assert len(sent) == 1 and len(sent[0]) == 2
    rec.flush()
    assert len(sent) == 1  # nothing new: no empty batch
    # The master's side: the rows become a part file like a local recorder's.
    path = append_rows(tmp_path, "remote-host/1:abc", sent[0])
    append_rows(tmp_path, "remote-host/1:abc", sent[0][:1])
    assert path.name == "requests-remote-host_1_abc.csv"
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 3
    assert rows[0]["service_ms"] == "1.500" and rows[0]["client_ms"] == "0.500"
    assert rows[0]["ts"] == "5.100000"  # the wire send time, not Locust's start


def test_a_request_that_failed_midway_keeps_locusts_timing(tmp_path: Path) -> None:
    """Stamps from a partial read (then a timeout) must not shorten a failure's latency."""
    rec = RequestRecorder(tmp_path)
    timeout = TimeoutError("timed out")
    rec.on_request("POST", "predict", 1500.0, 0, SimpleNamespace(status_code=0), timeout, 5.0,
                   {"wire_ms": 2.0, "sent_ts": 5.0})  # fmt: skip
    rec.close()
    with rec.path.open() as f:
        row = next(csv.DictReader(f))
    assert row["outcome"] == "error" and row["latency_ms"] == "1500.000"
    assert row["client_ms"] == "0.000"


def test_forwarded_rows_are_checked_before_the_master_keeps_them(tmp_path: Path) -> None:
    from loadtests.recorder import valid_row

    sent: list[list[list[str | int]]] = []
    rec = RequestRecorder(tmp_path, flush_interval_s=3600, forward=sent.append)
    now = time.time()
    rec.on_request("POST", "predict", 2.0, 10, SimpleNamespace(status_code=200), None, now)
    rec.on_request("POST", "predict", 9.0, 0, None, RuntimeError("reset"), now)
    rec.close()
    good, failed = sent[0]
    assert valid_row(good, now) and valid_row(failed, now)  # what real workers send
    bad = [
        good[:-1],  # a column short
        [*good[:5], "pwned", *good[6:]],  # an unknown outcome
        [f"{now + 7200:.6f}", *good[1:]],  # far from the master's clock
        [good[0], "nan", *good[2:]],  # not a latency
        [good[0], good[1], "200", *good[3:]],  # a status that is not a number
        [*good[:4], "x" * 500, *good[5:]],  # an overlong name
        "not a row",
        [*good[:8], "inf", *good[9:]],
    ]
    assert not any(valid_row(row, now) for row in bad)


def test_the_model_version_that_answered_is_recorded(tmp_path: Path) -> None:
    from loadtests.recorder import valid_row

    sent: list[list[list[str | int]]] = []
    rec = RequestRecorder(tmp_path, flush_interval_s=3600, forward=sent.append)
    now = time.time()
    answer = SimpleNamespace(status_code=200, headers={"X-Model-Version": "2"})
    rec.on_request("POST", "predict", 2.0, 10, answer, None, now)
    rec.on_request("POST", "predict", 2.0, 10, SimpleNamespace(status_code=200), None, now)
    rec.close()
    versioned, plain = sent[0]
    assert versioned[-1] == "2" and plain[-1] == ""  # no header: nothing claimed
    assert valid_row(versioned, now) and not valid_row([*versioned[:-1], "v" * 500], now)
