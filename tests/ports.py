"""Free loopback ports for tests that start servers.

A target uses its port and the three after it (app server, model server or Redis, gRPC), so
:func:`free_port` returns the first of four consecutive free ports, drawn outside the kernel's
ephemeral range (client sockets of the load generator and tests come from there and would
otherwise take a target's second or third port between the check and the launch).
"""

from __future__ import annotations

import random

from targets.launchers.base import port_is_free

BLOCK = 4
LOW, HIGH = 20_000, 32_000  # below Linux's default ephemeral range (32768-60999)


def free_port(block: int = BLOCK) -> int:
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(LOW, HIGH - block)
        if all(port_is_free("127.0.0.1", port + i) for i in range(block)):
            return port
    raise RuntimeError(f"no {block} consecutive free ports in {LOW}-{HIGH}")
