"""Report a run: a terminal table, report.json (stable schema) and bode.png.

matplotlib is optional: without it the run completes and says how to get plots.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from hostctl.circuits import format_threshold
from hostctl.dataset import atomic_write_json
from hostctl.recommend import format_ohm

if TYPE_CHECKING:
    from hostctl.advice import Advice
    from hostctl.fit import FitResult
    from hostctl.runresult import RunResult


def width() -> int:
    """Columns to fit: the terminal's (or $COLUMNS), 80 when unknown, at least 40."""
    return max(40, shutil.get_terminal_size((80, 24)).columns)


def wrap(text: str, cols: int) -> list[str]:
    """A prose line wrapped to the terminal, continuation lines indented."""
    return textwrap.wrap(text, cols, subsequent_indent="  ", break_on_hyphens=False) or [""]


def table(res: RunResult, cols: int | None = None) -> str:
    """The calibrate run's table: what was measured, what to buy, why, and the verdict."""
    cfg = res.config
    head = (f"circuit {res.fit.circuit}, mode {cfg.mode}: {res.tones} tones, "
            f"{bench_time(res.bench_time_s, res.host_time_s)} ({res.wall_time_s:.1f} s wall)")
    tail = []
    if res.unmet:
        tail.append(f"precision {100 * cfg.precision:g}% not reached for: "
                    f"{', '.join(res.unmet)} (raise the tone budget or check the wiring)")
    tail += [f"note: {p}" for p in res.problems]
    return fit_table(res.fit, res.advice, head=head, tail=tail, cols=cols)


def bench_time(bench_s: float, host_s: float) -> str:
    """The run's bench seconds and the share of them the bench waited on the host."""
    share = f", {host_s:.1f} s of it host compute ({host_s / bench_s:.0%})" if bench_s > 0 else ""
    return f"{bench_s:.1f} s of bench time{share}"


def fit_table(fit: FitResult, adv: Advice, *, head: str, tail: list[str] | None = None,
              cols: int | None = None) -> str:
    """One table for calibrate, `fit` and `report`: installed part, fitted value with its
    interval (the capacitor when it is inferred), corner, part to buy, its corner, the LED
    bands and why the parts were chosen. Fits ``cols`` (default: the terminal)."""
    from hostctl.advice import CHOSEN_FOR

    cols = cols or width()
    led = (adv.drive.describe() if adv.drive is not None else
           f"LED threshold {format_threshold(adv.threshold)} of the tone: "
           f"{adv.threshold_source}")
    prose = [head, led,
             f"capacitors: {adv.capacitance_source}",
             f"why these parts: {CHOSEN_FOR[adv.chosen_for]}"]
    if not fit.trusted:
        prose.append("NOT TRUSTED: the data contradict this fit's model, so no part is "
                     "recommended (see the warnings)")
    lines = [ln for p in prose for ln in wrap(p, cols)]
    lines += ["", *_parts_grid(fit, adv, cols), ""]
    rest = [] if adv.withheld else led_lines(adv.led_map, adv.bands,
                                             "with the parts to buy: lit ")
    rest.append(f"target ({adv.target.source}): {adv.verdict}"
                + ("" if fit.trusted else " (the fitted values contradict the data: see the "
                   "warnings)"))
    rest += [f"warning: {w}" for w in fit.warnings]
    rest += [f"note: {n}" for n in fit.notes]
    rest += list(tail or [])
    lines += [ln for p in rest for ln in wrap(p, cols)]
    return "\n".join(lines)


