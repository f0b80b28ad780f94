"""The servers freeze the heap left by the model load, so full GC sweeps stop stalling them."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from targets.common.service import load_service
from targets.common.settings import ServerSettings


def test_model_load_heap_is_frozen(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERVECAP_GC_FREEZE", raising=False)
    gc.unfreeze()
    try:
        load_service(ServerSettings(model_path=tiny_model))
        assert gc.get_freeze_count() > 10_000  # TensorFlow's object graph is out of the sweeps
    finally:
        gc.unfreeze()


def test_freeze_can_be_turned_off(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVECAP_GC_FREEZE", "0")
    gc.unfreeze()
    load_service(ServerSettings(model_path=tiny_model))
    assert gc.get_freeze_count() == 0
