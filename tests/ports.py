"""Free loopback ports for tests that start servers: :func:`free_port` returns the first of
four consecutive free ports outside the kernel's ephemeral range (defined once, in
:mod:`targets.launchers.base`, for the benchmarks too)."""

from targets.launchers.base import free_port

__all__ = ["free_port"]
