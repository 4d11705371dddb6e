"""The sound card as a source: its amplitude and output resistance, from the reference.

Three filters hang on one sound-card output, so the filters' input node sags with
frequency as their input impedance falls (about 16 ohm at treble for the color organ).
The probe measures that node (A0) at every tone; with the level constant and the
circuit's model giving ``V(a0) / V(source)`` for any source resistance, two numbers
explain every reference amplitude: the source's open-circuit amplitude ``A`` and its
resistance ``R_s``. Gains divide the sag out (A0 taps the common node); what the LEDs
see does not, so the verdicts on LED bands need ``R_s`` (hostctl.advice).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from hostctl.errors import FitError
from hostctl.leds import R_SOURCE_MAX

if TYPE_CHECKING:
    from hostctl.circuits import Circuit
    from hostctl.dataset import Measurement
    from hostctl.leds import LedDrive

#: the netlist parameter that is the sound card's output resistance
SOURCE_PARAM = "R_source"
#: search range of R_s (ohm): a line output is well under this
R_MAX = R_SOURCE_MAX


@dataclass(frozen=True)
class SourceEstimate:
    """What the reference amplitudes say about the sound card."""

    r_ohm: float
    ci95: tuple[float, float]
    amplitude_v: float            # open-circuit peak volts at ``level_dbfs``
    level_dbfs: float
    n: int
    rms_misfit: float             # of log vin

    def to_json(self) -> dict[str, Any]:
        hi = self.ci95[1] if math.isfinite(self.ci95[1]) else None
        return {"r_ohm": self.r_ohm, "ci95_ohm": [self.ci95[0], hi],
                "amplitude_v": self.amplitude_v, "level_dbfs": self.level_dbfs, "n": self.n,
                "rms_misfit": self.rms_misfit}


def transfer(circ: Circuit, freqs: np.ndarray, values: Mapping[str, float], caps: Any,
             r_source: np.ndarray) -> np.ndarray:
    """|V(reference pin) / V(source)| at each tone for each source resistance (R, F).

    The source drives the circuit through ``R_s`` alone, so every node voltage is
    ``T(0) * Z / (Z + R_s)`` with ``Z`` the circuit's input impedance at the source's
    node: two solves give ``Z`` and then any ``R_s`` in closed form (exact; the profile
    below asks for hundreds)."""
    return _sag(circ, freqs, values, caps)(np.asarray(r_source, float))


def _sag(circ: Circuit, freqs: np.ndarray, values: Mapping[str, float], caps: Any) -> Any:
    """``R_s (R,) -> |V(ref)/V(source)| (R, F)`` for one set of circuit values (two solves)."""
    from hostctl.circuits import capacitances
    from hostctl.circuits.registry import _overrides

    ref = circ.probe.get("ref")
    omega = 2 * math.pi * np.asarray(freqs, float)
    vals = {k: float(v) for k, v in values.items()
            if k in circ.resistors or circ.netlist.param(k) is not None}
    ra, rb = 1e-3, 100.0
    va, vb = (circ.solver.solve_numpy(omega, _overrides(
        circ, {**vals, SOURCE_PARAM: r}, capacitances(circ, caps)), [ref])[..., 0]
        for r in (ra, rb))
    z = (vb * rb - va * ra) / (va - vb)

    def at(r_source: np.ndarray) -> np.ndarray:
        r = np.asarray(r_source, float)[:, None]
        return np.abs(va[None, :] * (z[None, :] + ra) / (z[None, :] + r))
    return at


def _levels(rows: Sequence[Measurement]) -> tuple[float, np.ndarray, np.ndarray]:
    """The tone level most reference amplitudes were taken at: (level, tones, log vin)."""
    pts: dict[float, dict[float, float]] = {}
    for m in rows:
        if m.vin_v and m.vin_v > 0 and m.level_dbfs is not None:
            pts.setdefault(float(m.level_dbfs), {})[float(m.frequency_hz)] = float(m.vin_v)
    if not pts:
        raise FitError("no reference amplitudes (vin_v with level_dbfs) to estimate the source")
    level, by_f = max(pts.items(), key=lambda kv: len(kv[1]))
    f = np.array(sorted(by_f))
    if len(f) < 3:
        raise FitError(f"{len(f)} tone(s) at {level:g} dBFS: too few to estimate the source")
    return level, f, np.log([by_f[x] for x in f])


def _profile(circ: Circuit, values: Mapping[str, float], caps: Any, f: np.ndarray,
             y: np.ndarray) -> Any:
    """``log R_s (R,) -> (sum of squares, log A)`` with ``A`` profiled out."""
    sag = _sag(circ, f, values, caps)

    def profile(logr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        L = np.log(np.maximum(sag(np.exp(logr)), 1e-300))
        r = y[None, :] - L
        loga = r.mean(axis=1)
        return ((r - loga[:, None]) ** 2).sum(axis=1), loga
    return profile


def _best(profile: Any) -> float:
    """log R_s at the profile's minimum: a coarse log grid, refined (bounded Brent)."""
    from scipy.optimize import minimize_scalar

    grid = np.linspace(LOG_LO, LOG_HI, 60)
    sse, _ = profile(grid)
    i = int(np.argmin(sse))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    best = minimize_scalar(lambda x: float(profile(np.array([x]))[0][0]), bounds=(a, b),
                           method="bounded", options={"xatol": 1e-6})
    return float(best.x)


