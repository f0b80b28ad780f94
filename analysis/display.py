"""Display helpers for the report notebooks: frames and figures as outputs that read well once
exported to HTML (numbers formatted, dashes for missing values, images embedded)."""

from __future__ import annotations

import base64
import html
import math
from typing import Any

import pandas as pd

DASH = "\u2013"
PERCENT_WORDS = ("rate", "share", "within SLO /", "utilisation", "headroom")
"""Columns whose name contains one of these hold fractions, shown as percentages."""


def _fmt(value: Any, column: str = "") -> str:
    if value is None or value is pd.NA:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return DASH if math.isnan(value) else "∞"
        if any(word in column for word in PERCENT_WORDS):
            return f"{value:.2%}"
        if value == int(value) and abs(value) < 1e6 and "ms" not in column:
            return f"{int(value):,}"
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 100:
            return f"{value:,.1f}"
        if magnitude >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def format_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as display text: thousands separators, rates as %, NaN as a dash."""
    out = pd.DataFrame(index=frame.index)
    for col in frame.columns:
        name = " / ".join(map(str, col)) if isinstance(col, tuple) else str(col)
        out[col] = [_fmt(v.item() if hasattr(v, "item") else v, name) for v in frame[col]]
    out.columns = frame.columns
    return out


def table_html(frame: pd.DataFrame, index: bool = False, caption: str | None = None) -> str:
    """An HTML table of ``frame``: formatted cells (:func:`format_frame`), text left-aligned,
    numbers right-aligned, grouped column headers centred."""
    shown = frame if not index else frame.reset_index()
    styler = format_frame(shown).style.hide(axis="index")
    text = [c for c in shown.columns if not pd.api.types.is_numeric_dtype(shown[c])]
    styler = styler.set_properties(subset=text, **{"text-align": "left"})
    styles = [{"selector": "caption", "props": "caption-side: top; font-weight: bold;"}]
    if isinstance(shown.columns, pd.MultiIndex):
        styles.append({"selector": "th.col_heading.level0", "props": "text-align: center;"})
    styler = styler.set_table_styles(styles).set_table_attributes('class="dataframe"')
    if caption:
        styler = styler.set_caption(caption)
    return str(styler.to_html())


def _display(obj: Any) -> None:
    from IPython.display import display

    display(obj)


def figure_title(fig: Any) -> str:
    """The figure's suptitle, else its first axes title (the image's alternative text)."""
    suptitle = getattr(fig, "_suptitle", None)
    if suptitle is not None and suptitle.get_text():
        return str(suptitle.get_text())
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    return titles[0] if titles else "figure"


def figure_html(fig: Any, dpi: int = 110, alt: str | None = None) -> str:
    """An ``<img>`` with the PNG embedded as a data URI and alternative text."""
    from analysis.plots import to_png

    data = base64.b64encode(to_png(fig, dpi=dpi)).decode("ascii")
    text = html.escape(alt or figure_title(fig), quote=True)
    return f'<img alt="{text}" src="data:image/png;base64,{data}"/>'


def show(fig: Any, dpi: int = 110, alt: str | None = None) -> None:
    """Display a Figure as an embedded PNG with alternative text (no pyplot involved)."""
    from IPython.display import HTML

    _display(HTML(figure_html(fig, dpi, alt)))


def show_table(frame: pd.DataFrame, index: bool = False, caption: str | None = None) -> None:
    from IPython.display import HTML

    _display(HTML(table_html(frame, index=index, caption=caption)))


def show_text(markdown: str) -> None:
    """Display generated Markdown (headings, lists, emphasis)."""
    from IPython.display import Markdown

    _display(Markdown(markdown))


def show_preformatted(text: str) -> None:
    from IPython.display import HTML

    style = "font-family: 'DejaVu Sans Mono', Menlo, Consolas, monospace; font-size: 12px"
    _display(HTML(f'<pre style="{style}">{html.escape(text)}</pre>'))
