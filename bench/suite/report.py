"""From raw driver records to the summary, the ratios and the Markdown table (plot: plot.py)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.suite.common import BUSY_SECONDS

DASH = "\u2013"
"""Between min and max in a cell."""

Key = tuple[str, str, str]
"""(system, workload, variant)."""


@dataclass
class Row:
    """Every repetition of one system, workload and variant, aggregated."""

    system: str
    workload: str
    variant: str
    rates: list[float] = field(default_factory=list)
    p50s: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)
    mb_per_s: list[float] = field(default_factory=list)
    failures: int = 0
    errors: list[str] = field(default_factory=list)
    skips: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether it has at least one measured repetition."""
        return bool(self.rates)

    def rate(self) -> tuple[float, float, float] | None:
        """Median, min and max tasks/s."""
        return _spread(self.rates)

    def to_json(self) -> dict[str, Any]:
        """The summary record written to the JSON."""
        spread = self.rate()
        return {
            "system": self.system,
            "workload": self.workload,
            "variant": self.variant,
            "reps": len(self.rates),
            "tasks_per_s": None
            if spread is None
            else {"median": spread[0], "min": spread[1], "max": spread[2]},
            "latency_ms": {"p50": median(self.p50s), "p99": median(self.p99s)},
            "mb_per_s": median(self.mb_per_s),
            "failures": self.failures,
            "errors": self.errors,
            "skips": self.skips,
        }


def _finite(values: Iterable[Any]) -> list[float]:
    """The finite numbers among ``values`` (None, NaN, infinities, bools and strings dropped)."""
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if math.isfinite(v):
            out.append(float(v))
    return out


def median(values: Sequence[float]) -> float | None:
    """The median of the finite values, or None when there is none."""
    good = _finite(values)
    return statistics.median(good) if good else None


def _spread(values: Sequence[float]) -> tuple[float, float, float] | None:
    """Median, min and max of the finite values, or None when there is none."""
    good = _finite(values)
    return (statistics.median(good), min(good), max(good)) if good else None


def aggregate(records: Iterable[dict[str, Any]]) -> dict[Key, Row]:
    """Group result, skip and error records by (system, workload, variant)."""
    rows: dict[Key, Row] = {}
    for rec in records:
        kind = rec.get("kind")
        if kind not in ("result", "skip", "error"):
            continue
        key = (
            str(rec.get("system", "?")),
            str(rec.get("workload", "?")),
            str(rec.get("variant", "-")),
        )
        row = rows.setdefault(key, Row(*key))
        if kind == "skip":
            row.skips.append(str(rec.get("why", "skipped")))
        elif kind == "error":
            row.errors.append(str(rec.get("why", "error")))
        else:
            row.rates += _finite([rec.get("tasks_per_s")])
            latency = rec.get("latency_ms")
            if isinstance(latency, dict):
                row.p50s += _finite([latency.get("p50")])
                row.p99s += _finite([latency.get("p99")])
            row.mb_per_s += _finite([rec.get("mb_per_s")])
            failures = _finite([rec.get("failures")])
            row.failures += int(failures[0]) if failures else 0
    return rows


PREFERRED = {
    ("W1", "batch"): ("batch", "batch1000", "map", "natural"),
    ("W1", "per_call"): ("per_call", "batch1", "submit", "per_task"),
    ("W2", ""): ("closed_loop",),
    ("W3", ""): ("window",),
    ("W4", ""): ("map", "batch"),
    ("W5", ""): ("inline",),
    ("W5b", ""): ("shared",),
}
W1_OTHER = {"inline_1k", "per_call", "batch1", "batch100", "submit", "per_task"}
"""W1 variants that are not a system's natural batch (never the fallback of that column)."""


def pick(rows: dict[Key, Row], system: str, workload: str, column: str = "") -> Row | None:
    """The row of a table cell: a preferred variant with results, else any with results,
    else a skipped or failed one (for its reason)."""
    mine = sorted(
        (r for (s, w, _), r in rows.items() if s == system and w == workload),
        key=lambda r: r.variant,
    )
    prefs = PREFERRED.get((workload, column), ())
    for name in prefs:
        for row in mine:
            if row.variant == name and row.ok:
                return row
    candidates = mine
    if workload == "W1":
        candidates = [r for r in mine if (r.variant in prefs) or (r.variant not in W1_OTHER)]
        if column == "per_call":
            candidates = [r for r in mine if r.variant in prefs]
    with_results = [r for r in candidates if r.ok]
    if with_results:
        return with_results[0]
    return candidates[0] if candidates else None


