"""In-process validation fuzzers, no server (fast, not marked integration): target names,
trace files and env entries, whatever their bytes, are either accepted and safe where they go
(a folder name, a YAML key, one env-file line, a plan within its limits) or refused with the
module's own error, never another exception.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

VALIDATION_EXAMPLES = 300
DNS_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
names = st.one_of(st.text(max_size=80), st.from_regex(DNS_LABEL, fullmatch=True),
                  st.text(alphabet="abc-/.\n\r: _A0", max_size=70))  # fmt: skip


def is_dns_label(name: str) -> bool:
    """The rule, written out independently of the code under test."""
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-")
    return (0 < len(name) <= 63 and set(name) <= allowed and name[0] != "-"
            and name[-1] != "-")  # fmt: skip


@settings(max_examples=VALIDATION_EXAMPLES, deadline=None, derandomize=True)
@given(name=names)
def test_a_target_name_is_accepted_only_when_it_is_safe_everywhere(name: str) -> None:
    import yaml

    from loadtests.spec import SpecError, parse_scenarios
    from targets.config import check_target_name

    doc = {
        "targets": {name: {"kind": "fastapi"}},
        "scenarios": {
            "s": {"targets": [name], "load": {"stages": [{"users": 1, "duration_s": 5}]}}
        },
    }
    if not is_dns_label(name):
        with pytest.raises(ValueError, match="is not a DNS-1123 label"):
            check_target_name(name)
        with pytest.raises(SpecError, match="is not a DNS-1123 label"):
            parse_scenarios(doc)
        return
    assert check_target_name(name) == name and list(parse_scenarios(doc).targets) == [name]
    assert Path("results", name).parent == Path("results")  # one folder, inside results
    assert yaml.safe_load(yaml.safe_dump({name: 1})) == {name: 1}  # one YAML key


trace_cells = st.one_of(
    st.from_regex(r"-?[0-9]{1,4}(\.[0-9]{1,3})?", fullmatch=True),
    st.sampled_from(["1e300", "-1", "nan", "inf", "", "0", "1e-300", "5000000", "x"]),
    st.text(max_size=5),
    st.integers(130_000, 140_000).map(lambda n: "9" * n),
)
trace_rows = st.lists(st.lists(trace_cells, min_size=1, max_size=3), max_size=30)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-validation")


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(form=st.sampled_from(["rates", "timestamps"]),
       header=st.sampled_from(["rps", "rps,duration_s", "timestamp_s", "\ufefftimestamp_s",
                               "\ufeffrps", "rate", ""]),
       rows=trace_rows, tail=st.binary(max_size=8),
       interval_s=st.sampled_from([0.001, 1.0, 60.0]),
       scale=st.sampled_from([1e-6, 1.0, 1e6]))  # fmt: skip
def test_a_trace_file_becomes_a_plan_within_limits_or_a_trace_error(
    scratch: Path, form: str, header: str, rows: list[list[str]], tail: bytes,
    interval_s: float, scale: float,
) -> None:  # fmt: skip
    from loadtests.spec import MAX_RPS
    from loadtests.trace import MAX_INTERVALS, MAX_STAGE_S, TraceError, trace_stages

    text = "\n".join([header, *(",".join(r) for r in rows)]) + "\n"
    path = scratch / "trace.csv"
    path.write_bytes(text.encode() + tail)
    try:
        stages = trace_stages(path, form, interval_s, scale, scale)
    except TraceError as err:
        assert str(err).startswith(("trace ", "cannot read trace ")), err
        return
    assert 0 < len(stages) <= MAX_INTERVALS
    assert all(0 <= s["rps"] <= MAX_RPS and 0 < s["duration_s"] <= MAX_STAGE_S for s in stages)


@settings(max_examples=VALIDATION_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(env=st.dictionaries(st.one_of(st.text(max_size=12), st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}",
                                                                          fullmatch=True)),
                           st.text(max_size=12), max_size=4))  # fmt: skip
def test_env_entries_are_accepted_only_as_one_env_file_line_each(
    scratch: Path, env: dict[str, str]
) -> None:
    import re

    from pydantic import ValidationError

    from targets.launchers.docker.environment import write_env_file
    from targets.registry import target_config

    try:
        config = target_config(kind="fastapi", env=env)
    except ValidationError as err:
        assert "env" in str(err)
        bad = [
            k
            for k, v in env.items()
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k) or set("\r\n\0") & set(v)
        ]
        assert bad, env  # refused only for a reason
        return
    text = write_env_file(scratch / "x.env", config.env).read_text()
    lines = text.removesuffix("\n").split("\n") if env else []
    assert len(lines) == len(env)  # one line per entry, no more
    assert dict(line.split("=", 1) for line in lines) == env
