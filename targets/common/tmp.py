"""Private working folders under the system temp folder, safe against planted folders.

Servers write configuration (nginx, Triton's model repository) under
``<temp>/servecap-<uid>/``. A predictable path in a world-writable folder could be made in
advance by another user, so :func:`private_root` refuses a root that is not a real folder
owned by us, and makes it mode 0711: nobody else can list it or create anything in it (so
nothing below it can be planted), while nginx's unprivileged workers (as root, nginx drops
them to ``nobody``) can still reach the folders made for them. Folders that hold anything
private are made 0700 by their owners.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from pathlib import Path


class UnsafeTempDir(RuntimeError):
    """The private root exists but is not ours (or not a folder): refuse to use it."""


ROOT_MODE = 0o711


def private_root(base: Path | None = None) -> Path:
    """``<temp>/servecap-<uid>``, created, or checked to be a folder of ours; mode 0711."""
    root = (base or Path(tempfile.gettempdir())) / f"servecap-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        root.mkdir(mode=ROOT_MODE)
    info = os.lstat(root)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise UnsafeTempDir(
            f"{root} exists but is not a folder owned by uid {os.getuid()}: remove it (someone "
            "else may have made it to read or change servecap's files)"
        )
    if stat.S_IMODE(info.st_mode) != ROOT_MODE:
        os.chmod(root, ROOT_MODE)
    return root


def private_dir(*parts: str) -> Path:
    """A folder under :func:`private_root` (names made filesystem-safe); not created."""
    safe = [re.sub(r"[^A-Za-z0-9_.-]", "_", p) or "_" for p in parts]
    return private_root().joinpath(*safe)
