"""Report a run: a terminal table, report.json (stable schema) and bode.png.

matplotlib is optional: without it the run completes and says how to get plots.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hostctl.circuits import channel_threshold, format_threshold
from hostctl.measurements import atomic_write_json
from hostctl.recommend import format_ohm

if TYPE_CHECKING:
    from hostctl.calibrate import RunResult


def table(res: RunResult) -> str:
    fit = res.fit
    lines = [
        f"circuit {fit.circuit}, mode {res.config.mode}: {res.tones} tones, "
        f"{res.bench_time_s:.1f} s of bench time ({res.wall_time_s:.1f} s wall)",
        f"LED threshold {format_threshold(res.threshold)} of the tone: {res.threshold_source}",
        f"capacitors {res.capacitance_source}",
        *([] if fit.trusted else ["NOT TRUSTED: the data contradict this fit's model; do not "
                                  "buy these parts (see the warning below)"]),
        "",
        f"{'component':<12} {'fitted':>9} {'95% interval':>21} {'±':>6} {'corner':>10}"
        f" {'buy':>7} {'new corner':>11}",
    ]
    for r, v in fit.values.items():
        lo, hi = fit.ci95[r]
        part = res.design.parts.get(r)
        buy = (format_ohm(part.value_ohm) + ("" if part.measured else "?")) if part else "-"
        newc = f"{part.corner_hz:8.1f} Hz" if part else ""
        lines.append(
            f"{r:<12} {v:>9.3f} [{lo:>9.3f}, {hi:>9.3f}] {100 * res.precision_reached[r]:>5.2f}%"
            f" {fit.corner_hz[r]:>7.1f} Hz {buy:>7} {newc:>11}")
        if part and part.pair is not None:
            lines.append(f"{'':<12} or {part.pair.text} = {format_ohm(part.pair.value_ohm)}")
    if any(not p.measured for p in res.design.parts.values()):
        lines.append("?: the data do not determine that section: the part is the nominal "
                     "design for the target, not one measured for this circuit")
    lines.append("")
    lines += led_lines(res.led_map, res.bands, "with the recommended parts: ")
    lines.append(f"target ({res.config.target.source}): {'PASS' if res.passed else 'FAIL'}"
                 + ("" if fit.trusted else " (the fitted values contradict the data: see the "
                    "warning)"))
    if res.unmet:
        lines.append(f"precision {100 * res.config.precision:g}% not reached for: "
                     f"{', '.join(res.unmet)} (raise --max-tones or check the wiring)")
    for w in fit.warnings:
        lines.append(f"warning: {w}")
    for p in res.problems:
        lines.append(f"note: {p}")
    lines.append(f"session: {res.session}")
    return "\n".join(lines)


def led_lines(lmap: dict[str, list[tuple[float, float]]], checks: dict[str, dict],
              say: str) -> list[str]:
    """One line per LED: where it is lit, and PASS/FAIL where the target has bands."""
    out = []
    for ch, bands in lmap.items():
        shown = ", ".join(f"{a:.0f}-{b:.0f} Hz" for a, b in bands) or "never lit"
        verdict = checks.get(ch, {}).get("pass")
        mark = "" if verdict is None else ("  PASS" if verdict else "  FAIL")
        why = checks.get(ch, {}).get("why")
        out.append(f"LED {ch:<5} {say}{shown}{mark}" + (f" ({why})" if why else ""))
    return out


def write(res: RunResult, out_dir: str | Path, *, plot: bool = True) -> list[str]:
    """report.json always; bode.png when matplotlib is there. Returns notes for the user."""
    out = Path(out_dir)
    atomic_write_json(out / "report.json", res.to_json())
    notes = []
    if plot:
        try:
            bode(res, out / "bode.png")
        except ModuleNotFoundError:
            notes.append("no bode.png: install the plot extra (pip install 'hostctl[plot]')")
    return notes


def bode(res: RunResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib import pyplot as plt

    from hostctl.circuits import get_circuit
    from hostctl.record import read_session

    circ = get_circuit(res.fit.circuit)
    data = read_session(res.session)
    f = np.geomspace(20, 20000, 400)
    fitted = res.fit.predict(f)
    built = circ.response(f, res.design.values, res.actual_capacitance)
    fig, axes = plt.subplots(len(circ.channels), 1, figsize=(8, 2.6 * len(circ.channels)),
                             sharex=True, squeeze=False)
    for ax, ch in zip(axes[:, 0], circ.channels, strict=True):
        pts = [m for m in data.rows if m.channel == ch and m.gain_usable]
        ax.loglog([m.frequency_hz for m in pts], [m.gain for m in pts], "o", ms=3,
                  label="measured")
        ax.loglog(f, fitted[ch], "-", label="fitted")
        ax.loglog(f, built[ch].detach().numpy(), "--", label="recommended build")
        ax.axhline(channel_threshold(res.threshold, ch), color="grey", lw=0.8, ls=":",
                   label="LED threshold")
        for lo, hi in res.config.target.bands.get(ch, {}).get("on", []):
            ax.axvspan(lo, hi, color="green", alpha=0.08)
        for c in res.config.target.corners.get(ch, ()):
            ax.axvline(c, color="red", lw=0.8, ls="--")
        ax.set_ylabel(f"|H| {ch}")
        ax.set_ylim(1e-3, 1.5)
        ax.grid(True, which="both", alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="lower center", ncols=4)
    axes[-1, 0].set_xlabel("frequency (Hz)")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