def _parts_grid(fit: FitResult, adv: Advice, cols: int) -> list[str]:
    """The per-part rows; columns that do not fit ``cols`` are dropped, least useful first."""
    from hostctl.advice import precision

    prec = precision(fit)
    inferred = adv.capacitance_inferred
    rows = []
    for r, v in fit.values.items():
        part = None if adv.withheld or r in adv.held else adv.design.parts.get(r)
        p = prec[r]
        unc = f"±{100 * p:.2f}%" if math.isfinite(p) else "open"
        val = f"{adv.capacitance[r] * 1e6:#.4g}uF" if inferred else _ohm5(v)
        buy = (format_ohm(part.value_ohm) + ("" if part.measured else "?")) if part else "-"
        rows.append({"part": r, "installed": format_ohm(adv.installed[r])
                     if r in adv.installed else "-",
                     "fitted": f"{val} {unc}", "corner": f"{fit.corner_hz[r]:.1f}",
                     "buy": buy, "new": f"{part.corner_hz:.1f}" if part else "",
                     "pair": part.pair if part else None,
                     "pair_hz": part.pair_corner_hz if part else None})
    spec = [("part", "part", 11, "<"), ("installed", "installed", 9, ">"),
            ("fitted", "fitted C, 95%" if inferred else "fitted R, 95%", 15, ">"),
            ("corner", "corner Hz", 9, ">"), ("buy", f"buy {adv.design.series}", 7, ">"),
            ("new", "new Hz", 8, ">")]
    if not adv.installed:
        spec = [c for c in spec if c[0] != "installed"]
    for drop in ("corner", "installed", "new"):
        if sum(w + 2 for _, _, w, _ in spec) - 2 <= cols:
            break
        spec = [c for c in spec if c[0] != drop]

    def line(cells: dict[str, str]) -> str:
        return "  ".join(f"{cells[k]:{a}{w}}" for k, _, w, a in spec).rstrip()

    out = [line({k: h for k, h, _, _ in spec})]
    for row in rows:
        out.append(line(row))
        if row["pair"] is not None:
            out += wrap(f"{'':<11}  or {row['pair'].text} = "
                        f"{format_ohm(row['pair'].value_ohm)} -> {row['pair_hz']:.1f} Hz", cols)
    if any(r["buy"].endswith("?") for r in rows):
        out += wrap("?: the data do not determine that section: the part is the nominal "
                    "design for the target, not one measured for this circuit", cols)
    if not adv.withheld:
        for r, why in adv.held.items():
            out += wrap(f"{r}: no part recommended: {why}", cols)
    if inferred:
        out += wrap("fitted C: the capacitor the measured corner means with the installed "
                    "resistor", cols)
    return out


def _ohm5(v: float) -> str:
    """Ohms to 5 significant digits: a fitted value shows a 0.01% difference."""
    if not (math.isfinite(v) and v > 0):
        return "?"
    for div, unit in ((1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.5g}{unit}"
    return f"{v:.5g}"


def led_lines(lmap: dict[str, list[tuple[float, float]]], checks: dict[str, dict],
              say: str) -> list[str]:
    """One line per LED: where it is lit, and PASS/FAIL where the target has bands."""
    out = []
    for ch in dict.fromkeys([*lmap, *checks]):
        bands = lmap.get(ch)
        shown = ("no part to predict from" if bands is None else
                 ", ".join(f"{a:.0f}-{b:.0f} Hz" for a, b in bands) or "never lit")
        c = checks.get(ch, {})
        verdict = c.get("pass")
        mark = "" if verdict is None else ("  PASS" if verdict else
                                           "  UNSURE" if c.get("unsure") else "  FAIL")
        why = c.get("why", "") + (f"; fix: {c['fix']}" if c.get("fix") else "")
        out.append(f"LED {ch:<5} {say if bands else ''}{shown}{mark}"
                   + (f" ({why})" if why else ""))
    return out


def write(res: RunResult, out_dir: str | Path, *, plot: bool = True) -> list[str]:
    """report.json always; bode.png when matplotlib is there. Returns notes for the user."""
    return write_all(res, out_dir, plot=plot)[1]


def write_all(res: RunResult, out_dir: str | Path, *, plot: bool = True
              ) -> tuple[list[Path], list[str]]:
    """Write report.json (and bode.png): (the files the run folder holds, notes).

    Files get the usual 0644-style mode (0666 less the umask), not a temp file's 0600,
    so lab mates can read a shared run folder."""
    out = Path(out_dir)
    atomic_write_json(out / "report.json", res.to_json())
    files = [Path(res.session), out / "report.json"]
    notes = []
    if plot:
        try:
            bode(res, out / "bode.png")
            files.append(out / "bode.png")
        except ModuleNotFoundError:
            notes.append("no bode.png: install the plot extra (pip install 'hostctl[plot]')")
    umask = os.umask(0)
    os.umask(umask)
    for f in files:
        with contextlib.suppress(OSError):
            os.chmod(f, 0o666 & ~umask)
    return files, notes


def wrote_line(files: list[Path], cols: int | None = None) -> str:
    """``wrote: a, b, c`` -- every path the run left behind; one per line if that is
    wider than the terminal."""
    one = "wrote: " + ", ".join(str(f) for f in files)
    if len(one) <= (cols or width()):
        return one
    return "\n".join(["wrote:", *(f"  {f}" for f in files)])


def bode(res: RunResult, path: Path) -> None:
    """bode.png (hostctl.plot: dB, title with the run and verdict, target legend)."""
    from hostctl.plot import save_bode

    save_bode(res, path)