#: search range of log R_s: a zero resistor is a short (1 mOhm stands in for none)
LOG_LO, LOG_HI = math.log(1e-3), math.log(R_MAX)


def estimate_source(circ: Circuit, values: Mapping[str, float], caps: Any,
                    rows: Sequence[Measurement]) -> SourceEstimate:
    """Fit ``A`` and ``R_s`` to the reference amplitudes of one tone level.

    ``log vin = log A + log|T(f; R_s)|``: ``A`` is linear (a mean in log), so ``R_s`` is a
    one-dimensional profile; its 95 % interval is where the profile rises by the Student-t
    quantile squared in units of the residual variance -- inflated by how much neighbouring
    residuals move together. Residuals of a model a little off (coupling capacitors, bias
    resistors, a capacitor's tolerance) are smooth in frequency, not independent: a
    thousand of them say no more than a few, and an interval that treats them as
    independent shrinks with the tone count around a biased value (lag-one
    autocorrelation rho: ``n_eff = n (1 - rho) / (1 + rho)``).
    """
    from scipy.optimize import brentq
    from scipy.special import stdtrit

    if SOURCE_PARAM not in (getattr(circ, "params", None) or {}):
        raise FitError(f"circuit {circ.name} has no {SOURCE_PARAM}: its source cannot be "
                       "estimated")
    level, f, y = _levels(rows)
    profile = _profile(circ, values, caps, f, y)
    x0 = _best(profile)
    sse0, loga0 = (v[0] for v in profile(np.array([x0])))
    L0 = np.log(np.maximum(_sag(circ, f, values, caps)(np.array([math.exp(x0)]))[0], 1e-300))
    res = y - L0 - loga0
    den = float(res @ res)
    rho = min(max(float(res[1:] @ res[:-1]) / den if den > 0 else 0.0, 0.0), 1.0)
    n_eff = max(len(f) * (1 - rho) / (1 + rho), 3.0)
    dof = len(f) - 2
    s2 = max(sse0 / dof, 1e-30)
    rise = float(stdtrit(max(n_eff - 2, 1.0), 0.975)) ** 2 * s2 * len(f) / n_eff

    def edge(bound: float) -> float:
        """Where the profile has risen by ``rise`` between the optimum and ``bound``."""
        def g(x: float) -> float:
            return float(profile(np.array([x]))[0][0]) - sse0 - rise
        if g(bound) < 0:
            return bound
        return brentq(g, min(x0, bound), max(x0, bound), xtol=1e-6)

    lo, hi = edge(LOG_LO), edge(LOG_HI)
    ci = (0.0 if lo <= LOG_LO else math.exp(lo), math.inf if hi >= LOG_HI else math.exp(hi))
    return SourceEstimate(math.exp(x0), ci, float(math.exp(loga0)), level, len(f),
                          math.sqrt(sse0 / len(f)))


