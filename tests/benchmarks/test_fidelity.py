"""The fidelity benchmark's parsing of wrk's report (the benchmark itself runs on demand)."""

from __future__ import annotations

import pytest

from benchmarks.fidelity import parse_wrk

WRK_OUTPUT = """Running 20s test @ http://127.0.0.1:8101/v1/predict
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.11ms    2.03ms  41.52ms   91.36%
    Req/Sec   661.84     54.02   770.00     72.00%
  Latency Distribution
     50%    5.62ms
     75%    6.53ms
     90%    7.87ms
     99%    1.02s
  13181 requests in 20.01s, 3.11MB read
Requests/sec:    658.74
Transfer/sec:    159.12KB
"""


def test_parse_wrk_units_and_rate() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result["p50_ms"] == pytest.approx(5.62)
    assert result["p99_ms"] == pytest.approx(1020.0)
    assert result["rps"] == pytest.approx(658.74) and result["requests"] == 13181


def test_parse_wrk_refuses_other_output() -> None:
    with pytest.raises(ValueError, match="latency"):
        parse_wrk("Requests/sec: 1\n1 requests in 1s")
