"""LED thresholds beyond one given number: one per LED from the gains, and the check
that LEDs estimated to share one threshold really do."""

from __future__ import annotations

import contextvars
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from hostctl.circuits import LED_THRESHOLD, Circuit
from hostctl.dataset import MeasurementSet
from hostctl.errors import FitError
from hostctl.fit.led import _thresholds_per_led
from hostctl.fit.model import shared_model
from hostctl.fit.problem import SwitchVoltage, _build, _Problem, _usable, nuisances
from hostctl.fit.result import FitResult
from hostctl.fit.settings import LED_MISFIT_FRACTION, MEASURED_C, Z95

if TYPE_CHECKING:
    from hostctl.fit.engine import _Run

#: a nuisance direction whose effect on the LED rows' log|H|, beyond what the resistors and
#: the threshold absorb, stays below this at its prior's 95 % end is left at nominal: 0.2 %
#: of the response, a small part of what one tone step moves an LED switch by
NUISANCE_SHAPE_TOL = 2e-3

#: set while :func:`_threshold_conflicts` re-fits single channels: their ranges stay at the
#: nominal build (the shared range they are compared with holds it too), which is cheaper
_ALONE: contextvars.ContextVar[bool] = contextvars.ContextVar("_ALONE", default=False)


def _per_led_thresholds(run: _Run, res: FitResult, gain_ch: set[int]) -> None:
    """With gains on every LED channel, say so when the LEDs switch at different levels."""
    prob = run.prob
    if not (prob.est_t and prob.nl and prob.ng and set(prob.chl.tolist()) <= gain_ch):
        return
    own, _ = _thresholds_per_led(prob, run.theta)
    if max(lo for lo, _ in own.values()) > min(hi for _, hi in own.values()):
        # no one threshold lets every LED switch where it did: each LED its own
        res.led_thresholds = {k: math.sqrt(lo * hi) for k, (lo, hi) in own.items()}
        what = ("switching volts per LED" if prob.est_volts else "t_ref per LED at 0 dBFS")
        if prob.est_volts:
            res.led_vf, res.led_thresholds = res.led_thresholds, None
        res.notes.append(f"the LEDs switch at different thresholds; {what} "
                         "(from the fitted gains): " + ", ".join(
                             f"{k} {math.sqrt(lo * hi):.4g} ({lo:.4g}..{hi:.4g})"
                             for k, (lo, hi) in own.items()))


def _fit_each(data: MeasurementSet, circ: Circuit, capacitance: Any,
              prior: Mapping[str, tuple[float, float]] | None,
              fixed: Mapping[str, float] | None, init: Any, t0: float,
              volts: bool = False) -> FitResult:
    """One threshold per LED (a red, a green and a blue LED differ), measured where gains
    fix the response: the components from the gains alone, then each LED's threshold from
    the gap between its dark and lit tones (:func:`_thresholds_per_led`). ``volts``: each
    LED row against its own tone's reference amplitude, the thresholds switching volts."""
    from dataclasses import replace

    gain_rows = [replace(m, led=None) for m in data.rows if m.gain is not None]
    led_rows = [replace(m, gain=None) for m in data.rows if _usable(m, "led")]
    if not gain_rows:
        raise FitError("estimating one threshold per LED needs gain data on the LED channels "
                       "(mode both); with LED data only give each LED's threshold or "
                       "voltage, or estimate one shared threshold")
    from hostctl.fit.engine import _fit

    res = _fit(MeasurementSet(gain_rows, dict(data.meta)), circ, capacitance, LED_THRESHOLD,
               "auto", prior, fixed, init, None, None, t0)
    if not led_rows:
        return res
    # the LED rows see the circuit the gains found: its nuisances (ESR, capacitors as
    # built) at their fitted values, not at nominal
    held = {**{k: v[0] for k, v in (res.nuisance or {}).items()}, **dict(fixed or {})}
    prob = _build(MeasurementSet(led_rows, dict(data.meta)), circ, res.capacitance,
                  SwitchVoltage("estimate") if volts else "estimate", None, held)
    missing = sorted({circ.channels[c] for c in prob.chl} - {m.channel for m in gain_rows
                                                            if m.gain_usable})
    if missing:
        raise FitError(f"no usable gain data on channel {', '.join(missing)}: its LED's "
                       "threshold cannot be measured from its switches alone")
    theta = np.log([res.values[r] for r in prob.free])
    ranges, wrong = _thresholds_per_led(prob, theta)
    bad = {ch: (w, n) for ch, (w, n) in wrong.items() if w > max(2, LED_MISFIT_FRACTION * n)}
    if bad:
        res.trusted = False
        res.warnings.append("LED observations contradict the fitted gains ("
                            + "; ".join(f"{ch}: {w} of {n}" for ch, (w, n) in bad.items())
                            + " fit no threshold): check the LED wiring (D2 low, D3 band, "
                            "D4 high); the thresholds are not to be used")
    res.led_threshold, res.led_threshold_estimated = None, True
    res.led_thresholds = {}
    res.led_thresholds_ci95 = _over_intervals(prob, theta, res, ranges)
    res.n_led = prob.nl
    res.method = f"{res.method} + per-LED thresholds"
    for ch, (lo, hi) in ranges.items():
        if lo > 0 and math.isfinite(hi):
            res.led_thresholds[ch] = math.sqrt(lo * hi)
            continue
        res.led_thresholds[ch] = lo if lo > 0 else hi
        bound = f"above {lo:.4g}" if lo > 0 else f"below {hi:.4g}"
        res.warnings.append(f"LED {ch} was {'always lit' if lo == 0 else 'never lit'} at the "
                            f"measured tones: its threshold is only bounded ({bound})")
    what = ("LED switching volts per LED (against each tone's reference amplitude)"
            if volts else "LED thresholds t_ref per LED at 0 dBFS")
    res.notes.append(f"{what}, from the fitted gains and each LED's switches: " + ", ".join(
                         f"{k} {res.led_thresholds[k]:.4g} ({lo:.4g}..{hi:.4g})"
                         for k, (lo, hi) in res.led_thresholds_ci95.items()))
    if volts:
        res.led_vf, res.led_thresholds = res.led_thresholds, None
    res.seconds = time.perf_counter() - t0
    return res


