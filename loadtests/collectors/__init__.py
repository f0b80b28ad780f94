"""Resource collectors: sample CPU and memory of the target, the load generator and the host.

Every collector writes the same long-format rows (:data:`SAMPLE_COLUMNS`), so analysis does
not care whether a target ran as processes (psutil) or containers (Docker stats API).
"""

from __future__ import annotations

SAMPLE_COLUMNS = ("ts", "role", "source", "name", "cpu_pct", "mem_mb", "pss_mb", "n_procs")
"""ts: Unix s; role: target | generator | host; source: psutil | docker | nvml;
cpu_pct: 100 = one core; mem_mb: RSS (summed over the tree); pss_mb: proportional set size,
which counts pages shared between forked workers once."""
