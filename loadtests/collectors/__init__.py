"""Resource collectors: sample CPU and memory of the target, the load generator and the host.

Every collector writes the same long-format rows (:data:`analysis.contract.SAMPLE_COLUMNS`),
so analysis does not care whether a target ran as processes (psutil) or containers (Docker
stats API).
"""

from __future__ import annotations

from analysis.contract import SAMPLE_COLUMNS as _SAMPLE_COLUMNS

SAMPLE_COLUMNS = tuple(_SAMPLE_COLUMNS)
"""The common columns, in the order every collector writes them first."""
