"""A model of N replicas behind a balancer, from one replica's measured open-loop curve.

The input is what one replica did under Poisson arrivals: for each arrival rate run, its p99
(:class:`analysis.openloop.RatePoint`), measured in the layout the replicas will run in. The
model predicts the p99 at a total rate ``R`` over ``N`` replicas, and so the capacity of
``N`` replicas under the SLO, for the balancer in front of them:

``reuseport`` -- kernel SO_REUSEPORT (also a Kubernetes Service through kube-proxy)
    Spreads *connections* at random. With many client connections carrying like shares (the
    load generator's ``connections: per-request`` stands for such a population), each request
    lands on a random replica, and Poisson arrivals thinned at random stay Poisson, at ``R / N``
    each. A single client reusing a few keep-alive connections is lumpier: measured, three
    replicas took 11%, 16% and 26% CPU, the last at its quota, while the others idled.
    Latencies of ``N`` identical replicas pooled have each one's distribution::

        p99_N(R) = p99_1(R / N)            capacity_N = N x capacity_1

``round-robin`` -- nginx's default upstream
    Every ``N``-th request: a replica's inter-arrival times are Erlang-``N``, squared
    coefficient of variation ``ca2 = 1 / N`` instead of Poisson's 1. Kingman's approximation
    makes queueing delay proportional to ``(ca2 + cs2) / 2``, so the queueing part of p99
    shrinks by that ratio::

        p99_N(R) = base + (p99_1(R / N) - base) x (1 / N + cs2) / (1 + cs2)

    ``base`` is the p99 at the lowest rate measured (service with next to no queueing) and
    ``cs2`` the squared coefficient of variation of latency there (1 when not recorded: the
    smallest gain).
``least-conn`` -- nginx ``least_conn``
    Sends each request to the replica with the fewest in flight: for identical replicas never
    worse than round-robin, so it is predicted as round-robin, a conservative bound.

No interpolation and nothing beyond the measurement: ``p99_1(r)`` is the judged p99 (upper
confidence bound where there is one) of the lowest *measured* rate at or above ``r``, made
non-decreasing in the rate; above the highest measured rate nothing is predicted (None), and
a rate there counts as breaking the SLO. So ``capacity_N`` is ``N`` times a measured rate.

Assumptions, written into every plan (:meth:`ReplicaModel.assumptions`): arrivals are
Poisson; replicas are identical and do not contend for anything (each has the CPU it was
measured with: replicas x CPU quota fit the cores they are pinned to, and a quota caps CPU
time without reserving it, so replicas time-sharing cores slow each other: three on one core
measured x0.75 of the prediction at 0.33 and at 0.22 CPU each); the balancer is not a
bottleneck. ``servecap plan --verify`` runs it to check (:mod:`loadtests.proof`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from analysis.defaults import DEFAULT_MAX_ERROR_RATE, DEFAULT_MAX_REJECT_RATE
from analysis.openloop import RatePoint, counted_points

Balancer = Literal["reuseport", "round-robin", "least-conn"]
BALANCERS: tuple[str, ...] = get_args(Balancer)
BALANCER_MODELS: dict[str, Balancer] = {
    "reuseport": "reuseport", "nginx-round-robin": "round-robin",
    "nginx-least-conn": "least-conn",
}  # fmt: skip
"""The balancers servecap runs replicas behind (``plan --balancer``, ``--verify``) and the
model that predicts each."""
MAX_REPLICAS = 100_000
"""Plans needing more replicas than this are refused (a unit or a curve is wrong)."""
DEFAULT_SCV = 1.0
"""Squared coefficient of variation of service assumed when the curve does not record it."""
FLOOR_SHARE = 0.8
"""A p99 at this share of the SLO or more well below the capacity leaves it on a plateau."""
PLATEAU_RATE_SHARE = 0.8
"""Rates up to this share of the capacity are "well below" it (:meth:`floor_warning`)."""

MODEL_NAMES = {
    "reuseport": "random split (Poisson thinning)",
    "round-robin": "round-robin split (Erlang arrivals, Kingman scaling)",
    "least-conn": "least connections, bounded by the round-robin split",
}


@dataclass(frozen=True)
class ReplicaModel:
    """Predicted p99 and capacity of N replicas from one replica's open-loop curve."""

    points: tuple[RatePoint, ...]
    slo_p99_ms: float
    balancer: Balancer = "reuseport"
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE
    _sorted: tuple[RatePoint, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.balancer not in BALANCERS:
            raise ValueError(f"balancer must be one of {', '.join(BALANCERS)}, "
                             f"got {self.balancer!r}")  # fmt: skip
        if not self.slo_p99_ms > 0:
            raise ValueError(f"slo_p99_ms must be positive, got {self.slo_p99_ms}")
        # a rate run twice: its worse p99 first (it decides the rate)
        counted = counted_points(self.points, self.slo_p99_ms, self.max_error_rate,
                                 self.max_reject_rate)  # fmt: skip
        ordered = tuple(
            sorted(
                counted,
                key=lambda p: (
                    p.arrival_rps,
                    -(p.judged_p99_ms if math.isfinite(p.judged_p99_ms) else math.inf),
                ),
            )
        )
        if not ordered:
            raise ValueError("the model needs at least one measured open-loop rate")
        object.__setattr__(self, "_sorted", ordered)

    @property
    def name(self) -> str:
        return MODEL_NAMES[self.balancer]

    @property
    def base_p99_ms(self) -> float:
        """The p99 at the lowest measured rate: service with next to no queueing."""
        return self._sorted[0].judged_p99_ms

    @property
    def scv(self) -> float:
        """Squared coefficient of variation of latency at the lowest measured rate."""
        cv = self._sorted[0].latency_cv
        return DEFAULT_SCV if cv is None or not math.isfinite(cv) else cv * cv

    def queueing_factor(self, replicas: int) -> float:
        """How much of one replica's queueing delay is left with ``replicas`` behind the
        balancer (1 for a random split)."""
        _check_replicas(replicas)
        if self.balancer == "reuseport":
            return 1.0
        return (1.0 / replicas + self.scv) / (1.0 + self.scv)

    def _predicted(self, replicas: int) -> list[tuple[RatePoint, float]]:
        """Each measured rate with the p99 predicted at that rate per replica (running max)."""
        factor = self.queueing_factor(replicas)
        base, out, worst = self.base_p99_ms, [], -math.inf
        for point in self._sorted:
            worst = max(worst, point.judged_p99_ms if math.isfinite(point.judged_p99_ms)
                        else math.inf)  # fmt: skip
            out.append((point, base + (worst - base) * factor))
        return out

    def p99_ms(self, total_rps: float, replicas: int) -> float | None:
        """Predicted p99 at ``total_rps`` over ``replicas``; None beyond the measurement."""
        per_replica = total_rps / replicas
        for point, p99 in self._predicted(replicas):
            if point.arrival_rps >= per_replica - 1e-9:
                return p99
        return None

    def capacity_rps(self, replicas: int) -> float | None:
        """Predicted capacity of ``replicas``: ``replicas`` x the highest measured rate whose
        predicted p99 (and measured error rates) meet the SLO; None when none does."""
        best = None
        for point, p99 in self._predicted(replicas):
            errors_ok = (point.error_rate <= self.max_error_rate
                         and point.reject_rate <= self.max_reject_rate)  # fmt: skip
            if not (p99 <= self.slo_p99_ms and errors_ok):
                break
            best = point.arrival_rps
        return None if best is None else replicas * best

    def replicas_for(self, total_rps: float) -> int:
        """The fewest replicas whose predicted capacity reaches ``total_rps``."""
        if not total_rps > 0 or not math.isfinite(total_rps):
            raise ValueError(f"the rate to plan for must be positive, got {total_rps}")
        one = self.capacity_rps(1)
        if one is None:
            raise ValueError("no measured rate meets the SLO: nothing to plan from")
        # A random split scales exactly linearly; the others at least as well.
        most = math.ceil(total_rps / one - 1e-9)
        if most > MAX_REPLICAS:
            raise ValueError(f"{most:,} replicas would be needed (more than {MAX_REPLICAS:,})")
        for n in range(1, most + 1):
            cap = self.capacity_rps(n)
            if cap is not None and cap >= total_rps - 1e-9:
                return n
        return most

    def floor_warning(self) -> str | None:
        """Why the capacity is fragile when the p99 well below it is already near the SLO (a
        CFS quota's throttling, a periodic stall, a slow model): up to the knee the p99 stays
        on a plateau just under the SLO, and noise decides where it crosses. Judged on the
        rates at most ``PLATEAU_RATE_SHARE`` of the capacity (the lightest when none is)."""
        one = self.capacity_rps(1)
        limit = PLATEAU_RATE_SHARE * one + 1e-9 if one is not None else -math.inf
        below = [p for p in self._sorted if p.arrival_rps <= limit] or [self._sorted[0]]
        worst = max(below, key=lambda p: p.judged_p99_ms if math.isfinite(p.judged_p99_ms)
                    else -math.inf)  # fmt: skip
        p99 = worst.judged_p99_ms
        if not (math.isfinite(p99) and p99 >= FLOOR_SHARE * self.slo_p99_ms):
            return None
        where = ("the lightest rate measured" if worst is self._sorted[0] else
                 f"{worst.arrival_rps:.1f} requests/s")  # fmt: skip
        of_capacity = f" ({worst.arrival_rps / one:.0%} of the capacity)" if one else ""
        return (
            f"FRAGILE: p99 at {where}{of_capacity} is already {p99:.1f} ms, "
            f"{p99 / self.slo_p99_ms:.0%} of the {self.slo_p99_ms:g} ms SLO: the capacity "
            f"sits where a flat tail (a CFS quota's throttling, a periodic stall, a slow "
            f"model) grazes the SLO, so noise decides it and a plan from it may not hold; "
            f"give each replica more CPU (a whole core rather than a quota) or plan for a "
            f"higher SLO."
        )

    def assumptions(self) -> list[str]:
        """The model and its assumptions, as lines for a plan's text."""
        lines = [f"Model of N replicas: {self.name}, from one replica's open-loop curve "
                 f"({len(self._sorted)} measured rates, {self._sorted[0].arrival_rps:.1f} to "
                 f"{self._sorted[-1].arrival_rps:.1f} requests/s)."]  # fmt: skip
        if self.balancer == "reuseport":
            lines.append("Balancer: kernel SO_REUSEPORT (or any random per-connection split): "
                         "each replica sees 1/N of the Poisson arrivals, so p99 at N replicas "
                         "and R requests/s = the p99 one replica had at R/N.")  # fmt: skip
        else:
            lines.append(
                f"Balancer: nginx {self.balancer}: a replica's arrivals are smoother than "
                f"Poisson (Erlang-N), so its queueing delay is scaled by (1/N + cs2)/(1 + cs2), "
                f"cs2 = {self.scv:.2f}, above the light-load p99 of {self.base_p99_ms:.1f} ms"
                + (" (least-connections predicted as round-robin: a conservative bound)."
                   if self.balancer == "least-conn" else "."))  # fmt: skip
        lines.append("p99 at a rate is the upper 95% bound measured at the lowest rate run at "
                     "or above it; nothing is predicted beyond the highest rate run.")  # fmt: skip
        lines.append("Assumes Poisson arrivals, identical replicas that do not contend (each "
                     "gets the CPU it was measured with, alone on its cores: replicas "
                     "time-sharing cores slow each other) and a balancer that is no bottleneck; "
                     "`servecap plan --verify` measures it.")  # fmt: skip
        if (fragile := self.floor_warning()) is not None:
            lines.append(fragile)
        return lines


def _check_replicas(replicas: int) -> None:
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")


def model_from_points(
    points: Sequence[RatePoint], slo_p99_ms: float, balancer: Balancer = "reuseport",
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE,
) -> ReplicaModel | None:  # fmt: skip
    """The model of a curve, or None when the curve is empty."""
    if not points:
        return None
    return ReplicaModel(tuple(points), slo_p99_ms, balancer, max_error_rate, max_reject_rate)
