"""A target launched by the process launcher in a child process, for tests that interrupt it.

``python -m tests.launch_child NAME LOGS_DIR '<config as JSON>'`` launches the target, prints
``READY <pid> ...`` (itself and every process of the target) once it is ready, and waits; a
SIGINT (Ctrl-C) unwinds the launch as it would unwind ``servecap run``.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import psutil

from targets.launchers.process import ProcessLauncher
from targets.registry import target_config


def main() -> None:
    # Ctrl-C raises KeyboardInterrupt even when started with SIGINT ignored (a background job
    # of a non-interactive shell, as CI may be: then Python leaves it ignored and the test's
    # SIGINT did nothing until its timeout)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    name, logs, fields = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    config = target_config(**fields)
    with ProcessLauncher(stop_grace_s=10).launch(name, config, logs):
        tree = psutil.Process().children(recursive=True)
        print("READY", " ".join(str(p.pid) for p in tree), flush=True)
        while True:
            time.sleep(0.5)


if __name__ == "__main__":
    main()