def best(rows: dict[Key, Row], systems: Iterable[str], workload: str) -> Row | None:
    """The row with the highest median tasks/s among ``systems`` (any variant)."""
    wanted = set(systems)
    ranked = [r for r in rows.values() if r.system in wanted and r.workload == workload and r.ok]
    return max(ranked, key=lambda r: r.rate()[0], default=None)  # type: ignore[index]


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or not math.isfinite(a) or not math.isfinite(b):
        return None
    return a / b


def ratios(
    rows: dict[Key, Row], peers: Sequence[str], alpcrun_batch: int = 1000
) -> list[dict[str, Any]]:
    """The comparisons the suite exists for, each with both sides named."""
    out: list[dict[str, Any]] = []

    def rate(row: Row | None) -> float | None:
        spread = row.rate() if row is not None else None
        return spread[0] if spread else None

    def add(what: str, a: Row | None, b: Row | None, value: float | None, note: str = "") -> None:
        out.append(
            {
                "what": what,
                "a": f"{a.system} {a.workload}/{a.variant}" if a else None,
                "b": f"{b.system} {b.workload}/{b.variant}" if b else None,
                "ratio": value,
                "note": note,
            }
        )

    a1 = pick(rows, "alpcrun", "W1", "batch")
    g1 = rows.get(("grpc", "W1", f"batch{alpcrun_batch}"))
    add(
        f"alpcrun W1 batch / gRPC echo at the same batch size ({alpcrun_batch} tasks a message)",
        a1, g1, _div(rate(a1), rate(g1)),
    )  # fmt: skip
    p1 = best(rows, peers, "W1")
    add("alpcrun W1 batch / best peer W1 (any variant)", a1, p1, _div(rate(a1), rate(p1)))
    a2 = pick(rows, "alpcrun", "W2")
    a2p50 = median(a2.p50s) if a2 else None
    for peer in peers:
        r2 = pick(rows, peer, "W2")
        if r2 is None:
            continue
        add(
            f"W2 p50: {peer} / alpcrun (above 1: alpcrun is faster)",
            r2, a2, _div(median(r2.p50s), a2p50),
        )  # fmt: skip
    a5 = pick(rows, "alpcrun", "W5b")
    a1k = rows.get(("alpcrun", "W1", "inline_1k"))
    add("alpcrun W5b shared / alpcrun W1 inline_1k", a5, a1k, _div(rate(a5), rate(a1k)))
    return out


# -- Markdown ---------------------------------------------------------------------------------


def fmt_rate(spread: tuple[float, float, float] | None, digits: int = 0) -> str:
    """``median (min-max)`` with thousands separators (an en dash between min and max)."""
    if spread is None:
        return "—"
    med, lo, hi = spread
    return f"{med:,.{digits}f} ({lo:,.{digits}f}{DASH}{hi:,.{digits}f})"


def fmt_ms(value: float | None) -> str:
    """Milliseconds with a sensible precision."""
    if value is None:
        return "—"
    return f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def one_line(text: str, most: int = 200) -> str:
    """``text`` fit for a Markdown table cell: one line, no pipes, at most ``most`` characters."""
    return " ".join(str(text).split())[:most].replace("|", "/")


def fmt_mb(value: float | None) -> str:
    """MB/s, whole."""
    return "—" if value is None else f"{value:,.0f}"


