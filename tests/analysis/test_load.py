"""Reading results while a run is still writing them."""

from __future__ import annotations

from pathlib import Path

from analysis.load import read_requests
from loadtests.recorder import COLUMNS


def test_partial_parts_are_read_safely(tmp_path: Path) -> None:
    header = ",".join(COLUMNS)
    (tmp_path / "requests-1.csv").write_text("")  # created, nothing flushed yet
    (tmp_path / "requests-2.csv").write_text(
        f"{header}\n2.5,10.0,200,5,predict,ok,1,,10.0,0.0\n1.5,20.0,503,5,predict,rejected,1,"
        "rejected (503),20.0,0.0\n3.0,1"  # a line cut mid-write
    )
    (tmp_path / "requests-3.csv").write_text(f"{header}\n")
    frame = read_requests(tmp_path)
    assert list(frame["ts"]) == [1.5, 2.5]  # merged, sorted, the cut line dropped
    assert list(frame["status"]) == [503, 200]
    assert list(frame["outcome"]) == ["rejected", "ok"]


def test_no_parts_gives_empty_frame_with_columns(tmp_path: Path) -> None:
    frame = read_requests(tmp_path)
    assert frame.empty and set(COLUMNS) <= set(frame.columns)
