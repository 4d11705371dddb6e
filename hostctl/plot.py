"""Bode plots of a fit: bode.png for a run, and :func:`plot_fit` for notebooks.

Magnitudes in dB (what bench users read), the measured points, the fitted and the
recommended responses, the LED threshold, the target's corners and LED bands, and in LED
mode each measured LED state. Never calls ``matplotlib.use``: bode.png is drawn on a
bare :class:`~matplotlib.figure.Figure` (no pyplot), and :func:`plot_fit` uses pyplot only
to hand a figure to the user's own backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hostctl.circuits import Threshold, channel_threshold, get_circuit

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from hostctl.dataset import MeasurementSet
    from hostctl.fit import FitResult
    from hostctl.runresult import RunResult
    from hostctl.target import Target

FLOOR_DB = -60.0


def _db(x: Any) -> Any:
    import numpy as np

    return 20 * np.log10(np.maximum(np.asarray(x, dtype=float), 10 ** (FLOOR_DB / 20)))


def draw(fig: Figure, fit: FitResult, data: MeasurementSet | None = None, *,
         built: Mapping[str, Any] | None = None, threshold: Threshold | None = None,
         target: Target | None = None, title: str | None = None) -> Figure:
    """One panel per channel on ``fig``: measured, fitted, built, threshold, target."""
    import numpy as np

    circ = get_circuit(fit.circuit)
    f = np.geomspace(20, 20000, 400)
    fitted = circ.magnitude(f, fit.values, fit.capacitance)
    axes = fig.subplots(len(circ.channels), 1, sharex=True, squeeze=False)[:, 0]
    rows = list(data.rows) if data is not None else []
    for ax, ch in zip(axes, circ.channels, strict=True):
        pts = [m for m in rows if m.channel == ch and m.gain_usable]
        if pts:
            ax.semilogx([m.frequency_hz for m in pts], _db([m.gain for m in pts]), "o", ms=3,
                        label="measured")
        ax.semilogx(f, _db(fitted[ch]), "-", label="fitted")
        if built is not None:
            ax.semilogx(f, _db(built[ch]), "--", label="recommended build")
        leds = [m for m in rows if m.channel == ch and m.led_usable]
        need = _needed_gain(fit, rows, ch, f)
        if need is not None:
            # on volts an LED lights where |H| * vin > V_f: the |H| it needs rises as the
            # reference sags, so the threshold is a curve, each row against its own vin
            ax.semilogx(f, _db(need), color="grey", lw=0.8, ls=":",
                        label="LED threshold: V_f / measured reference")
            vf = float(fit.led_vf[ch])   # type: ignore[index]
            _led_marks(ax, leds, [float(_db(vf / m.vin_v)) for m in leds])
        elif threshold is not None:
            t_db = float(_db(channel_threshold(threshold, ch)))
            ax.axhline(t_db, color="grey", lw=0.8, ls=":", label="LED threshold")
            _led_marks(ax, leds, [t_db] * len(leds))
        _target(ax, target, ch)
        ax.set_ylabel(f"{ch} (dB)")
        ax.set_ylim(-40, 3)
        ax.grid(True, which="both", alpha=0.3)
    handles: dict[str, Any] = {}
    for ax in axes:   # one legend for the figure: every label once, from whichever panel
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    axes[0].legend(list(handles.values()), list(handles), fontsize=6, loc="lower center",
                   ncols=4)
    axes[-1].set_xlabel("frequency (Hz)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _led_marks(ax: Any, rows: list, t_db: list[float]) -> None:
    """Measured LED states on the threshold (one height per row): filled up = lit, open
    down = dark."""
    on = [(m.frequency_hz, t + 1.5) for m, t in zip(rows, t_db, strict=True) if m.led]
    off = [(m.frequency_hz, t - 1.5) for m, t in zip(rows, t_db, strict=True) if not m.led]
    if on:
        ax.semilogx(*zip(*on, strict=True), "^", ms=4, color="tab:green",
                    label="LED on (measured)")
    if off:
        ax.semilogx(*zip(*off, strict=True), "v", ms=4, mfc="none", color="tab:red",
                    label="LED off (measured)")


def _needed_gain(fit: FitResult, rows: list, ch: str, f: Any) -> Any:
    """The |H| an LED judged on volts needs at each tone, ``V_f / vin(f)`` with the measured
    reference at the level most LED rows were played at; None when the fit did not judge
    this LED on volts or the data carry no reference amplitudes."""
    import numpy as np

    if not fit.led_vf or ch not in fit.led_vf:
        return None
    leds = [m for m in rows if m.led_usable and m.vin_v and m.vin_v > 0]
    if any(m.led_usable and not (m.vin_v and m.vin_v > 0) for m in rows if m.channel == ch):
        return None
    levels = [m.level_dbfs for m in leds]
    if not levels:
        return None
    level = max(set(levels), key=levels.count)
    by_f = {m.frequency_hz: m.vin_v for m in leds if m.level_dbfs == level}
    if len(by_f) < 2:
        return None
    fx = np.array(sorted(by_f))
    vx = np.log([by_f[x] for x in fx])
    return float(fit.led_vf[ch]) / np.exp(np.interp(np.log(f), np.log(fx), vx))


def _target(ax: Any, target: Target | None, ch: str) -> None:
    if target is None:
        return
    for i, c in enumerate(target.corners.get(ch, ())):
        ax.axvline(c, color="red", lw=0.8, ls="--", label="target corner" if i == 0 else None)
    bands = target.bands.get(ch, {})
    for i, (lo, hi) in enumerate(bands.get("on", [])):
        ax.axvspan(lo, hi, color="green", alpha=0.08,
                   label="target: LED on" if i == 0 else None)
    for i, (lo, hi) in enumerate(bands.get("off", [])):
        ax.axvspan(lo, hi, color="grey", alpha=0.06,
                   label="target: LED off" if i == 0 else None)


def run_title(res: RunResult) -> str:
    run_id = Path(res.session).parent.name
    verdict = res.advice.verdict if res.advice is not None else (
        "PASS" if res.passed else "FAIL")
    if not res.fit.trusted:
        verdict += ", NOT TRUSTED"
    return f"run {run_id}: {res.fit.circuit}, {res.config.mode} mode - {verdict}"


def bode_figure(res: RunResult) -> Figure:
    """The run's figure (not saved), on a bare Figure: no pyplot, no backend switch."""
    import numpy as np
    from matplotlib.figure import Figure

    circ = get_circuit(res.fit.circuit)
    withheld = res.advice is not None and res.advice.withheld
    built = None if withheld else circ.magnitude(np.geomspace(20, 20000, 400),
                                                 res.design.values, res.actual_capacitance)
    fig = Figure(figsize=(8, 2.6 * len(circ.channels) + 0.4))
    return draw(fig, res.fit, res.data, built=built, threshold=res.threshold,
                target=res.config.target, title=run_title(res))


def save_bode(res: RunResult, path: Path) -> None:
    fig = bode_figure(res)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


def plot_fit(fit: FitResult, data: MeasurementSet | None = None, *,
             target: Target | None = None, threshold: Threshold | None = None,
             title: str | None = None) -> Figure:
    """A fit's Bode plot for a notebook: a pyplot figure on the user's own backend (shown
    inline by Jupyter), never switching it."""
    from matplotlib import pyplot as plt

    circ = get_circuit(fit.circuit)
    fig = plt.figure(figsize=(8, 2.6 * len(circ.channels) + 0.4))
    return draw(fig, fit, data, threshold=threshold, target=target,
                title=title or f"{fit.circuit}: fitted")
