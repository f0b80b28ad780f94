"""The target's own metrics: its Prometheus endpoint scraped at the sampling interval.

Which samples mean what comes from the target's kind (:class:`targets.kind.MetricsSource`);
each scrape becomes one row of :data:`analysis.contract.SERVER_METRICS_COLUMNS` (values of a
sample name summed over its label sets), appended to a CSV as it comes. A scrape that fails
(the server busy past the timeout, restarting) is skipped and counted by the base sampler, not
fatal: counters are cumulative, so the next scrape still gives every stage's totals. Read as
every harness request is (:mod:`targets.common.loopback`): no proxy, no redirect, at most
``MAX_READ_BYTES`` a scrape.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from analysis.contract import SERVER_METRICS_COLUMNS
from loadtests.collectors.base import PeriodicSampler
from targets.common.loopback import http_get
from targets.kind import MetricsSource

SCRAPE_TIMEOUT_S = 2.0


def parse(text: str) -> dict[str, float]:
    """Sample name -> value, summed over label sets. The parser names every counter sample
    ``<family>_total`` (OpenMetrics), whether the server wrote the suffix or not (Triton does
    not): counters are also found under their name without it."""
    totals: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] += float(sample.value)
            if family.type == "counter" and sample.name.endswith("_total"):
                totals[sample.name.removesuffix("_total")] += float(sample.value)
    return dict(totals)


def row(source: MetricsSource, samples: dict[str, float], ts: float) -> tuple[object, ...]:
    """One CSV row: the source's samples in the contract's columns and units."""

    def get(name: str | None, scale: float = 1.0) -> str:
        return "" if name is None or name not in samples else f"{samples[name] * scale:.6f}"

    unit = source.time_unit_s
    return (f"{ts:.3f}", get(source.requests), get(source.inferences), get(source.executions),
            get(source.queue_time, unit), get(source.model_time, unit),
            get(source.in_flight))  # fmt: skip


class PrometheusSampler(PeriodicSampler):
    columns = tuple(SERVER_METRICS_COLUMNS)
    thread_name = "servecap-prometheus"

    def __init__(self, path: Path, source: MetricsSource, interval_s: float = 1.0) -> None:
        super().__init__(path, interval_s)
        self.source = source

    def sample_once(self) -> list[tuple[object, ...]]:
        ts = time.time()
        status, body = http_get(self.source.url, SCRAPE_TIMEOUT_S)  # capped, no proxy
        if status != 200:
            raise OSError(f"{self.source.url} answered HTTP {status}")
        return [row(self.source, parse(body.decode("utf-8", errors="replace")), ts)]
