"""The suite's plot: one log-scale bar panel per workload (matplotlib, Agg backend)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from bench.suite.report import PREFERRED, Key, Row, median, pick

PANELS = (
    ("W1", "batch", "W1 no-op, natural batch (tasks/s)", "rate"),
    ("W1", "per_call", "W1 no-op, one call per task (tasks/s)", "rate"),
    ("W2", "", "W2 closed-loop p50 (ms)", "p50"),
    ("W3", "", "W3 window of 64 (tasks/s)", "rate"),
    ("W4", "", "W4 1 ms tasks (tasks/s)", "rate"),
    ("W5", "", "W5 1 MiB in/out (tasks/s)", "rate"),
    ("W5b", "", "W5b shared 1 MiB (tasks/s)", "rate"),
)


def _bar(
    rows: dict[Key, Row], name: str, label: str, workload: str, column: str, what: str
) -> tuple[str, float, float, float, str] | None:
    """(label, median, min, max, colour) of one bar, or None when there is nothing to show."""
    row = pick(rows, name, workload, column)
    if row is None or not row.ok:
        return None
    if what == "p50":
        med = median(row.p50s)
        spread = None if med is None else (med, min(row.p50s), max(row.p50s))
    else:
        spread = row.rate()
    if spread is None or spread[1] <= 0:
        return None
    if row.variant not in PREFERRED.get((workload, column), ())[:1]:
        label = f"{label}\n{row.variant}"
    colour = {"alpcrun": "tab:orange", "grpc": "tab:gray"}.get(name, "tab:blue")
    return (label, spread[0], spread[1], spread[2], colour)


def plot(rows: dict[Key, Row], systems: Sequence[tuple[str, str]], path: Path, title: str) -> None:
    """Log-scale bars per workload (median, whiskers from min to max), one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(18, 8))
    for ax, (workload, column, heading, what) in zip(axes.flat, PANELS, strict=False):
        bars = [
            b for name, label in systems if (b := _bar(rows, name, label, workload, column, what))
        ]
        ax.set_title(heading, fontsize=10)
        if not bars:
            ax.text(0.5, 0.5, "no results", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            continue
        labels, values, lows, highs, colors = zip(*bars, strict=True)
        x = range(len(values))
        errors = [[v - lo for v, lo in zip(values, lows, strict=True)],
                  [hi - v for v, hi in zip(values, highs, strict=True)]]  # fmt: skip
        ax.bar(x, values, yerr=errors, capsize=3, color=colors)
        ax.set_yscale("log")
        bottom = 10 ** (math.floor(math.log10(min(lows))) - 1)
        ax.set_ylim(bottom=bottom, top=max(highs) * 3)
        for i, v in enumerate(values):
            text = f"{v:,.0f}" if v >= 10 else f"{v:.2g}"
            ax.text(i + 0.04, v, text, ha="left", va="bottom", fontsize=7)
        ax.set_xticks(list(x), labels, rotation=30, ha="right", fontsize=8)
    axes.flat[-1].axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