class _Notes:
    """Footnotes numbered in order of first use, each reason once."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def ref(self, text: str) -> str:
        text = one_line(text, 300)
        if text not in self.texts:
            self.texts.append(text)
        return f"[^{self.texts.index(text) + 1}]"


def _cell(row: Row | None, notes: _Notes, value: str, why_missing: str) -> str:
    if row is not None and row.ok:
        return value
    if row is not None and row.errors:
        return "error" + notes.ref(f"{row.system}: {row.errors[0]}")
    if row is not None and row.skips:
        return "—" + notes.ref(f"{row.system}: {row.skips[0]}")
    return "—" + notes.ref(why_missing) if why_missing else "—"


def markdown(
    rows: dict[Key, Row],
    systems: Sequence[tuple[str, str]],
    status: dict[str, str],
    cores: int,
    ratio_list: Sequence[dict[str, Any]],
) -> str:
    """The summary table (one row per system), the ratios and every variant in detail.

    ``systems`` is (name, label) in table order; ``status`` maps a system that did not run to
    the reason.
    """
    notes = _Notes()
    ideal = cores / BUSY_SECONDS
    head = [
        "System", "W1 batch tasks/s", "W1 one call/task tasks/s", "W2 p50 / p99 ms",
        "W3 tasks/s", "W3 p50 / p99 ms", f"W4 efficiency (÷ {ideal:,.0f}/s)", "W5 tasks/s",
        "W5 MB/s", "W5b tasks/s", "failures",
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, label in systems:
        why = status.get(name, "")
        mine = [r for r in rows.values() if r.system == name]
        if not mine and not why:
            why = f"{name}: no results"
        w1b, w1c = pick(rows, name, "W1", "batch"), pick(rows, name, "W1", "per_call")
        w2, w3, w4 = pick(rows, name, "W2"), pick(rows, name, "W3"), pick(rows, name, "W4")
        w5, w5b = pick(rows, name, "W5"), pick(rows, name, "W5b")

        def tag(row: Row | None, column: str = "") -> str:
            """The variant's name, when it is not the column's usual one."""
            if row is None or row.variant in PREFERRED.get((row.workload, column), ())[:1]:
                return ""
            return f" `{one_line(row.variant, 40)}`"

        eff = None
        if w4 is not None and w4.rate():
            eff = tuple(v / ideal for v in w4.rate())  # type: ignore[union-attr]
        cells = [
            label,
            _cell(w1b, notes, fmt_rate(w1b.rate() if w1b else None) + tag(w1b, "batch"), why),
            _cell(w1c, notes, fmt_rate(w1c.rate() if w1c else None) + tag(w1c, "per_call"), why),
            _cell(w2, notes, f"{fmt_ms(median(w2.p50s) if w2 else None)} / "
                  f"{fmt_ms(median(w2.p99s) if w2 else None)}", why),
            _cell(w3, notes, fmt_rate(w3.rate() if w3 else None), why),
            _cell(w3, notes, f"{fmt_ms(median(w3.p50s) if w3 else None)} / "
                  f"{fmt_ms(median(w3.p99s) if w3 else None)}", why),
            _cell(w4, notes, fmt_rate(eff, 2), why),  # type: ignore[arg-type]
            _cell(w5, notes, fmt_rate(w5.rate() if w5 else None, 1) + tag(w5), why),
            _cell(w5, notes, fmt_mb(median(w5.mb_per_s) if w5 else None), why),
            _cell(w5b, notes, fmt_rate(w5b.rate() if w5b else None), why),
            str(sum(r.failures for r in mine)) if mine else "—",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Rates: median (min{DASH}max) over the repetitions.", ""]
    lines += ["### Ratios", "", "| comparison | a | b | a ÷ b |", "|---|---|---|---|"]
    for r in ratio_list:
        value = "—" if r["ratio"] is None else f"{r['ratio']:.3g}"
        lines.append(f"| {r['what']} | {r['a'] or '—'} | {r['b'] or '—'} | {value} |")
    columns = [
        "system",
        "workload",
        "variant",
        "reps",
        "tasks/s",
        "p50/p99_ms",
        "MB/s",
        "failures",
        "note",
    ]
    lines += ["", "### Every variant", "", "| " + " | ".join(columns).replace("_", " ") + " |"]
    lines.append("|" + "---|" * len(columns))
    order = {name: i for i, (name, _) in enumerate(systems)}
    for row in sorted(
        rows.values(), key=lambda r: (order.get(r.system, 99), r.workload, r.variant)
    ):
        note = one_line("; ".join([*row.errors, *row.skips]))
        lines.append(
            f"| {one_line(row.system)} | {one_line(row.workload)} | {one_line(row.variant)} | "
            f"{len(row.rates)} | "
            f"{fmt_rate(row.rate())} | {fmt_ms(median(row.p50s))} / {fmt_ms(median(row.p99s))} "
            f"| {fmt_mb(median(row.mb_per_s))} | {row.failures} | {note} |"
        )
    if notes.texts:
        lines.append("")
        lines += [f"[^{i}]: {text}" for i, text in enumerate(notes.texts, 1)]
    return "\n".join(lines) + "\n"
