"""Standard (E-series) resistor values: snapping, pairs, and designs for a target.

All comparisons are by ratio (in log space): a 5% miss at 10 ohm is as bad as at 10 kohm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hostctl.circuits import Circuit, Threshold, capacitances, channel_threshold
from hostctl.errors import InputError
from hostctl.target import Target

if TYPE_CHECKING:
    from hostctl.leds import LedDrive

E12 = (1.0, 1.2, 1.5, 1.8, 2.2, 2.7, 3.3, 3.9, 4.7, 5.6, 6.8, 8.2)
E24 = (1.0, 1.1, 1.2, 1.3, 1.5, 1.6, 1.8, 2.0, 2.2, 2.4, 2.7, 3.0,
       3.3, 3.6, 3.9, 4.3, 4.7, 5.1, 5.6, 6.2, 6.8, 7.5, 8.2, 9.1)
E96 = (1.00, 1.02, 1.05, 1.07, 1.10, 1.13, 1.15, 1.18, 1.21, 1.24, 1.27, 1.30, 1.33, 1.37,
       1.40, 1.43, 1.47, 1.50, 1.54, 1.58, 1.62, 1.65, 1.69, 1.74, 1.78, 1.82, 1.87, 1.91,
       1.96, 2.00, 2.05, 2.10, 2.15, 2.21, 2.26, 2.32, 2.37, 2.43, 2.49, 2.55, 2.61, 2.67,
       2.74, 2.80, 2.87, 2.94, 3.01, 3.09, 3.16, 3.24, 3.32, 3.40, 3.48, 3.57, 3.65, 3.74,
       3.83, 3.92, 4.02, 4.12, 4.22, 4.32, 4.42, 4.53, 4.64, 4.75, 4.87, 4.99, 5.11, 5.23,
       5.36, 5.49, 5.62, 5.76, 5.90, 6.04, 6.19, 6.34, 6.49, 6.65, 6.81, 6.98, 7.15, 7.32,
       7.50, 7.68, 7.87, 8.06, 8.25, 8.45, 8.66, 8.87, 9.09, 9.31, 9.53, 9.76)
SERIES: dict[str, tuple[tuple[float, ...], float]] = {
    "E12": (E12, 0.10), "E24": (E24, 0.05), "E96": (E96, 0.01),
}
#: Practical resistor range for a bench build (ohm).
R_MIN, R_MAX = 1.0, 10e6


def series_info(series: str) -> tuple[tuple[float, ...], float]:
    key = series.upper()
    if key not in SERIES:
        raise InputError(f"unknown series '{series}' (known: {', '.join(SERIES)})")
    return SERIES[key]


def standard_values(series: str = "E24", lo: float = R_MIN, hi: float = R_MAX) -> list[float]:
    """All values of ``series`` between lo and hi, rounded to 3 significant digits."""
    mantissas, _ = series_info(series)
    out = []
    for dec in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1):
        for m in mantissas:
            v = float(f"{m * 10.0 ** dec:.3g}")
            if lo <= v <= hi:
                out.append(v)
    return sorted(set(out))


def snap(value_ohm: float, series: str = "E24") -> float:
    """Nearest standard value by ratio."""
    if not (math.isfinite(value_ohm) and value_ohm > 0):
        raise InputError(f"cannot pick a standard part for {value_ohm} ohm")
    vals = standard_values(series, lo=value_ohm / 20, hi=value_ohm * 20)
    return min(vals, key=lambda v: abs(math.log(v / value_ohm)))


@dataclass(frozen=True)
class Pair:
    kind: str          # "series" | "parallel"
    parts: tuple[float, float]
    value_ohm: float

    @property
    def text(self) -> str:
        a, b = self.parts
        sep = " + " if self.kind == "series" else " || "
        return f"{format_ohm(a)}{sep}{format_ohm(b)}"


def best_pair(value_ohm: float, series: str = "E24") -> Pair:
    """Best two standard parts in series or parallel, by ratio error."""
    vals = standard_values(series, lo=max(R_MIN, value_ohm / 1000), hi=min(R_MAX, value_ohm * 1000))
    best: Pair | None = None
    best_err = math.inf
    for a in vals:
        if a < value_ohm:  # series: a + b = R with b <= a
            rest = value_ohm - a
            if rest >= R_MIN and rest <= a * 1.0001:
                b = snap(rest, series)
                if b <= a:
                    err = abs(math.log((a + b) / value_ohm))
                    if err < best_err:
                        best, best_err = Pair("series", (a, b), a + b), err
        if a > value_ohm:  # parallel: 1/b = 1/R - 1/a with b >= a
            inv = 1 / value_ohm - 1 / a
            if inv > 0:
                b_ideal = 1 / inv
                if b_ideal >= a * 0.9999 and b_ideal <= R_MAX:
                    b = snap(b_ideal, series)
                    v = a * b / (a + b)
                    err = abs(math.log(v / value_ohm))
                    if err < best_err:
                        best, best_err = Pair("parallel", (a, b), v), err
    if best is None:
        s = snap(value_ohm, series)
        best = Pair("series", (s, 0.0), s)
    return best


def format_ohm(v: float) -> str:
    for div, unit in ((1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.4g}{unit}"
    return f"{v:.4g}"


@dataclass
class PartChoice:
    """The recommendation for one resistor."""

    resistor: str
    ideal_ohm: float
    value_ohm: float
    series: str
    corner_hz: float           # the corner the standard part gives
    corner_error: float        # relative error of that corner against the ideal
    pair: Pair | None = None   # offered when the single part misses by more than the tolerance
    pair_corner_hz: float | None = None
    #: False when the measurement left this part's section open: a nominal design only
    measured: bool = True

    def to_json(self) -> dict:
        d = {"value_ohm": self.value_ohm, "series": self.series, "ideal_ohm": self.ideal_ohm,
             "corner_hz": self.corner_hz, "corner_error": self.corner_error}
        if not self.measured:
            d["measured"] = False
        if self.pair is not None:
            d["pair"] = {"kind": self.pair.kind, "parts_ohm": list(self.pair.parts),
                         "value_ohm": self.pair.value_ohm, "corner_hz": self.pair_corner_hz}
        return d


def choose(circ: Circuit, resistor: str, ideal_ohm: float, series: str,
           capacitance: float | Mapping[str, float], pair_threshold: float | None = None
           ) -> PartChoice:
    """Snap ``ideal_ohm`` and say what corner the standard part really gives."""
    _, tol = series_info(series)
    thr = tol if pair_threshold is None else pair_threshold
    v = snap(ideal_ohm, series)
    ideal_corner = circ.corner_hz(resistor, ideal_ohm, capacitance)
    corner = circ.corner_hz(resistor, v, capacitance)
    pc = PartChoice(resistor, ideal_ohm, v, series.upper(), corner, corner / ideal_corner - 1)
    if abs(math.log(v / ideal_ohm)) > math.log1p(thr):
        p = best_pair(ideal_ohm, series)
        if abs(math.log(p.value_ohm / ideal_ohm)) < abs(math.log(v / ideal_ohm)):
            pc.pair = p
            pc.pair_corner_hz = circ.corner_hz(resistor, p.value_ohm, capacitance)
    return pc


@dataclass
class Design:
    circuit: str
    series: str
    capacitance: dict[str, float]
    parts: dict[str, PartChoice] = field(default_factory=dict)

    @property
    def values(self) -> dict[str, float]:
        return {k: p.value_ohm for k, p in self.parts.items()}

    def to_json(self) -> dict:
        return {"circuit": self.circuit, "series": self.series,
                "capacitance_f": self.capacitance,
                "parts": {k: p.to_json() for k, p in self.parts.items()}}


def ideal_values(circ: Circuit, target: Target,
                 capacitance: float | Mapping[str, float]) -> dict[str, float]:
    """Exact resistor per section for the target corners (buffered first-order sections)."""
    if not circ.sections:
        raise InputError(f"circuit '{circ.name}' has no sections to design for")
    out = {}
    for r in circ.resistors:
        corner = target.corner_for(circ, r)
        out[r] = circ.resistor_for_corner(r, corner, capacitance)
    if getattr(circ, "netlist", None) is not None:
        # the circuit as built (loading sections, the probe): its own model decides
        from hostctl.corners import values_for_target

        out = values_for_target(circ, target, capacitance, out)
    return out


def design(circ: Circuit, target: Target, capacitance: float | Mapping[str, float] = 1e-6,
           series: str = "E24", pair_threshold: float | None = None) -> Design:
    """Standard resistors meeting ``target`` with the given (or measured) capacitors."""
    series_info(series)
    caps = capacitances(circ, capacitance)
    d = Design(circ.name, series.upper(), caps)
    for r, ideal in ideal_values(circ, target, caps).items():
        d.parts[r] = choose(circ, r, ideal, series, caps, pair_threshold)
    if getattr(circ, "netlist", None) is not None:
        _model_corners(circ, target, caps, d)
    return d


def _model_corners(circ: Circuit, target: Target, caps: Mapping[str, float], d: Design) -> None:
    """The corners the chosen parts give on the circuit as built (its model), not 1/(2 pi R C)."""
    from hostctl.corners import corner_of

    vals = d.values
    for r, p in d.parts.items():
        want = target.corner_for(circ, r)
        p.corner_hz = corner_of(circ, target, r, vals, caps)
        p.corner_error = p.corner_hz / want - 1


# --- designing for LED bands ------------------------------------------------------------
# An LED switches where |H| crosses its threshold, which is a corner only when the threshold
# is 1/sqrt(2). With a measured threshold the parts are chosen so each on/off switch sits in
# the middle (in log-frequency) of the gap between the target's on and off bands.

def _switch_points(target: Target, channel: str) -> list[tuple[float, str]]:
    """Desired switch frequencies of a channel: (f, 'rise'|'fall') between on and off bands."""
    d = target.bands.get(channel, {})
    out = []
    for lo, hi in d.get("on", []):
        below = [b[1] for b in d.get("off", []) if b[1] <= lo]
        above = [b[0] for b in d.get("off", []) if b[0] >= hi]
        if below:
            out.append((math.sqrt(max(below) * lo), "rise"))
        if above:
            out.append((math.sqrt(min(above) * hi), "fall"))
    return out


def margins(circ: Circuit, f, values: Mapping[str, float],
            capacitance: float | Mapping[str, float], threshold: Threshold | LedDrive
            ) -> dict[str, Any]:
    """What each LED sees over its switching level (lit where > 1): |H| over an |H|
    threshold, or the volts at its filter output over its switching voltage."""
    from hostctl.leds import LedDrive, led_volts

    if isinstance(threshold, LedDrive):
        v = led_volts(circ, f, values, capacitance, threshold)
        return {ch: x / threshold.vth(ch) for ch, x in v.items()}
    resp = circ.magnitude(f, values, capacitance)
    return {ch: h / channel_threshold(threshold, ch) for ch, h in resp.items()}


def led_map(circ: Circuit, values: Mapping[str, float], capacitance: float | Mapping[str, float],
            threshold: Threshold | LedDrive, freqs=None) -> dict[str, list[tuple[float, float]]]:
    """Frequency bands (Hz, 20 Hz-20 kHz) where each channel's LED is lit."""
    import numpy as np

    f = np.geomspace(20.0, 20000.0, 2001) if freqs is None else np.asarray(freqs)
    out: dict[str, list[tuple[float, float]]] = {}
    for ch, m in margins(circ, f, values, capacitance, threshold).items():
        lit = m > 1
        bands, start = [], None
        for i, on in enumerate(lit):
            if on and start is None:
                start = f[i]
            if not on and start is not None:
                bands.append((float(start), float(f[i - 1])))
                start = None
        if start is not None:
            bands.append((float(start), float(f[-1])))
        out[ch] = bands
    return out