def _spread(circ: Circuit, values: Mapping[str, float], caps: Any, rows: Sequence[Measurement],
            est: SourceEstimate, ranges: Mapping[str, tuple[float, float]]
            ) -> tuple[tuple[float, float], list[str]]:
    """The source's interval over the circuit values' own intervals (``ranges``): each
    value at either end of its 95 % interval moves the estimate; those moves add in
    quadrature to the profile's half-widths (in log R_s). A value the data leave open
    (a section whose LED never switched) leaves the source open: (0, inf), named."""
    open_ = [k for k, (lo, hi) in ranges.items() if not (lo > 0 and math.isfinite(hi))]
    if open_:
        return (0.0, math.inf), open_
    _, f, y = _levels(rows)
    x0 = math.log(est.r_ohm)
    moves = []
    for k, (lo, hi) in ranges.items():
        if lo == hi:
            continue
        xs = [_best(_profile(circ, {**values, k: v}, caps, f, y)) for v in (lo, hi)]
        moves.append(0.5 * abs(xs[1] - xs[0]))
    spread = float(np.hypot.reduce(moves)) if moves else 0.0
    lo, hi = est.ci95
    out_lo = 0.0 if lo <= 0 else math.exp(x0 - math.hypot(x0 - math.log(lo), spread))
    out_hi = math.inf if not math.isfinite(hi) else math.exp(
        x0 + math.hypot(math.log(hi) - x0, spread))
    return (out_lo, out_hi), []


def measured_drive(circ: Circuit, fit: Any, caps: Any, rows: Sequence[Measurement],
                   volts: float | Mapping[str, float], level_dbfs: float | None = None,
                   installed: Mapping[str, float] | None = None) -> LedDrive:
    """What drives the LEDs, from the data: the source estimated from the reference
    amplitudes with the fitted circuit (its amplitude scaled to ``level_dbfs``, default
    the level most tones were played at). The input impedance needs R and C apart, not
    their product: with every resistor ``installed`` known, those and the capacitors the
    fit infers (``caps``: the nominal ones). A circuit without a source resistance (the
    notebook's ideal ones) takes the median reference amplitude as the source."""
    from hostctl.advice import actual_capacitance
    from hostctl.leds import LedDrive

    caps, _, inferred = actual_capacitance(circ, caps, dict(installed or {}), fit)
    values = {**(dict(installed or {}) if inferred else fit.values),
              **{k: v[0] for k, v in (fit.nuisance or {}).items()}}
    try:
        est = estimate_source(circ, values, caps, rows)
    except FitError as e:
        vins = sorted(m.vin_v for m in rows if m.vin_v and m.vin_v > 0)
        if not vins:
            raise FitError(f"the LEDs cannot be judged on volts: {e}") from None
        a = vins[len(vins) // 2]
        lv = level_dbfs if level_dbfs is not None else -6.0
        return LedDrive(volts, a, 0.0, lv, f"the median reference amplitude; no source "
                        f"resistance from the data ({e})", headroom_db=max(-lv, 0.0))
    # the input impedance is only as sure as the fitted values it is computed from
    ranges = {k: v for k, v in fit.ci95.items() if k in circ.resistors and not inferred
              and k not in (installed or {})}
    ranges.update({k: (lo, hi) for k, (_, lo, hi) in (fit.nuisance or {}).items()})
    ci, open_ = _spread(circ, values, caps, rows, est, ranges)
    est = replace(est, ci95=ci)
    lv = est.level_dbfs if level_dbfs is None else level_dbfs
    lo, hi = est.ci95
    how = (f"measured from {est.n} reference amplitudes: R_s {est.r_ohm:.3g} ohm, 95 % "
           f"[{lo:.3g}, {hi:.3g}]" + (f" (open: the input impedance needs "
                                      f"{', '.join(open_)}, which the data leave open)"
                                      if open_ else ""))
    return LedDrive(volts, est.amplitude_v * 10 ** ((lv - est.level_dbfs) / 20), est.r_ohm,
                    lv, how, headroom_db=max(-lv, 0.0), estimate=est.to_json())
