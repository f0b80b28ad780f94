"""Each run gets a results folder of its own, even when runs start in the same second."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from loadtests import results
from loadtests.results import ResultsFolderError, new_results_dir


def test_runs_started_in_the_same_second_never_share_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(results, "run_stamp", lambda: "20240101-120000")
    runs = 12
    start = threading.Barrier(runs)
    made: list[Path] = []

    def one_run() -> None:
        start.wait()  # every run asks for its folder at the same instant
        made.append(new_results_dir(None, "smoke", root=tmp_path / "results"))

    threads = [threading.Thread(target=one_run) for _ in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == runs and len(set(made)) == runs
    names = sorted(p.name for p in made)
    assert names[0] == "smoke-20240101-120000"
    assert set(names) == {"smoke-20240101-120000",
                          *(f"smoke-20240101-120000-{n}" for n in range(2, runs + 1))}  # fmt: skip
    assert all(p.is_dir() and p.is_absolute() and not any(p.iterdir()) for p in made)


def test_a_given_folder_is_made_or_taken_empty_and_refused_with_files(tmp_path: Path) -> None:
    fresh = new_results_dir(tmp_path / "a" / "b", "smoke")
    assert fresh == (tmp_path / "a" / "b").resolve() and fresh.is_dir()
    assert new_results_dir(fresh, "smoke") == fresh  # empty: the user's choice
    (fresh / "summary.json").write_text("{}")
    with pytest.raises(ResultsFolderError, match="is not empty.*never overwrites"):
        new_results_dir(fresh, "smoke")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ResultsFolderError, match="is not empty"):
        new_results_dir(tmp_path / "file", "smoke")