def check_bands(circ: Circuit, values: Mapping[str, float],
                capacitance: float | Mapping[str, float], threshold: Threshold | LedDrive,
                 target: Target
                ) -> dict[str, dict]:
    """Pass/fail of each channel's predicted LED against the target's on/off bands."""
    import numpy as np

    out = {}
    for ch, d in target.bands.items():
        if ch not in circ.channels:
            continue
        ok = True
        for kind, bands in d.items():
            for lo, hi in bands:
                f = np.geomspace(lo, hi, 60)
                lit = margins(circ, f, values, capacitance, threshold)[ch] > 1
                if (kind == "on" and not lit.all()) or (kind == "off" and lit.any()):
                    ok = False
        out[ch] = {"pass": ok}
    return out


#: weight of the pull toward the corner design in design_for_led (log-ohm residuals)
ANCHOR = 1e-4


def design_for_led(circ: Circuit, target: Target, capacitance: float | Mapping[str, float],
                   threshold: Threshold | LedDrive, series: str = "E24") -> Design:
    """Standard parts whose LEDs switch mid-gap of the target bands at ``threshold``."""
    import numpy as np

    from hostctl.corners import _gauss_newton  # numpy: scipy.optimize costs 0.3 s of import

    caps = capacitances(circ, capacitance)
    start = ideal_values(circ, target, caps)
    eqs = [(ch, f) for ch in circ.channels for f, _ in _switch_points(target, ch)]
    if not eqs:
        return design(circ, target, caps, series)
    names = list(circ.resistors)
    log_start = np.log([start[n] for n in names])

    fs = [f for _, f in eqs]

    def resid(logr):
        # every switch tone in one solve (one call per tone was half the fit command's time)
        vals = dict(zip(names, np.exp(logr), strict=True))
        m = margins(circ, fs, vals, caps, threshold)
        return np.asarray([math.log(max(float(m[ch][i]), 1e-300))
                           for i, (ch, _) in enumerate(eqs)])

    def resid_anchored(logr):
        # a faint pull toward the corner design: a target with LED bands for only some
        # channels leaves the other parts (and LM) undetermined otherwise
        return np.concatenate([resid(logr), ANCHOR * (logr - log_start)])

    ideal = dict(zip(names, np.exp(_gauss_newton(resid_anchored, log_start)), strict=True))
    d = Design(circ.name, series.upper(), caps)
    for r in names:
        d.parts[r] = choose(circ, r, ideal[r], series, caps)
    # try the two nearest standard values of each part; keep the build with the best margin
    options = []
    for r in names:
        vals = standard_values(series, lo=ideal[r] / 1.5, hi=ideal[r] * 1.5)
        vals.sort(key=lambda v: abs(math.log(v / ideal[r])))
        options.append(vals[:2])
    best, best_err = None, math.inf
    for combo in _product(options):
        vals = dict(zip(names, combo, strict=True))
        e = resid(np.log(list(combo)))
        if all(v["pass"] for v in check_bands(circ, vals, caps, threshold, target).values()):
            err = float(np.max(np.abs(e)))
            if err < best_err:
                best, best_err = vals, err
    if best is not None:
        for r in names:
            p = d.parts[r]
            p.value_ohm = best[r]
            p.corner_hz = circ.corner_hz(r, best[r], caps)
            p.corner_error = ideal[r] / best[r] - 1  # corner scales as 1/R
    return d


def _product(options: list[list[float]]):
    import itertools

    return itertools.product(*options)