def _over_intervals(prob: _Problem, theta: np.ndarray, res: FitResult,
                    ranges: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """Each LED's threshold range over the fitted resistors' 95 % intervals too: the gap
    between its dark and lit tones moves with the response the gains fixed (each resistor
    at either end of its interval, the others at the fit)."""
    out = dict(ranges)
    for k, name in enumerate(prob.free):
        for v in res.ci95.get(name, (math.nan, math.nan)):
            if not (v > 0 and math.isfinite(v)):
                continue
            th = theta.copy()
            th[k] = math.log(v)
            for ch, (lo, hi) in _thresholds_per_led(prob, th)[0].items():
                a, b = out[ch]
                out[ch] = (min(a, lo) if a > 0 else a, max(b, hi))
    return out


def _threshold_conflicts(data: MeasurementSet, prob: _Problem, theta: np.ndarray,
                         led_only: list, t_ci: tuple[float, float], capacitance: Any,
                         prior: Mapping[str, tuple[float, float]] | None) -> list[str]:
    """Channels whose LED alone needs a threshold outside the shared one's consistent range.

    One shared threshold is the right model for LEDs of one type and the wrong one for a
    red, a green and a blue LED: then some switches contradict it (they show up as rejected
    observations). Each channel that switches at two levels is refitted alone, from the
    shared estimate, with its own threshold; disjoint consistent ranges mean the LEDs
    differ.
    """
    p = len(prob.free)
    names = prob.circ.channels
    out = []
    token = _ALONE.set(True)
    try:
        for ks, chans in led_only:
            keep = {names[c] for c in chans}
            sub = MeasurementSet([m for m in data.rows if m.channel in keep], dict(data.meta))
            own = {prob.free[k] for k in ks}
            hold = dict(prob.fixed)
            hold.update({prob.free[k]: math.exp(theta[k]) for k in range(p)
                         if prob.free[k] not in own})
            from hostctl.fit.engine import _fit

            try:
                r = _fit(sub, prob.circ, capacitance,
                         SwitchVoltage("estimate") if prob.est_volts else "estimate", "auto",
                         prior, hold,
                         {n: math.exp(theta[prob.free.index(n)]) for n in own}, None, None,
                         time.perf_counter())
            except FitError:
                continue  # not identifiable alone (switches at one level only)
            lo, hi = r.led_threshold_ci95 or (0.0, math.inf)
            if hi < math.exp(t_ci[0]) or lo > math.exp(t_ci[1]):
                out.append(f"{', '.join(sorted(keep))} alone: {lo:.4g}..{hi:.4g}")
    finally:
        _ALONE.reset(token)
    return out


def _held_priors(prob: _Problem, capacitance: Any) -> dict[str, tuple[float, float]]:
    """The nuisances an LED-only fit holds, with their priors (nominal, sigma of log): a
    capacitor the user names was measured (its ``S_x`` to a meter's ``MEASURED_C``, as
    :func:`hostctl.fit.problem.measured_capacitors` does where gains free it)."""
    named = ({str(k)[2:].lower() for k in capacitance if str(k)[:2].upper() == "C_"}
             if isinstance(capacitance, Mapping) else set())
    return {k: (mu, math.log1p(MEASURED_C) if k.startswith("S_") and k[2:].lower() in named
                else sig)
            for k, (mu, sig) in nuisances(prob.circ).items() if k not in prob.fixed}


def _nuisance_settings(prob: _Problem, theta: np.ndarray,
                       held: dict[str, tuple[float, float]]) -> list[dict[str, float]]:
    """The builds an LED-only fit cannot rule out: nuisance values at the ends of their
    priors' 95 % range, along each direction in which they change the LED rows' response
    in a way the fitted resistors and the threshold cannot absorb by more than
    ``NUISANCE_SHAPE_TOL`` (log). The passive band-pass's capacitor ratio is one: it sets
    the shape of the band's peak, so an estimated threshold and every resistor that
    shares it move with it (bench seed 1: V_f 0.3066..0.3133 V held at nominal, truth 0.3)."""
    if not held or not prob.nl or prob.ng:
        return []
    names = list(held)
    p = len(prob.free)
    model = shared_model(prob.circ, prob.caps, prob.free + names, prob.fixed)
    th = np.concatenate([theta[:p], [math.log(held[k][0]) for k in names]])
    _, J = model.logh(th[None], prob.omega[prob.ng:], prob.ch[prob.ng:], jac=True)
    J = J[0]
    # what the fit absorbs: the resistors and (estimated or not) one shared offset
    Q, _ = np.linalg.qr(np.column_stack([J[:, :p], np.ones(len(J))]))
    Ju = J[:, p:] * np.array([held[k][1] for k in names])      # per prior sigma
    R = Ju - Q @ (Q.T @ Ju)
    U, S, Vt = np.linalg.svd(R, full_matrices=False)
    out = []
    for i in range(min(2, len(S))):
        if Z95 * float(np.abs(U[:, i] * S[i]).max()) <= NUISANCE_SHAPE_TOL:
            break
        for sign in (-1.0, 1.0):
            out.append({k: held[k][0] * math.exp(sign * Z95 * Vt[i, j] * held[k][1])
                        for j, k in enumerate(names)})
    return out


def _over_nuisances(prob: _Problem, theta: np.ndarray, data: MeasurementSet, led_only: list,
                    capacitance: Any, prior: Mapping[str, tuple[float, float]] | None, ci: dict,
                    t_ci: tuple[float, float]) -> tuple[tuple[float, float], list[str]]:
    """An estimated threshold's range and the resistor intervals (log, in place) widened
    over the nuisances LED rows cannot pin (:func:`_nuisance_settings`): each such build
    re-fitted from the estimate and profiled, its consistent ranges joined. Returns the
    range and the builds (named by the nuisances moved)."""
    from hostctl.fit.engine import _fit_leds, _Run
    from hostctl.fit.led import _profile_threshold

    if _ALONE.get():
        return t_ci, []
    thr = SwitchVoltage("estimate") if prob.est_volts else "estimate"
    nominal = nuisances(prob.circ)
    used = []
    for s in _nuisance_settings(prob, theta, _held_priors(prob, capacitance)):
        built = _build(data, prob.circ, prob.caps, thr, prior, {**prob.fixed, **s})
        run = _Run(built, theta.copy())
        _fit_leds(run, True)
        lo_hi, prof, _ = _profile_threshold(built, run.theta, led_only)
        t_ci = (min(t_ci[0], lo_hi[0]), max(t_ci[1], lo_hi[1]))
        for k, (a, b) in prof.items():
            ci[k] = (min(ci[k][0], a), max(ci[k][1], b))
        used.append(", ".join(f"{k} {v:.3g}" for k, v in s.items()
                              if abs(math.log(v / nominal[k][0])) > 1e-3))
    return t_ci, used
