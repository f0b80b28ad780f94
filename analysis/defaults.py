"""Every default of the analysis, once: imported by analysis, the gates, the CLI and specs.

Imports nothing, so anything may import it (the Locust processes too).
"""

from __future__ import annotations

DEFAULT_SLO_P99_MS = 500.0
"""SLO used for a run's capacity section when the scenario sets none."""
DEFAULT_MAX_ERROR_RATE = 0.01
"""Error share a stage may have and still count as meeting the SLO (and sizing's limit)."""
DEFAULT_MAX_REJECT_RATE = 0.01
"""Rejection (503) share a stage may have and still count as meeting the SLO."""
DEFAULT_HEADROOM = 0.3
"""Share of each replica's capacity kept free at peak when sizing."""
DEFAULT_PEAK_FACTOR = 3.0
"""Peak rate / mean daily rate, when a report sizes from a daily volume."""
DEFAULT_DAILY_REQUESTS = 100e6
"""The daily volume reports size for unless told otherwise."""
DEFAULT_LATE_MS = 10.0
"""A request sent more than this behind its schedule counts as late (open loop); a scenario
sets its own with ``load.late_ms``."""
LATE_SHARE_LIMIT = 0.01
"""More late sends than this share marks a stage's generator as behind schedule."""
GENERATOR_CPU_LIMIT_PCT = 90.0
"""A generator process above this CPU % (100 = one core: Locust is single-threaded per
process), or a host above it per core, may not send or time requests as planned."""
DEFAULT_VERIFY_TOLERANCE = 0.15
"""``plan --verify``: how far a measured capacity may fall below the model's prediction."""
