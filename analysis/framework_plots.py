"""The report's chart of serving frameworks, batching off and on (:mod:`analysis.frameworks`):
a frame in, a matplotlib ``Figure`` out, drawn like :mod:`analysis.plots`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.plots import new_figure

FRAMEWORK_PANELS = (("capacity_rps", "capacity under the SLO (rps)"),
                    ("p50_light_ms", "p50 at light load (ms)"),
                    ("cpu_cores_per_1000_rps", "CPU cores per 1,000 rps"),
                    ("ram_gb_per_1000_rps", "RAM GB per 1,000 rps"))  # fmt: skip


def frameworks_comparison(frame: pd.DataFrame, title: str | None = None) -> Figure:
    """Each framework (kind) as a group of bars, batching off and on side by side, in one
    panel per figure, and cost (or core-hours) per million; ``frame`` is
    :func:`analysis.frameworks.framework_table` output."""
    priced = bool(frame["cost_per_million"].notna().any()) if len(frame) else False
    panels = (*FRAMEWORK_PANELS, ("cost_per_million", "cost per million") if priced
              else ("core_hours_per_million", "core-hours per million"))  # fmt: skip
    fig = new_figure(12.0, 6.5)
    axes = fig.subplots(2, 3).ravel()
    kinds = list(dict.fromkeys(frame["kind"])) if len(frame) else []
    for ax, (col, label) in zip(axes, panels, strict=False):
        for offset, (batched, color) in enumerate(((False, "tab:blue"), (True, "tab:orange"))):
            rows = frame[frame["batching"] == batched].groupby("kind")[col].max()
            values = [float(rows.get(k, math.nan)) for k in kinds]
            ax.bar(np.arange(len(kinds)) + (offset - 0.5) * 0.4, values, 0.4, color=color,
                   label="batching on" if batched else "batching off")  # fmt: skip
        ax.set_xticks(np.arange(len(kinds)), kinds, rotation=20, fontsize="small")
        ax.set_title(label, fontsize="medium")
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize="small")
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    if not kinds:
        axes[0].text(0.5, 0.5, "no runs", ha="center", va="center",
                     transform=axes[0].transAxes)  # fmt: skip
    fig.suptitle(title or "Serving frameworks, batching off and on")
    return fig
