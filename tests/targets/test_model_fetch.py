"""Model-load pattern: a server fetches the SavedModel archive from a URL at start."""

from __future__ import annotations

import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from targets.common.model_fetch import ModelFetchError, fetch_model, model_root
from targets.common.service import load_service
from targets.common.settings import ServerSettings


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path, tiny_model: Path) -> Iterator[str]:
    """A loopback HTTP server with the tiny model as model.tar.gz (and a bad archive)."""
    root = tmp_path / "www"
    root.mkdir()
    with tarfile.open(root / "model.tar.gz", "w:gz") as tar:
        tar.add(tiny_model, arcname="cifar10_cnn")
    (root / "bad.tar.gz").write_bytes(b"not an archive")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_unpack_and_cache(served: str, tmp_path: Path) -> None:
    first = fetch_model(f"{served}/model.tar.gz", tmp_path / "cache")
    assert list(first.rglob("saved_model.pb"))
    mtime = first.stat().st_mtime
    again = fetch_model(f"{served}/model.tar.gz", tmp_path / "cache")
    assert again == first and again.stat().st_mtime == mtime  # cached: no second download
    root = model_root(first)  # descends into the archive's single cifar10_cnn/ folder
    assert root.name == "cifar10_cnn" and (root / "1" / "saved_model.pb").exists()


def test_server_loads_from_url(served: str, tmp_path: Path) -> None:
    settings = ServerSettings(model_path=tmp_path / "absent", model_url=f"{served}/model.tar.gz",
                              model_cache=tmp_path / "cache")  # fmt: skip
    service = load_service(settings)
    probs = service.model.predict(np.zeros((2, 32, 32, 3), np.float32))
    assert probs.shape == (2, 10)


@pytest.mark.parametrize(("name", "message"), [("bad.tar.gz", "not a readable"),
                                               ("missing.tar.gz", "cannot download")])  # fmt: skip
def test_fetch_errors_name_the_url(served: str, tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(ModelFetchError, match=message):
        fetch_model(f"{served}/{name}", tmp_path / "cache")
