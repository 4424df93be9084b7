"""The figure of ``ecoasync simulate --frontier``: savings against mean delay, one line per
strategy (and risk setting), the Pareto-efficient points filled and the default highlighted
(matplotlib, Agg backend; the ``plot`` extra).

Drawn from the points as ``ecoasync simulate --frontier --json`` prints them, so the figure and
the JSON cannot disagree.

Layer: edges. Imports values (exceptions) and the report's text helper; matplotlib lazily.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._exceptions import PlotInputError
from ._plot import literal

__all__ = ["render_frontier", "series_label"]

_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown")


def series_label(point: Mapping[str, Any]) -> str:
    """The line a point is drawn on: its strategy, and its caution when it has one."""
    caution = point.get("caution")
    if caution is None:
        return str(point["strategy"])
    return f"{point['strategy']}, caution {float(caution):g}"


def render_frontier(
    out: str,
    points: Sequence[Mapping[str, Any]],
    *,
    oracle_reduction_pct: float,
    title: str,
) -> None:
    """Draw ``points`` (``strategy``, ``caution``, ``min_improvement``, ``mean_delay_h``,
    ``oracle_capture_pct``, ``pareto``, ``default``) into ``out`` (PNG or SVG by its suffix):
    the share of the oracle's savings against the mean delay, the reduction on a second axis
    (``oracle_reduction_pct`` is the oracle's, so reduction = share x that / 100).

    Raises :class:`PlotInputError` when there are no points.
    """
    if not points:
        raise PlotInputError("nothing to plot: the frontier has no points")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[Mapping[str, Any]]] = {}
    for p in points:
        series.setdefault(series_label(p), []).append(p)
    fig, ax = plt.subplots(figsize=(9, 5.6), layout="constrained")
    for n, (label, line) in enumerate(series.items()):
        colour = _COLOURS[n % len(_COLOURS)]
        line = sorted(line, key=lambda p: float(p["min_improvement"]))
        xs = [float(p["mean_delay_h"]) for p in line]
        ys = [float(p["oracle_capture_pct"]) for p in line]
        ax.plot(xs, ys, color=colour, lw=1.2, alpha=0.8, label=literal(label))
        for p, x, y in zip(line, xs, ys, strict=True):
            ax.scatter(
                [x],
                [y],
                s=34,
                zorder=3,
                edgecolors=colour,
                facecolors=colour if p.get("pareto") else "white",
            )
            ax.annotate(
                f"{100 * float(p['min_improvement']):g} %",
                (x, y),
                xytext=(4, -9),
                textcoords="offset points",
                fontsize=7,
                color=colour,
            )
    efficient = sorted(
        (float(p["mean_delay_h"]), float(p["oracle_capture_pct"]))
        for p in points
        if p.get("pareto")
    )
    if efficient:
        ax.step(
            *zip(*efficient, strict=True),
            where="post",
            color="0.4",
            ls="--",
            lw=0.9,
            zorder=1,
            label="Pareto frontier",
        )
    for p in points:
        if p.get("default"):
            ax.scatter(
                [float(p["mean_delay_h"])],
                [float(p["oracle_capture_pct"])],
                marker="*",
                s=320,
                color="gold",
                edgecolors="black",
                zorder=4,
                label="default Policy()",
            )
    ax.set_xlabel("mean delay (h)")
    ax.set_ylabel("share of the oracle's savings (%)")
    if oracle_reduction_pct > 0:
        scale = oracle_reduction_pct / 100.0

        def to_reduction(capture: Any) -> Any:
            return capture * scale

        def to_capture(reduction: Any) -> Any:
            return reduction / scale

        right = ax.secondary_yaxis("right", functions=(to_reduction, to_capture))
        right.set_ylabel("reduction vs running at once (%)")
    ax.set_title(literal(title), fontsize="medium")
    ax.text(
        0.99,
        0.02,
        "labels: min_improvement; filled: Pareto-efficient (no point saves more with no more "
        "delay)",
        transform=ax.transAxes,
        ha="right",
        fontsize=7,
        color="0.3",
    )
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)
    fig.savefig(out, dpi=110)
    plt.close(fig)
